"""Bulk import of products, images and interactions from CSV files.

The importer streams each CSV row by row and writes in batches (``bulk_create`` /
``bulk_update``), so memory does not grow with the file. It is idempotent: products
are matched by SKU, images by the SHA-256 of their bytes, interactions by their
content (user, product, kind, value, time), so importing the same files twice
changes nothing the second time. Every problem is reported with its file and row
number (the header is row 1, as in a spreadsheet); one bad row never stops a run.

The column format is documented in ``docs/import-format.md``.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import logging
import math
import os
import re
import string
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Count, Max
from django.utils import timezone
from django.utils.text import slugify

from recommendations.conf import visrec_settings
from recommendations.ml.images import ImageRejected, load_image, probe
from recommendations.models import Interaction
from recommendations.sync import sync_products

from .models import Category, Product, ProductImage
from .services import sha256_of

logger = logging.getLogger(__name__)

PRODUCT_TARGETS = ("sku", "title", "description", "category", "price", "currency", "stock", "is_active", "image")
INTERACTION_TARGETS = ("user", "sku", "kind", "value", "timestamp")
TARGETS = {"products": PRODUCT_TARGETS, "interactions": INTERACTION_TARGETS}

#: Column mappings shipped with visrec (``--preset NAME``).
PRESETS: dict[str, dict[str, Any]] = {
    # H&M Personalized Fashion Recommendations (the sample in ../shared/datasets/hm).
    "hm": {
        "products": {
            "sku": "item_id",
            "image": "image_path",
            "title": ["title", "{colour_group_name} {product_type_name}"],
            "category": ["category", "product_type_name"],
            "description": "detail_desc",
        },
        "interactions": {"user": "user_id", "sku": "item_id"},
        # The dataset has no stock levels (nor prices): new products get 100 in stock so
        # they are recommendable; price stays 0 (the purchases' price is normalised).
        "defaults": {"category": "Uncategorised", "stock": "100"},
    },
}

EXTERNAL_USER_PREFIX = "ext-"
_USERNAME_SAFE = re.compile(r"[\w.@+-]+")
_UNIX_SECONDS = re.compile(r"[+-]?\d+(\.\d*)?")
_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off"}
_CENT = Decimal("0.01")
_MAX_PRICE = Decimal("9999999999.99")


class ImportConfigError(ValueError):
    """The files or the column mapping cannot be imported at all (nothing was written)."""


class RowError(ValueError):
    """One row cannot be imported; the message is the reason shown to the shop owner."""


# --------------------------------------------------------------------------- mapping


@dataclass(frozen=True)
class Source:
    """One place a value is read from: a column, or a ``{column}`` template."""

    text: str

    @property
    def is_template(self) -> bool:
        """Whether the source is a template such as ``"{colour} {type}"``."""
        return "{" in self.text

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns this source reads."""
        if not self.is_template:
            return (self.text,)
        return tuple(name for _, name, _, _ in string.Formatter().parse(self.text) if name)

    def read(self, row: Mapping[str, str | None]) -> str:
        """The value for ``row``; empty when every column it reads is empty."""
        if not self.is_template:
            return (row.get(self.text) or "").strip()
        values = {name: (row.get(name) or "").strip() for name in self.columns}
        if not any(values.values()):
            return ""
        return " ".join(self.text.format_map(values).split())


def _sources(value: str | Sequence[str]) -> tuple[Source, ...]:
    items = [value] if isinstance(value, str) else list(value)
    if not items or not all(isinstance(item, str) and item for item in items):
        raise ImportConfigError(f"a mapping source must be a column name or a list of them, not {value!r}")
    sources = tuple(Source(item) for item in items)
    for source in sources:
        try:
            valid = not source.is_template or (source.columns and "{}" not in source.text)
        except ValueError:
            valid = False
        if not valid or any(name.isdigit() for name in source.columns):
            raise ImportConfigError(f"bad template {source.text!r}: use column names in braces, e.g. '{{title}}'")
    return sources


