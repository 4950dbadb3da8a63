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

    chosen = tuner.main(["--seeds", "0", "--no-write"])

    assert chosen["max_tastes"] in (1, 3)
    out = capsys.readouterr().out
    assert f"CHOSEN max_tastes={chosen['max_tastes']}" in out
