"""QuerySets of the catalogue: the query logic the rest of the project reuses."""

from __future__ import annotations

from django.db import models


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
