"""Throttling of anonymous callers and shoppers, per view scope."""

from __future__ import annotations

import logging

from django.core.exceptions import ImproperlyConfigured
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from ..clients import client_address
from ..conf import visrec_settings
from .shoppers import is_server_client

logger = logging.getLogger(__name__)


class ShopperRateThrottle(SimpleRateThrottle):
    """At most ``DEFAULT_THROTTLE_RATES[view.throttle_scope]`` requests per anonymous IP or signed-in user.

    Token-authenticated server clients are not throttled (they speak for many shoppers). The
    IP is :func:`~recommendations.clients.client_address` (``X-Forwarded-For`` only as far as
    ``NUM_PROXIES`` trusted proxies wrote it).
    The rate is read per request, so settings overrides apply at once; a rate of ``None``
    disables the limit. History lives in the default cache (Redis when configured) under
    ``VISREC["CACHE_PREFIX"]``. The cache is not a dependency: when it fails, the request
    is let through (fail open) and a warning logged.
    """

    cache_format = "%(prefix)sthrottle:%(scope)s:%(ident)s"

    def __init__(self) -> None:  # the rate depends on the view: resolved in allow_request
        pass

    def allow_request(self, request, view) -> bool:
        self.scope = getattr(view, "throttle_scope", None)
        if not self.scope or is_server_client(request):
            return True
        rates = api_settings.DEFAULT_THROTTLE_RATES
        if self.scope not in rates:
            raise ImproperlyConfigured(f"REST_FRAMEWORK['DEFAULT_THROTTLE_RATES'] has no rate for {self.scope!r}")
        self.rate = rates[self.scope]
        self.num_requests, self.duration = self.parse_rate(self.rate)
        try:
            return super().allow_request(request, view)
        except Exception as e:  # any cache backend's error: Redis down, timed out
            logger.warning("throttle cache unavailable (%s); %s request let through", e, self.scope)
            return True

    def get_cache_key(self, request, view) -> str:
        user = request.user
        ident = f"user-{user.pk}" if user and user.is_authenticated else f"ip-{self.get_ident(request)}"
        return self.cache_format % {"prefix": visrec_settings.CACHE_PREFIX, "scope": self.scope, "ident": ident}

    def get_ident(self, request) -> str:
        return client_address(request)
