"""Face preprocessing: dlib detection and landmarks, alignment, eye state, and the crop cache."""

from facslab.faces.align import AlignmentSpec, align_face, eye_centres
from facslab.faces.eyes import EYE_CLOSED_THRESHOLD, eye_aspect_ratios, eyes_closed

__all__ = ["AlignmentSpec", "align_face", "eye_centres", "EYE_CLOSED_THRESHOLD", "eye_aspect_ratios",
           "eyes_closed"]
