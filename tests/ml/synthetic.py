"""Synthetic interaction data with known structure, for the model tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from recommendations.ml.base import FitContext
from recommendations.ml.evaluation import interactions_matrix, temporal_split

DAY = 86_400.0


@dataclass
class Synthetic:
    train: sp.csr_matrix
    context: FitContext
    features: np.ndarray
    test: sp.csr_matrix  # liked held-out interactions
    cold_items: np.ndarray
    user_group: np.ndarray
    item_group: np.ndarray


def clustered(
    n_groups: int = 6,
    items_per_group: int = 40,
    cold_per_group: int = 5,
    n_users: int = 300,
    dim: int = 16,
    days: float = 100.0,
    test_days: float = 20.0,
    seed: int = 0,
    groups_per_user: int = 1,
) -> Synthetic:
    """Users belong to groups and mostly buy (and rate highly) items of their group.

    Item image vectors cluster by group with noise. Item popularity is skewed and
    drifts (each item has a launch day; interest fades after it), and the last
    ``cold_per_group`` items of each group launch in the test period only. With
    ``groups_per_user`` > 1 a user has that many groups (``user_group`` is the first)
    and each own-group purchase picks one of them at random.
    """
    rng = np.random.default_rng(seed)
    n_items = n_groups * items_per_group
    item_group = np.repeat(np.arange(n_groups), items_per_group)
    centres = rng.normal(size=(n_groups, dim))
    features = centres[item_group] + 0.45 * rng.normal(size=(n_items, dim))
    features = (features / np.linalg.norm(features, axis=1, keepdims=True)).astype(np.float32)
    quality = rng.pareto(2.0, n_items) + 0.2
    split = days - test_days
    launch = rng.uniform(-days, split, n_items)
    is_cold = np.zeros(n_items, dtype=bool)
    for g in range(n_groups):
        cold = np.flatnonzero(item_group == g)[-cold_per_group:]
        is_cold[cold] = True
        launch[cold] = rng.uniform(split, days - 5, cold_per_group)
        quality[cold] = np.quantile(quality, 0.8)
    user_group = rng.integers(0, n_groups, n_users)
    groups = user_group[:, None]
    if groups_per_user > 1:
        groups = np.hstack([groups, rng.integers(0, n_groups, (n_users, groups_per_user - 1))])
    rows = []
    for u in range(n_users):
        for t in np.sort(rng.uniform(0, days, rng.integers(8, 20))):
            interest = quality * np.where(t >= launch, np.exp(-(t - launch) / 60.0), 0.0)
            own = rng.random() < 0.85
            group = user_group[u] if groups_per_user == 1 else rng.choice(groups[u])
            p = interest * ((item_group == group) if own else ~np.isin(item_group, groups[u]))
            item = rng.choice(n_items, p=p / p.sum())
            rating = rng.choice([4.0, 5.0]) if own else rng.choice([1.0, 2.0])
            rows.append((u, item, rating, t * DAY))
    users, items, values, stamps = (np.array(c) for c in zip(*rows, strict=True))
    users, items = users.astype(np.int64), items.astype(np.int64)
    train, test = temporal_split(users, items, values, stamps, split * DAY)
    shape = (n_users, n_items)
    liked = test & (values >= 4)
    return Synthetic(
        train=interactions_matrix(users, items, values, shape, train, aggregate="max"),
        context=FitContext(
            timestamps=interactions_matrix(users, items, stamps, shape, train, aggregate="max"),
            now=split * DAY,
        ),
        features=features,
        test=interactions_matrix(users, items, np.ones_like(values), shape, liked),
        cold_items=np.flatnonzero(is_cold),
        user_group=user_group,
        item_group=item_group,
    )


def tiny(seed: int = 0) -> tuple[sp.csr_matrix, np.ndarray, FitContext]:
    """A 12 x 20 matrix of 1-5 strengths with timestamps; items 18 and 19 have no image."""
    rng = np.random.default_rng(seed)
    n_users, n_items = 12, 20
    dense = np.where(rng.random((n_users, n_items)) < 0.3, rng.integers(1, 6, (n_users, n_items)), 0)
    dense[:, 17] = 0  # an item nobody has touched
    dense[np.arange(n_users), np.arange(n_users) % 17] = 3  # every user has something
    user_items = sp.csr_matrix(dense.astype(np.float32))
    stamps = user_items.copy()
    stamps.data = (1.6e9 + rng.uniform(0, 30 * DAY, stamps.nnz)).astype(np.float64)
    features = rng.normal(size=(n_items, 8)).astype(np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    features[18:] = 0.0
    return user_items, features, FitContext(timestamps=stamps)


@dataclass
class Baskets:
    """A shop's basket events with a planted compatibility: items of kind k are bought with kind ``partner[k]``."""

    vectors: np.ndarray  # (n, dim) unit image vectors, one tight cluster per kind
    kinds: np.ndarray  # (n,) kind of each item
    partner: np.ndarray  # (kinds,) the kind each kind goes with
    hits: np.ndarray  # the late period's best sellers
    events: object  # recommendations.ml.complements.Events


def baskets(
    seed: int = 0,
    n_kinds: int = 6,
    per_kind: int = 40,
    dim: int = 32,
    n_baskets: int = 800,
    days: float = 100.0,
    trend: str = "none",
    late_share: float = 0.4,
    n_hits: int = 5,
) -> Baskets:
    """Two-item baskets (one shopper, ten minutes apart), spread evenly over ``days``.

    In the last ``late_share`` of the days, ``trend`` "best sellers": the anchor's partner is
    one of ``n_hits`` best sellers of another kind instead of a compatible item; "distractors":
    the baskets stay compatible but two lone purchases of the best sellers come with each one
    (they sell now and go with nothing).
    """
    from recommendations.ml.complements import Events

    rng = np.random.default_rng(seed)
    kinds = np.repeat(np.arange(n_kinds), per_kind)
    centres = rng.normal(size=(n_kinds, dim))
    vectors = centres[kinds] + 0.35 * rng.normal(size=(len(kinds), dim))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    partner = (np.arange(n_kinds) + n_kinds // 2) % n_kinds
    hits = rng.choice(len(kinds), n_hits, replace=False)
    rows: list[tuple[int, int, float]] = []
    loners = n_baskets
    for b in range(n_baskets):
        at = 1.6e9 + days * DAY * (b + rng.random()) / n_baskets
        anchor = int(rng.integers(len(kinds)))
        late = b >= (1.0 - late_share) * n_baskets
        if trend == "best sellers" and late:
            other = hits[kinds[hits] != kinds[anchor]]
            mate = int(rng.choice(other))
        else:
            mate = int(rng.choice(np.flatnonzero(kinds == partner[kinds[anchor]])))
        rows += [(b, anchor, at), (b, mate, at + 600.0)]
        if trend == "distractors" and late:
            for hit in rng.choice(hits, 2):
                rows.append((loners, int(hit), at + 1200.0))
                loners += 1
    shoppers, items, times = (np.array(c) for c in zip(*rows, strict=True))
    return Baskets(vectors, kinds, partner, hits, Events(shoppers, items, times.astype(np.float64)))
