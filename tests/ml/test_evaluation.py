"""Splits and metrics of recommendations.ml.evaluation against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from recommendations.ml import evaluation as ev
from recommendations.ml.base import Recommender

L2 = np.log2


# -- metrics -----------------------------------------------------------------------------
# user 0: hits at ranks 2 and 4 (items 2, 4); relevant {2, 4, 9}
# user 1: no hit; relevant {7}; only two items recommended (padding)
REC = np.array([[1, 2, 3, 4], [5, 6, -1, -1]])
RELEVANT = [{2, 4, 9}, {7}]


def test_hit_matrix_ignores_padding():
    expected = [[False, True, False, True], [False, False, False, False]]
    np.testing.assert_array_equal(ev.hit_matrix(REC, RELEVANT), expected)
    assert not ev.hit_matrix(np.array([[-1, -1]]), [{0}]).any()


@pytest.mark.parametrize(
    ("func", "k", "expected"),
    [
        (ev.precision_at_k, 1, [0.0, 0.0]),
        (ev.precision_at_k, 2, [1 / 2, 0.0]),
        (ev.precision_at_k, 4, [2 / 4, 0.0]),
        (ev.recall_at_k, 2, [1 / 3, 0.0]),
        (ev.recall_at_k, 4, [2 / 3, 0.0]),
        (ev.hit_rate_at_k, 1, [0.0, 0.0]),
        (ev.hit_rate_at_k, 2, [1.0, 0.0]),
        # DCG: rank 2 -> 1/log2(3), rank 4 -> 1/log2(5); ideal over min(k, 3) hits
        (ev.ndcg_at_k, 2, [(1 / L2(3)) / (1 + 1 / L2(3)), 0.0]),
        (ev.ndcg_at_k, 4, [(1 / L2(3) + 1 / L2(5)) / (1 + 1 / L2(3) + 1 / L2(4)), 0.0]),
        # AP: precision at each hit (1/2 at rank 2, 2/4 at rank 4) / min(k, |R|)
        (ev.map_at_k, 2, [(1 / 2) / 2, 0.0]),
        (ev.map_at_k, 4, [(1 / 2 + 2 / 4) / 3, 0.0]),
    ],
)
def test_ranking_metrics_by_hand(func, k, expected):
    np.testing.assert_allclose(func(REC, RELEVANT, k), expected)


def test_ndcg_is_one_for_a_perfect_list_and_ideal_uses_min_k_relevant():
    rec = np.array([[7, 8, 1, 2]])
    np.testing.assert_allclose(ev.ndcg_at_k(rec, [{7, 8}], 4), [1.0])
    # five relevant items but k = 2: two hits at the top is perfect
    np.testing.assert_allclose(ev.ndcg_at_k(rec, [{7, 8, 20, 21, 22}], 2), [1.0])
    np.testing.assert_allclose(ev.map_at_k(rec, [{7, 8, 20, 21, 22}], 2), [1.0])


def test_relevant_as_sparse_matrix_and_mapping_agree():
    matrix = sp.csr_matrix(([1.0, 1.0, 1.0, 1.0], ([0, 0, 0, 1], [2, 4, 9, 7])), shape=(2, 10))
    mapping = {0: {2, 4, 9}, 1: {7}}
    for relevant in (matrix, mapping):
        np.testing.assert_allclose(ev.recall_at_k(REC, relevant, 4), [2 / 3, 0.0])


def test_explicit_zeros_in_a_relevance_matrix_are_not_relevant():
    matrix = sp.csr_matrix((np.array([1.0, 0.0]), (np.array([0, 0]), np.array([2, 4]))), shape=(2, 10))
    np.testing.assert_allclose(ev.recall_at_k(REC, matrix, 4), [1.0, 0.0])


def test_catalog_coverage():
    assert ev.catalog_coverage(REC, 2, n_items=10) == pytest.approx(4 / 10)  # {1, 2, 5, 6}
    assert ev.catalog_coverage(REC, 4, n_items=10) == pytest.approx(6 / 10)  # padding not counted
    assert ev.catalog_coverage(REC, 4, n_items=10, among=np.array([3, 4, 8, 9])) == pytest.approx(2 / 4)


def test_novelty_is_mean_self_information():
    # 4 training users: item 1 bought by 2, item 2 by all 4, items 5 and 6 by nobody
    train = sp.csr_matrix(
        np.array([[0, 1, 1, 0, 0, 0, 0], [0, 1, 1, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0, 0]])
    )
    popularity = ev.item_popularity(train)
    np.testing.assert_allclose(popularity[[1, 2, 5]], [2 / 4, 4 / 4, 1 / 4])  # unseen: as if seen once
    rec = np.array([[1, 2], [5, -1]])
    np.testing.assert_allclose(ev.novelty_at_k(rec, 2, popularity), [(1 + 0) / 2, 2.0])


def test_metrics_from_recommendations_with_cold_items():
    # items 4 and 7 have no training interaction (cold); 2 and 9 are warm
    train = sp.lil_matrix((3, 10))
    train[2, [1, 2, 3, 5, 6, 9]] = 1.0
    metrics = ev.metrics_from_recommendations(REC, RELEVANT, train.tocsr(), k_list=(4,), n_bootstrap=0)
    assert metrics["n_users"] == 2 and metrics["n_items"] == 10
    assert metrics["recall@4"] == pytest.approx((2 / 3 + 0) / 2)
    # cold relevance: user 0 {4} (hit at rank 4), user 1 {7} (missed)
    assert metrics["n_cold_users"] == 2
    assert metrics["cold_recall@4"] == pytest.approx((1.0 + 0.0) / 2)
    assert metrics["cold_ndcg@4"] == pytest.approx((1 / L2(5) + 0.0) / 2)
    assert metrics["cold_precision@4"] == pytest.approx((1 / 4 + 0) / 2)
    # cold items: 0, 4, 7, 8; recommended among them: 4 -> 1/4
    assert metrics["cold_coverage@4"] == pytest.approx(1 / 4)
    assert metrics["coverage@4"] == pytest.approx(6 / 10)
    assert "recall@4_low" not in metrics


def test_cold_metrics_skip_users_without_cold_relevant_items():
    train = sp.lil_matrix((3, 10))
    train[2, [1, 2, 3, 4, 5, 6, 9]] = 1.0  # now only 7 (and 0, 8) are cold
    metrics = ev.metrics_from_recommendations(REC, RELEVANT, train.tocsr(), k_list=(2,), n_bootstrap=0)
    assert metrics["n_cold_users"] == 1
    assert metrics["cold_recall@2"] == 0.0


# -- bootstrap ---------------------------------------------------------------------------
def test_bootstrap_is_deterministic_and_brackets_the_mean():
    values = np.random.default_rng(1).random(200)
    low, high = ev.bootstrap_ci(values, n=500, seed=7)
    assert (low, high) == ev.bootstrap_ci(values, n=500, seed=7)
    assert (low, high) != ev.bootstrap_ci(values, n=500, seed=8)
    assert low < values.mean() < high
    # about mean +- 1.96 standard errors
    se = values.std() / math.sqrt(len(values))
    assert high - low == pytest.approx(2 * 1.96 * se, rel=0.2)


def test_bootstrap_edge_cases():
    assert ev.bootstrap_ci(np.full(10, 0.25), n=100) == (0.25, 0.25)
    low, high = ev.bootstrap_ci(np.array([]))
    assert math.isnan(low) and math.isnan(high)


# -- splits ------------------------------------------------------------------------------
# row:        0  1  2  3  4  5  6
USERS = np.array([0, 0, 0, 1, 1, 2, 0])
ITEMS = np.array([0, 1, 2, 0, 3, 4, 5])
VALUES = np.ones(7)
TIMES = np.array([1, 2, 3, 1, 5, 4, 3])


def test_paired_bootstrap_sees_a_consistent_small_win_that_separate_intervals_miss():
    # given two models on the same 400 users: user difficulty varies a lot, and model a
    # hits one more item than model b for one user in ten
    rng = np.random.default_rng(0)
    b = rng.uniform(0.0, 0.5, 400)
    a = b + np.where(np.arange(400) % 10 == 0, 0.1, 0.0)
    # when
    mean, low, high = ev.paired_bootstrap_diff(a, b, n=1000, seed=0)
    # then the paired interval of the difference excludes 0
    assert mean == pytest.approx(0.01)
    assert 0.0 < low < mean < high
    # while the two unpaired intervals overlap
    a_low, _ = ev.bootstrap_ci(a, 1000, 0)
    _, b_high = ev.bootstrap_ci(b, 1000, 0)
    assert a_low < b_high


def test_paired_bootstrap_of_a_tie_straddles_zero_and_needs_the_same_users():
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0, 1, 300), rng.uniform(0, 1, 300)
    mean, low, high = ev.paired_bootstrap_diff(a, a.copy())
    assert mean == low == high == 0.0
    _, low, high = ev.paired_bootstrap_diff(a, b[rng.permutation(300)])
    assert low < 0.0 < high
    assert all(math.isnan(x) for x in ev.paired_bootstrap_diff(np.zeros(0), np.zeros(0)))
    with pytest.raises(ValueError):
        ev.paired_bootstrap_diff(a, b[:10])


def test_temporal_split():
    train, test = ev.temporal_split(USERS, ITEMS, VALUES, TIMES, split_time=3)
    np.testing.assert_array_equal(np.flatnonzero(test), [2, 4, 5, 6])
    np.testing.assert_array_equal(train, ~test)


def test_fraction_split_cuts_at_a_time():
    # sorted times 1 1 2 3 3 4 5; last 3/7 of rows -> cut at time 3, ties stay together (4 rows)
    assert ev.fraction_cut_time(TIMES, 3 / 7) == 3
    train, test = ev.fraction_split(USERS, ITEMS, VALUES, TIMES, 3 / 7)
    np.testing.assert_array_equal(np.flatnonzero(test), [2, 4, 5, 6])
    train, test = ev.fraction_split(USERS, ITEMS, VALUES, TIMES, 1 / 7)
    np.testing.assert_array_equal(np.flatnonzero(test), [4])


def test_per_user_split():
    # user 0 has 4 rows (times 1, 2, 3, 3): round(0.5 * 4) = 2 -> rows 2 and 6 (tie: later row is later)
    # user 1 has 2 rows: 1 -> row 4; user 2 has 1 row: keeps it for training
    train, test = ev.per_user_split(USERS, ITEMS, VALUES, TIMES, 0.5)
    np.testing.assert_array_equal(np.flatnonzero(test), [2, 4, 6])
    np.testing.assert_array_equal(train, ~test)
    train, test = ev.per_user_split(USERS, ITEMS, VALUES, TIMES, 0.25)
    np.testing.assert_array_equal(np.flatnonzero(test), [4, 6])  # user 0: 1 of 4; user 1: round(0.5)=1 of 2


def test_leave_last_out():
    train, test = ev.leave_last_out(USERS, ITEMS, VALUES, TIMES)
    np.testing.assert_array_equal(np.flatnonzero(test), [4, 6])  # user 2 has a single row: no test


def test_validation_split_cuts_inside_training_only():
    train, test = ev.temporal_split(USERS, ITEMS, VALUES, TIMES, split_time=4)
    fit, val = ev.validation_split(USERS, ITEMS, VALUES, TIMES, train, "temporal", split_time=3)
    np.testing.assert_array_equal(np.flatnonzero(fit), [0, 1, 3])
    np.testing.assert_array_equal(np.flatnonzero(val), [2, 6])
    assert not (fit | val)[test].any()
    fit, val = ev.validation_split(USERS, ITEMS, VALUES, TIMES, train, "leave_last_out")
    np.testing.assert_array_equal(np.flatnonzero(val), [6])  # user 1's only training row stays
    with pytest.raises(ValueError, match="unknown split"):
        ev.validation_split(USERS, ITEMS, VALUES, TIMES, train, "random")


def test_interactions_matrix_sum_and_max_and_relevant_sets():
    users, items = np.array([0, 0, 1]), np.array([2, 2, 1])
    summed = ev.interactions_matrix(users, items, np.array([1.0, 2.0, 5.0]), (2, 3))
    np.testing.assert_array_equal(summed.toarray(), [[0, 0, 3], [0, 5, 0]])
    latest = ev.interactions_matrix(users, items, np.array([10.0, 7.0, 3.0]), (2, 3), aggregate="max")
    np.testing.assert_array_equal(latest.toarray(), [[0, 0, 10], [0, 3, 0]])
    masked = ev.interactions_matrix(users, items, np.ones(3), (2, 3), mask=np.array([True, False, False]))
    assert masked.nnz == 1
    assert ev.relevant_sets(USERS, ITEMS, TIMES >= 3) == {0: {2, 5}, 1: {3}, 2: {4}}


# -- evaluate ----------------------------------------------------------------------------
class FixedScores(Recommender):
    """Scores every user the same: item j scores -j (lower ids first)."""

    name = "test_fixed_scores"  # never registered

    def fit(self, user_items, item_features=None, context=None, show_progress=False):
        self.n_items = user_items.shape[1]
        return self

    def score(self, userids, user_items):
        return np.tile(-np.arange(self.n_items, dtype=np.float32), (len(userids), 1))


def test_evaluate_filters_training_items_and_picks_users():
    train = sp.csr_matrix(np.array([[1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0]], dtype=np.float32))
    # user 0: relevant {0 (in training: dropped), 1, 5}; user 1 has no training row; user 2 relevant {0}
    test = {0: {0, 1, 5}, 1: {2}, 2: {0}}
    model = FixedScores().fit(train)
    metrics = ev.evaluate(model, train, test, k_list=(2,), n_bootstrap=0, batch_size=1)
    # user 0 gets [1, 2] (0 filtered): recall 1/2; user 2 gets [0, 2]: recall 1
    assert metrics["n_users"] == 2
    assert metrics["recall@2"] == pytest.approx((1 / 2 + 1) / 2)
    assert metrics["precision@2"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    kept = ev.evaluate(model, train, test, k_list=(2,), n_bootstrap=0, drop_train_items=False)
    assert kept["recall@2"] == pytest.approx((1 / 3 + 1) / 2)


def test_evaluate_reports_confidence_intervals():
    rng = np.random.default_rng(0)
    train = sp.csr_matrix((rng.random((60, 30)) < 0.2).astype(np.float32))
    test = sp.csr_matrix((rng.random((60, 30)) < 0.1).astype(np.float32))
    model = FixedScores().fit(train)
    metrics = ev.evaluate(model, train, test, k_list=(5, 10), n_bootstrap=200, seed=3)
    for key in ("recall@5", "ndcg@10", "map@10", "hit_rate@5", "precision@10", "novelty@5"):
        assert metrics[f"{key}_low"] <= metrics[key] <= metrics[f"{key}_high"]
    assert metrics == ev.evaluate(model, train, test, k_list=(5, 10), n_bootstrap=200, seed=3)
    with pytest.raises(ValueError, match="exceeds"):
        ev.metrics_from_recommendations(np.zeros((2, 3), int), [{0}, {1}], train, k_list=(5,))
