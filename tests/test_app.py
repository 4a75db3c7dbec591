"""The web app: its endpoints on the tiny model, and the page driven in a real browser (Debian's
Chromium through Playwright): make a toon, edit it by attributes, by a painted mask, cancel an edit."""

import base64
import io
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from semedit.methods import REGISTRY

SIZE = 16


@pytest.fixture(scope="module")
def pose_net(tiny_folder, tmp_path_factory):
    """A (random) pose ControlNet for the tiny model, so that pose edits run."""
    from diffusers import ControlNetModel, UNet2DConditionModel

    path = tmp_path_factory.mktemp("cn") / "pose"
    ControlNetModel.from_unet(UNet2DConditionModel.from_pretrained(tiny_folder / "unet"),
                              conditioning_embedding_out_channels=(8, 8)).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tmp_path_factory.mktemp("app-data")


@pytest.fixture(scope="module")
def app(tiny_folder, pose_net, data):
    from semedit.app.server import create_app

    return create_app(str(tiny_folder), data, controlnets={"pose": str(pose_net)})


@pytest.fixture(scope="module")
def client(app):
    return TestClient(app)


def _png(array) -> str:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _wait(client, job, states=("done", "failed", "cancelled")):
    for _ in range(600):
        state = client.get(f"/api/jobs/{job}").json()
        if state["state"] in states:
            return state
        time.sleep(0.05)
    raise AssertionError(f"job {job} did not finish: {state}")


def test_every_method_and_setting_comes_from_the_registry(client):
    info = client.get("/api/info").json()
    assert info["image_size"] == SIZE and {m["name"] for m in info["methods"]} == set(REGISTRY)
    ito = next(m for m in info["methods"] if m["name"] == "ito")
    lam = next(s for s in ito["settings"] if s["name"] == "lam")
    assert (lam["default"], lam["lo"], lam["hi"]) == (0.6, 0, 1) and "Eq. 6" in lam["help"]
    assert ito["mask"] and ito["layout"] and "hair_colour" in info["attributes"]


def test_an_edit_runs_to_a_result_with_provenance_and_a_download(client):
    toon = client.post("/api/toon", json={"seed": 1}).json()
    started = client.post("/api/edit", json={"method": "sdedit", "image": toon["image"], "changes": {"costume": "santa"},
                                             "settings": {"steps": 4}, "seed": 3})
    assert started.status_code == 200, started.text
    done = _wait(client, started.json()["job"])
    assert done["state"] == "done" and done["evaluations"] == 4  # 2 steps x 2 guidance branches
    assert done["result"]["provenance"]["target_prompt"].endswith("santa claus costume, " +
                                                                  toon["description"].rsplit(", ", 1)[1])
    png = client.get(f"/api/jobs/{done['job']}/result.png")
    assert png.headers["content-type"] == "image/png"
    assert '"method": "sdedit"' in Image.open(io.BytesIO(png.content)).text["semedit"]


@pytest.mark.parametrize("body, message", [
    ({"method": "nope"}, "unknown method"),
    ({"method": "sdedit", "settings": {"strength": 2}}, "strength must be in"),
    ({"method": "diffedit", "target": "x"}, "source prompt"),
    ({"method": "sdedit", "source": "x", "target": "x"}, "nothing to edit"),
    ({"method": "sdedit", "source": "x", "target": "y", "mask": "FULL"}, "sdedit takes no mask"),
    ({"method": "sdedit", "source": "x", "target": "y", "image": "BIG"}, f"the model needs {SIZE}x{SIZE}"),
    ({"method": "sdedit", "source": "x", "target": "y", "image": "data:image/png;base64,@@"}, "not a base64"),
    ({"method": "pixelguide", "source": "x", "target": "y"}, "pixelguide edits by segmentation map"),
])
def test_bad_edits_are_refused_at_once(client, body, message):
    pictures = {"FULL": _png(np.full((SIZE, SIZE), 255, np.uint8)), "BIG": _png(np.zeros((64, 64, 3), np.uint8))}
    body = {"image": _png(np.zeros((SIZE, SIZE, 3), np.uint8)), **body}
    body = {k: pictures.get(v, v) if isinstance(v, str) else v for k, v in body.items()}
    r = client.post("/api/edit", json=body)
    assert r.status_code == 400 and message in r.json()["detail"], r.text


