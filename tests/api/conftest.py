"""API test fixtures: clients for each kind of caller.

``tests/conftest.py`` gives each test inline impressions and its own cache prefix (so
no throttle history leaks from one test to the next).
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.recommendations.conftest import small_catalog  # noqa: F401  (shared fixture)


@pytest.fixture
def user_factory(db):
    def create(username: str, **kwargs):
        return get_user_model().objects.create_user(username=username, password="pw-12345678", **kwargs)

    return create


CSRF = "a" * 32


def csrf_header(client) -> dict:
    """The CSRF cookie a shopper's page has and the header it sends with a POST."""
    client.cookies["csrftoken"] = CSRF
    return {"HTTP_X_CSRFTOKEN": CSRF}


@pytest.fixture
def api_client() -> APIClient:
    """An anonymous client (CSRF enforced, as for a browser)."""
    return APIClient(enforce_csrf_checks=True)


@pytest.fixture
def shopper(user_factory):
    return user_factory("alice")


@pytest.fixture
def shopper_client(shopper) -> APIClient:
    """A shopper signed in through the session (CSRF enforced)."""
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(shopper)
    return client


@pytest.fixture
def staff(user_factory):
    """Staff allowed to see shoppers' events (``view_interaction``): they may act for any shopper."""
    from django.contrib.auth.models import Permission

    user = user_factory("staff", is_staff=True)
    perm = Permission.objects.get(content_type__app_label="recommendations", codename="view_interaction")
    user.user_permissions.add(perm)
    return user


@pytest.fixture
def staff_client(staff) -> APIClient:
    client = APIClient()
    client.force_login(staff)
    return client


@pytest.fixture
def server_client(user_factory) -> APIClient:
    """A server-to-server client authenticated with a token."""
    token = Token.objects.create(user=user_factory("shop-backend"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client
