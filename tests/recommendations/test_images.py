"""Image loading and validation (pure ml module, no database)."""

import io

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
