"""GET /api/v1/products/{id}/similar/ and /products/popular/."""

import pytest
from django.db import DatabaseError

from recommendations import serving

pytestmark = pytest.mark.django_db


def test_similar_returns_products_with_scores(client, small_catalog):
    anchor = small_catalog["anchor"]
    response = client.get(f"/api/v1/products/{anchor.pk}/similar/?limit=3")
    assert response.status_code == 200
    body = response.json()
    assert body["product"] == anchor.pk and body["count"] == 3
    first = body["results"][0]
    assert first["id"] == small_catalog["twin"].pk
    assert set(first) >= {"id", "title", "price", "image_url", "score", "url"}
    assert first["image_url"].startswith("http://testserver/media/")
    assert first["price"] == "19.90"
    assert body["results"][0]["score"] >= body["results"][1]["score"]


def test_default_limit_is_8(client, small_catalog):
    response = client.get(f"/api/v1/products/{small_catalog['anchor'].pk}/similar/")
    assert response.json()["count"] == 6  # only 6 recommendable neighbours exist


def test_unknown_product_is_404_with_message(client, db):
    response = client.get("/api/v1/products/999999/similar/")
    assert response.status_code == 404
    assert response.json()["error"] == {"code": "product_not_found", "message": "Product 999999 does not exist."}


@pytest.mark.parametrize("limit", ["0", "-1", "abc", "101", "1.5"])
def test_bad_limit_is_400_with_message(client, product_factory, limit):
    product = product_factory()
    response = client.get(f"/api/v1/products/{product.pk}/similar/?limit={limit}")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_parameter"
    assert error["message"].startswith("limit:")


def test_database_failure_is_503_not_500(client, product_factory, monkeypatch):
    product = product_factory()

    def broken(*args, **kwargs):
        raise DatabaseError("index unavailable")

    monkeypatch.setattr(serving, "similar_items_or_fallback", broken)
    response = client.get(f"/api/v1/products/{product.pk}/similar/")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "recommendations_unavailable"


def test_popular_endpoint(client, small_catalog):
    response = client.get("/api/v1/products/popular/?limit=2")
    assert response.status_code == 200
    assert response.json()["count"] == 2
