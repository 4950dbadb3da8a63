"""The similarity head's life cycle: fit it on the shop's categories, derive its version, switch.

A fitted descriptor (``efficientnet_lite0_fitted``) serves ``[cnn, head, colour]``
(:func:`recommendations.ml.head.join`). The head is learned from the vectors already
stored, and switching to it never runs the CNN: the unit CNN part and the colour part of
every vector are recovered from the active version (its first and last part).

1. The active version's vectors are read with each image's product category
   (:class:`~recommendations.models.ProductSnapshot`, the adapter's leaf category) and the
   head is fitted on their CNN parts (:func:`~recommendations.ml.head.fit_head`).
2. It is stored (:class:`~recommendations.models.EmbeddingHead`) with its embedding
   version in one transaction. From then on new images are embedded into that version,
   with the head, by every worker, and into the active version too, which keeps serving.
3. Every vector of the new version is derived in numpy, batch by batch, then those
   embedded into the old version meanwhile; the index is built and the version switched
   to (:func:`~recommendations.embedding.switch_if_complete`) once it covers every usable
   image. An image with no vector anywhere yet is left to the normal embedding path (its
   own task, or the ``embed_missing`` sweep), which switches when it is done.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass

import numpy as np
from django.db import transaction
from django.db.models import Count, Exists, OuterRef
from django.utils import timezone
from pgvector import HalfVector

from .conf import visrec_settings
from .embedding import get_embedder, images_missing, switch_if_complete, version_key, version_record
from .locks import advisory_lock
from .ml.backbones import DESCRIPTORS
from .ml.head import MIN_CLASS_SIZE, HeadSpec, NotEnoughLabels, SimilarityHead, fit_head
from .models import EmbeddingHead, EmbeddingModel, ImageEmbedding, ProductSnapshot

logger = logging.getLogger(__name__)

FITTED = next(name for name, d in DESCRIPTORS.items() if d.head_weight)
# The nightly training refits when the products per category moved by more than this
# share of the products the current head learned from (added, removed or re-filed).
REFIT_CHANGE = 0.10
# Images the head is fitted on at most (a random sample beyond), so a large catalogue's
# features stay within a few hundred MB.
FIT_MAX_IMAGES = 60_000
BATCH = 2000  # vectors read and written per query
DEFAULT_SPEC = HeadSpec()
_LOCK = 0x7669_7372_6563_4844  # PostgreSQL advisory lock: one fit at a time


class HeadUnavailable(RuntimeError):
    """No head can be fitted now (another backbone is configured, a re-embedding is still running...)."""


@dataclass
class FitReport:
    """What one fit stored and switched."""

    head: EmbeddingHead
    version: EmbeddingModel
    derived: int
    missing: int
    switched: bool
    seconds: float

    def describe(self) -> str:
        state = (
            f"active as {self.version}"
            if self.switched
            else f"{self.version} waits for {self.missing} image(s) without a vector yet"
        )
        return f"{self.head}: derived {self.derived} vectors without the CNN; {state}"


def fitted_embedder():
    """The configured backbone's head-less embedder; :class:`HeadUnavailable` unless it is a fitted descriptor."""
    embedder = get_embedder()
    if not embedder.backbone.head_weight:
        raise HeadUnavailable(
            f"the configured backbone {visrec_settings.BACKBONE!r} has no similarity head; "
            f'set VISREC = {{"BACKBONE": "{FITTED}"}} to learn one from the shop\'s categories'
        )
    return embedder


def base_key_of(model: EmbeddingModel) -> str:
    """The key of the head-less version whose CNN vectors ``model``'s vectors carry."""
    head = (model.preprocessing or {}).get("head")
    if not head:
        return model.key
    return EmbeddingHead.objects.filter(sha256=head.get("sha256")).values_list("base_key", flat=True).first() or ""


def source_version(embedder) -> EmbeddingModel:
    """The active version, if its vectors carry ``embedder``'s CNN part (the head is fitted on them)."""
    active = EmbeddingModel.objects.active()
    if active is None or base_key_of(active) != version_key(embedder.backbone):
        raise HeadUnavailable(
            f"the active embedding version ({active or 'none'}) is not {embedder.backbone.name}'s yet; the head "
            "is fitted on its vectors once the re-embedding (visrec_embed, or the workers) has switched to it"
        )
    return active


def current_head(embedder) -> EmbeddingHead | None:
    """The newest head fitted for ``embedder``'s (head-less) CNN vectors."""
    return EmbeddingHead.objects.current(version_key(embedder.backbone))


