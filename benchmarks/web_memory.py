"""Web-process memory with the active model loaded: a private copy per process vs shared memory-mapped arrays.

For each model kind the default ``TRAIN_MODELS`` can activate, builds a model of that
kind for N products (synthetic arrays of the shapes training produces, saved and
activated through the real storage code: ``training.save_artifact``, ``ModelVersion``,
``training.activate`` and the memory-mapped copies training prepares), starts the shop
with gunicorn (3 workers, the settings of ``benchmarks/serving.py``), sends similar-items
and for-you requests until every worker has served both with the model, and reads each
worker's USS/PSS/RSS from ``/proc/<pid>/smaps_rollup`` and its mappings of the model's
``.npy`` files from ``/proc/<pid>/smaps``. Each kind is served in the same run

- ``copy``: ``VISREC["MODEL_MMAP"] = False``, every process reads the artifact into its own memory;
- ``mmap``: the default, every process maps the same ``.npy`` files (page cache, counted once);
- ``old code`` (with ``--old-code DIR``, a checkout of an earlier commit): that code's loading path.

    .venv/bin/python benchmarks/web_memory.py --products 1000000

Prints a table, writes ``docs/benchmarks/web-memory.md`` and ends with
``RESULT web_uss_mb=<max worker USS, mmap, model files apart> shared_mapped_mb=<model files, once>
old_uss_mb=<max worker USS of the old loading path> web_uss_raw_mb=<max worker USS, mmap, all>``
(the largest over the kinds measured).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import http.client
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from _common import DOCS, ROOT, isolated_django, markdown_table, stop_gunicorn, stop_isolated, write_section  # noqa: E402
from _memory import children, mapped_files, process_memory  # noqa: E402

log = logging.getLogger("visrec.bench.web_memory")
KINDS = ("als", "item_knn", "image_cf", "recent_popularity")
SESSIONS = 24


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=1_000_000, help="catalogue size N (item columns)")
    parser.add_argument("--users", type=int, default=1_000_000, help="shoppers the model knows (user rows)")
    parser.add_argument("--kinds", default=",".join(KINDS), help="model kinds to measure (comma-separated)")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers")
    parser.add_argument("--threads", type=int, help="gunicorn threads per worker (default: gunicorn.conf.py)")
    parser.add_argument(
        "--real-products", type=int, default=200, help="products in the database (the rest only in the model)"
    )
    parser.add_argument("--factors", type=int, default=64, help="ALS factors")
    parser.add_argument("--knn-k", type=int, default=100, help="item_knn neighbours per item (ItemKNN's default k)")
    parser.add_argument("--image-dims", type=int, default=128, help="image_cf vector width (whitened, as at scale)")
    parser.add_argument("--unbought-share", type=float, default=0.0, help="share of items with zero ALS factors")
    parser.add_argument("--old-code", help="a checkout of earlier code to measure as the 'old code' mode")
    parser.add_argument("--modes", default="copy,mmap", help="modes of this code to measure (copy, mmap)")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds to get the model into every worker")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--no-doc", action="store_true", help="do not write docs/benchmarks/web-memory.md")
    return parser.parse_args(argv)


# -- the shop's data and the model -------------------------------------------------------------
def make_shop(real: int, rng: np.random.Generator) -> tuple[list[int], list[str]]:
    """``real`` products and :data:`SESSIONS` anonymous sessions that viewed three of them each."""
    from importlib import import_module

    from django.conf import settings

    from catalog.models import Category, Product
    from recommendations.models import Interaction
    from recommendations.sync import sync_products

    category = Category.objects.create(name="Dresses", slug="webmem-dresses")
    products = Product.objects.bulk_create(
        [Product(sku=f"WM-{i:06d}", title=f"Dress {i}", category=category, stock=5) for i in range(real)]
    )
    pks = sorted(p.pk for p in products)
    sync_products(pks)
    store = import_module(settings.SESSION_ENGINE).SessionStore
    sessions, events = [], []
    for _ in range(SESSIONS):
        session = store()
        session.create()
        sessions.append(session.session_key)
        for pk in rng.choice(pks, size=3, replace=False):
            events.append(Interaction(product_id=int(pk), kind="view", session_key=session.session_key))
    Interaction.objects.bulk_create(events)
    return pks, sessions


def id_maps(args, pks: list[int], sessions: list[str], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Product pks by item column (the shop's, then made-up ones) and shopper keys by user row (unsorted)."""
    items = np.concatenate([pks, np.arange(args.products - len(pks)) + max(pks) + 1]).astype(np.int64)
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz0123456789", dtype=np.uint8)
    codes = letters[rng.integers(0, len(letters), size=(args.users, 32))]
    made_up = codes.view("S32").ravel().astype("U32")
    users = np.char.add("s", made_up)
    users[rng.choice(args.users, size=len(sessions), replace=False)] = [f"s{key}" for key in sessions]
    return users, items


