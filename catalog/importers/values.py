"""Parsing one cell: prices, integers, booleans, currencies, timestamps, external user names."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from .targets import _CENT, _FALSE, _MAX_PRICE, _TRUE, _UNIX_SECONDS, _USERNAME_SAFE, EXTERNAL_USER_PREFIX, RowError


def parse_price(text: str) -> Decimal:
    """A non-negative amount rounded to cents."""
    try:
        price = Decimal(text.replace(" ", ""))
    except InvalidOperation:
        raise RowError(f"price {text!r} is not a number") from None
    if not price.is_finite() or price < 0 or price > _MAX_PRICE:
        raise RowError(f"price {text!r} must be between 0 and {_MAX_PRICE}")
    return price.quantize(_CENT)


def parse_int(text: str, name: str) -> int:
    """An integer such as ``12`` (``12.0`` is accepted too)."""
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise RowError(f"{name} {text!r} is not a whole number") from None
    if not number.is_finite() or number != number.to_integral_value() or abs(number) >= 2**31:
        raise RowError(f"{name} {text!r} is not a whole number")
    return int(number)


def parse_bool(text: str) -> bool:
    """``1/0``, ``true/false``, ``yes/no``, ``y/n``, ``on/off`` (any case)."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise RowError(f"is_active {text!r} is not a yes/no value")


def parse_currency(text: str) -> str:
    """A three-letter ISO 4217 code, upper-cased."""
    code = text.strip().upper()
    if len(code) != 3 or not code.isalpha():
        raise RowError(f"currency {text!r} is not a three-letter code")
    return code


def parse_timestamp(text: str) -> datetime:
    """An aware UTC datetime from ISO 8601 (date or datetime) or unix seconds.

    Naive ISO values are taken as UTC; a bare date means midnight UTC.
    """
    value = text.strip()
    if not value:
        raise RowError("timestamp is empty")
    try:
        if _UNIX_SECONDS.fullmatch(value):
            return datetime.fromtimestamp(float(value), tz=UTC)
        moment = datetime.fromisoformat(value)
    except (ValueError, OverflowError, OSError):
        raise RowError(f"timestamp {text!r} is neither ISO 8601 nor unix seconds") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def external_username(external_id: str) -> str:
    """The username of an imported shopper: ``ext-<id>``, hashed when too long or unusual."""
    if len(external_id) <= 150 - len(EXTERNAL_USER_PREFIX) and _USERNAME_SAFE.fullmatch(external_id):
        return f"{EXTERNAL_USER_PREFIX}{external_id}"
    readable = re.sub(r"[^\w.@+-]", "_", external_id)[:60]
    digest = hashlib.sha256(external_id.encode("utf-8")).hexdigest()[:40]
    return f"{EXTERNAL_USER_PREFIX}{readable}-{digest}"
