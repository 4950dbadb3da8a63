"""The validated popularity prior: standardising, the weight it learns, persistence."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recommendations.ml.base import FitContext, Recommender
from recommendations.ml.blend import blend, log_popularity, standardise_rows, validation_cut
from recommendations.ml.knn import ItemKNN

DAY = 86_400.0


def _popularity_only(n_users: int = 200, n_items: int = 120, seed: int = 0):
    """Shoppers pick items by a skewed global popularity alone: no taste to learn."""
    rng = np.random.default_rng(seed)
    weights = rng.pareto(1.5, n_items) + 0.05
    rows, cols, times = [], [], []
    for user in range(n_users):
        items = rng.choice(n_items, size=12, replace=False, p=weights / weights.sum())
        rows += [user] * len(items)
        cols += items.tolist()
        times += sorted(rng.uniform(0, 100 * DAY, len(items)))
    shape = (n_users, n_items)
    user_items = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=shape)
    return user_items, FitContext(timestamps=sp.csr_matrix((times, (rows, cols)), shape=shape))


def test_standardise_rows_keeps_unrecommendable_items_out():
    scores = np.array([[1.0, 2.0, 3.0, -np.inf], [5.0, 5.0, 5.0, 5.0]], dtype=np.float32)
    out = standardise_rows(scores)
    np.testing.assert_allclose(out[0, :3], [-1.2247449, 0.0, 1.2247449], rtol=1e-5)
    assert out[0, 3] == -np.inf
    np.testing.assert_array_equal(out[1], 0.0)  # constant row: no information
    assert blend(scores, np.zeros(0, np.float32), 2.0) is scores


def test_validation_cut_holds_out_the_newest_entries():
    user_items, context = _popularity_only()
    fit, held, fit_context = validation_cut(user_items, context, fraction=0.25)
    assert fit.nnz + held.nnz == user_items.nnz and held.nnz == round(0.25 * user_items.nnz)
    newest_fit = sp.csr_matrix(context.timestamps).multiply(fit != 0).max()
    oldest_held = sp.csr_matrix(context.timestamps).multiply(held != 0).tocsr().data.min()
    assert newest_fit <= oldest_held
    assert fit_context.timestamps.nnz == fit.nnz


def test_prior_weight_is_learned_where_popularity_is_all_there_is():
    user_items, context = _popularity_only()
    model = ItemKNN().fit(user_items, None, context)
    assert model.weight >= 1.0
    fixed = ItemKNN(prior_weight=0.0).fit(user_items, None, context)
    assert fixed.weight == 0.0
    prior = log_popularity(user_items, context)
    assert abs(prior.mean()) < 1e-5 and abs(prior.std() - 1.0) < 1e-4


def test_learned_weight_survives_save_and_load(tmp_path):
    user_items, context = _popularity_only()
    model = ItemKNN().fit(user_items, None, context)
    loaded = Recommender.load(model.save(tmp_path / "knn.npz"))
    assert loaded.weight == model.weight
    users = np.arange(10)
    np.testing.assert_array_equal(
        loaded.recommend(users, user_items[users], N=5)[0], model.recommend(users, user_items[users], N=5)[0]
    )


def test_factor_models_score_a_subset_exactly_as_the_whole_catalogue():
    """Serving scores only the items a factor model knows; the values must be the full scores'."""
    from recommendations.ml.mf import ALS, BPR

    user_items, context = _popularity_only(n_users=150, n_items=300, seed=4)
    user_items = user_items.tolil()
    user_items[:, 250:] = 0  # 50 items nobody touched: zero factor rows
    user_items = user_items.tocsr()
    user_items.eliminate_zeros()
    for model in (ALS(factors=8, iterations=5, prior_weight=2.0), BPR(factors=8, iterations=20, prior_weight=1.0)):
        model.fit(user_items, context=context)
        assert model.weight > 0
        users = np.array([0, 7, 42])
        rows = user_items[users]
        subset = np.array([3, 17, 100, 249, 260])
        np.testing.assert_allclose(
            model.score_items(users, rows, subset), model.score(users, rows)[:, subset], rtol=1e-4, atol=1e-4
        )
        known = np.flatnonzero(np.linalg.norm(model.item_factors, axis=1) > 0)
        fast_ids, fast_scores = model.recommend(users, rows, N=10, items=known)
        full = model.score(users, rows)
        full[rows.nonzero()] = -np.inf
        unknown = np.setdiff1d(np.arange(user_items.shape[1]), known)
        full[:, unknown] = -np.inf
        for r in range(len(users)):
            np.testing.assert_allclose(fast_scores[r], np.sort(full[r])[::-1][:10], rtol=1e-4, atol=1e-4)
            assert not set(fast_ids[r]) & set(rows[r].indices)  # already liked: filtered
            assert set(fast_ids[r]) <= set(known)