def unit_rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def build_model(kind: str, args, rng: np.random.Generator):
    """A model of ``kind`` whose learned arrays have the shapes and dtypes its ``fit`` gives at this size."""
    import scipy.sparse as sp

    from recommendations.ml.knn import ItemKNN
    from recommendations.ml.mf import ALS
    from recommendations.ml.popularity import RecentPopularity
    from recommendations.ml.visual import ImageCF

    n, users = args.products, args.users
    prior = rng.standard_normal(n, dtype=np.float32)
    if kind == "als":
        model = ALS(factors=args.factors, regularization=0.1, prior_weight=0.3)
        model.item_factors = 0.1 * rng.standard_normal((n, args.factors), dtype=np.float32)
        model.item_factors[rng.random(n) < args.unbought_share] = 0.0
        model.user_factors = 0.1 * rng.standard_normal((users, args.factors), dtype=np.float32)
    elif kind == "item_knn":
        model = ItemKNN(k=args.knn_k, shrink=100.0, prior_weight=0.3)
        k = args.knn_k
        indices = rng.integers(0, n, size=n * k, dtype=np.int32)
        data = rng.random(n * k, dtype=np.float32)
        indptr = np.arange(0, n * k + 1, k, dtype=np.int32 if n * k < 2**31 else np.int64)
        model.similarity = sp.csr_matrix((data, indices, indptr), shape=(n, n))
        model.tie_break = 1e-9 * rng.random(n, dtype=np.float32)
    elif kind == "image_cf":
        model = ImageCF(whiten=args.image_dims, popularity_weight=0.3)
        model.features = unit_rows(rng, n, args.image_dims)
        model.has_image = np.ones(n, dtype=bool)
        per_user = rng.integers(1, model.max_tastes + 1, size=users)
        model.taste_indptr = np.concatenate([[0], np.cumsum(per_user)]).astype(np.int64)
        model.tastes = unit_rows(rng, int(model.taste_indptr[-1]), args.image_dims)
        model.taste_mass = np.concatenate([[1.0] if c == 1 else [0.6, 0.4] for c in per_user]).astype(np.float32)
    elif kind == "recent_popularity":
        model = RecentPopularity()
        model.item_scores = rng.random(n, dtype=np.float32)
        return model
    else:
        raise SystemExit(f"unknown kind {kind}; choose from {', '.join(KINDS)}")
    model.prior, model.weight = prior, 0.3
    return model


def store_version(kind: str, args, users: np.ndarray, items: np.ndarray, rng: np.random.Generator):
    """Save, register, prepare and activate a ``kind`` version as training does; (version, timings)."""
    from recommendations import training
    from recommendations.models import ModelVersion

    started = time.perf_counter()
    model = build_model(kind, args, rng)
    built = time.perf_counter()
    path = training.save_artifact(model, users, items)
    saved = time.perf_counter()
    version = ModelVersion.objects.create(
        kind=kind,
        params=model.get_params(),
        artifact=path.name,
        data_size={"users": len(users), "items": len(items), "interactions": 0},
    )
    del model
    training._prepare_serving(version)  # what training does after storing a version
    prepared = time.perf_counter()
    training.activate(version)
    timings = {"build_s": built - started, "save_s": saved - built, "prepare_s": prepared - saved}
    return version, path, timings


