"""Catalogue visual health page: duplicates, failed images, missing vectors, never recommended, coverage."""

from __future__ import annotations

import uuid
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone
from pgvector import HalfVector

from recommendations.cockpit import health
from recommendations.models import ImageEmbedding, ImageState, Impression

pytestmark = pytest.mark.django_db

URL = "/admin/recommendations/rule/health/"


def _impression(products, days_ago: float = 1.0) -> None:
    Impression.objects.create(
        id=uuid.uuid4(),
        widget="similar-items",
        items=[{"product": p.pk, "position": i, "reason": "visual"} for i, p in enumerate(products)],
        created_at=timezone.now() - timedelta(days=days_ago),
    )


@pytest.fixture
def sick_shop(vector_catalog):
    products, model = vector_catalog(n=60, in_stock_share=1.0)
    # a near-duplicate pair: product 5's vector is product 4's, slightly perturbed
    v4 = np.asarray(ImageEmbedding.objects.get(image__product=products[4]).vector, dtype=np.float32)
    ImageEmbedding.objects.filter(image__product=products[5]).update(vector=HalfVector(v4 + 0.001))
    # the same file uploaded for two products
    ImageState.objects.filter(product__in=products[10:12]).update(sha256="ab" * 32)
    # a failed image without a vector
    failed = ImageState.objects.get(product=products[20])
    ImageState.objects.filter(pk=failed.pk).update(status=ImageState.Status.FAILED, error="cannot identify image")
    ImageEmbedding.objects.filter(image=failed).delete()
    # shown in the last 30 days: products 0..9 (all of them in categories 0/1/2/3 by i % 4); product 30 long ago
    _impression(products[:6])
    _impression(products[6:10], days_ago=29)
    _impression([products[30]], days_ago=40)
    return products, model


def test_health_page_lists_every_problem(sick_shop, admin_client):
    products, _ = sick_shop
    response = admin_client.get(URL)
    assert response.status_code == 200
    ctx = response.context
    near = [(a.product_id, b.product_id) for a, b, _ in ctx["near"]]
    assert (products[4].pk, products[5].pk) in near or (products[5].pk, products[4].pk) in near
    assert len(near) == 1
    assert [{i.product_id for i in images} for _, images in ctx["duplicate_rows"]] == [
        {products[10].pk, products[11].pk}
    ]
    assert [i.product_id for i in ctx["failed"]] == [products[20].pk]
    assert "cannot identify image" in response.content.decode()
    assert [p.pk for p in ctx["no_vector"]] == [products[20].pk]
    assert ctx["never"].paginator.count == 50  # 60 products, 10 shown in the last 30 days
    assert products[30].pk in ctx["never"].paginator.object_list
    assert [p.pk for p in ctx["never_products"]] == list(ctx["never"].object_list)
    assert {c.category: (c.products, c.shown) for c in ctx["coverage"]} == {
        "C0": (15, 3),
        "C1": (15, 3),
        "C2": (15, 2),
        "C3": (15, 2),
    }


def test_long_lists_are_paginated_and_keep_the_other_pages(sick_shop, admin_client):
    response = admin_client.get(URL + "?never=2&failed=1")
    page = response.context["never"]
    assert page.number == 2 and len(page) == 25
    assert "failed=1" in page.prev_qs and "never=1" in page.prev_qs and page.next_qs == ""


def test_near_duplicate_sweep_is_bounded_and_cached(sick_shop, monkeypatch):
    _, model = sick_shop
    monkeypatch.setattr(health, "SWEEP_MAX", 10)
    _, pairs, looked = health.near_duplicates(model)
    assert looked == 10
    monkeypatch.setattr(health, "SWEEP_MAX", 100)
    assert health.near_duplicates(model)[2] == 10  # cached
    assert health.near_duplicates(model, refresh=True)[2] == 59  # every vector (one image failed)


def test_health_needs_view_permission_and_retry_needs_the_task_permission(sick_shop, client, staff_user):
    from django.contrib.admin.models import LogEntry

    products, _ = sick_shop
    client.force_login(staff_user("recommendations.view_rule"))
    assert client.get(URL).status_code == 403
    client.force_login(staff_user("catalog.view_product", username="viewer"))
    page = client.get(URL)
    assert page.status_code == 200 and "Retry all failed" not in page.content.decode()
    assert client.post(URL + "retry/").status_code == 403
    assert client.post(URL, {"refresh": "1"}).status_code == 403
    boss = staff_user("catalog.view_product", "recommendations.add_taskrun", username="boss")
    client.force_login(boss)
    assert "Retry all failed" in client.get(URL).content.decode()
    assert client.post(URL + "retry/").status_code == 302
    image = ImageState.objects.get(product=products[20])
    assert image.status == ImageState.Status.PENDING and image.error == ""
    assert LogEntry.objects.filter(user=boss, object_id=str(products[20].pk)).exists()


def test_health_page_without_an_embedding_version_or_data(admin_client, product_factory):
    product = product_factory()
    response = admin_client.get(URL)
    assert response.status_code == 200
    assert [p.pk for p in response.context["no_vector"]] == [product.pk]
    assert list(response.context["near"]) == []
