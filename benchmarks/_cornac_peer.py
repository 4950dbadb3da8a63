"""Cornac's VBPR as its users run it; executed by ``quality.py`` inside the peers venv.

Usage::

    <repo>/var/peers-venv/bin/python benchmarks/_cornac_peer.py IN.npz OUT.npz

``IN.npz`` holds the image vectors of *every* catalogue item (``features``), a JSON
list of parameter sets (``jobs``) and, for each job ``n``, ``n_users``, ``n_items``,
``n_values`` (training triples: row, column, value) and ``n_eval`` (the rows to score).
Each job fits ``cornac.models.VBPR(**params)`` on ``cornac.data.Dataset.from_uir``
with an ``ImageModality`` and writes ``n_scores``: dense scores of the ``n_eval`` rows
over all items. Items Cornac saw in training get ``model.score``; every other item
(no training interaction) is scored as VBPR defines it for an item without
collaborative factors, from the learned visual parameters: ``θ_u·(E f_i) + β'·f_i``.
Also ``n_seconds`` (fit time).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def run_job(params: dict, users: np.ndarray, items: np.ndarray, values: np.ndarray, evals: np.ndarray, features):
    import cornac
    from cornac.data import ImageModality

    triples = [(str(u), str(i), float(v)) for u, i, v in zip(users, items, values, strict=True)]
    every = np.arange(len(features))
    modality = ImageModality(features=features, ids=[str(i) for i in every], normalized=True)
    train = cornac.data.Dataset.from_uir(triples, seed=params.get("seed", 0))
    modality.build(id_map=train.iid_map)
    train.add_modalities(item_image=modality)
    model = cornac.models.VBPR(**params, verbose=False)
    started = time.perf_counter()
    model.fit(train)
    seconds = time.perf_counter() - started
    columns = np.array([int(iid) for iid in train.item_ids])  # cornac index -> our column
    visual_bias = (features @ np.asarray(model.beta_prime)).ravel()
    theta_items = features @ np.asarray(model.emb_matrix)
    scores = np.zeros((len(evals), len(features)), dtype=np.float32)
    for row, user in enumerate(evals.tolist()):
        if str(user) not in train.uid_map:
            continue
        u = train.uid_map[str(user)]
        scores[row] = np.asarray(model.theta_user[u]) @ theta_items.T + visual_bias  # any item, by its picture
        scores[row, columns] = np.asarray(model.score(u), dtype=np.float64)  # items with factors
    return scores, seconds


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
    for n, params in enumerate(jobs):
        scores, seconds = run_job(
            params,
            arrays[f"{n}_users"],
            arrays[f"{n}_items"],
            arrays[f"{n}_values"],
            arrays[f"{n}_eval"],
            arrays["features"],
        )
        out[f"{n}_scores"], out[f"{n}_seconds"] = scores, np.array(seconds)
        print(f"cornac job {n + 1}/{len(jobs)} {params} fit {seconds:.1f}s", flush=True)
    np.savez(target, **out)


if __name__ == "__main__":
    main(sys.argv[1:])
