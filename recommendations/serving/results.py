"""What serving returns: recommendations, lists and the errors callers handle."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from ..ml.images import ImageRejected

#: The exception ``search_by_image`` raises for a corrupt, hostile or oversized image.
InvalidImage = ImageRejected


class SearchBusy(RuntimeError):
    """Search by photo refused a photo because the process is decoding as many as it may."""


#: The shopper-facing words of each event kind ("Because you viewed ...").
EVENT_VERBS = {"view": "viewed", "click": "viewed", "add_to_cart": "carted", "purchase": "bought", "rating": "rated"}


@dataclass(frozen=True)
class Because:
    """The product of the shopper's history that drew a "for you" item in, and what the shopper did with it."""

    product_id: int
    title: str
    image_url: str | None
    event: str  # an Interaction kind: "view", "click", "add_to_cart", "purchase", "rating"

    @property
    def verb(self) -> str:
        return EVENT_VERBS.get(self.event, "viewed")


@dataclass(frozen=True)
class Recommendation:
    """A product with the score that ranked it and why it is there.

    ``reason``: "visual", "model", "session", "trending", "popular", "pinned",
    "recently-viewed", "co-purchase", "compatibility". ``because``: for "for you" items
    ranked from the shopper's history, the history product that drew it in (:mod:`.reasons`).
    ``shares``: for similar items, what they share with the anchor ("category", "colour").
    """

    product: object
    score: float
    reason: str = "visual"
    because: Because | None = None
    shares: tuple[str, ...] = ()


@dataclass
class RecommendationList:
    """One widget's list and what produced it (for impressions and CTR).

    ``source``: "visual", "model", "session", "model+session", "trending", "popular",
    "recently-viewed", "co-purchase", "compatibility", "cache-fallback" or "empty".
    ``context``: what the list was asked for (anchor ``product``, ``category``, ``limit``,
    ``exclude``), logged with its impression so the owner's what-if replay
    (:mod:`recommendations.replay`) can ask again.
    """

    widget: str
    items: list[Recommendation]
    model_version_id: int | None
    embedding_version: str | None
    source: str
    arm: str = ""
    context: dict = field(default_factory=dict)

    def __iter__(self) -> Iterator[Recommendation]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]

    @property
    def product_ids(self) -> list[int]:
        return [r.product.pk for r in self.items]


class ProductNotEmbedded(LookupError):
    """The product has no image vector yet (pending, failed or no image)."""


Ranked = list[tuple[int, float, str]]  # (product pk, score, reason)
