"""Changing the backbone re-embeds in the background while the old version serves."""

import pytest
import torch

from recommendations import embedding
from recommendations.models import EmbeddingModel, ImageEmbedding, ImageState

pytestmark = pytest.mark.django_db


@pytest.fixture
def resnet18_weights(tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(0)
    path = tmp_path / "resnet18.pth"
    torch.save(resnet18(weights=None).state_dict(), path)
    return str(path)


def _similar_ids(client, product) -> list[int]:
    response = client.get(f"/api/v1/products/{product.pk}/similar/?limit=5")
    assert response.status_code == 200
    results = response.json()["results"]
    assert results and all(r["reason"] == "visual" for r in results)
    return [r["id"] for r in results]


def test_reembedding_with_another_backbone_keeps_serving_then_switches(
    client, small_catalog, settings, resnet18_weights
):
    # given a catalogue served by the default version
    old = EmbeddingModel.objects.get(is_active=True)
    anchor = small_catalog["anchor"]
    before = _similar_ids(client, anchor)
    # when the shop owner configures another backbone and the images are re-embedded in chunks
    settings.VISREC = {"BACKBONE": "resnet18", "WEIGHTS": {"resnet18": resnet18_weights}, "EMBED_BATCH_SIZE": 2}
    ids = list(ImageState.objects.order_by("pk").values_list("pk", flat=True))
    served_during = []

    def check_serving(done, total):
        served_during.append(_similar_ids(client, anchor))
        assert EmbeddingModel.objects.get(is_active=True).pk == old.pk or done == total

    embedding.embed_images(ids[:4], progress=check_serving)
    # then halfway through, the old version still answers, unchanged
    new = EmbeddingModel.objects.get(backbone="resnet18")
    assert not new.is_active and EmbeddingModel.objects.get(is_active=True) == old
    assert _similar_ids(client, anchor) == before
    assert ImageEmbedding.objects.filter(model=old).count() == len(ids)
    # when the last chunk is done
    embedding.embed_images(ids[4:], progress=check_serving)
    # then it switched atomically and the old vectors are gone
    new.refresh_from_db()
    assert new.is_active and new.dimensions == 512
    assert ImageEmbedding.objects.filter(model=new).count() == len(ids)
    assert not ImageEmbedding.objects.filter(model=old).exists()
    assert len(served_during) >= 4
    assert _similar_ids(client, anchor)  # served by the new version


def test_new_upload_during_a_switch_is_embedded_by_both_versions(
    small_catalog, settings, resnet18_weights, product_with_image
):
    old = EmbeddingModel.objects.get(is_active=True)
    settings.VISREC = {"BACKBONE": "resnet18", "WEIGHTS": {"resnet18": resnet18_weights}}
    product = product_with_image()
    embedding.embed_images([product.visrec_images.get().pk])
    image = product.visrec_images.get()
    assert set(ImageEmbedding.objects.filter(image=image).values_list("model__backbone", flat=True)) == {
        "efficientnet_lite0",
        "resnet18",
    }
    assert EmbeddingModel.objects.get(is_active=True) == old  # the rest is not re-embedded yet
