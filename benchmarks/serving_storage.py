"""Which vector storage for a million products: full halfvec, PCA-256 with re-ranking, or binary quantisation.

Runs on a catalogue ``benchmarks/serving.py --build-only`` built (default 200,000 products),
in its own database, and measures for each candidate the index build time and size, and
recall@10 and query time of the similar-items query of catalogue products (half real hm
products, half synthetic; the product itself excluded; only active, in-stock products)
against the exact answer over the full 1280-d vectors:

- ``halfvec``: the HNSW index the product builds today, ``vector::halfvec(1280)`` cosine;
- ``pca``: the vectors projected on the top 256 principal axes of a sample of the catalogue
  (not centred, so a projection of the query is the sum of the projections of its parts),
  an HNSW index on them, then the candidates re-ranked by the full vectors' cosine;
- ``halfvec-efc32``: the same vectors and index with a cheaper build (``ef_construction`` 32
  instead of pgvector's default 64), in a side table;
- ``binary``: pgvector's ``binary_quantize`` of the full vector, an HNSW index with Hamming
  distance, then the candidates re-ranked by the full vectors' cosine.

The PCA vectors and the second halfvec index live in side tables of the benchmark's database (``bench_reduced``), so the
product's tables are left as they are. Writes ``docs/benchmarks/serving.md`` section
``serving-storage`` and prints a table.

    .venv/bin/python benchmarks/serving_storage.py --products 200000
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parent.parent))

from _common import DOCS, markdown_table, write_section  # noqa: E402

log = logging.getLogger("visrec.bench.storage")
PCA_DIMS = 256
LOW_EF_CONSTRUCTION = 32
FIT_SAMPLE = 20_000


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=200_000, help="catalogue size N (built by serving.py)")
    parser.add_argument("--queries", type=int, default=200, help="catalogue products used as anchors")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--no-doc", action="store_true")
    return parser.parse_args(argv)


def connect(products: int):
    """A psycopg connection to the catalogue of ``products`` products and what it holds.

    The catalogue's manifest gives its index build time when the build has finished.
    """
    import _serving_catalog as catalog
    import psycopg
    from pgvector.psycopg import register_vector

    socket_dir = catalog.start_server()
    with psycopg.connect(host=socket_dir, user="postgres", dbname="postgres") as conn:
        names = [
            r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", [f"bench_{products}_%"])
        ]
    if len(names) != 1:
        raise SystemExit(
            f"expected one catalogue of {products} products (benchmarks/serving.py --build-only), found {names}"
        )
    conn = psycopg.connect(host=socket_dir, user="postgres", dbname=names[0], autocommit=True)
    register_vector(conn)
    model_id, dims = conn.execute(
        "SELECT id, dimensions FROM recommendations_embeddingmodel WHERE is_active"
    ).fetchone()
    synthetic, total = conn.execute(
        "SELECT count(*) FILTER (WHERE sku LIKE 'SYN-%%'), count(*) FROM recommendations_productsnapshot"
    ).fetchone()
    built = catalog.load_manifest(names[0])
    return conn, {
        "database": names[0],
        "embedding_model_id": model_id,
        "dimensions": dims,
        "products": total,
        "synthetic_products": synthetic,
        "hnsw_index_s": built.timings_s.get("hnsw_index") if built else None,
    }


def load_vectors(conn, model_id: int):
    """``(image ids, product ids, is synthetic, servable, vectors float32)`` of every primary image of the version."""
    rows = conn.execute(
        "SELECT e.image_id, i.product_id, s.sku LIKE 'SYN-%%', s.active AND s.in_stock, e.vector "
        "FROM recommendations_imageembedding e JOIN recommendations_imagestate i ON i.id = e.image_id "
        "JOIN recommendations_productsnapshot s ON s.product_id = i.product_id "
        "WHERE e.model_id = %s AND i.is_primary ORDER BY e.image_id",
        [model_id],
    ).fetchall()
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    products = np.array([r[1] for r in rows], dtype=np.int64)
    synthetic = np.array([r[2] for r in rows], dtype=bool)
    servable = np.array([r[3] for r in rows], dtype=bool)
    vectors = np.stack([r[4].to_numpy() for r in rows]).astype(np.float32)
    return ids, products, synthetic, servable, vectors


def pca_axes(vectors: np.ndarray, dims: int, rng: np.random.Generator) -> np.ndarray:
    """``(d, dims)`` top principal axes of a random sample of ``vectors`` (centred for the fit only)."""
    sample = vectors[rng.choice(len(vectors), size=min(FIT_SAMPLE, len(vectors)), replace=False)]
    _, _, vt = np.linalg.svd(sample - sample.mean(axis=0), full_matrices=False)
    return np.ascontiguousarray(vt[:dims].T)


def timed(conn, sql: str, params=()) -> float:
    started = time.perf_counter()
    conn.execute(sql, params)
    return time.perf_counter() - started


def relation_mb(conn, name: str) -> float:
    return conn.execute("SELECT pg_relation_size(%s::regclass)", [name]).fetchone()[0] / 2**20


def _rows(conn, table: str) -> int:
    if conn.execute("SELECT to_regclass(%s)", [table]).fetchone()[0] is None:
        return -1
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def build_candidates(conn, built: dict, ids: np.ndarray, reduced: np.ndarray) -> dict:
    """Build the PCA side table and index and the binary index; returns build seconds and index sizes."""
    from pgvector import HalfVector

    model_id, dims = built["embedding_model_id"], built["dimensions"]
    conn.execute("SET maintenance_work_mem = '5GB'")
    if _rows(conn, "bench_reduced") != len(ids):  # a rerun keeps the side table, rebuilds the index
        conn.execute("DROP TABLE IF EXISTS bench_reduced")
        conn.execute(f"CREATE TABLE bench_reduced (image_id bigint PRIMARY KEY, v halfvec({PCA_DIMS}))")
        with conn.cursor() as cur, cur.copy("COPY bench_reduced (image_id, v) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["bigint", "halfvec"])
            for image_id, vector in zip(ids.tolist(), reduced, strict=True):
                copy.write_row((image_id, HalfVector(vector)))
        conn.execute("ANALYZE bench_reduced")
    conn.execute("DROP INDEX IF EXISTS bench_reduced_hnsw")
    out = {"halfvec": {"index_mb": relation_mb(conn, f"visrec_embedding_hnsw_{model_id}"), "build_s": None}}
    log.info("building the PCA-%d index", PCA_DIMS)
    seconds = timed(conn, "CREATE INDEX bench_reduced_hnsw ON bench_reduced USING hnsw (v halfvec_cosine_ops)")
    out["pca"] = {"index_mb": relation_mb(conn, "bench_reduced_hnsw"), "build_s": seconds}
    out["pca"]["table_mb"] = relation_mb(conn, "bench_reduced")
    log.info("building the binary index")
    conn.execute("DROP INDEX IF EXISTS bench_binary_hnsw")
    seconds = timed(
        conn,
        f"CREATE INDEX bench_binary_hnsw ON recommendations_imageembedding USING hnsw "
        f"((binary_quantize(vector::halfvec({dims}))::bit({dims})) bit_hamming_ops) WHERE model_id = {model_id}",
    )
    out["binary"] = {"index_mb": relation_mb(conn, "bench_binary_hnsw"), "build_s": seconds}
    log.info("building a halfvec index with ef_construction %d", LOW_EF_CONSTRUCTION)
    if _rows(conn, "bench_full") != len(ids):
        conn.execute("DROP TABLE IF EXISTS bench_full")
        conn.execute(f"CREATE TABLE bench_full (image_id bigint PRIMARY KEY, v halfvec({dims}))")
        conn.execute(
            f"INSERT INTO bench_full SELECT image_id, vector::halfvec({dims}) FROM recommendations_imageembedding "
            f"WHERE model_id = {model_id}"
        )
        conn.execute("ANALYZE bench_full")
    conn.execute("DROP INDEX IF EXISTS bench_full_hnsw")
    seconds = timed(
        conn,
        f"CREATE INDEX bench_full_hnsw ON bench_full USING hnsw (v halfvec_cosine_ops) "
        f"WITH (ef_construction = {LOW_EF_CONSTRUCTION})",
    )
    out["halfvec-efc32"] = {"index_mb": relation_mb(conn, "bench_full_hnsw"), "build_s": seconds}
    conn.execute("ANALYZE recommendations_imageembedding")
    return out


def exact_top(vectors: np.ndarray, servable: np.ndarray, row: int, k: int = 10) -> np.ndarray:
    """Full-vector cosine of the ``k``-th nearest servable product to row ``row`` (itself excluded)."""
    sims = vectors @ vectors[row]
    sims[~servable] = -np.inf
    sims[row] = -np.inf
    return np.sort(np.partition(-sims, k)[:k])


KTH: dict[int, float] = {}  # anchor image -> cosine of its exact 10th neighbour (computed once)

QUERIES = {
    "halfvec": (  # the anchor's vector as a scalar subquery (an init plan): the index can order by it
        "SELECT e.image_id, e.vector::halfvec({d}) <=> (SELECT vector::halfvec({d}) FROM "
        "recommendations_imageembedding WHERE image_id = %(image)s AND model_id = {m}) "
        "FROM recommendations_imageembedding e JOIN recommendations_imagestate i ON i.id = e.image_id "
        "JOIN recommendations_productsnapshot s ON s.product_id = i.product_id WHERE e.model_id = {m} "
        "AND i.is_primary AND s.active AND s.in_stock AND e.image_id <> %(image)s ORDER BY 2 LIMIT 10"
    ),
    "pca": (
        "WITH c AS MATERIALIZED (SELECT r.image_id FROM bench_reduced r JOIN recommendations_imagestate i "
        "ON i.id = r.image_id JOIN recommendations_productsnapshot s ON s.product_id = i.product_id "
        "WHERE s.active AND s.in_stock AND r.image_id <> %(image)s ORDER BY r.v <=> (SELECT v FROM bench_reduced "
        "WHERE image_id = %(image)s) LIMIT %(candidates)s) "
        "SELECT e.image_id, e.vector::halfvec({d}) <=> (SELECT vector::halfvec({d}) FROM "
        "recommendations_imageembedding WHERE image_id = %(image)s AND model_id = {m}) FROM c "
        "JOIN recommendations_imageembedding e ON e.image_id = c.image_id AND e.model_id = {m} ORDER BY 2 LIMIT 10"
    ),
    "halfvec-efc32": (
        "SELECT r.image_id, r.v <=> (SELECT v FROM bench_full WHERE image_id = %(image)s) FROM bench_full r "
        "JOIN recommendations_imagestate i ON i.id = r.image_id JOIN recommendations_productsnapshot s "
        "ON s.product_id = i.product_id WHERE s.active AND s.in_stock AND r.image_id <> %(image)s ORDER BY 2 LIMIT 10"
    ),
    "binary": (
        "WITH q AS MATERIALIZED (SELECT vector::halfvec({d}) AS v FROM recommendations_imageembedding "
        "WHERE image_id = %(image)s AND model_id = {m}), c AS MATERIALIZED (SELECT e.image_id, e.vector "
        "FROM recommendations_imageembedding e JOIN recommendations_imagestate i ON i.id = e.image_id "
        "JOIN recommendations_productsnapshot s ON s.product_id = i.product_id WHERE e.model_id = {m} "
        "AND i.is_primary AND s.active AND s.in_stock AND e.image_id <> %(image)s "
        "ORDER BY binary_quantize(e.vector::halfvec({d}))::bit({d}) <~> binary_quantize((SELECT v FROM q))::bit({d}) "
        "LIMIT %(candidates)s) SELECT c.image_id, c.vector::halfvec({d}) <=> (SELECT v FROM q) FROM c ORDER BY 2 "
        "LIMIT 10"
    ),
}


def measure(conn, built, kind: str, anchors, vectors, servable, row_of, ef: int, candidates: int) -> dict:
    """Recall@10 (real / synthetic anchors) and query time (ms) of one candidate at one setting."""
    sql = QUERIES[kind].format(d=built["dimensions"], m=built["embedding_model_id"])
    conn.execute(f"SET hnsw.ef_search = {int(ef)}")
    conn.execute("SET hnsw.iterative_scan = relaxed_order")
    for image, _ in anchors[:10]:  # warm
        conn.execute(sql, {"image": int(image), "candidates": candidates})
    hits = {"real": [], "synthetic": []}
    times = []
    for image, synthetic in anchors:
        t0 = time.perf_counter()
        rows = conn.execute(sql, {"image": int(image), "candidates": candidates}).fetchall()
        times.append((time.perf_counter() - t0) * 1000)
        if image not in KTH:
            KTH[image] = -exact_top(vectors, servable, row_of[image])[-1]
        kth = KTH[image]
        found = [1.0 - float(d) for _, d in rows][:10]
        hits["synthetic" if synthetic else "real"].append(sum(1 for s in found if s >= kth - 1e-4) / 10)
    return {
        "recall_real": float(np.mean(hits["real"])),
        "recall_synthetic": float(np.mean(hits["synthetic"])),
        "recall": float(np.mean(hits["real"] + hits["synthetic"])),
        "p50_ms": float(np.percentile(times, 50)),
        "p95_ms": float(np.percentile(times, 95)),
    }


SETTINGS = {
    "halfvec": [(40, 10), (64, 10), (100, 10), (200, 10)],
    "halfvec-efc32": [(40, 10), (64, 10), (100, 10), (200, 10)],
    "pca": [(40, 20), (40, 40), (64, 64), (100, 100)],
    "binary": [(100, 100), (400, 400), (1000, 1000)],
}


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = parse_args(argv)
    load_before = os.getloadavg()
    conn, built = connect(args.products)
    ids, products, synthetic, servable, vectors = load_vectors(conn, built["embedding_model_id"])
    log.info("%d vectors loaded", len(ids))
    rng = np.random.default_rng(args.seed + 17)
    axes = pca_axes(vectors, PCA_DIMS, rng)
    kept = float(np.sum((vectors @ axes) ** 2) / np.sum(vectors**2))
    built_info = build_candidates(conn, built, ids, (vectors @ axes).astype(np.float32))
    built_info["halfvec"]["build_s"] = built["hnsw_index_s"]
    row_of = {int(image): i for i, image in enumerate(ids)}
    pool_real = rng.permutation(np.flatnonzero(~synthetic))[: args.queries // 2]
    pool_syn = rng.permutation(np.flatnonzero(synthetic))[: args.queries // 2]
    anchors = [(int(ids[r]), False) for r in pool_real] + [(int(ids[r]), True) for r in pool_syn]
    rows = []
    for kind, settings in SETTINGS.items():
        for ef, candidates in settings:
            found = measure(conn, built, kind, anchors, vectors, servable, row_of, ef, candidates)
            log.info("%s ef %d candidates %d: %s", kind, ef, candidates, found)
            rows.append(
                [
                    kind,
                    ef,
                    candidates if kind in ("pca", "binary") else "–",
                    f"{found['recall_real']:.3f}",
                    f"{found['recall_synthetic']:.3f}",
                    f"{found['recall']:.3f}",
                    f"{found['p50_ms']:.2f}",
                    f"{found['p95_ms']:.2f}",
                ]
            )
    sizes = markdown_table(
        ["candidate", "index build s", "index MiB", "extra table MiB"],
        [
            [k, f"{v['build_s']:.0f}" if v["build_s"] else "–", f"{v['index_mb']:.0f}", f"{v.get('table_mb', 0):.0f}"]
            for k, v in built_info.items()
        ],
    )
    recall = markdown_table(
        [
            "candidate",
            "ef_search",
            "re-ranked candidates",
            "recall real",
            "recall synthetic",
            "recall all",
            "p50 ms",
            "p95 ms",
        ],
        rows,
    )
    print(sizes)
    print(recall)
    load_after = os.getloadavg()
    body = "\n".join(
        [
            f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `benchmarks/serving_storage.py --products {args.products}` "
            f"on the catalogue `{built['database']}` ({built['products']:,} products, {built['synthetic_products']:,} "
            f"synthetic). Load average (1, 5, 15 min) {' '.join(f'{x:.2f}' for x in load_before)} before, "
            f"{' '.join(f'{x:.2f}' for x in load_after)} after (2 cores, shared with other work: build times are "
            "inflated by it, all three alike only if the load stayed the same).",
            "",
            f"PCA: the top {PCA_DIMS} principal axes of {FIT_SAMPLE:,} random catalogue vectors keep {kept:.1%} of "
            "the vectors' energy. Anchors: "
            f"{len(pool_real)} real and {len(pool_syn)} synthetic catalogue products; each query excludes the anchor "
            "and keeps active, in-stock products; recall@10 against the exact top 10 by the full 1280-d vectors "
            "(numpy, every vector), a product as near as the 10th counting as a hit. Query time: one client, "
            "psycopg, the SQL alone (no Django). The halfvec index's build time is the catalogue build's.",
            "",
            sizes,
            "",
            recall,
        ]
    )
    if not args.no_doc:
        write_section(DOCS / "serving.md", "serving-storage", "Serving benchmark", body)


if __name__ == "__main__":
    main()
