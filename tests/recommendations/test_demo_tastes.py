"""Visual models recover the demo shoppers' hidden tastes."""

import numpy as np
import pytest
from django.contrib.auth import get_user_model

from catalog.demo import builder
from catalog.demo.tastes import taste_recovery
from catalog.models import Product, ProductImage
from recommendations import embedding, training
from recommendations.data import build_snapshot

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("kind", ["image_cf", "vbpr"])
def test_visual_model_lists_fit_hidden_tastes(settings, tmp_path, kind):
    settings.VAR_DIR = tmp_path
    demo = builder.build_demo(builder.DemoParams(products=150, users=30, seed=3))
    embedding.embed_images(ProductImage.objects.values_list("pk", flat=True))
    snapshot = build_snapshot()
    if kind not in training.registry():
        pytest.fail(f"{kind} is not registered")
    model, _ = training.fit_model(kind, {}, snapshot, None)
    users = np.array([i for i, key in enumerate(snapshot.users) if key.startswith("u")])
    ids, _ = model.recommend(users, snapshot.matrix()[users], N=12)
    names = dict(get_user_model().objects.values_list("pk", "username"))
    lists = {
        names[int(snapshot.users[u][1:])]: [int(snapshot.items[i]) for i in row if i >= 0]
        for u, row in zip(users, ids, strict=True)
    }
    share, chance = taste_recovery(lists, demo.tastes["users"], dict(Product.objects.values_list("pk", "attributes")))
    assert share > chance + 0.15, (share, chance)
