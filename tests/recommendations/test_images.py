"""Image loading and validation (pure ml module, no database)."""

import io
import tracemalloc

import numpy as np
import pytest
from PIL import Image

from recommendations.ml.images import ImageRejected, load_image, probe
from tests.fixtures.images import AWKWARD_IMAGES, AWKWARD_SIZES, HOSTILE_IMAGES, make_image


@pytest.mark.parametrize("name", sorted(AWKWARD_IMAGES))
def test_awkward_images_load_as_upright_rgb(name):
    im = load_image(AWKWARD_IMAGES[name]())
    assert im.mode == "RGB"
    assert im.size == AWKWARD_SIZES.get(name, (64, 48))


@pytest.mark.parametrize("name", sorted(HOSTILE_IMAGES))
def test_hostile_images_are_rejected_with_a_reason(name):
    make, phrase = HOSTILE_IMAGES[name]
    with pytest.raises(ImageRejected, match=phrase):
        load_image(make())


def test_transparency_is_flattened_on_white():
    buf = io.BytesIO()
    Image.new("RGBA", (10, 10), (0, 0, 0, 0)).save(buf, format="PNG")
    assert load_image(buf.getvalue()).getpixel((5, 5)) == (255, 255, 255)


def test_16_bit_range_is_scaled_not_clipped():
    buf = io.BytesIO()
    Image.new("I;16", (4, 4), 32768).save(buf, format="PNG")
    r, g, b = load_image(buf.getvalue()).getpixel((0, 0))
    assert r == g == b == 255  # the brightest pixel maps to white, not to 32768 % 256


def test_bomb_is_rejected_from_the_header_alone():
    data = HOSTILE_IMAGES["decompression_bomb_png"][0]()
    with pytest.raises(ImageRejected, match="144,000,000 pixels"):
        probe(data)


def test_pixel_limit_is_configurable():
    data = make_image(size=(100, 100))
    assert probe(data, max_pixels=10_000).width == 100
    with pytest.raises(ImageRejected):
        probe(data, max_pixels=9_999)


def _png_16bit(width: int, height: int) -> bytes:
    """A 16-bit greyscale PNG of thin stripes: a few KB that decode to ``width * height`` wide pixels."""
    rows = np.zeros((height, width), dtype=np.uint16)
    rows[::50], rows[1::50] = 40000, 20000
    buf = io.BytesIO()
    Image.fromarray(rows).save(buf, format="PNG")
    return buf.getvalue()


def test_16_bit_png_decodes_without_a_float64_copy_of_the_picture():
    # given a 9 MP 16-bit PNG of 18 KB (the old decode built float64 arrays: over 200 MB here)
    data = _png_16bit(3000, 3000)
    assert len(data) < 50_000
    # when it is decoded under tracemalloc (numpy's buffers are traced)
    tracemalloc.start()
    try:
        im = load_image(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # then the temporary arrays stay near the 8-bit result (one byte per pixel), values scaled
    assert peak < 3 * 3000 * 3000, f"{peak / 2**20:.0f} MiB traced"
    assert [im.getpixel((0, y))[0] for y in range(3)] == [255, 127, 0]


@pytest.mark.parametrize(
    "mode, value, expected", [("I", 70000, 255), ("I", -5, 0), ("F", 1000.0, 255), ("I", 200, 200)]
)
def test_32_bit_modes_scale_to_8_bits(mode, value, expected):
    buf = io.BytesIO()
    Image.new(mode, (6, 5), value).save(buf, format="TIFF")
    assert load_image(buf.getvalue()).getpixel((2, 2)) == (expected,) * 3


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A small JPEG whose header (SOF0) claims ``width`` x ``height``."""
    data = bytearray(make_image(size=(16, 16)))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def test_pillows_own_bomb_guard_stays_on_whatever_the_callers_limit():
    assert Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < 10**9
    with pytest.raises(ImageRejected, match="too large"):
        probe(_jpeg_claiming(60000, 60000), max_pixels=10**10)  # 3.6 gigapixels in 700 bytes


def test_a_jpeg_is_decoded_near_the_size_it_is_needed_at():
    # given a 12 MP photo and a model that needs about 512 pixels
    data = make_image(size=(4000, 3000))
    # then it decodes at 1/4 scale, and the pixel limit counts the decoded pixels
    assert load_image(data, max_pixels=1_000_000, draft_size=(512, 512)).size == (1000, 750)
    with pytest.raises(ImageRejected, match="too large"):
        load_image(data, max_pixels=1_000_000)
    png = make_image(size=(1200, 1000), fmt="PNG")  # formats without reduced decoding count every pixel
    with pytest.raises(ImageRejected, match="too large"):
        load_image(png, max_pixels=1_000_000, draft_size=(512, 512))
