"""The Django <-> ml bridge for training: interactions and vectors -> matrices + id maps.

Matrix indices never leave ``recommendations.ml`` and this module; everything else
speaks primary keys (products) and shopper keys (``u<user pk>`` / ``s<session key>``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .conf import visrec_settings
from .models import EmbeddingModel, ImageEmbedding, Interaction, ProductSnapshot, SimilarityJudgement


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


def build_snapshot(embedding_model: EmbeddingModel | None = None) -> Snapshot:
    """Read every interaction of active, recommendable products (visrec's snapshots) and the active image vectors."""
    live = ProductSnapshot.objects.filter(active=True, recommendable=True)
    items = np.array(sorted(live.values_list("product_id", flat=True)), dtype=np.int64)
    column = {pk: i for i, pk in enumerate(items)}
    weights = _weights()
    users: dict[str, int] = {}
    rows, cols, values, times = [], [], [], []
    qs = Interaction.objects.filter(product_id__in=items).order_by("created_at", "pk")
    for user_id, session, product_id, kind, value, created in qs.values_list(
        "user_id", "session_key", "product_id", "kind", "value", "created_at"
    ).iterator(chunk_size=20_000):
        strength = value if kind == Interaction.Kind.RATING else weights.get(kind, 1.0) * (value or 1.0)
        rows.append(users.setdefault(shopper_key(user_id, session), len(users)))
        cols.append(column[product_id])
        values.append(strength)
        times.append(created.timestamp())
    return Snapshot(
        users=np.array(list(users), dtype=object),
        items=items,
        rows=np.array(rows, dtype=np.int64),
        cols=np.array(cols, dtype=np.int64),
        values=np.array(values, dtype=np.float32),
        times=np.array(times, dtype=np.float64),
        item_features=item_vectors(items, embedding_model or EmbeddingModel.objects.active()),
        **dict(zip(("judged_pairs", "judged_labels"), judgement_pairs(items), strict=True)),
    )


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
    """``(len(items), d)`` primary-image vectors in column order; zero rows where missing."""
    if model is None:
        return None
    out = np.zeros((len(items), model.dimensions), dtype=np.float32)
    column = {int(pk): i for i, pk in enumerate(items)}
    rows = ImageEmbedding.objects.filter(model=model, image__is_primary=True, image__product_id__in=items.tolist())
    for product_id, vector in rows.values_list("image__product_id", "vector").iterator(chunk_size=2000):
        out[column[product_id]] = np.asarray(vector, dtype=np.float32)
    return out


def complement_events(items: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Complete the look's training events on ``items``: shopper indices, item columns, unix seconds.

    Every event of ``COMPLEMENT_KINDS`` (basket additions, purchases), as parallel arrays.
    """
    column = {int(pk): i for i, pk in enumerate(items)}
    shoppers: dict[str, int] = {}
    who, cols, times = [], [], []
    events = Interaction.objects.filter(kind__in=list(visrec_settings.COMPLEMENT_KINDS), product_id__in=items.tolist())
    for user_id, session, product_id, created in events.values_list(
        "user_id", "session_key", "product_id", "created_at"
    ).iterator(chunk_size=20_000):
        who.append(shoppers.setdefault(shopper_key(user_id, session), len(shoppers)))
        cols.append(column[product_id])
        times.append(created.timestamp())
    return np.array(who, np.int64), np.array(cols, np.int64), np.array(times, np.float64)
