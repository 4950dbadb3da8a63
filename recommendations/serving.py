"""Serving: candidates (pgvector + the active model) -> rules -> cache -> fallback.

Views, template tags and the API call these functions; nothing here renders.

- ``similar_items``: the product's visual neighbours (HNSW, filters inside the SQL,
  iterative index scans so filtered lists stay full) blended with the active model's
  item neighbours.
- ``for_you``: the active model's scores for a shopper it knows, blended with the
  session's live taste (image vectors of what the shopper just viewed, clicked, carted
  or bought); cold shoppers get what is trending in the current category, then overall.
- ``recently_viewed``, ``search_by_image``, ``trending``, ``popular``.

Lists are cached by candidate ids (the Django cache; Redis when configured). Keys carry
the active model and embedding versions, the anchor product's version (bumped on save)
or the shopper's last interaction id, so activation, product edits and new events all
change the list. Products are always (re)loaded through the rules' SQL filter, so a
cached list never shows a product that went inactive or out of stock meanwhile.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import numpy as np
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, transaction
from django.db.models import Count, Q
from django.utils import timezone

from . import experiments
from .conf import get_product_model, visrec_settings
from .data import shopper_key
from .ml.base import top_n
from .ml.images import ImageRejected, load_image
from .models import EmbeddingModel, ImageEmbedding, ImageState, Interaction, ModelVersion, ProductSnapshot
from .rules import Rules, arrange, overfetch, rules_for

logger = logging.getLogger(__name__)

#: The exception ``search_by_image`` raises for a corrupt, hostile or oversized image.
InvalidImage = ImageRejected

_RANKED_DEPTH = 200  # cached trending/popular candidates per category


@dataclass(frozen=True)
class Recommendation:
    """A product with the score that ranked it and why it is there.

    ``reason``: "visual", "model", "session", "trending", "popular", "pinned",
    "recently-viewed".
    """

    product: object
    score: float
    reason: str = "visual"


@dataclass
class RecommendationList:
    """One widget's list and what produced it (for impressions and CTR).

    ``source``: "visual", "model", "session", "model+session", "trending", "popular",
    "recently-viewed", "cache-fallback" or "empty".
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


# -- cache helpers (a cache outage degrades to "no cache", never to an error) --------------


def _cache_get_many(keys: list[str]) -> dict[str, Any]:
    try:
        return cache.get_many(keys)
    except Exception:
        logger.warning("visrec cache unavailable (read)", exc_info=True)
        return {}


def _cache_set(key: str, value: Any, timeout: float) -> None:
    try:
        cache.set(key, value, timeout)
    except Exception:
        logger.warning("visrec cache unavailable (write)", exc_info=True)


def _prefix() -> str:
    return str(visrec_settings.CACHE_PREFIX)


def _key(*parts: Any) -> str:
    raw = ":".join(str(p) for p in parts)
    return _prefix() + hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()


def product_version_key(pk: int) -> str:
    return f"{_prefix()}pv:{pk}"


def bump_product_version(pk: int) -> None:
    """Invalidate the cached lists anchored on product ``pk`` (called on product/image save)."""
    _cache_set(product_version_key(pk), uuid.uuid4().hex[:12], None)


# -- the active versions -----------------------------------------------------------------


@dataclass(frozen=True)
class Active:
    """The embedding version and model version serving reads now."""

    embedding: EmbeddingModel | None
    version: ModelVersion | None

    @property
    def embedding_version(self) -> str | None:
        return str(self.embedding.pk) if self.embedding else None

    @property
    def version_id(self) -> int | None:
        return self.version.pk if self.version else None

    @property
    def key(self) -> str:
        return f"e{self.embedding_version}-m{self.version_id}"


_ACTIVE_SECONDS = 2.0


_local_active: dict[str, tuple[float, Active]] = {}  # cache prefix -> (when read, versions), this process


def active() -> Active:
    """The active versions, read from the database at most every couple of seconds (cached).

    Each process keeps its copy for ``_ACTIVE_SECONDS`` too (no cache round trip per
    widget); an activation in this process forgets it at once (``forget_active``), one in
    another process is seen within those seconds, as with the shared copy.
    """
    key = _prefix() + "active"
    now = time.monotonic()
    local = _local_active.get(key)
    if local is not None and now - local[0] < _ACTIVE_SECONDS:
        return local[1]
    found = _cache_get_many([key]).get(key)
    if found is None:
        found = Active(EmbeddingModel.objects.active(), ModelVersion.objects.active())
        _cache_set(key, found, _ACTIVE_SECONDS)
    _local_active.clear()  # one prefix in use per process (tests change it)
    _local_active[key] = (now, found)
    return found


def forget_active() -> None:
    """Make the next call re-read the active versions (after an activation)."""
    _local_active.clear()
    try:
        cache.delete(_prefix() + "active")
    except Exception:
        logger.warning("visrec cache unavailable (delete)", exc_info=True)


