"""'For you' from the live session when the active model reads sequences (SASRec, GRU4Rec).

A sequence model scores what comes next after the shopper's own events, in order: it
needs no row learned at training time, so every shopper with events gets its scores,
a new visitor as much as a regular one, and every new event changes them at once.
The products the shopper has had are left out, as for every other model.

One forward pass in numpy over at most ``max_len`` events and one product per
catalogue item (see :mod:`recommendations.ml.sequence`); torch is never imported here.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def is_sequential(model: Any) -> bool:
    """Whether ``model`` ranks from the order of a shopper's events."""
    return bool(getattr(model, "sequential", False))


def session_columns(column: dict[int, int], product_ids_newest_first: list[int], max_len: int) -> np.ndarray:
    """The model's item columns of the shopper's products, oldest first, at most ``max_len`` (the newest).

    Each product counts once, at its latest event; products the model does not know
    (added after its training) are skipped.
    """
    cols = [column[pk] for pk in product_ids_newest_first if pk in column][:max_len]
    return np.asarray(cols[::-1], dtype=np.int64)


def recommend_for_session(
    model: Any, column: dict[int, int], product_ids_newest_first: list[int], n: int, items: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``n`` item columns (and scores) after the shopper's events; the shopper's own products excluded.

    ``product_ids_newest_first``: every product of the shopper's recent events, each once
    (``History.product_ids``). ``items``: the columns that may be recommended (None: all).
    """
    sequence = session_columns(column, product_ids_newest_first, int(model.max_len))
    known = np.asarray([column[pk] for pk in product_ids_newest_first if pk in column], dtype=np.int64)
    ids, scores = model.recommend_sequences([sequence], N=n + len(known), filter_seen=False, items=items)
    keep = ~np.isin(ids[0], known)  # every product had, also the ones older than the sequence read
    return ids[0][keep][:n], scores[0][keep][:n]
