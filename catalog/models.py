"""Catalogue models: categories, products and product images (shopper events are visrec's own)."""

from __future__ import annotations

import functools
from decimal import Decimal

from django.core.files.storage import FileSystemStorage
from django.core.validators import MinValueValidator
from django.db import models

from recommendations.urlcache import reverse_one

from .managers import ProductQuerySet


class Category(models.Model):
    """A product category; categories nest through ``parent``."""

    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=200, unique=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children")

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse_one("shop:category", "slug", self.slug)




def file_url(storage, name: str) -> str:
    """``storage.url(name)``; remembered for files on the local file system (lists show the same images again)."""
    if isinstance(storage, FileSystemStorage):
        return _local_file_url(storage.base_url, name, storage)
    return storage.url(name)


@functools.lru_cache(maxsize=50_000)
def _local_file_url(base_url: str, name: str, storage) -> str:
    return storage.url(name)


#: Attribute in which the product page's query (``views._product_row``) puts the primary image's file name.
PRIMARY_FILE = "catalog_primary_file"


class Product(models.Model):
    """A sellable product."""

    sku = models.CharField("SKU", max_length=64, unique=True)
    title = models.CharField(max_length=300)
    description = models.TextField(blank=True)
    category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.SET_NULL, related_name="products")
    price = models.DecimalField(
        max_digits=12, decimal_places=2, default=Decimal("0"), validators=[MinValueValidator(0)]
    )
    currency = models.CharField(max_length=3, default="EUR")
    stock = models.IntegerField(default=0)
    is_active = models.BooleanField(default=True, db_index=True)
    attributes = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ProductQuerySet.as_manager()

    class Meta:
        ordering = ["pk"]
        indexes = [models.Index(fields=["category", "is_active"])]

    def __str__(self) -> str:
        return f"{self.title} ({self.sku})"

    def get_absolute_url(self) -> str:
        return reverse_one("shop:product", "pk", self.pk)

    @property
    def primary_image(self) -> ProductImage | None:
        """The image shown in lists.

        Uses the file name a list query selected (``PRIMARY_FILE``) when present (no
        query: an unsaved image carrying only the file), else the prefetched images.
        """
        if PRIMARY_FILE in self.__dict__:
            name = self.__dict__[PRIMARY_FILE]
            return ProductImage(product_id=self.pk, file=name, is_primary=True) if name else None
        images = list(self.images.all())
        for image in images:
            if image.is_primary:
                return image
        return images[0] if images else None

    @property
    def primary_image_url(self) -> str | None:
        """URL of the primary image's file, or None (no image instance or query when it is annotated)."""
        if PRIMARY_FILE in self.__dict__:
            name = self.__dict__[PRIMARY_FILE]
            return file_url(ProductImage._meta.get_field("file").storage, name) if name else None
        image = self.primary_image
        return image.file.url if image and image.file else None

    @property
    def in_stock(self) -> bool:
        return self.stock > 0


def product_image_path(instance: ProductImage, filename: str) -> str:
    """Store images under products/<sha-prefix>/ so one folder never grows too large."""
    prefix = (instance.sha256 or "00")[:2]
    return f"products/{prefix}/{filename}"


class ProductImage(models.Model):
    """A product photo; visrec keeps its embedding state in its own table (``recommendations.ImageState``)."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="images")
    file = models.FileField(upload_to=product_image_path, max_length=500, blank=True)
    position = models.PositiveIntegerField(default=0)
    is_primary = models.BooleanField(default=False)
    # Facts about the file the shop keeps for itself (the importer skips unchanged files by checksum).
    sha256 = models.CharField(max_length=64, blank=True, db_index=True)
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    # Why an import could not store this image (no file then); the adapter reports it to visrec.
    import_error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["product", "position", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["product"], condition=models.Q(is_primary=True), name="catalog_one_primary_image"
            )
        ]

    def __str__(self) -> str:
        return f"image {self.pk} of {self.product_id}"
