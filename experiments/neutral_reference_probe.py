"""Would the subject's own neutral face help the AUs that one peak frame leaves ambiguous?

A probe for the next step of the longer configuration (README, "Known limits"). Linear probes
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
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from datamodules import CKPlusDataModule
from facslab.au import AU_LABELS
from facslab.runs import resolve_init
from facslab.tracking import setup_tracking
from facslab.training import build_model


@torch.inference_mode()
def pooled_features(model, dm: CKPlusDataModule, positions: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The backbone's pooled output for crops, normalised as in training (eval mode)."""
    model.eval()
    mean, std = np.asarray(dm.mean, np.float32) * 255.0, np.asarray(dm.std, np.float32) * 255.0
    out = []
    for start in range(0, len(positions), batch_size):
        x = (np.asarray(dm.cached.crops[positions[start:start + batch_size]], np.float32) - mean) / std
        out.append(model.backbone(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy())
    return np.concatenate(out)


def out_of_fold_pr_auc(x: np.ndarray, labels: np.ndarray, subjects: np.ndarray, folds: int, c: float) -> np.ndarray:
    """Per-AU PR-AUC of subject-grouped out-of-fold logistic-regression scores (NaN: no positive)."""
    scores = np.full(labels.shape, np.nan)
    for train, held in GroupKFold(n_splits=folds).split(x, groups=subjects):
        for au in range(labels.shape[1]):
            y = labels[train, au]
            if y.min() == y.max():  # one class in this fold's training part: its base rate
                scores[held, au] = y.mean()
                continue
            probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000))
            scores[held, au] = probe.fit(x[train], y).predict_proba(x[held])[:, 1]
    return np.array([average_precision_score(labels[:, au], scores[:, au]) if labels[:, au].any() else np.nan
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
    model = build_model({"backbone": args.backbone, "unfrozen_blocks": -1}, dm, init_from=init_from)
    samples = dm.samples[(dm.samples["role"] == "train") & dm.samples["ok"]]
    neutral = samples[samples["kind"] == "neutral"]
    peaks = samples[(samples["kind"] == "peak") & samples["subject"].isin(neutral["subject"])]
    peak_features = pooled_features(model, dm, peaks.index.to_numpy())
    by_subject = dict(zip(neutral["subject"], pooled_features(model, dm, neutral.index.to_numpy())))
    neutral_features = np.stack([by_subject[subject] for subject in peaks["subject"]])
    labels = dm.labels_array()[peaks.index.to_numpy()]
    subjects = peaks["subject"].to_numpy()
    alone = out_of_fold_pr_auc(peak_features, labels, subjects, args.folds, args.C)
    paired = out_of_fold_pr_auc(np.hstack([peak_features, peak_features - neutral_features]), labels, subjects,
                                args.folds, args.C)
    table = pd.DataFrame({"au": [f"AU{label}" for label in AU_LABELS], "positives": labels.sum(0).astype(int),
                          "peak": alone, "peak + (peak - neutral)": paired})
    table.loc[len(table)] = ["mean", int(labels.sum()), np.nanmean(alone), np.nanmean(paired)]
    print(f"{len(peaks)} peak frames of {len(neutral)} training subjects; starting weights {init_from}; "
          f"{args.folds} subject-grouped folds; C={args.C}")
    print(table.to_string(index=False, float_format="%.3f"))


if __name__ == "__main__":
    main()
