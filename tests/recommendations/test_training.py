"""Training as a product feature: versions, activate-only-if-better, portable artifacts."""

import json
import subprocess
import sys
from datetime import timedelta
from io import StringIO

import numpy as np
import pytest
import scipy.sparse as sp
from django.core.management import call_command
from django.utils import timezone

from recommendations import training
from recommendations.models import Interaction, ModelVersion

pytestmark = pytest.mark.django_db


@pytest.fixture
def shop(product_factory, settings, tmp_path):
    """200 products: 20 old best sellers, 10 new hits bought in the last weeks, 170 others."""
    settings.VISREC = {"CACHE_DIR": str(tmp_path), "TRAIN_HOLDOUT_FRACTION": 0.25, "TRAIN_METRIC": "recall@12"}
    products = [product_factory() for _ in range(200)]
    now = timezone.now()
    rows, rng = [], np.random.default_rng(0)

    def buy(user: int, p: int, days_ago: float) -> None:
        rows.append(
            Interaction(
                session_key=f"s{user}", product=products[p], kind="purchase", created_at=now - timedelta(days=days_ago)
            )
        )

    for u in range(60):
        for p in rng.choice(20, 3, replace=False):
            buy(u, p, 100 + rng.uniform(0, 50))
        buy(u, 30 + rng.integers(170), 60 + rng.uniform(0, 90))
        for p in rng.choice(10, 2, replace=False) + 20:
            buy(u, p, rng.uniform(0, 20))
    Interaction.objects.bulk_create(rows)
    return products


def test_first_version_is_activated_and_recorded(shop):
    version = training.train(["popularity"])
    assert version.is_active and version.kind == "popularity"
    assert version.data_size == {"users": 60, "items": 200, "interactions": 360}
    assert 0 <= version.metrics["recall@50"] <= 1 and "ndcg@12" in version.metrics
    assert version.training_seconds > 0 and version.artifact.endswith(".npz")


def test_new_version_is_activated_only_when_better(shop):
    old = training.train(["popularity"])
    # recent popularity wins on this data: activated, the old version stays
    better = training.train(["recent_popularity"])
    assert better.kind == "recent_popularity" and better.is_active
    old.refresh_from_db()
    assert not old.is_active and ModelVersion.objects.count() == 2
    # all-time popularity again: the incumbent competes on the same split and wins
    worse = training.train(["popularity"])
    assert worse.kind == "recent_popularity"  # the best candidate of the run is the incumbent's config
    assert not worse.is_active and ModelVersion.objects.get(is_active=True) == better
    # an older version can be re-activated
    training.activate(old)
    assert ModelVersion.objects.get(is_active=True) == old


def test_artifact_written_here_gives_identical_recommendations_elsewhere(shop, tmp_path):
    version = training.train(["recent_popularity"])
    loaded = training.load_version(version)
    users = np.arange(5)
    history = sp.random(5, 10, density=0.2, format="csr", random_state=1, dtype=np.float32)
    ids, _ = loaded.model.recommend(users, history, N=5)
    sp.save_npz(tmp_path / "history.npz", history)
    path = training.artifacts_dir() / version.artifact
    code = (
        "import json, sys, numpy as np, scipy.sparse as sp\n"
        "import recommendations.ml.popularity\n"
        "from recommendations.ml.base import Recommender\n"
        f"m = Recommender.load({str(path)!r})\n"
        f"ids, _ = m.recommend(np.arange(5), sp.load_npz({str(tmp_path / 'history.npz')!r}), N=5)\n"
        "print(json.dumps(ids.tolist()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == ids.tolist()
    assert list(loaded.items) == sorted(p.pk for p in shop)


def test_no_interactions_is_a_clear_error(db, settings, tmp_path):
    settings.VISREC = {"CACHE_DIR": str(tmp_path)}
    with pytest.raises(training.TrainingError, match="no interactions"):
        training.train(["popularity"])


def test_unknown_model_is_a_clear_error(shop):
    with pytest.raises(training.TrainingError, match="unknown model"):
        training.train(["no_such_model"])


def test_commands(shop):
    out = StringIO()
    call_command("visrec_train", "--models", "popularity,recent_popularity", stdout=out)
    assert "activated" in out.getvalue()
    out = StringIO()
    call_command("visrec_train", "--if-missing", stdout=out)
    assert "nothing to train" in out.getvalue() and ModelVersion.objects.count() == 1
    out = StringIO()
    call_command("visrec_evaluate", "--models", "popularity,recent_popularity", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:3] == ["model", "recall@12", "recall@50"]
    assert lines[1].startswith("recent_popularity")  # sorted by recall@50, best first
