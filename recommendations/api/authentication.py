"""Token authentication for server clients, with tokens that expire.

A token speaks for every shopper (see ``shoppers.may_act_for_others``), so a leaked one
must not work forever: a token older than ``VISREC["TOKEN_TTL_DAYS"]`` (``None``: never
expires) is refused with 401 ``authentication_failed``; ``manage.py drf_create_token -r
<username>`` replaces it.
"""

from __future__ import annotations

import datetime

from django.utils import timezone
from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from ..conf import visrec_settings


def token_expiry(created: datetime.datetime) -> datetime.datetime | None:
    """When a token created at ``created`` stops working (None: never)."""
    days = visrec_settings.TOKEN_TTL_DAYS
    return None if days is None else created + datetime.timedelta(days=float(days))


class ExpiringTokenAuthentication(TokenAuthentication):
    """DRF's ``Authorization: Token <key>``, refusing tokens older than ``TOKEN_TTL_DAYS``."""

    def authenticate_credentials(self, key):
        user, token = super().authenticate_credentials(key)
        expires = token_expiry(token.created)
        if expires is not None and timezone.now() >= expires:
            raise AuthenticationFailed(
                f"This token expired on {expires:%Y-%m-%d %H:%M} UTC; ask the shop for a new one "
                "(manage.py drf_create_token -r <username>)."
            )
        return user, token
