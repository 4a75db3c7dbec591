"""A load check of the web app: N concurrent edit requests on localhost (small step counts), every one
answered (a queued edit or "busy"), every accepted edit finished and in the history, memory bounded.

    .venv/bin/python benchmarks/app_load.py [--requests 20] [--steps 4] [--model toon-64]

Prints the answers, the edits in the history, the wall time and the process's peak memory.
"""

from __future__ import annotations

import argparse
import base64
import io
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def peak_mib() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main():
    import httpx
    from PIL import Image

    from semedit.app.server import create_app
    from semedit.models.backbone import image_size_of
    from semedit.service import get_backbone
    from semedit.world import render, sample_record

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=20)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--model", default="toon-64")
    args = p.parse_args()

    from semedit.app.local import serve_in_thread

    get_backbone(args.model)
    url, stop = serve_in_thread(create_app(args.model, Path(tempfile.mkdtemp()) / "data"))
    size = image_size_of(args.model)
    memory_before = peak_mib()

    def request(i: int):
        buffer = io.BytesIO()
        Image.fromarray(render(sample_record(i)).image).resize((size, size)).save(buffer, format="PNG")
        body = {"method": "sdedit", "image": "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode(),
                "source": "a cartoon person", "target": "a cartoon person in a santa claus costume",
                "settings": {"steps": args.steps}, "seed": i}
        r = httpx.post(f"{url}/api/edit", json=body, timeout=120)
        return r.status_code, r.json()

    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.requests) as pool:
        answers = list(pool.map(request, range(args.requests)))
    accepted = [a[1]["job"] for a in answers if a[0] == 200]
    busy = sum(a[0] == 503 and "busy" in a[1]["detail"] for a in answers)
    other = [a for a in answers if a[0] not in (200, 503)]
    states = {}
    for job in accepted:
        while (state := httpx.get(f"{url}/api/jobs/{job}").json()["state"]) in ("queued", "running"):
            time.sleep(0.1)
        states[job] = state
    wall = time.perf_counter() - t0
    history = {e["id"]: e["state"] for e in httpx.get(f"{url}/api/history").json()}
    print(f"{args.requests} concurrent requests: {len(accepted)} accepted, {busy} answered busy, "
          f"{len(other)} other answers {other[:2]}")
    print(f"accepted edits finished: {sum(s == 'done' for s in states.values())} done, "
          f"{sum(s != 'done' for s in states.values())} not; in the history: "
          f"{sum(j in history for j in accepted)} of {len(accepted)} (lost: {len(set(accepted) - set(history))})")
    print(f"wall {wall:.1f} s; peak memory {memory_before:.0f} MiB before the requests, {peak_mib():.0f} MiB after")
    stop()


if __name__ == "__main__":
    main()
