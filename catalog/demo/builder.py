"""Write the demo catalogue into the database: categories, products, photos, shoppers.

The only part of :mod:`catalog.demo` that touches Django. Rows are bulk-created
(no ``post_save`` signals, so nothing is embedded here: ``visrec_embed --missing``
does that afterwards) inside one transaction; photos go through the storage of
``ProductImage.file``. A marker ``<VAR_DIR>/demo/params.json`` records what was
built, so a second build with the same parameters is skipped, and the shoppers'
hidden tastes are saved to ``<VAR_DIR>/demo/tastes.json`` for later evaluation.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.files.base import ContentFile
from django.db import transaction
from django.db.models import QuerySet
from django.utils.text import slugify
from tqdm import tqdm

from recommendations.models import Interaction
from recommendations.sync import sync_products

from ..models import Category, Product, ProductImage
from ..services import sha256_of
from .drawing import SIZE, ImageSpec, draw_product
from .simulation import SKU_PREFIX, Event, ProductPlan, category_name, plan_catalog, simulate_shoppers

logger = logging.getLogger(__name__)

#: Bump when the generator changes so an older demo catalogue is not taken as loaded.
GENERATOR_VERSION = 1
USERNAME_PREFIX = "shopper-"
BATCH_SIZE = 2000
_POOL_THRESHOLD = 200  # fewer images than this are drawn in-process


@dataclass(frozen=True)
class DemoParams:
    """What to build: catalogue size, number of shoppers and the seed."""

    products: int = 1500
    users: int = 400
    seed: int = 7

    def marker(self) -> dict[str, int]:
        """The content of ``params.json`` for these parameters."""
        return {**asdict(self), "version": GENERATOR_VERSION}


@dataclass(frozen=True)
class DemoResult:
    """Counts of what a build created and the hidden tastes it saved."""

    products: int
    images: int
    users: int
    interactions: int
    seconds: float
    tastes: dict = field(repr=False)


# --- queries and markers -------------------------------------------------------------


def demo_dir() -> Path:
    """Folder of the demo's marker and tastes files (read from settings at call time)."""
    return Path(settings.VAR_DIR) / "demo"


def demo_products() -> QuerySet[Product]:
    """Products of the demo catalogue (sku prefix ``DEMO-``)."""
    return Product.objects.filter(sku__startswith=SKU_PREFIX)


def demo_users() -> QuerySet:
    """The simulated shoppers (usernames ``shopper-*``)."""
    user_model = get_user_model()
    return user_model._default_manager.filter(**{f"{user_model.USERNAME_FIELD}__startswith": USERNAME_PREFIX})


def has_demo_data() -> bool:
    """Whether any demo product or shopper exists."""
    return demo_products().exists() or demo_users().exists()


def is_loaded(params: DemoParams) -> bool:
    """Whether the demo catalogue for exactly ``params`` is already in the database."""
    try:
        marker = json.loads((demo_dir() / "params.json").read_text())
    except (OSError, ValueError):
        return False
    return (
        marker == params.marker()
        and demo_products().count() == params.products
        and demo_users().count() == params.users
    )


def _write_json(name: str, payload: dict) -> Path:
    path = demo_dir() / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, sort_keys=True))
    return path


# --- deleting ------------------------------------------------------------------------


def delete_demo() -> dict[str, int]:
    """Delete demo products (with their photos and interactions) and the shoppers.

    Returns
    -------
    dict
        Number of demo products and shoppers deleted.
    """
    (demo_dir() / "params.json").unlink(missing_ok=True)
    images = ProductImage.objects.filter(product__in=demo_products()).exclude(file="")
    names = list(images.values_list("file", flat=True))
    with transaction.atomic():
        counts = {"products": demo_products().count(), "users": demo_users().count()}
        rows = demo_products().delete()[0] + demo_users().delete()[0]
    storage = ProductImage._meta.get_field("file").storage
    for name in names:
        storage.delete(name)
    logger.info("deleted demo catalogue: %s (%d rows with images and interactions)", counts, rows)
    return counts


# --- drawing -------------------------------------------------------------------------


def draw_images(specs: list[ImageSpec], *, workers: int | None = None, progress: bool = False) -> list[bytes]:
    """Draw every photo, in ``workers`` processes for large catalogues.

    Parameters
    ----------
    specs
        What to draw, in order.
    workers
        Number of drawing processes; by default up to 2 when there are at least
        a couple of hundred images, else drawing runs in this process.
    progress
        Show a progress bar (on stderr).

    Returns
    -------
    list of bytes
        JPEG bytes in the order of ``specs`` (identical whatever ``workers`` is).
    """
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if len(specs) >= _POOL_THRESHOLD else 1
    bar = {"total": len(specs), "desc": "drawing photos", "unit": "img", "disable": not progress}
    if workers <= 1:
        return list(tqdm(map(draw_product, specs), **bar))
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return list(tqdm(pool.imap(draw_product, specs, chunksize=16), **bar))


