"""OpenAPI schema, Swagger UI and ReDoc: valid, complete, and served without any CDN."""

from __future__ import annotations

import re

import pytest
import yaml
from django.core.management import call_command

pytestmark = pytest.mark.django_db

ENDPOINTS = {
    "/api/v1/products/{id}/similar/": "get",
    "/api/v1/products/{id}/complements/": "get",
    "/api/v1/products/popular/": "get",
    "/api/v1/recommendations/for-you/": "get",
    "/api/v1/search/by-image/": "post",
    "/api/v1/events/": "post",
}


def test_spectacular_validates_without_warnings(tmp_path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = yaml.safe_load(out.read_text())
    assert {path: next(iter(ops)) for path, ops in schema["paths"].items()} == ENDPOINTS


def test_schema_documents_auth_bodies_and_error_shapes(client):
    schema = client.get("/api/schema/?format=json").json()
    assert set(schema["components"]["securitySchemes"]) == {"tokenAuth", "cookieAuth"}
    events = schema["paths"]["/api/v1/events/"]["post"]
    assert events["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/EventBatchRequest")
    assert {"201", "400", "403", "413", "415", "422", "429", "503"} <= set(events["responses"])
    assert events["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in events["parameters"])
    search = schema["paths"]["/api/v1/search/by-image/"]["post"]
    assert list(search["requestBody"]["content"]) == ["multipart/form-data"]
    for_you = schema["paths"]["/api/v1/recommendations/for-you/"]["get"]
    assert {"limit", "category", "user", "session"} <= {p["name"] for p in for_you["parameters"]}
    error = schema["components"]["schemas"]["ErrorDetail"]
    assert {"code", "message"} <= set(error["required"])


@pytest.mark.parametrize("url", ["/api/docs/", "/api/redoc/"])
def test_docs_pages_use_only_local_assets(client, url):
    response = client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    refs = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    assert refs, "the page loads its scripts"
    assert not [ref for ref in refs if re.match(r"^(https?:)?//", ref)], refs
    assert not re.search(r"https?://(cdn|unpkg|fonts)\.", html)
    for ref in refs:  # every asset is served by this site
        if ref.startswith("/static/"):
            assert client.get(ref).status_code == 200, ref
    assert "/api/schema/" in html


def test_listed_items_are_built_exactly_as_the_documented_serializer_renders_them(product_factory, product_with_image):
    """The API builds list items without DRF's per-field machinery; the serializer documents them."""
    from decimal import Decimal

    from rest_framework.test import APIRequestFactory

    from recommendations import serving
    from recommendations.api.serializers import ListedItem, RecommendedProductSerializer, listed_items_data

    with_image = product_with_image(title='Mug "<b>"', price=Decimal("12.5"))
    plain = product_factory(title="No photo", price=Decimal("0"))
    request = APIRequestFactory().get("/api/v1/products/1/similar/", SERVER_NAME="testserver", secure=True)
    for products in (
        [with_image, plain],
        sorted(serving.raw_products(*serving.products_sql([with_image.pk, plain.pk], None)), key=lambda p: p.pk),
    ):
        items = [ListedItem(p, 0.123456789, "visual", n, f"token{n}") for n, p in enumerate(products)]
        expected = RecommendedProductSerializer(items, many=True, context={"request": request}).data
        assert listed_items_data(items, request) == [dict(row) for row in expected]
        assert listed_items_data(items) == [
            dict(row) for row in RecommendedProductSerializer(items, many=True, context={}).data
        ]
