"""In-process A/B checks of serving choices on the serving benchmark's catalogue (same run, interleaved).

Usage: ``.venv/bin/python benchmarks/serving_ab.py --products 200000`` (the catalogue of
``benchmarks/serving.py --products N``, built there first). Product pages go through
Django's test client with a fresh product and a fresh shopper session each (as the
uncached page phase); each page runs under one arm, the arms interleaved at random, so
both see the same machine. Per arm: the page's Python CPU (this process, all its threads), the PostgreSQL
backend's CPU (``/proc``), and wall time. Arms:

- BLAS threads 2 vs 1 (``threadpoolctl``; web processes run 1, see ``visrec_shop/wsgi.py``);
- ``PREPARED_QUERIES`` on vs off;
- the session-taste search breadth: the configured ``FOR_YOU_EF_SEARCH`` alone vs the
  floor ``nearest_products`` applies (list + up to 8 left-out products), as PostgreSQL's
  ``EXPLAIN ANALYZE`` execution time, for anonymous and signed-in shoppers.

Prints a table per check, writes ``docs/benchmarks/serving-ab.md``.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]
DOC = ROOT / "docs" / "benchmarks" / "serving-ab.md"


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def page_ab(arms: dict, pages: int, products: list[int], sessions: list[str]) -> list[list]:
    """Interleave ``pages`` product pages between ``arms`` (name -> context manager factory)."""
    from django.db import connection
    from django.test import Client

    client = Client()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    order = [name for name in arms for _ in range(pages)]
    random.Random(7).shuffle(order)
    seen = {name: {"py": 0.0, "pg": 0.0, "wall": []} for name in arms}
    for i, name in enumerate(order):
        with arms[name]():
            py0, pg0, t0 = time.process_time(), _cpu_seconds(backend), time.perf_counter()
            response = client.get(
                f"/product/{products[i]}/", HTTP_COOKIE=f"sessionid={sessions[i]}", SERVER_NAME="localhost"
            )
            wall = time.perf_counter() - t0
            seen[name]["py"] += time.process_time() - py0
            seen[name]["pg"] += _cpu_seconds(backend) - pg0
            seen[name]["wall"].append(wall * 1000)
        assert response.status_code == 200, response.status_code
        client.cookies.clear()
    rows = []
    for name, s in seen.items():
        n = len(s["wall"])
        rows.append(
            [name, n, f"{s['py'] / n * 1000:.2f}", f"{s['pg'] / n * 1000:.2f}"]
            + [f"{np.percentile(s['wall'], q):.1f}" for q in (50, 95)]
        )
    return rows


def breadth_ab(sessions: list[str], label: str) -> list[list]:
    """EXPLAIN ANALYZE execution time of the taste search at the configured breadth vs the floor."""
    from importlib import import_module

    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connection

    from recommendations import serving
    from recommendations.conf import visrec_settings

    store = import_module(settings.SESSION_ENGINE).SessionStore
    act, rules = serving.active(), serving.rules_for("for-you", None)
    users = get_user_model().objects
    histories = []
    for key in sessions:
        uid = store(session_key=key).get("_auth_user_id")
        user = users.get(pk=uid) if uid else None
        histories.append(serving.history(user, None if user else key))
    configured = int(visrec_settings.FOR_YOU_EF_SEARCH)
    times: dict[str, list[float]] = {"configured": [], "floor": []}
    with connection.cursor() as cursor:
        cursor.execute("SET hnsw.iterative_scan = relaxed_order")
        for events in histories * 2:
            for arm in random.Random(len(times["floor"])).sample(list(times), 2):
                depth, excluded = 20, events.product_ids
                ef = configured if arm == "configured" else max(configured, depth + min(len(excluded), 8))
                cursor.execute(f"SET hnsw.ef_search = {int(ef)}")
                taste = serving.taste_expression(events, act.embedding)
                sql, params = serving.neighbour_sql(taste, act.embedding, depth, exclude=excluded, rules=rules)
                cursor.execute("EXPLAIN (ANALYZE) " + sql, params)
                plan = "\n".join(row[0] for row in cursor.fetchall())
                times[arm].append(float(re.search(r"Execution Time: ([\d.]+)", plan).group(1)))
    mean_left_out = np.mean([len(e.product_ids) for e in histories])
    return [
        [label, arm, len(v), f"{mean_left_out:.0f}", f"{np.percentile(v, 50):.2f}", f"{np.percentile(v, 95):.2f}"]
        for arm, v in times.items()
    ]


def main(argv=None) -> None:
    import serving as bench
    from _common import markdown_table

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=200_000)
    parser.add_argument("--pages", type=int, default=150, help="product pages per arm")
    args = parser.parse_args(argv)
    built, _, _ = bench.setup(bench.parse_args(["--products", str(args.products)]))
    from contextlib import nullcontext

    from django.conf import settings
    from django.core.cache import cache
    from django.test import override_settings
    from threadpoolctl import threadpool_limits

    from catalog.models import Product

    rng = np.random.default_rng(int(time.time()))
    ids = np.array(Product.objects.filter(is_active=True).values_list("pk", flat=True))
    need = 2 * args.pages + 20
    visrec = dict(getattr(settings, "VISREC", {}) or {})

    def prepared(on: bool):
        return lambda: override_settings(VISREC={**visrec, "PREPARED_QUERIES": on})

    checks = {
        "BLAS threads": {"2 threads": lambda: threadpool_limits(2, "blas"), "1 thread": lambda: nullcontext()},
        "PREPARED_QUERIES": {"on": prepared(True), "off": prepared(False)},
    }
    page_rows = []
    with threadpool_limits(1, "blas"):
        for check, arms in checks.items():
            sessions = bench.make_sessions(need, rng, ids)
            products = [int(p) for p in rng.choice(ids, need, replace=False)]
            cache.clear()
            page_ab({"warm": nullcontext}, 10, products[-10:], sessions[-10:])
            page_rows += [[check, *row] for row in page_ab(arms, args.pages, products, sessions)]
    headers = ["check", "arm", "pages", "Python CPU ms/page", "PostgreSQL CPU ms/page", "wall p50 ms", "wall p95 ms"]
    page_table = markdown_table(headers, page_rows)
    print(page_table)
    sessions = bench.make_sessions(300, rng, ids)
    signed_in = [s for i, s in enumerate(sessions) if i % 10 < 3][:60]
    anonymous = [s for i, s in enumerate(sessions) if i % 10 >= 3][:60]
    breadth_rows = breadth_ab(anonymous, "anonymous (3-5 views)") + breadth_ab(signed_in, "signed-in hm shopper")
    breadth_table = markdown_table(
        ["shoppers", "breadth", "queries", "left-out products (mean)", "exec p50 ms", "exec p95 ms"], breadth_rows
    )
    print(breadth_table)
    DOC.write_text(
        f"# Serving choices, A/B in one process\n\nRun {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"`benchmarks/serving_ab.py --products {args.products}` (catalogue `{built.database}`; "
        f"{args.pages} product pages per arm, arms interleaved at random; see the script's docstring).\n\n"
        f"## Product page CPU\n\n{page_table}\n\n## Session-taste search breadth (EXPLAIN ANALYZE)\n\n"
        f"{breadth_table}\n"
    )
    print(f"wrote {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
