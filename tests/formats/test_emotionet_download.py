"""EmotioNet: the released sheet read as a sheet, and `facslab download emotionet` against a local
HTTP server on 127.0.0.1 (never the internet) that serves every case the seed's download met."""

from __future__ import annotations

import csv
import io
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from facslab.au import AU_INDEX
from facslab.badinput import BadInputError
from facslab.formats.emotionet import image_name, model_labels, read_sheet

from conftest import run_cli


def _image(kind: str, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    picture = Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8))
    out = io.BytesIO()
    picture.save(out, format=kind)
    return out.getvalue()


class Server(BaseHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, *args):
        pass

    def _send(self, status: int, body: bytes = b"", kind: str = "image/jpeg", headers: dict | None = None):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 (http.server's name)
        Server.requests.append(self.path)
        path = self.path
        if path.startswith("/img/a.jpg"):
            self._send(200, _image("JPEG", 1))
        elif path.startswith("/img/b.png"):
            self._send(200, _image("PNG", 2), "image/png")
        elif path.startswith("/img/c.gif"):
            self._send(200, _image("GIF", 3), "image/gif")
        elif path.startswith("/img/d.webp"):
            self._send(200, _image("WEBP", 4), "image/webp")
        elif path.startswith("/img/with,comma.jpg"):
            self._send(200, _image("JPEG", 5 if "200" in path else 6))
        elif path == "/moved":
            self._send(302, headers={"Location": "/img/a.jpg?moved"})
        elif path == "/loop":
            self._send(302, headers={"Location": "/loop"})
        elif path == "/missing.jpg":
            self._send(404, b"not found", "text/plain")
        elif path == "/gone.jpg":
            self._send(410, b"gone", "text/plain")
        elif path == "/error.jpg":
            self._send(500, b"oops", "text/plain")
        elif path == "/busy.jpg":
            self._send(503, b"busy", "text/plain")
        elif path == "/slow.jpg":
            time.sleep(3)
            self._send(200, _image("JPEG", 7))
        elif path == "/truncated.jpg":
            body = _image("JPEG", 8)
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 3])  # then the connection closes
            self.close_connection = True
        elif path == "/page.jpg":
            self._send(200, b"<html><body>Sorry, this image was removed</body></html>", "text/html")
        else:
            self._send(404)


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Server)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    Server.requests = []
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _write_sheet(path: Path, urls: list[str], xlsx: bool) -> None:
    rng = np.random.default_rng(0)
    header = ["URL", "'AU 1'", "'AU 12'", "'AU 23'", "'AU 24'", "'AU 61'"]
    rows = [[url, *rng.choice([0, 1, 999], size=len(header) - 1).tolist()] for url in urls]
    if xlsx:
        pd.DataFrame(rows, columns=header).to_excel(path, index=False)
    else:
        with open(path, "w", newline="") as handle:
            csv.writer(handle).writerows([header, *rows])  # a URL with a comma is quoted, as in a real export


def test_the_sheet_is_read_as_a_sheet_with_999_unknown_and_merged_aus(tmp_path):
    urls = ["http://x.org/a,b.jpg", "http://x.org/c.jpg?size=200x200", "http://x.org/c.jpg?size=100x100"]
    for xlsx in (False, True):
        sheet = tmp_path / ("sheet.xlsx" if xlsx else "EmotioNet_FACS_aws_2020_24600.csv")
        _write_sheet(sheet, urls, xlsx)
        table = read_sheet(sheet)
        assert list(table["url"]) == urls  # the comma did not shift a column
        assert set(table.columns) == {"url", 1, 12, 23, 24, 61}  # AU 61 kept in the raw table
        raw = pd.read_csv(sheet) if not xlsx else pd.read_excel(sheet)
        assert (table[12].isna() == (raw["'AU 12'"] == 999)).all()
        labels = model_labels(table)
        assert labels.shape == (3, 18) and np.isnan(labels[:, AU_INDEX["5"]]).all()  # not in the sheet: unknown
        merged = labels[:, AU_INDEX["23/24"]]
        for k in range(3):
            pair = [raw["'AU 23'"][k], raw["'AU 24'"][k]]
            want = 1.0 if 1 in pair else 0.0 if pair == [0, 0] else np.nan
            assert merged[k] == want or (np.isnan(want) and np.isnan(merged[k]))
    names = [image_name(u) for u in urls]
    assert len(set(names)) == 3 and all(len(n) < 90 and n.endswith(".jpg") for n in names)
    assert len(image_name("http://x.org/" + "a" * 400 + ".png")) < 90
    broken = tmp_path / "broken.csv"
    broken.write_text("URL,'AU 1'\nhttp://x.org/a.jpg,7\n")
    with pytest.raises(BadInputError, match=r"row 2, column 'AU 1': '7' is not 0, 1 or 999"):
        read_sheet(broken)


@pytest.mark.slow
def test_download_classifies_every_failure_converts_to_jpeg_and_resumes(server, tmp_path):
    cases = {"/img/a.jpg": "fetched", "/img/b.png": "fetched", "/img/c.gif": "fetched", "/img/d.webp": "fetched",
             "/img/with,comma.jpg?size=200x200": "fetched", "/img/with,comma.jpg?size=100x100": "fetched",
             "/moved": "fetched", "/loop": "too many redirects", "/missing.jpg": "HTTP 404", "/gone.jpg": "other 4xx",
             "/error.jpg": "5xx", "/busy.jpg": "5xx", "/slow.jpg": "time-out", "/truncated.jpg": "truncated",
             "/page.jpg": "not an image"}
    urls = [server + path for path in cases] + ["http://127.0.0.1:9/closed.jpg"]  # port 9: nothing listens
    sheet = tmp_path / "EmotioNet_FACS_aws_2020_24600.xlsx"
    _write_sheet(sheet, urls, xlsx=True)
    out = tmp_path / "emotionet"
    done = run_cli("download", "emotionet", str(sheet), str(out), "--timeout", "1", "--retries", "1", "--quiet")
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Retrying" not in done.stderr and "Traceback" not in done.stderr, done.stderr[-2000:]  # retries are counted, not narrated
    errors = pd.read_csv(out / "errors.csv")
    got = dict(zip(errors["url"], errors["error"]))
    for path, outcome in cases.items():
        if outcome == "fetched":
            assert server + path not in got, (path, got.get(server + path))
            file = out / "images" / image_name(server + path)
            with Image.open(file) as image:
                assert image.format == "JPEG"
        else:
            assert got[server + path] == outcome, (path, got[server + path])
    assert got["http://127.0.0.1:9/closed.jpg"] == "refused"
    assert "fetched  7" in done.stdout and "of them converted to JPEG  3" in done.stdout
    assert "5xx  2" in done.stdout and "HTTP 404  1" in done.stdout, done.stdout
    assert Server.requests.count("/busy.jpg") == 2  # retried once, with backoff
    mapping = pd.read_csv(out / "mapping.csv")
    assert list(mapping["url"]) == urls and (out / sheet.name).is_file()

    Server.requests = []
    again = run_cli("download", "emotionet", str(out / sheet.name), str(out), "--timeout", "1", "--retries", "0", "--quiet")
    assert again.returncode == 1 and "already there  7" in again.stdout, again.stdout
    fetched = {p for p, outcome in cases.items() if outcome == "fetched"}
    assert not fetched & set(Server.requests)  # a rerun asks only for what failed
    assert "/missing.jpg" in Server.requests
