"""Test-split intervals: an interval of the very quantity its point estimate is."""

import numpy as np
import pytest

from facslab.evaluation import affect_metrics, intensity_metrics, mean_row, per_au_metrics, per_class_metrics


def _rare_au_toy(seed=0):
    """13 subjects x 4 rows; 17 AUs predicted perfectly, AU28 (column 16) positive in two rows of
    one subject only and scored at chance."""
    rng = np.random.default_rng(seed)
    subjects = np.repeat(np.arange(13), 4)
    labels = (rng.random((52, 18)) < 0.4).astype(float)
    labels[:, 16] = 0
    labels[[0, 1], 16] = 1
    probs = np.where(labels > 0, 0.9, 0.1)
    probs[:, 16] = rng.random(52)
    probs[[0, 1], 16] = [0.7, 0.3]  # one of its two positives found: its F1 is neither 0 nor 1
    return probs, labels, subjects


def test_a_rare_au_stays_in_every_resample_so_the_interval_surrounds_the_point():
    probs, labels, subjects = _rare_au_toy()
    table = per_au_metrics(probs, labels, np.full(18, 0.5), groups=subjects, n_boot=400)
    mean = mean_row(table)
    assert mean["pr_auc"] < 0.99  # the chance AU pulls the mean down
    # averaging over whichever AUs a resample happens to contain gave [point, 1.0]
    assert mean["pr_auc_lo"] < mean["pr_auc"] < mean["pr_auc_hi"] < 1.0
    assert mean["f1_lo"] < mean["f1"] < mean["f1_hi"]


def test_class_intervals_resample_subjects_not_rows():
    # every subject is all right or all wrong: rows of a subject are not independent evidence
    subjects = np.repeat(np.arange(10), 20)
    labels = np.zeros(200, int)
    right = np.isin(subjects, np.arange(7))
    probs = np.where(right[:, None], [[0.9, 0.1]], [[0.1, 0.9]])
    by_rows = per_class_metrics(probs, labels, ["a", "b"], n_boot=400)
    by_subjects = per_class_metrics(probs, labels, ["a", "b"], n_boot=400, groups=subjects)
    width = {name: float(t.iloc[-1]["top1_hi"] - t.iloc[-1]["top1_lo"]) for name, t in
             (("rows", by_rows), ("subjects", by_subjects))}
    assert width["subjects"] > 2 * width["rows"], width


def test_intensity_and_affect_intervals_surround_their_points():
    rng = np.random.default_rng(1)
    subjects = np.repeat(np.arange(12), 10)
    true = np.full((120, 18), np.nan)
    true[:, :3] = rng.integers(0, 6, (120, 3))
    pred = true + rng.normal(0, 1.5, true.shape)
    table = intensity_metrics(pred, true, groups=subjects, n_boot=200)
    mean = table.iloc[-1]
    assert mean["icc_lo"] < mean["icc"] < mean["icc_hi"]
    affect = rng.uniform(-1, 1, (120, 2))
    va = affect_metrics(affect + rng.normal(0, 0.5, affect.shape), affect, groups=subjects, n_boot=200)
    row = va.iloc[-1]
    assert row["ccc_lo"] < row["ccc"] < row["ccc_hi"]
    assert not np.isnan(va[["ccc_lo", "ccc_hi"]].to_numpy()).any()


def test_resamples_that_cannot_give_the_quantity_are_refused_not_averaged_away():
    from facslab.evaluation import BootstrapError, grouped_bootstrap

    with pytest.raises(BootstrapError, match="resamples"):
        grouped_bootstrap(lambda rows: [0.0], 4, np.arange(4), n_boot=10, valid=lambda rows: False)


def test_validation_and_test_scores_are_one_definition():
    """The test tables' numpy AP is scikit-learn's and torchmetrics' (what validation logs), ties
    included; the CCC of the loss and of ``val_ccc`` (torch) is the test table's (numpy)."""
    import torch
    from sklearn.metrics import average_precision_score
    from torchmetrics.functional.classification import binary_average_precision

    from facslab.metrics import average_precision, concordance

    rng = np.random.default_rng(3)
    for _ in range(20):
        labels = (rng.random(60) < 0.3).astype(int)
        labels[0] = 1
        scores = np.round(rng.random(60), 1)  # many ties
        ours = average_precision(labels, scores)
        assert ours == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
        assert ours == pytest.approx(float(binary_average_precision(torch.tensor(scores), torch.tensor(labels))), abs=1e-6)
    pred, true = rng.normal(size=(50, 2)), rng.normal(0.3, 0.5, size=(50, 2))
    torch_ccc = concordance(torch.tensor(pred, requires_grad=True), torch.tensor(true))
    assert torch_ccc.requires_grad  # the loss trains through it
    np.testing.assert_allclose(torch_ccc.detach().numpy(), concordance(pred, true), rtol=1e-12)
    table = affect_metrics(pred, true, n_boot=0)
    np.testing.assert_allclose(table["ccc"].to_numpy()[:2], concordance(pred, true), rtol=1e-12)
