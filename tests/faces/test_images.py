"""Image decoding: odd modes become 8-bit RGB; broken files name the file and the problem."""

import io

import numpy as np
import pytest
from PIL import Image

from facslab.badinput import BadInputError, SkipReport
from facslab.images import load_rgb


@pytest.fixture
def rgb():
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)


def save(image: Image.Image, path, **kwargs):
    image.save(path, **kwargs)
    return path


def test_rgb_png_round_trips(tmp_path, rgb):
    assert np.array_equal(load_rgb(save(Image.fromarray(rgb), tmp_path / "a.png")), rgb)


def test_greyscale_becomes_three_equal_channels(tmp_path, rgb):
    out = load_rgb(save(Image.fromarray(rgb[..., 0]), tmp_path / "g.png"))
    assert out.shape == (40, 30, 3) and np.array_equal(out[..., 0], rgb[..., 0]) and np.array_equal(out[..., 1], out[..., 2])


def test_16_bit_greyscale_is_rescaled_not_clipped(tmp_path):
    data = np.linspace(0, 65535, 40 * 30).reshape(40, 30).astype(np.uint16)
    path = save(Image.fromarray(data), tmp_path / "deep.png")
    with Image.open(path) as check:
        assert check.mode.startswith("I")
    out = load_rgb(path)
    assert out.dtype == np.uint8 and out.min() == 0 and out.max() == 255
    assert np.allclose(out[..., 0], data / 257, atol=1)


def test_cmyk_jpeg_and_palette_png(tmp_path, rgb):
    cmyk = load_rgb(save(Image.fromarray(rgb).convert("CMYK"), tmp_path / "c.jpg", quality=95))
    assert cmyk.shape == (40, 30, 3) and np.abs(cmyk.astype(int) - rgb).mean() < 40
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    out = load_rgb(save(palette, tmp_path / "p.png"))
    assert out.shape == (40, 30, 3) and np.abs(out.astype(int) - rgb).mean() < 40


def test_rgba_is_composited_on_white(tmp_path, rgb):
    rgba = np.dstack([rgb, np.zeros((40, 30), np.uint8)])  # fully transparent
    assert (load_rgb(save(Image.fromarray(rgba), tmp_path / "t.png")) == 255).all()


def test_empty_file(tmp_path):
    (tmp_path / "e.png").write_bytes(b"")
    with pytest.raises(BadInputError, match=r"e.png: empty file"):
        load_rgb(tmp_path / "e.png")


def test_not_an_image(tmp_path):
    (tmp_path / "n.jpg").write_bytes(b"this is not a picture at all" * 10)
    with pytest.raises(BadInputError, match=r"n.jpg: not a readable image"):
        load_rgb(tmp_path / "n.jpg")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_image(tmp_path, rgb, fmt):
    buffer = io.BytesIO()
    Image.fromarray(np.tile(rgb, (8, 8, 1))).save(buffer, fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(BadInputError, match=r"cut\.\w+: (truncated image|cannot decode)"):
        load_rgb(path)


def test_missing_file(tmp_path):
    with pytest.raises(BadInputError, match="file not found"):
        load_rgb(tmp_path / "nope.png")


def test_skip_report_collects_unless_strict(tmp_path):
    report = SkipReport()
    report.skip(tmp_path / "a.png", "empty file (0 bytes)")
    report.skip(tmp_path / "b.png", "truncated image")
    assert len(report) == 2 and "2 skipped" in report.summary()
    saved = report.save(tmp_path / "skipped.csv").read_text()
    assert "a.png" in saved and "truncated image" in saved
    with pytest.raises(BadInputError, match="b.png: truncated"):
        SkipReport(strict=True).skip(tmp_path / "b.png", "truncated image")
