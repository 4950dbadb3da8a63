"""The defaults-tuning script picks what validates best on synthetic shops."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tuner():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import tune_defaults

    return tune_defaults


def test_choose_takes_best_mean_and_first_on_ties(tuner):
    assert tuner.choose({(1,): [0.2, 0.2], (3,): [0.1, 0.5], (5,): [0.3, 0.1]}) == (3,)
    assert tuner.choose({(1,): [0.2, 0.4], (3,): [0.3, 0.3]}) == (1,)


def test_tune_picks_the_setting_that_validates_best(tuner):
    """Shoppers with three taste groups: scoring by the single closest taste (temperature 0) ranks
    worse on validation than mixing the tastes, and the tuner keeps the mix."""
    from tests.ml.synthetic import clustered

    shops = []
    for seed in (0, 1):
        data = clustered(seed=seed, n_groups=16, items_per_group=30, n_users=150, groups_per_user=3)
        shops.append(tuner.Shop("three tastes", data.train, data.context, data.features))
    start = {"max_tastes": 3, "items_per_taste": 4, "taste_temperature": 0.2, "half_life_days": None}
    chosen, rows = tuner.tune(shops, start, [{"taste_temperature": (0.0, 1.0)}])

    assert chosen["taste_temperature"] == 1.0
    assert [row[0] for row in rows] == ["taste_temperature=0.0", "taste_temperature=1.0 **chosen**"]
    assert float(rows[1][1]) > float(rows[0][1])


def test_main_runs_end_to_end_on_one_seed(tuner, monkeypatch, capsys):
    monkeypatch.setattr(tuner, "GRID", [{"max_tastes": (1, 3)}])
    monkeypatch.setattr(tuner, "SHAPES", {"small": lambda seed: tuner.clustered_shop(seed, n_users=80)})

    chosen = tuner.main(["--only", "image-cf", "--seeds", "0", "--no-write"])["image-cf"]

    assert chosen["max_tastes"] in (1, 3)
    out = capsys.readouterr().out
    assert f"CHOSEN max_tastes={chosen['max_tastes']}" in out


def test_the_complements_section_tunes_on_basket_shops_and_picks_their_fallback_prior(tuner, monkeypatch, capsys):
    """Shops whose newest baskets pair the best sellers: the fallback prior weight is a large one."""
    monkeypatch.setattr(tuner, "COMPLEMENT_GRID", [{"rank": (4, 8)}])
    small = {"n_baskets": 300, "trend": "best sellers"}
    monkeypatch.setattr(tuner, "BASKET_SHAPES", {"small": lambda seed: tuner.planted_baskets_shop(seed, **small)})
    monkeypatch.setattr(tuner, "COMPLEMENT_START", {**tuner.COMPLEMENT_START, "dims": 16})

    chosen = tuner.main(["--only", "complements", "--seeds", "0", "--no-write"])["complements"]

    assert chosen["rank"] in (4, 8) and chosen["prior_weight"] >= 2.0
    out = capsys.readouterr().out
    assert "| rank=4" in out and "| prior_weight=0.0 |" in out
    assert f"CHOSEN complements rank={chosen['rank']}" in out


def test_close_colour_threshold_is_the_lowest_that_keeps_two_colours_apart(tuner):
    rates = [(0.5, 0.99, 0.20), (0.6, 0.95, 0.06), (0.7, 0.90, 0.05), (0.8, 0.70, 0.01)]
    assert tuner.choose_close_colour(rates) == 0.7
    assert tuner.choose_close_colour(rates, false_close=0.01) == 0.8
    assert tuner.choose_close_colour(rates, false_close=0.0) == 0.8  # none qualifies: the strictest


def test_close_colour_rates_count_pairs_of_one_and_of_two_colours(tuner):
    histograms = np.array([[1.0, 0.0], [1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    rates = dict((t, (same, two)) for t, same, two in tuner.close_colour_rates(histograms, ["r", "r", "b", "b"]))
    # one-colour pairs: (0,1) cosine 1.0, (2,3) 0.8; two-colour pairs: 0.6, 0.0, 0.6, 0.0
    assert rates[0.4] == (1.0, 0.5)
    assert rates[0.65] == (1.0, 0.0)
    assert rates[0.85] == (0.5, 0.0)


def test_the_configured_close_colour_holds_on_demo_drawings_it_was_not_set_on(tuner):
    """On a demo catalogue drawn with another seed, the shipped threshold still calls few pairs of two
    colours close and most pairs of one colour close (the drawings' own colour names)."""
    from catalog.demo.simulation import plan_catalog
    from recommendations.conf import visrec_settings

    plans = plan_catalog(160, seed=97)
    histograms = tuner.close_colour_histograms(plans)
    threshold = float(visrec_settings.WHY_CLOSE_COLOUR)
    [(_, same, two)] = tuner.close_colour_rates(histograms, [p.image.colour for p in plans], (threshold,))
    assert two <= 0.08
    assert same >= 0.8
