"""Item kNN's neighbours come from the stored sparse rows: best first, only positive similarities."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recommendations.ml.base import top_n
from recommendations.ml.knn import ItemKNN


def _model(dense: list[list[float]]) -> ItemKNN:
    model = ItemKNN()
    rows, cols = np.nonzero(np.array(dense))
    values = np.array(dense, dtype=np.float32)[rows, cols]
    model.similarity = sp.csr_matrix((values, (rows, cols)), shape=(len(dense), len(dense)))
    return model


def test_neighbours_are_the_rows_positive_entries_best_first_ties_by_column():
    model = _model([[0, 0.5, 0.9, 0.5], [-0.1, 0, 0, 0], [0.2, 0, 0, 0.7], [0, 0, 0, 0]])
    ids, scores = model.similar_items(np.array([0, 1, 2, 3]), N=3)
    assert ids.tolist() == [[2, 1, 3], [-1, -1, -1], [3, 0, -1], [-1, -1, -1]]
    np.testing.assert_allclose(scores[0], [0.9, 0.5, 0.5])
    assert np.isneginf(scores[1]).all() and np.isneginf(scores[2, 2])
    assert model.similar_items(np.array([0]), N=1)[0].tolist() == [[2]]


def test_neighbours_equal_a_scan_of_the_dense_row():
    rng = np.random.default_rng(3)
    dense = rng.normal(size=(50, 50)) * (rng.random((50, 50)) < 0.2)
    model = _model(dense.tolist())
    items = np.arange(50)
    want_scores = model.similarity[items].toarray()
    want_scores[want_scores <= 0] = -np.inf
    want = top_n(want_scores, 8)
    got = model.similar_items(items, N=8)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_allclose(got[1], want[1])
