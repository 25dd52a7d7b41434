import numpy as np
import pytest

from facslab.au import (
    AU_LABELS, FACS_CODE_TO_INDEX, NUM_AUS, OPENFACE_C_COLUMNS, OPENFACE_C_TO_INDEX, OPENFACE_R_COLUMNS,
    au_index, labels_from_facs_codes,
)


def test_the_18_aus_in_the_models_order():
    assert AU_LABELS == ("1", "2", "4", "5", "6", "7", "9", "10", "12", "14", "15", "17", "20", "23/24",
                         "25", "26/27", "28", "43")
    assert NUM_AUS == 18


@pytest.mark.parametrize("code, label", [(23, "23/24"), (24, "23/24"), (26, "26/27"), (27, "26/27"),
                                         (43, "43"), (45, "43"), (12, "12"), (28, "28")])
def test_facs_codes_merge_into_model_aus(code, label):
    assert FACS_CODE_TO_INDEX[code] == AU_LABELS.index(label)
    assert au_index(code) == au_index(label)


def test_openface_columns_map_onto_model_aus():
    assert len(OPENFACE_R_COLUMNS) == 17 and "AU28_r" not in OPENFACE_R_COLUMNS
    assert OPENFACE_C_COLUMNS[-3:] == ("AU26_c", "AU28_c", "AU45_c")
    assert OPENFACE_C_TO_INDEX["AU23_c"] == AU_LABELS.index("23/24")
    assert OPENFACE_C_TO_INDEX["AU26_c"] == AU_LABELS.index("26/27")
    assert OPENFACE_C_TO_INDEX["AU45_c"] == AU_LABELS.index("43")
    assert sorted(OPENFACE_C_TO_INDEX.values()) == list(range(18))


def test_facs_labels_threshold_and_untrained_codes():
    labels = labels_from_facs_codes({12: 3, 24: 1, 27: 2, 45: 4, 38: 5, 11: 2}, min_intensity=2)
    positive = {AU_LABELS[i] for i in np.flatnonzero(labels)}
    assert positive == {"12", "26/27", "43"}  # 24 at A is below min_intensity; 38 and 11 untrained


@pytest.mark.parametrize("policy, expected", [("positive", 1.0), ("negative", 0.0)])
def test_ungraded_au_follows_the_explicit_policy(policy, expected):
    labels = labels_from_facs_codes({6: 0, 12: 4}, ungraded=policy)
    assert labels[au_index(6)] == expected and labels[au_index(12)] == 1.0


def test_ungraded_reject_raises_and_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="not graded"):
        labels_from_facs_codes({6: 0}, ungraded="reject")
    with pytest.raises(ValueError, match="ungraded"):
        labels_from_facs_codes({6: 1}, ungraded="maybe")
