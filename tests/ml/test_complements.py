"""The compatibility model of "complete the look": it learns what goes with what from pairs of image vectors."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from recommendations.ml.complements import (
    MIN_VALIDATION_BASKETS,
    PRIOR_WEIGHTS,
    CompatibilityModel,
    copurchase_pairs,
    decayed_weights,
    fit_choosing_prior,
    top_partners,
    validate_prior,
)
from tests.ml.synthetic import baskets

pytest.importorskip("torch")

KINDS, PER_KIND, DIM = 6, 40, 32
PARTNER = np.array([3, 4, 5, 0, 1, 2])  # kind k goes with kind PARTNER[k] (jackets with trousers...)


def catalogue(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors in ``KINDS`` tight clusters (one per kind of product) and each item's kind."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(KINDS, DIM))
    kinds = np.repeat(np.arange(KINDS), PER_KIND)
    vectors = centres[kinds] + 0.35 * rng.normal(size=(len(kinds), DIM))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32), kinds


def planted_pairs(kinds: np.ndarray, seen: np.ndarray, n: int = 3000, seed: int = 1) -> np.ndarray:
    """Pairs (anchor, partner) of seen items where the partner is of the anchor's partner kind."""
    rng = np.random.default_rng(seed)
    anchors = rng.choice(seen, n)
    partners = np.array([rng.choice(seen[kinds[seen] == PARTNER[kinds[a]]]) for a in anchors])
    return np.stack([anchors, partners], axis=1)


