"""The moment serving reads a shopper's history at: now, or a past moment for the owner's what-if replay.

A replayed list (:mod:`recommendations.replay`) must see the shopper as they were when
the list was shown: their events up to then (the session taste and its decay, the
products already bought), not the clicks and purchases that came after it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

from django.utils import timezone

_local = threading.local()


def as_of() -> datetime | None:
    """The past moment this thread serves at (None: now)."""
    return getattr(_local, "at", None)


def now() -> datetime:
    """The moment serving reads history at: :func:`as_of`, else now."""
    return as_of() or timezone.now()


@contextmanager
def serving_at(at: datetime) -> Iterator[None]:
    """Serve in this thread as at ``at``: only the shopper events up to ``at`` count."""
    before = as_of()
    _local.at = at
    try:
        yield
    finally:
        _local.at = before
