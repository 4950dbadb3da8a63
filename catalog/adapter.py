"""The bundled catalogue behind visrec's product adapter contract (``VISREC_PRODUCT_ADAPTER``)."""

from __future__ import annotations

from collections.abc import Iterable

from django.db import models
from django.urls import reverse

from recommendations.adapters import CategoryRecord, ImageRecord, ProductAdapter, ProductsOf

from .models import Category, Product, ProductImage


class CatalogAdapter(ProductAdapter):
    """``catalog.Product``: active flag, stock count, a category tree and ``ProductImage`` rows."""

    def prefetch(self, queryset: models.QuerySet) -> models.QuerySet:
        return queryset.select_related("category__parent__parent").prefetch_related("images")

    def in_stock(self, product: Product) -> bool:
        return product.stock > 0

    def category(self, product: Product) -> CategoryRecord | None:
        category = product.category
        if category is None:
            return None
        path, node = [], category
        while node is not None and node.pk not in path:
            path.append(node.pk)
            node = node.parent
        return CategoryRecord(id=category.pk, name=category.name, path=tuple(reversed(path)))

    def images(self, product: Product) -> list[ImageRecord]:
        return [self.image_record(image) for image in product.images.all() if image.file or image.import_error]

    @staticmethod
    def image_record(image: ProductImage) -> ImageRecord:
        """One ``ProductImage`` as visrec sees it (its pk is the key, its file name the version)."""
        return ImageRecord(
            key=str(image.pk),
            version=image.file.name,
            url=image.file.url if image.file else "",
            is_primary=image.is_primary,
            position=image.position,
            file=image.file if image.file else None,
            problem=image.import_error,
        )

    def categories(self) -> Iterable[CategoryRecord]:
        parents = dict(Category.objects.values_list("pk", "parent_id"))
        for category in Category.objects.order_by("name"):
            path, pk = [], category.pk
            while pk is not None and pk not in path:
                path.append(pk)
                pk = parents.get(pk)
            yield CategoryRecord(id=category.pk, name=category.name, path=tuple(reversed(path)))

    def import_url(self, request) -> str | None:
        from .admin_import import IMPORT_PERMS

        return reverse("admin:visrec_import") if request.user.has_perms(IMPORT_PERMS) else None

    def watched(self) -> dict[type[models.Model], ProductsOf]:
        return {
            Product: lambda product: [product.pk],
            ProductImage: lambda image: [image.product_id],
            Category: lambda category: category.products.values_list("pk", flat=True),
        }
