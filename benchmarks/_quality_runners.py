"""How the quality benchmark fits and scores each contender: visrec models and the peers.

Every runner turns ``(params, split)`` into a *scorer*: a function from user rows to
dense ``(n_users, n_items)`` personal scores (``-inf`` = never recommended). The
popularity-prior blend is applied on top by ``quality.py``, once, the same way for
every contender.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from _common import ROOT

log = logging.getLogger("visrec.bench.quality")

PEERS_VENV = ROOT / "var" / "peers-venv"
PEERS_REQUIREMENTS = Path(__file__).resolve().parent / "requirements-peers.txt"

Scorer = Callable[[np.ndarray], np.ndarray]


def batched(score: Callable[[np.ndarray], np.ndarray], batch: int = 512) -> Scorer:
    """``score`` applied to at most ``batch`` users at a time, stacked."""

    def run(users: np.ndarray) -> np.ndarray:
        parts = [score(users[start : start + batch]) for start in range(0, len(users), batch)]
        return np.vstack(parts).astype(np.float32) if parts else np.zeros((0, 0), np.float32)

    return run


def visrec_runner(cls, features: np.ndarray):
    """A registered visrec model, fitted with its own prior switched off (the benchmark blends)."""
    from recommendations.ml.blend import PriorBlended

    def fit(params: dict, split) -> tuple[Scorer, float]:
        params = dict(params)
        if issubclass(cls, PriorBlended):
            params[cls.weight_param] = 0.0
        model = cls(**params)
        started = time.perf_counter()
        model.fit(split.train, features, split.context)
        seconds = time.perf_counter() - started
        return batched(lambda users: model.score(users, split.train[users])), seconds

    return fit


def implicit_runner(which: str):
    """Implicit's ALS or BPR exactly as its README uses it; scores are the factors' dot products."""

    def fit(params: dict, split) -> tuple[Scorer, float]:
        from implicit.cpu.als import AlternatingLeastSquares
        from implicit.cpu.bpr import BayesianPersonalizedRanking
        from threadpoolctl import threadpool_limits

        cls = AlternatingLeastSquares if which == "als" else BayesianPersonalizedRanking
        with threadpool_limits(1, "blas"):
            model = cls(**params)
            started = time.perf_counter()
            model.fit(split.train, show_progress=False)
            seconds = time.perf_counter() - started
        users_f, items_f = np.asarray(model.user_factors), np.asarray(model.item_factors)
        return batched(lambda users: users_f[users] @ items_f.T), seconds

    return fit


def peers_python() -> Path:
    """The peers venv's interpreter; created on first use (reuses this venv's packages via a .pth)."""
    python = PEERS_VENV / "bin" / "python"
    stamp = PEERS_VENV / ".installed"
    if stamp.exists() and stamp.read_text() == PEERS_REQUIREMENTS.read_text():
        return python
    import sysconfig

    log.info("creating %s (Cornac) from %s", PEERS_VENV, PEERS_REQUIREMENTS.name)
    subprocess.run([sys.executable, "-m", "venv", str(PEERS_VENV)], check=True)
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    ours = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    Path(site, "_visrec_main.pth").write_text("\n".join(ours) + "\n")  # torch, numpy, scipy: same as ours
    subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(PEERS_REQUIREMENTS)], check=True)
    stamp.write_text(PEERS_REQUIREMENTS.read_text())
    return python


def cornac_many(features: np.ndarray, jobs: list[tuple[dict, object, np.ndarray]]) -> list[tuple[np.ndarray, float]]:
    """Cornac VBPR in the peers venv: one subprocess fits every ``(params, split, users)`` job.

    Returns, per job, the dense scores of ``users`` over *all* items (cold ones scored
    from VBPR's learned visual parameters) and the fit time.
    """
    python = peers_python()
    with tempfile.TemporaryDirectory(prefix="visrec-cornac-") as tmp:
        arrays = {"features": features}
        for n, (_, split, users) in enumerate(jobs):
            coo = split.train.tocoo()
            arrays.update({f"{n}_users": coo.row, f"{n}_items": coo.col, f"{n}_values": coo.data})
            arrays[f"{n}_eval"] = users
        np.savez(Path(tmp, "in.npz"), jobs=np.array(json.dumps([p for p, _, _ in jobs])), **arrays)
        script = Path(__file__).resolve().parent / "_cornac_peer.py"
        subprocess.run([str(python), str(script), str(Path(tmp, "in.npz")), str(Path(tmp, "out.npz"))], check=True)
        with np.load(Path(tmp, "out.npz")) as out:
            return [(out[f"{n}_scores"], float(out[f"{n}_seconds"])) for n in range(len(jobs))]
