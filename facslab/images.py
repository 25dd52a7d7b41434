"""Reading images of any mode real datasets contain into 8-bit RGB, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from facslab.badinput import BadInputError

#: Pixels above which an image is refused as a likely decompression bomb (Pillow warns at 89M).
MAX_PIXELS = 64_000_000


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """8-bit RGB from any Pillow mode: 16/32-bit greyscale is rescaled, palette and CMYK converted."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        data = np.asarray(image, dtype=np.float64)
        if image.mode.startswith("I;16"):
            data = data / 257.0  # full 16-bit range to 8-bit
        else:
            lo, hi = float(data.min()), float(data.max())
            data = (data - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(data)
        grey = np.clip(np.round(data), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image)
    return np.asarray(image.convert("RGB"))


def load_rgb(path: str | Path) -> np.ndarray:
    """An image file as an (H, W, 3) uint8 RGB array, or ``BadInputError`` saying what is wrong."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise BadInputError(path, "file not found") from None
    if size == 0:
        raise BadInputError(path, "empty file (0 bytes)")
    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_PIXELS:
                raise BadInputError(
                    path, f"image too large ({image.width}x{image.height} pixels; limit {MAX_PIXELS})"
                )
            image.load()
            return to_rgb_array(image)
    except BadInputError:
        raise
    except UnidentifiedImageError:
        raise BadInputError(path, "not a readable image (unknown or corrupt format)") from None
    except Image.DecompressionBombError as error:
        raise BadInputError(path, f"refused as a decompression bomb ({error})") from None
    except (OSError, SyntaxError, ValueError) as error:
        problem = "truncated image" if "truncated" in str(error) else f"cannot decode image ({error})"
        raise BadInputError(path, problem) from None
