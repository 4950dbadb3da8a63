"""The tiny shop behind visrec's adapter contract."""

from __future__ import annotations

from recommendations.adapters import CategoryRecord, ImageRecord, ProductAdapter

from .models import Item, Picture, Shelf


class ItemAdapter(ProductAdapter):
    """Items are products; the first picture by rank is the primary one; shelves are categories."""

    def prefetch(self, queryset):
        return queryset.select_related("shelf__parent").prefetch_related("pictures")

    def title(self, product: Item) -> str:
        return product.name

    def in_stock(self, product: Item) -> bool:
        return product.available

    def category(self, product: Item) -> CategoryRecord | None:
        shelf = product.shelf
        if shelf is None:
            return None
        path = [shelf.pk] if shelf.parent_id is None else [shelf.parent_id, shelf.pk]
        return CategoryRecord(id=shelf.pk, name=shelf.name, path=tuple(path))

    def images(self, product: Item) -> list[ImageRecord]:
        pictures = sorted(product.pictures.all(), key=lambda p: (p.rank, str(p.pk)))
        return [
            ImageRecord(
                key=str(p.pk), version=p.image.name, url=p.image.url, is_primary=n == 0, position=p.rank, file=p.image
            )
            for n, p in enumerate(pictures)
        ]

    def categories(self):
        return [CategoryRecord(id=s.pk, name=s.name) for s in Shelf.objects.order_by("name")]

    def watched(self):
        return {Item: lambda item: [item.pk], Picture: lambda picture: [picture.item_id]}
