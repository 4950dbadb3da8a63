"""Training as a product feature: snapshot -> fit -> evaluate -> save -> activate-if-better.

Every configured recommender is fitted on the older interactions and evaluated on the
newest ones (temporal hold-out); the winner is refitted on everything and stored as a
:class:`~recommendations.models.ModelVersion`. It becomes active only if it beats the
active version's configuration, refitted and evaluated on the same split.
"""

from __future__ import annotations

import importlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.db import transaction
from django.utils import timezone

from .conf import visrec_settings
from .data import Snapshot, build_snapshot, complement_events, item_vectors
from .locks import advisory_lock
from .ml.base import REGISTRY, FitContext, Recommender
from .ml.evaluation import cosine_neighbours, evaluate, fraction_split, judgement_agreement
from .ml.mapped import mapped_dir, unpack
from .models import EmbeddingModel, ModelVersion, SimilarityJudgement

logger = logging.getLogger(__name__)

MODEL_MODULES = ("popularity", "knn", "mf", "visual", "vbpr", "fusion", "sequence")
Progress = Callable[[str, int, int], None]


class TrainingError(RuntimeError):
    """Training cannot run (no data, unknown model, ...)."""


class TrainingBusy(TrainingError):
    """Another training holds the training lock; this one did not run."""


#: The PostgreSQL advisory lock key held while one training fits, evaluates and decides activation.
TRAINING_LOCK = 0x76697372_74726E00  # "visrtrn"


def training_lock():
    """Hold the cluster-wide training lock, or raise :class:`TrainingBusy` at once.

    Nightly training, "Retrain now" and ``visrec_train`` on any worker never decide
    activation at the same time.
    """
    return advisory_lock(TRAINING_LOCK, TrainingBusy("skipped: another training is running"))


def registry() -> dict[str, type[Recommender]]:
    """Every recommender class, by name (imports the model modules once)."""
    for module in MODEL_MODULES:
        try:
            importlib.import_module(f"recommendations.ml.{module}")
        except ModuleNotFoundError as e:
            if e.name != f"recommendations.ml.{module}":
                raise
    return REGISTRY


@dataclass
class Candidate:
    """One configuration fitted and evaluated on the hold-out."""

    kind: str
    params: dict
    metrics: dict
    fit_seconds: float


def artifacts_dir() -> Path:
    path = Path(visrec_settings.CACHE_DIR or "var/cache") / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _context(snapshot: Snapshot, mask: np.ndarray | None) -> FitContext:
    return FitContext(
        timestamps=snapshot.timestamps(mask), judged_pairs=snapshot.judged_pairs, judged_labels=snapshot.judged_labels
    )


def fit_model(kind: str, params: dict, snapshot: Snapshot, mask: np.ndarray | None) -> tuple[Recommender, float]:
    """Fit one configuration on the interactions selected by ``mask``; returns (model, seconds)."""
    model = registry()[kind](**params)
    started = time.perf_counter()
    model.fit(snapshot.matrix(mask), snapshot.item_features, _context(snapshot, mask))
    return model, time.perf_counter() - started


def evaluate_models(
    snapshot: Snapshot, configs: Sequence[tuple[str, dict]], progress: Progress | None = None
) -> list[Candidate]:
    """Fit each ``(kind, params)`` on the older interactions, evaluate on the newest."""
    train, test = fraction_split(
        snapshot.rows, snapshot.cols, snapshot.values, snapshot.times, float(visrec_settings.TRAIN_HOLDOUT_FRACTION)
    )
    if not test.any() or not train.any():
        raise TrainingError("not enough interactions for a temporal hold-out")
    train_matrix, test_matrix = snapshot.matrix(train), snapshot.matrix(test)
    visual = visual_judged_metrics(snapshot)  # the same for every candidate
    out = []
    for n, (kind, params) in enumerate(configs):
        if progress:
            progress(kind, n, len(configs))
        model, seconds = fit_model(kind, params, snapshot, train)
        metrics = evaluate(model, train_matrix, test_matrix, k_list=(12, 50), n_bootstrap=200)
        metrics |= visual | judged_metrics(model, snapshot)
        metrics = {k: _finite(v) for k, v in metrics.items()} | {"fit_seconds": seconds}
        out.append(Candidate(kind, model.get_params(), metrics, seconds))
        logger.info("evaluated %s", kind, extra={"kind": kind, "metrics": _headline(metrics)})
    return out


JUDGED_K = 8  # the similar-items list size the owner judged


def _judged(snapshot: Snapshot) -> bool:
    return snapshot.judged_pairs is not None and len(snapshot.judged_pairs) > 0


def visual_judged_metrics(snapshot: Snapshot) -> dict[str, float]:
    """Agreement of plain visual similarity (cosine of the image vectors) with the owner's judgements.

    The baseline every candidate's :func:`judged_metrics` is read against, as ``visual_*``;
    empty without judgements or without the snapshot's image vectors.
    """
    if not _judged(snapshot) or snapshot.item_features is None:
        return {}
    pairs, labels = snapshot.judged_pairs, snapshot.judged_labels
    neighbours = cosine_neighbours(snapshot.item_features)
    visual = judgement_agreement(neighbours, pairs, labels, JUDGED_K, len(snapshot.items))
    return {f"visual_{k}": v for k, v in visual.items() if k != "judged_pairs"}