def test_the_outline_of_a_picture_is_its_edge_map(client):
    from semedit.world import scribble_map

    image = np.random.default_rng(3).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    out = client.post("/api/scribble", json={"image": _png(image)}).json()["scribble"]
    edges = np.asarray(Image.open(io.BytesIO(base64.b64decode(out.split(",", 1)[1]))))
    assert np.array_equal(edges[..., 0], scribble_map(image))
    assert client.post("/api/scribble", json={"image": _png(np.zeros((64, 64, 3), np.uint8))}).status_code == 400


def test_a_cancelled_edit_stops_and_keeps_nothing(client):
    body = {"method": "ito", "image": _png(np.zeros((SIZE, SIZE, 3), np.uint8)), "source": "a man",
            "target": "a woman", "settings": {"steps": 200, "mask_samples": 2}}
    job = client.post("/api/edit", json=body).json()["job"]
    _wait(client, job, states=("running",))
    client.post(f"/api/jobs/{job}/cancel")
    state = _wait(client, job)
    assert state["state"] == "cancelled" and state["result"] is None
    assert client.get(f"/api/jobs/{job}/result.png").status_code == 409


def test_a_full_queue_answers_busy_and_no_path_is_reachable(tiny_folder, tmp_path):
    from semedit.app.server import create_app

    client = TestClient(create_app(str(tiny_folder), tmp_path / "data", max_queue=1))
    body = {"method": "ito", "image": _png(np.zeros((SIZE, SIZE, 3), np.uint8)), "source": "a man",
            "target": "a woman", "settings": {"steps": 200, "mask_samples": 2}}
    first = client.post("/api/edit", json=body).json()["job"]
    busy = client.post("/api/edit", json=body)
    assert busy.status_code == 503 and "busy" in busy.json()["detail"]
    client.post(f"/api/jobs/{first}/cancel")
    for bad in ("../../etc/passwd", "..%2F..%2Fhistory.sqlite", "0123456789abcdef0"):
        assert client.get(f"/api/history/{bad}").status_code == 404
    big = client.post("/api/edit", content=b"x" * (17 * 2**20), headers={"Content-Type": "application/json"})
    assert big.status_code == 413
    _wait(client, first)


def test_the_history_survives_a_restart(tiny_folder, pose_net, data, client):
    from semedit.app.server import create_app

    toon = client.post("/api/toon", json={"seed": 2}).json()
    job = client.post("/api/edit", json={"method": "sdedit", "image": toon["image"], "changes": {"costume": "sheep"},
                                         "settings": {"steps": 4}}).json()["job"]
    _wait(client, job)
    again = TestClient(create_app(str(tiny_folder), data, controlnets={"pose": str(pose_net)}))
    listed = {e["id"]: e for e in again.get("/api/history").json()}
    assert listed[job]["state"] == "done" and listed[job]["evaluations"] == 4
    past = again.get(f"/api/history/{job}").json()
    assert past["request"]["settings"] == {"steps": 4} and past["request"]["changes"] == {"costume": "sheep"}
    assert past["record"]["costume"] != "sheep" and past["result"]["image"].startswith("data:image/png")
    assert again.get(f"/api/jobs/{job}/result.png").status_code == 200


# --- in a real browser --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(app):
    from semedit.app.local import serve_in_thread

    url, stop = serve_in_thread(app)
    yield url
    stop()


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    from semedit.app.local import launch_chromium

    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server)
        page.wait_for_selector("#method option", state="attached")
        yield page
        browser.close()
        assert not errors, errors


def _result_cards(page):
    return page.locator("#results .card")


def test_the_page_makes_a_toon_and_edits_it_by_attributes(page):
    _new_toon(page, 0)
    page.wait_for_function("document.getElementById('input-message').textContent.startsWith('toon')")
    page.select_option("#method", "sdedit")
    page.click("#settings-box summary")
    page.fill("[data-setting=steps]", "4")
    page.select_option("#change-attribute", "costume")
    page.select_option("#change-value", "royal")
    page.click("#add-change")
    page.click("#run")
    page.wait_for_selector("#results .card[data-method=sdedit] img.result")
    assert "done" in page.text_content("#status")
    card = _result_cards(page).first
    assert card.locator("a.download").get_attribute("href").endswith("/result.png")
    card.locator("input[type=range]").fill("20")  # the before / after slider
    assert "20%" in card.locator("img.after").get_attribute("style")


