"""Cornac's VBPR as its users run it; executed by ``quality.py`` inside the peers venv.

Usage::

    <repo>/var/peers-venv/bin/python benchmarks/_cornac_peer.py IN.npz OUT.npz

``IN.npz`` holds the item image vectors (``features``), a JSON list of jobs
(``jobs``) and, for each job ``n``, ``n_users``, ``n_items``, ``n_eval`` arrays:
training triples (row, column, value) and the rows to rank for. Each job fits
``cornac.models.VBPR(**params)`` on ``cornac.data.Dataset.from_uir`` with an
``ImageModality`` and writes the top-``N`` columns (training items excluded, items
unknown to Cornac never ranked) as ``n_recs``, plus ``n_seconds`` (fit time).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def run_job(job: dict, users: np.ndarray, items: np.ndarray, values: np.ndarray, evals: np.ndarray, features):
    import cornac
    from cornac.data import ImageModality

    triples = [(str(u), str(i), float(v)) for u, i, v in zip(users, items, values, strict=True)]
    known = np.unique(items)
    modality = ImageModality(features=features[known], ids=[str(i) for i in known], normalized=True)
    train = cornac.data.Dataset.from_uir(triples, seed=job["params"].get("seed", 0))
    modality.build(id_map=train.iid_map)
    train.add_modalities(item_image=modality)
    model = cornac.models.VBPR(**job["params"], verbose=False)
    started = time.perf_counter()
    model.fit(train)
    seconds = time.perf_counter() - started
    columns = np.array([int(iid) for iid in train.item_ids])  # cornac index -> our column
    seen: dict[int, set[int]] = {}
    for u, i in zip(users.tolist(), items.tolist(), strict=True):
        seen.setdefault(u, set()).add(i)
    n = job["N"]
    recs = np.full((len(evals), n), -1, dtype=np.int64)
    for row, user in enumerate(evals.tolist()):
        if str(user) not in train.uid_map:
            continue
        scores = np.asarray(model.score(train.uid_map[str(user)]), dtype=np.float64).copy()
        scores[[train.iid_map[str(i)] for i in seen.get(user, ())]] = -np.inf
        top = np.argsort(-scores, kind="stable")[:n]
        top = top[np.isfinite(scores[top])]
        recs[row, : len(top)] = columns[top]
    return recs, seconds


def main(argv: list[str]) -> None:
    """Run every job of ``IN.npz``; torch on one thread, as the visrec models in ``quality.py``."""
    if len(argv) != 2:  # e.g. run by `make bench`'s loop: this is a helper of quality.py
        print(__doc__)
        return
    source, target = argv
    import torch

    torch.set_num_threads(1)
    with np.load(source, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    jobs = json.loads(str(arrays["jobs"]))
    out = {}
    for n, job in enumerate(jobs):
        recs, seconds = run_job(
            job,
            arrays[f"{n}_users"],
            arrays[f"{n}_items"],
            arrays[f"{n}_values"],
            arrays[f"{n}_eval"],
            arrays["features"],
        )
        out[f"{n}_recs"], out[f"{n}_seconds"] = recs, np.array(seconds)
        print(f"cornac job {n + 1}/{len(jobs)} {job['params']} fit {seconds:.1f}s", flush=True)
    np.savez(target, **out)


if __name__ == "__main__":
    main(sys.argv[1:])
