"""Fetching a dataset that is released as a list of image URLs (EmotioNet), resumably.

``download_images(urls, out)``: every URL is fetched once into ``out/images/<image_name(url)>``
(``facslab.formats.emotionet``), whose type is read from the content: JPEG is kept as it came,
PNG, GIF and WebP become JPEG, anything else is refused. Files already there are skipped, so a
rerun fetches only what failed or was never fetched. Retries with backoff (connection errors,
429 and 5xx answers) are urllib3's ``Retry``; ``workers`` threads fetch at once, each request
bounded by ``timeout``. Every failure is classified (HTTP 404, other 4xx, 5xx, too many
redirects, unknown host, time-out, connection reset, refused, no route, certificate, truncated,
not an image) and written to ``out/errors.csv`` (url, error, message); the summary counts them.
"""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import requests
from PIL import Image, UnidentifiedImageError
from requests.adapters import HTTPAdapter
from tqdm import tqdm
from urllib3.util.retry import Retry

from facslab.formats.emotionet import ERRORS, IMAGES, MAPPING, find_sheet, image_name, mapping_table, read_sheet

#: what each failure is counted as, in the order the summary lists them
ERROR_CLASSES = ("HTTP 404", "other 4xx", "5xx", "too many redirects", "unknown host", "time-out", "connection reset",
                 "refused", "no route", "certificate", "truncated", "not an image", "other")
KEPT_FORMATS = ("JPEG",)
CONVERTED_FORMATS = ("PNG", "GIF", "WEBP", "BMP", "TIFF")


class FetchError(Exception):
    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass
class DownloadSummary:
    fetched: int = 0
    already_there: int = 0
    converted: int = 0
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (url, error class, message)

    def table(self) -> pd.DataFrame:
        counts = pd.Series([kind for _, kind, _ in self.failures], dtype=object).value_counts()
        rows = [("fetched", self.fetched), ("of them converted to JPEG", self.converted),
                ("already there", self.already_there)]
        rows += [(kind, int(counts.get(kind, 0))) for kind in ERROR_CLASSES if counts.get(kind, 0)]
        return pd.DataFrame(rows, columns=["outcome", "images"])

    def __str__(self) -> str:
        return "\n".join(f"{outcome:>26}  {count}" for outcome, count in self.table().itertuples(index=False))


def _session(retries: int, backoff: float) -> requests.Session:
    retry = Retry(total=retries, connect=retries, read=retries, status=retries, redirect=5, backoff_factor=backoff,
                  status_forcelist=(429, 500, 502, 503, 504), allowed_methods=("GET",), raise_on_status=False,
                  respect_retry_after_header=False)
    session = requests.Session()
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    session.headers["User-Agent"] = "facslab-download (research dataset fetcher)"
    return session


def _connection_kind(error: Exception) -> str:
    text = repr(error).lower()
    for words, kind in ((("name or service not known", "nodename nor servname", "name resolution",
                          "getaddrinfo failed", "no address associated"), "unknown host"),
                        (("connection refused",), "refused"), (("no route to host", "network is unreachable"), "no route"),
                        (("connection reset", "connection aborted", "remote end closed"), "connection reset"),
                        (("timed out", "timeout"), "time-out")):
        if any(w in text for w in words):
            return kind
    return "other"


def fetch(session: requests.Session, url: str, timeout: float) -> bytes:
    """The body of ``url``, or FetchError with its class."""
    try:
        response = session.get(url, timeout=timeout, allow_redirects=True)
        if response.status_code >= 400:
            kind = "HTTP 404" if response.status_code == 404 else "5xx" if response.status_code >= 500 else "other 4xx"
            raise FetchError(kind, f"HTTP {response.status_code} {response.reason}")
        return response.content
    except requests.exceptions.SSLError as error:
        raise FetchError("certificate", str(error)[:300]) from None
    except requests.exceptions.TooManyRedirects as error:
        raise FetchError("too many redirects", str(error)[:300]) from None
    except requests.exceptions.Timeout as error:
        raise FetchError("time-out", str(error)[:300]) from None
    except (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError) as error:
        raise FetchError("truncated", str(error)[:300]) from None
    except requests.exceptions.RetryError as error:  # retries spent on 5xx answers
        raise FetchError("5xx", str(error)[:300]) from None
    except requests.exceptions.ConnectionError as error:
        raise FetchError(_connection_kind(error), str(error)[:300]) from None


def as_jpeg(content: bytes) -> tuple[bytes, bool]:
    """(JPEG bytes, whether converted): the type comes from the content, never the URL."""
    try:
        with Image.open(io.BytesIO(content)) as image:
            kind = image.format
            image.load()  # a truncated file fails here, not later in training
            if kind in KEPT_FORMATS:
                return content, False
            if kind not in CONVERTED_FORMATS:
                raise FetchError("not an image", f"a {kind} image, not one of JPEG, {', '.join(CONVERTED_FORMATS)}")
            image.seek(0)  # a GIF's first frame
            out = io.BytesIO()
            image.convert("RGB").save(out, format="JPEG", quality=95)
            return out.getvalue(), True
    except UnidentifiedImageError:
        start = content[:60].decode("utf-8", "replace").strip().replace("\n", " ")
        raise FetchError("not an image", f"{len(content)} bytes that are no image ({start!r}...)") from None
    except (OSError, SyntaxError) as error:
        raise FetchError("truncated", f"the image does not decode ({error})") from None


def download_images(urls: list[str], out: str | Path, workers: int = 8, timeout: float = 20.0, retries: int = 2,
                    backoff: float = 0.5, progress: bool = True) -> DownloadSummary:
    out = Path(out)
    (out / IMAGES).mkdir(parents=True, exist_ok=True)
    mapping_table(urls).to_csv(out / MAPPING, index=False)
    summary, lock, local = DownloadSummary(), threading.Lock(), threading.local()
    todo = [u for u in urls if not (out / IMAGES / image_name(u)).is_file()]
    summary.already_there = len(urls) - len(todo)

    def one(url: str) -> None:
        if not hasattr(local, "session"):
            local.session = _session(retries, backoff)
        target = out / IMAGES / image_name(url)
        try:
            data, converted = as_jpeg(fetch(local.session, url, timeout))
        except FetchError as error:
            with lock:
                summary.failures.append((url, error.kind, str(error)))
            return
        partial = target.with_name(f".{target.name}.part")
        partial.write_bytes(data)
        partial.replace(target)  # a killed download never leaves half a file under the final name
        with lock:
            summary.fetched += 1
            summary.converted += converted

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for _ in tqdm(pool.map(one, todo), total=len(todo), desc="images", disable=not progress):
            pass
    failures = pd.DataFrame(summary.failures, columns=["url", "error", "message"])
    failures.to_csv(out / ERRORS, index=False)
    return summary


def download_emotionet(sheet: str | Path, out: str | Path, **options) -> DownloadSummary:
    """The images of an EmotioNet sheet into ``out``, with the sheet and the URL -> file mapping."""
    sheet = Path(sheet)
    if sheet.is_dir():
        sheet = find_sheet(sheet)
    table = read_sheet(sheet)  # a sheet to fix is said before anything is fetched
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if sheet.resolve().parent != out.resolve():
        (out / sheet.name).write_bytes(sheet.read_bytes())
    return download_images(list(table["url"]), out, **options)
