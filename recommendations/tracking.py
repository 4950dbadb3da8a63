"""Impressions and clicks: CTR per widget and model version, recorded without slowing pages.

Why a bounded in-process queue and a writer thread rather than a Celery task per
impression: every rendered list produces one impression, so a broker round trip per
page (or, without a broker, Celery's eager mode writing inline) would put tracking on
the page's critical path. ``record_impression`` only builds a row and puts it on a
queue (microseconds); one daemon thread per process writes rows in batches
(``bulk_create``) and closes its connection after each batch. When the queue is full
or the database is down, rows are dropped and logged: losing a few impressions is
acceptable, a slow or broken page is not. ``TRACKING_MODE = "inline"`` writes at once
(deterministic, for tests and scripts).

Clicks carry a signed token (impression, product, position, widget, model version and a
keyed tag of the shopper the list was shown to), so a click is counted even if its
impression row is still in the queue. A click counts once per impression, and only from
the shopper the impression was shown to: a token passed to another shopper, or replayed,
counts nothing.
"""

from __future__ import annotations

import atexit
import base64
import functools
import hashlib
import hmac
import logging
import queue
import struct
import threading
import time
import uuid
from collections import OrderedDict
from datetime import datetime

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.utils import timezone

from .conf import visrec_settings
from .models import Click, Impression

logger = logging.getLogger(__name__)

_SALT = "visrec.click"
_BATCH = 500
_LINGER_SECONDS = 0.02  # gather rows this long before an insert
_IDLE_SECONDS = 2.0  # close the writer's connection after this long without rows


class InvalidClickToken(ValueError):
    """A click token that is malformed, tampered with or expired."""


def _shopper(user=None, session_key: str | None = None) -> tuple[int | None, str]:
    user_id = user.pk if user is not None and getattr(user, "is_authenticated", False) else None
    return user_id, session_key or ""


# -- impressions ------------------------------------------------------------------------


#: What this process remembers of an impression for its click tokens: widget, model version, shopper.
ImpressionMeta = tuple[str, int | None, tuple[int | None, str]]


class _RecentImpressions:
    """Widget, model version and shopper of this process's latest impressions, for their click tokens."""

    def __init__(self, size: int = 4096) -> None:
        self._items: OrderedDict[str, ImpressionMeta] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def put(self, impression_id: str, meta: ImpressionMeta) -> None:
        with self._lock:
            self._items[impression_id] = meta
            while len(self._items) > self._size:
                self._items.popitem(last=False)

    def get(self, impression_id: str) -> ImpressionMeta | None:
        with self._lock:
            return self._items.get(impression_id)


_recent = _RecentImpressions()


class _Writer:
    """A bounded queue of impression rows drained by one daemon thread."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Impression] | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def put(self, row: Impression) -> None:
        with self._lock:
            if self._queue is None:
                self._queue = queue.Queue(maxsize=int(visrec_settings.TRACKING_QUEUE_SIZE))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="visrec-tracking", daemon=True)
                self._thread.start()
        try:
            self._queue.put_nowait(row)
        except queue.Full:
            logger.warning("impression queue full; impression dropped", extra={"widget": row.widget})

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=_IDLE_SECONDS)
            except queue.Empty:
                connection.close()  # never hold a connection while idle
                first = self._queue.get()
            rows = [first]
            deadline = time.monotonic() + _LINGER_SECONDS  # a page's widgets arrive together: one insert
            while len(rows) < _BATCH:
                try:
                    rows.append(self._queue.get(timeout=max(deadline - time.monotonic(), 0.0)))
                except queue.Empty:
                    break
            try:
                close_old_connections()  # reused while busy (a connection per batch costs a server process)
                _write(rows)
            finally:
                for _ in rows:
                    self._queue.task_done()

    def flush(self) -> None:
        """Block until every queued impression is written (tests, shutdown)."""
        if self._queue is not None and self._thread is not None and self._thread.is_alive():
            self._queue.join()


_writer = _Writer()
atexit.register(_writer.flush)


def _write(rows: list[Impression]) -> None:
    try:
        with transaction.atomic():
            Impression.objects.bulk_create(rows, ignore_conflicts=True)
    except Exception:  # tracking must never take anything down with it
        logger.exception("could not write %d impression(s)", len(rows))


def flush() -> None:
    """Wait until the impressions recorded so far are in the database."""
    _writer.flush()


def record_impression(rec_list, *, user=None, session_key: str | None = None) -> str:
    """Record that ``rec_list`` was shown; returns the impression id at once, never raises.

    The row (widget, source, model and embedding versions, experiment arm, product ids
    with positions, shopper) is written asynchronously unless ``TRACKING_MODE`` is
    ``"inline"``.
    """
    impression_id = str(uuid.uuid4())
    try:
        user_id, session = _shopper(user, session_key)
        row = Impression(
            id=impression_id,
            widget=rec_list.widget,
            source=rec_list.source,
            model_version_id=rec_list.model_version_id,
            embedding_version=rec_list.embedding_version or "",
            arm=rec_list.arm or "",
            items=[
                {"product": _json_key(r.product.pk), "position": n, "reason": r.reason}
                for n, r in enumerate(rec_list.items)
            ],
            user_id=user_id,
            session_key=session,
            context=_json_context(getattr(rec_list, "context", None) or {}),
            created_at=timezone.now(),
        )
        _recent.put(impression_id, (rec_list.widget, rec_list.model_version_id, (user_id, session)))
        if visrec_settings.TRACKING_MODE == "inline":
            _write([row])
        else:
            _writer.put(row)
    except Exception:
        logger.exception("could not record an impression", extra={"widget": getattr(rec_list, "widget", None)})
    return impression_id


def _json_key(pk):
    """A product key as impressions store it in JSON (ints as they are, UUIDs as text)."""
    return pk if isinstance(pk, int) else str(pk)


def _json_context(context: dict) -> dict:
    """A list's request context as impressions store it (product keys as :func:`_json_key`)."""
    out = dict(context)
    if out.get("product") is not None:
        out["product"] = _json_key(out["product"])
    if out.get("exclude"):
        out["exclude"] = [_json_key(pk) for pk in out["exclude"]]
    return out


