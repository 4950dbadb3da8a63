"""Read replicas: serving reads on PostgreSQL streaming replicas; writes and the shopper's own events on the primary.

A shop whose reads outgrow one PostgreSQL server adds streaming replicas of it
(``pg_basebackup -R``) as more ``DATABASES`` aliases, lists them in
``VISREC["READ_REPLICAS"]`` and puts :class:`ReplicaRouter` in ``DATABASE_ROUTERS``.
Without replicas nothing changes: every query runs on ``default``, as before.

What runs where:

- The serving entry points (similar items, for you, recently viewed, popular, trending,
  search by photo, the API's anchor lookup) are *serving reads* (:func:`serving_read`):
  their queries, the ORM's (active versions, rules, rankings) and the written-out vector
  and card SQL alike, run on one replica.
- Everything else runs on the primary (``default``): writes, the shop's own pages, the
  admin and the cockpit, Celery tasks. An instance loaded from a replica is saved to the
  primary.
- Read-your-writes: the shopper's own events (``serving.history``) are always read from the
  primary. Every product view is an event, so pinning a shopper to the primary for a few
  seconds after each write would pin nearly every browsing shopper, and the replicas would
  serve little. The events are the only state of the shopper's own that serving reads (one
  indexed query, ``LIMIT TASTE_HISTORY``), so "for you" reflects the click just made
  however far a replica lags; lists are cached under the newest event's id read there.
- A serving read inside a transaction on the primary stays on the primary (it may need
  that transaction's writes).

Health, per process (nothing is shared between processes):

- Lag: at most every ``REPLICA_CHECK_SECONDS`` a process compares the primary's WAL
  position (``pg_current_wal_lsn()``) with the replica's replay position; a replica that
  has not replayed it is as old as its last replayed commit
  (``now() - pg_last_xact_replay_timestamp()``), and one more than
  ``REPLICA_MAX_LAG_SECONDS`` behind is skipped until a later check finds it caught up.
- Failure: a serving read that fails on a replica (it went away, a recovery conflict
  cancelled the query) runs again on the primary, so shoppers see no error. A replica that
  cannot be reached is skipped for ``REPLICA_RETRY_SECONDS``, doubling while it stays down
  (up to 8 times), so an outage costs each process one connect attempt per window, as the
  Redis cache does (``visrec_shop/cache.py``). A query stopped by the widget's time budget
  is not retried: it fails as it would on the primary (the widget's fallback).
- With several replicas each process reads from one (chosen by its process id, so a
  process keeps one replica connection per thread) and moves to the next healthy one
  while its own lags or is down.

The serving queries are prepared per connection (``PREPARED_QUERIES``); a replica's
connection prepares its own at their first run there, as the primary's does.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from .conf import visrec_settings

logger = logging.getLogger(__name__)

#: The alias of the primary: every write, and every read outside a serving read.
PRIMARY = DEFAULT_DB_ALIAS

#: PostgreSQL's ``query_canceled`` (``statement_timeout``: the widget's time budget ran out).
QUERY_CANCELED = "57014"

_MAX_BACKOFF = 8

_reading: ContextVar[str | None] = ContextVar("visrec_reading", default=None)

F = TypeVar("F", bound=Callable[..., Any])


def replica_aliases() -> list[str]:
    """The ``DATABASES`` aliases of the read replicas (``VISREC["READ_REPLICAS"]``)."""
    return list(visrec_settings.READ_REPLICAS or ())


def current_alias() -> str:
    """The alias the serving queries use now: a replica's inside a serving read on one, else the primary's."""
    return _reading.get() or PRIMARY


def serving_connection():
    """The database connection of the serving queries now (see :func:`current_alias`)."""
    return connections[current_alias()]


def reading_replica() -> bool:
    """Whether the serving queries run on a replica now."""
    return current_alias() != PRIMARY


@contextmanager
def on_primary() -> Iterator[None]:
    """Serving reads inside run on the primary (the cockpit's previews, a replica's miss looked up again)."""
    token = _reading.set(PRIMARY)
    try:
        yield
    finally:
        _reading.reset(token)


def serving_read(func: F) -> F:
    """Run ``func`` (a serving entry point) on a fresh, reachable replica; on the primary without one.

    A call inside another serving read (or :func:`on_primary`) uses that one's database.
    A failure of the replica (see :func:`_replica_failed`) runs ``func`` again on the
    primary; any other error is raised as it is.
    """

    @functools.wraps(func)
    def read(*args, **kwargs):
        if _reading.get() is not None:
            return func(*args, **kwargs)
        alias = choose()
        if alias == PRIMARY:
            return func(*args, **kwargs)
        if connections[alias].errors_occurred:  # an earlier error there: know afresh whether this read's is its
            connections[alias].close_if_unusable_or_obsolete()
        token = _reading.set(alias)
        try:
            return func(*args, **kwargs)
        except DatabaseError as e:
            if not _replica_failed(alias, e):
                raise
        finally:
            _reading.reset(token)
        with on_primary():
            return func(*args, **kwargs)

    return read  # type: ignore[return-value]


def choose() -> str:
    """The alias of a serving read starting now: this process's replica if fresh and up, another one, or the primary."""
    aliases = replica_aliases()
    if not aliases or connections[PRIMARY].in_atomic_block:
        return PRIMARY
    first = os.getpid() % len(aliases)
    for alias in aliases[first:] + aliases[:first]:
        if _fresh(alias):
            return alias
    return PRIMARY


# -- health -------------------------------------------------------------------------------


