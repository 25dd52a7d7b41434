"""Would the subject's own neutral face help the AUs that one peak frame leaves ambiguous?

A probe for the next step of the longer configuration (docs/known-limits.md). Linear probes
(logistic regression, one per AU) on the frozen pretrained backbone's pooled features of CK+ peak
frames, given either the peak's features alone or those together with their difference from the
subject's neutral frame. Out-of-fold predictions over the subjects of the training split only,
grouped by subject; the test split is never read. Prints the per-AU PR-AUC of both inputs.

    FACSLAB_MLRUNS=data/long/mlruns .venv/bin/python experiments/neutral_reference_probe.py \\
        --root data/long/CK+ --image_size 128 --cache_dir data/long/cache
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from datamodules import CKPlusDataModule
from datamodules.features import cached_features
from facslab.au import AU_LABELS
from facslab.evaluation import average_precisions
from facslab.run_records import resolve_init
from facslab.mlflow_store import setup_tracking
from facslab.training import build_model


def out_of_fold_scores(x: np.ndarray, labels: np.ndarray, subjects: np.ndarray, folds: int, c: float) -> np.ndarray:
    """Subject-grouped out-of-fold logistic-regression probabilities, one probe per AU."""
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
    return np.column_stack([
        cross_val_predict(probe, x, labels[:, au], groups=subjects, cv=GroupKFold(n_splits=folds),
                          method="predict_proba")[:, 1]
        for au in range(labels.shape[1])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", required=True, help="CK+ folder")
    parser.add_argument("--image_size", type=int, default=128)
    parser.add_argument("--cache_dir", default=None)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--experiment", default="facslab", help="where the pretraining run is")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--C", type=float, default=0.1, help="inverse L2 strength, the same for both inputs")
    args = parser.parse_args()

    setup_tracking(None, args.experiment)
    dm = CKPlusDataModule(args.root, fold=None, image_size=args.image_size, cache_dir=args.cache_dir,
                          augment=False)
    dm.setup()
    init_from = resolve_init("auto", args.backbone, args.image_size, args.experiment)
    # no block trains, so the frozen prefix is the whole backbone up to its pooled features: the
    # sweeps' feature cache computes them once for the training split and keeps them
    model = build_model({"backbone": args.backbone, "unfrozen_blocks": 0}, dm, init_from=init_from)
    features = cached_features(model, dm, roles=("train",))
    samples = dm.samples[(dm.samples["role"] == "train") & dm.samples["ok"]]
    neutral = samples[samples["kind"] == "neutral"]
    peaks = samples[(samples["kind"] == "peak") & samples["subject"].isin(neutral["subject"])]
    neutral_position = dict(zip(neutral["subject"], neutral.index))
    peak_features = features[peaks.index.to_numpy()]
    neutral_features = features[[neutral_position[subject] for subject in peaks["subject"]]]
    labels = dm.labels_array()[peaks.index.to_numpy()]
    subjects = peaks["subject"].to_numpy()
    alone = average_precisions(out_of_fold_scores(peak_features, labels, subjects, args.folds, args.C), labels)
    paired = average_precisions(out_of_fold_scores(np.hstack([peak_features, peak_features - neutral_features]),
                                                   labels, subjects, args.folds, args.C), labels)
    table = pd.DataFrame({"au": [f"AU{label}" for label in AU_LABELS], "positives": labels.sum(0).astype(int),
                          "peak": alone, "peak + (peak - neutral)": paired})
    table.loc[len(table)] = ["mean", int(labels.sum()), np.nanmean(alone), np.nanmean(paired)]
    print(f"{len(peaks)} peak frames of {len(neutral)} training subjects; starting weights {init_from}; "
          f"{args.folds} subject-grouped folds; C={args.C}")
    print(table.to_string(index=False, float_format="%.3f"))


if __name__ == "__main__":
    main()
