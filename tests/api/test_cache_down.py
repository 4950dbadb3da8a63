"""With Redis down or hung, the API and the product page still answer 2xx, quickly: the cache is an optimisation.

The cache is the project's Redis backend, configured as ``settings.py`` configures it, pointed
at a local port where nothing listens (refused at once) or at a local server that accepts
connections and never answers (a hung host: only the socket timeouts end the wait); both
from ``tests/fixtures/network.py``.
"""

from __future__ import annotations

import signal
import time
from contextlib import contextmanager

import pytest
from django.test import Client
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

ANSWER_SECONDS = 2.0  # each request, hung Redis included (its timeout is a fraction of a second)


@pytest.fixture(params=["refused", "hung"])
def redis_down(request, settings):
    """The default cache: the project's Redis backend with its settings' timeouts, at a Redis that is down."""
    port = request.getfixturevalue(f"{request.param}_port")
    settings.CACHES = {
        "default": {
            "BACKEND": "visrec_shop.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "OPTIONS": {"socket_connect_timeout": settings.REDIS_TIMEOUT, "socket_timeout": settings.REDIS_TIMEOUT},
        }
    }
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"recommendations": "2/min", "search": "2/min", "events": "2/min"},
    }
    return request.param


@contextmanager
def answered_within(seconds: float):
    """Fail if the block takes longer than ``seconds`` (a SIGALRM ends a request that would hang for ever)."""

    def hung(signum, frame):
        raise AssertionError("no answer after 15 s: the request hangs on the cache")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, 15)
    start = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - start < seconds


def _get(client, url: str):
    with answered_within(ANSWER_SECONDS):
        return client.get(url)


def test_anonymous_api_calls_answer_and_throttles_fail_open(redis_down, small_catalog, caplog):
    client = APIClient(enforce_csrf_checks=True)
    anchor = small_catalog["anchor"].pk
    statuses = [_get(client, url).status_code for url in ["/api/v1/products/popular/"] * 3]
    statuses.append(_get(client, f"/api/v1/products/{anchor}/similar/").status_code)
    assert statuses == [200, 200, 200, 200]  # over the 2/min rate: without its counts, the throttle lets calls in
    assert "throttle cache unavailable" in caplog.text


def test_shopper_calls_with_a_session_answer(redis_down, small_catalog, django_user_model):
    anchor = small_catalog["anchor"].pk
    # an anonymous shopper: the first event starts the session, the next calls read it (from the database)
    anonymous = APIClient(enforce_csrf_checks=True)
    with answered_within(ANSWER_SECONDS):
        posted = anonymous.post("/api/v1/events/", {"events": [{"type": "view", "product": anchor}]}, format="json")
    assert posted.status_code == 201 and "sessionid" in posted.cookies
    assert _get(anonymous, "/api/v1/recommendations/for-you/").status_code == 200
    assert _get(anonymous, f"/api/v1/products/{anchor}/similar/").status_code == 200
    # a signed-in shopper (the login writes the session while the cache is down)
    signed_in = APIClient(enforce_csrf_checks=True)
    signed_in.force_login(django_user_model.objects.create_user("alice", password="pw-12345678"))
    response = _get(signed_in, "/api/v1/recommendations/for-you/")
    assert response.status_code == 200 and response.json()["count"] > 0


def test_the_product_page_answers(redis_down, small_catalog):
    client = Client()
    pk = small_catalog["anchor"].pk
    for _ in range(2):  # the second view reads the session the first one started
        response = _get(client, f"/product/{pk}/")
        assert response.status_code == 200 and small_catalog["anchor"].title in response.content.decode()
