"""With a worker running, a product uploaded in the admin is in its neighbour's similar items within 5 s.

A real Celery worker against Redis (``VISREC_TEST_REDIS_URL``) embeds the upload; this
process serves the API as a web process would, with the same Redis as its cache, so the
neighbour's list was cached before the upload. ``benchmarks/freshness.py`` measures the
same path many times (docs/benchmarks/freshness.md).
"""

from __future__ import annotations

import time

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile

from catalog import services
from recommendations.conf import visrec_settings
from recommendations.models import ImageState
from tests.fixtures.images import make_image
from tests.recommendations.test_worker import _wait_for, broker, start_worker, stop_worker  # noqa: F401

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

FRESH_WITHIN_S = 5.0
WORKER_CACHE_PREFIX = "visrec:v1:"  # the worker's (the default); the broker's database is emptied per test


@pytest.fixture
def shared_cache(broker, settings, monkeypatch):  # noqa: F811
    """This process caches in the worker's Redis, under the worker's prefix, as web processes do."""
    from recommendations.conf import DEFAULTS

    settings.CACHES = {"default": {"BACKEND": "visrec_shop.cache.RedisCache", "LOCATION": broker}}
    monkeypatch.setitem(DEFAULTS, "CACHE_PREFIX", WORKER_CACHE_PREFIX)
    visrec_settings.reset()
    return broker


@pytest.fixture
def web_and_worker(shared_cache, tmp_path):
    proc = start_worker(shared_cache, tmp_path / "worker.log", REDIS_URL=shared_cache)
    yield proc
    stop_worker(proc)
    print((tmp_path / "worker.log").read_text()[-5000:])


def _similar_ids(client, pk: int) -> list[int]:
    response = client.get(f"/api/v1/products/{pk}/similar/?limit=8")
    assert response.status_code == 200, response.content[:500]
    return [item["id"] for item in response.json()["results"]]


def test_an_uploaded_product_is_in_its_neighbours_similar_items_within_5_s(
    web_and_worker, client, product_factory, category_factory
):
    # given a catalogue the worker has embedded (which also loads its model) ...
    shirts = category_factory("Shirts")
    red = make_image(color=(200, 30, 30), shape="stripes", size=(224, 224))
    anchor = product_factory(category=shirts, title="Red stripes")
    services.add_product_image(anchor, red, "red.jpg")
    for n, (colour, shape) in enumerate([((20, 160, 40), "circle"), ((30, 30, 200), "triangle")] * 3):
        services.add_product_image(product_factory(category=shirts), make_image(color=colour, shape=shape), f"{n}.jpg")
    assert _wait_for(lambda: not ImageState.objects.exclude(status="ready").exists(), 180), "catalogue not embedded"
    # ... and the anchor's similar items, served and so cached
    cached = _similar_ids(client, anchor.pk)
    assert len(cached) == 6 and _similar_ids(client, anchor.pk) == cached
    # when the owner uploads a lookalike of the anchor in the admin
    client.force_login(get_user_model().objects.create_superuser("owner", "owner@example.com", "pw-12345678"))
    lookalike = product_factory(category=shirts, title="Red stripes, new")
    photo = SimpleUploadedFile("new.jpg", make_image(color=(210, 40, 40), shape="stripes", size=(224, 224)))
    uploaded = time.monotonic()
    response = client.post(
        "/admin/catalog/productimage/add/", {"product": lookalike.pk, "file": photo, "position": 0, "import_error": ""}
    )
    assert response.status_code == 302
    # then the anchor's similar items show it within 5 s
    appeared = _wait_for(lambda: lookalike.pk in _similar_ids(client, anchor.pk), FRESH_WITHIN_S, 0.1)
    elapsed = time.monotonic() - uploaded
    assert appeared, f"not in the anchor's similar items {elapsed:.1f} s after the upload"
    assert _similar_ids(client, anchor.pk)[0] == lookalike.pk  # the nearest of all
