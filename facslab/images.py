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


def decode_rgb(data: bytes, name: str = "upload", max_pixels: int = MAX_PIXELS,
               shrink_to: int | None = None) -> np.ndarray:
    """Image bytes (an upload) as RGB uint8; the size is checked from the header before decoding,
    so a decompression bomb is refused without being expanded. With ``shrink_to``, an image of
    more pixels comes back shrunk to about that many (JPEGs are decoded at reduced scale)."""
    import io

    if not data:
        raise BadInputError(name, "empty file (0 bytes)")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > max_pixels:
                raise BadInputError(name, f"image too large ({image.width}x{image.height} pixels; limit {max_pixels})")
            if shrink_to and image.width * image.height > shrink_to:
                scale = (shrink_to / (image.width * image.height)) ** 0.5
                # draft (JPEG) and integer reduction before the resampling keep this cheap
                image.thumbnail((max(1, int(image.width * scale)), max(1, int(image.height * scale))),
                                Image.Resampling.BILINEAR, reducing_gap=2.0)
            image.load()
            return to_rgb_array(image)
    except BadInputError:
        raise
    except UnidentifiedImageError:
        raise BadInputError(name, "not a readable image (unknown or corrupt format)") from None
    except Image.DecompressionBombError as error:
        raise BadInputError(name, f"refused as a decompression bomb ({error})") from None
    except (OSError, SyntaxError, ValueError) as error:
        problem = "truncated image" if "truncated" in str(error) else f"cannot decode image ({error})"
        raise BadInputError(name, problem) from None


def load_rgb(path: str | Path) -> np.ndarray:
    """An image file as an (H, W, 3) uint8 RGB array, or ``BadInputError`` saying what is wrong."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadInputError(path, "file not found") from None
    except OSError as error:
        raise BadInputError(path, f"unreadable ({error})") from None
    return decode_rgb(data, str(path))