@dataclass
class LoadedModel:
    """The active recommender with its id maps (product pk <-> item column, shopper key -> row)."""

    version_id: int
    model: Any
    items: np.ndarray
    column: dict[int, int]
    row: dict[str, int]
    neighbours: Any = None  # the model for ``similar_items`` (see ``_neighbour_model``)
    # its item columns in ``model``'s numbering (None: the same); for a factor model the items with
    # a non-zero factor row, which are also the only ones ``for_you`` scores (a zero row carries no
    # taste: such items reach a shopper through the session taste, trending and popular lists)
    neighbour_cols: np.ndarray | None = None

    def pks(self, cols: np.ndarray) -> list[int]:
        return [int(self.items[c]) for c in cols]

    def similar_items(self, col: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The model's ``similar_items`` for item column ``col`` (columns in ``model``'s numbering)."""
        if self.neighbour_cols is None:
            ids, scores = (self.neighbours or self.model).similar_items(np.array([col]), N=n)
            return ids[0], scores[0]
        at = int(np.searchsorted(self.neighbour_cols, col))
        if at >= len(self.neighbour_cols) or self.neighbour_cols[at] != col:
            return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)  # a zero factor row: no neighbours
        # the rows are unit length already: the cosines are one matrix-vector product (what the model's
        # ``similar_items`` computes after normalising every row again, on every call)
        unit = self.neighbours.item_factors
        scores = unit @ unit[at]
        scores[at] = -np.inf
        ids, scores = top_n(scores[None, :], n)
        ids, scores = ids[0], scores[0]
        return np.where(ids >= 0, self.neighbour_cols[np.maximum(ids, 0)], -1), scores


def _neighbour_model(model) -> tuple[Any, np.ndarray | None]:
    """A copy of a factor model that answers ``similar_items`` cheaply, with its item columns.

    Factor models score item neighbours by the cosine of item factors over the whole
    catalogue on every call. Items without interactions have all-zero factors and are
    never neighbours; the copy keeps only the other rows, each scaled to unit length once
    (cosine ignores a row's scale), so a call scores the items the model knows and the
    answers are the model's own. Other models are served as they are.
    """
    from .ml.mf import _FactorModel

    factors = getattr(model, "item_factors", None)
    if not isinstance(model, _FactorModel) or not isinstance(factors, np.ndarray) or factors.ndim != 2:
        return model, None
    norms = np.linalg.norm(factors, axis=1)
    cols = np.flatnonzero(norms >= 1e-12)
    compact = copy.copy(model)
    compact.item_factors = np.ascontiguousarray(factors[cols] / norms[cols, None], dtype=factors.dtype)
    return compact, cols


_models: dict[int, LoadedModel | None] = {}
_MODELS_KEPT = 3
_models_lock = threading.Lock()


def loaded_model(version: ModelVersion | None) -> LoadedModel | None:
    """The artifact of ``version``, loaded once per process (None if it cannot be loaded)."""
    if version is None:
        return None
    if version.pk in _models:
        return _models[version.pk]
    with _models_lock:
        if version.pk not in _models:
            while len(_models) >= _MODELS_KEPT:  # the active version and an experiment's arms
                _models.pop(next(iter(_models)))
            _models[version.pk] = _load_model(version)
    return _models[version.pk]


def _load_model(version: ModelVersion) -> LoadedModel | None:
    from .training import load_version, registry

    try:
        registry()
        loaded = load_version(version)
    except Exception:
        logger.exception("cannot load the active model version", extra={"model_version": version.pk})
        return None
    items = np.asarray(loaded.items, dtype=np.int64)
    neighbours, neighbour_cols = _neighbour_model(loaded.model)
    return LoadedModel(
        version_id=version.pk,
        model=loaded.model,
        items=items,
        column={int(pk): i for i, pk in enumerate(items)},
        row={str(key): i for i, key in enumerate(loaded.users)},
        neighbours=neighbours,
        neighbour_cols=neighbour_cols,
    )


# -- vector search -------------------------------------------------------------------------

_iterative: bool | None = None


def _supports_iterative_scan(cursor) -> bool:
    global _iterative
    if _iterative is None:
        cursor.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        row = cursor.fetchone()
        parts = tuple(int(p) for p in (row[0] if row else "0").split(".")[:2] if p.isdigit())
        _iterative = parts >= (0, 8)
    return _iterative


def _search_settings(cursor, ef_search: int | None = None) -> list[tuple[str, str]]:
    """``(name, value)`` of the settings an HNSW query runs under: ef_search, iterative scans, the time budget."""
    pairs = [
        ("hnsw.ef_search", str(int(ef_search or visrec_settings.HNSW_EF_SEARCH))),
        ("statement_timeout", f"{int(visrec_settings.WIDGET_TIME_BUDGET_MS)}ms"),
    ]
    mode = str(visrec_settings.HNSW_ITERATIVE_SCAN or "off")
    if mode != "off" and _supports_iterative_scan(cursor):
        pairs += [
            ("hnsw.iterative_scan", mode),
            ("hnsw.max_scan_tuples", str(int(visrec_settings.HNSW_MAX_SCAN_TUPLES))),
        ]
    return pairs


def _set_locally(pairs: list[tuple[str, str]]) -> tuple[str, list[str]]:
    """SQL (and its parameters) that sets ``pairs`` to the end of the transaction."""
    return "SELECT " + ", ".join("set_config(%s, %s, true)" for _ in pairs), [v for pair in pairs for v in pair]


@contextmanager
def vector_search(ef_search: int | None = None) -> Iterator[None]:
    """A transaction tuned for HNSW queries: ef_search, iterative scans and the time budget.

    ``SET LOCAL`` lasts to the end of the transaction; inside an outer transaction the
    settings are reset afterwards so they never leak into the caller's queries.
    """
    nested = connection.in_atomic_block
    with transaction.atomic():
        with connection.cursor() as cursor:
            pairs = _search_settings(cursor, ef_search)
            cursor.execute(*_set_locally(pairs))
        yield
        if nested:
            with connection.cursor() as cursor:
                cursor.execute("; ".join(f"RESET {name}" for name, _ in pairs))


def search_rows(query, ef_search: int | None = None) -> list:
    """The rows of a vector ``query`` (a queryset, or ``(sql, params)``) run under the :func:`vector_search` settings.

    Outside a transaction this is one round trip: the settings and the query go out
    together in a psycopg pipeline, which PostgreSQL runs as one implicit transaction, so
    the settings end with it. Inside a transaction the query runs in
    :func:`vector_search` (a savepoint, so a query stopped by the time budget leaves the
    caller's transaction usable). ``ef_search``: this query's search breadth (default
    ``HNSW_EF_SEARCH``).
    """
    if connection.in_atomic_block:
        with vector_search(ef_search):
            return _rows(query)
    with connection.cursor() as cursor:
        pairs = _search_settings(cursor, ef_search)
        if isinstance(query, tuple) and visrec_settings.PREPARED_QUERIES:
            return _prepared_rows(query, pairs)
        with connection.connection.pipeline():
            cursor.execute(*_set_locally(pairs))
            return _rows(query, cursor)


def _prepared_rows(query: tuple[str, list], pairs: list[tuple[str, str]]) -> list:
    """Rows of a written-out vector query, prepared on this connection and run with a generic plan.

    Planning the neighbour query (joins, the rules' filter, the init plans) on every
    call costs PostgreSQL a large share of the query's time (0.7-0.8 ms beside 1.3-2.9 ms
    of execution at 200,000 products). Sent with
    server-side parameters, the statement is parsed and planned once per connection;
    ``plan_cache_mode`` (set for this query only) keeps PostgreSQL on that plan instead of
    re-planning for each parameter value. Still one round trip: settings and query go out
    together in a pipeline, as one implicit transaction.
    """
    with _prepared_cursor(pipeline=True) as cursor:
        cursor.execute(*_set_locally([*pairs, ("plan_cache_mode", "force_generic_plan")]))
        cursor.execute(*query)
        return cursor.fetchall()


@contextmanager
def _prepared_cursor(pipeline: bool = False) -> Iterator[Any]:
    """A cursor with server-side parameters whose statements are prepared at their first run on the connection.

    Wrapped as Django wraps its own (its execute wrappers apply, and the debug log of tests
    and DEBUG shows the statements). Django's own cursors bind on the client and are not
    prepared; the connection's threshold is restored afterwards. ``pipeline``: the
    statements go out together (see :func:`search_rows`).
    """
    import psycopg

    with connection.cursor():  # Django's way in: connects (or fails) and checks a reused connection
        raw = connection.connection
    threshold = raw.prepare_threshold
    raw.prepare_threshold = 0
    try:
        with (
            raw.pipeline() if pipeline else nullcontext(),
            connection._prepare_cursor(_ServerCursor(psycopg.Cursor(raw))) as cursor,
        ):
            yield cursor
    finally:
        raw.prepare_threshold = threshold


def fetch_rows(sql: str, params) -> tuple[list[tuple], list[str]]:
    """Rows and column names of a written-out serving query (prepared once per connection, see ``PREPARED_QUERIES``)."""
    if not visrec_settings.PREPARED_QUERIES or connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall(), [c.name for c in cursor.description]
    with _prepared_cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall(), [c.name for c in cursor.description]


def raw_products(sql: str, params) -> list:
    """Cards (:class:`ProductSnapshot` instances) of a written-out query (:func:`products_sql`).

    Its columns are set, the others deferred; columns that are not fields become
    attributes. Prepared like the other serving queries, and without ``RawQuerySet``'s
    per-query set-up.
    """
    return products_from_rows(*fetch_rows(sql, params))


def products_from_rows(rows: list[tuple], names: list[str]) -> list:
    """Cards of query rows with columns ``names`` (see :func:`raw_products`)."""
    Product = ProductSnapshot
    attnames = {f.column: f.attname for f in Product._meta.concrete_fields}
    fields = [i for i, name in enumerate(names) if name in attnames]
    extra = [(i, name) for i, name in enumerate(names) if name not in attnames]
    order = {f.attname: n for n, f in enumerate(Product._meta.concrete_fields)}
    fields.sort(key=lambda i: order[attnames[names[i]]])
    field_names = [attnames[names[i]] for i in fields]
    db = connection.alias
    products = []
    for row in rows:
        product = Product.from_db(db, field_names, [row[i] for i in fields])
        for i, name in extra:
            setattr(product, name, row[i])
        products.append(product)
    return products


class _ServerCursor:
    """A psycopg cursor with server-side parameters, as Django's cursor wrappers read one.

    Django's debug log takes a statement's text from the cursor's last client-side
    composed query; this one composes it (only while queries are logged).
    """

    def __init__(self, cursor) -> None:
        self._cursor = cursor
        self._query = None

    def execute(self, sql, params=None):
        if connection.queries_logged:
            self._query = SimpleNamespace(query=connection.ops.compose_sql(sql, params).encode())
        return self._cursor.execute(sql, params)

    def __getattr__(self, name):
        return getattr(self._cursor, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._cursor.close()


def _rows(query, cursor=None) -> list:
    """Rows of a queryset, or of ``(sql, params)``."""
    if not isinstance(query, tuple):
        return list(query)
    if cursor is not None:
        cursor.execute(*query)
        return cursor.fetchall()
    with connection.cursor() as own:
        own.execute(*query)
        return own.fetchall()


def product_vector(product, model: EmbeddingModel):
    """The primary image vector of ``product`` under ``model``."""
    row = (
        ImageEmbedding.objects.filter(model=model, image__product=product)
        .order_by("-image__is_primary", "image__position", "image_id")
        .values_list("vector", flat=True)
        .first()
    )
    if row is None:
        raise ProductNotEmbedded(f"product {product.pk} has no image vector yet")
    return row


@dataclass(frozen=True)
class SQLVector:
    """A query vector computed inside the neighbour query: ``sql`` (a ``halfvec(d)`` expression) and its params.

    ``nullable``: it may be NULL (no vector), in which case the query finds nothing.
    """

    sql: str
    params: tuple
    nullable: bool = True


_names_memo: dict[tuple, SimpleNamespace] = {}


def _names() -> SimpleNamespace:
    """Quoted table and column names of the neighbour and product queries (visrec's own tables; kept per process)."""
    key = (get_product_model(), connection.vendor)
    found = _names_memo.get(key)
    if found is None:
        found = _names_memo[key] = _quoted_names(ProductSnapshot, ImageState)
    return found


def _quoted_names(product_model, image_model) -> SimpleNamespace:
    """Names in the vector and list queries: ``product`` is visrec's snapshot of the shop's products."""
    quote = connection.ops.quote_name

    def column(model, name: str) -> str:
        return quote(model._meta.get_field(name).column)

    return SimpleNamespace(
        pk_type=pk_db_type(),
        emb=quote(ImageEmbedding._meta.db_table),
        emb_image=column(ImageEmbedding, "image"),
        emb_model=column(ImageEmbedding, "model"),
        emb_vector=column(ImageEmbedding, "vector"),
        img=quote(image_model._meta.db_table),
        img_pk=quote(image_model._meta.pk.column),
        img_product=column(image_model, "product"),
        img_primary=column(image_model, "is_primary"),
        img_position=column(image_model, "position"),
        img_url=column(image_model, "url"),
        product=quote(product_model._meta.db_table),
        product_pk=quote(product_model._meta.pk.column),
    )


def anchor_vector(product_id: int, model: EmbeddingModel) -> SQLVector:
    """SQL for the primary image vector of a product, so the neighbour query needs no extra round trip.

    pgvector's index scan takes it as an init-plan parameter, as it would a literal. The
    cast to ``halfvec(d)`` matters: the stored vector is TOASTed (a 1280-d ``halfvec`` is
    over 2 kB), and an uncast init-plan value reaches the distance function as a TOAST
    pointer that is fetched again for every distance the index scan computes (about
    twice the query's time at 200,000 products); the cast detoasts it once.
    """
    n = _names()
    sql = (
        f"(SELECT a.{n.emb_vector} FROM {n.emb} a JOIN {n.img} ai ON ai.{n.img_pk} = a.{n.emb_image} "
        f"WHERE ai.{n.img_product} = %s AND a.{n.emb_model} = {int(model.pk)} "
        f"ORDER BY ai.{n.img_primary} DESC, ai.{n.img_position}, a.{n.emb_image} LIMIT 1)"
        f"::halfvec({int(model.dimensions)})"
    )
    return SQLVector(sql, (product_key(product_id),))


def literal_vector(vector, model: EmbeddingModel) -> SQLVector:
    """A vector computed in Python (an uploaded photo's) as a query parameter."""
    return SQLVector(f"%s::halfvec({int(model.dimensions)})", (_vector_text(vector),), nullable=False)


def _vector_text(vector) -> str:
    """A query vector as pgvector text with 5 significant digits.

    The index compares ``halfvec`` values (about 3 significant digits), so this loses
    nothing, and it is half the text of Python's shortest round-trip floats, built faster.
    """
    return "[" + ",".join(map("{:.5g}".format, np.asarray(vector, dtype=np.float64).ravel().tolist())) + "]"


_RULES_SQL_KEPT = 512
_rules_sql: dict[tuple[str, str], tuple[str, tuple]] = {}


def rules_where(rules: Rules | None) -> tuple[str, tuple]:
    """``Rules.product_q`` as an SQL condition on the product table, compiled once per rules.

    ``None``: active products (in stock or not). The ORM builds and compiles the filter
    the first time a set of rules is seen; the neighbour and product queries then reuse
    the text (building a query through the ORM costs more than running it).
    """
    key = (connection.alias, rules.cache_key() if rules is not None else "active")
    found = _rules_sql.get(key)
    if found is None:
        products = ProductSnapshot.objects
        query = (products.filter(rules.product_q()) if rules is not None else products.filter(active=True)).query
        if sum(1 for count in query.alias_refcount.values() if count) > 1:
            raise ValueError("the rules' product filter must not need joins")
        sql, params = query.get_compiler(connection=connection).compile(query.where)
        found = (sql, tuple(params))
        if len(_rules_sql) >= _RULES_SQL_KEPT:
            _rules_sql.clear()
        _rules_sql[key] = found
    return found


def neighbour_sql(
    vector,
    model: EmbeddingModel,
    limit: int,
    exclude=None,
    category=None,
    rules: Rules | None = None,
    card: bool = False,
) -> tuple[str, list]:
    """SQL (and params) of the ``limit`` recommendable products whose primary image is nearest to ``vector``.

    Rows are ``(product_id, cosine distance)``, followed with ``card`` by the product's
    card columns and its primary image's file (``PRIMARY_FILE``: the image the row was
    found by), as :func:`products_sql` selects them. ``vector``: an :class:`SQLVector` (an
    anchor's or a taste's, computed in the query) or an array. The ordering expression
    matches the version's partial HNSW index; the product filters (rules) are SQL in the
    same query, so iterative scans keep the list full. The version's id and the limit are
    written into the SQL (integers), the rest are parameters: the statement is prepared
    once per connection and runs a generic plan (:func:`search_rows`), which can use the
    version's partial index only when its ``model_id`` is a constant.
    """
    rules = (rules or Rules()).with_category(category)
    vec = vector if isinstance(vector, SQLVector) else literal_vector(vector, model)
    n = _names()
    where, where_params = rules_where(rules)
    columns = ""
    if card:
        quote = connection.ops.quote_name
        columns = "".join(f", {n.product}.{quote(f.column)}" for f in _card_fields())
    # A vector computed in the query (an anchor's, a taste's) is computed once, in a CTE that the
    # ordering and the "no vector: no neighbours" filter both read (a taste sums up to
    # TASTE_HISTORY vectors: written twice, it was computed twice).
    query_vector, head = vec.sql, ""
    if vec.nullable:
        head, query_vector = f"WITH q AS MATERIALIZED (SELECT {vec.sql} AS v) ", "(SELECT v FROM q)"
    sql = (
        f"{head}SELECT {n.img}.{n.img_product}, "
        f"{n.emb}.{n.emb_vector}::halfvec({int(model.dimensions)}) <=> {query_vector}"
        f"{columns} FROM {n.emb} JOIN {n.img} ON {n.img}.{n.img_pk} = {n.emb}.{n.emb_image} "
        f"JOIN {n.product} ON {n.product}.{n.product_pk} = {n.img}.{n.img_product} "
        f"WHERE {n.emb}.{n.emb_model} = {int(model.pk)} AND {n.img}.{n.img_primary} AND {where}"
    )
    params = [*vec.params, *where_params]
    if exclude:
        sql += f" AND NOT ({n.img}.{n.img_product} = ANY(%s::{n.pk_type}[]))"
        params.append(pk_array(exclude))
    if vec.nullable:  # no vector: no neighbours (a one-time filter, not one per row)
        sql += f" AND {query_vector} IS NOT NULL"
    return sql + f" ORDER BY 2 LIMIT {int(limit)}", params


def nearest_products(
    vector,
    model: EmbeddingModel,
    limit: int,
    exclude=None,
    category=None,
    rules: Rules | None = None,
    ef_search: int | None = None,
    cards: dict | None = None,
) -> list[tuple[int, float]]:
    """``[(product_id, cosine similarity)]`` of the ``limit`` nearest products, nearest first.

    Iterative scans in ``relaxed_order`` may return rows slightly out of order; they are
    re-sorted here. ``ef_search``: the search breadth (default ``HNSW_EF_SEARCH``).
    ``cards``: a dict that receives the found products (pk -> instance, loaded by the same
    query as :func:`products_sql` would, so a list needs no second query for them).

    The search breadth is at least ``limit`` plus a few of the excluded products: one pass
    of an HNSW scan yields at most ``ef_search`` candidates, and one too narrow for the list
    and the excluded products it meets makes the iterative scan start a second pass, which
    costs more than a wider first one. Only the nearest few excluded products count: a
    shopper's long history mostly lies far from the blend of it (measured at 200,000
    products: 5 left out, breadth 25 vs 20: 2.3 vs 2.8 ms; 50 left out, breadth 28 vs 70:
    5.5 vs 7.3 ms).
    """
    sql = neighbour_sql(vector, model, limit, exclude, category, rules, card=cards is not None)
    ef = max(int(ef_search or visrec_settings.HNSW_EF_SEARCH), int(limit) + min(len(exclude or ()), 8))
    rows = search_rows(sql, ef)
    rows = [row for row in rows if row[1] is not None]
    if cards is not None and rows:
        product_columns = [f.column for f in _card_fields()]
        for product in products_from_rows([row[2:] for row in rows], product_columns):
            cards[product.pk] = product
    return sorted(((row[0], 1.0 - float(row[1])) for row in rows), key=lambda row: -row[1])


# -- loading products in ranked order ------------------------------------------------------

Ranked = list[tuple[int, float, str]]  # (product pk, score, reason)


def product_image_url(product) -> str | None:
    """The primary image URL of a card (a :class:`~recommendations.models.ProductSnapshot`)."""
    return product.primary_image_url


def pk_db_type() -> str:
    """The database type of the shop's product keys (``bigint`` for integers, else e.g. ``uuid``)."""
    pk = ProductSnapshot._meta.pk
    db_type = pk.rel_db_type(connection) if hasattr(pk, "rel_db_type") else pk.db_type(connection)
    return "bigint" if db_type in ("integer", "bigint", "smallint") else db_type


def product_key(value):
    """``value`` (an int, a UUID or their text) as the product model's primary key value."""
    return get_product_model()._meta.pk.to_python(value)


def pk_array(values) -> str:
    """A PostgreSQL array literal of product keys, for ``%s::<pk_db_type()>[]``."""
    if pk_db_type() == "bigint":
        return int_array(values)
    return text_array(values)


def int_array(values) -> str:
    """A PostgreSQL array literal of integers, for ``%s::bigint[]``.

    psycopg works out the element type of a Python list element by element before sending
    it with server-side parameters (a tenth of a millisecond for a list's ids); a literal
    with the cast states it.
    """
    return "{" + ",".join(str(int(v)) for v in values) + "}"


def text_array(values) -> str:
    """A PostgreSQL array literal of strings (quoted), for ``%s::text[]``."""
    quoted = ('"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values)
    return "{" + ",".join(quoted) + "}"


#: Snapshot fields a card never shows; list queries leave them out (deferred on the instances).
CARD_DEFERRED = ("category_path", "updated_at")


def _card_fields() -> list:
    """The snapshot fields a list query selects (all but ``CARD_DEFERRED``; the primary key first)."""
    return [f for f in ProductSnapshot._meta.concrete_fields if f.name not in CARD_DEFERRED]


def products_sql(ids, rules: Rules | None, user=None, session_key: str | None = None) -> tuple[str, list]:
    """SQL (and params) of the cards of products ``ids`` that pass ``rules`` (None: active), for :func:`raw_products`.

    One query over visrec's product snapshots: the card's columns (the primary image's URL
    among them), the rules' filter, and the shopper's products that must not be shown
    again (per the rules, e.g. bought) as a ``NOT EXISTS``.
    """
    n, quote = _names(), connection.ops.quote_name
    where, where_params = rules_where(rules)
    sql = (
        f"SELECT {', '.join(f'{n.product}.{quote(f.column)}' for f in _card_fields())} "
        f"FROM {n.product} WHERE {n.product}.{n.product_pk} = ANY(%s::{n.pk_type}[]) AND {where}"
    )
    params = [pk_array(ids), *where_params]
    if rules is not None and rules.exclude_interacted_kinds and _has_shopper(user, session_key):
        signed_in = user is not None and getattr(user, "is_authenticated", False)
        shopper = ("user_id", user.pk) if signed_in else ("session_key", session_key)
        sql += (
            f" AND NOT EXISTS (SELECT 1 FROM {quote(Interaction._meta.db_table)} x "
            f"WHERE x.product_id = {n.product}.{n.product_pk} AND x.kind = ANY(%s::text[]) "
            f"AND x.{quote(shopper[0])} = %s)"
        )
        params += [text_array(rules.exclude_interacted_kinds), shopper[1]]
    return sql, params


def _load(ranked: Ranked, rules: Rules, exclude=(), pinned: bool = True, shopper=(None, None), cards=None):
    """Products of ``ranked`` (and the rules' pins) that pass the rules, in order (one query, :func:`products_sql`).

    ``cards``: products already loaded under the same ``rules`` (by the neighbour query,
    see :func:`nearest_products`); they are used as they are unless the shopper's own
    products must be left out (a per-shopper filter the shared neighbour query has not
    applied), and only the others are queried. Returns ``(items, pins)``.
    """
    pins = [pk for pk in rules.pins() if pk not in exclude] if pinned else []
    wanted = {pk for pk, _, _ in ranked if pk not in exclude} | set(pins)
    if not wanted:
        return [], []
    by_id = {}
    if cards and not (rules.exclude_interacted_kinds and _has_shopper(*shopper)):
        by_id = {pk: cards[pk] for pk in wanted if pk in cards}
        wanted -= by_id.keys()
    if wanted:
        by_id.update((p.pk, p) for p in raw_products(*products_sql(wanted, rules, *shopper)))
    items = [Recommendation(by_id[pk], score, reason) for pk, score, reason in ranked if pk in by_id]
    pinned_items = [Recommendation(by_id[pk], 1.0, "pinned") for pk in pins if pk in by_id]
    return items, pinned_items


def _finish(
    widget: str, ranked: Ranked, limit: int, rules: Rules, act: Active, source: str, exclude=(), shopper=(), cards=None
):
    """The list shown: ``ranked``'s products that pass the rules, arranged (pins, boosts, good matches, diversity)."""
    shown = _arranged(rules.lift(ranked), limit, rules, exclude, shopper or (None, None), merch=True, cards=cards)
    return RecommendationList(widget, shown, act.version_id, act.embedding_version, source)


def _arranged(
    ranked: Ranked, limit: int, rules: Rules, exclude=(), shopper=(None, None), merch: bool = False, cards=None
) -> list[Recommendation]:
    """Up to ``limit`` of ``ranked``'s products that pass the rules, arranged by :func:`arrange`.

    Candidates are loaded best first, a few more than the list needs at a time, until the
    list is full or they run out (a blend ranks several times more candidates than a
    widget shows; popular lists hundreds). ``merch``: the admin's pins, boosts and good
    matches apply; with boosts in force every candidate is loaded, as a boost can lift
    any of them.
    """
    step = len(ranked) if merch and rules.merch.boosts else overfetch(limit, rules) + 8
    loaded: list[Recommendation] = []
    pins: list[Recommendation] = []
    start = 0
    while True:
        items, pinned = _load(
            ranked[start : start + step], rules, exclude, pinned=merch and start == 0, shopper=shopper, cards=cards
        )
        pins = pinned if start == 0 else pins
        loaded += items
        start += step
        shown = arrange(rules.order(loaded) if merch else loaded, limit, rules, pins)
        if len(shown) >= limit or start >= len(ranked):
            return shown


def _has_shopper(user, session_key) -> bool:
    return bool(session_key) or (user is not None and getattr(user, "is_authenticated", False))


# -- popular and trending ------------------------------------------------------------------


_RANKED_KEPT = 2048
_ranked_local: dict[str, tuple[float, list[tuple[int, float]]]] = {}  # cache key -> (fresh until, rows)
_ranked_lock = threading.Lock()


def _ranked_ids(kind: str, category=None, at_least: int = 0) -> list[tuple[int, float]]:
    """Top popular (all time) or trending (recent window) product ids, cached.

    At least ``_RANKED_DEPTH`` (and ``at_least``, rounded up to a multiple of it) are kept.
    The rankings are shop-wide aggregates (hundreds of milliseconds over a large catalogue),
    so each process keeps its copy for ``TRENDING_CACHE_SECONDS`` besides the shared cache
    (a copy read from the shared cache may be up to twice that old), and one thread per
    process computes a missing one while the others wait for it: an emptied or restarted
    cache then costs one query per ranking, not one per request.
    """
    cat_id = getattr(category, "pk", category)
    depth = _RANKED_DEPTH * max(1, -(-int(at_least) // _RANKED_DEPTH))
    key = _key("ranked", kind, cat_id, depth)
    local = _ranked_local.get(key)
    if local is not None and time.monotonic() < local[0]:
        return local[1]
    with _ranked_lock:
        local = _ranked_local.get(key)
        if local is not None and time.monotonic() < local[0]:
            return local[1]
        ttl = int(visrec_settings.TRENDING_CACHE_SECONDS)
        rows = _cache_get_many([key]).get(key)
        if rows is None:
            rows = _rank(kind, cat_id, depth)
            _cache_set(key, rows, ttl)
        if len(_ranked_local) >= _RANKED_KEPT:
            _ranked_local.clear()
        _ranked_local[key] = (time.monotonic() + ttl, rows)
        return rows


def _rank(kind: str, cat_id, depth: int) -> list[tuple[int, float]]:
    qs = ProductSnapshot.objects.filter(recommendable=True, active=True, in_stock=True)
    if cat_id is not None:
        qs = qs.filter(category_id=cat_id)
    since = None
    if kind == "trending":
        since = timezone.now() - timedelta(seconds=int(visrec_settings.TRENDING_WINDOW_SECONDS))
    qs = _by_popularity(qs, since)
    if kind == "trending":
        qs = qs.filter(popularity__gt=0)
    return [(pk, float(score)) for pk, score in qs.values_list("pk", "popularity")[:depth]]


def _by_popularity(products, since=None):
    """``products`` by weighted event count (purchases 4, carts 2, others 1), most popular first."""
    weight = Q()
    events = "product__visrec_interactions"
    kind = f"{events}__kind"
    if since is not None:
        weight &= Q(**{f"{events}__created_at__gte": since})
    return products.annotate(
        popularity=Count(events, filter=weight & Q(**{kind: "purchase"})) * 4
        + Count(events, filter=weight & Q(**{kind: "add_to_cart"})) * 2
        + Count(events, filter=weight & ~Q(**{f"{kind}__in": ["purchase", "add_to_cart"]}))
    ).order_by("-popularity", "pk")


def popular(limit: int = 8, category=None, exclude: list[int] | None = None, *, rules: Rules | None = None):
    """Best sellers (weighted interactions), optionally within a category; a list of Recommendation.

    The admin's pins, blocks, boosts and category exclusions for every widget (or for
    ``"popular"``) apply, as in the other lists.
    """
    rules = rules_for("popular", rules or Rules(exclude_interacted_kinds=()), category=category)
    exclude = set(exclude or ())
    ranked = [(pk, s, "popular") for pk, s in _ranked_ids("popular", category, limit + len(exclude))]
    items = _arranged(ranked, limit, rules, exclude, merch=True)  # the admin's pins and boosts apply here too
    if category is None and not exclude and limit >= _LAST_GOOD_SIZE and items:
        _remember_popular(items)
    return items


def trending(limit: int = 8, category=None, exclude=(), *, rules: Rules | None = None) -> list[Recommendation]:
    """Most interacted-with products over the recent window (``TRENDING_WINDOW_SECONDS``)."""
    rules = rules or Rules(exclude_interacted_kinds=())
    ranked = [(pk, s, "trending") for pk, s in _ranked_ids("trending", category)]
    return _arranged(ranked, limit, rules, set(exclude))


_LAST_GOOD_SIZE = 24
_LAST_GOOD_REFRESH = 3600.0


def _remember_popular(items: list[Recommendation]) -> None:
    """Keep the last good popular list (with its products) for when the database is down."""
    _cache_set(_prefix() + "last-good-popular", (time.time(), items), 30 * 24 * 3600)


_LAST_GOOD_CHECK = 60.0
_last_good_checked: dict[str, float] = {}  # cache key -> when this process last found it fresh


def remember_popular_if_stale() -> None:
    """Refresh the last good popular list when it is missing or older than an hour.

    One cache read, at most once a minute per process (the widgets call this on every render).
    """
    key = _prefix() + "last-good-popular"
    now = time.monotonic()
    if now - _last_good_checked.get(key, -_LAST_GOOD_CHECK) < _LAST_GOOD_CHECK:
        return
    found = _cache_get_many([key]).get(key)
    if found is None or time.time() - found[0] > _LAST_GOOD_REFRESH:
        popular(_LAST_GOOD_SIZE)
        found = _cache_get_many([key]).get(key)
    if found is not None:
        _last_good_checked.clear()
        _last_good_checked[key] = now


def fallback_list(widget: str, limit: int, exclude=()) -> RecommendationList:
    """The last good popular list from the cache (no database needed), or an empty list."""
    try:
        key = _prefix() + "last-good-popular"
        items = (_cache_get_many([key]).get(key) or (0, []))[1]
    except Exception:
        items = []
    items = [r for r in items if r.product.pk not in set(exclude)][:limit]
    return RecommendationList(widget, items, None, None, "cache-fallback" if items else "empty")


def _fill(ranked: Ranked, limit: int, category, seen: set[int], rules: Rules) -> Ranked:
    """Top ``ranked`` up with trending (in ``category``, then overall), then popular ids."""
    out = list(ranked)
    seen = set(seen) | {pk for pk, _, _ in ranked}
    sources = [("trending", category), ("trending", None), ("popular", category), ("popular", None)]
    for kind, cat in dict.fromkeys(sources):
        if len(out) >= limit:
            break
        for pk, score in _ranked_ids(kind, cat):
            if pk not in seen:
                seen.add(pk)
                out.append((pk, score, kind))
    return out


# -- similar items -------------------------------------------------------------------------


def _normalised(scores: np.ndarray) -> np.ndarray:
    top = float(np.max(scores)) if len(scores) else 0.0
    return scores / top if top > 0 else scores


def _model_neighbours(loaded: LoadedModel | None, pk: int, n: int) -> list[tuple[int, float]]:
    if loaded is None or pk not in loaded.column:
        return []
    try:
        ids, scores = loaded.similar_items(loaded.column[pk], n)
    except NotImplementedError:
        return []
    keep = (ids >= 0) & np.isfinite(scores)
    return list(zip(loaded.pks(ids[keep]), _normalised(scores[keep].astype(float)).tolist(), strict=True))


def _blend(sources: dict[str, list[tuple[int, float]]], weights: dict[str, float]) -> Ranked:
    """Weighted sum of each source's scores; the reason is the source that contributed most."""
    total: dict[int, float] = {}
    best: dict[int, tuple[float, str]] = {}
    used = {name: rows for name, rows in sources.items() if rows}
    for name, rows in used.items():
        w = float(weights.get(name, 1.0)) if len(used) > 1 else 1.0
        for pk, score in rows:
            total[pk] = total.get(pk, 0.0) + w * score
            if w * score > best.get(pk, (float("-inf"), ""))[0]:
                best[pk] = (w * score, name)
    return sorted(((pk, s, best[pk][1]) for pk, s in total.items()), key=lambda t: -t[1])


def similar_items(
    product,
    limit: int = 8,
    *,
    rules: Rules | None = None,
    user=None,
    session_key: str | None = None,
    cached: bool = True,
) -> RecommendationList:
    """Products that look like ``product``, blended with the active model's item neighbours.

    Rules apply (inactive and out-of-stock never shown; the admin's rules scoped to this
    product's page; its "not similar" neighbours hidden, good matches first); a product
    without a vector gets popular products of its category. ``cached=False`` computes
    afresh (the admin preview). Raises ``DatabaseError`` only if even that fails.
    """
    rules = rules_for("similar-items", rules, anchor=product)
    act, arm = _experiment_arm("similar-items", user, session_key)
    depth = overfetch(limit, rules) + 8  # spare candidates for products excluded later
    key = _key("similar", product.pk, depth, rules.cache_key(), act.key, arm.key)
    pv_key = product_version_key(product.pk)
    hit = _cache_get_many([key, pv_key]) if cached else {}
    pv = hit.get(pv_key, "")
    cards: dict = {}
    if key in hit and hit[key][0] == pv:
        _, ranked, source = hit[key]
    else:
        ranked, source = _similar_ranked(product, depth, rules, act, arm.settings["SIMILAR_BLEND"], cards)
        timeout = int(visrec_settings.LIST_CACHE_SECONDS) if source != "popular" else 60
        if cached:
            _cache_set(key, (pv, ranked, source), timeout)
    found = _finish("similar-items", ranked, limit, rules, act, source, {product.pk}, (user, session_key), cards)
    found.arm = arm.label
    return found


def anchor_product(pk: int):
    """The product ``pk`` with what ``similar_items`` needs of an anchor (id, category), or None.

    One plain query (the other fields are deferred): the similar-items API looks the
    anchor up on every call.
    """
    quote = connection.ops.quote_name
    columns = [ProductSnapshot._meta.pk.column, ProductSnapshot._meta.get_field("category_id").column]
    sql = (
        f"SELECT {', '.join(quote(c) for c in columns)} FROM {quote(ProductSnapshot._meta.db_table)} "
        f"WHERE {quote(ProductSnapshot._meta.pk.column)} = %s"
    )
    try:
        key = product_key(pk)
    except ValidationError:
        return None
    return next(iter(raw_products(sql, [key])), None)


def _experiment_arm(widget: str, user, session_key: str | None) -> tuple[Active, experiments.Arm]:
    """The active versions and blend settings of this shopper's experiment arm (the defaults outside one)."""
    act, arm = active(), experiments.arm_for(widget, user, session_key)
    if arm.version is not None and arm.version.pk != act.version_id:
        act = Active(act.embedding, arm.version)
    return act, arm


def _similar_ranked(
    product, depth: int, rules: Rules, act: Active, blend: dict, cards: dict | None = None
) -> tuple[Ranked, str]:
    visual: list[tuple[int, float]] = []
    if act.embedding is not None:
        anchor = anchor_vector(product.pk, act.embedding)
        visual = nearest_products(anchor, act.embedding, depth, exclude=[product.pk], rules=rules, cards=cards)
    model = _model_neighbours(loaded_model(act.version), product.pk, depth)
    ranked = _blend({"visual": visual, "model": model}, dict(blend))
    source = "visual" if visual else "model" if model else "popular"
    if len(ranked) < depth:
        category = getattr(product, "category_id", None)
        seen = {product.pk} | {pk for pk, _, _ in ranked}
        fill = [(pk, s, "popular") for pk, s in _ranked_ids("popular", category) if pk not in seen]
        ranked += fill[: depth - len(ranked)]
    return ranked, source


def similar_items_or_fallback(product, limit: int = 8) -> list[Recommendation]:
    """Similar items as a plain list (kept for older callers)."""
    return similar_items(product, limit).items


# -- shopper history, session taste and "for you" ------------------------------------------


@dataclass
class History:
    """A shopper's latest events, newest first."""

    events: list[tuple[int, int, str, Any]] = field(default_factory=list)  # (id, product, kind, time)

    @property
    def last_id(self) -> int:
        return self.events[0][0] if self.events else 0

    @property
    def product_ids(self) -> list[int]:
        return list(dict.fromkeys(pk for _, pk, _, _ in self.events))


def history(user=None, session_key: str | None = None, limit: int | None = None) -> History:
    """The shopper's latest interactions (one indexed query)."""
    if not _has_shopper(user, session_key):
        return History()
    n = int(limit or visrec_settings.TASTE_HISTORY)
    quote = connection.ops.quote_name
    signed_in = user is not None and getattr(user, "is_authenticated", False)
    column, value = ("user_id", user.pk) if signed_in else ("session_key", session_key)
    sql = (  # as ``Interaction.objects.for_shopper`` selects, written out: this runs on every page
        f"SELECT id, product_id, kind, created_at FROM {quote(Interaction._meta.db_table)} "
        f"WHERE {quote(column)} = %s ORDER BY created_at DESC, id DESC LIMIT %s"
    )
    return History([tuple(row) for row in fetch_rows(sql, [value, n])[0]])


def _taste_weights(events: History) -> dict[int, float]:
    """Weight of each product in the shopper's taste: the event kinds' weights, halved every half-life."""
    weights = dict(visrec_settings.TASTE_WEIGHTS)
    half_life = max(float(visrec_settings.TASTE_HALF_LIFE_SECONDS), 1.0)
    now = timezone.now()
    out: dict[int, float] = {}
    for _, pk, kind, created in events.events:
        age = max((now - created).total_seconds(), 0.0)
        out[pk] = out.get(pk, 0.0) + float(weights.get(kind, 1.0)) * 0.5 ** (age / half_life)
    return out


def taste_expression(events: History, model: EmbeddingModel) -> SQLVector | None:
    """SQL for the shopper's live taste: the weighted sum of the primary image vectors of recent events.

    Computed inside PostgreSQL (``vector * array_fill(weight)`` summed), so the vectors
    never travel to Python and back; the HNSW query takes it as an init-plan parameter,
    as it would a literal. Cosine distance ignores the sum's length. NULL when none of the
    products has a vector (the neighbour query then finds nothing). None without events.
    """
    weights = _taste_weights(events)
    if not weights:
        return None
    n, dims = _names(), int(model.dimensions)
    sql = (
        f"(SELECT sum(t.{n.emb_vector}::vector * array_fill(w.weight, ARRAY[{dims}])::vector)::halfvec({dims}) "
        f"FROM unnest(%s::{n.pk_type}[], %s::real[]) AS w(product_id, weight) "
        f"JOIN {n.img} ti ON ti.{n.img_product} = w.product_id AND ti.{n.img_primary} "
        f"JOIN {n.emb} t ON t.{n.emb_image} = ti.{n.img_pk} AND t.{n.emb_model} = {int(model.pk)})"
    )
    return SQLVector(sql, (pk_array(weights), "{" + ",".join(repr(float(w)) for w in weights.values()) + "}"))


def _model_for_shopper(loaded: LoadedModel | None, key: str, events: History, n: int) -> list[tuple[int, float]]:
    if loaded is None or key not in loaded.row:
        return []
    import scipy.sparse as sp

    cols = [loaded.column[pk] for _, pk, _, _ in events.events if pk in loaded.column]
    row = sp.csr_matrix(
        (np.ones(len(cols), dtype=np.float32), (np.zeros(len(cols), dtype=np.int64), np.array(cols, dtype=np.int64))),
        shape=(1, len(loaded.items)),
    )
    row.sum_duplicates()
    ids, scores = loaded.model.recommend(np.array([loaded.row[key]]), row, N=n, items=loaded.neighbour_cols)
    ids, scores = ids[0], scores[0]
    keep = (ids >= 0) & np.isfinite(scores)
    scores = scores[keep].astype(float)
    if len(scores):
        scores = scores - min(float(scores.min()), 0.0)
    return list(zip(loaded.pks(ids[keep]), _normalised(scores).tolist(), strict=True))


def for_you(
    *,
    user=None,
    session_key: str | None = None,
    limit: int = 12,
    category=None,
    rules: Rules | None = None,
    events: History | None = None,
    exclude=(),
) -> RecommendationList:
    """Recommendations for a signed-in user or an anonymous session.

    Blends the active model's scores (when it knows the shopper) with the session's
    live taste; cold shoppers get what is trending in ``category`` (the page's
    category, a context hint, not a filter), then overall, then popular. ``events``:
    the shopper's :func:`history` when the caller has already read it. ``exclude``:
    product ids not to show (the product page's own product), kept out of the query
    parameters rather than the rules, so the rules' compiled SQL is shared by every page.
    """
    rules = rules_for("for-you", rules, category=category)
    act, arm = _experiment_arm("for-you", user, session_key)
    if events is None:
        events = history(user, session_key)
    user_id = user.pk if user is not None and getattr(user, "is_authenticated", False) else None
    shopper = shopper_key(user_id, session_key or "") if _has_shopper(user, session_key) else ""
    depth = overfetch(limit, rules) + 8
    cat_id = getattr(category, "pk", category)
    exclude = sorted({int(pk) for pk in exclude})
    key = _key("for-you", shopper, events.last_id, depth, cat_id, rules.cache_key(), act.key, arm.key, exclude)
    found = _cache_get_many([key]).get(key)
    if found is None:
        blend = arm.settings["FOR_YOU_BLEND"]
        found = _for_you_ranked(shopper, events, depth, cat_id, rules, act, blend, exclude)
        _cache_set(key, found, int(visrec_settings.LIST_CACHE_SECONDS))
    ranked, source = found
    found = _finish("for-you", ranked, limit, rules, act, source, set(exclude), shopper=(user, session_key))
    found.arm = arm.label
    return found


def _for_you_ranked(
    shopper: str, events: History, depth: int, cat_id, rules: Rules, act: Active, blend: dict, exclude=()
):
    seen = [*events.product_ids, *(pk for pk in exclude if pk not in set(events.product_ids))]
    model = _model_for_shopper(loaded_model(act.version), shopper, events, depth + len(exclude)) if shopper else []
    session: list[tuple[int, float]] = []
    if act.embedding is not None and events.events:
        taste = taste_expression(events, act.embedding)
        if taste is not None:
            session = nearest_products(
                taste,
                act.embedding,
                depth,
                exclude=seen,
                rules=rules,
                ef_search=int(visrec_settings.FOR_YOU_EF_SEARCH),
            )
    ranked = _blend({"model": model, "session": session}, dict(blend))
    source = "model+session" if model and session else "model" if model else "session" if session else ""
    if len(ranked) < depth:
        ranked = _fill(ranked, depth, cat_id, set(seen), rules)
        source = source or (ranked[0][2] if ranked else "empty")
    return ranked, source


def recently_viewed(
    *, user=None, session_key: str | None = None, limit: int = 8, exclude=(), events: History | None = None
) -> RecommendationList:
    """The shopper's recently viewed (or clicked, carted, bought) active products, newest first.

    ``events``: the shopper's :func:`history` when the caller has already read it.
    """
    if events is None:
        events = history(user, session_key)
    ids = [pk for pk in events.product_ids if pk not in set(exclude)]
    by_id = {p.pk: p for p in raw_products(*products_sql(ids, None))} if ids else {}
    items = [Recommendation(by_id[pk], 1.0, "recently-viewed") for pk in ids if pk in by_id][:limit]
    return RecommendationList("recently-viewed", items, None, None, "recently-viewed" if items else "empty")


# -- search by photo -----------------------------------------------------------------------


def _read_image(image) -> bytes:
    limit = int(visrec_settings.MAX_IMAGE_BYTES)
    if isinstance(image, bytes | bytearray):
        data = bytes(image)
    else:
        if hasattr(image, "seek"):
            image.seek(0)
        data = image.read(limit + 1)
    if len(data) > limit:
        raise InvalidImage(f"file too large: more than {limit:,} bytes")
    return data


def embed_query_image(image, model: EmbeddingModel) -> np.ndarray:
    """Validate and embed an uploaded photo with ``model``'s backbone (loaded once per process)."""
    from .embedding import _embedder_for

    pil = load_image(_read_image(image), int(visrec_settings.MAX_IMAGE_PIXELS))
    embedder = _embedder_for(model)
    if embedder is None:
        raise DatabaseError("the active embedding version's backbone cannot be loaded")
    return embedder.embed_arrays([embedder.prepare(pil)])[0]


def search_by_image(image, *, limit: int = 12, category=None, rules: Rules | None = None) -> RecommendationList:
    """Products that look like an uploaded photo (bytes or a file object).

    Raises :data:`InvalidImage` with a clear message for empty, corrupt, hostile or
    oversized files (``MAX_IMAGE_BYTES``, ``MAX_IMAGE_PIXELS``).
    """
    rules = rules_for("search-by-photo", rules, category=category)
    act = active()
    if act.embedding is None:
        load_image(_read_image(image), int(visrec_settings.MAX_IMAGE_PIXELS))  # still report a bad file
        return RecommendationList("search-by-photo", [], None, None, "empty")
    vector = embed_query_image(image, act.embedding)
    depth = overfetch(limit, rules)
    cards: dict = {}  # the neighbour query's products pass ``rules`` (and the category) already
    rows = nearest_products(vector, act.embedding, depth, category=category, rules=rules, cards=cards)
    ranked = [(pk, s, "visual") for pk, s in rows]
    return _finish("search-by-photo", ranked, limit, rules, act, "visual" if ranked else "empty", cards=cards)
