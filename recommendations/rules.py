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
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import astuple, dataclass, field, fields, is_dataclass, replace
from typing import Any

from django.db import DatabaseError
from django.db.models import Q

from . import stamps
from .conf import visrec_settings

logger = logging.getLogger(__name__)

# Setting key -> Rules field.
_KEYS = {
    "EXCLUDE_INTERACTED_KINDS": "exclude_interacted_kinds",
    "ONLY_CATEGORIES": "only_categories",
    "EXCLUDE_CATEGORIES": "exclude_categories",
    "MAX_PER_CATEGORY": "max_per_category",
    "PINNED": "pinned",
    "BLOCKED": "blocked",
}


def _jsonable(value):
    """JSON form of what ``Rules`` holds besides plain values: dataclasses, tuples of ids, UUID product keys."""
    if is_dataclass(value):
        return astuple(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return list(value)


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
    merch : Merch
        The shop owner's rules from the admin (and similar-items judgements) for this
        list, set by :func:`rules_for`; combined with the fields above.
    """

    exclude_interacted_kinds: tuple[str, ...] = ("purchase",)
    only_categories: tuple[int, ...] = ()
    exclude_categories: tuple[int, ...] = ()
    max_per_category: int | None = None
    pinned: tuple[int, ...] = ()
    blocked: tuple[int, ...] = ()
    merch: Merch = field(default_factory=lambda: Merch())

    def product_q(self, prefix: str = "") -> Q:
        """SQL filter over visrec's product snapshots of what this list may show (``prefix``: path to the snapshot)."""
        q = Q(**{f"{prefix}recommendable": True, f"{prefix}active": True, f"{prefix}in_stock": True})
        if self.only_categories:
            q &= Q(**{f"{prefix}category_id__in": self.only_categories})
        exclude_categories = (*self.exclude_categories, *self.merch.exclude_categories)
        if exclude_categories:
            excluded = Q(**{f"{prefix}category_id__in": exclude_categories})
            q &= Q(**{f"{prefix}category_id__isnull": True}) | ~excluded
        blocked = (*self.blocked, *self.merch.blocked)
        if blocked:
            q &= ~Q(**{f"{prefix}pk__in": blocked})
        return q

    def cache_key(self) -> str:
        """A short stable digest (part of cached lists' keys; computed once per instance, which is immutable)."""
        found = self.__dict__.get("_cache_key")
        if found is None:
            raw = json.dumps(
                [getattr(self, f.name) for f in fields(self)],
                default=_jsonable,
            )
            found = hashlib.blake2b(raw.encode(), digest_size=8).hexdigest()
            object.__setattr__(self, "_cache_key", found)
        return found

    def pins(self) -> tuple[int, ...]:
        """Product ids shown first: the admin's pins (by position), then the settings' pins."""
        return tuple(dict.fromkeys((*self.merch.pinned, *self.pinned)))

    def lift(self, ranked: list[tuple[int, float, str]]) -> list[tuple[int, float, str]]:
        """``ranked`` (``(pk, score, reason)``) with the anchor's good matches first, added if missing."""
        lifted = self.merch.lifted
        if not lifted:
            return ranked
        top = max((s for _, s, r in ranked if r not in _FILL_REASONS), default=1.0)
        rest = [row for row in ranked if row[0] not in set(lifted)]
        return [(pk, top, "visual") for pk in lifted] + rest

    def order(self, items: list[Any]) -> list[Any]:
        """Boosts applied (score × multiplier) and each run of same-scale items re-sorted; good matches first.

        Filler items (trending/popular, scored on another scale) keep their place after the
        candidates they fill up.
        """
        if not self.merch.boosts and not self.merch.lifted:
            return items
        boosted = [self._boosted(item) for item in items]
        lifted = [item for item in boosted if item.product.pk in set(self.merch.lifted)]
        runs: list[list[Any]] = []
        for item in boosted:
            if item.product.pk in set(self.merch.lifted):
                continue
            if runs and _scale(runs[-1][-1]) == _scale(item):
                runs[-1].append(item)
            else:
                runs.append([item])
        return lifted + [item for run in runs for item in sorted(run, key=lambda i: -i.score)]

    def _boosted(self, item: Any) -> Any:
        factor = 1.0
        for target, pk, multiplier in self.merch.boosts:
            if pk == (item.product.pk if target == "p" else getattr(item.product, "category_id", None)):
                factor *= multiplier
        return item if factor == 1.0 else replace(item, score=item.score * factor)

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


def rules_for(widget: str, rules: Rules | None = None, *, anchor=None, category=None, **overrides: Any) -> Rules:
    """The rules of ``widget``: settings defaults, the widget's overrides, then ``rules``/``overrides``.

    ``overrides`` use the field names of :class:`Rules` (``max_per_category=2``,
    ``pinned=[3, 4]``); ``None`` values are ignored. The admin's rules in force for the
    widget (scoped by the ``anchor`` product and the list's ``category``) are set as
    ``merch`` (replacing any earlier ones, so calling this twice is harmless).
    """
    if rules is None:
        merged = {**dict(visrec_settings.RULES), **dict((visrec_settings.WIDGET_RULES or {}).get(widget, {}))}
        unknown = set(merged) - set(_KEYS)
        if unknown:
            raise ValueError(f"unknown VISREC rule(s) {', '.join(sorted(unknown))}")
        rules = Rules(**{_KEYS[k]: _coerce(_KEYS[k], v) for k, v in merged.items()})
    unknown = set(overrides) - {f.name for f in fields(Rules) if f.name != "merch"}
    if unknown:
        raise ValueError(f"unknown rule(s) {', '.join(sorted(unknown))}")
    given = {k: _coerce(k, v) for k, v in overrides.items() if v is not None}
    return replace(rules, **given, merch=merch_for(widget, anchor, category))


_FILL_REASONS = frozenset({"trending", "popular"})


def _scale(item: Any) -> str:
    return item.reason if item.reason in _FILL_REASONS else ""


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


# -- the shop owner's rules (admin) and similar-items judgements ---------------------------
#
# Loaded once per process and kept: each process reloads them only when a saved rule or
# judgement changed their stamp (signals), which it reads from the database at most every
# second (``recommendations.stamps``), so serving costs no query per request and every process
# sees a change within a second. Dates are checked at apply time, so a boost starting at
# midnight needs no reload.

MERCH_STAMP = "merch"
_RETRY_SECONDS = 2.0  # after a failed load


@dataclass(frozen=True)
class Merch:
    """The admin's rules (and judgements) that apply to one list.

    ``boosts``: ``(("p" or "c", id, multiplier), ...)``; ``lifted``: good matches of the
    anchor product, shown right after the pins; ``blocked`` includes the anchor's
    "not similar" neighbours.
    """

    pinned: tuple[int, ...] = ()
    blocked: tuple[int, ...] = ()
    exclude_categories: tuple[int, ...] = ()
    boosts: tuple[tuple[str, int, float], ...] = ()
    lifted: tuple[int, ...] = ()

    def __bool__(self) -> bool:
        return any(getattr(self, f.name) for f in fields(self))


@dataclass(frozen=True)
class _RuleRow:
    kind: str
    product_id: int | None
    category_id: int | None
    widget: str
    scope_product_id: int | None
    scope_category_id: int | None
    multiplier: float
    position: int
    starts_at: Any
    ends_at: Any

    def in_force(self, now) -> bool:
        return (self.starts_at is None or self.starts_at <= now) and (self.ends_at is None or self.ends_at > now)

    def applies(self, widget: str, anchor: int | None, categories: set[int]) -> bool:
        if self.widget and self.widget != widget:
            return False
        if self.scope_product_id is not None and self.scope_product_id != anchor:
            return False
        return self.scope_category_id is None or self.scope_category_id in categories


@dataclass
class MerchData:
    """Every active rule and judgement, as loaded by one process."""

    version: str | None = ""  # the stamp it was loaded at (None: nothing loaded yet)
    rules: list[_RuleRow] = field(default_factory=list)
    hidden: dict[int, set[int]] = field(default_factory=dict)  # product -> "not similar" neighbours (both ways)
    good: dict[int, list[int]] = field(default_factory=dict)  # product -> "good match" neighbours, newest first


_ROW_FIELDS = [f.name for f in fields(_RuleRow)]


def rule_row(rule) -> _RuleRow:
    """A :class:`~recommendations.models.Rule` (saved or not) as serving keeps it."""
    return _RuleRow(**{name: getattr(rule, name) for name in _ROW_FIELDS})


def load_merch(version: str | None = "") -> MerchData:
    """Active rules (not yet ended) and all judgements, from the database (two queries)."""
    from django.utils import timezone

    from .models import Rule, SimilarityJudgement

    rows = Rule.objects.filter(is_active=True).exclude(ends_at__lte=timezone.now()).order_by("position", "pk")
    data = MerchData(version, [_RuleRow(*r) for r in rows.values_list(*_ROW_FIELDS)])
    judged = SimilarityJudgement.objects.order_by("-created_at", "-pk")
    for product, neighbour, verdict in judged.values_list("product_id", "neighbour_id", "verdict"):
        if verdict == SimilarityJudgement.NOT_SIMILAR:
            data.hidden.setdefault(product, set()).add(neighbour)
            data.hidden.setdefault(neighbour, set()).add(product)
        else:
            data.good.setdefault(product, []).append(neighbour)
    return data


_local_merch: dict[str, tuple[float, MerchData]] = {}  # cache prefix -> (no reload before, data)
_merch_lock = threading.Lock()
_override = threading.local()


def _fresh(local: tuple[float, MerchData] | None, version: str | None) -> bool:
    """Whether ``local`` may serve: loaded at ``version``, the stamp unreadable, or a failed load not due again."""
    return local is not None and (version is None or local[1].version == version or time.monotonic() < local[0])


def merch_data() -> MerchData:
    """The rules and judgements of this process, reloaded when their stamp changed (any process)."""
    override = getattr(_override, "data", None)
    if override is not None:
        return override
    key = str(visrec_settings.CACHE_PREFIX)  # one prefix in use per process (tests change it)
    version = stamps.read(MERCH_STAMP)
    local = _local_merch.get(key)
    if _fresh(local, version):
        return local[1]
    with _merch_lock:
        local = _local_merch.get(key)
        if _fresh(local, version):
            return local[1]
        try:
            local = (0.0, load_merch(version))
        except DatabaseError:  # keep serving with what this process had; retry in a few seconds
            logger.warning("visrec rules cannot be loaded", exc_info=True)
            kept = local[1] if local is not None else MerchData(version=None)
            local = (time.monotonic() + _RETRY_SECONDS, kept)
        _local_merch.clear()
        _local_merch[key] = local
    return local[1]


def bump_merch_version(**kwargs) -> None:
    """A rule or judgement changed: every process reloads within a second (this one at once)."""
    _local_merch.clear()
    stamps.bump(MERCH_STAMP)


@contextmanager
def previewing(rules: Iterable[Any]):
    """Serve with exactly ``rules`` (Rule instances, saved or not) in this thread, e.g. an admin preview."""
    current = merch_data()
    _override.data = MerchData("preview", [rule_row(r) for r in rules], current.hidden, current.good)
    try:
        yield
    finally:
        _override.data = None


def merch_for(widget: str, anchor=None, category=None) -> Merch:
    """The admin's rules in force for ``widget`` (and judgements, for an anchor's similar items).

    ``anchor``: the product whose page shows the list (its category counts as the list's
    category); ``category``: the category the list is shown for.
    """
    from django.utils import timezone

    data = merch_data()
    anchor_id = getattr(anchor, "pk", anchor)
    cats = {int(c) for c in (getattr(anchor, "category_id", None), getattr(category, "pk", category)) if c is not None}
    now = timezone.now()
    out: dict[str, list] = {"pin": [], "block": [], "exclude_category": [], "boost": []}
    for row in data.rules:
        if not row.in_force(now) or not row.applies(widget, anchor_id, cats) or row.kind not in out:
            continue
        if row.kind == "boost":
            target = ("p", row.product_id) if row.product_id else ("c", row.category_id)
            out["boost"].append((*target, float(row.multiplier)))
        elif row.kind == "exclude_category":
            out["exclude_category"].append(row.category_id)
        else:
            out[row.kind].append(row.product_id)
    hidden: set[int] = set()
    lifted: tuple[int, ...] = ()
    if widget == "similar-items" and anchor_id is not None:
        hidden = data.hidden.get(anchor_id, set())
        lifted = tuple(pk for pk in dict.fromkeys(data.good.get(anchor_id, ())) if pk not in hidden)
    return Merch(
        pinned=_ids(pk for pk in dict.fromkeys(out["pin"]) if pk is not None),
        blocked=tuple(sorted({pk for pk in out["block"] if pk is not None} | hidden)),
        exclude_categories=tuple(sorted({c for c in out["exclude_category"] if c is not None})),
        boosts=tuple(b for b in out["boost"] if b[1] is not None and b[2] > 0),
        lifted=lifted,
    )
