"""Backbone registry: packaged offline weights, torchvision by name, clear errors."""

import pytest
import torch

from recommendations.checks import check_backbone_weights
from recommendations.ml.backbones import (
    UnknownBackbone,
    WeightsNotFound,
    available_backbones,
    load_backbone,
    resolve_weights,
)


def test_packaged_backbone_gives_pooled_1280_features_not_logits():
    backbone = load_backbone("efficientnet_lite0")
    with torch.inference_mode():
        out = backbone.model(torch.zeros(2, 3, 224, 224))
    assert out.shape == (2, 1280)
    assert backbone.preprocessing["mean"] == [0.5, 0.5, 0.5] and backbone.preprocessing["std"] == [0.5, 0.5, 0.5]
    assert len(backbone.weights_sha256) == 64


def test_packaged_weights_are_really_imagenet_weights():
    # A drawn T-shirt is ImageNet class 610 ("jersey, T-shirt") for the full network:
    # proves the weights, activations (ReLU6) and [-1, 1] input scaling are right.
    from catalog.demo.drawing import ImageSpec, draw_product
    from recommendations.ml.images import load_image

    backbone = load_backbone("efficientnet_lite0")
    image = load_image(draw_product(ImageSpec("t-shirt", "green", "solid", "white")))
    with torch.inference_mode():
        logits = backbone.model.net(backbone.transform(image).unsqueeze(0))
    assert 610 in logits.topk(3).indices[0].tolist()


def test_torchvision_backbone_without_weights_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty torch cache
    with pytest.raises(WeightsNotFound, match=r"resnet50.*nothing is downloaded"):
        resolve_weights("resnet50", weights_dir=tmp_path / "weights")


def test_torchvision_backbone_loads_from_a_configured_file(tmp_path):
    # given a weights file for resnet18 (random init stands in for the real file)
    from torchvision.models import resnet18

    path = tmp_path / "resnet18.pth"
    torch.save(resnet18(weights=None).state_dict(), path)
    # when it is loaded by name with that path
    backbone = load_backbone("resnet18", weights_path=path)
    # then features are the 512-d pooled layer and preprocessing is the weights' own
    with torch.inference_mode():
        assert backbone.model(torch.zeros(1, 3, 224, 224)).shape == (1, 512)
    assert backbone.dimensions == 512
    assert backbone.preprocessing["crop"] == [224]


def test_torchvision_backbone_found_in_weights_dir(tmp_path, monkeypatch):
    from torchvision.models import ResNet18_Weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    filename = ResNet18_Weights.DEFAULT.url.rsplit("/", 1)[-1]
    (tmp_path / filename).write_bytes(b"x")
    assert resolve_weights("resnet18", weights_dir=tmp_path) == tmp_path / filename


def test_unknown_backbone():
    with pytest.raises(UnknownBackbone):
        resolve_weights("no_such_net")
    assert "efficientnet_lite0" in available_backbones() and "resnet50" in available_backbones()


def test_system_check_reports_missing_weights(settings, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    settings.VISREC = {"BACKBONE": "convnext_tiny"}
    errors = check_backbone_weights()
    assert [e.id for e in errors] == ["visrec.E003"]
    assert "convnext_tiny" in errors[0].msg
    settings.VISREC = {}
    assert check_backbone_weights() == []
