"""QuerySets of the catalogue: the query logic the rest of the project reuses."""

from __future__ import annotations

from django.db import models
from django.db.models import Count, Q


class ProductQuerySet(models.QuerySet):
    """Queries over products."""

    def active(self) -> ProductQuerySet:
        """Products shown in the shop."""
        return self.filter(is_active=True)

    def recommendable(self) -> ProductQuerySet:
        """Products a widget may show: active and in stock."""
        return self.filter(is_active=True, stock__gt=0)

    def with_primary_image(self) -> ProductQuerySet:
        """Prefetch the images so templates need no extra query per product."""
        return self.prefetch_related("images")

    def popular(self, since=None) -> ProductQuerySet:
        """Order by weighted interaction count (purchases count most), most popular first."""
        weight = Q()
        if since is not None:
            weight &= Q(interactions__created_at__gte=since)
        return self.annotate(
            popularity=Count("interactions", filter=weight & Q(interactions__kind="purchase")) * 4
            + Count("interactions", filter=weight & Q(interactions__kind="add_to_cart")) * 2
            + Count("interactions", filter=weight & ~Q(interactions__kind__in=["purchase", "add_to_cart"]))
        ).order_by("-popularity", "pk")


class ProductImageQuerySet(models.QuerySet):
    """Queries over product images."""

    def pending(self) -> ProductImageQuerySet:
        """Images still waiting for an embedding."""
        return self.filter(status="pending")


class InteractionQuerySet(models.QuerySet):
    """Queries over shopper interactions."""

    def for_shopper(self, user=None, session_key: str | None = None) -> InteractionQuerySet:
        """A signed-in user's or an anonymous session's history, newest first."""
        if user is not None and user.is_authenticated:
            return self.filter(user=user).order_by("-created_at")
        if session_key:
            return self.filter(session_key=session_key).order_by("-created_at")
        return self.none()