def category_counts(model: EmbeddingModel) -> dict[str, int]:
    """``{category id: products}`` of categorised products with a vector in ``model``."""
    vectors = ImageEmbedding.objects.filter(model=model, image__product_id=OuterRef("product_id"))
    rows = (
        ProductSnapshot.objects.filter(category_id__isnull=False)
        .filter(Exists(vectors))
        .values("category_id")
        .annotate(n=Count("pk"))
        .values_list("category_id", "n")
    )
    return {str(category): n for category, n in rows}


def category_change(before: dict[str, int], now: dict[str, int]) -> float:
    """Sum of the per-category differences, as a share of the products ``before``."""
    moved = sum(abs(now.get(c, 0) - before.get(c, 0)) for c in {*before, *now})
    return moved / max(sum(before.values()), 1)


def training_set(model: EmbeddingModel, backbone, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit CNN vectors of ``model``'s images of categorised products, and their category ids.

    At most :data:`FIT_MAX_IMAGES` images, drawn at random (``seed``) beyond that.
    """
    categorised = ProductSnapshot.objects.filter(category_id__isnull=False)
    rows = ImageEmbedding.objects.filter(model=model, image__product_id__in=categorised.values("product_id"))
    ids = np.array(rows.order_by("image_id").values_list("image_id", flat=True), dtype=np.int64)
    if len(ids) > FIT_MAX_IMAGES:
        ids = np.sort(np.random.default_rng(seed).choice(ids, FIT_MAX_IMAGES, replace=False))
    features, labels = [], []
    for start in range(0, len(ids), BATCH):
        chunk = rows.filter(image_id__in=ids[start : start + BATCH].tolist()).order_by("image_id")
        found = list(chunk.values_list("vector", "image__product_id"))
        if found:
            products = categorised.filter(product_id__in={p for _, p in found})
            category = dict(products.values_list("product_id", "category_id"))
            features.append(backbone.split(np.stack([np.asarray(v, dtype=np.float32) for v, _ in found]))[0])
            labels.extend(category.get(product) for _, product in found)
    cnn = np.concatenate(features) if features else np.zeros((0, backbone.cnn_dimensions), dtype=np.float32)
    return cnn, np.array(labels, dtype=object)


def derive(source: EmbeddingModel, target: EmbeddingModel, backbone) -> int:
    """Write ``target``'s vector of each image that has one in ``source`` and none in ``target`` yet.

    The CNN and colour parts come out of the stored vector (:meth:`Backbone.split`) and
    are joined anew (:meth:`Backbone.compose`); batches of :data:`BATCH`. A vector the
    embedding path wrote meanwhile is never overwritten. Returns the number written.
    """
    written = ImageEmbedding.objects.filter(model=target, image_id=OuterRef("image_id"))
    missing = ImageEmbedding.objects.filter(model=source).filter(~Exists(written)).order_by("image_id")
    done, last = 0, 0
    while rows := list(missing.filter(image_id__gt=last).values_list("image_id", "vector")[:BATCH]):
        last = rows[-1][0]
        ids = [pk for pk, _ in rows]
        stored = np.stack([np.asarray(vector, dtype=np.float32) for _, vector in rows])
        vectors = backbone.compose(*backbone.split(stored))
        new = zip(ids, vectors, strict=True)
        ImageEmbedding.objects.bulk_create(
            [ImageEmbedding(image_id=pk, model=target, vector=HalfVector(v)) for pk, v in new], ignore_conflicts=True
        )
        done += len(rows)
    return done


def _one_fit_at_a_time():
    return advisory_lock(_LOCK, HeadUnavailable("a similarity head is being fitted already"))


def fit_similarity_head(spec: HeadSpec | None = None) -> FitReport:
    """Fit a head on the active version's vectors and switch to the version that joins it.

    Raises :class:`NotEnoughLabels` (fewer than two categories with enough products) or
    :class:`HeadUnavailable`; nothing is stored then.
    """
    started = time.perf_counter()
    spec = spec or DEFAULT_SPEC
    embedder = fitted_embedder()
    with _one_fit_at_a_time():
        source = source_version(embedder)
        features, labels = training_set(source, embedder.backbone)
        head = fit_head(features, labels, spec)
        data = head.to_bytes()
        counts = category_counts(source)
        with transaction.atomic():
            record, _ = EmbeddingHead.objects.update_or_create(
                sha256=hashlib.sha256(data).hexdigest(),
                defaults={
                    "base_key": version_key(embedder.backbone),
                    "data": data,
                    "spec": spec.describe(),
                    "categories": head.classes,
                    "products": sum(counts.values()),
                    "category_counts": counts,
                    "fitted_at": timezone.now(),
                },
            )
            version, _ = version_record(embedder.with_head(head, record.sha256, record.spec).backbone)
        report = switch_to(record, source, version, head)
    report.seconds = time.perf_counter() - started
    logger.info("similarity head fitted", extra={"head": record.sha256, "version": version.pk})
    return report


def switch_to(record: EmbeddingHead, source: EmbeddingModel, version: EmbeddingModel, head=None) -> FitReport:
    """Derive ``version`` (joining ``record``'s head) from ``source``, index it and switch once complete."""
    head = head or SimilarityHead.from_bytes(bytes(record.data))
    backbone = fitted_embedder().with_head(head, record.sha256, record.spec).backbone
    derived = derive(source, version, backbone)
    version.ensure_index()
    switched = switch_if_complete(version)
    if not switched and not version.is_active:  # images a worker embedded into the old version meanwhile
        derived += derive(source, version, backbone)
        switched = switch_if_complete(version)
    if switched:
        _prune(keep=record)
    missing = 0 if version.is_active else images_missing(version).count()
    return FitReport(record, version, derived, missing, switched or version.is_active, 0.0)


def _prune(keep: EmbeddingHead) -> None:
    """Drop heads that no version with vectors joins any more (``keep`` stays)."""
    with_vectors = EmbeddingModel.objects.filter(Exists(ImageEmbedding.objects.filter(model=OuterRef("pk"))))
    used = {(m.preprocessing.get("head") or {}).get("sha256") for m in with_vectors.only("preprocessing")}
    EmbeddingHead.objects.exclude(sha256__in={keep.sha256, *used} - {None}).delete()


def why_refit(embedder, source: EmbeddingModel) -> str | None:
    """Why a new head should be fitted now (none yet, categories changed), or None."""
    head = current_head(embedder)
    if head is None:
        return "no similarity head yet"
    change = category_change(head.category_counts, category_counts(source))
    if change > REFIT_CHANGE:
        return f"the products per category changed by {change:.0%} since the last head"
    return None


def refit_if_due() -> str:
    """The nightly step: fit a head when a fitted descriptor is configured and it is due.

    A switch to the newest head left unfinished (a worker stopped, images were missing)
    is finished instead. Returns what happened; "" when the configured backbone has no head.
    """
    try:
        embedder = fitted_embedder()
    except HeadUnavailable:
        return ""
    try:
        source = source_version(embedder)
        head = current_head(embedder)
        if head is not None and not _joins(source, head):
            version, _ = version_record(get_embedder(head=head.sha256).backbone)
            return f"similarity head: finished the switch to {switch_to(head, source, version).describe()}"
        reason = why_refit(embedder, source)
        if reason is None:
            return f"similarity head: {head} is up to date"
        report = fit_similarity_head()
        return f"similarity head ({reason}): fitted in {report.seconds:.0f}s {report.describe()}"
    except (NotEnoughLabels, HeadUnavailable) as e:
        logger.warning("similarity head not fitted: %s", e)
        return f"similarity head not fitted: {e}"


def _joins(model: EmbeddingModel, head: EmbeddingHead) -> bool:
    return (model.preprocessing.get("head") or {}).get("sha256") == head.sha256


@dataclass(frozen=True)
class HeadStatus:
    """The cockpit's view of the similarity head: the current one and whether it serves, or why there is none."""

    message: str
    serving: bool = False
    sha256: str = ""


def head_status(counts=category_counts) -> HeadStatus:
    """The current head (fitted when, on how many products and categories) or why there is none.

    ``counts``: :func:`category_counts` or a cached stand-in (the only costly query).
    """
    try:
        embedder = fitted_embedder()
        head = current_head(embedder)
        active = EmbeddingModel.objects.active()
        if head is not None:
            serving = active is not None and _joins(active, head)
            message = (
                f"Fitted {timezone.localtime(head.fitted_at):%Y-%m-%d %H:%M} on {head.products} products "
                f"in {head.categories} categories"
            )
            if not serving:
                message += "; the switch to its vectors has not finished yet (the embedding workers complete it)"
            return HeadStatus(message + ".", serving, head.sha256)
        learnable = sum(1 for n in counts(source_version(embedder)).values() if n >= MIN_CLASS_SIZE)
    except HeadUnavailable as e:
        return HeadStatus(f"None: {e}.")
    if learnable < 2:
        return HeadStatus(
            f"None: it learns from the products' categories, and {learnable} categor"
            f"{'y has' if learnable == 1 else 'ies have'} {MIN_CLASS_SIZE} or more products with an image "
            "vector (two or more are needed)."
        )
    return HeadStatus("None yet: the nightly training fits it, or run manage.py visrec_fit_head.")