# -- clicks -----------------------------------------------------------------------------


#: Token layouts by version: issued (unix s), impression, product (an integer or a UUID's
#: 16 bytes), position, model version and, from version 3, the shopper's tag. Versions 1
#: and 2 (no shopper) are still read until they expire, as tokens shown to no one in particular.
_HEADS = {
    1: struct.Struct(">BI16sQHI"),
    2: struct.Struct(">BI16s16sHI"),
    3: struct.Struct(">BI16sQHI8s"),
    4: struct.Struct(">BI16s16sHI8s"),
}
_INT_VERSION, _UUID_VERSION = 3, 4
_UUID_VERSIONS = frozenset({2, 4})
_NO_SHOPPER = bytes(8)  # the tag of a list shown to no known shopper
_MAC_BYTES = 16
_keys: dict[tuple[str, ...], list[bytes]] = {}


def _token_keys() -> list[bytes]:
    """HMAC keys of the click tokens: the current secret first, then ``SECRET_KEY_FALLBACKS`` (rotation)."""
    secrets = (settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", ()))
    keys = _keys.get(secrets)
    if keys is None:
        keys = [hashlib.sha256(f"{_SALT}:{secret}".encode()).digest() for secret in secrets]
        _keys.clear()
        _keys[secrets] = keys
    return keys


@functools.lru_cache(maxsize=1024)
def _uuid_bytes(text: str) -> bytes:
    """An impression id's 16 bytes (a page signs a token per item of each of its impressions)."""
    return uuid.UUID(text).bytes


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.new(key, body, hashlib.sha256).digest()[:_MAC_BYTES]


def _shopper_tag(key: bytes, user_id: int | None, session_key: str) -> bytes:
    """Eight keyed bytes naming a shopper (the user when signed in, else the session); none: zeros.

    Keyed, so a token tells nothing about whom it was shown to (user ids are guessable).
    """
    if user_id is None and not session_key:
        return _NO_SHOPPER
    who = f"user:{user_id}" if user_id is not None else f"session:{session_key}"
    return hmac.new(key, f"visrec.shopper:{who}".encode(), hashlib.sha256).digest()[:8]


def click_token(
    impression_id: str,
    product_id: int,
    position: int,
    *,
    widget: str | None = None,
    model_version_id=None,
    user=None,
    session_key: str | None = None,
) -> str:
    """A signed, URL-safe token for one item of an impression (about 100 characters).

    Widget and model version default to what this process recorded for the impression, and
    so does the shopper (``user``, else ``session_key``) the list was shown to: only that
    shopper's click counts. Binary fields plus a 128-bit HMAC-SHA256 tag (a few
    microseconds; a page signs one per recommended item); it expires after
    ``CLICK_TOKEN_MAX_AGE``.
    """
    recent = _recent.get(str(impression_id))
    if widget is None:
        widget, recent_version = recent[:2] if recent else ("", None)
        model_version_id = recent_version if model_version_id is None else model_version_id
    if user is None and session_key is None:
        user_id, session = recent[2] if recent else (None, "")
    else:
        user_id, session = _shopper(user, session_key)
    key = _token_keys()[0]
    if isinstance(product_id, int) or str(product_id).isdigit():
        version, product = _INT_VERSION, int(product_id)
    else:  # a shop with UUID product keys
        version, product = _UUID_VERSION, uuid.UUID(str(product_id)).bytes
    body = (
        _HEADS[version].pack(
            version,
            int(time.time()),
            _uuid_bytes(str(impression_id)),
            product,
            int(position),
            int(model_version_id or 0),
            _shopper_tag(key, user_id, session),
        )
        + (widget or "").encode()[:64]
    )
    return base64.urlsafe_b64encode(body + _mac(key, body)).rstrip(b"=").decode()


def read_click_token(token: str) -> dict:
    """The verified content of a click token (raises :class:`InvalidClickToken`).

    ``shopper`` is the tag of the shopper the list was shown to (None: no one in
    particular). Tokens of earlier formats (``django.core.signing``, versions 1 and 2) are
    still read.
    """
    if ":" in token:
        return _read_signed_token(token)
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (ValueError, TypeError):
        raise InvalidClickToken("click token is malformed or its signature does not match") from None
    body, tag = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    head = _HEADS.get(body[0] if body else 0)
    if head is None or len(body) < head.size or not any(hmac.compare_digest(tag, _mac(k, body)) for k in _token_keys()):
        raise InvalidClickToken("click token is malformed or its signature does not match")
    version, issued, impression, product_id, position, model_version_id, *shopper = head.unpack_from(body)
    if time.time() - issued > int(visrec_settings.CLICK_TOKEN_MAX_AGE):
        raise InvalidClickToken("click token has expired")
    try:
        widget = body[head.size :].decode()
    except UnicodeDecodeError:
        raise InvalidClickToken("click token is malformed or its signature does not match") from None
    return {
        "impression_id": str(uuid.UUID(bytes=impression)),
        "product_id": str(uuid.UUID(bytes=product_id)) if version in _UUID_VERSIONS else int(product_id),
        "position": int(position),
        "widget": widget,
        "model_version_id": model_version_id or None,
        "shopper": shopper[0] if shopper and shopper[0] != _NO_SHOPPER else None,
    }


def _read_signed_token(token: str) -> dict:
    try:
        impression_id, product_id, position, widget, model_version_id = signing.loads(
            token, salt=_SALT, max_age=int(visrec_settings.CLICK_TOKEN_MAX_AGE)
        )
        uuid.UUID(impression_id)
    except signing.SignatureExpired:
        raise InvalidClickToken("click token has expired") from None
    except (signing.BadSignature, ValueError, TypeError):
        raise InvalidClickToken("click token is malformed or its signature does not match") from None
    return {
        "impression_id": impression_id,
        "product_id": int(product_id),
        "position": int(position),
        "widget": widget or "",
        "model_version_id": model_version_id,
        "shopper": None,
    }


def shown_to(data: dict, *, user=None, session_key: str | None = None) -> bool:
    """Whether a read click token's list was shown to this shopper (or to no one in particular)."""
    if data["shopper"] is None:
        return True
    user_id = user.pk if user is not None and getattr(user, "is_authenticated", False) else None
    mine = [(user_id, "")] if user_id is not None else []
    mine += [(None, session_key)] if session_key else []
    return any(hmac.compare_digest(data["shopper"], _shopper_tag(k, *who)) for k in _token_keys() for who in mine)


def record_click(token: str, *, user=None, session_key: str | None = None) -> Click | None:
    """Count a click on a recommended item: the new :class:`Click`, or None when it does not count.

    A click counts once per impression (and so per shopper: an impression is one shopper's
    list); a second click on the same list, or a replay of its token, returns None. Raises
    :class:`InvalidClickToken` for a bad or expired token and for a token issued to another
    shopper; database errors propagate.
    """
    data = read_click_token(token)
    if not isinstance(data["product_id"], int):
        raise InvalidClickToken("clicks are counted for integer product keys only (Click.product_id)")
    if not shown_to(data, user=user, session_key=session_key):
        raise InvalidClickToken("click token was issued to another shopper")
    if not data["widget"]:  # token made in another process before its impression: ask the row
        meta = Impression.objects.filter(id=data["impression_id"]).values("widget", "model_version_id").first()
        if meta:
            data["widget"], data["model_version_id"] = meta["widget"], meta["model_version_id"]
    user_id, session = _shopper(user, session_key)
    try:
        with transaction.atomic():
            click, created = Click.objects.get_or_create(
                impression_id=data["impression_id"],
                defaults={
                    "position": data["position"],
                    "widget": data["widget"],
                    "model_version_id": data["model_version_id"],
                    "product_id": data["product_id"],
                    "user_id": user_id,
                    "session_key": session,
                    "created_at": timezone.now(),
                },
            )
    except IntegrityError:  # a concurrent click on the same list won the race
        return None
    return click if created else None


def ctr(*, widget: str | None = None, model_version_id: int | None = None, since: datetime | None = None) -> dict:
    """Impressions, clicks and click-through rate, optionally per widget / model version / since."""
    filters = {}
    if widget is not None:
        filters["widget"] = widget
    if model_version_id is not None:
        filters["model_version_id"] = model_version_id
    if since is not None:
        filters["created_at__gte"] = since
    impressions = Impression.objects.filter(**filters).count()
    clicks = Click.objects.filter(**filters).count()
    return {
        "impressions": impressions,
        "clicks": clicks,
        "ctr": clicks / impressions if impressions else 0.0,
    }
