"""Importing products and their images (matched by SKU and image checksum)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

from recommendations.conf import visrec_settings
from recommendations.ml.images import ImageRejected, load_image, probe
from recommendations.sync import sync_products

from ..models import Category, Product, ProductImage
from ..services import sha256_of
from .mapping import BoundMapping, ColumnMapping
from .reading import batched_unique, numbered, open_csv
from .report import ImportReport
from .targets import RowError
from .values import parse_bool, parse_currency, parse_int, parse_price

logger = logging.getLogger(__name__)


_PRODUCT_PARSERS: dict[str, Callable[[str], Any]] = {
    "price": parse_price,
    "stock": lambda text: parse_int(text, "stock"),
    "currency": parse_currency,
    "is_active": parse_bool,
}


_FIELD_TARGETS = ("title", "description", "category", "price", "currency", "stock", "is_active")


_TEXT_LIMITS = {
    "title": Product._meta.get_field("title").max_length,
    "category": Category._meta.get_field("name").max_length,
}


_SKU_LIMIT = Product._meta.get_field("sku").max_length

REFUSED_UPDATE = (
    "refused: a product with this SKU exists, and changing products needs the catalog.change_product permission"
)


@dataclass
class ProductRow:
    """One parsed product row.

    ``fields`` holds the values of the fields the file has columns for (written on
    create and update); ``create_only`` the defaults used for new products only.
    ``category`` is a name until :meth:`ProductImporter.resolve_categories` turns it
    into ``category_id``.
    """

    row: int
    sku: str
    fields: dict[str, Any]
    create_only: dict[str, Any]
    attributes: dict[str, str]
    image: str


def _convert(target: str, text: str, sku: str) -> Any:
    if target in _PRODUCT_PARSERS:
        return _PRODUCT_PARSERS[target](text) if text else Product._meta.get_field(target).get_default()
    if target == "title":
        return text[: _TEXT_LIMITS["title"]] or f"Item {sku}"
    if target == "category":
        return text[: _TEXT_LIMITS["category"]] or None
    return text


def parse_product(bound: BoundMapping, number: int, row: Mapping[str, str | None]) -> ProductRow:
    """Parse one products row; raises :class:`RowError` with the reason."""
    sku = bound.value(row, "sku")
    if not sku:
        raise RowError("sku is empty")
    if len(sku) > _SKU_LIMIT:
        raise RowError(f"sku is longer than {_SKU_LIMIT} characters")
    values: dict[str, Any] = {}
    create_only: dict[str, Any] = {}
    for target in _FIELD_TARGETS:
        if bound.has(target):
            values[target] = _convert(target, bound.value(row, target), sku)
        elif target in bound.defaults or target == "title":
            create_only[target] = _convert(target, bound.defaults.get(target, ""), sku)
    return ProductRow(number, sku, values, create_only, bound.attributes(row), bound.value(row, "image"))


class CategoryResolver:
    """Category names -> ids; unknown names become new categories with unique slugs.

    Names match case-insensitively. All categories are cached (a catalogue has few).
    """

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self._slugs: set[str] = set()
        for pk, name, slug in Category.objects.order_by("-pk").values_list("pk", "name", "slug"):
            self._ids[name.casefold()] = pk
            self._slugs.add(slug)
        self.created = 0

    def id_for(self, name: str | None) -> int | None:
        """The id of the category called ``name`` (created when new); ``None`` for no name."""
        if not name:
            return None
        key = name.casefold()
        if key not in self._ids:
            category = Category.objects.create(name=name, slug=self._unique_slug(name))
            self._ids[key] = category.pk
            self.created += 1
        return self._ids[key]

    def _unique_slug(self, name: str) -> str:
        base = (slugify(name) or "category")[:190]
        slug, n = base, 1
        while slug in self._slugs:
            n += 1
            slug = f"{base}-{n}"
        self._slugs.add(slug)
        return slug


@dataclass(frozen=True)
class ExistingImage:
    """What the importer needs to know about a stored image."""

    pk: int
    sha256: str
    is_primary: bool
    import_error: str
    file: str


@dataclass(frozen=True)
class ImageCheck:
    """The result of reading one image file: its checksum and either a stored file or an error."""

    sha256: str = ""
    width: int | None = None
    height: int | None = None
    error: str = ""
    stored: str = ""
    unchanged: bool = False


def resolve_image_path(root: Path, relative: str) -> Path:
    """``relative`` inside the resolved ``root``; rejects absolute paths and escapes."""
    if Path(relative).is_absolute() or relative.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", relative):
        raise RowError(f"absolute image paths are not allowed: {relative}")
    path = (root / relative).resolve()
    if not path.is_relative_to(root):
        raise RowError(f"image path escapes the images folder: {relative}")
    return path


class ProductImporter:
    """Creates and updates products and their primary images from a products CSV.

    Parameters
    ----------
    images_dir
        Folder that image paths in the file are relative to.
    report
        Collects counts and failures.
    batch_size
        Rows per database batch.
    decode
        Fully decode each new image (catches truncated files at import time);
        otherwise only its header is read.
    workers
        Threads reading, checking and storing image files.
    update_existing
        Whether rows may change products that exist (the admin's import sets it from the
        ``catalog.change_product`` permission); otherwise such rows fail as refused.
    """

    def __init__(
        self,
        images_dir: Path,
        report: ImportReport,
        *,
        batch_size: int = 500,
        decode: bool = True,
        workers: int = 2,
        update_existing: bool = True,
    ) -> None:
        self.update_existing = update_existing
        self.images_dir = Path(images_dir).resolve()
        self.report = report
        self.batch_size = batch_size
        self.decode = decode
        self.workers = max(workers, 1)
        self.categories = CategoryResolver()
        self.max_bytes = int(visrec_settings.MAX_IMAGE_BYTES)
        self.max_pixels = int(visrec_settings.MAX_IMAGE_PIXELS)
        self.file = ""

    def run(self, path: Path, mapping: ColumnMapping, progress: Callable[[int], None] | None = None) -> None:
        """Import every row of the products file at ``path``."""
        self.file = Path(path).name
        with open_csv(path, "products") as reader:
            bound = mapping.bind("products", reader.fieldnames or [])
            rows = self._parsed(bound, numbered(reader, progress, self._unreadable(bound)))
            with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="visrec-import") as pool:
                for batch in batched_unique(rows, self.batch_size, key=lambda r: r.sku):
                    self._import_batch(batch, pool)
        self.report.categories_created += self.categories.created

    def _unreadable(self, bound: BoundMapping) -> Callable[[int, dict | None, str], None]:
        def fail(number: int, row: dict | None, reason: str) -> None:
            self.report.products.failed += 1
            self.report.fail(self.file, number, bound.value(row, "sku")[:_SKU_LIMIT] if row else "", reason)

        return fail

    def _parsed(self, bound: BoundMapping, rows: Iterable[tuple[int, dict]]) -> Iterator[ProductRow]:
        for number, row in rows:
            try:
                yield parse_product(bound, number, row)
            except RowError as e:
                self.report.products.failed += 1
                self.report.fail(self.file, number, bound.value(row, "sku"), str(e))

    def _import_batch(self, rows: list[ProductRow], pool: ThreadPoolExecutor) -> None:
        self.resolve_categories(rows)
        existing = Product.objects.in_bulk([r.sku for r in rows], field_name="sku")
        if existing and not self.update_existing:
            rows, existing = self._refuse_updates(rows, existing), {}
        images = self._existing_images([p.pk for p in existing.values()])
        checks = self._check_images(rows, existing, images, pool)
        with transaction.atomic():
            created = self._create_products([r for r in rows if r.sku not in existing])
            updated = self._update_products([r for r in rows if r.sku in existing], existing)
            products = {**existing, **created}
            touched = self._write_images(rows, products, images, checks)
            changed_pks = [products[sku].pk for sku in (updated | touched | created.keys())]
            self.report.new_image_ids.extend(sync_products(changed_pks, embed=False).queued)  # visrec's copy
        self.report.products.created += len(created)
        changed = (updated | touched) - created.keys()
        self.report.products.updated += len(changed)
        self.report.products.skipped += len(rows) - len(created) - len(changed)

    def _refuse_updates(self, rows: list[ProductRow], existing: dict[str, Product]) -> list[ProductRow]:
        """Fail the rows of products that exist (an import that may only create); the others go on."""
        for row in rows:
            if row.sku in existing:
                self.report.products.failed += 1
                self.report.fail(self.file, row.row, row.sku, REFUSED_UPDATE)
        return [row for row in rows if row.sku not in existing]

    def resolve_categories(self, rows: list[ProductRow]) -> None:
        """Replace category names by ids (creating new categories)."""
        for row in rows:
            for values in (row.fields, row.create_only):
                if "category" in values:
                    values["category_id"] = self.categories.id_for(values.pop("category"))

    def _existing_images(self, product_ids: list[int]) -> dict[int, list[ExistingImage]]:
        images: dict[int, list[ExistingImage]] = {}
        fields = ("product_id", "pk", "sha256", "is_primary", "import_error", "file")
        for product_id, *values in ProductImage.objects.filter(product_id__in=product_ids).values_list(*fields):
            images.setdefault(product_id, []).append(ExistingImage(*values))
        return images

    def _check_images(
        self,
        rows: list[ProductRow],
        existing: dict[str, Product],
        images: dict[int, list[ExistingImage]],
        pool: ThreadPoolExecutor,
    ) -> dict[str, ImageCheck]:
        jobs = {}
        for row in rows:
            if row.image:
                product = existing.get(row.sku)
                known = (
                    frozenset(im.sha256 for im in images.get(product.pk, ()) if im.sha256) if product else frozenset()
                )
                jobs[row.sku] = pool.submit(self.check_image, row.image, known)
        return {sku: job.result() for sku, job in jobs.items()}

    def check_image(self, relative: str, known: frozenset[str]) -> ImageCheck:
        """Read, checksum and validate one image file; store it when it is new and valid."""
        try:
            path = resolve_image_path(self.images_dir, relative)
            size = path.stat().st_size
        except RowError as e:
            return ImageCheck(error=str(e))
        except OSError:
            return ImageCheck(error=f"image file not found: {relative}")
        if not path.is_file():
            return ImageCheck(error=f"image path is not a file: {relative}")
        if size > self.max_bytes:
            return ImageCheck(error=f"image file is larger than {self.max_bytes} bytes: {relative}")
        try:
            data = path.read_bytes()
        except OSError as e:
            return ImageCheck(error=f"image file cannot be read: {relative}: {e.strerror or e}")
        sha = sha256_of(data)
        if sha in known:
            return ImageCheck(sha256=sha, unchanged=True)
        try:
            info = probe(data, self.max_pixels)
            if self.decode:
                load_image(data, self.max_pixels)
        except ImageRejected as e:
            return ImageCheck(sha256=sha, error=f"image rejected: {relative}: {e}")
        image = ProductImage(sha256=sha)
        image.file.save(path.name, ContentFile(data), save=False)
        return ImageCheck(sha256=sha, width=info.width, height=info.height, stored=image.file.name)

    def _create_products(self, rows: list[ProductRow]) -> dict[str, Product]:
        products = [Product(sku=r.sku, attributes=r.attributes, **r.create_only, **r.fields) for r in rows]
        Product.objects.bulk_create(products)
        return {p.sku: p for p in products}

    def _update_products(self, rows: list[ProductRow], existing: dict[str, Product]) -> set[str]:
        changed: dict[str, Product] = {}
        fields: set[str] = set()
        for row in rows:
            product = existing[row.sku]
            values = {**row.fields, "attributes": {**product.attributes, **row.attributes}}
            diff = {name for name, value in values.items() if getattr(product, name) != value}
            for name in diff:
                setattr(product, name, values[name])
            if diff:
                changed[row.sku] = product
                fields |= diff
        if changed:
            now = timezone.now()
            for product in changed.values():
                product.updated_at = now
            Product.objects.bulk_update(list(changed.values()), sorted(fields | {"updated_at"}))
        return set(changed)

    def _write_images(
        self,
        rows: list[ProductRow],
        products: dict[str, Product],
        images: dict[int, list[ExistingImage]],
        checks: dict[str, ImageCheck],
    ) -> set[str]:
        new: list[ProductImage] = []
        replaced: list[ExistingImage] = []
        touched: set[str] = set()
        for row in rows:
            if not row.image:
                continue
            product = products[row.sku]
            current = images.get(product.pk, [])
            image, old = self._image_change(row, product, current, checks[row.sku])
            if image is not None:
                new.append(image)
                touched.add(row.sku)
                if old is not None:
                    replaced.append(old)
        if replaced:
            ProductImage.objects.filter(pk__in=[im.pk for im in replaced]).delete()
            names = [im.file for im in replaced if im.file]
            transaction.on_commit(lambda: _delete_files(names))
        ProductImage.objects.bulk_create(new)
        return touched

    def _image_change(
        self, row: ProductRow, product: Product, current: list[ExistingImage], check: ImageCheck
    ) -> tuple[ProductImage | None, ExistingImage | None]:
        """The image row to create for ``row`` (if any) and the primary image it replaces."""
        counts = self.report.images
        primary = next((im for im in current if im.is_primary), None)
        if check.unchanged:
            same = next(im for im in current if im.sha256 == check.sha256)
            if same.import_error:
                counts.failed += 1
                self.report.fail(self.file, row.row, row.sku, same.import_error)
            else:
                counts.unchanged += 1
            return None, None
        if check.error:
            counts.failed += 1
            self.report.fail(self.file, row.row, row.sku, check.error)
            keep = primary is not None and not primary.import_error
            if keep or (current and primary is None):
                return None, None
            if primary is not None and (primary.sha256, primary.import_error) == (check.sha256, check.error):
                return None, None
            failed = ProductImage(product=product, sha256=check.sha256, is_primary=True, import_error=check.error)
            return failed, primary
        counts.stored += 1
        counts.replaced += primary is not None
        image = ProductImage(
            product=product, sha256=check.sha256, is_primary=True, width=check.width, height=check.height
        )
        image.file.name = check.stored
        return image, primary


def _delete_files(names: list[str]) -> None:
    for name in names:
        try:
            default_storage.delete(name)
        except OSError as e:
            logger.warning("could not delete replaced image file %s: %s", name, e)
