"""The layers hold (import-linter contracts in pyproject.toml), inference loads no training code, and no
module reaches into another's private names."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "semedit"


def test_import_contracts_are_kept(capsys):
    from importlinter.cli import lint_imports

    code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    assert code == 0, capsys.readouterr().out


def test_inference_and_the_service_load_no_training_code_and_no_click():
    script = ("import sys, semedit.methods, semedit.eval.bench, semedit.service; "
              "print(sorted(m for m in sys.modules if m.startswith('semedit.training') or m == 'click'))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_private_name_is_imported_from_another_module():
    crossings = []
    for path in SRC.rglob("*.py"):
        module = _module_name(path)
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            base = package.split(".")
            source = ".".join(base[:len(base) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else node.module
            crossings += [f"{module}: from {source} import {a.name}" for a in node.names
                          if a.name.startswith("_") and not a.name.startswith("__") and source != module]
    assert not crossings, crossings
