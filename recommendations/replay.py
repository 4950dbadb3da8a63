"""What-if replay: a rule, blend weights or a model version tried on the logged traffic before it goes live.

The lists shown over the last ``WHATIF_DAYS`` days (impressions, with what each was asked
for: the anchor product, the category, the length) are sampled and asked again from
:mod:`recommendations.serving`, the very code the shop serves with, while the candidate is
applied in memory only:

- a rule: an unsaved :class:`~recommendations.models.Rule` joins the rules in force
  (:func:`recommendations.rules.previewing`); its start and end dates are set aside, so a
  rule for next week shows what it would have done to the past two;
- blend weights or a model version: :func:`recommendations.experiments.serving_with`.

Each list is replayed as at the moment it was shown (:func:`serving.clock.serving_at`):
the shopper's events up to then make the session taste and the products already bought.
The replayed lists are then compared with what was shown (:func:`compare`): the share
that changes, overlap@k, catalogue coverage and category mix before and after, how many
of the products the shopper went on to click or buy (within ``WHATIF_FOLLOW_SECONDS``)
were shown and would still be, and, for a rule with a target (a pinned or boosted product
or category), how many lists and slots the target takes.

A quick look replays at most ``WHATIF_QUICK_SAMPLE`` lists inline (the admin page); the
background run (``tasks.whatif_replay``) at most ``WHATIF_SAMPLE``, reporting progress.
The sample is the window's lists ordered by their random (UUID4) ids: uniform and
repeatable. What replay cannot recreate: the shop-wide popular and trending rankings
are today's, and a model version knows what it was trained on.
"""

from __future__ import annotations

import copy
import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone

from . import experiments, serving
from .conf import visrec_settings
from .models import Click, Impression, Interaction, ModelVersion, ProductSnapshot, Rule
from .replicas import on_primary
from .rules import previewing
from .serving.clock import serving_at
from .tracking import _json_key

logger = logging.getLogger(__name__)

#: Widgets whose logged lists can be asked again (the others need a photo or are the shopper's own history).
WIDGETS = ("similar-items", "for-you")
#: What a shopper "went on to do" after a list: these interaction kinds (and clicks on the list itself).
FOLLOW_KINDS = (Interaction.Kind.CLICK, Interaction.Kind.PURCHASE)
#: The rule fields a background run carries to rebuild the unsaved rule.
_RULE_FIELDS = ("kind", "product_id", "category_id", "widget", "scope_product_id", "scope_category_id")
_RULE_FIELDS += ("multiplier", "position", "is_active")

Progress = Callable[[int, int], None]


class ReplayError(ValueError):
    """A candidate that cannot be replayed (e.g. a rule for a widget no logged list can be asked again)."""


