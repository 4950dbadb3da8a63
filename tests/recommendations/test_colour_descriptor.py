"""The colour descriptor: similar items that share the product's colour, in one cosine search."""

import numpy as np
import pytest
from PIL import Image, ImageDraw

from recommendations.ml.backbones import available_backbones, load_backbone, resolve_weights
from recommendations.ml.colour import ColourSpec, colour_descriptor, combine, foreground_mask
from recommendations.ml.embedder import Embedder
from recommendations.ml.preprocess import resize_crop

GREY = (230, 229, 227)  # the light studio background of product photos


def garment(colour, background=GREY, shape="dress", size=(225, 338)) -> Image.Image:
    """A product photo: a coloured garment shape on a plain background."""
    im = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(im)
    w, h = size
    if shape == "dress":
        draw.polygon([(w * 0.35, h * 0.1), (w * 0.65, h * 0.1), (w * 0.85, h * 0.9), (w * 0.15, h * 0.9)], fill=colour)
    else:
        draw.ellipse([w * 0.2, h * 0.3, w * 0.8, h * 0.7], fill=colour)
    return im


def prepared(*images) -> np.ndarray:
    return np.stack([resize_crop(im, 224, 224, "bilinear", "pad-edge") for im in images])


RED, DARK_RED, BLUE = (200, 30, 35), (150, 20, 30), (30, 50, 190)


def test_red_is_nearer_red_than_blue():
    red, dark_red, blue = colour_descriptor(prepared(garment(RED), garment(DARK_RED, shape="ball"), garment(BLUE)))
    assert red @ blue < 0.2
    assert red @ dark_red > red @ blue + 0.3


def test_background_does_not_count():
    # The same red garment on grey and on white: the background colour must not matter,
    # while a whole-picture histogram would be dominated by it.
    on_grey, on_white, blue_on_grey = colour_descriptor(
        prepared(garment(RED), garment(RED, background=(255, 255, 255)), garment(BLUE))
    )
    assert on_grey @ on_white > 0.95
    assert on_grey @ blue_on_grey < 0.2


def test_mask_keeps_the_garment_and_a_white_garment_on_white_still_has_colour():
    small = prepared(garment(RED), garment((255, 255, 255), background=(255, 255, 255)))[:, ::4, ::4]
    mask = foreground_mask(small, threshold=24)
    assert 0.1 < mask[0].mean() < 0.6  # the dress, not the background
    assert mask[1].all()  # nothing differs from the background: every pixel counts
    assert np.isfinite(colour_descriptor(prepared(garment((255, 255, 255), background=(255, 255, 255))))).all()


def test_descriptor_is_unit_length_with_the_spec_dimensions():
    spec = ColourSpec(3, 6, 12)
    out = colour_descriptor(prepared(garment(RED), garment(BLUE)), spec)
    assert out.shape == (2, 3 * 6 * 6) == (2, spec.dimensions)
    assert np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)
    assert colour_descriptor(np.zeros((0, 224, 224, 3), dtype=np.uint8)).shape == (0, ColourSpec().dimensions)


def test_combine_is_a_weighted_cosine():
    rng = np.random.default_rng(0)
    cnn = rng.normal(size=(2, 16)).astype(np.float32)
    cnn /= np.linalg.norm(cnn, axis=1, keepdims=True)
    colour = np.abs(rng.normal(size=(2, 8))).astype(np.float32)
    colour /= np.linalg.norm(colour, axis=1, keepdims=True)
    joined = combine(cnn, colour, 0.3)
    assert np.allclose(np.linalg.norm(joined, axis=1), 1.0, atol=1e-6)
    assert joined[0] @ joined[1] == pytest.approx(0.7 * cnn[0] @ cnn[1] + 0.3 * colour[0] @ colour[1], abs=1e-6)


@pytest.fixture(scope="module")
def descriptor():
    return load_backbone("efficientnet_lite0_colour")


def test_descriptor_backbone_is_registered_offline_with_its_dimensions(descriptor):
    assert "efficientnet_lite0_colour" in available_backbones()
    assert resolve_weights("efficientnet_lite0_colour") == resolve_weights("efficientnet_lite0")
    assert descriptor.dimensions == 1280 + descriptor.colour.dimensions
    spec = descriptor.spec()
    assert spec["dimensions"] == descriptor.dimensions
    # A different spec from the plain backbone: switching is a new embedding version.
    assert spec != load_backbone("efficientnet_lite0").spec()
    assert spec["preprocessing"]["colour"]["weight"] == descriptor.colour_weight


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_embedder_serves_colour_in_the_same_unit_vector(descriptor, runtime, tmp_path):
    embedder = Embedder(descriptor, device="cpu", runtime=runtime, cache_dir=tmp_path, batch_size=2)
    red, ball, blue = embedder.embed([garment(RED), garment(DARK_RED, shape="ball"), garment(BLUE)])
    assert embedder.dimensions == descriptor.dimensions == red.shape[0]
    assert np.allclose(np.linalg.norm([red, ball, blue], axis=1), 1.0, atol=1e-5)
    # The CNN alone finds the blue dress (same shape) nearer than the red ball...
    plain = Embedder(load_backbone("efficientnet_lite0"), device="cpu", runtime="torch")
    p_red, p_ball, p_blue = plain.embed([garment(RED), garment(DARK_RED, shape="ball"), garment(BLUE)])
    cnn_gap = p_red @ p_blue - p_red @ p_ball
    # ...and the joined vector moves the colour match up by the colour weight's share.
    assert (red @ blue - red @ ball) < cnn_gap - 0.5 * descriptor.colour_weight


def test_a_reencoded_copy_keeps_its_colours_even_when_the_pattern_reaches_the_frame():
    # Stripes to the edge fill half the border: JPEG noise must not flip what counts as background.
    import io

    im = Image.new("RGB", (224, 224), (245, 245, 245))
    draw = ImageDraw.Draw(im)
    for x in range(0, 224, 28):
        draw.rectangle((x, 0, x + 14, 224), fill=RED)
    copies = []
    for quality in (95, 80):
        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=quality)
        copies.append(Image.open(buf).convert("RGB"))
    original, copy = colour_descriptor(prepared(*copies))
    (blue,) = colour_descriptor(prepared(garment(BLUE)))
    assert original @ copy > 0.97
    assert original @ blue < 0.2
