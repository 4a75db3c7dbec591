"""Running the app on this machine for scripts and tests: served from a thread on a free port, and
Debian's chromium launched headless as the app's tests, screenshots and load checks use it."""

from __future__ import annotations

import shutil
import socket
import threading
import time

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"]  # no calls out of a machine without internet


def serve_in_thread(app, host: str = "127.0.0.1"):
    """`app` served by uvicorn on a free port: (its URL, a function that stops it)."""
    import uvicorn

    with socket.socket() as s:
        s.bind((host, 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)

    def stop():
        server.should_exit = True
        thread.join(timeout=10)

    return f"http://{host}:{port}", stop


def launch_chromium(playwright):
    """Debian's chromium (not a browser Playwright would download), headless."""
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        raise FileNotFoundError("no chromium: install Debian's chromium package (scripts/test.sh does)")
    return playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