@dataclass(frozen=True)
class Candidate:
    """What the owner is about to change: a rule (saved or not), blend settings, or a model version to activate."""

    rule: Rule | None = None
    settings: dict[str, Any] | None = None
    version: ModelVersion | None = None

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.rule, self.settings, self.version)) != 1:
            raise ReplayError("a what-if replays one rule, one set of blend settings or one model version")
        if self.settings is not None:
            try:
                experiments.validate_settings(self.settings)
            except experiments.ExperimentError as e:
                raise ReplayError(str(e)) from e
        if not self.widgets:
            raise ReplayError(f"no logged list can be asked again for this rule's widget; replayable: {WIDGETS}")

    @property
    def widgets(self) -> tuple[str, ...]:
        """The widgets whose lists the candidate can change."""
        if self.rule is not None:
            return (self.rule.widget,) if self.rule.widget in WIDGETS else () if self.rule.widget else WIDGETS
        if self.settings is not None:
            return tuple(w for name, w in experiments.SETTING_WIDGETS.items() if name in self.settings)
        return WIDGETS

    @property
    def label(self) -> str:
        if self.rule is not None:
            return f"rule “{self.rule}”" + ("" if self.rule.is_active else " (switched off)")
        if self.settings is not None:
            return f"blend {json.dumps(self.settings, sort_keys=True)}"
        return f"activating {self.version.kind} v{self.version.pk}"

    @contextmanager
    def applied(self) -> Iterator[None]:
        """Serve with the candidate in this thread; nothing is saved."""
        if self.rule is None:
            with experiments.serving_with(version=self.version, settings=self.settings):
                yield
            return
        others = [r for r in Rule.objects.filter(is_active=True) if self.rule.pk is None or r.pk != self.rule.pk]
        undated = copy.copy(self.rule)
        undated.starts_at = undated.ends_at = None
        with previewing([*others, undated] if self.rule.is_active else others):
            yield

    def to_params(self) -> dict:
        """A JSON form for a background run (:meth:`from_params`)."""
        if self.rule is not None:
            return {"rule": {"pk": self.rule.pk, **{name: getattr(self.rule, name) for name in _RULE_FIELDS}}}
        if self.settings is not None:
            return {"settings": self.settings}
        return {"version": self.version.pk}

    @classmethod
    def from_params(cls, params: dict) -> Candidate:
        if "rule" in params:
            return cls(rule=Rule(**params["rule"]))
        if "settings" in params:
            return cls(settings=params["settings"])
        version = ModelVersion.objects.filter(pk=params["version"]).first()
        if version is None:
            raise ReplayError(f"model version {params['version']} is gone")
        return cls(version=version)

    def target(self) -> tuple[str, Any, str] | None:
        """What the rule acts on: ``("product", pk, label)`` or ``("category", id, label)``; None otherwise."""
        rule = self.rule
        if rule is None or rule.kind == Rule.EXCLUDE_CATEGORY:
            return None
        if rule.product_id is not None:
            return "product", str(rule.product_id), f"product {rule.product_id}"
        if rule.category_id is not None:
            return "category", int(rule.category_id), f"category {rule.category_id}"
        return None


# -- the logged lists -------------------------------------------------------------------------


def window(days: float | None = None, now: datetime | None = None) -> tuple[datetime, datetime]:
    """``(since, until)`` of the replayed traffic: the last ``days`` (default ``WHATIF_DAYS``)."""
    until = now or timezone.now()
    return until - timedelta(days=float(days if days is not None else visrec_settings.WHATIF_DAYS)), until


def logged_lists(candidate: Candidate, since: datetime, until: datetime):
    """The window's non-empty lists the candidate can change (a scoped rule: only lists in its scope)."""
    lists = Impression.objects.filter(created_at__gte=since, created_at__lte=until, widget__in=candidate.widgets)
    lists = lists.exclude(items=[]).exclude(Q(widget="similar-items") & ~Q(context__has_key="product"))
    rule = candidate.rule
    if rule is not None and rule.scope_product_id is not None:
        lists = lists.filter(context__product=_json_key(rule.scope_product_id))
    if rule is not None and rule.scope_category_id is not None:
        lists = lists.filter(context__category=rule.scope_category_id)
    return lists


def sample(lists, limit: int) -> list[Impression]:
    """At most ``limit`` of ``lists``: those with the lowest (random, UUID4) ids, a uniform and repeatable sample."""
    return list(lists.order_by("id")[: max(int(limit), 0)])


# -- replaying ----------------------------------------------------------------------------------


@dataclass
class Replayed:
    """One logged list: what was shown, what the candidate would show, what the shopper went on to click or buy."""

    shown: list[str]
    after: list[str]
    followed: set[str] = field(default_factory=set)


def replay_one(impression: Impression, user) -> list[str] | None:
    """The list ``impression`` would be under the serving in force in this thread, as at its time (None: gone)."""
    context = impression.context or {}
    limit = int(context.get("limit") or len(impression.items))
    session = impression.session_key or None
    with serving_at(impression.created_at):
        if impression.widget == "similar-items":
            anchor = serving.anchor_product(context["product"])
            if anchor is None:
                return None
            found = serving.similar_items(
                anchor, limit, user=user, session_key=session, cached=False, exclude=context.get("exclude") or ()
            )
        else:
            found = serving.for_you(
                user=user,
                session_key=session,
                limit=limit,
                category=context.get("category"),
                exclude=context.get("exclude") or (),
                cached=False,
            )
    return [str(pk) for pk in found.product_ids]


