"""EmotioNet's manually annotated subset, as released, and the folder a download of it leaves.

The release is a sheet, ``EmotioNet_FACS_aws_2020_24600.csv`` or the ``.xlsx`` it also comes as: a
``URL`` column, then one column per AU whose name may carry literal quotes (``'AU 1'``); values 1
(present), 0 (absent) and 999 (not coded: unknown, masked in the loss and the metrics, as BP4D's 9).
About 60 AUs are coded; those outside the project's 18 stay in the raw table and are not trained.
Some URLs contain commas, so the sheet is read as a sheet (pandas' CSV or Excel reader, which
honour quoting), never by splitting lines on commas. (Layout as read by cosanlab/py-feat's
``scripts/extract_au_training_features.py``; see docs/data.md.)

The images are not in the release: ``facslab download emotionet SHEET OUT`` fetches them into
``OUT/images/`` under ``image_name(url)`` and writes ``OUT/mapping.csv`` (``url,file``) beside them;
the sheet is copied to ``OUT/`` as well, so ``OUT`` is a complete copy.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pandas as pd

from facslab.au import FACS_CODE_TO_INDEX, NUM_AUS
from facslab.badinput import BadInputError, MissingInputError, read_csv

SHEET = "EmotioNet_FACS_aws_2020_24600.csv"
NOT_CODED = 999
IMAGES, MAPPING, ERRORS = "images", "mapping.csv", "errors.csv"
_AU_COLUMN = re.compile(r"^AU\s*(\d+)$")
#: longest file stem kept from a URL; the digest after it keeps names distinct
STEM_LENGTH = 60


def image_name(url: str) -> str:
    """The file an image URL is saved as: a readable stem from its path, then a digest of the whole
    URL (query included: ``?size=200x200`` and ``?size=100x100`` are two files), so distinct URLs
    never share a name and no name exceeds ~80 characters. Always ``.jpg`` (downloads are stored as
    JPEG)."""
    stem = Path(unquote(urlsplit(url).path)).stem
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._")[:STEM_LENGTH] or "image"
    return f"{stem}-{hashlib.sha256(url.encode()).hexdigest()[:16]}.jpg"


def find_sheet(root: str | Path) -> Path:
    """The sheet of a copy: the release's name, or the one EmotioNet*.csv / .xlsx in ``root``."""
    root = Path(root)
    if (root / SHEET).is_file():
        return root / SHEET
    found = sorted(p for p in root.glob("EmotioNet*") if p.suffix.lower() in (".csv", ".xlsx"))
    if len(found) != 1:
        raise MissingInputError(root, f"no EmotioNet sheet ({SHEET} or one EmotioNet*.csv / .xlsx)" if not found
                                else f"{len(found)} EmotioNet sheets; keep one")
    return found[0]


def read_sheet(path: str | Path) -> pd.DataFrame:
    """The sheet as a table: ``url``, then one float column per AU named by its FACS code
    (``AU 1`` -> ``1``), NaN where not coded (999)."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(path, "EmotioNet sheet not found")
    if path.suffix.lower() == ".xlsx":
        try:
            table = pd.read_excel(path, dtype=str)
        except Exception as error:  # openpyxl raises several kinds for a damaged workbook
            raise BadInputError(path, f"not a readable .xlsx workbook ({type(error).__name__}: {error})") from None
    else:
        table = read_csv(path, dtype=str, keep_default_na=False)
    table.columns = [str(c).strip().strip("'\"").strip() for c in table.columns]
    if "URL" not in table.columns:
        raise BadInputError(path, f"no URL column (columns: {', '.join(table.columns[:5])}, ...)")
    codes = {c: int(_AU_COLUMN.match(c).group(1)) for c in table.columns if _AU_COLUMN.match(c)}
    if not codes:
        raise BadInputError(path, "no AU columns ('AU 1', 'AU 2', ...)")
    out = pd.DataFrame({"url": table["URL"].astype(str).str.strip().str.strip("'\"")})
    for column, code in codes.items():
        values = pd.to_numeric(table[column].str.strip(), errors="coerce")
        bad = values.isna() | ~values.isin([0, 1, NOT_CODED])
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise BadInputError(path, f"row {row + 2}, column {column!r}: {table[column].iloc[row]!r} is not 0, 1 or "
                                      f"{NOT_CODED}")
        out[code] = values.where(values != NOT_CODED).astype(np.float32)
    duplicated = out["url"].duplicated()
    if duplicated.any():
        raise BadInputError(path, f"URL {out['url'][duplicated].iloc[0]} is listed twice")
    return out


def model_labels(table: pd.DataFrame) -> np.ndarray:
    """(n, 18) presence labels of ``read_sheet``'s table: NaN where the sheet does not code an AU.
    A project AU that merges FACS codes (23/24, 26/27) is present when one is, absent when all are
    coded absent, unknown otherwise."""
    labels = np.full((len(table), NUM_AUS), np.nan, np.float32)
    for index in range(NUM_AUS):
        codes = [c for c, i in FACS_CODE_TO_INDEX.items() if i == index and c in table.columns]
        if not codes:
            continue
        values = table[codes].to_numpy(np.float32)
        labels[:, index] = np.where((values == 1).any(1), 1.0, np.where((values == 0).all(1), 0.0, np.nan))
    return labels


def read_mapping(root: str | Path) -> dict[str, str]:
    """``url -> file`` of a downloaded copy (``OUT/mapping.csv``)."""
    path = Path(root) / MAPPING
    if not path.is_file():
        raise MissingInputError(path, "no mapping of URLs to files: run `facslab download emotionet SHEET "
                                      f"{root}` first")
    table = read_csv(path, dtype=str, keep_default_na=False)
    if list(table.columns[:2]) != ["url", "file"]:
        raise BadInputError(path, f"columns must be url,file, not {','.join(table.columns)}")
    return dict(zip(table["url"], table["file"]))


def mapping_table(urls) -> pd.DataFrame:
    """The ``url,file`` table of a copy: a function of the URLs alone, so a download writes it before
    it fetches any image and a rerun finds the same files."""
    urls = list(urls)
    return pd.DataFrame({"url": urls, "file": [f"{IMAGES}/{image_name(u)}" for u in urls]})
