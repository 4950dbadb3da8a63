"""Cache keys and the cache helpers (a cache outage degrades to "no cache", never to an error)."""

from __future__ import annotations

import hashlib
import logging
import uuid
from typing import Any

from django.core.cache import cache

from ..conf import visrec_settings

logger = logging.getLogger(__name__)


def _cache_get_many(keys: list[str]) -> dict[str, Any]:
    try:
        return cache.get_many(keys)
    except Exception:
        logger.warning("visrec cache unavailable (read)", exc_info=True)
        return {}


def _cache_set(key: str, value: Any, timeout: float) -> None:
    try:
        cache.set(key, value, timeout)
    except Exception:
        logger.warning("visrec cache unavailable (write)", exc_info=True)


def _cache_add(key: str, value: Any, timeout: float) -> bool | None:
    """Set ``key`` only if it is absent: True if set, False if it was there, None when the cache is down."""
    try:
        return bool(cache.add(key, value, timeout))
    except Exception:
        logger.warning("visrec cache unavailable (add)", exc_info=True)
        return None


def _cache_delete(key: str) -> None:
    try:
        cache.delete(key)
    except Exception:
        logger.warning("visrec cache unavailable (delete)", exc_info=True)


def _prefix() -> str:
    return str(visrec_settings.CACHE_PREFIX)


def _key(*parts: Any) -> str:
    raw = ":".join(str(p) for p in parts)
    return _prefix() + hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()


def product_version_key(pk: int) -> str:
    return f"{_prefix()}pv:{pk}"


def bump_product_version(pk: int) -> None:
    """Invalidate the cached lists anchored on product ``pk`` (called on product/image save)."""
    bump_product_versions([pk])


def bump_product_versions(pks) -> None:
    """Invalidate the cached lists anchored on each of ``pks`` (one cache round trip)."""
    version = uuid.uuid4().hex[:12]
    try:
        cache.set_many({product_version_key(pk): version for pk in pks}, None)
    except Exception:
        logger.warning("visrec cache unavailable (write)", exc_info=True)
