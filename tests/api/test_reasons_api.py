""" "Why this?" in the API: ``because``, ``why`` and ``shares`` on every list item, added beside the old fields."""

from __future__ import annotations

import pytest

from recommendations.models import Interaction

pytestmark = pytest.mark.django_db

OLD_FIELDS = {
    "id",
    "sku",
    "title",
    "price",
    "currency",
    "url",
    "image_url",
    "score",
    "reason",
    "position",
    "click_token",
}


def test_for_you_items_say_which_of_the_shoppers_products_drew_them_in(client, small_catalog):
    viewed = small_catalog["other1"]
    client.get(f"/product/{viewed.pk}/")  # the shopper's history: one view
    body = client.get("/api/v1/recommendations/for-you/?limit=4").json()
    assert body["count"] == 4
    for item in body["results"]:
        assert set(item) == OLD_FIELDS | {"because", "why", "shares"}  # nothing renamed, three fields added
        assert item["reason"] == "session" and item["why"] == "history" and item["shares"] == []
        because = item["because"]
        assert set(because) == {"product", "title", "image_url", "event"}
        assert (because["product"], because["title"], because["event"]) == (viewed.pk, viewed.title, "view")
        assert because["image_url"].startswith("http://testserver/") and because["image_url"].endswith(".jpg")


def test_a_cold_shoppers_items_say_trending_or_popular_with_no_because(client, small_catalog):
    Interaction.objects.create(product=small_catalog["cousin"], kind="purchase", session_key="crowd")
    body = client.get("/api/v1/recommendations/for-you/?limit=4").json()
    first, rest = body["results"][0], body["results"][1:]
    assert (first["id"], first["reason"], first["why"], first["because"]) == (
        small_catalog["cousin"].pk,
        "trending",
        "trending",
        None,
    )
    assert rest and all(item["because"] is None and item["why"] == "popular" for item in rest)


def test_similar_items_say_what_they_share_with_the_product(client, small_catalog):
    anchor = small_catalog["anchor"]
    body = client.get(f"/api/v1/products/{anchor.pk}/similar/?limit=6").json()
    by_id = {item["id"]: item for item in body["results"]}
    assert by_id[small_catalog["twin"].pk]["shares"] == ["category"]
    assert by_id[small_catalog["other0"].pk]["shares"] == []
    assert all(item["because"] is None and item["why"] == "similar" for item in body["results"])


def test_the_schema_documents_the_reasons(client, db):
    schemas = client.get("/api/schema/?format=json").json()["components"]["schemas"]
    item = schemas["RecommendedProduct"]["properties"]
    assert {"because", "why", "shares"} <= set(item)
    assert item["because"].get("nullable") or any(
        "nullable" in part or part.get("type") == "null" for part in item["because"].get("oneOf", [])
    )
    assert set(schemas["Because"]["properties"]) == {"product", "title", "image_url", "event"}