def judged_metrics(model: Recommender, snapshot: Snapshot) -> dict[str, float]:
    """Agreement of the model's item neighbours with the owner's judgements.

    The judgements are the positive/negative pairs of the snapshot; models without
    item-to-item similarity report only how many pairs there are.
    """
    if not _judged(snapshot):
        return {}
    pairs, labels = snapshot.judged_pairs, snapshot.judged_labels
    try:
        return judgement_agreement(model.similar_items, pairs, labels, JUDGED_K, len(snapshot.items))
    except NotImplementedError:
        return {"judged_pairs": float(len(pairs))}


def needs_item_features(configs: Sequence[tuple[str, dict]]) -> bool:
    """Whether training ``configs`` needs the snapshot's image vectors.

    Yes when a candidate's model reads them (``Recommender.needs_item_features``), or when
    the owner has judged similar items (plain visual similarity is their baseline).
    """
    if any(registry()[kind].needs_item_features for kind, _ in configs):
        return True
    return SimilarityJudgement.objects.exists()


def _finite(value):
    """JSON has no NaN: a metric with no users to average over is stored as null."""
    return None if isinstance(value, float) and not np.isfinite(value) else value


def _score(candidate: Candidate, metric: str) -> float:
    value = candidate.metrics.get(metric)
    return float("-inf") if value is None else value


def _headline(metrics: dict) -> dict:
    keys = ("recall@12", "recall@50", "ndcg@12", "cold_recall@50", "coverage@12")
    return {k: round(metrics[k], 5) for k in keys if metrics.get(k) is not None}


def _configs(models: Sequence[str] | None) -> list[tuple[str, dict]]:
    names = list(models or visrec_settings.TRAIN_MODELS)
    unknown = [n for n in names if n not in registry()]
    if unknown:
        raise TrainingError(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(sorted(REGISTRY))}")
    configs = [(n, {}) for n in names]
    active = ModelVersion.objects.active()
    if active is not None and (active.kind, active.params) not in configs and active.kind in REGISTRY:
        configs.append((active.kind, active.params))  # the incumbent competes on the same split
    return configs


def train(models: Sequence[str] | None = None, progress: Progress | None = None) -> ModelVersion:
    """Train, evaluate and store the best configuration; activate it if it beats the active one.

    One training at a time (:func:`training_lock`); raises :class:`TrainingBusy` when another runs.
    """
    with training_lock():
        return _train(models, progress)


def _train(models: Sequence[str] | None, progress: Progress | None) -> ModelVersion:
    configs = _configs(models)
    snapshot = build_snapshot(item_features=needs_item_features(configs))
    if len(snapshot.rows) == 0:
        raise TrainingError("there are no interactions to learn from")
    candidates = evaluate_models(snapshot, configs, progress)
    metric = visrec_settings.TRAIN_METRIC
    best = max(candidates, key=lambda c: _score(c, metric))
    version = _store(best, snapshot)
    active = ModelVersion.objects.active()
    incumbent = next((c for c in candidates if active and (c.kind, c.params) == (active.kind, active.params)), None)
    if active is None or (incumbent is not None and _score(best, metric) > _score(incumbent, metric)):
        activate(version)
    logger.info("trained %s", version, extra={"metric": metric, "value": best.metrics.get(metric)})
    return version


def save_artifact(model: Recommender, users: np.ndarray, items: np.ndarray) -> Path:
    """Save ``model`` and its id maps (shopper keys by row, product pks by column) under :func:`artifacts_dir`."""
    name = f"{model.name}-{uuid.uuid4().hex[:12]}"
    path = model.save(artifacts_dir() / f"{name}.npz")
    np.savez(path.with_suffix(".ids.npz"), users=np.asarray(users).astype(str), items=np.asarray(items))
    return path


def _store(candidate: Candidate, snapshot: Snapshot) -> ModelVersion:
    """Refit the winner on every interaction and save artifact + id maps."""
    model, seconds = fit_model(candidate.kind, candidate.params, snapshot, None)
    path = save_artifact(model, snapshot.users, snapshot.items)
    try:
        save_complements(snapshot, path)
    except Exception:  # complete the look falls back to co-purchases; the version itself is good
        logger.exception("cannot train the complete-the-look model")
    version = ModelVersion.objects.create(
        kind=candidate.kind,
        params=candidate.params,
        metrics=candidate.metrics,
        artifact=path.name,
        data_size=snapshot.data_size(),
        training_seconds=candidate.fit_seconds + seconds,
        embedding_model=EmbeddingModel.objects.active(),
    )
    _prepare_serving(version)
    return version


def _prepare_serving(version: ModelVersion) -> None:
    """Write the memory-mapped copies web processes read, before the version can be activated.

    Otherwise the first request after an activation would unpack the artifact. A
    failure only costs that: a web process unpacks what is missing itself.
    """
    from .serving.versions import prepare

    try:
        prepare(version)
    except Exception:
        logger.exception("cannot prepare the memory-mapped copies of %s", version, extra={"model_version": version.pk})


