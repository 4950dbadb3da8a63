"""With the database gone, every endpoint answers the cached fallback (200) or 503 in the error shape, never 500."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import OperationalError, connection

from tests.fixtures.images import make_image

pytestmark = pytest.mark.django_db


@pytest.fixture
def database_down(monkeypatch):
    def refuse(*args, **kwargs):
        raise OperationalError("could not connect to server: Connection refused")

    def stop() -> None:
        monkeypatch.setattr(connection, "cursor", refuse)
        monkeypatch.setattr(connection, "chunked_cursor", refuse)

    return stop


def test_every_endpoint_degrades_without_a_server_error(api_client, server_client, small_catalog, database_down):
    anchor = small_catalog["anchor"].pk
    assert api_client.get("/api/v1/products/popular/").status_code == 200  # the last good list to fall back on
    database_down()
    photo = make_image(size=(224, 224))

    responses = {
        "similar": api_client.get(f"/api/v1/products/{anchor}/similar/"),
        "for-you": api_client.get("/api/v1/recommendations/for-you/"),
        "popular": api_client.get("/api/v1/products/popular/"),
        "search": api_client.post(
            "/api/v1/search/by-image/", {"image": SimpleUploadedFile("p.jpg", photo)}, format="multipart"
        ),
        "events": api_client.post("/api/v1/events/", {"events": [{"type": "view", "product": anchor}]}, format="json"),
        "token events": server_client.post(
            "/api/v1/events/", {"events": [{"type": "view", "product": anchor, "session": "s"}]}, format="json"
        ),
    }
    statuses = {name: r.status_code for name, r in responses.items()}
    assert statuses == {
        "similar": 503,  # the product itself cannot be read
        "for-you": 200,
        "popular": 200,
        "search": 503,
        "events": 503,
        "token events": 503,
    }
    for name in ("for-you", "popular"):
        assert responses[name].json()["source"] == "cache-fallback" and responses[name].json()["count"] > 0
    for name in ("similar", "search", "events", "token events"):
        assert responses[name].json()["error"]["code"] == "service_unavailable"


def test_without_a_cached_list_recommendations_are_503(api_client, product_factory, database_down):
    product_factory()
    database_down()
    response = api_client.get("/api/v1/recommendations/for-you/")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "recommendations_unavailable"
