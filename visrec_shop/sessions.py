"""Session engine that keeps the shop answering while the database or the cache is down.

Like ``cached_db`` (reads from the cache, writes through to the database), but a
database error never escapes: a session that cannot be read from the database starts
empty, and one that cannot be written is kept in the cache only. A cache error never
escapes either: the cache is an optimisation, so a failed read is a miss (the session
comes from the database) and a failed write or delete is skipped. Shopping pages and
recommendation widgets therefore survive either outage; the error is logged.
"""

from __future__ import annotations

import logging

from django.contrib.sessions.backends.base import UpdateError
from django.contrib.sessions.backends.cached_db import SessionStore as CachedDBStore
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.db import DatabaseError, InterfaceError, OperationalError

logger = logging.getLogger(__name__)
UNAVAILABLE = (OperationalError, InterfaceError)  # the database cannot be reached (not: the row is gone)


class _OptionalCache:
    """The session cache as an optimisation: an error reads as a miss, a failed write or delete is skipped."""

    def __init__(self, cache) -> None:
        self._cache = cache

    def get(self, key, default=None):
        try:
            return self._cache.get(key, default)
        except Exception as e:
            logger.warning("session cache unavailable (%s); reading the database", e)
            return default

    def set(self, key, value, timeout=DEFAULT_TIMEOUT) -> None:
        try:
            self._cache.set(key, value, timeout)
        except Exception as e:
            logger.warning("session cache unavailable (%s); session written to the database only", e)

    def delete(self, key) -> None:
        try:
            self._cache.delete(key)
        except Exception as e:
            logger.warning("session cache unavailable (%s); session deleted from the database only", e)

    def __contains__(self, key) -> bool:
        try:
            return key in self._cache
        except Exception as e:
            logger.warning("session cache unavailable (%s); reading the database", e)
            return False

    def __repr__(self) -> str:
        return repr(self._cache)


class SessionStore(CachedDBStore):
    """``cached_db`` sessions that degrade to cache-only when the database fails, database-only when the cache does."""

    def __init__(self, session_key=None) -> None:
        super().__init__(session_key)
        self._cache = _OptionalCache(self._cache)

    def load(self):
        try:
            return super().load()
        except DatabaseError:
            logger.warning("session database unavailable; starting an empty session", exc_info=True)
            self._session_key = None
            return {}

    def exists(self, session_key):
        try:
            return super().exists(session_key)
        except DatabaseError:
            return False

    def save(self, must_create=False):
        try:
            super().save(must_create=must_create)
        except UpdateError as e:
            # Django turns any database error of an update into UpdateError, answered 400
            # ("session interrupted"); that is for a session deleted meanwhile, not an outage.
            if not isinstance(e.__context__, UNAVAILABLE):
                raise
            self._keep_in_cache(must_create)
        except DatabaseError:
            self._keep_in_cache(must_create)

    def _keep_in_cache(self, must_create: bool) -> None:
        logger.warning("session database unavailable; keeping the session in the cache only", exc_info=True)
        if self.session_key is not None:  # the cache wrapper skips (and logs) a failed write
            self._cache.set(self.cache_key, self._get_session(no_load=must_create), self.get_expiry_age())

    def delete(self, session_key=None):
        try:
            super().delete(session_key)
        except DatabaseError:
            logger.warning("session database unavailable; session deleted from the cache only", exc_info=True)
