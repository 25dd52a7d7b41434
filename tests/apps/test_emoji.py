"""Emoji matching: the report's worked example, generated faces, ties, metrics, the editable table."""

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from facslab.au import AU_INDEX, NUM_AUS
from facslab.emoji import (
    VECTOR_NAMES, accuracy, agreement_vector, cohen_kappa, jaccard, load_emojis, match_emoji, region_aware,
)
from facslab.faces.eyes import eyes_closed
from facslab.synth.face import Conditions, Expression, Identity, Pose, render_face


def decisions(*labels):
    d = np.zeros(NUM_AUS, bool)
    for label in labels:
        d[AU_INDEX[label]] = True
    return d


def by_char(char):
    return next(e for e in load_emojis() if e.char == char)


def test_the_reports_worked_example_gives_kappa_0_6885():
    detected = agreement_vector(decisions("5", "12", "25"), False, False)
    emoji = by_char("😃").vector
    assert len(detected) == 19 and VECTOR_NAMES[-2:] == ("left_eye_closed", "right_eye_closed")
    assert cohen_kappa(detected, emoji) == pytest.approx(0.6885, abs=5e-5)
    assert cohen_kappa(detected, emoji) == pytest.approx(cohen_kappa_score(detected, emoji))


def test_kappa_matches_scikit_learn_on_random_vectors_and_is_defined_for_constant_ones():
    rng = np.random.default_rng(0)
    for _ in range(50):
        a, b = rng.random(19) < 0.3, rng.random(19) < 0.4
        if a.any() and b.any() and not a.all() and not b.all():
            assert cohen_kappa(a, b) == pytest.approx(cohen_kappa_score(a, b))
    zeros = np.zeros(19, int)
    assert cohen_kappa(zeros, zeros) == 1.0  # neutral face, neutral emoji
    assert cohen_kappa(zeros, np.ones(19, int)) == 0.0
    assert match_emoji(zeros).emoji.char == "😐"


def test_the_table_has_the_reports_14_emojis():
    emojis = load_emojis()
    assert [e.char for e in emojis] == list("😃😄😁🙂😊😐😮😲😣😠😖😫😤😉")
    assert by_char("😉").aus == ["12", "right_eye_closed"]
    assert by_char("😁").aus == ["6", "7", "12", "25", "left_eye_closed", "right_eye_closed"]


def test_ties_are_broken_by_table_order_and_reported():
    vector = agreement_vector(decisions("1", "2", "5", "25", "26/27"), False, False)
    match = match_emoji(vector)
    assert match.emoji.char == "😮" and [e.char for e in match.tied_with] == ["😲"]
    assert match.score == pytest.approx(1.0)
    assert [e.char for e, _ in match.ranking][:2] == ["😮", "😲"]
    assert match.as_dict()["tied_with"] == ["😲"]


def rendered_vector(aus: dict, closure=None):
    """The agreement vector of a generated face: its rendered AUs and its eyes judged by EAR."""
    identity = Identity.sample(np.random.default_rng(4))
    intensities = np.zeros(NUM_AUS, np.float32)
    for label, value in aus.items():
        intensities[AU_INDEX[label]] = value
    _, landmarks = render_face(identity, Expression(intensities, closure), Pose((200, 180), 90), (400, 400), Conditions())
    left, right = eyes_closed(landmarks)
    return agreement_vector(intensities > 0, left, right)


def test_a_generated_smile_with_smiling_eyes_maps_to_smiling_face():
    assert match_emoji(rendered_vector({"1": 3, "6": 4, "12": 4})).emoji.char == "😊"


def test_a_generated_smile_with_the_right_eye_closed_maps_to_winking_face():
    vector = rendered_vector({"12": 4, "43": 5}, closure=(0.0, 5.0))
    assert vector[-2:].tolist() == [0, 1]
    assert match_emoji(vector).emoji.char == "😉"


def test_other_metrics_plug_in():
    vector = agreement_vector(decisions("5", "12", "25"), False, False)
    target = by_char("😃").vector
    assert accuracy(vector, target) == pytest.approx(17 / 19)
    assert jaccard(vector, target) == pytest.approx(3 / 5)
    for metric in ("accuracy", "jaccard", "region"):
        assert match_emoji(vector, metric=metric).metric == metric
    with pytest.raises(ValueError, match="metric"):
        match_emoji(vector, metric="cosine")


def test_region_aware_gives_partial_credit_within_a_region():
    brows_differ = agreement_vector(decisions("1"), False, False), agreement_vector(decisions("2"), False, False)
    brows_vs_mouth = agreement_vector(decisions("1"), False, False), agreement_vector(decisions("12"), False, False)
    assert jaccard(*brows_differ) == jaccard(*brows_vs_mouth) == 0.0
    assert region_aware(*brows_differ) > region_aware(*brows_vs_mouth)
    same = agreement_vector(decisions("1", "12"), True, False)
    assert region_aware(same, same) == 1.0


def test_a_user_table_is_checked_with_file_and_line(tmp_path):
    table = tmp_path / "mine.csv"
    table.write_text("emoji,name,aus,left_eye_closed,right_eye_closed\n🙂,smile,12,0,0\n🤔,thinking,4 99,0,0\n")
    with pytest.raises(ValueError, match=r"mine.csv: line 3: unknown AU '99'"):
        load_emojis(table)
    table.write_text("emoji,name,aus,left_eye_closed,right_eye_closed\n🙂,smile,12,0,0\n😑,flat,,1,1\n")
    emojis = load_emojis(table)
    assert [e.char for e in emojis] == ["🙂", "😑"]
    assert match_emoji(agreement_vector(decisions(), True, True), emojis).emoji.char == "😑"