@dataclass(frozen=True)
class ColumnMapping:
    """Where each canonical field is read from, per file, plus defaults for products.

    Parameters
    ----------
    products, interactions
        Canonical field -> sources tried in order (first non-empty value wins). A
        field that is not mapped is read from the column of its own name.
    defaults
        Product field -> value used when a cell is empty, and for new products when
        the file has no column for the field.
    """

    products: Mapping[str, tuple[Source, ...]] = field(default_factory=dict)
    interactions: Mapping[str, tuple[Source, ...]] = field(default_factory=dict)
    defaults: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ColumnMapping:
        """Build from ``{"products": {...}, "interactions": {...}, "defaults": {...}}``.

        Top-level ``target: source`` entries apply to every file that has the target
        (``{"sku": "item_id"}`` maps the SKU column of both files).
        """
        if not isinstance(data, Mapping):
            raise ImportConfigError("a column mapping must be a JSON object")
        sections: dict[str, dict[str, tuple[Source, ...]]] = {"products": {}, "interactions": {}}
        for key, value in data.items():
            if key not in (*sections, "defaults"):
                _check_target(key)
                for kind, targets in TARGETS.items():
                    if key in targets:
                        sections[kind][key] = _sources(value)
        for kind in sections:
            sections[kind].update(_section(kind, data.get(kind, {})))
        defaults = data.get("defaults", {})
        if not isinstance(defaults, Mapping) or any(k not in PRODUCT_TARGETS for k in defaults):
            raise ImportConfigError(f"'defaults' must map product fields ({', '.join(PRODUCT_TARGETS)}) to values")
        return cls(sections["products"], sections["interactions"], {k: str(v) for k, v in defaults.items()})

    @classmethod
    def from_options(cls, options: Iterable[str]) -> ColumnMapping:
        """Build from ``--column`` options: ``target=source`` or ``products.target=source``.

        Repeating a target adds fallbacks: ``--column title=name --column title=label``.
        """
        data: dict[str, dict[str, list[str]]] = {}
        for option in options:
            target, sep, source = option.partition("=")
            if not sep or not target.strip() or not source.strip():
                raise ImportConfigError(f"--column expects target=source, got {option!r}")
            kind, dot, name = target.strip().rpartition(".")
            if dot and kind not in TARGETS:
                raise ImportConfigError(f"--column {option!r}: the file kind must be 'products' or 'interactions'")
            data.setdefault(kind if dot else "", {}).setdefault(name, []).append(source.strip())
        flat = data.pop("", {})
        return cls.from_dict({**flat, **data})

    def merged(self, other: ColumnMapping) -> ColumnMapping:
        """Combine with ``other``, whose entries take precedence."""
        return ColumnMapping(
            {**self.products, **other.products},
            {**self.interactions, **other.interactions},
            {**self.defaults, **other.defaults},
        )

    def bind(self, kind: str, header: Sequence[str]) -> BoundMapping:
        """Resolve the mapping against a file's header (raises on a missing column)."""
        configured = self.products if kind == "products" else self.interactions
        available = set(header)
        sources: dict[str, tuple[Source, ...]] = {}
        for target in TARGETS[kind]:
            wanted = configured.get(target, (Source(target),))
            usable = tuple(s for s in wanted if any(c in available for c in s.columns))
            if usable:
                sources[target] = usable
            elif target in configured:
                names = ", ".join(repr(s.text) for s in wanted)
                raise ImportConfigError(f"the {kind} file has no column {names} (mapped to {target!r})")
        if "sku" not in sources or (kind == "interactions" and "user" not in sources):
            required = "sku" if "sku" not in sources else "user"
            raise ImportConfigError(
                f"the {kind} file has no {required!r} column; map one with --column {required}=COLUMN "
                f"(its columns: {', '.join(header)})"
            )
        used = {s.text for group in sources.values() for s in group if not s.is_template}
        extras = tuple(c for c in header if c and c not in used)
        defaults = self.defaults if kind == "products" else {}
        return BoundMapping(kind, sources, extras, dict(defaults))


