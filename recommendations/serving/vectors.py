"""Vector SQL: pgvector neighbour queries, search settings and prepared statements."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
from django.db import connection, connections, transaction

from ..conf import get_product_model, visrec_settings
from ..models import EmbeddingModel, ImageEmbedding, ImageState, ProductSnapshot
from ..replicas import serving_connection
from ..rules import Rules
from .cards import _card_fields, products_from_rows
from .results import ProductNotEmbedded
from .rules_sql import rules_where

logger = logging.getLogger(__name__)

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
    settings are reset afterwards so they never leak into the caller's queries. On the
    serving connection (a read replica's inside a serving read).
    """
    db = serving_connection()
    nested = db.in_atomic_block
    with transaction.atomic(using=db.alias):
        with db.cursor() as cursor:
            pairs = _search_settings(cursor, ef_search)
            cursor.execute(*_set_locally(pairs))
        yield
        if nested:
            with db.cursor() as cursor:
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
    db = serving_connection()
    if db.in_atomic_block:
        with vector_search(ef_search):
            return _rows(query)
    if isinstance(query, tuple) and visrec_settings.PREPARED_QUERIES:
        with db.cursor() as cursor:
            pairs = _search_settings(cursor, ef_search)
        try:
            return _prepared_rows(query, pairs)
        except IndexError:  # psycopg's pipeline exit lost track of a result (seen once at 1M; cf. psycopg#604)
            logger.warning("a prepared vector query lost its result in the pipeline; it runs again unprepared")
            db.close()  # (the connection's state is unknown: the next query reconnects)
    with db.cursor() as cursor:
        pairs = _search_settings(cursor, ef_search)
        with db.connection.pipeline():
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
def _prepared_cursor(pipeline: bool = False, db=None) -> Iterator[Any]:
    """A cursor with server-side parameters whose statements are prepared at their first run on the connection.

    Wrapped as Django wraps its own (its execute wrappers apply, and the debug log of tests
    and DEBUG shows the statements). Django's own cursors bind on the client and are not
    prepared; the connection's threshold is restored afterwards. ``pipeline``: the
    statements go out together (see :func:`search_rows`). ``db``: the Django connection
    (default: the serving connection); each connection prepares its own statements, a read
    replica's as the primary's.
    """
    import psycopg

    db = db or serving_connection()
    with db.cursor():  # Django's way in: connects (or fails) and checks a reused connection
        raw = db.connection
    threshold = raw.prepare_threshold
    raw.prepare_threshold = 0
    try:
        with (
            raw.pipeline() if pipeline else nullcontext(),
            db._prepare_cursor(_ServerCursor(psycopg.Cursor(raw), db)) as cursor,
        ):
            yield cursor
    finally:
        raw.prepare_threshold = threshold


def fetch_rows(sql: str, params, using: str | None = None) -> tuple[list[tuple], list[str]]:
    """Rows and column names of a written-out serving query (prepared once per connection, see ``PREPARED_QUERIES``).

    ``using``: the database alias (default: the serving connection's, a read replica's inside a serving read).
    """
    db = connections[using] if using else serving_connection()
    if not visrec_settings.PREPARED_QUERIES or db.vendor != "postgresql":
        with db.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall(), [c.name for c in cursor.description]
    with _prepared_cursor(db=db) as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall(), [c.name for c in cursor.description]


class _ServerCursor:
    """A psycopg cursor with server-side parameters, as Django's cursor wrappers read one.

    Django's debug log takes a statement's text from the cursor's last client-side
    composed query; this one composes it (only while queries are logged).
    """

    def __init__(self, cursor, db=None) -> None:
        self._cursor = cursor
        self._db = db or connection
        self._query = None

    def execute(self, sql, params=None):
        if self._db.queries_logged:
            self._query = SimpleNamespace(query=self._db.ops.compose_sql(sql, params).encode())
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
    with serving_connection().cursor() as own:
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
    return SQLVector(anchor_sql("%s", model), (product_key(product_id),))


def anchor_sql(product: str, model: EmbeddingModel) -> str:
    """SQL of the primary image vector (``halfvec(d)``) of the product whose key is the SQL ``product``."""
    n = _names()
    return (
        f"(SELECT a.{n.emb_vector} FROM {n.emb} a JOIN {n.img} ai ON ai.{n.img_pk} = a.{n.emb_image} "
        f"WHERE ai.{n.img_product} = {product} AND a.{n.emb_model} = {int(model.pk)} "
        f"ORDER BY ai.{n.img_primary} DESC, ai.{n.img_position}, a.{n.emb_image} LIMIT 1)"
        f"::halfvec({int(model.dimensions)})"
    )


def literal_vector(vector, model: EmbeddingModel) -> SQLVector:
    """A vector computed in Python (an uploaded photo's) as a query parameter."""
    return SQLVector(f"%s::halfvec({int(model.dimensions)})", (_vector_text(vector),), nullable=False)


def _vector_text(vector) -> str:
    """A query vector as pgvector text with 5 significant digits.

    The index compares ``halfvec`` values (about 3 significant digits), so this loses
    nothing, and it is half the text of Python's shortest round-trip floats, built faster.
    """
    return "[" + ",".join(map("{:.5g}".format, np.asarray(vector, dtype=np.float64).ravel().tolist())) + "]"


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
