"""Start-up: diffusers' model packages (`diffusers.models.transformers`, `.unets`, `.autoencoders`,
`.controlnets`) import every architecture they hold in their `__init__` (over a second of a command's
start-up on a CPU machine), although a Stable-Diffusion backbone needs a handful of their modules.

`defer_diffusers_package_inits` installs an import finder under which importing a module of one of
those packages imports only that module: the package's own `__init__` runs, unchanged, the first time
a name is asked of the package itself. Nothing is imported here; packages already imported, or found
nowhere, are left as they are."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types

DEFERRED = frozenset(f"diffusers.models.{p}" for p in ("transformers", "unets", "autoencoders", "controlnets"))


class _DeferredPackage(types.ModuleType):
    """A package whose `__init__` runs on the first attribute it lacks."""

    def __getattr__(self, name: str):
        init = self.__dict__.pop("_semedit_init", None)
        if init is None or name.startswith("__"):
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        init.exec_module(self)
        return getattr(self, name)


class _DeferringLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return _DeferredPackage(spec.name)

    def exec_module(self, module):
        module.__dict__["_semedit_init"] = self.loader  # run later, on first use of the package's namespace


class _DeferringFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in DEFERRED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.submodule_search_locations is None:
            return None
        spec.loader = _DeferringLoader(spec.loader)
        return spec


def defer_diffusers_package_inits() -> None:
    if not any(isinstance(f, _DeferringFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _DeferringFinder())
