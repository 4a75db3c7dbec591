"""Screenshots of the web app's views for docs/app/ (README, docs/app.md), taken in Debian's chromium on
the embedded toon-64:

    .venv/bin/python scripts/app_screenshots.py [--out docs/app]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def main():
    from playwright.sync_api import sync_playwright

    from semedit.app.local import launch_chromium, serve_in_thread
    from semedit.app.server import create_app
    from semedit.service import get_backbone

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=Path("docs/app"))
    out = p.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp())
    get_backbone("toon-64")
    url, _ = serve_in_thread(create_app("toon-64", work / "data"))
    with sync_playwright() as pw:
        browser = launch_chromium(pw)
        page = browser.new_page(viewport={"width": 1500, "height": 1050})
        page.goto(url)
        page.wait_for_selector("#method option", state="attached")
        page.screenshot(path=out / "1_start.png")

        def wait_done(method):
            page.wait_for_function(f"document.getElementById('status').textContent.startsWith('{method}: done')",
                                   timeout=300_000)

        page.fill("#toon-seed", "3")
        page.click("#random-toon")
        page.wait_for_function("document.getElementById('input-message').textContent.startsWith('toon')")
        page.select_option("#method", "ito")
        page.select_option("#change-attribute", "hair_colour")
        page.select_option("#change-value", "red")
        page.click("#add-change")
        page.click("#run")
        page.wait_for_function("document.getElementById('status').textContent.includes('running')")
        time.sleep(2)
        page.screenshot(path=out / "2_progress.png")
        wait_done("ito")
        page.screenshot(path=out / "3_text_edit.png")

        page.select_option("#method", "diffedit")
        page.select_option("#change-attribute", "expression")
        page.select_option("#change-value", "laughing")
        page.click("#clear-changes")
        page.click("#add-change")
        page.check("#paint-mask")
        box = page.locator("#mask-canvas").bounding_box()
        page.mouse.move(box["x"] + 90, box["y"] + 120)
        page.mouse.down()
        page.mouse.move(box["x"] + 170, box["y"] + 200, steps=10)
        page.mouse.up()
        page.click("#run")
        wait_done("diffedit")
        page.screenshot(path=out / "4_mask_edit.png")

        page.uncheck("#paint-mask")
        page.click("#clear-mask")
        page.fill("#head-x", "4")
        page.click("#pose-edit")
        page.click("#run")
        wait_done("ito")
        page.screenshot(path=out / "5_pose_edit.png")

        page.click("#clear-changes")
        page.select_option("#change-attribute", "costume")
        page.select_option("#change-value", "santa")
        page.click("#add-change")
        page.click("#compare")
        page.wait_for_function("!document.getElementById('compare').disabled", timeout=600_000)
        page.screenshot(path=out / "6_compare.png", full_page=True)

        bad = work / "photo.png"
        Image.fromarray(np.full((256, 256, 3), 120, np.uint8)).save(bad)
        page.set_input_files("#upload", str(bad))
        page.wait_for_function("document.getElementById('input-message').textContent.includes('refused')")
        page.screenshot(path=out / "7_bad_upload.png")

        page.goto(url)
        page.wait_for_selector("#history .past")
        page.locator("#history .past").last.click()
        page.wait_for_function("document.getElementById('input-message').textContent.startsWith('reopened')")
        page.screenshot(path=out / "8_history.png", full_page=True)
        browser.close()
    print(f"wrote {', '.join(sorted(p.name for p in out.glob('*.png')))} to {out}")


if __name__ == "__main__":
    main()