def test_validation_standardises_each_twins_scores_once(monkeypatch):
    """The weights x priors tried on the validation cut share one standardised copy of a twin's scores."""
    from recommendations.ml import blend as blend_module

    calls = []
    real = blend_module.standardise_rows
    monkeypatch.setattr(blend_module, "standardise_rows", lambda s: calls.append(s.shape) or real(s))
    user_items, context = _popularity_only()
    ItemKNN(k=20).fit(user_items, None, context)
    assert len(calls) == 1  # one twin (ItemKNN tunes nothing else); once per weight and prior before (18)


def test_choose_blend_once_standardised_picks_what_blending_each_candidate_picks():
    from recommendations.ml.blend import PRIOR_WEIGHTS, choose_blend

    rng = np.random.default_rng(4)
    for trial in range(20):
        personal = rng.normal(size=(30, 40)).astype(np.float32)
        personal[:, :3] = np.round(personal[:, :3])  # ties
        priors = {(h, False): rng.normal(scale=trial / 10, size=40).astype(np.float32) for h in (None, 30.0)}
        seen = sp.random(30, 40, density=0.1, format="csr", random_state=trial)
        relevant = sp.random(30, 40, density=0.1, format="csr", random_state=trial + 100)
        once = choose_blend(personal, priors, PRIOR_WEIGHTS, seen, relevant, 5)  # the shared-standardisation path
        each = choose_blend(personal, priors, PRIOR_WEIGHTS, seen, relevant, 5, lambda p, pr, w: blend(p, pr, w))
        assert once == each


def _recall_by_ranking(scores, seen, relevant, k):
    """Recall@k by argpartition of every row (what per_user_recall did for every row before)."""
    scores = scores.copy()
    rows, cols = seen.nonzero()
    scores[rows, cols] = -np.inf
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k else np.zeros((len(scores), 0), np.int64)
    top = np.where(np.isfinite(np.take_along_axis(scores, top, axis=1)), top, -1)
    wanted = [relevant.indices[relevant.indptr[r] : relevant.indptr[r + 1]] for r in range(len(scores))]
    return np.array([np.isin(top[r], w).sum() / max(len(w), 1) for r, w in enumerate(wanted)])


def test_per_user_recall_by_threshold_equals_ranking_every_row():
    from recommendations.ml.blend import per_user_recall

    rng = np.random.default_rng(5)
    for trial in range(30):
        n_items = int(rng.integers(3, 60))
        scores = rng.normal(size=(25, n_items)).astype(np.float32)
        scores[:5] = np.round(scores[:5])  # ties at the threshold
        scores[5, :] = -np.inf  # nothing recommendable
        scores[6, : n_items // 2] = -np.inf
        scores[7, 0], scores[8, 1] = np.inf, np.nan
        seen = sp.random(25, n_items, density=0.2, format="csr", random_state=trial)
        relevant = sp.random(25, n_items, density=0.15, format="csr", random_state=trial + 50)
        for k in (0, 1, 5, n_items - 1, n_items, n_items + 3):
            got = per_user_recall(scores, seen, relevant, k)
            np.testing.assert_array_equal(got, _recall_by_ranking(scores, seen, relevant, k))
