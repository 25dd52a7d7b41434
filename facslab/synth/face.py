"""A parametric face renderer in which every one of the 18 AUs has a visible, localised effect.

Real AU datasets cannot ship here, so tests and the demo use faces drawn by this module. Each AU
moves landmarks and/or draws texture (wrinkles, folds, dimples) in its own face region, with a
strength proportional to its FACS intensity (0-5), so a model can learn AUs from the pixels and
a test can check that an AU changes only its region.

Coordinates: "face units" have the origin between the eye centres, x to the image's right, y
down, and the distance between the eye centres as 1. Landmarks follow the iBUG 68-point scheme
that dlib and CK+ use: points 36-41 are the image-left eye (the subject's right eye), 42-47 the
image-right eye (the subject's left). "Left" and "right" in this project always mean the
subject's own side, as FACS codes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from facslab.au import AU_INDEX, NUM_AUS
from facslab.synth.conditions import Conditions, apply_conditions
from facslab.synth.strength import eye_closure_fraction, intensity_strength, lip_roll

_SHIFT = 4  # sub-pixel bits for OpenCV drawing (anti-aliased polygons at 1/16 px)
_ONE = 1 << _SHIFT

RIGHT_EYE = slice(36, 42)  # the subject's right eye: image left
LEFT_EYE = slice(42, 48)  # the subject's left eye: image right


#: Width of AU wrinkles, folds and dimples in face units (1 = the distance between the eyes). At
#: the demo's 64 px crops the eyes are 23 px apart, so this is about a pixel: thinner lines
#: vanish when the frame is shrunk to the crop.
WRINKLE = 0.04


def _s(aus: np.ndarray, label: str) -> float:
    """Effect strength 0-1 of an AU from its FACS intensity 0-5."""
    return intensity_strength(aus[AU_INDEX[label]])


@dataclass(frozen=True)
class Identity:
    """What stays the same for one subject across all of their images."""

    face_half_width: float
    chin_depth: float
    jaw_power: float
    forehead_height: float
    eye_half_width: float
    eye_open: float
    brow_height: float
    brow_arch: float
    brow_thickness: float
    brow_inner_x: float
    brow_outer_x: float
    nose_base_y: float
    nose_half_width: float
    mouth_y: float
    mouth_half_width: float
    upper_lip: float
    lower_lip: float
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    iris: tuple[int, int, int]
    lips: tuple[int, int, int]
    long_hair: bool
    male: bool

    @classmethod
    def sample(cls, rng: np.random.Generator) -> Identity:
        tone = rng.uniform(0.0, 1.0)
        light, dark = np.array([236, 203, 178]), np.array([92, 58, 40])
        skin = (1 - tone) * light + tone * dark + rng.normal(0, 6, 3)
        hair_choices = np.array([[30, 22, 18], [70, 45, 25], [120, 80, 40], [200, 170, 110],
                                 [140, 140, 140], [90, 30, 20]])
        hair = hair_choices[rng.integers(len(hair_choices))] + rng.normal(0, 8, 3)
        iris_choices = np.array([[60, 40, 25], [90, 60, 30], [60, 100, 140], [70, 110, 70]])
        iris = iris_choices[rng.integers(len(iris_choices))]
        lips = skin * np.array([0.85, 0.55, 0.55]) + np.array([30, 0, 0])
        male = bool(rng.random() < 0.5)
        return cls(
            face_half_width=rng.uniform(0.95, 1.15),
            chin_depth=rng.uniform(1.45, 1.7),
            jaw_power=rng.uniform(0.6, 1.0),
            forehead_height=rng.uniform(1.05, 1.3),
            eye_half_width=rng.uniform(0.19, 0.235),
            eye_open=rng.uniform(0.078, 0.095),
            brow_height=rng.uniform(0.3, 0.4),
            brow_arch=rng.uniform(0.03, 0.08),
            brow_thickness=rng.uniform(0.04, 0.075) * (1.2 if male else 1.0),
            brow_inner_x=rng.uniform(0.12, 0.19),
            brow_outer_x=rng.uniform(0.82, 0.95),
            nose_base_y=rng.uniform(0.6, 0.72),
            nose_half_width=rng.uniform(0.17, 0.25),
            mouth_y=rng.uniform(0.98, 1.08),
            mouth_half_width=rng.uniform(0.36, 0.45),
            upper_lip=rng.uniform(0.06, 0.095),
            lower_lip=rng.uniform(0.08, 0.125),
            skin=tuple(int(v) for v in np.clip(skin, 0, 255)),
            hair=tuple(int(v) for v in np.clip(hair, 0, 255)),
            iris=tuple(int(v) for v in iris),
            lips=tuple(int(v) for v in np.clip(lips, 0, 255)),
            long_hair=bool(rng.random() < (0.2 if male else 0.75)),
            male=male,
        )


@dataclass(frozen=True)
class Expression:
    """FACS intensities 0-5 of the 18 AUs; AU43 may be split per eye (a wink)."""

    aus: np.ndarray = field(default_factory=lambda: np.zeros(NUM_AUS, dtype=np.float32))
    #: closure intensity 0-5 of the subject's (left, right) eye; None: both follow AU43
    eye_closure: tuple[float, float] | None = None

    def eyes(self) -> tuple[float, float]:
        if self.eye_closure is not None:
            return self.eye_closure
        value = float(self.aus[AU_INDEX["43"]])
        return value, value

    def scaled(self, factor: float) -> Expression:
        """The expression at a fraction of its intensity (frames between neutral and peak)."""
        closure = None if self.eye_closure is None else tuple(c * factor for c in self.eye_closure)
        return Expression(self.aus * factor, closure)


@dataclass(frozen=True)
class Pose:
    """Where the face lands in the image: eye midpoint (px), interocular distance (px), roll."""

    center: tuple[float, float]
    interocular: float
    roll_deg: float = 0.0

    def matrix(self) -> np.ndarray:
        angle = np.deg2rad(self.roll_deg)
        c, s = np.cos(angle) * self.interocular, np.sin(angle) * self.interocular
        return np.array([[c, -s, self.center[0]], [s, c, self.center[1]]])


@dataclass
class FaceGeometry:
    landmarks: np.ndarray  # (68, 2) face units
    outline: np.ndarray  # face outline incl. forehead, face units


def face_geometry(identity: Identity, expression: Expression) -> FaceGeometry:
    """The 68 landmarks (face units) of an identity showing an expression."""
    idn, aus = identity, expression.aus
    s = {label: _s(aus, label) for label in AU_INDEX}
    pts = np.zeros((68, 2))

    # Jaw 0-16; AU26/27 drops the chin, AU17 pushes it up.
    jaw_drop = 0.3 * s["26/27"]
    phi = np.linspace(0.0, np.pi, 17)
    chin_weight = np.sin(phi) ** 2
    pts[:17, 0] = -idn.face_half_width * np.cos(phi) * (1 - 0.08 * chin_weight)
    pts[:17, 1] = 0.05 + idn.chin_depth * np.sin(phi) ** idn.jaw_power
    pts[:17, 1] += (jaw_drop - 0.1 * s["17"] * chin_weight) * chin_weight

    # Brows 17-21 (image left, outer -> inner) and 22-26 (image right, inner -> outer).
    t = np.linspace(0.0, 1.0, 5)  # 0 outer, 1 inner
    for side, idx in ((-1, np.arange(17, 22)), (1, np.arange(26, 21, -1))):
        x = idn.brow_outer_x + (idn.brow_inner_x - idn.brow_outer_x) * t
        x = x - 0.07 * s["4"] * t  # AU4 draws the brows together
        y = -idn.brow_height - idn.brow_arch * np.sin(np.pi * (0.25 + 0.75 * (1 - t)))
        y = y - 0.17 * s["1"] * t ** 1.5 - 0.15 * s["2"] * (1 - t) ** 1.5
        y = y + 0.1 * s["4"] * (0.4 + 0.6 * t) + 0.04 * s["9"] * t
        pts[idx, 0], pts[idx, 1] = side * x, y

    # Eyes, both listed left to right along the upper lid and back along the lower one:
    # 36 outer, 37-38 upper, 39 inner, 40-41 lower; 42 inner, 43-44 upper, 45 outer, 46-47 lower.
    closures = [eye_closure_fraction(c) for c in expression.eyes()]  # subject's (left, right)
    for cx, idx, closure in ((-0.5, slice(36, 42), closures[1]), (0.5, slice(42, 48), closures[0])):
        ew = idn.eye_half_width
        upper = idn.eye_open * (1 + 0.8 * s["5"] - 0.4 * s["7"] - 0.1 * s["6"])
        lower = 0.8 * idn.eye_open * max(0.1, 1 - 0.45 * s["6"] - 0.8 * s["7"])
        sag = 0.3 * lower * closure  # a closed eye's lid line sits a little below the corners
        upper, lower = upper * (1 - closure), lower * (1 - closure)
        pts[idx] = [(cx - ew, 0), (cx - ew / 3, -upper + sag), (cx + ew / 3, -upper + sag),
                    (cx + ew, 0), (cx + ew / 3, lower + sag), (cx - ew / 3, lower + sag)]

    # Nose: bridge 27-30, base 31-35; AU9 lifts and widens the wings.
    nose_y = idn.nose_base_y - 0.05 * s["9"]
    nw = idn.nose_half_width * (1 + 0.2 * s["9"])
    pts[27:31, 0] = 0.0
    pts[27:31, 1] = np.linspace(0.0, nose_y - 0.1, 4)
    pts[31:36, 0] = np.linspace(-nw, nw, 5)
    pts[31:36, 1] = nose_y + np.array([-0.04, 0.0, 0.03, 0.0, -0.04])

    # Mouth: outer 48-59, inner 60-67.
    my, mw = idn.mouth_y, idn.mouth_half_width
    corner_out = 0.1 * s["12"] + 0.2 * s["20"] - 0.1 * s["14"] - 0.09 * s["23/24"] - 0.04 * s["28"]
    corner_down = -0.16 * s["12"] + 0.24 * s["15"] + 0.05 * s["20"] + 0.25 * jaw_drop
    # AU23/24 presses the lips narrower, their red still showing; AU28 rolls them into the mouth,
    # so their red all but vanishes
    thin = max(0.12, 1 - 0.55 * s["23/24"] - 0.2 * s["20"]) * (1 - 0.9 * lip_roll(s["28"]))
    upper_lip, lower_lip = idn.upper_lip * thin, idn.lower_lip * thin
    lips_part = 0.09 * s["25"] + 0.25 * s["26/27"] * min(1.0, 3 * s["25"])
    lip_raise = 0.18 * s["10"]
    chin_push = 0.08 * s["17"]
    # Only AU25 parts the lips (FACS codes it whenever they part): without it, both lips share
    # the jaw's drop and AU10's raise
    if s["25"] > 0:
        upper_shift, lower_shift = -lip_raise, jaw_drop
    else:
        upper_shift = lower_shift = 0.5 * jaw_drop - lip_raise
    cw, cy = mw + corner_out, my + corner_down
    top = my - lips_part / 2 + upper_shift  # inner upper-lip centre
    bottom = my + lips_part / 2 + lower_shift - chin_push  # inner lower-lip centre
    u = np.array([-1.0, -0.55, -0.2, 0.0, 0.2, 0.55, 1.0])
    bow = np.abs(u) ** 1.5  # lip centre vs corners
    upper_inner = top + (cy - top) * bow
    lower_inner = bottom + (cy - bottom) * bow
    pts[48:55, 0] = u * cw
    pts[48:55, 1] = upper_inner - upper_lip * (1 - bow) * np.array([1, 0.9, 1.05, 0.85, 1.05, 0.9, 1])
    pts[[48, 54], 1] = cy
    lower_outer = lower_inner + lower_lip * (1 - bow)
    pts[54:60, 0] = (u * cw)[::-1][:6]
    pts[54:60, 1] = lower_outer[::-1][:6]
    pts[54] = (cw, cy)
    ui = np.array([-0.85, -0.35, 0.0, 0.35, 0.85])
    bow_i = np.abs(ui) ** 1.5
    pts[60:65, 0] = ui * cw
    pts[60:65, 1] = top + (cy - top) * bow_i
    pts[64:68, 0] = np.array([0.85, 0.35, 0.0, -0.35]) * cw
    pts[65:68, 1] = (bottom + (cy - bottom) * bow_i)[3:0:-1]
    pts[[60, 64], 1] = cy

    # Outline: jaw plus a forehead arc over the top of the head.
    arc = np.linspace(0.0, np.pi, 15)[1:-1]
    forehead = np.stack([idn.face_half_width * np.cos(arc),
                         0.05 - (idn.forehead_height + 0.05) * np.sin(arc)], axis=1)
    outline = np.concatenate([pts[:17], forehead])
    return FaceGeometry(landmarks=pts, outline=outline)


def _transform(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def _fix(points: np.ndarray) -> np.ndarray:
    return np.round(points * _ONE).astype(np.int32).reshape(-1, 1, 2)


def _shade(colour, factor: float) -> tuple[int, int, int]:
    return tuple(int(np.clip(c * factor, 0, 255)) for c in colour)


class _Painter:
    """Draws face-unit shapes into a pixel image through a pose transform."""

    def __init__(self, image: np.ndarray, matrix: np.ndarray):
        self.image, self.matrix = image, matrix
        self.unit = float(np.hypot(*matrix[:, 0]))  # pixels per face unit

    def px(self, points) -> np.ndarray:
        return _transform(np.asarray(points, dtype=np.float64).reshape(-1, 2), self.matrix)

    def width(self, units: float) -> int:
        return max(1, int(round(units * self.unit)))

    def poly(self, points, colour) -> None:
        cv2.fillPoly(self.image, [_fix(self.px(points))], colour, cv2.LINE_AA, _SHIFT)

    def line(self, points, colour, thickness: float, closed: bool = False) -> None:
        cv2.polylines(self.image, [_fix(self.px(points))], closed, colour, self.width(thickness),
                      cv2.LINE_AA, _SHIFT)

    def ellipse(self, centre, axes, colour, angle: float = 0.0) -> None:
        t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        a = np.deg2rad(angle)
        pts = np.stack([axes[0] * np.cos(t), axes[1] * np.sin(t)], axis=1)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        self.poly(pts @ rot.T + np.asarray(centre), colour)

    def roi(self, px: np.ndarray, pad: int) -> tuple[np.ndarray, np.ndarray]:
        """The image region around pixel points (a view, clipped to the image) and its origin;
        drawing in a small region keeps per-shape blending cheap."""
        x0, y0 = np.floor(px.min(0)).astype(int) - pad
        x1, y1 = np.ceil(px.max(0)).astype(int) + pad
        h, w = self.image.shape[:2]
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        return self.image[y0:max(y1, y0), x0:max(x1, x0)], np.array([x0, y0])

    def blend_line(self, points, colour, thickness: float, alpha: float) -> None:
        """A line drawn at partial opacity: wrinkles whose darkness follows AU intensity."""
        if alpha <= 0.01:
            return
        px = self.px(points)
        roi, (x0, y0) = self.roi(px, self.width(thickness) + 2)
        if roi.size == 0:
            return
        drawn = roi.copy()
        cv2.polylines(drawn, [_fix(px - (x0, y0))], False, colour, self.width(thickness),
                      cv2.LINE_AA, _SHIFT)
        cv2.addWeighted(drawn, alpha, roi, 1 - alpha, 0, dst=roi)


def _draw_eye(p: _Painter, lids: np.ndarray, identity: Identity, gaze, closure: float) -> None:
    """Sclera and iris clipped to the lid polygon, then the lid line and lashes."""
    px = p.px(lids)
    roi, (x0, y0) = p.roi(px, 2)
    if roi.shape[1] > 2 and roi.shape[0] > 1 and closure < 0.97:
        mask = np.zeros(roi.shape[:2], np.uint8)
        cv2.fillPoly(mask, [_fix(px - (x0, y0))], 255, cv2.LINE_AA, _SHIFT)
        eye = np.empty_like(roi)
        eye[:] = (236, 232, 225)
        centre = lids.mean(0) + np.asarray(gaze)
        centre[1] = (lids[0, 1] + lids[3, 1]) / 2 + gaze[1]
        iris_r = 0.42 * identity.eye_half_width
        c_px = tuple(np.round((p.px(centre)[0] - (x0, y0)) * _ONE).astype(int))
        cv2.circle(eye, c_px, int(iris_r * p.unit * _ONE), identity.iris, -1, cv2.LINE_AA, _SHIFT)
        cv2.circle(eye, c_px, int(0.45 * iris_r * p.unit * _ONE), (15, 12, 10), -1, cv2.LINE_AA, _SHIFT)
        alpha = (mask.astype(np.float32) / 255.0)[..., None]
        roi[:] = (eye * alpha + roi * (1 - alpha)).astype(np.uint8)
    lash = _shade(identity.hair, 0.5)
    p.line(lids[:4], lash, 0.022 + 0.01 * closure)  # upper lid and lashes
    p.line(lids[[3, 4, 5, 0]], _shade(identity.skin, 0.7), 0.01)


def render_face(
    identity: Identity,
    expression: Expression,
    pose: Pose,
    shape: tuple[int, int],
    conditions: Conditions = Conditions(),
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Render an RGB image of ``shape`` (H, W); returns it and the 68 landmarks in pixels."""
    rng = rng if rng is not None else np.random.default_rng(0)
    geo = face_geometry(identity, expression)
    lm, idn, aus = geo.landmarks, identity, expression.aus
    s = {label: _s(aus, label) for label in AU_INDEX}
    matrix = pose.matrix()
    image = np.empty((*shape, 3), np.uint8)
    image[:] = conditions.background
    p = _Painter(image, matrix)
    skin, dark_skin = idn.skin, _shade(idn.skin, 0.62)
    fw = idn.face_half_width

    # Shoulders, neck, hair behind the head, ears.
    p.poly([(-2.6, 4.5), (-2.2, 2.6), (-0.6, 2.1), (0.6, 2.1), (2.2, 2.6), (2.6, 4.5)],
           _shade(idn.hair, 0.6) if idn.male else (70, 90, 140))
    p.poly([(-0.55 * fw, 1.0), (0.55 * fw, 1.0), (0.6 * fw, 2.4), (-0.6 * fw, 2.4)], _shade(skin, 0.85))
    if idn.long_hair:
        p.ellipse((0, -0.25), (fw * 1.28, 1.5), idn.hair)
    for side in (-1, 1):
        p.ellipse((side * (fw + 0.02), 0.25), (0.13, 0.28), _shade(skin, 0.92))
    p.poly(geo.outline, skin)
    # Short hair cap over the forehead.
    arc = np.linspace(0.0, np.pi, 16)
    cap_top = 0.05 - (idn.forehead_height + 0.1) * np.sin(arc)
    cap = np.stack([1.04 * fw * np.cos(arc), cap_top], 1)
    fringe = np.stack([fw * np.cos(arc[::-1]) * 0.95,
                       -idn.forehead_height * (0.55 + 0.2 * np.sin(arc[::-1])) - 0.05], 1)
    p.poly(np.concatenate([cap, fringe]), idn.hair)

    # Cheek bulges (AU6) and nasolabial folds (AU10, AU12, AU9).
    if s["6"] > 0:
        for side in (-1, 1):
            p.blend_line([(side * 0.75, 0.42), (side * 0.55, 0.5), (side * 0.3, 0.45)],
                         dark_skin, 1.25 * WRINKLE, 0.7 * s["6"])
    fold = max(s["10"], s["12"], 0.6 * s["9"])
    for side in (-1, 1):
        corner = lm[54] if side == 1 else lm[48]
        start = lm[35] if side == 1 else lm[31]
        mid = (start + corner) / 2 + (side * 0.12, 0.0)
        p.blend_line([start + (side * 0.05, 0), mid, corner + (side * 0.07, 0.02)],
                     dark_skin, 0.02, 0.15 + 0.7 * fold)

    # Forehead wrinkles: AU1 centre, AU2 sides; glabella furrows: AU4.
    brow_top = lm[17:27, 1].min()
    for k in range(3):
        y = brow_top - 0.12 - 0.1 * k
        p.blend_line([(-0.4, y + 0.015), (0, y - 0.01), (0.4, y + 0.015)], dark_skin, WRINKLE, 0.8 * s["1"])
        for side in (-1, 1):
            p.blend_line([(side * 0.4, y + 0.01), (side * 0.9, y + 0.04)], dark_skin, WRINKLE, 0.8 * s["2"])
    for x in (-0.06, 0.06):
        p.blend_line([(x, -0.34), (x * 1.3, -0.12)], dark_skin, 1.1 * WRINKLE, 0.9 * s["4"])

    # Brows.
    brow_colour = _shade(idn.hair, 0.75)
    for idx in (slice(17, 22), slice(22, 27)):
        p.line(lm[idx], brow_colour, idn.brow_thickness)

    # Eyes, with crow's feet (AU6) at the outer corners.
    closures = [eye_closure_fraction(c) for c in expression.eyes()]
    _draw_eye(p, lm[RIGHT_EYE], idn, conditions.gaze, closures[1])
    _draw_eye(p, lm[LEFT_EYE], idn, conditions.gaze, closures[0])
    for lower_lid in (lm[[39, 40, 41, 36]], lm[[42, 47, 46, 45]]):  # AU7: the tightened lower lid bulges
        p.blend_line(lower_lid + (0, 0.05), dark_skin, 1.25 * WRINKLE, s["7"])
    for corner, side in ((lm[36], -1), (lm[45], 1)):
        for dy in (-0.06, 0.0, 0.06):
            p.blend_line([corner + (side * 0.06, dy * 0.5), corner + (side * 0.17, dy * 1.6)],
                         dark_skin, 0.85 * WRINKLE, 0.85 * s["6"])

    # Nose: bridge shading, AU9 wrinkles across the bridge, nostrils.
    p.blend_line(lm[27:31] + (0.06, 0), dark_skin, 0.02, 0.3)
    for k in range(3):
        y = 0.02 + 0.07 * k
        p.blend_line([(-0.13, y + 0.02), (0, y - 0.01), (0.13, y + 0.02)], dark_skin, 0.85 * WRINKLE, 0.9 * s["9"])
    p.line(lm[31:36], _shade(skin, 0.55), 0.025)
    for k in (32, 34):
        p.ellipse(lm[k] - (0, 0.005), (0.035, 0.018), _shade(skin, 0.35))

    # Mouth: interior and teeth when the lips part, then the lips.
    inner = lm[60:68]
    if lm[66, 1] - lm[62, 1] > 0.01:
        p.poly(inner, (60, 20, 25))
        teeth_h = min(0.06, 0.5 * (lm[66, 1] - lm[62, 1]))
        teeth = np.concatenate([inner[:5], inner[4:0:-1] + (0, teeth_h)])
        p.poly(teeth, (232, 228, 215))
    upper = np.concatenate([lm[48:55], lm[64:59:-1]])
    lower = np.concatenate([lm[54:60], lm[48:49], lm[60:61], lm[67:63:-1]])
    roll = lip_roll(s["28"])
    # rolled-in lips leave skin where their red was
    lip_colour = tuple(int(round((1 - roll) * c + roll * k)) for c, k in zip(idn.lips, _shade(skin, 0.93)))
    p.poly(upper, lip_colour)
    p.poly(lower, _shade(lip_colour, 1.08))
    # pressed lips meet in a tight line; sucked-in lips leave a dark slit
    p.line(inner[[0, 1, 2, 3, 4]], _shade(idn.lips, 0.45), 0.012 + 0.01 * s["23/24"] + 0.03 * s["28"])
    for edge, side in ((lm[49:54], -1), (lm[55:60], 1)):  # AU24: skin bulges above and below the lips
        p.blend_line(edge + (0, side * 0.025), dark_skin, WRINKLE, 0.7 * s["23/24"])

    # Depressor folds (AU15) down from the corners; stretch folds (AU20) beside them.
    for corner, side in ((lm[48], -1), (lm[54], 1)):
        p.blend_line([corner + (side * 0.02, 0.04), corner + (side * 0.06, 0.2)], dark_skin, WRINKLE, 0.8 * s["15"])
        p.blend_line([corner + (side * 0.05, -0.03), corner + (side * 0.16, 0.0)], dark_skin, WRINKLE, 0.8 * s["20"])
    # Dimples (AU14) beside the corners; chin-boss texture (AU17).
    for corner, side in ((lm[48], -1), (lm[54], 1)):
        p.blend_line([corner + (side * 0.06, -0.06), corner + (side * 0.09, 0.0), corner + (side * 0.06, 0.06)],
                     dark_skin, 1.6 * WRINKLE, s["14"])
    chin = lm[8]
    for dx, dy in ((-0.12, -0.22), (0.0, -0.18), (0.12, -0.22), (-0.06, -0.3), (0.06, -0.3)):
        p.blend_line([chin + (dx - 0.02, dy), chin + (dx + 0.02, dy + 0.01)], dark_skin, 1.25 * WRINKLE, 0.8 * s["17"])

    apply_conditions(image, conditions, rng)
    return image, _transform(lm, matrix)
