"""Visual models recover the demo shoppers' hidden tastes."""

import numpy as np
import pytest
from django.contrib.auth import get_user_model

from catalog.demo import builder
from catalog.demo.tastes import taste_recovery
from catalog.models import Product
from recommendations import embedding, training
from recommendations.data import build_snapshot
from recommendations.models import ImageState

pytestmark = pytest.mark.django_db


# The personal part (popularity prior off): the served lists blend in a validated popularity prior,
# which on a small demo may outweigh taste (test_every_model_beats_popularity_on_the_demo covers those).
@pytest.mark.parametrize(
    ("kind", "params"), [("image_cf", {"popularity_weight": 0.0}), ("vbpr", {"prior_weight": 0.0})]
)
def test_visual_model_lists_fit_hidden_tastes(settings, tmp_path, kind, params):
    settings.VAR_DIR = tmp_path
    demo = builder.build_demo(builder.DemoParams(products=150, users=30, seed=3))
    embedding.embed_images(ImageState.objects.values_list("pk", flat=True))
    snapshot = build_snapshot()
    if kind not in training.registry():
        pytest.fail(f"{kind} is not registered")
    model, _ = training.fit_model(kind, params, snapshot, None)
    users = np.array([i for i, key in enumerate(snapshot.users) if key.startswith("u")])
    ids, _ = model.recommend(users, snapshot.matrix()[users], N=12)
    names = dict(get_user_model().objects.values_list("pk", "username"))
    lists = {
        names[int(snapshot.users[u][1:])]: [int(snapshot.items[i]) for i in row if i >= 0]
        for u, row in zip(users, ids, strict=True)
    }
    share, chance = taste_recovery(lists, demo.tastes["users"], dict(Product.objects.values_list("pk", "attributes")))
    assert share > chance + 0.15, (share, chance)


#: Popularity variants that rank everybody alike: compared with popularity in docs/benchmarks/demo.md, not here.
POPULARITY_VARIANTS = {"popularity", "recent_popularity"}


@pytest.fixture
def one_torch_thread():
    """Small torch models train faster on one thread than on two busy cores."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_every_model_beats_popularity_on_the_demo(settings, tmp_path, one_torch_thread):
    # given a small demo shop (hidden tastes drive most of what shoppers look at) and its image vectors
    settings.VAR_DIR = tmp_path
    settings.VISREC = {**settings.VISREC, "TRAIN_HOLDOUT_FRACTION": 0.2}
    builder.build_demo(builder.DemoParams(products=240, users=160, seed=3))
    embedding.embed_images(ImageState.objects.values_list("pk", flat=True))
    snapshot = build_snapshot()
    # when every registered model is fitted on the older 80 % and ranks the newest 20 %
    candidates = training.evaluate_models(snapshot, [(name, {}) for name in sorted(training.registry())])
    # then each personal model's Recall@50 is at least popularity's
    recall = {c.kind: c.metrics["recall@50"] for c in candidates}
    assert set(recall) == set(training.registry())
    behind = {
        name: round(r, 4) for name, r in recall.items() if name not in POPULARITY_VARIANTS and r < recall["popularity"]
    }
    assert not behind, (recall["popularity"], behind)