def _check_target(target: str) -> None:
    if target not in PRODUCT_TARGETS and target not in INTERACTION_TARGETS:
        known = sorted(set(PRODUCT_TARGETS) | set(INTERACTION_TARGETS))
        raise ImportConfigError(f"unknown field {target!r} in the column mapping (known: {', '.join(known)})")


def _section(kind: str, value: Any) -> dict[str, tuple[Source, ...]]:
    if not isinstance(value, Mapping):
        raise ImportConfigError(f"'{kind}' must map fields to columns")
    for target in value:
        if target not in TARGETS[kind]:
            raise ImportConfigError(f"unknown {kind} field {target!r} (known: {', '.join(TARGETS[kind])})")
    return {target: _sources(source) for target, source in value.items()}


def build_mapping(
    preset: str | None = None, mapping_file: Path | None = None, columns: Iterable[str] = ()
) -> ColumnMapping:
    """Combine a preset, a JSON mapping file and ``--column`` options (later ones win)."""
    mapping = ColumnMapping()
    if preset:
        if preset not in PRESETS:
            raise ImportConfigError(f"unknown preset {preset!r} (known: {', '.join(sorted(PRESETS))})")
        mapping = mapping.merged(ColumnMapping.from_dict(PRESETS[preset]))
    if mapping_file:
        try:
            data = json.loads(Path(mapping_file).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise ImportConfigError(f"cannot read the mapping file {mapping_file}: {e}") from e
        mapping = mapping.merged(ColumnMapping.from_dict(data))
    return mapping.merged(ColumnMapping.from_options(columns))


@dataclass(frozen=True)
class BoundMapping:
    """A mapping resolved against one file's header."""

    kind: str
    sources: Mapping[str, tuple[Source, ...]]
    extras: tuple[str, ...]
    defaults: Mapping[str, str]

    def has(self, target: str) -> bool:
        """Whether the file has a column for ``target``."""
        return target in self.sources

    def value(self, row: Mapping[str, str | None], target: str) -> str:
        """The first non-empty source value, else the default, else ``""``."""
        for source in self.sources.get(target, ()):
            value = source.read(row)
            if value:
                return value
        return self.defaults.get(target, "")

    def attributes(self, row: Mapping[str, str | None]) -> dict[str, str]:
        """The non-empty values of the columns no field is read from."""
        return {name: value.strip() for name in self.extras if (value := row.get(name) or "").strip()}


# --------------------------------------------------------------------------- report


@dataclass
class Counts:
    """Outcome of the rows of one file."""

    created: int = 0
    updated: int = 0
    skipped: int = 0
    failed: int = 0


@dataclass
class ImageCounts:
    """Outcome of the images named by the products file."""

    stored: int = 0
    replaced: int = 0
    unchanged: int = 0
    failed: int = 0


@dataclass(frozen=True)
class Failure:
    """One problem with one row."""

    file: str
    row: int
    sku: str
    reason: str

    def __str__(self) -> str:
        sku = f" (sku {self.sku})" if self.sku else ""
        return f"{self.file} row {self.row}{sku}: {self.reason}"


@dataclass
class ImportReport:
    """Counts and problems of one import; keeps only the first ``keep`` failures.

    Every failure is also passed to ``sink`` (e.g. a CSV writer) as it happens, so
    memory does not grow with the number of failures.
    """

    products: Counts = field(default_factory=Counts)
    images: ImageCounts = field(default_factory=ImageCounts)
    interactions: Counts = field(default_factory=Counts)
    users_created: int = 0
    categories_created: int = 0
    failures: list[Failure] = field(default_factory=list)
    failure_count: int = 0
    new_image_ids: list[int] = field(default_factory=list)  # visrec's ImageState ids to embed
    keep: int = 20
    sink: Callable[[Failure], None] | None = None

    def fail(self, file: str, row: int, sku: str, reason: str) -> None:
        """Record a problem with ``row`` of ``file``."""
        failure = Failure(file, row, sku, reason)
        self.failure_count += 1
        if len(self.failures) < self.keep:
            self.failures.append(failure)
        if self.sink is not None:
            self.sink(failure)


def failure_writer(stream: IO[str]) -> Callable[[Failure], None]:
    """A report sink writing ``file,row,sku,reason`` CSV lines to ``stream``."""
    writer = csv.writer(stream)
    writer.writerow(["file", "row", "sku", "reason"])

    def write(failure: Failure) -> None:
        writer.writerow([failure.file, failure.row, failure.sku, failure.reason])

    return write


# --------------------------------------------------------------------------- reading


@contextmanager
def open_csv(path: Path, kind: str) -> Iterator[csv.DictReader]:
    """Open a UTF-8 CSV (a byte-order mark is ignored) and check it has a header."""
    try:
        stream = Path(path).open(newline="", encoding="utf-8-sig")
    except OSError as e:
        raise ImportConfigError(f"cannot open the {kind} file {path}: {e}") from e
    with stream:
        reader = csv.DictReader(stream)
        if not reader.fieldnames:
            raise ImportConfigError(f"the {kind} file {path} is empty (a header row is required)")
        yield reader


def count_rows(path: Path) -> int:
    """Roughly how many data rows ``path`` holds (for the progress bar), read in 1 MiB chunks."""
    with Path(path).open("rb") as f:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    return max(lines - 1, 0)


def numbered(reader: Iterable[dict], progress: Callable[[int], None] | None = None) -> Iterator[tuple[int, dict]]:
    """Rows with their spreadsheet row number (the header is row 1)."""
    for number, row in enumerate(reader, start=2):
        yield number, row
        if progress is not None:
            progress(1)


def batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of at most ``size`` items."""
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def batched_unique(rows: Iterable[Any], size: int, key: Callable[[Any], str]) -> Iterator[list[Any]]:
    """Batches of at most ``size`` items; a batch ends early rather than hold a key twice."""
    batch: list[Any] = []
    keys: set[str] = set()
    for item in rows:
        if len(batch) >= size or key(item) in keys:
            yield batch
            batch, keys = [], set()
        batch.append(item)
        keys.add(key(item))
    if batch:
        yield batch


# --------------------------------------------------------------------------- values


def parse_price(text: str) -> Decimal:
    """A non-negative amount rounded to cents."""
    try:
        price = Decimal(text.replace(" ", ""))
    except InvalidOperation:
        raise RowError(f"price {text!r} is not a number") from None
    if not price.is_finite() or price < 0 or price > _MAX_PRICE:
        raise RowError(f"price {text!r} must be between 0 and {_MAX_PRICE}")
    return price.quantize(_CENT)


def parse_int(text: str, name: str) -> int:
    """An integer such as ``12`` (``12.0`` is accepted too)."""
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise RowError(f"{name} {text!r} is not a whole number") from None
    if not number.is_finite() or number != number.to_integral_value() or abs(number) >= 2**31:
        raise RowError(f"{name} {text!r} is not a whole number")
    return int(number)


def parse_bool(text: str) -> bool:
    """``1/0``, ``true/false``, ``yes/no``, ``y/n``, ``on/off`` (any case)."""
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise RowError(f"is_active {text!r} is not a yes/no value")


def parse_currency(text: str) -> str:
    """A three-letter ISO 4217 code, upper-cased."""
    code = text.strip().upper()
    if len(code) != 3 or not code.isalpha():
        raise RowError(f"currency {text!r} is not a three-letter code")
    return code


def parse_timestamp(text: str) -> datetime:
    """An aware UTC datetime from ISO 8601 (date or datetime) or unix seconds.

    Naive ISO values are taken as UTC; a bare date means midnight UTC.
    """
    value = text.strip()
    if not value:
        raise RowError("timestamp is empty")
    try:
        if _UNIX_SECONDS.fullmatch(value):
            return datetime.fromtimestamp(float(value), tz=UTC)
        moment = datetime.fromisoformat(value)
    except (ValueError, OverflowError, OSError):
        raise RowError(f"timestamp {text!r} is neither ISO 8601 nor unix seconds") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def external_username(external_id: str) -> str:
    """The username of an imported shopper: ``ext-<id>``, hashed when too long or unusual."""
    if len(external_id) <= 150 - len(EXTERNAL_USER_PREFIX) and _USERNAME_SAFE.fullmatch(external_id):
        return f"{EXTERNAL_USER_PREFIX}{external_id}"
    readable = re.sub(r"[^\w.@+-]", "_", external_id)[:60]
    digest = hashlib.sha256(external_id.encode("utf-8")).hexdigest()[:40]
    return f"{EXTERNAL_USER_PREFIX}{readable}-{digest}"


# --------------------------------------------------------------------------- products

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
    """

    def __init__(
        self, images_dir: Path, report: ImportReport, *, batch_size: int = 500, decode: bool = True, workers: int = 2
    ) -> None:
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
            rows = self._parsed(bound, numbered(reader, progress))
            with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="visrec-import") as pool:
                for batch in batched_unique(rows, self.batch_size, key=lambda r: r.sku):
                    self._import_batch(batch, pool)
        self.report.categories_created += self.categories.created

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


