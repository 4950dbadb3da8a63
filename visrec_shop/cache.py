"""Django's Redis cache, keeping one ``redis.Redis`` client per connection pool, failing fast while Redis is down.

Django's ``RedisCacheClient`` builds a new ``redis.Redis`` object for every cache
operation; building one sets up a few hundred response callbacks (about 0.3 ms here),
which is more than the operation itself, and a product page makes several. A client is
safe to share (it takes a connection from its pool per command), so this backend keeps
one per pool. Configure it as ``visrec_shop.cache.RedisCache`` (``settings.CACHES``).

The cache is an optimisation, never a dependency: callers treat its errors as misses.
So that an outage costs each process one timeout rather than one per call, a connection
error or timeout marks Redis down for ``RETRY_SECONDS``; calls in that window raise
``redis.ConnectionError`` at once, without touching the network. Socket timeouts default
to a fraction of a second (``OPTIONS``: ``socket_connect_timeout``, ``socket_timeout``).
"""

from __future__ import annotations

import logging
import time

from django.core.cache.backends import redis as django_redis

logger = logging.getLogger(__name__)

#: Seconds a connect or a reply may take before Redis counts as down (``OPTIONS`` override them).
DEFAULT_TIMEOUTS = {"socket_connect_timeout": 0.25, "socket_timeout": 0.25}

# every operation of Django's client that talks to Redis
_OPERATIONS = (
    *("add", "get", "set", "touch", "delete", "has_key", "incr"),
    *("get_many", "set_many", "delete_many", "clear"),
)


class RedisCacheClient(django_redis.RedisCacheClient):
    """A ``RedisCacheClient`` with one ``redis.Redis`` client per connection pool, failing fast while Redis is down."""

    RETRY_SECONDS = 2.0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **{**DEFAULT_TIMEOUTS, **kwargs})
        self._clients: dict[int, object] = {}
        self._down_until = 0.0

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client

    def _guarded(self, operation: str, *args, **kwargs):
        if time.monotonic() < self._down_until:
            raise self._lib.ConnectionError("Redis was unreachable moments ago; not retried yet")
        try:
            return getattr(super(), operation)(*args, **kwargs)
        except (self._lib.ConnectionError, self._lib.TimeoutError) as e:
            self._down_until = time.monotonic() + self.RETRY_SECONDS
            logger.warning("Redis unreachable (%s); cache calls fail at once for %.0f s", e, self.RETRY_SECONDS)
            raise


def _guard(operation: str):
    def call(self, *args, **kwargs):
        return self._guarded(operation, *args, **kwargs)

    call.__name__ = call.__qualname__ = operation
    return call


for _operation in _OPERATIONS:
    setattr(RedisCacheClient, _operation, _guard(_operation))


class RedisCache(django_redis.RedisCache):
    """Django's ``RedisCache`` with :class:`RedisCacheClient`."""

    def __init__(self, server, params) -> None:
        super().__init__(server, params)
        self._class = RedisCacheClient