# -- the web server ----------------------------------------------------------------------------
@dataclass
class Mode:
    name: str
    code: Path
    settings_module: str = "visrec_shop.settings"


@dataclass
class Measured:
    kind: str
    mode: str
    workers: list[dict] = field(default_factory=list)
    baseline_uss_mb: float = 0.0
    first_request_s: float = 0.0
    mapped_file_mb: float = 0.0
    error: str = ""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(extra_path: str) -> dict[str, str]:
    """The environment ``benchmarks/serving.py`` serves with (DEBUG off, throttling off), on this run's database."""
    return {
        "DJANGO_SETTINGS_MODULE": "visrec_shop.settings",
        "DEBUG": "0",
        "VISREC_SINGLE_PROCESS": "1",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "API_THROTTLE_RECOMMENDATIONS": "off",
        "API_THROTTLE_SEARCH": "off",
        "API_THROTTLE_EVENTS": "off",
        "PYTHONPATH": extra_path,
    }


def start_gunicorn(mode: Mode, args, port: int, access_log: Path, extra_path: str) -> subprocess.Popen:
    cmd = [str(ROOT / ".venv" / "bin" / "gunicorn"), "-c", str(mode.code / "visrec_shop" / "gunicorn.conf.py")]
    cmd += ["-b", f"127.0.0.1:{port}", "-w", str(args.workers), "-t", str(int(args.timeout))]
    cmd += ["--access-logfile", str(access_log), "--access-logformat", "%(p)s %(s)s %(L)s %(U)s"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    env = {**os.environ, **server_env(extra_path), "DJANGO_SETTINGS_MODULE": mode.settings_module}
    log_file = open(access_log.with_suffix(".err"), "w")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(cmd, cwd=mode.code, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline:
        if get(port, "/api/v1/products/popular/")[0] == 200:
            return proc
        time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"gunicorn did not answer within 60 s (see {access_log.with_suffix('.err')})")


def get(port: int, path: str, headers: dict | None = None, timeout: float = 300.0) -> tuple[int, float]:
    started = time.perf_counter()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        response.read()
        conn.close()
        return response.status, time.perf_counter() - started
    except OSError:
        return 0, time.perf_counter() - started


def served_by(access_log: Path) -> dict[int, dict[str, list[float]]]:
    """Per worker pid: seconds of each successful request, by kind of request."""
    out: dict[int, dict[str, list[float]]] = {}
    for line in access_log.read_text().splitlines():
        parts = line.split()
        if len(parts) != 4 or parts[1] != "200":
            continue
        pid, seconds, path = int(parts[0].strip("<>")), float(parts[2]), parts[3]
        kind = "similar" if path.endswith("/similar/") else "for-you" if "for-you" in path else "other"
        out.setdefault(pid, {}).setdefault(kind, []).append(seconds)
    return out


def until_every_worker(port, access_log, workers, requests, want, deadline) -> dict[int, dict[str, list[float]]]:
    """Send ``requests`` in concurrent rounds until each of ``workers`` served two of each kind in ``want``."""
    rounds = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=2 * len(workers)) as pool:
        while True:
            seen = served_by(access_log)
            if all(all(len(seen.get(w, {}).get(k, [])) >= 2 for k in want) for w in workers):
                return seen
            if time.time() > deadline:
                raise TimeoutError(f"not every worker served {want} in time: {seen}")
            batch = [requests[(rounds * 2 * len(workers) + i) % len(requests)] for i in range(2 * len(workers))]
            list(pool.map(lambda r: get(port, *r), batch))
            rounds += 1
            time.sleep(0.2)  # the access log is written after the response