@transaction.atomic
def activate(version: ModelVersion) -> None:
    """Make ``version`` the one serving reads (atomic; re-activating an old one works too)."""
    ModelVersion.objects.select_for_update().filter(is_active=True).exclude(pk=version.pk).update(is_active=False)
    ModelVersion.objects.filter(pk=version.pk).update(is_active=True, activated_at=timezone.now())
    version.is_active = True


@dataclass
class LoadedVersion:
    """A model version ready to score: the model and its id maps.

    ``mapped_dir``: the folder of its memory-mapped arrays (None when loaded into memory).
    """

    version: ModelVersion
    model: Recommender
    users: np.ndarray
    items: np.ndarray
    mapped_dir: Path | None = None
    # complete the look: (compatibility model, item codes, product pks of the codes), if trained
    complements: tuple | None = None


def load_version(version: ModelVersion, mapped: bool = False) -> LoadedVersion:
    """Load a stored version's artifact (pickle-free) and id maps.

    ``mapped``: memory-map the arrays from uncompressed copies next to the artifact
    (:mod:`recommendations.ml.mapped`; the first load writes them), so that every
    process serving the version shares one copy.
    """
    path = artifacts_dir() / version.artifact
    model = Recommender.load(path, mapped=mapped)
    complements = load_complements(path, mapped)
    if mapped:
        folder = mapped_dir(path)
        ids = unpack(path.with_suffix(".ids.npz"), folder)
        return LoadedVersion(version, model, ids["users"], ids["items"], folder, complements)
    with np.load(path.with_suffix(".ids.npz"), allow_pickle=False) as ids:
        return LoadedVersion(version, model, ids["users"], ids["items"], complements=complements)


# -- complete the look -----------------------------------------------------------------
def complements_path(artifact: Path) -> Path:
    """Where the compatibility model trained with a version's ``artifact`` is stored."""
    return artifact.with_name(f"{artifact.stem}.complements.npz")


def save_complements(snapshot: Snapshot, artifact: Path) -> Path | None:
    """Fit complete the look's compatibility model on the snapshot's co-purchases and store it beside ``artifact``.

    The candidates' recent sales are its popularity prior; its weight (and window: the last
    ``COMPLEMENT_PRIOR_SECONDS`` or all sales) is chosen on a validation cut of this shop's
    own baskets (:func:`~recommendations.ml.complements.fit_choosing_prior`; with too few
    baskets ``COMPLEMENT_MODEL["prior_weight"]`` stays), recorded in the model's metadata and
    logged. Pairs count less as they age (``COMPLEMENT_MODEL["half_life_days"]``). Needs image
    vectors and at least one co-purchased pair (else nothing is stored and complete the look
    serves co-purchases and popular products only). The codes of every snapshot product are
    stored with it, so serving scores them with one matrix product.
    """
    from .ml.complements import Events, copurchase_pairs, fit_choosing_prior

    events = Events(*complement_events(snapshot.items))
    window = float(visrec_settings.COMPLEMENT_WINDOW_SECONDS)
    pairs, _ = copurchase_pairs(events.shoppers, events.items, events.times, window)
    if not len(pairs):
        logger.info("no complete-the-look model: no co-purchases")
        return None
    features = snapshot.item_features  # (None when no candidate model read them: read them now)
    if features is None:
        features = item_vectors(snapshot.items, EmbeddingModel.objects.active())
    if features is None:
        logger.info("no complete-the-look model: no image vectors")
        return None
    params, prior_seconds = dict(visrec_settings.COMPLEMENT_MODEL), float(visrec_settings.COMPLEMENT_PRIOR_SECONDS)
    try:
        model, recent = fit_choosing_prior(params, features, events, window, prior_seconds)
    except ValueError as e:  # e.g. no pair of products that both have a picture
        logger.info("no complete-the-look model: %s", e)
        return None
    choice = model.validation
    logger.info(
        "complete the look: prior weight %s, window %s s (%s on %d held-out baskets)",
        choice["prior_weight"],
        choice["prior_seconds"],
        choice["reason"],
        choice["baskets"],
        extra={"complement_prior": choice},
    )
    codes = model.item_codes(features, recent)  # the prior: the recent sales of the chosen window
    return model.save(complements_path(artifact), codes=codes, items=snapshot.items)


def load_complements(artifact: Path, mapped: bool = False) -> tuple | None:
    """``(model, codes, items)`` stored by :func:`save_complements` beside ``artifact`` (None: none, or unreadable)."""
    from .ml.complements import CompatibilityModel

    path = complements_path(artifact)
    if not path.exists():
        return None
    try:
        model, arrays = CompatibilityModel.load(path, mapped=mapped)
        return model, arrays["codes"], arrays["items"]
    except (OSError, ValueError, KeyError):  # the version still serves; complete the look without its model
        logger.exception("cannot load the complete-the-look model %s", path.name)
        return None
