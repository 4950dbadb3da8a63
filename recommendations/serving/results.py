"""What serving returns: recommendations, lists and the errors callers handle."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ..ml.images import ImageRejected

#: The exception ``search_by_image`` raises for a corrupt, hostile or oversized image.
InvalidImage = ImageRejected


class SearchBusy(RuntimeError):
    """Search by photo refused a photo because the process is decoding as many as it may."""


@dataclass(frozen=True)
class Recommendation:
    """A product with the score that ranked it and why it is there.

    ``reason``: "visual", "model", "session", "trending", "popular", "pinned",
    "recently-viewed", "co-purchase", "compatibility".
    """

    product: object
    score: float
    reason: str = "visual"


@dataclass
class RecommendationList:
    """One widget's list and what produced it (for impressions and CTR).

    ``source``: "visual", "model", "session", "model+session", "trending", "popular",
    "recently-viewed", "co-purchase", "compatibility", "cache-fallback" or "empty".
    """

    widget: str
    items: list[Recommendation]
    model_version_id: int | None
    embedding_version: str | None
    source: str
    arm: str = ""

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
