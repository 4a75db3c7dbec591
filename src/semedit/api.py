"""The Python API: one call for an edit, on the same service as the command line and the web app.

    from semedit.api import edit
    result = edit("toon.png", "ito", changes={"hair_colour": "red"})   # an EditResult
    result = edit("photo.png", "pixelguide", seg="edited_map.png")     # an edited segmentation map
    result.image, result.mask, result.provenance
"""

from __future__ import annotations

from typing import Callable

from .methods import EditResult, make_config
from .service import (EditInputs, check_new_files, check_png_path, prepare_edit, result_paths, run_prepared_edit,
                      save_result)


def edit(image, method: str = "ito", *, target: str | None = None, source: str | None = None,
         changes: dict | None = None, layout_from_changes: str | None = None, mask=None,
         controls: dict | None = None, source_controls: dict | None = None, seg=None, source_seg=None,
         object_prompt: str | None = None, background_prompt: str | None = None, reference_background=None,
         model: str = "toon-64",
         controlnets: dict | None = None, seed: int = 0, output=None, overwrite: bool = False,
         save_intermediates: bool = False, progress: Callable | None = None, fast: bool = False,
         **settings) -> EditResult:
    """Edit `image` (a file or a uint8 array) with `method`. The edit is a `target` prompt, layout maps
    (`controls`, with the input's own in `source_controls`), an edited segmentation map (`seg`, a file or HxW
    class ids, with the input's own in `source_seg`), or for toon PNGs attribute `changes`; layered methods also
    take the target's subject and background parts (`object_prompt`, `background_prompt`; split from the
    target otherwise) and a `reference_background` picture. `settings` are the method's config fields (those
    not given take the model family's defaults where it has its own, else the paper's). With `output` the
    result is saved as `semedit edit` saves it. `fast` runs the networks compiled, in bfloat16 where the device
    computes it natively (faster per call once compiled; the first call of each shape in a process compiles;
    outputs within bf16's tolerance, docs/benchmark.md "Speed"). Bad input raises `InputError` (a ValueError)
    before any model runs."""
    make_config(method, **settings)  # bad settings fail before anything is read
    if output is not None:
        check_new_files(result_paths(check_png_path(output)), overwrite)
    prepared = prepare_edit(EditInputs(image, target, source, dict(changes or {}), layout_from_changes, mask,
                                       dict(controls or {}), dict(source_controls or {}), seg=seg,
                                       source_seg=source_seg, object_prompt=object_prompt,
                                       background_prompt=background_prompt,
                                       reference_background=reference_background), model, method)
    result = run_prepared_edit(prepared, method, settings, model, controlnets, seed, progress, fast=fast)
    if output is not None:
        save_result(result, output, save_intermediates, overwrite)
    return result