def test_the_page_edits_inside_a_painted_mask(page):
    page.select_option("#method", "diffedit")
    page.fill("[data-setting=steps]", "4")
    page.check("#paint-mask")
    box = page.locator("#mask-canvas").bounding_box()
    page.mouse.move(box["x"] + 60, box["y"] + 60)
    page.mouse.down()
    page.mouse.move(box["x"] + 200, box["y"] + 200, steps=8)
    page.mouse.up()
    page.click("#run")
    page.wait_for_selector("#results .card[data-method=diffedit] img.result")
    names = _result_cards(page).first.locator(".thumbs figcaption").all_text_contents()
    assert "mask" in names and _result_cards(page).count() == 2  # side by side with the sdedit result


def _new_toon(page, seed):
    page.evaluate("document.getElementById('input-message').textContent = ''")
    page.fill("#toon-seed", str(seed))
    page.click("#random-toon")


def test_the_page_edits_a_pose(page):
    _new_toon(page, 5)
    page.wait_for_function("document.getElementById('input-message').textContent.startsWith('toon')")
    page.fill("#head-x", "4")
    page.click("#pose-edit")  # moves the head: a pose edit with a layout method
    assert page.input_value("#layout") == "pose" and page.input_value("#method") == "ito"
    page.fill("[data-setting=steps]", "4")
    page.fill("[data-setting=mask_samples]", "2")
    page.click("#run")
    page.wait_for_selector("#results .card[data-method=ito] img.result")
    assert page.text_content("#changes").startswith("changes: head_x=4")


def test_the_page_takes_an_upload_and_says_why_a_bad_one_is_refused(page, tmp_path):
    good, bad = tmp_path / "good.png", tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)).save(good)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(bad)
    page.set_input_files("#upload", str(bad))
    page.wait_for_function("document.getElementById('input-message').textContent.includes('will be refused')")
    page.select_option("#method", "sdedit")
    page.fill("#source", "a cartoon man")
    page.fill("#target", "a cartoon woman")
    page.click("#run")
    page.wait_for_function("document.getElementById('status').textContent.includes('the model needs')")
    page.set_input_files("#upload", str(good))
    page.wait_for_function("document.getElementById('input-message').textContent.includes('uploaded good.png')")
    page.click("#run")
    page.wait_for_function("document.getElementById('status').textContent.includes('sdedit: done')")
    page.click("#outline")  # the uploaded picture's own outline, to draw a new one from
    page.wait_for_function("""(() => { const c = document.getElementById('scribble-canvas');
        return c.getContext('2d').getImageData(0, 0, c.width, c.height).data.some((v, i) => i % 4 < 3 && v > 0); })()""")


def test_the_page_cancels_an_edit_and_says_so(page):
    page.uncheck("#paint-mask")
    page.select_option("#method", "ito")
    page.click("#settings-box summary") if not page.is_visible("[data-setting=steps]") else None
    page.fill("[data-setting=steps]", "300")
    page.fill("[data-setting=mask_samples]", "2")
    page.click("#run")
    page.wait_for_function("document.getElementById('status').textContent.includes('running')")
    page.click("#cancel")
    page.wait_for_function("document.getElementById('status').textContent.includes('cancelled')")
    assert page.is_enabled("#run")


def test_the_page_shows_the_history_after_a_restart(page, tiny_folder, pose_net, data):
    from semedit.app.local import serve_in_thread
    from semedit.app.server import create_app

    done = page.locator("#history .past").all_text_contents()
    assert sum("· done" in t for t in done) >= 4
    url, stop = serve_in_thread(create_app(str(tiny_folder), data, controlnets={"pose": str(pose_net)}))  # a new server
    page.goto(url)
    page.wait_for_selector("#history .past")
    assert page.locator("#history .past").all_text_contents()[:len(done)] == done
    page.locator("#history .past", has_text="diffedit").first.click()
    page.wait_for_function("document.getElementById('input-message').textContent.startsWith('reopened')")
    assert page.input_value("#method") == "diffedit" and page.input_value("[data-setting=steps]") == "4"
    page.wait_for_selector("#results .card[data-method=diffedit] img.result")
    stop()
