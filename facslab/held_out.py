"""The test split as the registry sees it: one door through which its inputs are read
(``held_out_inputs``; the sweep's no-test guard patches it), the outputs and subjects the test
evaluation scores, and the pictures and tables of what a registered model looks at."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from facslab.predictor import TaskPredictor

log = logging.getLogger(__name__)


def held_out_inputs(dm, positions: np.ndarray | None = None) -> np.ndarray:
    """A set-up datamodule's test-split inputs (aligned crops; frame stacks for a sequence
    datamodule), all or those at ``positions`` (test rows only): the one door through which models
    see the test faces, for the registry and the AU -> emotion evaluation alike."""
    test = dm.positions("test")
    if positions is None:
        positions = test
    elif not np.isin(positions, test).all():
        raise ValueError("held_out_inputs reads test rows only")
    return dm.stacks(positions) if hasattr(dm, "stacks") else np.asarray(dm.cached.crops[positions])


def held_out_outputs(predictor: TaskPredictor, dm) -> tuple[np.ndarray, np.ndarray]:
    """(outputs, labels) of a predictor on a set-up datamodule's test split."""
    return predictor.predict_aligned(held_out_inputs(dm)), dm.labels_array()[dm.positions("test")]


def saliency_on_test_faces(predictor: TaskPredictor, dm, faces: int = 8) -> dict[str, object]:
    """``{path: figure}``: saliency overlays on test faces spread over the split (for the run of a
    registered model; none for a model that reads windows of frames)."""
    from facslab.explain import overlay_grid

    if predictor.window:
        log.warning("no saliency overlays: %s models read windows of frames", predictor.task)
        return {}
    crops = held_out_inputs(dm)
    picked = crops[np.unique(np.linspace(0, len(crops) - 1, min(faces, len(crops))).round().astype(int))]
    try:  # a picture: its failure must not cost the test figures of the one look (a rerun would look again)
        return {"plots/test_saliency.png": overlay_grid(predictor, picked)} if len(picked) else {}
    except Exception as error:  # noqa: BLE001 - any failure of the picture, said and not fatal
        log.warning("no saliency overlays for the %s model: %s: %s", predictor.task, type(error).__name__, error)
        return {}


def part_attention_on_test_faces(predictor: TaskPredictor, dm) -> dict[str, pd.DataFrame]:
    """``{path: table}``: a landmark-patch transformer's attention share per face part on the test
    faces of each true class (none for other backbones)."""
    from facslab.explain import part_attention_table

    classes = np.asarray(dm.classes)[dm.labels_array()[dm.positions("test")]]
    try:  # as the overlays: never at the cost of the test figures
        table = part_attention_table(predictor, held_out_inputs(dm), classes)
    except Exception as error:  # noqa: BLE001
        log.warning("no part attention table for the %s model: %s: %s", predictor.task, type(error).__name__, error)
        return {}
    return {} if table is None else {"metrics/test_part_attention.csv": table}


def held_out_subjects(dm) -> np.ndarray:
    """The subject of every test row: the unit test-split intervals resample (a dataset without
    subjects names each image its own)."""
    return dm.samples.loc[dm.positions("test"), "subject"].to_numpy()
