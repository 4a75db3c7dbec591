"""What every interface needs (the command line, the web app, the Python API): an `EditRequest` from
what a user gives, backbones loaded once, a method run with progress and cancellation, and results saved
with their provenance. No click, no web framework here."""

from ..files import check_new_files
from .backbones import clear_backbones, get_backbone
from .inputs import (EditInputs, InputError, PreparedEdit, input_scribble, parse_changes, parse_named, prepare_edit,
                     prompt_notes, read_picture, read_record, read_segmentation)
from .outputs import check_png_path, result_paths, save_result, write_png
from .run import EditCancelled, run_prepared_edit, run_with_progress
from .segment import save_segmentation, segment_picture, segmentation_paths

__all__ = ["check_new_files", "clear_backbones", "get_backbone", "EditInputs", "InputError", "PreparedEdit",
           "input_scribble", "parse_changes", "parse_named", "prepare_edit", "prompt_notes", "read_picture",
           "read_record", "read_segmentation", "check_png_path", "result_paths", "save_result", "write_png",
           "EditCancelled", "run_prepared_edit", "run_with_progress", "save_segmentation", "segment_picture",
           "segmentation_paths"]
