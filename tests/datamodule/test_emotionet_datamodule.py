"""Generated EmotioNet in the layout a download leaves, read by ``EmotioNetDataModule``, and the AU
task trained on it by `facslab sweep` with no code of its own."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from datamodules import EmotioNetDataModule
from facslab.formats.emotionet import ERRORS, IMAGES, MAPPING, SHEET, read_sheet
from facslab.synth.emotionet import write_emotionet


@pytest.fixture(scope="module")
def emotionet(tmp_path_factory):
    root = tmp_path_factory.mktemp("emotionet")
    truth = write_emotionet(root, n_images=90, seed=2, progress=False)
    return root, truth


def _module(root, tmp_path, **options):
    return EmotioNetDataModule(str(root), image_size=32, cache_dir=str(tmp_path / "cache"), preprocess_workers=0,
                               progress=False, **options)


@pytest.mark.slow
def test_the_copy_is_what_a_download_leaves_and_the_datamodule_reads_it(emotionet, tmp_path):
    root, truth = emotionet
    assert {p.name for p in root.iterdir()} >= {SHEET, IMAGES, MAPPING, ERRORS}
    sheet = read_sheet(root / SHEET)
    assert len(sheet) == 90 and any("," in u and "?" in u for u in sheet["url"])
    dm = _module(root, tmp_path)
    dm.setup("fit")
    missing = int((~truth["fetched"]).sum())
    assert missing >= 1 and sum("not downloaded" in p for p in dm.report.to_frame()["problem"]) == missing
    ok = dm.samples[dm.samples["ok"]]
    assert len(ok) >= 0.6 * truth["fetched"].sum()  # dlib finds most in-the-wild faces, skips and counts the rest
    assert set(ok["role"]) == {"train", "val", "test"}
    labels = dm.labels_array()
    by_url = sheet.set_index("url")
    for row, label in zip(dm.samples.itertuples(), labels):
        coded = by_url.loc[row.url, 12]
        assert (np.isnan(coded) and np.isnan(label[8])) or coded == label[8]  # AU12, NaN where 999
    # a later download that fetches one more image moves no other image between splits
    roles = dict(zip(dm.samples["url"], dm.samples["role"]))
    lost = truth[truth["fetched"]].iloc[0]
    (root / lost["file"]).rename(tmp_path / "held.jpg")
    try:
        fewer = _module(root, tmp_path)
        fewer.setup("fit")
        assert all(roles[u] == r for u, r in zip(fewer.samples["url"], fewer.samples["role"]))
        assert lost["url"] not in set(fewer.samples["url"])
    finally:
        (tmp_path / "held.jpg").rename(root / lost["file"])


@pytest.mark.slow
def test_the_au_task_trains_on_emotionet_through_the_sweep_and_registry(emotionet, tmp_path, cli):
    root, _ = emotionet
    config = tmp_path / "sweep.yaml"
    config.write_text(f"""study: emotionet
n_trials: 1
pruner: none
experiment: emotionet
datamodule: {{class_path: EmotioNetDataModule, init_args: {{root: {root}, image_size: 32, batch_size: 16, cache_dir: {tmp_path / 'cache'}, progress: false}}}}
model: {{class_path: AUDetector, init_args: {{backbone: resnet18, unfrozen_blocks: 1, hidden_size: 16}}}}
train: {{max_epochs: 1, patience: 1, init_from: null, progress: false}}
register: {{name: emotionet-au}}
""")
    out = cli("sweep", "--config", str(config), env={"FACSLAB_MLRUNS": str(tmp_path / "store")})
    assert out.returncode == 0, out.stderr[-3000:]
    assert "emotionet-au version 1" in out.stdout and "PR-AUC" in out.stdout, out.stdout
    roles = [set(pd.read_csv(p)["role"]) for p in (tmp_path / "store").rglob("data/split.csv")]
    assert {"train", "val", "test"} in roles and {"train", "test"} in roles  # the trial's split, the final model's
