"""The defaults-tuning script picks what validates best on synthetic shops."""

from __future__ import annotations

import sys
from pathlib import Path

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
