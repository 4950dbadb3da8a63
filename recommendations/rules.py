"""Business rules of recommendation lists: what may be shown, in which order.

Defaults come from ``VISREC["RULES"]``, per-widget overrides from
``VISREC["WIDGET_RULES"][widget]``, and per-call overrides from keyword arguments
(template tags and the API). Inactive and out-of-stock products are always excluded.

The filters are SQL (:meth:`Rules.product_q`) so they run inside the vector query;
diversity and pins need the ranked list and run afterwards (:func:`arrange`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from django.db.models import Q

from .conf import visrec_settings

# Setting key -> Rules field.
_KEYS = {
    "EXCLUDE_INTERACTED_KINDS": "exclude_interacted_kinds",
    "ONLY_CATEGORIES": "only_categories",
    "EXCLUDE_CATEGORIES": "exclude_categories",
    "MAX_PER_CATEGORY": "max_per_category",
    "PINNED": "pinned",
    "BLOCKED": "blocked",
}


@dataclass(frozen=True)
class Rules:
    """The merchandising rules of one list.

    Attributes
    ----------
    exclude_interacted_kinds : tuple of str
        Interaction kinds (e.g. ``"purchase"``) whose products the shopper never sees again.
    only_categories, exclude_categories : tuple of int
        Category ids a list is restricted to / may never show.
    max_per_category : int or None
        Diversity: at most this many products of one category.
    pinned, blocked : tuple of int
        Product ids shown first (when recommendable) / never shown.
    """

    exclude_interacted_kinds: tuple[str, ...] = ("purchase",)
    only_categories: tuple[int, ...] = ()
    exclude_categories: tuple[int, ...] = ()
    max_per_category: int | None = None
    pinned: tuple[int, ...] = ()
    blocked: tuple[int, ...] = ()

    def product_q(self, prefix: str = "") -> Q:
        """SQL filter of the products this list may show (``prefix``: path to the product)."""
        q = Q(**{f"{prefix}is_active": True, f"{prefix}stock__gt": 0})
        if self.only_categories:
            q &= Q(**{f"{prefix}category_id__in": self.only_categories})
        if self.exclude_categories:
            excluded = Q(**{f"{prefix}category_id__in": self.exclude_categories})
            q &= Q(**{f"{prefix}category_id__isnull": True}) | ~excluded
        if self.blocked:
            q &= ~Q(**{f"{prefix}pk__in": self.blocked})
        return q

    def cache_key(self) -> str:
        """A short stable digest (part of cached lists' keys)."""
        raw = json.dumps([getattr(self, f.name) for f in fields(self)], default=list)
        return hashlib.blake2b(raw.encode(), digest_size=8).hexdigest()

    def with_category(self, category) -> Rules:
        """These rules restricted to ``category`` (a Category, an id, or None for no change)."""
        if category is None:
            return self
        cat_id = int(getattr(category, "pk", category))
        if self.only_categories and cat_id not in self.only_categories:
            return replace(self, only_categories=(-1,))  # nothing can match both restrictions
        return replace(self, only_categories=(cat_id,))


def _ids(values: Iterable[Any] | None) -> tuple[int, ...]:
    return tuple(int(v) for v in (values or ()))


def _coerce(name: str, value: Any) -> Any:
    if name == "exclude_interacted_kinds":
        return tuple(str(v) for v in (value or ()))
    if name == "max_per_category":
        return None if value in (None, "", 0) else max(int(value), 1)
    return _ids(value)


def rules_for(widget: str, rules: Rules | None = None, **overrides: Any) -> Rules:
    """The rules of ``widget``: settings defaults, the widget's overrides, then ``rules``/``overrides``.

    ``overrides`` use the field names of :class:`Rules` (``max_per_category=2``,
    ``pinned=[3, 4]``); ``None`` values are ignored.
    """
    if rules is None:
        merged = {**dict(visrec_settings.RULES), **dict((visrec_settings.WIDGET_RULES or {}).get(widget, {}))}
        unknown = set(merged) - set(_KEYS)
        if unknown:
            raise ValueError(f"unknown VISREC rule(s) {', '.join(sorted(unknown))}")
        rules = Rules(**{_KEYS[k]: _coerce(_KEYS[k], v) for k, v in merged.items()})
    unknown = set(overrides) - {f.name for f in fields(Rules)}
    if unknown:
        raise ValueError(f"unknown rule(s) {', '.join(sorted(unknown))}")
    given = {k: _coerce(k, v) for k, v in overrides.items() if v is not None}
    return replace(rules, **given) if given else rules


def arrange(ranked: Sequence[Any], limit: int, rules: Rules, pinned: Sequence[Any] = ()) -> list[Any]:
    """Pins first, then ``ranked`` in order: each product once, at most ``max_per_category`` per category.

    Items are :class:`~recommendations.serving.Recommendation` s whose products already
    passed :meth:`Rules.product_q`; pins count towards the diversity cap too.
    """
    cap = rules.max_per_category
    per_category: dict[Any, int] = {}
    seen: set[int] = set()
    out: list[Any] = []
    for item in [*pinned, *ranked]:
        if len(out) >= limit:
            break
        pk, cat = item.product.pk, getattr(item.product, "category_id", None)
        if pk in seen or (cap is not None and cat is not None and per_category.get(cat, 0) >= cap):
            continue
        seen.add(pk)
        per_category[cat] = per_category.get(cat, 0) + 1
        out.append(item)
    return out


def overfetch(limit: int, rules: Rules) -> int:
    """How many ranked candidates to fetch so that diversity still leaves ``limit``."""
    return limit * 4 if rules.max_per_category is not None else limit
