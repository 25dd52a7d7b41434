"""From AUs to emotions, three ways, each judged on emotion labels (CK+'s ``Emotion/`` files):

* ``RuleTable``: the FACS-manual prototypes (``facs_rules.csv``, shipped and editable): the
  emotion whose AU set best matches the face's (Jaccard similarity of the two sets);
* ``RuleTable.learned``: the same matching against AU sets learned from training labels, an AU
  joining an emotion's set when it is present in at least ``threshold`` of that emotion's
  samples (the threshold is searched on validation folds, never on the test split);
* ``logistic_regression``: scikit-learn's multinomial logistic regression on AU vectors, the
  learned reference;
* ``personalised``: a learned table adjusted to one participant, their own AU frequencies pulled
  towards the shared ones by a prior of ``strength`` frames (where they have several frames per
  emotion: BP4D's videos).

An AU the data leaves uncoded (NaN) counts neither way: sets are matched on the AUs a row codes,
and frequencies are over the rows that code the AU.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from facslab.au import AU_INDEX, AU_LABELS

RULES_FILE = Path(__file__).with_name("facs_rules.csv")
#: the induced emotions of BP4D / BP4D+ (the basic ones as in ``facs_rules.csv``, and pain,
#: embarrassment and skepticism)
INDUCED_RULES_FILE = Path(__file__).with_name("induced_rules.csv")


def au_frequencies(au_labels: np.ndarray, emotions: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(classes, AUs) P(AU present | emotion) over the rows coding the AU (NaN where none does), and
    those rows' counts."""
    au_labels = np.asarray(au_labels, np.float64)
    known = ~np.isnan(au_labels)
    present = known & (np.nan_to_num(au_labels) > 0.5)
    counts = np.stack([known[emotions == k].sum(0) for k in range(n_classes)])
    hits = np.stack([present[emotions == k].sum(0) for k in range(n_classes)])
    return np.divide(hits, counts, out=np.full(counts.shape, np.nan), where=counts > 0), counts


@dataclass
class RuleTable:
    """Emotion -> AU set (indices into ``AU_LABELS``); ``classes`` fixes the label order."""

    sets: dict[str, frozenset[int]]
    classes: tuple[str, ...]

    @classmethod
    def from_csv(cls, path: str | Path = RULES_FILE, classes: tuple[str, ...] | None = None) -> RuleTable:
        """``emotion,aus`` rows with AUs joined by ``+`` (model labels such as ``23/24``; empty: a
        face showing none of the coded AUs, e.g. neutral); a missing file or an unknown AU is a
        ``BadInputError`` naming the file (and the row)."""
        from facslab.badinput import BadInputError, read_csv

        if not Path(path).is_file():
            raise BadInputError(path, "rule table not found")
        table = read_csv(path)
        if not {"emotion", "aus"} <= set(table.columns):
            raise BadInputError(path, "a rule table has the columns emotion,aus")
        sets = {}
        for number, row in enumerate(table.itertuples(), start=2):
            text = "" if pd.isna(row.aus) else str(row.aus)
            labels = [label.strip() for label in text.split("+") if label.strip()]
            unknown = [label for label in labels if label not in AU_INDEX]
            if unknown:
                raise BadInputError(path, f"line {number}: AU {', '.join(unknown)} is not one of the model's AUs "
                                          f"({', '.join(AU_LABELS)})")
            sets[row.emotion] = frozenset(AU_INDEX[label] for label in labels)
        return cls(sets, tuple(classes or sets))

    @classmethod
    def learned(cls, au_labels: np.ndarray, emotions: np.ndarray, classes: tuple[str, ...],
                threshold: float = 0.5) -> RuleTable:
        """AU sets from co-occurrence: AU k belongs to emotion e when P(AU k | e) >= threshold in
        the given (training) labels."""
        return cls.from_frequencies(au_frequencies(au_labels, emotions, len(classes))[0], classes, threshold)

    @classmethod
    def from_frequencies(cls, frequencies: np.ndarray, classes: tuple[str, ...], threshold: float) -> RuleTable:
        """An emotion's set: the AUs whose frequency reaches ``threshold`` (an emotion without
        frequencies has no set and is never predicted)."""
        return cls({emotion: frozenset(np.flatnonzero(np.nan_to_num(row, nan=-1.0) >= threshold).tolist())
                    for emotion, row in zip(classes, frequencies) if not np.isnan(row).all()}, classes)

    def scores(self, aus: np.ndarray) -> np.ndarray:
        """(n, classes) Jaccard similarity between each row's present AUs and each emotion's set,
        both restricted to the AUs the row codes."""
        aus = np.asarray(aus, np.float64)
        known = ~np.isnan(aus)
        present = known & (np.nan_to_num(aus) > 0.5)
        out = np.zeros((len(present), len(self.classes)))
        for k, emotion in enumerate(self.classes):
            members = np.zeros(present.shape[1], bool)
            if emotion not in self.sets:
                continue  # no set: never this emotion
            members[list(self.sets[emotion])] = True
            if not members.any():  # the empty set matches a face showing none of its coded AUs
                out[:, k] = ~present.any(1)
                continue
            both = (present & members).sum(1)
            either = (present | (members & known)).sum(1)
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


def personalised(shared: np.ndarray, own_aus: np.ndarray, own_emotions: np.ndarray, classes: tuple[str, ...],
                 threshold: float, strength: float) -> RuleTable:
    """One participant's learned table: per emotion and AU, (strength x the shared frequency + their
    own present count) / (strength + their own coded count), the shared frequency where they code
    none; an infinite strength is the shared table."""
    own, counts = au_frequencies(own_aus, own_emotions, len(classes))
    if np.isinf(strength):
        return RuleTable.from_frequencies(shared, classes, threshold)
    prior = np.where(np.isnan(shared), 0.0, strength)
    mixed = np.divide(prior * np.nan_to_num(shared) + np.nan_to_num(own) * counts, prior + counts,
                      out=np.full(shared.shape, np.nan), where=(prior + counts) > 0)
    # where they have no frame of an emotion, the shared table stands (their own frames never
    # narrow the emotions they can be given)
    return RuleTable.from_frequencies(np.where(counts > 0, mixed, shared), classes, threshold)


def logistic_regression(au_values: np.ndarray, emotions: np.ndarray, seed: int = 0):
    """A multinomial logistic regression from AU vectors (presences or probabilities) to emotions;
    an uncoded AU (NaN) takes its training mean (0 where training never codes it)."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    return make_pipeline(SimpleImputer(strategy="mean", keep_empty_features=True),
                         LogisticRegression(max_iter=2000, C=1.0, random_state=seed)).fit(au_values, emotions)