@dataclass
class ReplicaState:
    """What this process knows of one replica: its lag, when it was checked, until when it counts as down."""

    lag: float | None = None  # seconds behind the primary at the last check (None: not known yet)
    checked_at: float = -math.inf
    down_until: float = -math.inf
    failures: int = 0  # failed attempts in a row
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


_states: dict[str, ReplicaState] = {}
_states_lock = threading.Lock()


def state(alias: str) -> ReplicaState:
    """The :class:`ReplicaState` of ``alias`` in this process."""
    found = _states.get(alias)
    if found is None:
        with _states_lock:
            found = _states.setdefault(alias, ReplicaState())
    return found


def forget() -> None:
    """Forget every replica's state (after a configuration change)."""
    with _states_lock:
        _states.clear()


def _fresh(alias: str) -> bool:
    """Whether ``alias`` is up and at most ``REPLICA_MAX_LAG_SECONDS`` behind (checked when due, by one thread)."""
    found = state(alias)
    now = time.monotonic()
    if now < found.down_until:
        return False
    if now - found.checked_at >= float(visrec_settings.REPLICA_CHECK_SECONDS) and found.lock.acquire(blocking=False):
        try:
            _check(alias, found)
        finally:
            found.lock.release()
    return found.lag is not None and found.lag <= float(visrec_settings.REPLICA_MAX_LAG_SECONDS)


def _check(alias: str, found: ReplicaState) -> None:
    """Measure ``alias``'s lag; mark it down if it cannot be reached."""
    found.checked_at = time.monotonic()
    try:
        position = primary_position()
    except DatabaseError as e:  # the replica keeps its last known lag: it may serve while the primary is away
        logger.warning("cannot read the primary's WAL position (%s); %s keeps its last known lag", e, alias)
        return
    try:
        lag = replica_lag(alias, position)
    except DatabaseError as e:
        mark_down(alias, e)
        return
    limit = float(visrec_settings.REPLICA_MAX_LAG_SECONDS)
    if (found.lag is None or found.lag <= limit) and lag > limit:
        logger.warning("read replica %s is %.1f s behind the primary; serving reads use the primary", alias, lag)
    elif found.lag is not None and found.lag > limit >= lag:
        logger.info("read replica %s has caught up; serving reads use it again", alias)
    found.lag, found.failures = lag, 0


def primary_position() -> str:
    """The primary's current WAL position (``pg_lsn`` text)."""
    with connections[PRIMARY].cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_lsn()::text")
        return cursor.fetchone()[0]


def replica_lag(alias: str, position: str) -> float:
    """Seconds ``alias`` is behind the primary whose WAL was at ``position``: 0 once it has replayed that far.

    Otherwise the age of its last replayed commit; infinite before it has replayed one.
    A server that is not in recovery (not a standby) counts as current.
    """
    sql = (
        "SELECT pg_is_in_recovery(), COALESCE(pg_last_wal_replay_lsn() >= %s::pg_lsn, false), "
        "EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())::float8"
    )
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, [position])
        recovering, caught_up, behind = cursor.fetchone()
    if not recovering or caught_up:
        return 0.0
    return math.inf if behind is None else max(float(behind), 0.0)


def mark_down(alias: str, error: Exception) -> None:
    """Skip ``alias`` for ``REPLICA_RETRY_SECONDS`` (doubling with each failure in a row) and close its connection."""
    found = state(alias)
    found.failures += 1
    wait = float(visrec_settings.REPLICA_RETRY_SECONDS) * min(2 ** (found.failures - 1), _MAX_BACKOFF)
    found.down_until, found.checked_at, found.lag = time.monotonic() + wait, -math.inf, None
    logger.warning("read replica %s unreachable (%s); serving reads use the primary for %.0f s", alias, error, wait)
    try:
        connections[alias].close()
    except DatabaseError:
        pass


def _replica_failed(alias: str, error: DatabaseError) -> bool:
    """Whether ``error`` is the replica's (the read then runs again on the primary); an unreachable one is marked down.

    Django flags the connection an error occurred on (``errors_occurred``). A query the
    time budget stopped is not the replica's failure: it is raised as on the primary.
    """
    db = connections[alias]
    if not db.errors_occurred:
        return False
    if getattr(error.__cause__, "sqlstate", None) == QUERY_CANCELED:
        return False
    if db.connection is None or not db.is_usable():
        mark_down(alias, error)
    else:
        db.errors_occurred = False  # the connection works: the query failed there (e.g. a recovery conflict)
        logger.warning("a serving read failed on read replica %s (%s); running it on the primary", alias, error)
    return True


# -- routing -------------------------------------------------------------------------------


class ReplicaRouter:
    """Django database router: reads inside a serving read go to its replica; writes never go to a replica.

    Put it in ``DATABASE_ROUTERS`` with the replicas in ``VISREC["READ_REPLICAS"]``. Outside
    a serving read it has no opinion (Django's default: ``default``, or the instance's own
    database), except that an instance read from a replica is written to the primary.
    Replicas are never migrated.
    """

    def db_for_read(self, model, **hints) -> str | None:
        return _reading.get()

    def db_for_write(self, model, **hints) -> str | None:
        instance = hints.get("instance")
        if instance is not None and instance._state.db in replica_aliases():
            return PRIMARY
        return None

    def allow_relation(self, obj1, obj2, **hints) -> bool | None:
        same = {PRIMARY, *replica_aliases()}
        if obj1._state.db in same and obj2._state.db in same:
            return True
        return None

    def allow_migrate(self, db: str, app_label: str, **hints) -> bool | None:
        return False if db in replica_aliases() else None
