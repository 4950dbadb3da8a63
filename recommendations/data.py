"""The Django <-> ml bridge for training: interactions and vectors -> matrices + id maps.

Matrix indices never leave ``recommendations.ml`` and this module; everything else
speaks primary keys (products) and shopper keys (``u<user pk>`` / ``s<session key>``).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from django.db import connection, transaction
from django.db.models import BigIntegerField, Case, CharField, F, Func, QuerySet, Value, When
from django.db.models.functions import Cast, Concat

from .conf import visrec_settings
from .models import EmbeddingModel, ImageEmbedding, ImageState, Interaction, ProductSnapshot, SimilarityJudgement


def shopper_key(user_id: int | None, session_key: str) -> str:
    """Stable key of a shopper: the user when signed in, else the session."""
    return f"u{user_id}" if user_id else f"s{session_key}"


@dataclass
class Snapshot:
    """Every interaction as parallel arrays, plus id maps and item image vectors."""

    users: np.ndarray  # shopper keys, index = matrix row
    items: np.ndarray  # product pks, index = matrix column
    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray  # weighted strength
    times: np.ndarray  # unix seconds
    item_features: np.ndarray | None
    judged_pairs: np.ndarray | None = None  # (m, 2) item columns (anchor, neighbour) the owner judged
    judged_labels: np.ndarray | None = None  # (m,) 1 good match, -1 not similar

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.users), len(self.items)

    def matrix(self, mask: np.ndarray | None = None) -> sp.csr_matrix:
        """Users x items strengths (summed) of the interactions selected by ``mask``."""
        sel = slice(None) if mask is None else mask
        m = sp.csr_matrix((self.values[sel], (self.rows[sel], self.cols[sel])), shape=self.shape, dtype=np.float32)
        m.sum_duplicates()
        return m

    def timestamps(self, mask: np.ndarray | None = None) -> sp.csr_matrix:
        """Users x items time of the latest selected interaction."""
        sel = slice(None) if mask is None else mask
        n_items = self.shape[1]
        times = self.times[sel]
        order = np.argsort(times, kind="stable")[::-1]  # newest first
        keys = (self.rows[sel] * n_items + self.cols[sel])[order]
        unique, first = np.unique(keys, return_index=True)  # first = newest of each pair
        return sp.csr_matrix((times[order][first], (unique // n_items, unique % n_items)), shape=self.shape)

    def data_size(self) -> dict:
        return {"users": len(self.users), "items": len(self.items), "interactions": int(len(self.rows))}


def _weights() -> dict[str, float]:
    return dict(visrec_settings.INTERACTION_WEIGHTS)


#: Rows fetched per round trip while interactions and vectors stream into arrays.
CHUNK_ROWS = 50_000

#: ``u<user pk>`` / ``s<session key>`` in SQL, as :func:`shopper_key` writes it.
_SHOPPER = Case(
    When(user_id__isnull=False, then=Concat(Value("u"), Cast("user_id", CharField()))),
    default=Concat(Value("s"), "session_key"),
    output_field=CharField(),
)
#: ``created_at`` in whole microseconds since the epoch (exact; ``datetime.timestamp()`` is this / 1e6).
_MICROS = Func(
    F("created_at"), template="(EXTRACT(EPOCH FROM %(expressions)s) * 1000000)::bigint", output_field=BigIntegerField()
)


def live_products() -> QuerySet:
    """The snapshots of the active, recommendable products (the columns of a training matrix)."""
    return ProductSnapshot.objects.filter(active=True, recommendable=True)


def build_snapshot(embedding_model: EmbeddingModel | None = None, item_features: bool = True) -> Snapshot:
    """Read every interaction of active, recommendable products (visrec's snapshots) and the active image vectors.

    ``item_features=False`` leaves the image vectors out (``Snapshot.item_features`` is
    None): at a million products they are 5 GB of float32, and most recommenders do not
    read them (see :func:`recommendations.training.needs_item_features`).
    """
    ids = live_products().order_by("product_id").values_list("product_id", flat=True)
    items = np.fromiter(ids.iterator(chunk_size=CHUNK_ROWS), dtype=np.int64)
    users, rows, cols, values, times = _interactions(items)
    features = item_vectors(items, embedding_model or EmbeddingModel.objects.active()) if item_features else None
    return Snapshot(
        users=np.array(list(users), dtype=object),
        items=items,
        rows=rows,
        cols=cols,
        values=values,
        times=times,
        item_features=features,
        **dict(zip(("judged_pairs", "judged_labels"), judgement_pairs(items), strict=True)),
    )


def _interactions(
    items: np.ndarray, kinds: list[str] | None = None
) -> tuple[dict[str, int], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Interactions of the live products (of ``kinds``, or all) in time order, chunk by chunk into arrays.

    The products are a semi-join on visrec's snapshot table (not a list of every live
    pk); returns ``(shopper key -> row, rows, cols, strengths, unix seconds)``, rows
    numbered by each shopper's first interaction.
    """
    qs = Interaction.objects.filter(product_id__in=live_products().values("product_id")).order_by("created_at", "pk")
    if kinds is not None:
        qs = qs.filter(kind__in=kinds)
    fields = qs.annotate(shopper=_SHOPPER, micros=_MICROS).values_list(
        "shopper", "product_id", "kind", "value", "micros"
    )
    users: dict[str, int] = {}
    parts: list[tuple[np.ndarray, ...]] = []
    for chunk in _chunks(fields.iterator(chunk_size=CHUNK_ROWS), CHUNK_ROWS):
        shoppers, products, kinds, values, micros = zip(*chunk, strict=True)
        rows = np.fromiter((users.setdefault(key, len(users)) for key in shoppers), dtype=np.int64, count=len(chunk))
        parts.append((rows, np.searchsorted(items, products), _strengths(kinds, values), np.array(micros) / 1e6))
    if not parts:
        return users, *(np.zeros(0, dtype=t) for t in (np.int64, np.int64, np.float32, np.float64))
    rows, cols, values, times = (np.concatenate(column) for column in zip(*parts, strict=True))
    return users, rows.astype(np.int64), cols.astype(np.int64), values, times.astype(np.float64)


def _chunks(iterable, size: int):
    """Lists of at most ``size`` items of ``iterable``."""
    it = iter(iterable)
    while chunk := list(itertools.islice(it, size)):
        yield chunk


def _strengths(kinds: Sequence[str], values: Sequence[float]) -> np.ndarray:
    """Weighted strength of each interaction: a rating's value, else weight(kind) x (value, or 1 when 0)."""
    values = np.array(values, dtype=np.float64)
    names, kind = np.unique(np.array(kinds, dtype=str), return_inverse=True)
    weights = _weights()
    weight = np.array([weights.get(name, 1.0) for name in names], dtype=np.float64)[kind]
    rating = names[kind] == Interaction.Kind.RATING
    return np.where(rating, values, weight * np.where(values == 0, 1.0, values)).astype(np.float32)


def judgement_pairs(items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The owner's similar-items judgements as item columns: ``(pairs (m, 2), labels (m,))``.

    Good matches are positive pairs (label 1), "not similar" negative ones (-1) in both
    directions (serving hides those both ways); pairs with an inactive product are left out.
    """
    column = {int(pk): i for i, pk in enumerate(items)}
    rows: dict[tuple[int, int], int] = {}
    judged = SimilarityJudgement.objects.values_list("product_id", "neighbour_id", "verdict").order_by("created_at")
    for product, neighbour, verdict in judged:
        if product not in column or neighbour not in column:
            continue
        a, b = column[product], column[neighbour]
        if verdict == SimilarityJudgement.GOOD:
            rows[(a, b)] = 1
        else:
            rows[(a, b)] = rows[(b, a)] = -1
    pairs = np.array(list(rows), dtype=np.int64).reshape(-1, 2)
    return pairs, np.array(list(rows.values()), dtype=np.int8)


def item_vectors(items: np.ndarray, model: EmbeddingModel | None) -> np.ndarray | None:
    """``(len(items), d)`` float32 primary-image vectors in column order; zero rows where missing.

    ``items`` are sorted product pks among the live ones (:func:`live_products`, joined in
    SQL). The halfvecs stream in binary (``halfvec_send``: 2-byte dimension, 2 unused
    bytes, big-endian float16s) from a server-side cursor, chunk by chunk, into the
    preallocated array: no per-row Python lists, and no copy of the whole result in libpq.
    """
    if model is None:
        return None
    d = int(model.dimensions)
    out = np.zeros((len(items), d), dtype=np.float32)
    if not len(items):
        return out
    connection.ensure_connection()
    record = np.dtype([("header", ">i2", 2), ("vector", ">f2", d)])
    with transaction.atomic(), connection.connection.cursor(name="visrec_item_vectors", binary=True) as cur:
        cur.itersize = CHUNK_ROWS
        cur.execute(_VECTORS_SQL, [model.pk])
        while chunk := cur.fetchmany(CHUNK_ROWS):
            products, blobs = zip(*chunk, strict=True)
            products = np.array(products, dtype=np.int64)
            if any(len(blob) != record.itemsize for blob in blobs):
                raise ValueError(f"a vector of {model} does not have its {d} dimensions")
            at = np.searchsorted(items, products)
            keep = (at < len(items)) & (items[np.minimum(at, len(items) - 1)] == products)
            vectors = np.frombuffer(b"".join(blobs), dtype=record)["vector"]
            out[at[keep]] = vectors[keep]
    return out


def complement_events(items: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Complete the look's training events on ``items``: shopper indices, item columns, unix seconds.

    Every event of ``COMPLEMENT_KINDS`` (basket additions, purchases) of the live products,
    as parallel arrays, read as :func:`build_snapshot` reads interactions.
    """
    _, rows, cols, _, times = _interactions(items, kinds=list(visrec_settings.COMPLEMENT_KINDS))
    return rows, cols, times


_VECTORS_SQL = f"""
SELECT s.product_id, halfvec_send(e.vector)
FROM {ImageEmbedding._meta.db_table} e
JOIN {ImageState._meta.db_table} s ON s.id = e.image_id AND s.is_primary
JOIN {ProductSnapshot._meta.db_table} p ON p.product_id = s.product_id AND p.active AND p.recommendable
WHERE e.model_id = %s
"""
