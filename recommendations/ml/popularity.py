"""Popularity baselines: all-time and time-decayed (recent) item popularity.

Both recommend the same ranking to everybody (minus what a shopper already has), so
they are also the fallback for shoppers with no history. On fashion data recent
popularity (what sold in the last weeks) is a strong baseline; all-time popularity
goes stale as the range changes.
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp

from .base import FitContext, Recommender, register

logger = logging.getLogger(__name__)

DAY = 86_400.0


def decay_weights(
    timestamps: np.ndarray, now: float, half_life_days: float | None, window_days: float | None = None
) -> np.ndarray:
    """Weight of interactions by age: ``0.5 ** (age / half_life)``, 0 outside the window.

    Parameters
    ----------
    timestamps : numpy.ndarray
        Unix seconds.
    now : float
        Reference time; interactions after it count as age 0.
    half_life_days : float, optional
        Half-life; ``None`` = no decay.
    window_days : float, optional
        Only interactions at most this old count; ``None`` = all.
    """
    age = np.maximum(now - np.asarray(timestamps, dtype=np.float64), 0.0) / DAY
    weights = np.ones_like(age) if not half_life_days else np.exp2(-age / half_life_days)
    if window_days is not None:
        weights = np.where(age <= window_days, weights, 0.0)
    return weights


def reference_time(context: FitContext | None) -> float | None:
    """``context.now``, else the latest timestamp, else ``None``."""
    if context is None or context.timestamps is None:
        return None
    if context.now is not None:
        return float(context.now)
    data = context.timestamps.data
    return float(data.max()) if data.size else None


def recent_item_counts(
    user_items: sp.csr_matrix,
    context: FitContext | None,
    half_life_days: float | None,
    window_days: float | None = None,
) -> np.ndarray:
    """Per-item sum of interaction strength weighted by :func:`decay_weights`.

    Falls back to undecayed sums (with a warning) when ``context`` has no timestamps.
    Entries of ``user_items`` without a timestamp do not count.
    """
    user_items = sp.csr_matrix(user_items)
    now = reference_time(context)
    if now is None:
        if half_life_days or window_days is not None:
            logger.warning("no timestamps in the fit context: using all-time popularity")
        return np.asarray(user_items.sum(axis=0), dtype=np.float64).ravel()
    ts = sp.csr_matrix(context.timestamps, dtype=np.float64, copy=True)
    if ts.shape != user_items.shape:
        raise ValueError("context.timestamps must have the shape of user_items")
    ts.data = decay_weights(ts.data, now, half_life_days, window_days)
    weighted = user_items.multiply(ts)
    return np.asarray(weighted.sum(axis=0), dtype=np.float64).ravel()


class _ItemScoreRecommender(Recommender):
    """A model that gives every user the same item scores."""

    needs_item_features = False

    item_scores: np.ndarray

    def score(self, userids: np.ndarray, user_items: sp.csr_matrix) -> np.ndarray:
        userids = np.atleast_1d(userids)
        return np.tile(self.item_scores.astype(np.float32), (len(userids), 1))

    def get_state(self) -> dict[str, np.ndarray]:
        return {"item_scores": self.item_scores}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self.item_scores = np.asarray(state["item_scores"], dtype=np.float32)

    def _set_scores(self, counts: np.ndarray) -> None:
        top = counts.max(initial=0.0)
        self.item_scores = (counts / top if top > 0 else counts).astype(np.float32)


@register
class Popularity(_ItemScoreRecommender):
    """All-time popularity: total interaction strength per item (scaled to [0, 1])."""

    name = "popularity"

    def fit(
        self,
        user_items: sp.csr_matrix,
        item_features: np.ndarray | None = None,
        context: FitContext | None = None,
        show_progress: bool = False,
    ) -> Popularity:
        self._set_scores(np.asarray(sp.csr_matrix(user_items).sum(axis=0), dtype=np.float64).ravel())
        return self


@register
class RecentPopularity(_ItemScoreRecommender):
    """Time-decayed popularity: what sold lately, from ``FitContext.timestamps``.

    Parameters
    ----------
    half_life_days : float, optional
        An interaction's weight halves every ``half_life_days`` before the reference
        time (``context.now`` or the latest timestamp); ``None`` = no decay.
    window_days : float, optional
        Ignore interactions older than this; ``None`` = no window.
    """

    name = "recent_popularity"

    def __init__(self, half_life_days: float | None = 120.0, window_days: float | None = None) -> None:
        self.half_life_days = half_life_days
        self.window_days = window_days

    def fit(
        self,
        user_items: sp.csr_matrix,
        item_features: np.ndarray | None = None,
        context: FitContext | None = None,
        show_progress: bool = False,
    ) -> RecentPopularity:
        counts = recent_item_counts(user_items, context, self.half_life_days, self.window_days)
        # all-time popularity breaks ties among items unseen in the window
        total = np.asarray(sp.csr_matrix(user_items).sum(axis=0), dtype=np.float64).ravel()
        tie_break = 1e-6 * total / max(total.max(initial=0.0), 1.0) * max(counts.max(initial=0.0), 1e-12)
        self._set_scores(counts + tie_break)
        return self
