"""GET /api/v1/products/{id}/similar/, /recommendations/for-you/ and /products/popular/."""

import pytest
from django.db import DatabaseError

from catalog import services
from recommendations import serving, tracking
from recommendations.models import Impression

pytestmark = pytest.mark.django_db


def test_similar_returns_products_with_scores(client, small_catalog):
    anchor = small_catalog["anchor"]
    response = client.get(f"/api/v1/products/{anchor.pk}/similar/?limit=3")
    assert response.status_code == 200
    body = response.json()
    assert body["product"] == anchor.pk and body["count"] == 3
    assert body["widget"] == "similar-items" and body["embedding_version"]
    first = body["results"][0]
    assert first["id"] == small_catalog["twin"].pk
    assert set(first) >= {"id", "title", "price", "image_url", "score", "url", "reason", "position", "click_token"}
    assert first["image_url"].startswith("http://testserver/media/")
    assert first["price"] == "19.90"
    assert body["results"][0]["score"] >= body["results"][1]["score"]


def test_similar_records_an_impression_and_signs_each_item(client, small_catalog):
    body = client.get(f"/api/v1/products/{small_catalog['anchor'].pk}/similar/?limit=3").json()
    impression = Impression.objects.get(pk=body["impression"])
    assert [item["product"] for item in impression.items] == [r["id"] for r in body["results"]]
    for position, item in enumerate(body["results"]):
        token = tracking.read_click_token(item["click_token"])
        assert (token["product_id"], token["position"], token["impression_id"]) == (
            item["id"],
            position,
            body["impression"],
        )


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


def test_backend_failure_answers_the_cached_list_or_503_not_500(client, product_factory, monkeypatch):
    product = product_factory()

    def broken(*args, **kwargs):
        raise DatabaseError("index unavailable")

    monkeypatch.setattr(serving, "similar_items", broken)
    response = client.get(f"/api/v1/products/{product.pk}/similar/")
    assert response.status_code == 503  # nothing cached yet
    assert response.json()["error"]["code"] == "recommendations_unavailable"
    cached = product_factory()
    assert client.get("/api/v1/products/popular/").status_code == 200  # remembers the last good list
    response = client.get(f"/api/v1/products/{product.pk}/similar/")
    assert response.status_code == 200
    body = response.json()
    assert body["source"] == "cache-fallback" and [r["id"] for r in body["results"]] == [cached.pk]


def test_for_you_follows_the_sessions_taste(client, small_catalog):
    client.get(f"/product/{small_catalog['other1'].pk}/")  # a view gives the visitor a session and a taste
    response = client.get("/api/v1/recommendations/for-you/?limit=4")
    assert response.status_code == 200
    body = response.json()
    assert body["widget"] == "for-you" and body["count"] == 4
    assert Impression.objects.get(pk=body["impression"]).session_key == client.session.session_key


@pytest.mark.parametrize("category", ["nope", "²", "99999999999999999999"])
def test_for_you_unknown_category_is_400(client, db, category):
    response = client.get("/api/v1/recommendations/for-you/", {"category": category})
    assert response.status_code == 400
    assert response.json()["error"] == {"code": "invalid_parameter", "message": f"category: no category {category!r}."}


def test_popular_pages_with_next_and_previous(client, product_factory):
    products = [product_factory() for _ in range(5)]
    for rank, product in enumerate(products):  # products[0] sells most
        for _ in range(5 - rank):
            services.record_interaction(product, "purchase", session_key="s")
    first = client.get("/api/v1/products/popular/?limit=2").json()
    assert [r["id"] for r in first["results"]] == [products[0].pk, products[1].pk]
    assert first["previous"] is None and "offset=2" in first["next"]
    second = client.get(first["next"]).json()
    assert [r["id"] for r in second["results"]] == [products[2].pk, products[3].pk]
    assert "offset=0" in second["previous"]
    last = client.get(second["next"]).json()
    assert [r["id"] for r in last["results"]] == [products[4].pk] and last["next"] is None


def test_popular_offset_is_bounded(client, db):
    response = client.get("/api/v1/products/popular/?offset=1001")
    assert response.status_code == 400 and response.json()["error"]["message"].startswith("offset:")


def test_unknown_api_url_is_404_in_the_error_shape(client, db):
    response = client.get("/api/v1/nothing-here/")
    assert response.status_code == 404
    assert response.json()["error"] == {"code": "not_found", "message": "No API endpoint at /api/v1/nothing-here/."}


def test_a_missing_trailing_slash_gets_a_hint(client, db):
    response = client.post("/api/v1/events", {}, content_type="application/json")
    assert response.status_code == 404
    assert response.json()["error"]["message"] == "No API endpoint at /api/v1/events. Did you mean /api/v1/events/ ?"
