"""The admin pages a shop owner uses load and show what they promise."""

import pytest
from django.contrib.auth import get_user_model

from recommendations.models import ImageState

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner_client(client):
    owner = get_user_model().objects.create_superuser("owner", "owner@example.com", "pw-12345678")
    client.force_login(owner)
    return client


@pytest.mark.parametrize(
    "url",
    [
        "/admin/catalog/product/",
        "/admin/catalog/productimage/",
        "/admin/catalog/category/",
        "/admin/recommendations/interaction/",
        "/admin/recommendations/embeddingmodel/",
        "/admin/recommendations/imageembedding/",
    ],
)
def test_changelists_load(owner_client, product_with_image, url):
    product_with_image()
    assert owner_client.get(url).status_code == 200


def test_product_list_shows_thumbnail_and_embedding_status(owner_client, product_with_image):
    product = product_with_image(title="Striped mug")
    ImageState.objects.filter(product=product).update(status="failed", error="corrupt or truncated image")
    html = owner_client.get("/admin/catalog/product/").content.decode()
    assert "Striped mug" in html and "<img src=" in html and "Failed" in html
    detail = owner_client.get(f"/admin/catalog/product/{product.pk}/change/").content.decode()
    assert "corrupt or truncated image" in detail


def test_image_admin_filters_by_status_and_reembed_action_queues(owner_client, product_with_image, monkeypatch):
    from recommendations import tasks

    product = product_with_image()
    image = product.visrec_images.get()
    queued = []
    monkeypatch.setattr(tasks, "enqueue_embedding", lambda ids: queued.extend(ids))
    ImageState.objects.filter(pk=image.pk).update(status="failed", error="x")
    assert "x" in owner_client.get("/admin/recommendations/imagestate/?status__exact=failed").content.decode()
    response = owner_client.post(
        "/admin/recommendations/imagestate/", {"action": "reembed", "_selected_action": [image.pk]}, follow=True
    )
    assert response.status_code == 200
    image.refresh_from_db()
    assert image.status == "pending" and queued == [image.pk]