# --------------------------------------------------------------------------- interactions


@dataclass(frozen=True)
class InteractionRow:
    """One parsed interactions row."""

    row: int
    user: str
    sku: str
    kind: str
    value: float
    created_at: datetime


_KINDS = frozenset(Interaction.Kind.values)


def parse_interaction(bound: BoundMapping, number: int, row: Mapping[str, str | None]) -> InteractionRow:
    """Parse one interactions row; raises :class:`RowError` with the reason."""
    user, sku = bound.value(row, "user"), bound.value(row, "sku")
    if not user:
        raise RowError("user is empty")
    if not sku:
        raise RowError("sku is empty")
    kind = (bound.value(row, "kind") or Interaction.Kind.PURCHASE).strip().lower()
    if kind not in _KINDS:
        raise RowError(f"kind {kind!r} is not one of {', '.join(sorted(_KINDS))}")
    text = bound.value(row, "value") or "1"
    try:
        value = float(text)
    except ValueError:
        raise RowError(f"value {text!r} is not a number") from None
    if not math.isfinite(value):
        raise RowError(f"value {text!r} is not a finite number")
    return InteractionRow(number, user, sku, kind, value, parse_timestamp(bound.value(row, "timestamp")))


InteractionKey = tuple[int, int, str, float, datetime]


