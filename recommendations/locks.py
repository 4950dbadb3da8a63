"""Cluster-wide "one at a time": PostgreSQL session-level advisory locks."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import DatabaseError, connection

logger = logging.getLogger(__name__)


@contextmanager
def advisory_lock(key: int, busy: Exception) -> Iterator[None]:
    """Hold the advisory lock ``key`` on this process's connection, or raise ``busy`` at once.

    Every process of the shop (web, any worker) shares it through the database; a process
    that dies releases it with its connection.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        if not cursor.fetchone()[0]:
            raise busy
    try:
        yield
    finally:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
        except DatabaseError as e:  # the connection broke: the lock went with it
            logger.warning("advisory lock %x not released: %s", key, e)
