"""From AUs to emotions, three ways, each judged on emotion labels (CK+'s ``Emotion/`` files):

* ``RuleTable``: the FACS-manual prototypes (``facs_rules.csv``, shipped and editable): the
  emotion whose AU set best matches the face's (Jaccard similarity of the two sets);
* ``RuleTable.learned``: the same matching against AU sets learned from training labels, an AU
  joining an emotion's set when it is present in at least ``threshold`` of that emotion's
  samples (the threshold is searched on validation folds, never on the test split);
* ``logistic_regression``: scikit-learn's multinomial logistic regression on AU vectors, the
  learned reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from facslab.au import AU_INDEX, AU_LABELS

RULES_FILE = Path(__file__).with_name("facs_rules.csv")


@dataclass
class RuleTable:
    """Emotion -> AU set (indices into ``AU_LABELS``); ``classes`` fixes the label order."""

    sets: dict[str, frozenset[int]]
    classes: tuple[str, ...]

    @classmethod
    def from_csv(cls, path: str | Path = RULES_FILE, classes: tuple[str, ...] | None = None) -> RuleTable:
        """``emotion,aus`` rows with AUs joined by ``+`` (model labels such as ``23/24``); an
        unknown AU is an error naming the row."""
        table = pd.read_csv(path)
        sets = {}
        for number, row in enumerate(table.itertuples(), start=2):
            labels = [label.strip() for label in str(row.aus).split("+") if label.strip()]
            unknown = [label for label in labels if label not in AU_INDEX]
            if unknown:
                raise ValueError(f"{path}:{number}: AU {', '.join(unknown)} is not one of the model's AUs "
                                 f"({', '.join(AU_LABELS)})")
            sets[row.emotion] = frozenset(AU_INDEX[label] for label in labels)
        return cls(sets, tuple(classes or sets))

    @classmethod
    def learned(cls, au_labels: np.ndarray, emotions: np.ndarray, classes: tuple[str, ...],
                threshold: float = 0.5) -> RuleTable:
        """AU sets from co-occurrence: AU k belongs to emotion e when P(AU k | e) >= threshold in
        the given (training) labels."""
        sets = {}
        for k, emotion in enumerate(classes):
            rows = au_labels[emotions == k]
            if len(rows):
                frequency = np.nanmean(rows > 0.5, axis=0)
                sets[emotion] = frozenset(np.flatnonzero(frequency >= threshold).tolist())
        return cls(sets, classes)

    def scores(self, aus: np.ndarray) -> np.ndarray:
        """(n, classes) Jaccard similarity between each row's present AUs and each emotion's set."""
        present = np.asarray(aus) > 0.5
        out = np.zeros((len(present), len(self.classes)))
        for k, emotion in enumerate(self.classes):
            members = np.zeros(present.shape[1], bool)
            members[list(self.sets.get(emotion, ()))] = True
            if not members.any():
                continue
            both = (present & members).sum(1)
            either = (present | members).sum(1)
            out[:, k] = np.divide(both, either, out=np.zeros(len(present)), where=either > 0)
        return out

    def predict(self, aus: np.ndarray) -> np.ndarray:
        """Class index of the best-matching emotion per row (ties: the more specific set)."""
        sizes = np.array([len(self.sets.get(e, ())) for e in self.classes], float)
        return np.argmax(self.scores(aus) + 1e-6 * sizes, axis=1)

    def label(self, aus: np.ndarray) -> tuple[str, float]:
        """The best-matching emotion of one AU vector, and its similarity."""
        scores = self.scores(np.asarray(aus)[None])[0]
        best = int(self.predict(np.asarray(aus)[None])[0])
        return self.classes[best], float(scores[best])

    def as_frame(self) -> pd.DataFrame:
        return pd.DataFrame({"emotion": list(self.classes),
                             "aus": ["+".join(AU_LABELS[k] for k in sorted(self.sets.get(e, ()))) for e in self.classes]})


def logistic_regression(au_values: np.ndarray, emotions: np.ndarray, seed: int = 0):
    """A multinomial logistic regression from AU vectors (presences or probabilities) to emotions."""
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(max_iter=2000, C=1.0, random_state=seed).fit(np.nan_to_num(au_values), emotions)