class InteractionImporter:
    """Adds shopper interactions from an interactions CSV, creating shoppers as needed.

    A row is skipped when an identical interaction (same user, product, kind, value
    and time) was stored before this run; the n-th identical row of the file matches
    the n-th identical stored interaction, so repeat purchases are kept. Only keys
    that already existed are counted in memory, so a first import keeps no state.
    """

    def __init__(self, report: ImportReport, *, batch_size: int = 500) -> None:
        self.report = report
        self.batch_size = batch_size
        self.user_model = get_user_model()
        self.file = ""
        self.before_pk = 0
        self.seen: Counter[InteractionKey] = Counter()

    def run(self, path: Path, mapping: ColumnMapping, progress: Callable[[int], None] | None = None) -> None:
        """Import every row of the interactions file at ``path``."""
        self.file = Path(path).name
        self.before_pk = Interaction.objects.aggregate(last=Max("pk"))["last"] or 0
        with open_csv(path, "interactions") as reader:
            bound = mapping.bind("interactions", reader.fieldnames or [])
            rows = self._parsed(bound, numbered(reader, progress))
            for batch in batched(rows, self.batch_size):
                self._import_batch(batch)

    def _parsed(self, bound: BoundMapping, rows: Iterable[tuple[int, dict]]) -> Iterator[InteractionRow]:
        for number, row in rows:
            try:
                yield parse_interaction(bound, number, row)
            except RowError as e:
                self.report.interactions.failed += 1
                self.report.fail(self.file, number, bound.value(row, "sku"), str(e))

    def _import_batch(self, rows: list[InteractionRow]) -> None:
        products = dict(Product.objects.filter(sku__in={r.sku for r in rows}).values_list("sku", "pk"))
        known = []
        for row in rows:
            if row.sku in products:
                known.append(row)
            else:
                self.report.interactions.failed += 1
                self.report.fail(self.file, row.row, row.sku, f"unknown product sku {row.sku!r}")
        users = self._users({r.user for r in known})
        keyed = [(r, (users[r.user], products[r.sku], r.kind, r.value, r.created_at)) for r in known]
        stored = self._stored_before({k for _, k in keyed})
        new = [
            Interaction(user_id=k[0], product_id=k[1], kind=k[2], value=k[3], created_at=k[4], source="import")
            for _, k in keyed
            if not self._already_stored(k, stored)
        ]
        Interaction.objects.bulk_create(new)
        self.report.interactions.created += len(new)
        self.report.interactions.skipped += len(keyed) - len(new)

    def _users(self, external_ids: set[str]) -> dict[str, int]:
        """External id -> user pk; missing shoppers are created with unusable passwords."""
        field = self.user_model.USERNAME_FIELD
        names = {external_username(e): e for e in external_ids}
        found = dict(self.user_model._default_manager.filter(**{f"{field}__in": names}).values_list(field, "pk"))
        missing = [n for n in names if n not in found]
        if missing:
            self.user_model._default_manager.bulk_create(
                [self.user_model(**{field: n}, password=make_password(None)) for n in missing], ignore_conflicts=True
            )
            self.report.users_created += len(missing)
            found.update(self.user_model._default_manager.filter(**{f"{field}__in": missing}).values_list(field, "pk"))
        return {external: found[name] for name, external in names.items()}

    def _stored_before(self, keys: set[InteractionKey]) -> Counter[InteractionKey]:
        if not keys or not self.before_pk:
            return Counter()
        rows = (
            Interaction.objects.filter(
                pk__lte=self.before_pk, user_id__in={k[0] for k in keys}, product_id__in={k[1] for k in keys}
            )
            .values_list("user_id", "product_id", "kind", "value", "created_at")
            .annotate(n=Count("pk"))
            .order_by()
        )
        stored: Counter[InteractionKey] = Counter()
        for user_id, product_id, kind, value, created_at, n in rows:
            key = (user_id, product_id, kind, value, created_at)
            if key in keys:
                stored[key] = n
        return stored

    def _already_stored(self, key: InteractionKey, stored: Counter[InteractionKey]) -> bool:
        if not stored[key]:
            return False
        self.seen[key] += 1
        return self.seen[key] <= stored[key]


