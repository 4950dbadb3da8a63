"""Every recommender on the demo catalogue, whose shoppers' hidden tastes are known.

Usage::

    python benchmarks/demo_models.py [--products 600] [--users 150] [--seed 7]

Builds the demo catalogue on a private embedded PostgreSQL, embeds it, evaluates every
registered recommender on a temporal hold-out (the newest 20 % of interactions) and
measures taste recovery: the share of each shopper's top-12 list whose type or colour
is one the shopper secretly prefers, against the share of the whole catalogue (chance).
Each model's Recall@50 is also compared with popularity's *per shopper* (paired
bootstrap over shoppers): the interval of the difference says whether the demo has the
power to tell the two apart. Writes a section of ``docs/benchmarks/demo.md`` per size.
"""

from __future__ import annotations

import argparse

import numpy as np
from _common import DOCS, isolated_django, machine, markdown_table, stop_isolated, write_section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=600)
    parser.add_argument("--users", type=int, default=150)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)  # small minibatches: one thread is faster on a busy 2-core machine
    data_dir = isolated_django("demo")
    try:
        rows = run(args)
    finally:
        stop_isolated(data_dir)
    headers = [
        "model",
        "recall@50",
        "95% CI",
        "Δ vs popularity [95% CI, paired]",
        "ndcg@12",
        "coverage@12",
        "taste fit of top-12",
        "taste fit, prior off",
        "chance",
    ]
    table = markdown_table(headers, rows)
    print(table)
    body = (
        f"## {args.products} products, {args.users} shoppers, seed {args.seed}\n\n"
        f"Hold-out: newest 20 % of interactions. Machine: {machine()}.\n"
        f"Command: `python benchmarks/demo_models.py --products {args.products} --users {args.users} "
        f"--seed {args.seed}`\n\n{table}\n\n{NOTES}\n"
    )
    section = f"demo-models-{args.products}-{args.users}-{args.seed}"
    write_section(DOCS / "demo.md", section, "Demo catalogue benchmarks", body)


NOTES = (
    "Δ is the mean over shoppers of (model's Recall@50 − popularity's), with a paired bootstrap "
    "interval; an interval that contains 0 means this demo size cannot tell the model from popularity. "
    "recent_popularity is popularity with a 120-day half-life: the simulated shop has no trends over its "
    "90 days, so it ranks almost exactly like all-time popularity (Δ ≈ 0), as it should. Taste fit: share "
    "of each shopper's top-12 whose type or colour is one they secretly prefer; chance = that share over the "
    "whole catalogue; 'prior off' = the same model with its popularity prior weight set to 0 (its personal, "
    "taste-driven part alone; – = no prior)."
)


def run(args) -> list[list]:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import override_settings

    from catalog.demo import builder
    from catalog.demo.tastes import taste_recovery
    from catalog.models import Product
    from recommendations import embedding, training
    from recommendations.data import build_snapshot
    from recommendations.ml.evaluation import bootstrap_ci
    from recommendations.models import ImageState

    with override_settings(VISREC={**settings.VISREC, "TRAIN_HOLDOUT_FRACTION": 0.2}):
        demo = builder.build_demo(builder.DemoParams(products=args.products, users=args.users, seed=args.seed))
        embedding.embed_images(ImageState.objects.values_list("pk", flat=True))
        snapshot = build_snapshot()
        names = sorted(training.registry())
        candidates = training.evaluate_models(snapshot, [(n, {}) for n in names])
        per_user = per_user_recall(snapshot, names)
        usernames = dict(get_user_model().objects.values_list("pk", "username"))
        attributes = dict(Product.objects.values_list("pk", "attributes"))
        users = np.array([i for i, key in enumerate(snapshot.users) if key.startswith("u")])
        names_of = {u: usernames[int(snapshot.users[u][1:])] for u in users}

        def taste_fit(kind: str, params: dict) -> tuple[float, float]:
            model, _ = training.fit_model(kind, params, snapshot, None)
            ids, _ = model.recommend(users, snapshot.matrix()[users], N=12)
            rows = zip(users, ids, strict=True)
            lists = {names_of[u]: [int(snapshot.items[i]) for i in row if i >= 0] for u, row in rows}
            return taste_recovery(lists, demo.tastes["users"], attributes)

        rows = []
        for c in sorted(candidates, key=lambda c: -(c.metrics.get("recall@50") or 0)):
            share, chance = taste_fit(c.kind, {})
            weight = getattr(training.registry()[c.kind], "weight_param", None)
            personal = f"{taste_fit(c.kind, {weight: 0.0})[0]:.2f}" if weight else "–"
            m = c.metrics
            diff = per_user[c.kind] - per_user["popularity"]
            low, high = bootstrap_ci(diff, 1000)
            rows.append(
                [
                    c.kind,
                    f"{m['recall@50']:.3f}",
                    f"[{m['recall@50_low']:.3f}, {m['recall@50_high']:.3f}]",
                    f"{diff.mean():+.3f} [{low:+.3f}, {high:+.3f}]",
                    f"{m['ndcg@12']:.3f}",
                    f"{m['coverage@12']:.3f}",
                    f"{share:.2f}",
                    personal,
                    f"{chance:.2f}",
                ]
            )
            print(rows[-1])
    return rows


def per_user_recall(snapshot, names: list[str]) -> dict[str, np.ndarray]:
    """Recall@50 of every model per evaluated shopper, on the split ``training.evaluate_models`` uses."""
    from recommendations import training
    from recommendations.conf import visrec_settings
    from recommendations.ml.evaluation import fraction_split, recall_at_k, recommend_all

    s = snapshot
    train, test = fraction_split(s.rows, s.cols, s.values, s.times, float(visrec_settings.TRAIN_HOLDOUT_FRACTION))
    train_matrix, test_matrix = s.matrix(train), s.matrix(test)
    relevant = (test_matrix - test_matrix.multiply(train_matrix != 0)).tocsr()
    relevant.eliminate_zeros()
    users = np.flatnonzero((np.diff(relevant.indptr) > 0) & (np.diff(train_matrix.indptr) > 0))
    out = {}
    for name in names:
        model, _ = training.fit_model(name, {}, s, train)
        out[name] = recall_at_k(recommend_all(model, users, train_matrix, 50), relevant[users], 50)
    return out


if __name__ == "__main__":
    main()