# --- building ------------------------------------------------------------------------


def build_demo(params: DemoParams, *, workers: int | None = None, progress: bool = False) -> DemoResult:
    """Plan, draw and simulate the demo catalogue and write it into the database.

    Call :func:`delete_demo` first if demo data exists: skus and usernames are unique.

    Parameters
    ----------
    params
        Catalogue size, number of shoppers and seed; the same parameters always
        give the same products, photo bytes, tastes and interactions.
    workers
        Drawing processes (see :func:`draw_images`).
    progress
        Show a progress bar while drawing.

    Returns
    -------
    DemoResult
        Counts, elapsed seconds and the hidden tastes (also written to
        ``<VAR_DIR>/demo/tastes.json``).
    """
    started = time.perf_counter()
    plans = plan_catalog(params.products, params.seed)
    simulation = simulate_shoppers(plans, params.users, params.seed)
    photos = draw_images([plan.image for plan in plans], workers=workers, progress=progress)
    usernames = [f"{USERNAME_PREFIX}{i + 1:04d}" for i in range(params.users)]
    with transaction.atomic():
        products = _create_products(plans)
        images = _create_images(products, photos)
        users = _create_users(usernames)
        interactions = _create_interactions(simulation.events, products, users)
        sync_products([p.pk for p in products], embed=False)  # visrec's copy (bulk writes send no signals)
    tastes = {"seed": params.seed, "users": dict(zip(usernames, simulation.tastes, strict=True))}
    _write_json("tastes.json", tastes)
    _write_json("params.json", params.marker())
    result = DemoResult(len(products), images, len(users), interactions, time.perf_counter() - started, tastes)
    logger.info("built demo catalogue: %s", result)
    return result


def _categories(plans: Iterable[ProductPlan]) -> dict[str, Category]:
    """One category per product type (reused when it already exists)."""
    categories = {}
    for product_type in sorted({plan.image.type for plan in plans}):
        name = category_name(product_type)
        categories[product_type], _ = Category.objects.get_or_create(slug=slugify(name), defaults={"name": name})
    return categories


def _create_products(plans: list[ProductPlan]) -> list[Product]:
    categories = _categories(plans)
    products = [
        Product(
            sku=plan.sku,
            title=plan.title,
            description=plan.description,
            category=categories[plan.image.type],
            price=plan.price,
            stock=plan.stock,
            is_active=plan.is_active,
            attributes=plan.attributes,
        )
        for plan in plans
    ]
    return Product.objects.bulk_create(products, batch_size=BATCH_SIZE)


def _create_images(products: list[Product], photos: list[bytes]) -> int:
    images = [_stored_image(product, data) for product, data in zip(products, photos, strict=True)]
    return len(ProductImage.objects.bulk_create(images, batch_size=BATCH_SIZE))


def _stored_image(product: Product, data: bytes) -> ProductImage:
    """An unsaved primary image whose file is already in storage.

    The file name holds the sku and a checksum prefix, so an identical file left by
    an earlier (or interrupted) build is reused instead of being stored twice.
    """
    sha = sha256_of(data)
    image = ProductImage(
        product=product,
        sha256=sha,
        width=SIZE,
        height=SIZE,
        is_primary=True,
        position=0,
    )
    file_field = ProductImage._meta.get_field("file")
    name = file_field.generate_filename(image, f"{product.sku.lower()}-{sha[:16]}.jpg")
    if not file_field.storage.exists(name):
        name = file_field.storage.save(name, ContentFile(data))
    image.file.name = name
    return image


def _create_users(usernames: list[str]) -> list:
    user_model = get_user_model()
    users = [user_model(**{user_model.USERNAME_FIELD: name, "password": make_password(None)}) for name in usernames]
    return user_model._default_manager.bulk_create(users, batch_size=BATCH_SIZE)


def _create_interactions(events: list[Event], products: list[Product], users: list) -> int:
    created = 0
    for batch in _batches(events, BATCH_SIZE):
        rows = [
            Interaction(
                user_id=users[e.user].pk,
                product_id=products[e.product].pk,
                kind=e.kind,
                session_key=f"demo-{e.user + 1:04d}-{e.session + 1:03d}",
                created_at=e.at,
            )
            for e in batch
        ]
        created += len(Interaction.objects.bulk_create(rows))
    return created


def _batches(items: list[Event], size: int) -> Iterator[list[Event]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
