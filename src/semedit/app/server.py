"""The web app's backend: JSON endpoints over the service layer. Edits run one at a time in a worker thread
through a bounded queue, with progress and cancellation; every edit and its pictures are kept in the
history under the data folder; pictures travel as PNG data URLs; no request names a path."""

from __future__ import annotations

import base64
import dataclasses
import io
import shutil
import threading
import typing
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from ..methods import REGISTRY, make_config
from ..methods.base import plain_type
from ..models.backbone import TOON64, image_size_of, model_folder, read_method_defaults
from ..service import (EditCancelled, EditInputs, get_backbone, input_scribble, parse_changes, prepare_edit,
                       read_picture, read_record, run_prepared_edit, write_png)
from ..service.outputs import picture_of
from ..world import CATEGORICAL, POSE_RANGES, describe, sample_record, save_toon_png
from .history import History

STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY_BYTES = 16 * 2**20  # an edit request with all its pictures
MAX_QUEUE = 8  # edits waiting or running; past it, "busy"


def data_url(picture: Path | typing.Callable[[io.BytesIO], object]) -> str:
    """A PNG as a data URL: a file's, or what `picture(buffer)` writes."""
    if callable(picture):
        buffer = io.BytesIO()
        picture(buffer)
        png = buffer.getvalue()
    else:
        png = Path(picture).read_bytes()
    return "data:image/png;base64," + base64.b64encode(png).decode()


def picture_bytes(url: str, what: str) -> bytes:
    """The bytes of a picture data URL (or bare base64), or a 400 that names the field."""
    try:
        return base64.b64decode(url.split(",", 1)[1] if url.startswith("data:") else url, validate=True)
    except (ValueError, IndexError):
        raise HTTPException(400, f"{what} is not a base64 picture") from None


def method_schema(name: str, model_defaults: dict | None = None) -> dict:
    """A method as the page shows it: its help and one entry per config field (type, default, help, range or
    choices), from the config dataclass; the default is the model family's own where it has one
    (`model_defaults`), else the paper's (`paper_default`)."""
    import inspect
    import sys

    method = REGISTRY[name]
    hints = typing.get_type_hints(method.config)
    settings = []
    for f in dataclasses.fields(method.config):
        t = plain_type(hints[f.name])
        settings.append({"name": f.name, "type": t.__name__, "optional": t is not hints[f.name],
                         "default": (model_defaults or {}).get(f.name, f.default), "paper_default": f.default,
                         **{k: f.metadata.get(k) for k in ("help", "lo", "hi", "lo_open", "hi_open", "choices")}})
    about = (sys.modules[method.edit.__module__].__doc__ or "").strip().split("\n\n")[0]
    return {"name": name, "about": about, "usage": inspect.cleandoc(method.edit.__doc__ or ""),
            "layout": method.layout, "mask": method.mask, "segmentation": method.segmentation, "settings": settings}


class ToonRequest(BaseModel):
    seed: int = Field(0, ge=0)
    changes: dict[str, str] = {}


class GenerateRequest(BaseModel):
    prompt: str
    seed: int = Field(0, ge=0)
    steps: int = Field(25, ge=1, le=999)


class PictureBody(BaseModel):
    image: str  # a PNG data URL


class EditBody(BaseModel):
    method: str
    image: str  # a PNG data URL; a toon PNG carries its record
    target: str | None = None
    source: str | None = None
    changes: dict[str, str] = {}
    layout_from_changes: str | None = None
    mask: str | None = None  # a PNG data URL, white = may change
    controls: dict[str, str] = {}  # ControlNet name -> PNG data URL
    source_controls: dict[str, str] = {}
    settings: dict[str, typing.Any] = {}
    seed: int = Field(0, ge=0)


@dataclasses.dataclass
class Job:
    id: str
    method: str
    cancel: threading.Event
    state: str = "queued"  # queued, running, done, failed, cancelled
    evaluations: int = 0
    phase: str | None = None  # the method's stage, its U-Net calls so far and in all
    phase_calls: int = 0
    phase_steps: int | None = None
    message: str = ""


