"""Generated EmotioNet in the layout a finished ``facslab download emotionet`` leaves: the sheet
(``URL``, then quoted AU columns, 999 where not coded, AUs outside the project's 18 too), the
images under ``images/<image_name(url)>``, ``mapping.csv``, and ``errors.csv`` for the few URLs
whose image "could not be fetched" (a real download always has some). The faces are in-the-wild
shots from the face renderer: any size, pose, scale, lighting and background."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from tqdm import tqdm

from facslab.au import AUS
from facslab.formats.emotionet import ERRORS, IMAGES, MAPPING, NOT_CODED, SHEET, image_name, mapping_table
from facslab.synth import mark_generated
from facslab.synth.expressions import sample_spontaneous_expression
from facslab.synth.face import Conditions, Identity, Pose, render_face

#: FACS codes the generated sheet codes: the project's AUs' and a few it does not train
CODES = tuple(sorted({c for au in AUS for c in au.facs_codes} | {11, 13, 16, 18, 22, 61}))
URL = "http://emotionet.s3.amazonaws.com/emotionet/Images/N_{folder:010d}/N_{folder:010d}_{k:05d}.jpg"


def write_emotionet(root: str | Path, n_images: int = 300, seed: int = 0, not_coded_rate: float = 0.05,
                    missing_rate: float = 0.03, progress: bool = True) -> pd.DataFrame:
    """Write the copy; returns the truth (url, file, fetched, 18 AU intensities)."""
    root = Path(root)
    (root / IMAGES).mkdir(parents=True, exist_ok=True)
    mark_generated(root, "EmotioNet", seed)
    rng = np.random.default_rng([seed, 11])
    header = ["URL"] + [f"'AU {c}'" for c in CODES]
    rows, truth, errors = [], [], []
    for k in tqdm(range(n_images), desc="EmotioNet images", disable=not progress):
        item = np.random.default_rng([seed, 12, k])
        url = URL.format(folder=int(rng.integers(1, 10_000)), k=k + 1)
        if k % 37 == 5:  # a URL with a comma and a query string, as in the real sheet
            url = url.replace(".jpg", f",{k}.jpg?size=200x200")
        expression = sample_spontaneous_expression(item)
        present = {c: 0 for c in CODES}
        for au, intensity in zip(AUS, expression.aus):
            if intensity > 0:
                present[au.facs_codes[int(item.integers(len(au.facs_codes)))]] = 1
        for c in CODES:
            if c not in {code for au in AUS for code in au.facs_codes}:
                present[c] = int(item.random() < 0.05)
        coded = {c: (NOT_CODED if item.random() < not_coded_rate else v) for c, v in present.items()}
        rows.append([url] + [coded[c] for c in CODES])
        fetched = item.random() >= missing_rate
        if fetched:
            height, width = int(item.integers(180, 360)), int(item.integers(180, 360))
            interocular = item.uniform(0.18, 0.3) * min(height, width)
            pose = Pose((width / 2 + item.uniform(-0.15, 0.15) * width, height * item.uniform(0.38, 0.5)),
                        interocular, item.uniform(-20, 20))
            conditions = Conditions.sample(item)
            conditions = Conditions(**{**conditions.__dict__, "background": tuple(int(v) for v in item.integers(20, 235, 3))})
            image, _ = render_face(Identity.sample(item), expression, pose, (height, width), conditions, item)
            cv2.imwrite(str(root / IMAGES / image_name(url)), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, int(item.integers(70, 95))])
        else:
            errors.append((url, "HTTP 404", "HTTP 404 Not Found"))
        truth.append({"url": url, "file": f"{IMAGES}/{image_name(url)}", "fetched": fetched,
                      "intensities": expression.aus.copy()})
    with open(root / SHEET, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([header, *rows])  # quoted where a URL has a comma, as an export is
    mapping_table([r[0] for r in rows]).to_csv(root / MAPPING, index=False)
    pd.DataFrame(errors, columns=["url", "error", "message"]).to_csv(root / ERRORS, index=False)
    return pd.DataFrame(truth)
