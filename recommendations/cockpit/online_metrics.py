"""Online metrics from impressions, clicks and purchases: CTR and conversions, daily and per arm.

Definitions (the dashboard and experiments use these):

- an *impression* is one rendered list (an ``Impression`` row);
- a *click* is a ``Click`` row: at most one per impression, from the shopper it was shown to
  (so CTR is the share of lists clicked, a proportion the experiments' tests can use);
- a *conversion* is a click followed, within ``CONVERSION_WINDOW``, by a purchase of the
  clicked product by the same shopper (the same session key, or the same signed-in user);
- CTR = clicks / impressions; conversion rate = conversions / impressions.

Every figure is one grouped SQL aggregate (no per-row Python); clicks reach their
impression's experiment arm through the impression id.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from django.db.models import Count, DateTimeField, Exists, ExpressionWrapper, OuterRef, Q, Subquery, Value
from django.db.models.functions import TruncDate
from django.utils import timezone

from ..models import Click, Impression, Interaction

CONVERSION_WINDOW = datetime.timedelta(days=1)


def converted() -> Exists:
    """SQL: this click (the outer row) was followed by a purchase of its product by the same shopper."""
    same_shopper = (Q(session_key=OuterRef("session_key")) & ~Q(session_key="")) | Q(user_id=OuterRef("user_id"))
    until = ExpressionWrapper(OuterRef("created_at") + Value(CONVERSION_WINDOW), output_field=DateTimeField())
    return Exists(
        Interaction.objects.filter(
            same_shopper,
            kind=Interaction.Kind.PURCHASE,
            product_id=OuterRef("product_id"),
            created_at__gte=OuterRef("created_at"),
            created_at__lte=until,
        )
    )


@dataclass
class Counts:
    """Impressions, clicks and conversions of one group (a widget, a version, an arm, a day)."""

    impressions: int = 0
    clicks: int = 0
    conversions: int = 0

    @property
    def ctr(self) -> float:
        return self.clicks / self.impressions if self.impressions else 0.0

    @property
    def conversion_rate(self) -> float:
        return self.conversions / self.impressions if self.impressions else 0.0


@dataclass
class Daily:
    """Counts per group and day over a window of days (oldest first)."""

    days: list[datetime.date]
    groups: dict[str, list[Counts]] = field(default_factory=dict)

    def totals(self) -> dict[str, Counts]:
        return {
            name: Counts(*(sum(getattr(c, f) for c in row) for f in ("impressions", "clicks", "conversions")))
            for name, row in self.groups.items()
        }

    def series(self, metric: str) -> dict[str, list[float]]:
        """One list of ``metric`` (a :class:`Counts` attribute) per group, one value per day."""
        return {name: [getattr(c, metric) for c in row] for name, row in self.groups.items()}


def _click_counts() -> dict:
    return {"clicks": Count("id"), "conversions": Count("id", filter=Q(converted=True))}


def daily(by: str = "widget", days: int = 30, today: datetime.date | None = None) -> Daily:
    """Impressions, clicks and conversions per ``by`` (``widget`` or ``model_version_id``) and day."""
    if by not in ("widget", "model_version_id"):
        raise ValueError(f"cannot group by {by!r}")
    today = today or timezone.localdate()
    first = today - datetime.timedelta(days=days - 1)
    since = timezone.make_aware(datetime.datetime.combine(first, datetime.time.min))
    day_list = [first + datetime.timedelta(days=n) for n in range(days)]
    index = {d: n for n, d in enumerate(day_list)}
    out = Daily(day_list)

    def cell(group) -> list[Counts]:
        name = _group_name(by, group)
        return out.groups.setdefault(name, [Counts() for _ in day_list])

    impressions = (
        Impression.objects.filter(created_at__gte=since)
        .annotate(day=TruncDate("created_at"))
        .values("day", by)
        .annotate(n=Count("id"))
    )
    for row in impressions:
        if row["day"] in index:
            cell(row[by])[index[row["day"]]].impressions = row["n"]
    clicks = (
        Click.objects.filter(created_at__gte=since)
        .annotate(day=TruncDate("created_at"), converted=converted())
        .values("day", by)
        .annotate(**_click_counts())
    )
    for row in clicks:
        if row["day"] in index:
            counts = cell(row[by])[index[row["day"]]]
            counts.clicks, counts.conversions = row["clicks"], row["conversions"]
    out.groups = dict(sorted(out.groups.items()))
    return out


def _group_name(by: str, value) -> str:
    if by == "model_version_id":
        return f"v{value}" if value is not None else "no model"
    return str(value or "?")


def per_arm(labels: list[str], since: datetime.datetime | None = None) -> dict[str, Counts]:
    """Counts per experiment arm label (``"<name>:control"`` ...), for each of ``labels``."""
    out = {label: Counts() for label in labels}
    impressions = Impression.objects.filter(arm__in=labels)
    if since is not None:
        impressions = impressions.filter(created_at__gte=since)
    for row in impressions.values("arm").annotate(n=Count("id")):
        out[row["arm"]].impressions = row["n"]
    arm = Subquery(Impression.objects.filter(id=OuterRef("impression_id")).values("arm")[:1])
    clicks = (
        Click.objects.filter(impression_id__in=impressions.values("id"))
        .annotate(arm=arm, converted=converted())
        .values("arm")
        .annotate(**_click_counts())
    )
    for row in clicks:
        if row["arm"] in out:
            out[row["arm"]].clicks, out[row["arm"]].conversions = row["clicks"], row["conversions"]
    return out
