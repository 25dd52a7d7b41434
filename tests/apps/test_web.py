"""`facslab serve`: the page, the upload API's limits, and an end-to-end run in headless Chromium
with a fake webcam playing a video of a real photograph."""

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib

import pytest
import skimage.data
from PIL import Image

from facslab.synth.video import photo_frames, write_y4m

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def png_bomb(width=30000, height=30000) -> bytes:
    """A tiny PNG whose header claims width x height pixels (a decompression bomb)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b"")


def post(url, data, headers=None):
    request = urllib.request.Request(url, data=data, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture(scope="module")
def server(model_dir, emotion_model_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "facslab"), "serve", "--model",
                                str(model_dir), "--emotion_model", str(emotion_model_dir), "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(url + "/health", timeout=2)
            break
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                pytest.fail(process.stdout.read().decode()[-3000:])
            time.sleep(0.5)
    yield url
    process.terminate()
    process.wait(timeout=30)


@pytest.mark.slow
def test_the_page_says_when_the_model_has_only_seen_generated_faces(server):
    with urllib.request.urlopen(server + "/api/model", timeout=30) as response:
        info = json.loads(response.read())
    models = {m["task"]: m for m in info["models"]}  # what each model of the analyzer declares
    assert models["au"]["provenance"]["trained_on"] == "generated" and info["emoji"] is True
    assert "trained only on generated faces" in info["note"]
    assert models["emotion"]["provenance"]["trained_on"] == "real" and "happy" in models["emotion"]["classes"]
    assert "emotion_happy" in models["emotion"]["columns"] and "AU12_c" in models["au"]["columns"]
    with urllib.request.urlopen(server + "/", timeout=30) as response:
        assert 'id="model-note"' in response.read().decode()


def test_binds_to_localhost_by_default(server):
    assert server.startswith("http://127.0.0.1:")


def test_upload_api_answers_faces_and_refuses_bad_uploads(server):
    import io

    buffer = io.BytesIO()
    Image.fromarray(skimage.data.astronaut()).save(buffer, "PNG")
    status, data = post(server + "/api/analyze", buffer.getvalue(), {"x-filename": "astronaut.png"})
    assert status == 200 and len(data["faces"]) == 1 and data["faces"][0]["emoji"]
    assert data["faces"][0]["emotion"]["label"] == "happy"  # the real FER-2013 model beside the AUs
    assert Image.open(io.BytesIO(__import__("base64").b64decode(data["faces"][0]["aligned"]))).size == (32, 32)
    assert "saliency" not in data["faces"][0]  # overlays only when asked
    status, data = post(server + "/api/analyze", buffer.getvalue(), {"x-filename": "astronaut.png", "x-explain": "1"})
    looks = {s["task"]: s for s in data["faces"][0]["saliency"]}  # every model's overlay, at its own crop size
    assert status == 200 and looks["au"]["method"] == looks["emotion"]["method"] == "grad-cam"
    assert looks["emotion"]["target"] == "happy"  # the face's answer is what is explained
    sizes = {task: Image.open(io.BytesIO(__import__("base64").b64decode(s["overlay"]))).size for task, s in looks.items()}
    assert sizes["au"] == (32, 32) and sizes["emotion"] == (64, 64), sizes
    status, data = post(server + "/api/analyze", b"this is not an image" * 10)
    assert status == 415 and "not a readable image" in data["error"]
    status, data = post(server + "/api/analyze", png_bomb(30000, 30000))  # Pillow's own bomb guard
    assert status == 413 and "decompression bomb" in data["error"]
    status, data = post(server + "/api/analyze", png_bomb(6000, 6000))  # over the server's pixel limit
    assert status == 413 and "image too large (6000x6000" in data["error"]
    # an oversized upload is refused from its Content-Length, before its body is read
    import http.client

    connection = http.client.HTTPConnection(server.removeprefix("http://"), timeout=30)
    connection.putrequest("POST", "/api/analyze")
    connection.putheader("Content-Length", str(11 * 1024 * 1024))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and "upload too large" in json.loads(response.read())["error"]
    connection.close()
    status, data = post(server + "/api/analyze", b"")
    assert status == 415 and "empty" in data["error"]
    with urllib.request.urlopen(server + "/health", timeout=10) as response:  # still serving
        assert json.loads(response.read()) == {"status": "ok"}


def _pixel_limit_png() -> bytes:
    """A PNG of a few kilobytes that decodes to the server's pixel limit: the astronaut pasted on
    a flat 5000 x 5000 canvas, so the face is still there after shrinking."""
    import io

    from facslab.web.app import MAX_PIXELS

    side = int(MAX_PIXELS ** 0.5)
    canvas = Image.new("RGB", (side, side), (128, 128, 128))
    canvas.paste(Image.fromarray(skimage.data.astronaut()).resize((800, 800)), (1000, 1000))
    buffer = io.BytesIO()
    canvas.save(buffer, "PNG", optimize=False, compress_level=9)
    return buffer.getvalue()


def test_an_image_at_the_pixel_limit_is_shrunk_answered_in_time_and_the_server_stays_up(server):
    from facslab.web.app import ANALYSIS_PIXELS, MAX_PIXELS

    data = _pixel_limit_png()
    assert len(data) < 1_500_000
    start = time.perf_counter()
    status, body = post(server + "/api/analyze", data)
    seconds = time.perf_counter() - start
    assert status == 200, body
    assert body["width"] * body["height"] <= ANALYSIS_PIXELS < MAX_PIXELS  # detection saw the shrunk image
    assert len(body["faces"]) == 1  # and still found the face
    assert seconds < 10, f"{seconds:.1f} s for one upload"
    with urllib.request.urlopen(server + "/health", timeout=5) as response:
        assert response.status == 200


@pytest.mark.slow
def test_a_full_server_answers_503_and_keeps_serving(server):
    from concurrent.futures import ThreadPoolExecutor

    from facslab.web.app import MAX_IN_FLIGHT

    data = _pixel_limit_png()
    with ThreadPoolExecutor(max_workers=3 * MAX_IN_FLIGHT) as pool:
        statuses = [status for status, _ in pool.map(lambda _: post(server + "/api/analyze", data),
                                                      range(3 * MAX_IN_FLIGHT))]
    assert statuses.count(503) >= 1 and statuses.count(200) >= 1
    assert set(statuses) <= {200, 503}
    with urllib.request.urlopen(server + "/health", timeout=5) as response:
        assert response.status == 200  # the event loop was never blocked by decoding or analysis
    assert post(server + "/api/analyze", data)[0] == 200


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")
def test_the_page_end_to_end_in_headless_chromium(server, tmp_path):
    from playwright.sync_api import sync_playwright

    camera = write_y4m(tmp_path / "camera.y4m", photo_frames(skimage.data.astronaut(), 30, (640, 480)))
    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(photo)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-video-capture={camera}"])
        try:
            page = browser.new_page()
            page.goto(server)
            page.set_input_files("#file", str(photo))
            page.wait_for_selector("#results .face", timeout=60000)
            assert page.locator("#results .face").count() == 1
            emoji = page.locator("#results .emoji").first.inner_text()
            assert emoji.strip() in "😃😄😁🙂😊😐😮😲😣😠😖😫😤😉"
            assert page.locator("#results img").first.get_attribute("src").startswith("data:image/png;base64,")
            assert "emotion: happy" in page.locator("#results .emotion").first.inner_text()
            assert page.locator("#results img.saliency").count() == 0
            page.check("#explain")  # the overlays beside the answer
            page.set_input_files("#file", [])
            page.set_input_files("#file", str(photo))
            page.wait_for_selector("#results img.saliency", timeout=60000)
            titles = [page.locator("#results img.saliency").nth(k).get_attribute("title") for k in range(2)]
            assert "emotion: grad-cam of happy" in titles and any(t.startswith("au: grad-cam of AU") for t in titles)
            page.screenshot(path=str(tmp_path / "upload.png"))
            page.click("#live-start")
            page.wait_for_function("Number(document.getElementById('live-count').textContent) >= 3", timeout=90000)
            assert page.locator("#live-emoji").inner_text().strip() in "😃😄😁🙂😊😐😮😲😣😠😖😫😤😉"
            assert page.locator("#live-emoji").inner_text().strip() != ""
            assert "happy" in page.locator("#live-info").inner_text()
            # the chart over time: a line per emotion class drawn on the canvas, each named in the legend
            assert page.locator("#live-chart-box").is_visible()
            drawn = page.evaluate("""() => { const c = document.getElementById('live-chart');
                const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }""")
            assert drawn >= 10, drawn  # three answers: short lines (an undrawn canvas has none)
            legend = page.locator("#live-legend").inner_text()
            assert all(name in legend for name in ("angry", "happy", "neutral")), legend
            page.click("#live-stop")
        finally:
            browser.close()


def test_the_websocket_stream_tracks_between_detections_like_facslab_live(server):
    """The page's live mode runs the tracker of `facslab live`: a full detection on the first frame
    and every 10th, correlation tracking in between, and the face found in every frame."""
    import asyncio
    import io

    import websockets

    frames = []
    for frame in photo_frames(skimage.data.astronaut(), 12, (640, 480)):
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, "JPEG", quality=85)
        frames.append(buffer.getvalue())

    async def stream() -> list[dict]:
        answers = []
        async with websockets.connect(server.replace("http://", "ws://") + "/ws", open_timeout=30) as socket:
            for data in frames:
                await socket.send(data)
                answers.append(json.loads(await asyncio.wait_for(socket.recv(), timeout=60)))
        return answers

    answers = asyncio.run(stream())
    assert [len(a["faces"]) for a in answers] == [1] * 12, answers
    assert [a["frame"] for a in answers] == list(range(12))
    assert [a["detections"] for a in answers] == [1] * 10 + [2] * 2  # detections on frames 0 and 10 only
    # the largest (here the only) face's emotion probabilities, for the page's chart over time
    for answer in answers:
        probabilities = answer["faces"][0]["emotion"]["probabilities"]
        assert answer["chart"]["names"] == list(probabilities) and answer["chart"]["range"] == [0.0, 1.0]
        assert answer["chart"]["values"] == list(probabilities.values())
        assert answer["chart"]["face_id"] == answer["faces"][0]["face_id"] == 0
