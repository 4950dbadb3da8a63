"""Session engine that keeps the shop answering while the database is down.

Like ``cached_db`` (reads from the cache, writes through to the database), but a
database error never escapes: a session that cannot be read from the database starts
empty, and one that cannot be written is kept in the cache only. Shopping pages and
recommendation widgets therefore survive an outage; the error is logged.
"""

from __future__ import annotations

import logging

from django.contrib.sessions.backends.base import UpdateError
from django.contrib.sessions.backends.cached_db import SessionStore as CachedDBStore
from django.db import DatabaseError, InterfaceError, OperationalError

logger = logging.getLogger(__name__)
UNAVAILABLE = (OperationalError, InterfaceError)  # the database cannot be reached (not: the row is gone)


class SessionStore(CachedDBStore):
    """``cached_db`` sessions that degrade to cache-only when the database fails."""

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
        if self.session_key is not None:
            try:
                self._cache.set(self.cache_key, self._get_session(no_load=must_create), self.get_expiry_age())
            except Exception:
                logger.warning("session cache unavailable too", exc_info=True)

    def delete(self, session_key=None):
        try:
            super().delete(session_key)
        except DatabaseError:
            logger.warning("session database unavailable; session deleted from the cache only", exc_info=True)
