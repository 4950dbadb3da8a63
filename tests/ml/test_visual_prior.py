"""ImageCF's new-item prior follows the shop's catalogue turnover; whitening fits the catalogue size."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recommendations.ml.base import FitContext
from recommendations.ml.blend import estimate_new_item_share
from recommendations.ml.visual import ImageCF, prepare_features


def _history(items_at_time):
    """Users x items matrices (all strength 1) from ``[(user, item, time), ...]``."""
    rows, cols, times = (np.array(c) for c in zip(*items_at_time, strict=True))
    shape = (rows.max() + 1, cols.max() + 1)
    user_items = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=shape)
    return user_items, FitContext(timestamps=sp.csr_matrix((times.astype(float), (rows, cols)), shape=shape))


def test_stable_catalogue_gives_new_items_no_share():
    # Every day the same 10 items are bought: nothing new late in the history.
    events = [(day, day % 10, day * 86400) for day in range(50)]
    user_items, context = _history(events)
    assert estimate_new_item_share(user_items, context) == 0.0


def test_turning_over_catalogue_gives_new_items_the_share():
    # Every day a new item is bought.
    events = [(day % 5, day, day * 86400) for day in range(50)]
    user_items, context = _history(events)
    assert estimate_new_item_share(user_items, context) == 1.0
    assert estimate_new_item_share(user_items, None) is None


def test_few_unseen_items_do_not_top_every_list():
    rng = np.random.default_rng(0)
    events = [(day % 7, int(rng.integers(0, 30)), day * 86400) for day in range(300)]
    user_items, context = _history(events)
    user_items = sp.csr_matrix(sp.hstack([user_items, sp.csr_matrix((user_items.shape[0], 1))]))
    context = FitContext(timestamps=sp.csr_matrix(sp.hstack([context.timestamps, sp.csr_matrix((7, 1))])))
    features = rng.normal(size=(user_items.shape[1], 16)).astype(np.float32)
    model = ImageCF().fit(user_items, features, context)
    unseen = user_items.shape[1] - 1
    assert model.log_prior[unseen] <= np.median(model.log_prior[:unseen])


def test_whitening_keeps_one_component_per_ten_items():
    rng = np.random.default_rng(0)
    features, _ = prepare_features(rng.normal(size=(50, 64)), whiten=32)
    assert np.linalg.matrix_rank(features) <= 5