@pytest.fixture(scope="module")
def fitted():
    vectors, kinds = catalogue()
    rng = np.random.default_rng(2)
    unseen = rng.choice(len(kinds), len(kinds) // 4, replace=False)  # never in a pair: "brand-new" products
    seen = np.setdiff1d(np.arange(len(kinds)), unseen)
    model = CompatibilityModel(rank=8, dims=16, epochs=15, lr=0.02, weight_decay=1e-4, seed=0)
    return model.fit(vectors, planted_pairs(kinds, seen)), vectors, kinds, unseen


def partner_share(scores: np.ndarray, anchors: np.ndarray, kinds: np.ndarray, k: int = 10) -> float:
    """Share of the top-``k`` of each anchor (itself left out) that is of its partner kind."""
    scores = scores.copy()
    scores[np.arange(len(anchors)), anchors] = -np.inf
    top = np.argsort(-scores, axis=1)[:, :k]
    return float((kinds[top] == PARTNER[kinds[anchors]][:, None]).mean())


def test_learns_the_planted_compatibility_and_generalises_to_unseen_anchors(fitted):
    # given a model fitted on pairs that never include the unseen products
    model, vectors, kinds, unseen = fitted
    # when the unseen products are anchors
    learned = partner_share(model.score(vectors[unseen], vectors), unseen, kinds)
    visual = partner_share(vectors[unseen] @ vectors.T, unseen, kinds)
    # then their best partners are of the partner kind, which visual similarity does not find
    assert learned > 0.9
    assert visual < 0.2


def test_codes_score_like_the_model_and_top_partners_skip_excluded_and_imageless_rows(fitted):
    model, vectors, kinds, unseen = fitted
    items = vectors.copy()
    items[5] = 0.0  # no image
    codes = model.item_codes(items)
    anchor = model.anchor_codes(vectors[unseen[:1]])[0]
    np.testing.assert_allclose(codes @ anchor, model.score(vectors[unseen[:1]], items)[0], rtol=1e-4, atol=1e-4)
    best = int(np.argmax(np.where(codes.any(axis=1), codes @ anchor, -np.inf)))
    rows, scores = top_partners(anchor, codes, 10, exclude=np.array([best]))
    assert best not in rows and 5 not in rows
    assert len(rows) == 10 and np.all(np.diff(scores) <= 0)


def test_save_and_load_round_trip_with_extra_arrays(fitted, tmp_path):
    model, vectors, _, _ = fitted
    codes = model.item_codes(vectors)
    path = model.save(tmp_path / "c.npz", item_codes=codes, items=np.arange(len(codes)))
    for mapped in (False, True):
        loaded, arrays = CompatibilityModel.load(path, mapped=mapped)
        assert loaded.params() == model.params()
        np.testing.assert_allclose(loaded.score(vectors[:3], vectors), model.score(vectors[:3], vectors), rtol=1e-5)
        np.testing.assert_array_equal(arrays["item_codes"], codes)


def test_an_unfitted_model_refuses_to_score_and_fit_needs_pairs():
    vectors, _ = catalogue()
    with pytest.raises(RuntimeError):
        CompatibilityModel().score(vectors[:1], vectors)
    with pytest.raises(ValueError):
        CompatibilityModel().fit(vectors, np.array([[1, 1]]))  # an item with itself is no pair


def test_copurchase_pairs_count_shoppers_within_the_window():
    day = 86_400.0
    shoppers = np.array([0, 0, 0, 1, 1, 0, 2, 2])
    items = np.array([1, 2, 1, 2, 1, 3, 4, 5])
    times = np.array([0, 100, 200, 0, 50, 3 * day, 0, 2 * day])
    pairs, counts = copurchase_pairs(shoppers, items, times, window=day)
    # shopper 0 and 1 both bought 1 and 2 within a day; 3 came days later; 4 and 5 were two days apart
    assert pairs.tolist() == [[1, 2]]
    assert counts.tolist() == [2.0]


def test_the_recent_popularity_prior_lifts_what_sells_now(fitted):
    model, vectors, kinds, unseen = fitted
    anchor = unseen[0]
    partners = np.flatnonzero(kinds == PARTNER[kinds[anchor]])
    plain = model.score(vectors[[anchor]], vectors)[0]
    last = partners[np.argmin(plain[partners])]  # the partner it likes least
    recent = np.zeros(len(vectors))
    recent[last] = 1000.0
    lifted = dataclasses.replace(model, prior_weight=5.0)
    codes = lifted.item_codes(vectors, recent)
    scores = codes @ lifted.anchor_codes(vectors[[anchor]])[0]
    assert np.argmax(scores) == last
    np.testing.assert_allclose(model.item_codes(vectors, recent), model.item_codes(vectors))  # weight 0: no prior


def test_decayed_weights_halve_per_half_life_of_the_older_items_last_event():
    day = 86_400.0
    pairs = np.array([[0, 1], [1, 2]])
    items, times = np.array([0, 1, 2, 1]), np.array([0.0, 10 * day, 20 * day, 20 * day])
    # pair (0, 1): item 0 last seen 20 days before the newest event; pair (1, 2): both seen last on day 20
    weights = decayed_weights(pairs, np.array([4.0, 2.0]), items, times, half_life=10 * day)
    np.testing.assert_allclose(weights, [1.0, 2.0])
    np.testing.assert_allclose(decayed_weights(pairs, np.array([4.0, 2.0]), items, times, 0.0), [4.0, 2.0])


# -- the popularity prior, chosen per shop at fit time ------------------------------------
SMALL = {"rank": 8, "dims": 16, "epochs": 10, "lr": 0.02, "weight_decay": 1e-4, "prior_weight": 1.0}
DAY = 86_400.0


def test_a_shop_whose_new_baskets_pair_the_best_sellers_gets_a_large_prior_weight():
    # given a shop whose newest baskets pair any product with one of five best sellers
    shop = baskets(trend="best sellers")
    # when the model is fitted on it
    model, recent = fit_choosing_prior(SMALL, shop.vectors, shop.events, DAY, 28 * DAY)
    # then the validation cut chose a large weight of what sells now, and the model serves with it
    choice = model.validation
    assert choice["reason"] == "validated" and choice["baskets"] >= MIN_VALIDATION_BASKETS
    assert model.prior_weight == choice["prior_weight"] >= 2.0
    by_prior = {(w, s): v for w, s, v in choice["hit_rates"]}
    assert choice["hit_rate"] == max(by_prior.values()) > by_prior[(0.0, None)] + 0.3
    assert set(np.argsort(-recent)[: len(shop.hits)]) == set(shop.hits)


def test_a_shop_whose_new_baskets_pair_compatible_pictures_gets_no_prior():
    # given a shop whose baskets stay image-compatible while lone purchases make other products sell now
    shop = baskets(trend="distractors")
    # when the model is fitted on it
    model, _ = fit_choosing_prior(SMALL, shop.vectors, shop.events, DAY, 28 * DAY)
    # then the prior (which would lift the best sellers into every list) gets weight 0
    assert model.validation["reason"] == "validated"
    assert model.prior_weight == model.validation["prior_weight"] == 0.0
    assert model.validation["hit_rate"] > max(v for w, _, v in model.validation["hit_rates"] if w)


def test_ties_keep_the_smaller_simpler_prior(monkeypatch):
    shop = baskets(n_baskets=200)
    monkeypatch.setattr("recommendations.ml.complements.hit_rate", lambda *args: 0.5)
    record = validate_prior(SMALL, shop.vectors, shop.events, DAY, 28 * DAY)
    assert (record["prior_weight"], record["prior_seconds"]) == (0.0, None)
    assert len(record["hit_rates"]) == 1 + 2 * sum(1 for w in PRIOR_WEIGHTS if w)


def test_a_shop_with_too_few_baskets_keeps_the_configured_prior(caplog):
    # given a shop with 30 baskets: 6 held out, fewer than the validation needs
    shop = baskets(n_baskets=30)
    # when the model is fitted on it
    with caplog.at_level("INFO", logger="recommendations.ml.complements"):
        model, recent = fit_choosing_prior(SMALL, shop.vectors, shop.events, DAY, 28 * DAY)
    # then no choice was made: the configured weight and window stay, and the log says why
    assert model.validation["reason"] == "too few baskets"
    assert model.validation["baskets"] < MIN_VALIDATION_BASKETS and model.validation["hit_rates"] == []
    assert model.prior_weight == 1.0 and model.validation["prior_seconds"] == 28 * DAY
    assert recent.sum() == (shop.events.times >= shop.events.times.max() - 28 * DAY).sum()
    assert "keeps the configured prior weight 1.0: too few baskets" in caplog.text


def test_the_choice_is_saved_with_the_model(tmp_path):
    shop = baskets(trend="best sellers", n_baskets=300)
    model, _ = fit_choosing_prior(SMALL, shop.vectors, shop.events, DAY, 28 * DAY)
    loaded, _ = CompatibilityModel.load(model.save(tmp_path / "m.npz"))
    assert loaded.validation == model.validation and loaded.validation["reason"] == "validated"
    assert loaded.prior_weight == model.validation["prior_weight"]


@pytest.mark.parametrize("exact_max", [10_000, 20], ids=["exact", "inverted file"])
def test_served_partners_are_the_models_best_codes_without_the_anchor_or_imageless_products(
    fitted, settings, exact_max
):
    """What serving answers (an index over the codes) is the model's own top partners by score."""
    from recommendations.serving.versions import complements_index

    settings.VISREC = {**settings.VISREC, "MODEL_NEIGHBOUR_EXACT": exact_max, "COMPLEMENT_PROBES": 10_000}
    model, vectors, _, unseen = fitted
    items = vectors.copy()
    items[5] = 0.0  # no image
    codes = model.item_codes(items)
    pks = np.arange(1000, 1000 + len(codes))
    served = complements_index(model, codes, pks)
    assert served.index.exact == (exact_max >= len(codes))
    for anchor in unseen[:5]:
        found = served.partners(vectors[anchor], 10, exclude=int(pks[anchor]))
        rows, scores = top_partners(model.anchor_codes(vectors[anchor : anchor + 1])[0], codes, 10, np.array([anchor]))
        assert [pk for pk, _ in found] == pks[rows].tolist()
        np.testing.assert_allclose([s for _, s in found], scores, rtol=1e-4, atol=1e-4)
        assert int(pks[5]) not in [pk for pk, _ in found]


def test_codes_and_axes_of_a_large_catalogue_need_no_temporary_as_large_as_it(fitted):
    """At a million products the image vectors are 5 GB: scoring and fitting read them a chunk at a time."""
    import tracemalloc

    from recommendations.ml.complements import principal_axes

    model, vectors, _, _ = fitted
    rng = np.random.default_rng(9)
    big = vectors[rng.integers(0, len(vectors), 400_000)]
    big[::7] = 0.0  # no image
    expected = (big[:1000] - model.mean) @ model.item_map

    def peak(fn):
        tracemalloc.start()
        try:
            return fn(), tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    codes, codes_peak = peak(lambda: model.item_codes(big))  # the codes themselves: 0.28 of the vectors' size
    (axes_mean, _), axes_peak = peak(lambda: principal_axes(big, 16))
    assert codes_peak < 0.6 * big.nbytes
    assert axes_peak < 0.4 * big.nbytes
    np.testing.assert_allclose(codes[1:7], expected[1:7], rtol=1e-5, atol=1e-6)
    assert not codes[::7].any()
    np.testing.assert_allclose(axes_mean, big[np.any(big, axis=1)].mean(axis=0, dtype=np.float64), rtol=1e-5, atol=1e-7)


def test_hit_rate_is_the_share_of_anchors_with_a_partner_in_their_top_k(fitted):
    from recommendations.ml.complements import hit_rate

    model, vectors, _, _ = fitted
    items = vectors.copy()
    items[7] = 0.0  # no image: never a hit
    rng = np.random.default_rng(3)
    anchors = rng.choice(np.arange(8, len(items)), 60, replace=False)
    partners = [np.append(rng.choice(len(items), 2, replace=False), 7) for _ in anchors]
    scores = model.score(items[anchors], items)
    scores[:, 7] = -np.inf
    scores[np.arange(len(anchors)), anchors] = -np.inf
    for k in (1, 5, 12):
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        expected = np.mean([np.isin(top[i], partners[i]).any() for i in range(len(anchors))])
        assert hit_rate(model, items, np.zeros(len(items)), anchors, partners, k) == pytest.approx(expected)
