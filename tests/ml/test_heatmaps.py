"""Heat maps of a match: on demo photos they light the drawn product, and they sit where the model looked."""

from __future__ import annotations

import copy
import dataclasses
import io

import numpy as np
import pytest
from PIL import Image

from catalog.demo.drawing import SIZE, ImageSpec, draw_product, product_mask
from recommendations.ml.backbones import load_backbone
from recommendations.ml.heatmaps import (
    NoSpatialMaps,
    SpatialFeatures,
    cell_heat,
    match_heat,
    overlay_pair_png,
    to_photo,
)
from recommendations.ml.preprocess import edge_colour, placement, resize_crop

# Similar-items pairs of the demo catalogue: same type, other colour, pattern, background, framing.
PAIRS = [
    (ImageSpec("t-shirt", "red", "stripes", "white"), ImageSpec("t-shirt", "blue", "solid", "beige", dx=30, dy=-10)),
    (ImageSpec("mug", "green", "dots", "sky"), ImageSpec("mug", "navy", "solid", "charcoal", scale=0.85, flip=True)),
    (ImageSpec("sneaker", "red", "solid", "studio-gradient"), ImageSpec("sneaker", "white", "checks", "mint")),
    (ImageSpec("bag", "brown", "checks", "mint"), ImageSpec("bag", "pink", "diagonal", "sand-gradient", dx=-40)),
    (ImageSpec("cap", "yellow", "solid", "blush"), ImageSpec("cap", "black", "stripes", "light-grey", scale=0.9)),
]


@pytest.fixture(scope="module")
def features() -> SpatialFeatures:
    return SpatialFeatures(load_backbone("efficientnet_lite0"))  # the packaged weights: nothing is downloaded


def seeing(features: SpatialFeatures, geometry: str) -> SpatialFeatures:
    """The same features with the embedder's input placed by ``geometry``."""
    twin = copy.copy(features)
    twin.preprocessing = {**features.preprocessing, "geometry": geometry}
    return twin


def photo(spec: ImageSpec) -> Image.Image:
    return Image.open(io.BytesIO(draw_product(spec))).convert("RGB")


def tall(spec: ImageSpec, top: int = 130, height: int = 620) -> tuple[Image.Image, np.ndarray]:
    """The demo photo of ``spec`` on a taller canvas of its own background, and where the product is there."""
    canvas = Image.new("RGB", (SIZE, height), edge_colour(photo(spec)))
    canvas.paste(photo(spec), (0, top))
    mask = np.zeros((height, SIZE), dtype=bool)
    mask[top : top + SIZE] = product_mask(spec)
    return canvas, mask