# --------------------------------------------------------------------------- entry point

ProgressFactory = Callable[[str, Path], AbstractContextManager[Callable[[int], Any]]]


@dataclass
class ImportOptions:
    """What to import and how (the command's options)."""

    products: Path | None = None
    interactions: Path | None = None
    images_dir: Path | None = None
    mapping: ColumnMapping = field(default_factory=ColumnMapping)
    batch_size: int = 500
    decode: bool = True
    workers: int = field(default_factory=lambda: min(os.cpu_count() or 1, 8))


def run_import(options: ImportOptions, report: ImportReport, progress: ProgressFactory | None = None) -> ImportReport:
    """Import the products file, then the interactions file, into ``report``.

    ``progress(kind, path)`` may give a context manager yielding a callback that is
    advanced by one per row read (a progress bar).
    """
    if options.products is None and options.interactions is None:
        raise ImportConfigError("nothing to import: give a products file, an interactions file or both")
    if options.products is not None:
        images_dir = options.images_dir or Path(options.products).parent
        if not Path(images_dir).is_dir():
            raise ImportConfigError(f"the images folder {images_dir} does not exist")
        importer = ProductImporter(
            images_dir, report, batch_size=options.batch_size, decode=options.decode, workers=options.workers
        )
        with _progress(progress, "products", options.products) as advance:
            importer.run(options.products, options.mapping, advance)
    if options.interactions is not None:
        importer = InteractionImporter(report, batch_size=options.batch_size)
        with _progress(progress, "interactions", options.interactions) as advance:
            importer.run(options.interactions, options.mapping, advance)
    return report


def _progress(
    factory: ProgressFactory | None, kind: str, path: Path
) -> AbstractContextManager[Callable[[int], Any] | None]:
    return factory(kind, path) if factory is not None else nullcontext()
