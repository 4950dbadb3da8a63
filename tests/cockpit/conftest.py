"""Fixtures of the cockpit tests: the serving tests' synthetic vector catalogue, staff users."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission

from tests.serving.conftest import vector_catalog  # noqa: F401  (re-exported fixture)


@pytest.fixture
def staff_user(django_user_model):
    """``make(*perms)``: a staff user (not superuser) with the given ``app.codename`` permissions."""

    def make(*perms: str, username: str = "owner"):
        user = django_user_model.objects.create_user(username, password="pw", is_staff=True)
        for perm in perms:
            app, codename = perm.split(".")
            user.user_permissions.add(Permission.objects.get(content_type__app_label=app, codename=codename))
        return django_user_model.objects.get(pk=user.pk)  # fresh permission cache

    return make
