"""``facslab demo``, the README's first command, end to end on a small copy: generate, pretrain,
sweep, register, report, and the table of where its time went."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml


REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_demo_runs_its_chain_and_says_where_its_time_went(tmp_path, cli):
    pretrain = yaml.safe_load((REPO / "configs/pretrain/demo.yaml").read_text())
    pretrain["data"].update(image_size=32, batch_size=32)
    pretrain["train"].update(max_epochs=1)
    sweep = yaml.safe_load((REPO / "sweeps/demo.yaml").read_text())
    sweep["datamodule"]["init_args"].update(image_size=32, n_folds=2)
    sweep["train"].update(max_epochs=2, patience=1)
    sweep.update(n_trials=1, pruner="none")
    for name, config in (("pretrain.yaml", pretrain), ("sweep.yaml", sweep)):
        (tmp_path / name).write_text(yaml.safe_dump(config))
    done = cli("demo", "--out", str(tmp_path / "demo"), "--ckplus_subjects", "10", "--sequences", "30",
               "--celeba_images", "120", "--pretrain_fractions", "1.0", "--pretrain_config",
               str(tmp_path / "pretrain.yaml"), "--sweep_config", str(tmp_path / "sweep.yaml"),
               env={"FACSLAB_MLRUNS": str(tmp_path / "store")})
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "demo" / "report" / "table1.md").is_file()
    lines = done.stdout.splitlines()
    table = lines[lines.index("where the time went:") + 3:]
    rows = {cells[1].strip(): float(cells[2]) for cells in (line.split("|") for line in table if line.startswith("|"))}
    assert list(rows) == ["generate", "pretrain", "sweep", "register", "report", "other", "total"], rows
    assert all(seconds >= 0 for seconds in rows.values())
    assert sum(rows[stage] for stage in list(rows)[:-1]) == pytest.approx(rows["total"], abs=0.5)
    assert rows["sweep"] > 1 and rows["pretrain"] > 1
