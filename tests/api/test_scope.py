"""Who may act for which shopper: tokens expire, staff need ``view_interaction``; deep JSON is a 400."""

from __future__ import annotations

import datetime

import pytest
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from recommendations.api.parsers import MAX_JSON_DEPTH

pytestmark = pytest.mark.django_db

FOR_YOU = "/api/v1/recommendations/for-you/"


def _token_client(user, *, age_days: float) -> APIClient:
    token = Token.objects.create(user=user)
    Token.objects.filter(pk=token.pk).update(created=timezone.now() - datetime.timedelta(days=age_days))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def test_a_token_older_than_its_lifetime_is_refused_with_401(user_factory, small_catalog, settings):
    settings.VISREC = {"TOKEN_TTL_DAYS": 30}
    bob = user_factory("bob")
    fresh = _token_client(user_factory("backend"), age_days=29)
    assert fresh.get(f"{FOR_YOU}?user={bob.pk}").status_code == 200
    stale = _token_client(user_factory("old-backend"), age_days=31)
    response = stale.get(f"{FOR_YOU}?user={bob.pk}")
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["code"] == "authentication_failed" and error["message"].startswith("This token expired on ")
    assert "drf_create_token -r" in error["message"]


def test_tokens_expire_after_90_days_by_default_and_never_when_switched_off(user_factory, small_catalog, settings):
    bob = user_factory("bob")
    old = _token_client(user_factory("backend"), age_days=91)
    assert old.get(f"{FOR_YOU}?user={bob.pk}").status_code == 401
    settings.VISREC = {"TOKEN_TTL_DAYS": None}
    assert old.get(f"{FOR_YOU}?user={bob.pk}").status_code == 200


def test_staff_without_view_interaction_cannot_act_for_a_shopper(user_factory, small_catalog, product_factory):
    clerk = user_factory("clerk", is_staff=True)  # edits the catalogue; may not see shoppers' events
    client = APIClient()
    client.force_login(clerk)
    bob = user_factory("bob")
    response = client.get(f"{FOR_YOU}?user={bob.pk}")
    assert response.status_code == 403 and response.json()["error"]["code"] == "permission_denied"
    event = {"events": [{"type": "view", "product": product_factory().pk, "user": bob.pk}]}
    assert client.post("/api/v1/events/", event, format="json").status_code == 403
    assert client.get(FOR_YOU).status_code == 200  # their own list


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 200_000])
def test_deeply_nested_json_is_a_400_not_a_500(api_client, depth):
    nested = "[" * depth + "]" * depth
    body = '{"events": [{"type": "view", "product": 1, "source": ' + nested + "}]}"
    response = api_client.post("/api/v1/events/", body, content_type="application/json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "malformed_request"
    assert error["message"] == f"The JSON body nests lists or objects more than {MAX_JSON_DEPTH} levels deep."
