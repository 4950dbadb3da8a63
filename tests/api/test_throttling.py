"""Throttling: per scope, per anonymous IP or signed-in user; 429 in the error shape."""

from __future__ import annotations

import pytest

from visrec_shop.settings import _throttle_rate

pytestmark = pytest.mark.django_db

POPULAR = "/api/v1/products/popular/"


@pytest.fixture
def small_rates(settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"recommendations": "2/min", "search": "1/min", "events": "2/min"},
    }


def test_anonymous_caller_is_throttled_with_retry_after(api_client, small_rates, product_factory):
    product_factory(stock=3)
    assert [api_client.get(POPULAR).status_code for _ in range(2)] == [200, 200]
    response = api_client.get(POPULAR)
    assert response.status_code == 429
    retry_after = int(response["Retry-After"])
    assert 0 < retry_after <= 60
    error = response.json()["error"]
    assert error["code"] == "throttled" and error["retry_after"] == retry_after
    assert "throttled" in error["message"]


def test_scopes_are_counted_separately(api_client, small_rates, product_factory):
    product = product_factory()
    for _ in range(2):
        api_client.get(POPULAR)
    assert api_client.get(POPULAR).status_code == 429
    similar = api_client.get(f"/api/v1/products/{product.pk}/similar/")
    assert similar.status_code == 429  # same scope: "recommendations"
    events = api_client.post("/api/v1/events/", {"events": [{"type": "view", "product": product.pk}]}, format="json")
    assert events.status_code == 201  # scope "events" has its own budget


def test_signed_in_shoppers_are_counted_per_user(api_client, shopper_client, small_rates):
    for _ in range(2):
        assert shopper_client.get(POPULAR).status_code == 200
    assert shopper_client.get(POPULAR).status_code == 429
    assert api_client.get(POPULAR).status_code == 200  # the anonymous budget is another one


def test_token_clients_are_not_throttled(server_client, small_rates):
    assert {server_client.get(POPULAR).status_code for _ in range(5)} == {200}


def test_a_rate_of_none_turns_throttling_off(api_client, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"recommendations": None, "search": None, "events": None},
    }
    assert {api_client.get(POPULAR).status_code for _ in range(5)} == {200}


def test_rates_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("API_THROTTLE_SEARCH", "5/second")
    assert _throttle_rate("SEARCH", "30/min") == "5/second"
    monkeypatch.setenv("API_THROTTLE_SEARCH", "off")
    assert _throttle_rate("SEARCH", "30/min") is None
    monkeypatch.delenv("API_THROTTLE_SEARCH")
    assert _throttle_rate("SEARCH", "30/min") == "30/min"