def inside_outside(heat: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """Mean heat on the product and on the background, where the model looked."""
    seen = np.isfinite(heat)
    return float(heat[mask & seen].mean()), float(heat[~mask & seen].mean())


@pytest.mark.parametrize("geometry", ["crop-box", "pad-edge"])
def test_the_heat_lights_the_product_not_the_background(features, geometry):
    # given the embedder's geometry (the default centre crop, or a letterbox) and similar demo photos
    features = seeing(features, geometry)
    ratios, cosine_ratios = [], []
    for anchor_spec, match_spec in PAIRS:
        anchor, match = photo(anchor_spec), photo(match_spec)
        # when the match is explained against the anchor, both ways
        heat = match_heat(features, anchor, match)
        # then the product is clearly hotter than its background in either photo
        for h, spec in ((heat.match, match_spec), (heat.anchor, anchor_spec)):
            inside, outside = inside_outside(h, product_mask(spec))
            ratios.append(inside / outside)
        cosine = match_heat(features, anchor, match, measure="cosine")
        cosine_ratios.append(np.divide(*inside_outside(cosine.match, product_mask(match_spec))))
        assert 0 < heat.score < 1
    assert min(ratios) > 1.6, ratios
    # and each cell's share of the score separates them better than its plain cosine
    assert np.mean(ratios) > np.mean(cosine_ratios) + 0.5, (ratios, cosine_ratios)


@pytest.mark.parametrize("geometry", ["crop-box", "pad-edge"])
def test_the_heat_follows_the_product_on_a_photo_that_is_not_square(features, geometry):
    # given a product photo pasted low on a tall canvas: the crop or the letterbox moves it in the model's view
    features = seeing(features, geometry)
    anchor_spec, match_spec = PAIRS[0]
    match, mask = tall(match_spec, top=300, height=700)
    # when the heat is mapped back onto the tall photo
    heat = match_heat(features, photo(anchor_spec), match).match
    # then it sits on the product, not on the empty canvas above it
    assert heat.shape == mask.shape
    inside, outside = inside_outside(heat, mask)
    assert inside / outside > 1.6
    if geometry == "crop-box":  # a map stretched over the whole photo, ignoring the crop, sits much worse
        cells = features([photo(anchor_spec), match])
        naive = Image.fromarray(cell_heat(cells[0], cells[1])).resize(match.size, Image.Resampling.BILINEAR)
        naive = np.where(np.isfinite(heat), np.asarray(naive), np.nan)
        assert inside / outside > np.divide(*inside_outside(naive, mask)) + 0.5


def test_placement_is_where_resize_crop_puts_a_point():
    # given a wide white photo with one black square, and each geometry the embedder uses
    image = Image.new("RGB", (600, 300), (255, 255, 255))
    image.paste((0, 0, 0), (360, 100, 400, 140))
    for geometry in ("crop-box", "pad", "pad-edge"):
        ax, bx, ay, by = placement(600, 300, 256, 224, geometry)
        # when the photo is prepared as the embedder prepares it
        grey = resize_crop(image, 256, 224, "bilinear", geometry).mean(axis=2)
        ys, xs = np.nonzero(grey < 128)
        # then the square's centre lands where placement says (within a pixel)
        assert abs(xs.mean() + 0.5 - (ax * 380 + bx)) < 1.0, geometry
        assert abs(ys.mean() + 0.5 - (ay * 120 + by)) < 1.0, geometry


def test_a_hot_cell_lands_on_its_pixels_and_the_cropped_margins_get_no_heat():
    prep = {"resize": [256], "crop": [224], "geometry": "crop-box"}
    heat = np.zeros((7, 7), dtype=np.float32)
    heat[3, 6] = 1.0  # the rightmost cell of the middle row
    out = to_photo(heat, (600, 300), prep)
    ax, bx, _, _ = placement(600, 300, 256, 224)
    seen_x = np.nonzero(np.isfinite(out[150]))[0]
    # the centre crop of a wide photo keeps its middle: left and right margins are NaN
    assert seen_x.min() == pytest.approx(-bx / ax, abs=1) and seen_x.max() + 1 == pytest.approx((224 - bx) / ax, abs=1)
    # the hot cell's centre (input x = 6.5 * 32) is where the heat peaks
    y, x = np.unravel_index(np.nanargmax(out), out.shape)
    assert abs(x - ((6.5 * 32 - bx) / ax)) <= 2 and abs(y - 150) <= 2
    # a letterboxed photo is seen whole: no NaN anywhere
    assert np.isfinite(to_photo(heat, (600, 300), {**prep, "geometry": "pad"})).all()


def test_the_overlay_is_a_png_of_both_photos(features):
    anchor_spec, match_spec = PAIRS[1]
    match, _ = tall(match_spec)
    png, score = overlay_pair_png(features, photo(anchor_spec), match, height=200)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.height == 200
    assert image.width == 200 + 12 + round(SIZE * 200 / 620)
    assert 0 < score < 1


def test_a_backbone_without_spatial_maps_says_so(features):
    import torch

    class Tokens(torch.nn.Module):  # pools inside its forward, like a vision transformer's class token
        def forward(self, x):
            return x.flatten(2).mean(2)

    backbone = dataclasses.replace(load_backbone("efficientnet_lite0"), name="vit_like", model=Tokens())
    with pytest.raises(NoSpatialMaps, match="vit_like has no spatial feature map"):
        SpatialFeatures(backbone)


def test_a_torchvision_cnn_gives_the_map_it_pools():
    import torch
    from torchvision.models import resnet18

    from recommendations.ml.backbones import Backbone, _strip_classifier

    model = resnet18(weights=None).eval()  # random weights: only the shapes and the pooling are checked
    dims = _strip_classifier(model)
    prep = {"resize": [256], "crop": [224], "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bilinear"}
    backbone = Backbone("resnet18", model, lambda im: im, dims, weights_path=None, preprocessing=prep)
    features = SpatialFeatures(backbone)
    image = photo(PAIRS[0][0])
    maps = features([image])
    assert maps.shape == (1, 512, 7, 7)
    with torch.inference_mode():
        pooled = model(torch.from_numpy(np.array(features.prepare(image))).permute(2, 0, 1)[None].float() / 127.5 - 1)
    assert np.allclose(maps.mean(axis=(2, 3)), pooled.numpy(), atol=1e-4)