def create_app(model: str = TOON64, data: str | Path = "semedit-data", controlnets: dict | None = None,
               max_queue: int = MAX_QUEUE, fast: bool = False) -> FastAPI:
    """The app for one backbone (loaded when the first edit needs it), its history in `data`."""
    app = FastAPI(title="semedit", docs_url=None, redoc_url=None)
    history = History(data)
    jobs: dict[str, Job] = {}
    admission = threading.Lock()  # the queue check and the job's entry happen together
    worker = ThreadPoolExecutor(max_workers=1)  # one edit at a time: the CPU is the bottleneck
    size = image_size_of(model)

    def backbone():
        return get_backbone(model, controlnets, fast)

    family_defaults = read_method_defaults(model_folder(model))

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and int(length) > MAX_BODY_BYTES:
            return JSONResponse({"detail": f"the request is over {MAX_BODY_BYTES // 2**20} MB; pictures for this "
                                           f"model are {size}x{size}"}, status_code=413)
        return await call_next(request)

    @app.get("/api/info")
    def info():
        return {"model": model, "image_size": size, "methods": [method_schema(m, family_defaults.get(m))
                                                              for m in sorted(REGISTRY)],
                "attributes": {k: list(v) for k, v in CATEGORICAL.items()},
                "pose": {k: list(v) for k, v in POSE_RANGES.items()}}

    @app.post("/api/toon")
    def toon(body: ToonRequest):
        try:
            changes = parse_changes([f"{k}={v}" for k, v in body.changes.items()])
            rec = sample_record(body.seed).replace(**changes)
        except ValueError as e:
            raise HTTPException(400, str(e)) from None
        return {"image": data_url(lambda buffer: save_toon_png(buffer, rec, size)),
                "record": rec.to_dict(), "description": describe(rec)}

    @app.post("/api/generate")
    def generate(body: GenerateRequest):
        from ..engine.generate import generate as text_to_image

        if not body.prompt.strip():
            raise HTTPException(400, "the prompt is empty")
        image = text_to_image(backbone(), body.prompt, steps=body.steps, guidance_scale=7.5, seed=body.seed)
        provenance = {"prompt": body.prompt, "seed": body.seed, "steps": body.steps, "model": model}
        return {"image": data_url(lambda buffer: write_png(buffer, np.asarray(image), provenance))}

    @app.post("/api/scribble")
    def scribble(body: PictureBody):
        """The picture's own scribble (its edge map), to draw a new outline from."""
        try:
            picture = read_picture(io.BytesIO(picture_bytes(body.image, "the image")), size, "the image")
        except ValueError as e:
            raise HTTPException(400, str(e)) from None
        return {"scribble": data_url(lambda buffer: write_png(buffer, input_scribble(picture)))}

    @app.post("/api/edit")
    def edit(body: EditBody):
        if body.method not in REGISTRY:
            raise HTTPException(400, f"unknown method {body.method!r}; known: {', '.join(sorted(REGISTRY))}")
        job = Job(uuid.uuid4().hex[:12], body.method, threading.Event())
        folder = history.edit_folder(job.id)
        folder.mkdir(parents=True)

        def saved(url: str, name: str, what: str) -> Path:
            path = folder / f"{name}.png"
            path.write_bytes(picture_bytes(url, what))
            return path

        try:
            make_config(body.method, **body.settings)  # bad settings: a 400 before anything is saved
            prepared = prepare_edit(EditInputs(
                image=saved(body.image, "input", "the image"), target=body.target or None,
                source=body.source or None, changes=parse_changes([f"{k}={v}" for k, v in body.changes.items()]),
                layout_from_changes=body.layout_from_changes or None,
                mask=saved(body.mask, "mask", "the mask") if body.mask else None,
                controls={k: saved(v, f"control-{k}", f"the {k} map") for k, v in body.controls.items()},
                source_controls={k: saved(v, f"source-{k}", f"the input's {k} map")
                                 for k, v in body.source_controls.items()}), method=body.method)
            prepared.request(backbone(), body.method)  # every check before the edit is queued
        except (ValueError, TypeError) as e:
            shutil.rmtree(folder)
            raise HTTPException(400, str(e)) from None
        with admission:
            if sum(j.state in ("queued", "running") for j in jobs.values()) >= max_queue:
                shutil.rmtree(folder)
                raise HTTPException(503, f"busy: {max_queue} edits are waiting or running; try again in a moment")
            jobs[job.id] = job
        history.add(job.id, body.method, {**body.model_dump(exclude={"image", "mask", "controls", "source_controls"}),
                                          "controls": list(body.controls), "mask": body.mask is not None})

        def progress(calls):
            job.evaluations, job.phase = calls.unet_evaluations, calls.phase
            job.phase_calls, job.phase_steps = calls.phase_calls, calls.phase_steps

        def run():
            if job.cancel.is_set():
                job.state = "cancelled"
                history.finish(job.id, "cancelled", "cancelled before it started")
                return
            job.state = "running"
            history.set_state(job.id, "running")
            try:
                result = run_prepared_edit(prepared, body.method, body.settings, model, controlnets, body.seed,
                                           progress=progress, cancel=job.cancel, fast=fast)
            except EditCancelled as e:
                job.state, job.message = "cancelled", str(e)
            except Exception as e:  # one failing edit must not stop the server: it is reported as failed
                job.state, job.message = "failed", f"{type(e).__name__}: {e}"
            else:
                write_png(folder / "result.png", result.image, result.provenance)
                pictures = dict(result.intermediates, **({} if result.mask is None else {"mask": result.mask}))
                names = []
                for name, value in pictures.items():
                    if (picture := picture_of(np.asarray(value, np.float32) if name == "mask" else value)) is not None:
                        write_png(folder / f"out-{name}.png", picture)
                        names.append(name)
                history.finish(job.id, "done", provenance={**result.provenance, "notes": prepared.notes},
                               pictures=names)
                job.evaluations, job.state = result.unet_evaluations, "done"
                return
            history.finish(job.id, job.state, job.message)

        worker.submit(run)
        return {"job": job.id, "notes": prepared.notes}

    def entry(edit_id: str) -> dict:
        found = history.get(edit_id) if History.valid(edit_id) else None
        if found is None:
            raise HTTPException(404, f"no edit {edit_id}")
        return found

    def result_of(found: dict) -> dict | None:
        if found["state"] != "done":
            return None
        folder = history.edit_folder(found["id"])
        return {"image": data_url(folder / "result.png"), "provenance": found["provenance"],
                "pictures": {n: data_url(folder / f"out-{n}.png") for n in found["pictures"]}}

    @app.get("/api/jobs/{edit_id}")
    def job_state(edit_id: str):
        found, job = entry(edit_id), jobs.get(edit_id)
        return {"job": edit_id, "method": found["method"], "state": job.state if job else found["state"],
                "evaluations": job.evaluations if job else 0, "message": job.message if job else found["message"],
                "phase": job.phase if job else None, "phase_calls": job.phase_calls if job else 0,
                "phase_steps": job.phase_steps if job else None,
                "result": result_of(found)}

    @app.post("/api/jobs/{edit_id}/cancel")
    def cancel(edit_id: str):
        entry(edit_id)
        if edit_id in jobs:
            jobs[edit_id].cancel.set()
        return {"job": edit_id, "cancelling": True}

    @app.get("/api/jobs/{edit_id}/result.png")
    def download(edit_id: str):
        found = entry(edit_id)
        if found["state"] != "done":
            raise HTTPException(409, f"edit {edit_id} has no result ({found['state']})")
        return FileResponse(history.edit_folder(edit_id) / "result.png", media_type="image/png",
                            filename=f"semedit-{found['method']}-{edit_id}.png")

    @app.get("/api/history")
    def past_edits():
        return [{k: e[k] for k in ("id", "created", "method", "state", "message")} |
                {"seconds": (e["provenance"] or {}).get("seconds"),
                 "evaluations": (e["provenance"] or {}).get("unet_evaluations"),
                 "target": (e["provenance"] or {}).get("target_prompt") or e["request"].get("target")}
                for e in history.list()]

    @app.get("/api/history/{edit_id}")
    def past_edit(edit_id: str):
        found = entry(edit_id)
        folder = history.edit_folder(edit_id)
        record = read_record(folder / "input.png")
        return {"id": edit_id, "method": found["method"], "state": found["state"], "message": found["message"],
                "request": found["request"], "image": data_url(folder / "input.png"),
                "record": None if record is None else {**record.to_dict(), "description": describe(record)},
                "mask": data_url(folder / "mask.png") if (folder / "mask.png").exists() else None,
                "result": result_of(found)}

    @app.get("/")
    def index():
        return FileResponse(STATIC / "index.html")

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
