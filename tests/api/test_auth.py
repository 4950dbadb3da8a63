"""Who may call what: token clients, signed-in shoppers (session, CSRF) and anonymous visitors."""

from __future__ import annotations

import base64

import pytest

from recommendations.models import Interaction

from .conftest import csrf_header

pytestmark = pytest.mark.django_db

FOR_YOU = "/api/v1/recommendations/for-you/"


def test_anonymous_visitor_gets_for_you(api_client, small_catalog):
    response = api_client.get(FOR_YOU)
    assert response.status_code == 200
    body = response.json()
    assert body["widget"] == "for-you" and body["count"] > 0
    assert all(item["click_token"] for item in body["results"])


def test_shopper_reads_own_recommendations(shopper_client, shopper, small_catalog):
    assert shopper_client.get(FOR_YOU).status_code == 200
    assert shopper_client.get(f"{FOR_YOU}?user={shopper.pk}").status_code == 200


def test_shopper_asking_for_another_shoppers_recommendations_is_refused(shopper_client, user_factory, small_catalog):
    bob = user_factory("bob")
    response = shopper_client.get(f"{FOR_YOU}?user={bob.pk}")
    assert response.status_code == 403
    assert response.json()["error"] == {
        "code": "permission_denied",
        "message": "You may only read your own recommendations.",
    }


@pytest.mark.parametrize("query", ["user=1", "session=somebody-elses-session"])
def test_anonymous_visitor_cannot_name_a_shopper(api_client, query):
    response = api_client.get(f"{FOR_YOU}?{query}")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


def test_staff_may_read_any_shoppers_recommendations(staff_client, user_factory, small_catalog):
    bob = user_factory("bob")
    assert staff_client.get(f"{FOR_YOU}?user={bob.pk}").status_code == 200
    missing = staff_client.get(f"{FOR_YOU}?user=999999")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "user_not_found"


def test_token_client_names_the_shopper(server_client, user_factory, small_catalog):
    bob = user_factory("bob")
    assert server_client.get(f"{FOR_YOU}?user={bob.pk}").status_code == 200
    assert server_client.get(f"{FOR_YOU}?session=abc123").status_code == 200
    nobody = server_client.get(FOR_YOU)
    assert nobody.status_code == 400 and nobody.json()["error"]["code"] == "invalid_parameter"


def test_bad_token_is_401_with_challenge(api_client):
    api_client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    response = api_client.get(FOR_YOU)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json()["error"]["code"] == "authentication_failed"


def test_basic_auth_is_not_accepted(api_client, staff):
    basic = base64.b64encode(b"staff:pw-12345678").decode()
    api_client.credentials(HTTP_AUTHORIZATION=f"Basic {basic}")
    response = api_client.get(f"{FOR_YOU}?user={staff.pk}")
    assert response.status_code == 403  # treated as anonymous, so it may not name a user


def test_session_post_without_csrf_token_is_refused(shopper_client, product_factory):
    product = product_factory()
    payload = {"events": [{"type": "view", "product": product.pk}]}
    response = shopper_client.post("/api/v1/events/", payload, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert "CSRF" in response.json()["error"]["message"]
    assert not Interaction.objects.exists()
    ok = shopper_client.post("/api/v1/events/", payload, format="json", **csrf_header(shopper_client))
    assert ok.status_code == 201
    assert Interaction.objects.get().user.username == "alice"


def test_anonymous_events_get_a_session(api_client, product_factory):
    product = product_factory()
    response = api_client.post("/api/v1/events/", {"events": [{"type": "view", "product": product.pk}]}, format="json")
    assert response.status_code == 201
    session = response.cookies["sessionid"].value
    assert Interaction.objects.get().session_key == session
    # the same visitor again: same session
    api_client.post("/api/v1/events/", {"events": [{"type": "add_to_cart", "product": product.pk}]}, format="json")
    assert set(Interaction.objects.values_list("session_key", flat=True)) == {session}


def test_shopper_cannot_post_events_for_someone_else(shopper_client, user_factory, product_factory):
    bob, product = user_factory("bob"), product_factory()
    payload = {"events": [{"type": "purchase", "product": product.pk, "user": bob.pk}]}
    response = shopper_client.post("/api/v1/events/", payload, format="json", **csrf_header(shopper_client))
    assert response.status_code == 403
    assert not Interaction.objects.exists()


def test_token_client_posts_events_for_users_and_sessions(server_client, user_factory, product_factory):
    bob, product = user_factory("bob"), product_factory()
    payload = {
        "events": [
            {"type": "purchase", "product": product.pk, "user": bob.pk, "timestamp": "2026-01-02T03:04:05Z"},
            {"type": "view", "product": product.pk, "session": "visitor-42"},
        ]
    }
    response = server_client.post("/api/v1/events/", payload, format="json")  # no CSRF for tokens
    assert response.status_code == 201, response.json()
    purchase, view = Interaction.objects.order_by("pk")
    assert (purchase.user, purchase.kind, purchase.created_at.year) == (bob, "purchase", 2026)
    assert (view.user, view.session_key) == (None, "visitor-42")


def test_staff_post_their_own_events_or_name_a_shopper(staff_client, user_factory, product_factory):
    bob, product = user_factory("bob"), product_factory()
    payload = {
        "events": [{"type": "view", "product": product.pk}, {"type": "view", "product": product.pk, "user": bob.pk}]
    }
    assert staff_client.post("/api/v1/events/", payload, format="json").status_code == 201
    assert sorted(Interaction.objects.values_list("user__username", flat=True)) == ["bob", "staff"]
