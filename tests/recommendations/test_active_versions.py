"""The version serving recommendations cannot be deleted; a backbone switched back to gets its index again."""

from __future__ import annotations

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import ProtectedError
from pgvector import HalfVector

from recommendations import embedding
from recommendations.models import EmbeddingModel, ImageEmbedding, ModelVersion

pytestmark = pytest.mark.django_db


def _has_index(model: EmbeddingModel) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_indexes WHERE indexname = %s", [f"visrec_embedding_hnsw_{model.pk}"])
        return cursor.fetchone()[0] == 1


@pytest.fixture
def versions():
    old = ModelVersion.objects.create(kind="popularity", artifact="old.npz")
    active = ModelVersion.objects.create(kind="popularity", artifact="new.npz", is_active=True)
    return old, active


@pytest.fixture
def owner_client(client):
    client.force_login(get_user_model().objects.create_superuser("owner", "owner@example.com", "pw-12345678"))
    return client


def test_code_cannot_delete_the_active_model_version(versions):
    old, active = versions
    with pytest.raises(ProtectedError, match=f"popularity v{active.pk} .active. is the active model version"):
        ModelVersion.objects.all().delete()
    with pytest.raises(ProtectedError, match="activate another one first"):
        active.delete()
    old.delete()  # an inactive version goes
    assert list(ModelVersion.objects.all()) == [active]


def test_the_admin_refuses_to_delete_the_active_version_and_says_why(owner_client, versions):
    old, active = versions
    page = owner_client.get(f"/admin/recommendations/modelversion/{active.pk}/delete/")
    assert b"the active version serves recommendations; activate another one first" in page.content
    owner_client.post(f"/admin/recommendations/modelversion/{active.pk}/delete/", {"post": "yes"})
    bulk = {"action": "delete_selected", "_selected_action": [old.pk, active.pk], "post": "yes"}
    response = owner_client.post("/admin/recommendations/modelversion/", bulk)
    assert b"the active version serves recommendations" in response.content
    assert ModelVersion.objects.count() == 2  # neither the single nor the bulk delete went through
    owner_client.post(f"/admin/recommendations/modelversion/{old.pk}/delete/", {"post": "yes"})
    assert list(ModelVersion.objects.all()) == [active]


def test_the_active_embedding_model_cannot_be_deleted_either(owner_client):
    model = EmbeddingModel.objects.create(key="k", backbone="b", weights_sha256="s", dimensions=3, is_active=True)
    page = owner_client.get(f"/admin/recommendations/embeddingmodel/{model.pk}/delete/")
    assert b"the active version serves recommendations" in page.content
    with pytest.raises(ProtectedError):
        EmbeddingModel.objects.filter(pk=model.pk).delete()


def test_switching_back_to_an_old_backbone_rebuilds_its_vector_index(product_with_image, settings):
    settings.VISREC = {"AUTO_EMBED": False}
    # given the configured backbone's version, active and indexed
    ids = [product_with_image().visrec_images.get().pk for _ in range(2)]
    embedding.embed_images(ids)
    first = EmbeddingModel.objects.get(is_active=True)
    assert _has_index(first)
    # when another version took over (its vectors complete): the first one's vectors and index are dropped
    other = EmbeddingModel.objects.create(key="other", backbone="other", weights_sha256="x", dimensions=3)
    other.ensure_index()
    ImageEmbedding.objects.bulk_create(
        ImageEmbedding(image_id=pk, model=other, vector=HalfVector(np.ones(3, dtype=np.float32))) for pk in ids
    )
    assert embedding.switch_if_complete(other)
    assert not _has_index(first) and not ImageEmbedding.objects.filter(model=first).exists()
    # and the owner switches back to the first backbone (its record is found again, not created)
    embedding.embed_images(ids)
    # then its index is there again, and it serves once its vectors are complete
    first.refresh_from_db()
    assert _has_index(first) and first.is_active
    assert ImageEmbedding.objects.filter(model=first).count() == 2