def replay(candidate: Candidate, impressions: list[Impression], progress: Progress | None = None) -> list[Replayed]:
    """Each of ``impressions`` asked again with ``candidate`` applied; lists whose anchor is gone are left out."""
    users = get_user_model().objects.in_bulk({i.user_id for i in impressions if i.user_id is not None})
    followed = _followed(impressions)
    out: list[Replayed] = []
    if progress is not None:
        progress(0, len(impressions))
    every = max(len(impressions) // 50, 1)
    with on_primary(), candidate.applied():
        for n, impression in enumerate(impressions, 1):
            after = replay_one(impression, users.get(impression.user_id))
            if after is not None:
                shown = [str(item["product"]) for item in impression.items]
                out.append(Replayed(shown, after, followed.get(impression.pk, set())))
            if progress is not None and (n % every == 0 or n == len(impressions)):
                progress(n, len(impressions))
    return out


def _followed(impressions: list[Impression]) -> dict[Any, set[str]]:
    """Per impression: the products its shopper clicked or bought within ``WHATIF_FOLLOW_SECONDS`` after it.

    The clicks on the list itself count too; the list's anchor and excluded products (which
    it can never show) do not.
    """
    if not impressions:
        return {}
    follow = timedelta(seconds=float(visrec_settings.WHATIF_FOLLOW_SECONDS))
    first, last = min(i.created_at for i in impressions), max(i.created_at for i in impressions) + follow
    users = {i.user_id for i in impressions if i.user_id is not None}
    sessions = {i.session_key for i in impressions if i.user_id is None and i.session_key}
    events = Interaction.objects.filter(kind__in=FOLLOW_KINDS, created_at__gt=first, created_at__lte=last)
    events = events.filter(Q(user_id__in=users) | Q(session_key__in=sessions))
    by_shopper: dict[tuple, list[tuple[datetime, str]]] = {}
    for user_id, session, product, at in events.values_list("user_id", "session_key", "product_id", "created_at"):
        for who in ((user_id, ""), (None, session)):
            by_shopper.setdefault(who, []).append((at, str(product)))
    clicks: dict[str, set[str]] = {}
    for impression_id, product in Click.objects.filter(impression_id__in=[i.pk for i in impressions]).values_list(
        "impression_id", "product_id"
    ):
        clicks.setdefault(str(impression_id), set()).add(str(product))
    out = {}
    for i in impressions:
        who = (i.user_id, "") if i.user_id is not None else (None, i.session_key)
        later = {p for at, p in by_shopper.get(who, ()) if i.created_at < at <= i.created_at + follow}
        context = i.context or {}
        never = {str(context["product"])} if context.get("product") is not None else set()
        never |= {str(pk) for pk in context.get("exclude") or ()}
        out[i.pk] = (later | clicks.get(str(i.pk), set())) - never
    return out


# -- comparing ----------------------------------------------------------------------------------


def compare(
    lists: list[Replayed],
    *,
    k: int,
    categories: dict[str, tuple[int | None, str]],
    catalogue: int,
    target: tuple[str, Any, str] | None = None,
) -> dict:
    """The replayed lists against the shown ones (JSON-able; shares in [0, 1]).

    ``categories``: ``{product key: (category id, name)}``; ``catalogue``: recommendable
    products now; ``target``: :meth:`Candidate.target`.
    """
    n = len(lists)
    changed = sum(r.shown != r.after for r in lists)
    overlaps = [len(set(r.shown[:k]) & set(r.after[:k])) / len(r.shown[:k]) for r in lists if r.shown]
    before = {p for r in lists for p in r.shown}
    after = {p for r in lists for p in r.after}
    followed = [(p, r) for r in lists for p in r.followed]
    kept = sum(p in r.shown and p in r.after for p, r in followed)
    shown_before, shown_after = sum(p in r.shown for p, r in followed), sum(p in r.after for p, r in followed)
    return {
        "lists": n,
        "changed": changed,
        "changed_share": changed / n if n else 0.0,
        "k": k,
        "overlap_at_k": sum(overlaps) / len(overlaps) if overlaps else 0.0,
        "coverage": {
            "catalogue": catalogue,
            "before": len(before),
            "after": len(after),
            "before_share": len(before) / catalogue if catalogue else 0.0,
            "after_share": len(after) / catalogue if catalogue else 0.0,
        },
        "category_mix": category_mix(lists, categories),
        "followed": {
            "total": len(followed),
            "shown_before": shown_before,
            "shown_after": shown_after,
            "kept": kept,
            "lost": shown_before - kept,
            "gained": shown_after - kept,
        },
        "target": _target_share(lists, categories, target) if target else None,
    }


def category_mix(lists: list[Replayed], categories: dict[str, tuple[int | None, str]]) -> list[dict]:
    """Share of the slots each category fills, before and after, largest first."""
    before = Counter(categories.get(p, (None, "(none)"))[1] for r in lists for p in r.shown)
    after = Counter(categories.get(p, (None, "(none)"))[1] for r in lists for p in r.after)
    nb, na = sum(before.values()), sum(after.values())
    names = sorted(set(before) | set(after), key=lambda c: (-max(before[c] / (nb or 1), after[c] / (na or 1)), c))
    return [
        {"category": c, "before": before[c] / nb if nb else 0.0, "after": after[c] / na if na else 0.0} for c in names
    ]


def _target_share(lists: list[Replayed], categories: dict, target: tuple[str, Any, str]) -> dict:
    """Lists and slots the rule's target product (or products of its category) takes, before and after."""
    what, key, label = target

    def hit(p: str) -> bool:
        return p == key if what == "product" else categories.get(p, (None, ""))[0] == key

    out: dict[str, Any] = {"label": label}
    for side in ("before", "after"):
        slots = [[hit(p) for p in (r.shown if side == "before" else r.after)] for r in lists]
        total = sum(len(s) for s in slots)
        out[f"lists_{side}"] = sum(any(s) for s in slots)
        out[f"slots_{side}"] = sum(sum(s) for s in slots)
        out[f"share_{side}"] = out[f"slots_{side}"] / total if total else 0.0
    return out


def _categories(keys: Iterable[str]) -> dict[str, tuple[int | None, str]]:
    rows = ProductSnapshot.objects.filter(pk__in=list(keys)).values_list("pk", "category_id", "category_name")
    return {str(pk): (cat, name or "(none)") for pk, cat, name in rows}


def _catalogue() -> int:
    return ProductSnapshot.objects.filter(recommendable=True, active=True, in_stock=True).count()


# -- the whole what-if -----------------------------------------------------------------------------


def what_if(
    candidate: Candidate,
    *,
    limit: int | None = None,
    days: float | None = None,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> dict:
    """Replay at most ``limit`` (default ``WHATIF_QUICK_SAMPLE``) of the window's lists under ``candidate``."""
    limit = int(limit if limit is not None else visrec_settings.WHATIF_QUICK_SAMPLE)
    since, until = window(days, now)
    lists = logged_lists(candidate, since, until)
    picked = sample(lists, limit)
    replayed = replay(candidate, picked, progress)
    keys = {p for r in replayed for p in (*r.shown, *r.after)}
    k = int(visrec_settings.WHATIF_K)
    result = compare(replayed, k=k, categories=_categories(keys), catalogue=_catalogue(), target=candidate.target())
    logger.info("what-if replayed", extra={"candidate": candidate.label, "lists": len(replayed)})
    return {
        "candidate": candidate.label,
        "widgets": list(candidate.widgets),
        "since": since.isoformat(),
        "until": until.isoformat(),
        "days": (until - since).total_seconds() / 86400,
        "in_window": lists.count(),
        "sampled": len(picked),
        "sample_limit": limit,
        "gone": len(picked) - len(replayed),
        **result,
    }
