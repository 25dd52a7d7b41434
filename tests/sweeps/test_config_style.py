"""Sweep configs name their datamodule and model with class_path/init_args, checked by jsonargparse
against those classes; other Trainer options come through train.trainer, checked against
lightning.Trainer's signature and passed to it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from lightning.pytorch.callbacks import Callback

from facslab.class_args import class_defaults
from facslab.cli import build_parser, main
from facslab.config import ClassSpec, ConfigError, SweepConfig, TrainConfig, config_from
from facslab.sweep.settings import trial_settings
from facslab.tasks import get_task

SWEEPS = sorted((Path(__file__).resolve().parents[2] / "sweeps").glob("*.yaml"))


def _read(*argv: str):
    parser, commands = build_parser("sweep")
    args = parser.parse_args(["sweep", *argv])
    return config_from(commands["sweep"][0], args["sweep"])


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_every_shipped_sweep_config_names_its_classes_and_reads_through_the_cli(path):
    text = path.read_text()
    assert "\ndatamodule:" in text and "\nmodel:" in text and "\ndata:" not in text
    config = _read("--config", str(path))
    task = get_task(config.task)
    assert config.model.class_path == f"{task.module_class.__module__}.{task.module_class.__qualname__}"
    # every argument as the run is logged with it (defaults filled in), the ones facslab sets left out
    datamodule = task.datamodule_class(config.datamodule.class_path)
    assert set(config.data) == set(class_defaults(datamodule, ("fold",))) and "fold" not in config.data
    assert set(config.model_args) == set(class_defaults(task.module_class, task.derived_model_args))
    assert not set(config.model_args) & set(task.derived_model_args)
    # the same config built in Python from the file's own keys, with short class names: the same settings
    raw = yaml.safe_load(path.read_text())
    built = SweepConfig(**{**{k: v for k, v in raw.items() if k not in ("train", "register", "datamodule", "model")},
                           "datamodule": ClassSpec(datamodule.__name__, raw["datamodule"]["init_args"]),
                           "model": ClassSpec(task.module_class.__name__, raw["model"]["init_args"]),
                           "train": TrainConfig(**raw.get("train", {}))})
    assert trial_settings(built) == trial_settings(config)


def test_one_argument_is_overridden_by_its_class_key():
    demo = str(SWEEPS[[p.stem for p in SWEEPS].index("demo")])
    config = _read("--config", demo, "--config.datamodule.image_size", "48", "--config.model.lr", "3e-4",
                   "--config.train.trainer", "{gradient_clip_val: 1.0}")
    assert config.data["image_size"] == 48 and config.data["root"] == "data/demo/CK+"
    assert config.model_args["lr"] == 3e-4 and config.model_args["hidden_size"] == 256
    assert config.train.trainer == {"gradient_clip_val": 1.0}


@pytest.mark.parametrize("override, words", [
    (["--config.datamodule.image_size", "big"], ["image_size", "Expected a <class 'int'>"]),
    (["--config.datamodule.imagesize", "48"], ["imagesize"]),
    (["--config.model.init_args.hiden_size", "48"], ["hiden_size"]),
    (["--config.model.class_path", "EmotionClassifier"], ["model.class_path", "is not task au's module"]),
    (["--config.model.class_path", "TemporalAUDetector"], ["model.class_path", "is not task au's module"]),
    (["--config.datamodule.fold", "2"], ["fold: set by facslab"]),
    (["--config.train.trainer", "{callbacks: []}"], ["train.trainer.callbacks: not one facslab passes on"]),
    (["--config.train.trainer", "{val_check_interval: 0.5}"], ["train.trainer.val_check_interval: not one"]),
    (["--config.train.trainer", "{max_epochs: 3}"], ["train.trainer.max_epochs: set it as train.max_epochs"]),
    (["--config.train.trainer", "{gradient_clip_vall: 1.0}"], ["gradient_clip_vall", "accepted: gradient_clip_val"]),
    (["--config.train.trainer", "{gradient_clip_val: big}"], ["gradient_clip_val"]),
], ids=["type", "datamodule-key", "model-key", "other-module", "subclass", "fold", "owned", "validation", "train-field",
        "trainer-key", "trainer-type"])
def test_a_wrong_key_type_or_class_is_one_line_before_any_trial(tmp_path, monkeypatch, capsys, override, words):
    monkeypatch.setenv("FACSLAB_MLRUNS", str(tmp_path / "store"))
    demo = str(SWEEPS[[p.stem for p in SWEEPS].index("demo")])
    assert main(["sweep", "--config", demo, *override]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("facslab sweep: error: ") and all(w in err[0] for w in words), err
    assert not (tmp_path / "store").exists()


def test_a_trainer_option_reaches_trainer_fit(ckplus, tmp_path):
    """train.trainer's options are the Trainer's: one training batch per epoch is what fit runs."""
    from datamodules import CKPlusDataModule
    from facslab.training import build_model, fit

    class Batches(Callback):
        seen = 0

        def on_train_batch_end(self, *args):
            Batches.seen += 1

    dm = CKPlusDataModule(str(ckplus[0]), image_size=32, batch_size=4, cache_dir=str(tmp_path / "cache"),
                          preprocess_workers=0, progress=False, fold=0)
    dm.setup("fit")
    assert len(dm.train_dataloader()) > 2
    model = build_model(dict(backbone="resnet18", unfrozen_blocks=1, hidden_size=8), dm)
    fit(model, dm, TrainConfig(max_epochs=2, patience=5, progress=False, init_from=None,
                               trainer={"limit_train_batches": 1}), callbacks=[Batches()])
    assert Batches.seen == 2
    with pytest.raises(ConfigError, match="train.trainer.logger: not one facslab passes on"):
        TrainConfig(trainer={"logger": False})


def test_a_sweep_config_of_the_shape_before_class_paths_is_told_what_to_change(tmp_path, capsys):
    old = tmp_path / "old.yaml"
    old.write_text("study: s\ndatamodule: CKPlusDataModule\ndata: {root: x}\nmodel: {backbone: resnet18}\n")
    assert main(["sweep", "--config", str(old)]) == 2
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and "a sweep config names its classes" in said[0] and "data: {...}" in said[0], said
