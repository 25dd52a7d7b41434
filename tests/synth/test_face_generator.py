"""The face generator: deterministic, every AU visible in its own region, strength follows intensity."""

import numpy as np
import pytest

from facslab.au import AU_INDEX, AU_LABELS, NUM_AUS
from facslab.faces.eyes import EYE_CLOSED_THRESHOLD, eye_aspect_ratios, eyes_closed
from facslab.synth.face import Conditions, Expression, Identity, Pose, face_geometry, render_face

CENTRE, IOD, SHAPE = np.array([200.0, 170.0]), 100.0, (400, 400)
PLAIN = Conditions(background=(128, 128, 128))

#: Where each AU may change pixels: (|x| min, |x| max, y min, y max) in face units
#: (eye centres at (+-0.5, 0), interocular distance 1, y down).
REGIONS = {
    "1": (0.0, 0.75, -1.0, -0.15), "2": (0.25, 1.05, -1.0, -0.15), "4": (0.0, 1.0, -0.8, -0.05),
    "5": (0.2, 0.8, -0.25, 0.15), "6": (0.1, 1.0, -0.15, 0.8), "7": (0.2, 0.8, -0.2, 0.2),
    "9": (0.0, 0.75, -0.6, 1.15), "10": (0.0, 0.75, 0.45, 1.2), "12": (0.0, 0.8, 0.45, 1.3),
    "14": (0.0, 0.7, 0.8, 1.25), "15": (0.0, 0.7, 0.8, 1.5), "17": (0.0, 0.95, 0.9, 1.8),
    "20": (0.0, 0.8, 0.8, 1.3), "23/24": (0.0, 0.6, 0.8, 1.25), "25": (0.0, 0.5, 0.85, 1.25),
    "26/27": (0.0, 1.2, 0.3, 2.3), "28": (0.0, 0.6, 0.8, 1.25), "43": (0.2, 0.8, -0.25, 0.25),
}


def render(identity, aus=None, closure=None):
    aus = np.zeros(NUM_AUS, np.float32) if aus is None else aus
    image, landmarks = render_face(identity, Expression(aus, closure), Pose(tuple(CENTRE), IOD), SHAPE, PLAIN,
                                   np.random.default_rng(0))
    return image, landmarks


def with_au(label, intensity=5.0):
    aus = np.zeros(NUM_AUS, np.float32)
    aus[AU_INDEX[label]] = intensity
    return aus


@pytest.fixture(scope="module")
def identities():
    return [Identity.sample(np.random.default_rng(seed)) for seed in range(3)]


def test_same_seed_same_face_and_landmarks():
    def draw(seed):
        rng = np.random.default_rng(seed)
        identity = Identity.sample(rng)
        return render_face(identity, Expression(rng.uniform(0, 5, NUM_AUS).astype(np.float32)),
                           Pose((100, 100), 40, rng.uniform(-10, 10)), (200, 200), Conditions.sample(rng), rng)

    (a, la), (b, lb), (c, _) = draw(5), draw(5), draw(6)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    assert not np.array_equal(a, c)
    assert la.shape == (68, 2)


def test_identity_is_stable_for_a_subject_seed():
    assert Identity.sample(np.random.default_rng(11)) == Identity.sample(np.random.default_rng(11))
    assert Identity.sample(np.random.default_rng(11)) != Identity.sample(np.random.default_rng(12))


@pytest.mark.parametrize("label", AU_LABELS)
def test_each_au_changes_only_its_own_region(label, identities):
    for identity in identities:
        neutral, _ = render(identity)
        active, _ = render(identity, with_au(label))
        changed = np.abs(active.astype(int) - neutral.astype(int)).sum(axis=2) > 30
        ys, xs = np.nonzero(changed)
        assert len(xs) > 30, f"AU{label} is not visible"
        fx, fy = (xs - CENTRE[0]) / IOD, (ys - CENTRE[1]) / IOD
        x0, x1, y0, y1 = REGIONS[label]
        inside = (np.abs(fx) >= x0) & (np.abs(fx) <= x1) & (fy >= y0) & (fy <= y1)
        assert inside.mean() > 0.97, f"AU{label}: {1 - inside.mean():.1%} of its change is outside its region"


@pytest.mark.parametrize("label", AU_LABELS)
def test_effect_grows_with_fac_intensity(label, identities):
    neutral, _ = render(identities[0])
    amount = [np.abs(render(identities[0], with_au(label, i))[0].astype(int) - neutral).sum() for i in (1, 3, 5)]
    assert 0 < amount[0] < amount[1] < amount[2]


def test_landmarks_move_as_the_aus_say(identities):
    neutral = face_geometry(identities[0], Expression()).landmarks
    smile = face_geometry(identities[0], Expression(with_au("12"))).landmarks
    assert smile[48, 1] < neutral[48, 1] - 0.05 and smile[54, 1] < neutral[54, 1] - 0.05
    jaw = face_geometry(identities[0], Expression(with_au("26/27"))).landmarks
    assert jaw[8, 1] > neutral[8, 1] + 0.2
    brows = face_geometry(identities[0], Expression(with_au("1"))).landmarks
    assert brows[21, 1] < neutral[21, 1] - 0.1 and abs(brows[17, 1] - neutral[17, 1]) < 0.02


def test_au43_closes_the_eyes_and_a_wink_closes_one(identities):
    _, open_lm = render(identities[0])
    _, closed_lm = render(identities[0], with_au("43"))
    assert min(eye_aspect_ratios(open_lm)) > 0.25
    assert eyes_closed(closed_lm) == (True, True)
    _, wink_lm = render(identities[0], with_au("43"), closure=(0.0, 5.0))  # right eye shut
    assert eyes_closed(wink_lm, EYE_CLOSED_THRESHOLD) == (False, True)


def test_lips_part_only_with_au25(identities):
    """FACS codes AU25 whenever the lips part, so no other AU may open them (AU10 once did,
    which drew unlabelled AU25s)."""
    def gap(aus):
        landmarks = face_geometry(identities[0], Expression(aus)).landmarks
        return landmarks[66, 1] - landmarks[62, 1]

    for label in AU_LABELS:
        if label != "25":
            assert gap(with_au(label)) <= 0.01, f"AU{label} alone parts the lips"
    both = with_au("10")
    both[AU_INDEX["25"]] = 1.0
    assert gap(with_au("25", 1.0)) > 0.03 and gap(both) > 0.03


def test_sucked_in_and_pressed_lips_are_drawn_apart(identities):
    """AU28 rolls the lips in (their red vanishes), AU23/24 presses them narrower (their red stays):
    at every pair of intensities the two differ by much of either AU's own effect."""
    for identity in identities:
        neutral = render(identity)[0].astype(int)
        suck = [render(identity, with_au("28", i))[0].astype(int) for i in range(1, 6)]
        press = [render(identity, with_au("23/24", i))[0].astype(int) for i in range(1, 6)]
        closest = min(np.abs(a - b).sum() for a in suck for b in press)
        own_effect = min(np.abs(a - neutral).sum() for a in suck + press)
        assert closest > 0.5 * own_effect
