"""Image loading and validation (pure ml module, no database)."""

import io

import pytest
from PIL import Image

from recommendations.ml.images import ImageRejected, load_image, probe
from tests.fixtures.images import make_image


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_every_common_format_loads_as_rgb(fmt):
    data = make_image(fmt=fmt, size=(64, 48))
    im = load_image(data)
    assert im.mode == "RGB"
    assert im.size == (64, 48)


def test_exif_orientation_is_applied():
    im = Image.new("RGB", (80, 40), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif)
    assert load_image(buf.getvalue()).size == (40, 80)


def test_transparency_is_flattened_on_white():
    im = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    assert load_image(buf.getvalue()).getpixel((5, 5)) == (255, 255, 255)


@pytest.mark.parametrize("mode", ["CMYK", "L", "LA", "P", "I;16"])
def test_unusual_modes_become_rgb(mode):
    im = Image.new("RGB", (16, 16), (10, 200, 30)).convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        im = Image.new("I;16", (16, 16), 40000)
    buf = io.BytesIO()
    im.save(buf, format="TIFF" if mode in ("CMYK", "I;16") else "PNG")
    assert load_image(buf.getvalue()).mode == "RGB"


def test_empty_file_is_rejected():
    with pytest.raises(ImageRejected, match="empty"):
        load_image(b"")


@pytest.mark.parametrize(
    "data", [b"<html><body>hi</body></html>", b"just some text", b'<svg xmlns="http://www.w3.org/2000/svg"></svg>']
)
def test_non_images_are_rejected(data):
    with pytest.raises(ImageRejected, match="not"):
        load_image(data)


def test_truncated_jpeg_is_rejected():
    data = make_image(size=(300, 300), shape="stripes")
    with pytest.raises(ImageRejected, match="corrupt or truncated"):
        load_image(data[: len(data) // 2])


def test_decompression_bomb_rejected_before_decoding():
    buf = io.BytesIO()
    Image.new("1", (12000, 12000)).save(buf, format="PNG")  # 144 MP, a few KB on disk
    with pytest.raises(ImageRejected, match="too large"):
        probe(buf.getvalue(), max_pixels=50_000_000)


def test_pixel_limit_is_configurable():
    data = make_image(size=(100, 100))
    assert probe(data, max_pixels=10_000).width == 100
    with pytest.raises(ImageRejected):
        probe(data, max_pixels=9_999)
