"""Change stamps shared through the database: every process sees a change within ``MAX_AGE`` seconds.

Serving keeps the admin's rules and the running experiments in each process and reloads
them only when their stamp changed (no query per request). The stamps live in the
database, not the cache: a cache per process (Django's default) or a cache outage cannot
hide a change from the other processes. Each process reads every stamp in one query, at
most every ``MAX_AGE`` seconds; the process that bumps a stamp sees the change at once.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid

from django.db import DatabaseError

logger = logging.getLogger(__name__)

MAX_AGE = 1.0

_memo: tuple[float, dict[str, str]] | None = None  # (when read, name -> value), this process
_lock = threading.Lock()
_UNREADABLE: dict[str, str] = {}  # the memo of a failed read


def read(name: str) -> str | None:
    """The stamp ``name`` as of at most ``MAX_AGE`` seconds ago ("" before its first change).

    None when the database cannot be read: callers keep what they have. A failed read is
    not retried for ``MAX_AGE`` seconds either, so an outage costs one attempt per second.
    """
    global _memo
    memo = _memo
    now = time.monotonic()
    if memo is None or now - memo[0] >= MAX_AGE:
        with _lock:
            memo = _memo
            if memo is None or now - memo[0] >= MAX_AGE:
                memo = _memo = (now, _read_all())
    values = memo[1]
    return None if values is _UNREADABLE else values.get(name, "")



def _read_all() -> dict[str, str]:
    from .models import Stamp

    try:
        return dict(Stamp.objects.values_list("name", "value"))
    except DatabaseError as e:
        logger.warning("visrec stamps cannot be read (%s); serving what this process has", e)
        return _UNREADABLE


def bump(name: str) -> None:
    """Record a change of what ``name`` covers (in the caller's transaction, if any)."""
    from .models import Stamp

    Stamp.objects.bulk_create(
        [Stamp(name=name, value=uuid.uuid4().hex[:12])],
        update_conflicts=True,
        unique_fields=["name"],
        update_fields=["value", "changed_at"],
    )
    forget()


def forget() -> None:
    """Make the next :func:`read` in this process query the database."""
    global _memo
    _memo = None
