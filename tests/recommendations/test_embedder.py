"""The embedder's runtimes and preprocessing agree with the reference path."""

import numpy as np
import pytest
import torch
from PIL import Image

from catalog.demo.drawing import ImageSpec, draw_product
from recommendations.ml.backbones import load_backbone
from recommendations.ml.embedder import Embedder, l2_normalise
from recommendations.ml.images import load_image
from recommendations.ml.preprocess import crop_box, resize_crop


@pytest.fixture(scope="module")
def images():
    specs = [
        ImageSpec("t-shirt", "red", "stripes", "white"),
        ImageSpec("mug", "blue", "dots", "beige"),
        ImageSpec("sneaker", "green", "solid", "sky"),
    ]
    pics = [load_image(draw_product(s)) for s in specs]
    return pics + [pics[0].resize((225, 338)), pics[1].resize((500, 120))]  # portrait and wide


@pytest.fixture(scope="module")
def backbone():
    return load_backbone("efficientnet_lite0")


def _reference(backbone, images) -> np.ndarray:
    """The textbook path: the weights' transforms, eager torch."""
    with torch.inference_mode():
        batch = torch.stack([backbone.transform(im) for im in images])
        return l2_normalise(backbone.model(batch).numpy())


@pytest.mark.parametrize("size", [(400, 400), (225, 338), (500, 120), (31, 17)])
def test_crop_box_matches_torchvision_resize_then_center_crop(size):
    from torchvision.transforms import functional as F

    im = Image.radial_gradient("L").convert("RGB").resize(size)
    ours = resize_crop(im, 256, 224, "bilinear").astype(np.float32)
    theirs = np.asarray(F.center_crop(F.resize(im, 256), 224), dtype=np.float32)
    assert ours.shape == theirs.shape == (224, 224, 3)
    assert np.abs(ours - theirs).mean() < 2.0  # same geometry, one resample instead of two
    left, top, right, bottom = crop_box(*size, 256, 224)
    assert right - left == pytest.approx(bottom - top, rel=0.01)


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_runtimes_match_the_reference_vectors(backbone, images, runtime, tmp_path):
    embedder = Embedder(backbone, device="cpu", runtime=runtime, cache_dir=tmp_path, batch_size=2)
    ours = embedder.embed(images)
    reference = _reference(backbone, images)
    cosine = (ours * reference).sum(axis=1)
    assert ours.shape == (5, 1280)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    assert cosine.min() > 0.97


def test_onnx_export_is_cached(backbone, tmp_path):
    Embedder(backbone, device="cpu", runtime="onnx", cache_dir=tmp_path)
    files = list(tmp_path.glob("*.onnx"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime
    Embedder(backbone, device="cpu", runtime="onnx", cache_dir=tmp_path)
    assert files[0].stat().st_mtime == mtime