def measure(kind: str, mode: Mode, args, pks, sessions, folder: Path, work: Path, extra_path: str) -> Measured:
    port = free_port()
    access_log = work / f"{kind}-{mode.name.replace(' ', '-')}.log"
    server = start_gunicorn(mode, args, port, access_log, extra_path)
    result = Measured(kind, mode.name)
    try:
        workers = children(server.pid)
        deadline = time.time() + args.timeout
        until_every_worker(port, access_log, workers, [("/api/v1/products/popular/",)], ["other"], deadline)
        result.baseline_uss_mb = max(process_memory(pid)["uss_mb"] for pid in workers)
        similar = [(f"/api/v1/products/{pk}/similar/",) for pk in pks]
        for_you = [("/api/v1/recommendations/for-you/", {"Cookie": f"sessionid={key}"}) for key in sessions]
        mixed = [r for pair in zip(similar, for_you * (len(similar) // len(for_you) + 1), strict=False) for r in pair]
        seen = until_every_worker(port, access_log, workers, mixed, ["similar", "for-you"], deadline)
        time.sleep(1.0)
        result.first_request_s = max(max(seen[w]["similar"][0], seen[w]["for-you"][0]) for w in workers)
        for pid in workers:
            files = mapped_files(pid, folder) if folder.exists() else {}
            private = sum(f["private_mb"] for f in files.values())
            memory = process_memory(pid)
            result.workers.append(
                {
                    "pid": pid,
                    **memory,
                    "uss_apart_mb": memory["uss_mb"] - private,
                    "mapped_rss_mb": sum(f["rss_mb"] for f in files.values()),
                }
            )
        if any(w["mapped_rss_mb"] for w in result.workers):
            result.mapped_file_mb = sum(p.stat().st_size for p in folder.glob("*.npy")) / 2**20
    except TimeoutError as e:
        result.error = str(e)[:300]
        log.error("%s %s: %s", kind, mode.name, result.error)
    finally:
        stop_gunicorn(server)
    return result


# -- in-process latency of the model part of a request ------------------------------------------
def neighbour_latency(version, pks: list[int]) -> float:
    """p50 milliseconds of the model's item neighbours of a product (mapped, warm) in this process."""
    from recommendations import serving

    loaded = serving.loaded_model(version)
    times = []
    for pk in pks[:60]:
        started = time.perf_counter()
        serving._model_neighbours(loaded, pk, 40)
        times.append(time.perf_counter() - started)
    return float(np.percentile(np.array(times[10:]) * 1000, 50))


def neighbour_table_in_postgres(k: int, sample: int = 20_000) -> dict:
    """Bytes per item and lookup time of an item_knn neighbour table in PostgreSQL (``sample`` items)."""
    from django.db import connection

    rng = np.random.default_rng(1)
    with connection.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS webmem_neighbours")
        cur.execute("CREATE TABLE webmem_neighbours (item bigint PRIMARY KEY, ids integer[], scores real[])")
        with cur.copy("COPY webmem_neighbours (item, ids, scores) FROM STDIN") as copy:
            for item in range(sample):
                copy.write_row((item, rng.integers(0, 10**6, k).tolist(), rng.random(k).astype(np.float32).tolist()))
        cur.execute("ANALYZE webmem_neighbours")
        cur.execute("SELECT pg_total_relation_size('webmem_neighbours')")
        size = cur.fetchone()[0]
        times = []
        for item in rng.integers(0, sample, 300):
            started = time.perf_counter()
            cur.execute("SELECT ids, scores FROM webmem_neighbours WHERE item = %s", [int(item)])
            cur.fetchone()
            times.append(time.perf_counter() - started)
        cur.execute("DROP TABLE webmem_neighbours")
    return {"bytes_per_item": size / sample, "lookup_p50_ms": float(np.percentile(np.array(times[50:]) * 1000, 50))}


# -- report ---------------------------------------------------------------------------------------
HEADERS = [
    "model",
    "loading",
    "worker USS MB (max)",
    "USS without model files MB (max)",
    "PSS MB (sum)",
    "RSS MB (max)",
    "idle worker USS MB",
    "model files mapped MB (once)",
    "first request s",
]


def rows(results: list[Measured]) -> list[list]:
    out = []
    for r in results:
        if r.error:
            out.append([r.kind, r.mode, f"failed: {r.error[:80]}", "", "", "", "", "", ""])
            continue
        w = r.workers
        out.append(
            [
                r.kind,
                r.mode,
                f"{max(x['uss_mb'] for x in w):.0f}",
                f"{max(x['uss_apart_mb'] for x in w):.0f}",
                f"{sum(x['pss_mb'] for x in w):.0f}",
                f"{max(x['rss_mb'] for x in w):.0f}",
                f"{r.baseline_uss_mb:.0f}",
                f"{r.mapped_file_mb:.0f}" if r.mapped_file_mb else "-",
                f"{r.first_request_s:.1f}",
            ]
        )
    return out


def commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "?"


def write_doc(args, results, timings, latency, table_db, summary, load) -> None:
    n, u = args.products, args.users
    lines = [
        f"## {n:,} products, {u:,} shoppers",
        "",
        f"`benchmarks/web_memory.py --products {n} --users {u}` on {datetime.now(UTC):%Y-%m-%d}, commit "
        f"`{commit()}`, {os.cpu_count()} CPUs, load average {load[0]:.1f} before / {load[1]:.1f} after "
        f"(a shared machine). gunicorn with {args.workers} workers (`visrec_shop/gunicorn.conf.py`, DEBUG off, "
        "throttling off). Each worker served at least two similar-items and two for-you requests with the model "
        "before its memory was read.",
        "",
        markdown_table(HEADERS, rows(results)),
        "",
        "- **worker USS**: memory only that worker holds (`Private_Clean + Private_Dirty` of "
        "`/proc/<pid>/smaps_rollup`). Pages of a mapped model file that only one worker has touched count as "
        "its private pages; **USS without model files** leaves the mappings of the version's `.npy` files out, "
        "and **model files mapped** counts those files once (their size on disk: the page cache holds at most "
        "that, shared by every worker and reclaimable).",
        "- **idle worker USS**: a worker that has served requests without the model (Django, numpy, scipy).",
        "- **first request s**: the slowest first model request of a worker (it loads the model).",
        "",
        "Model arrays (synthetic values, the shapes and dtypes `fit` gives at this size; saved, prepared and "
        "activated through `training.save_artifact`, `ModelVersion`, `training.activate`):",
        "",
        f"- `als`: {args.factors} factors, item and user factors float32, prior; "
        f"{args.unbought_share:.0%} of items without factors.",
        f"- `item_knn`: k = {args.knn_k} neighbours for every item (ItemKNN's default; the most a fitted model "
        "keeps: a real catalogue's rarely bought items have fewer), float32 scores, int32 columns.",
        f"- `image_cf`: {args.image_dims}-d whitened image vectors for every item, one or two taste vectors per "
        "shopper.",
        "- `recent_popularity`: one score per item.",
        "",
        markdown_table(
            ["model", "build s", "save (.npz) s", "prepare (.npy copies, derived arrays) s", "model neighbours p50 ms"],
            [
                [k, f"{t['build_s']:.1f}", f"{t['save_s']:.1f}", f"{t['prepare_s']:.1f}", latency.get(k, "-")]
                for k, t in timings.items()
            ],
        ),
        "",
    ]
    if table_db:
        lines += [
            f"Item neighbours from PostgreSQL instead (a table `item bigint primary key, ids integer[], scores "
            f"real[]`, k = {args.knn_k}, {table_db['sample']:,} items measured): {table_db['bytes_per_item']:.0f} "
            f"bytes per item, so {table_db['bytes_per_item'] * n / 2**20:,.0f} MB for {n:,} items, against "
            f"{8 * args.knn_k * n / 2**20:,.0f} MB of mapped arrays; a lookup takes {table_db['lookup_p50_ms']:.2f} "
            "ms (p50, one round trip) against the in-process neighbours above.",
            "",
        ]
    lines += [f"RESULT {summary}", ""]
    write_section(DOCS / "web-memory.md", f"web-memory-{n}", "Web-process memory", "\n".join(lines))


def copy_settings(work: Path) -> str:
    """A settings module that turns memory-mapping off (the ``copy`` mode); returns its name."""
    (work / "webmem_copy_settings.py").write_text(
        'from visrec_shop.settings import *  # noqa: F403\n\nVISREC = {**VISREC, "MODEL_MMAP": False}  # noqa: F405\n'
    )
    return "webmem_copy_settings"


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = parse_args(argv)
    load_before = os.getloadavg()[0]
    data_dir = isolated_django("webmem")
    work = Path(tempfile.mkdtemp(prefix="visrec-webmem-"))
    rng = np.random.default_rng(args.seed)
    results: list[Measured] = []
    timings, latency, table_db = {}, {}, {}
    try:
        from recommendations import serving

        pks, sessions = make_shop(args.real_products, rng)
        users, items = id_maps(args, pks, sessions, rng)
        modes = [Mode("old code", Path(args.old_code).resolve())] if args.old_code else []
        ours = {"copy": Mode("copy", ROOT, copy_settings(work)), "mmap": Mode("mmap", ROOT)}
        modes += [ours[name] for name in args.modes.split(",")]
        for kind in args.kinds.split(","):
            log.info("%s: building and storing a model for %d products, %d shoppers", kind, len(items), len(users))
            version, path, timings[kind] = store_version(kind, args, users, items, rng)
            log.info("%s: %s", kind, {k: round(v, 1) for k, v in timings[kind].items()})
            folder = path.with_name(f"{path.stem}.mmap")
            for mode in modes:
                extra_path = os.pathsep.join([str(mode.code), str(work)])
                results.append(measure(kind, mode, args, pks, sessions, folder, work, extra_path))
                log.info("%s %s: %s", kind, mode.name, rows(results[-1:])[0][2:])
            if kind != "recent_popularity":
                latency[kind] = f"{neighbour_latency(version, pks):.2f}"
            serving.versions._models.clear()
            for leftover in (path, path.with_suffix(".ids.npz")):
                leftover.unlink(missing_ok=True)
            shutil.rmtree(folder, ignore_errors=True)
        if "item_knn" in args.kinds:
            table_db = {**neighbour_table_in_postgres(args.knn_k), "sample": 20_000}
    finally:
        shutil.rmtree(work, ignore_errors=True)
        stop_isolated(data_dir)

    table = markdown_table(HEADERS, rows(results))
    print(table)
    ok = [r for r in results if not r.error]
    new = [max(w["uss_apart_mb"] for w in r.workers) for r in ok if r.mode == "mmap"]
    shared = [r.mapped_file_mb for r in ok if r.mode == "mmap"]
    old_mode = "old code" if args.old_code else "copy"
    old = [max(w["uss_mb"] for w in r.workers) for r in ok if r.mode == old_mode]
    raw = [max(w["uss_mb"] for w in r.workers) for r in ok if r.mode == "mmap"]
    nan = float("nan")
    summary = (
        f"web_uss_mb={max(new, default=nan):.0f} shared_mapped_mb={max(shared, default=nan):.0f} "
        f"old_uss_mb={max(old, default=nan):.0f} web_uss_raw_mb={max(raw, default=nan):.0f}"
    )
    if not args.no_doc:
        write_doc(args, results, timings, latency, table_db, summary, (load_before, os.getloadavg()[0]))
    print(f"RESULT {summary}")


if __name__ == "__main__":
    main()
