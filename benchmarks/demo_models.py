"""Every recommender on the demo catalogue, whose shoppers' hidden tastes are known.

Usage::

    python benchmarks/demo_models.py [--products 600] [--users 150] [--seed 7]

Builds the demo catalogue on a private embedded PostgreSQL, embeds it, evaluates every
registered recommender on a temporal hold-out (the newest 20 % of interactions) and
measures taste recovery: the share of each shopper's top-12 list whose type or colour
is one the shopper secretly prefers, against the share of the whole catalogue (chance).
Writes ``docs/benchmarks/demo.md``.
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
    data_dir = isolated_django("demo")
    try:
        rows = run(args)
    finally:
        stop_isolated(data_dir)
    headers = ["model", "recall@50", "95% CI", "ndcg@12", "coverage@12", "taste fit of top-12", "chance"]
    table = markdown_table(headers, rows)
    print(table)
    body = (
        f"## Models on the demo catalogue\n\n{args.products} products, {args.users} shoppers, seed {args.seed}; "
        f"hold-out: newest 20 % of interactions. Machine: {machine()}.\n"
        f"Command: `python benchmarks/demo_models.py --products {args.products} --users {args.users} "
        f"--seed {args.seed}`\n\n{table}\n"
    )
    write_section(DOCS / "demo.md", "demo-models", "Demo catalogue benchmarks", body)


def run(args) -> list[list]:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import override_settings

    from catalog.demo import builder
    from catalog.demo.tastes import taste_recovery
    from catalog.models import Product, ProductImage
    from recommendations import embedding, training
    from recommendations.data import build_snapshot

    with override_settings(VISREC={**settings.VISREC, "TRAIN_HOLDOUT_FRACTION": 0.2}):
        demo = builder.build_demo(builder.DemoParams(products=args.products, users=args.users, seed=args.seed))
        embedding.embed_images(ProductImage.objects.values_list("pk", flat=True))
        snapshot = build_snapshot()
        names = sorted(training.registry())
        candidates = training.evaluate_models(snapshot, [(n, {}) for n in names])
        usernames = dict(get_user_model().objects.values_list("pk", "username"))
        attributes = dict(Product.objects.values_list("pk", "attributes"))
        users = np.array([i for i, key in enumerate(snapshot.users) if key.startswith("u")])
        matrix = snapshot.matrix()
        rows = []
        for c in sorted(candidates, key=lambda c: -(c.metrics.get("recall@50") or 0)):
            model, _ = training.fit_model(c.kind, {}, snapshot, None)
            ids, _ = model.recommend(users, matrix[users], N=12)
            lists = {
                usernames[int(snapshot.users[u][1:])]: [int(snapshot.items[i]) for i in row if i >= 0]
                for u, row in zip(users, ids, strict=True)
            }
            share, chance = taste_recovery(lists, demo.tastes["users"], attributes)
            m = c.metrics
            rows.append(
                [
                    c.kind,
                    f"{m['recall@50']:.3f}",
                    f"[{m['recall@50_low']:.3f}, {m['recall@50_high']:.3f}]",
                    f"{m['ndcg@12']:.3f}",
                    f"{m['coverage@12']:.3f}",
                    f"{share:.2f}",
                    f"{chance:.2f}",
                ]
            )
            print(rows[-1])
    return rows


if __name__ == "__main__":
    main()
