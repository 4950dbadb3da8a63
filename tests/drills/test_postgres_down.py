"""PostgreSQL stopped under a served shop: pages answer from the cache, the API says 503, never 500.

The drill's database fault in seconds: the shop runs in gunicorn (DEBUG off) on a scratch
embedded PostgreSQL and Redis of its own (``served_shop``), and the server is really
stopped with its ``pg_ctl`` and started again.
"""

from __future__ import annotations

import http.client
import json
import time

import pytest


def _get(port: int, path: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Host": "127.0.0.1", **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read().decode("utf-8", "replace")
    finally:
        conn.close()


def _event(port: int, product: int):
    body = json.dumps({"events": [{"type": "view", "product": product}]}).encode()
    return _get(port, "/api/v1/events/", "POST", body, {"Content-Type": "application/json"})


@pytest.mark.slow
def test_while_postgresql_is_down_pages_answer_from_the_cache_and_the_api_says_503(served_shop):
    port = served_shop.web_port
    # given a shop that served a few product pages and the popular list (their copies are in the cache)
    status, body = _get(port, "/api/v1/products/popular/?limit=6")
    assert status == 200, body
    products = json.loads(body)["results"]
    seen, unseen = products[:3], products[3:]
    for product in seen:
        assert _get(port, f"/product/{product['id']}/")[0] == 200
    # when PostgreSQL stops
    served_shop.pg.stop()
    try:
        # then the pages already seen answer from their cached copies, with the product on them
        for product in seen:
            status, body = _get(port, f"/product/{product['id']}/")
            assert status == 200 and product["title"] in body
        # a page never seen says it is unavailable (503), not a server error
        assert _get(port, f"/product/{unseen[0]['id']}/")[0] == 503
        # the widget API answers the cached popular list or a typed 503
        for path in (f"/api/v1/products/{seen[0]['id']}/similar/", "/api/v1/recommendations/for-you/"):
            status, body = _get(port, path)
            assert status == 200 or (status == 503 and '"code"' in body), (path, status, body)
        # events cannot be stored: 503 with the API's error shape, so the client retries
        status, body = _event(port, seen[0]["id"])
        assert status == 503 and json.loads(body)["error"]["code"], body
    finally:
        served_shop.pg.start()
    # and once it is back, the shop serves and records again without a restart
    deadline = time.monotonic() + 15
    while (_event(port, seen[0]["id"])[0] != 201) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _event(port, seen[0]["id"])[0] == 201
    assert _get(port, f"/product/{unseen[0]['id']}/")[0] == 200


@pytest.mark.django_db
def test_a_session_deleted_meanwhile_still_interrupts_the_request():
    # the outage fallback of the session engine must not hide Django's own "session deleted" case
    from django.contrib.sessions.backends.base import UpdateError
    from django.contrib.sessions.models import Session

    from visrec_shop.sessions import SessionStore

    session = SessionStore()
    session["cart"] = [1]
    session.save()
    Session.objects.filter(session_key=session.session_key).delete()
    session["cart"] = [1, 2]
    with pytest.raises(UpdateError):
        session.save()
