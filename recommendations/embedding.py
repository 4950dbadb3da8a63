"""Bridge between image rows and the embedder: load, validate, embed, store.

Idempotent and loss-free: each image ends ``ready`` (one vector per embedding-model
version, upserted) or ``failed`` with a reason; a bad image never stops the batch.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from django.db import connection, transaction

from .conf import get_adapter, visrec_settings
from .devices import process_device
from .ml.images import ImageRejected, load_image
from .models import EmbeddingHead, EmbeddingModel, ImageEmbedding, ImageState

logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]


@dataclass
class EmbedReport:
    """Counts of one embedding run."""

    embedded: int = 0
    reused: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    failures: dict[int, str] = field(default_factory=dict)

    @property
    def images_per_second(self) -> float:
        done = self.embedded + self.reused + self.failed
        return done / self.seconds if self.seconds else 0.0


@functools.lru_cache(maxsize=4)
def _embedder(
    backbone: str,
    weights_path: str | None,
    weights_dir: str | None,
    device: str,
    batch_size: int,
    runtime: str,
    cache_dir: str,
):
    from .ml.backbones import load_backbone
    from .ml.embedder import Embedder

    backbone_obj = load_backbone(backbone, weights_path, weights_dir)
    return Embedder(backbone_obj, device=device, batch_size=batch_size, runtime=runtime, cache_dir=cache_dir or None)


def get_embedder(backbone: str | None = None, head: str | None = None):
    """The process-wide embedder of ``backbone`` (default: the configured one), loaded once.

    ``head``: the sha256 of a stored similarity head that the (fitted) backbone joins,
    read from the database once per process.
    """
    name = backbone or visrec_settings.BACKBONE
    embedder = _embedder(
        name,
        (visrec_settings.WEIGHTS or {}).get(name),
        visrec_settings.WEIGHTS_DIR or None,
        process_device(visrec_settings.DEVICE),
        int(visrec_settings.EMBED_BATCH_SIZE),
        visrec_settings.RUNTIME,
        str(visrec_settings.CACHE_DIR or ""),
    )
    return _with_head(embedder, head) if head else embedder


@functools.lru_cache(maxsize=4)
def _with_head(embedder, sha256: str):
    from .ml.head import SimilarityHead

    record = EmbeddingHead.objects.get(sha256=sha256)
    return embedder.with_head(SimilarityHead.from_bytes(bytes(record.data)), sha256, record.spec)


def current_embedder():
    """The configured backbone's embedder; a fitted descriptor's joins its newest head, once one is fitted."""
    embedder = get_embedder()
    if embedder.backbone.head_weight:
        head = EmbeddingHead.objects.current(version_key(embedder.backbone))
        if head is not None:
            return get_embedder(head=head.sha256)
    return embedder


def embedder_of(model: EmbeddingModel):
    """The embedder that reproduces ``model``'s vectors: its backbone, and its head by checksum."""
    head = (model.preprocessing or {}).get("head") or {}
    return get_embedder(model.backbone, head.get("sha256"))


def _embedder_for(model: EmbeddingModel):
    """The embedder that reproduces ``model``'s vectors, or None if its weights changed or are gone."""
    from .ml.backbones import UnknownBackbone, WeightsNotFound

    try:
        embedder = embedder_of(model)
    except (WeightsNotFound, UnknownBackbone, EmbeddingHead.DoesNotExist) as e:
        logger.warning("cannot load the active embedding version", extra={"model": model.pk, "error": str(e)})
        return None
    return embedder if embedder.backbone.weights_sha256 == model.weights_sha256 else None


def query_embedder(model: EmbeddingModel):
    """The embedder for one shopper photo against ``model``; None if this process cannot reproduce its vectors.

    ``model``'s exported ONNX file when ``CACHE_DIR`` has it and the runtime allows
    ONNX on the CPU: a web process then never imports torch (about 650 MB). Otherwise the
    full embedder (:func:`_embedder_for`), which a version with a fitted similarity head
    always takes (the head is joined in torch's process).
    """
    from .ml import onnx

    cache_dir = str(visrec_settings.CACHE_DIR or "")
    on_gpu = str(visrec_settings.DEVICE).startswith("cuda")
    onnx_ok = visrec_settings.RUNTIME != "torch" and not on_gpu and onnx.available()
    if "head" not in model.preprocessing and cache_dir and onnx_ok:
        path = onnx.export_path(Path(cache_dir), model.backbone, model.key)
        if path.is_file():
            return _exported(str(path), json.dumps(model.preprocessing, sort_keys=True))
    return _embedder_for(model)


@functools.lru_cache(maxsize=4)
def _exported(path: str, preprocessing: str):
    from .ml.embedder import ExportedEmbedder

    return ExportedEmbedder(Path(path), json.loads(preprocessing))


def version_key(backbone) -> str:
    """The key of the embedding version whose vectors ``backbone`` gives (hash of its spec)."""
    import hashlib

    return hashlib.sha256(json.dumps(backbone.spec(), sort_keys=True).encode()).hexdigest()


def version_record(backbone) -> tuple[EmbeddingModel, bool]:
    """``(version, created)`` of ``backbone``'s vectors; a new record has no index and is not active."""
    spec = backbone.spec()
    return EmbeddingModel.objects.get_or_create(
        key=version_key(backbone),
        defaults={
            "backbone": spec["backbone"],
            "weights_sha256": spec["weights_sha256"],
            "preprocessing": spec["preprocessing"],
            "dimensions": spec["dimensions"],
        },
    )


def current_embedding_model() -> EmbeddingModel:
    """The version record of the configured backbone; created on first use, indexed whenever its index is missing.

    The first version ever created becomes active; switching versions is done by
    :func:`activate_embedding_model` once the new vectors are complete.
    """
    model, created = version_record(current_embedder().backbone)
    if created or not model.index_exists():  # new, or a backbone switched back to after its index was dropped
        model.ensure_index()
    if created and not EmbeddingModel.objects.filter(is_active=True).exists():
        activate_embedding_model(model)
    return model


@transaction.atomic
def activate_embedding_model(model: EmbeddingModel) -> None:
    """Make ``model`` the version that serving reads (atomic switch)."""
    EmbeddingModel.objects.filter(is_active=True).exclude(pk=model.pk).update(is_active=False)
    EmbeddingModel.objects.filter(pk=model.pk).update(is_active=True)
    model.is_active = True


def _read(image) -> tuple[bytes | None, str]:
    record = getattr(image, "record", None)
    if record is None:
        return None, "the shop no longer has this image"
    return read_image_record(record)


def read_image_record(record) -> tuple[bytes | None, str]:
    """``(bytes, "")`` of the adapter's ``ImageRecord`` within ``MAX_IMAGE_BYTES``, or ``(None, reason)``."""
    try:
        with get_adapter().open_image(record) as f:
            data = f.read(int(visrec_settings.MAX_IMAGE_BYTES) + 1)
    except (OSError, ValueError) as e:
        return None, f"image file cannot be read: {e}"
    if len(data) > int(visrec_settings.MAX_IMAGE_BYTES):
        return None, f"file larger than {visrec_settings.MAX_IMAGE_BYTES} bytes"
    return data, ""


def _prepare(image, prepare):
    """Read, validate, decode and preprocess one image (runs in a worker thread).

    Returns ``(image, tensor or None, error)``; never raises for a bad file.
    """
    data, error = _read(image)
    if data is None:
        return image, None, error
    try:
        pil = load_image(data, int(visrec_settings.MAX_IMAGE_PIXELS))
    except ImageRejected as e:
        return image, None, str(e)
    image.width, image.height = pil.size
    return image, prepare(pil), ""


def embed_images(image_ids: Iterable[int], *, force: bool = False, progress: Progress | None = None) -> EmbedReport:
    """Embed the given images with the configured embedding-model version.

    Images already embedded by this version are skipped, and images whose file
    content (sha256) was already embedded reuse that vector, unless ``force``. While a new
    version is being built, the active version embeds the images too, so new products
    stay recommendable until the switch; the switch happens as soon as the new version
    covers every usable image.
    """
    started = time.perf_counter()
    report = EmbedReport()
    target = current_embedding_model()
    jobs = [(target, embedder_of(target), report)]
    active = EmbeddingModel.objects.active()
    if active is not None and active.pk != target.pk and (old := _embedder_for(active)) is not None:
        jobs.append((active, old, EmbedReport()))
    ids = sorted(set(image_ids))
    batch_size = max(int(visrec_settings.EMBED_BATCH_SIZE), 1)
    batches = [ids[start : start + batch_size] for start in range(0, len(ids), batch_size)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        for n, (model, embedder, job_report) in enumerate(jobs):
            _run_pipeline(batches, model, embedder, pool, force, job_report, progress if n == 0 else None)
    report.seconds = time.perf_counter() - started
    switch_if_complete(target)
    logger.info(
        "embedded images", extra={"embedded": report.embedded, "reused": report.reused, "failed": report.failed}
    )
    return report


def give_up(image_ids: Iterable[int], reason: str) -> int:
    """Fail the images of ``image_ids`` that still lack a vector of the current version, with ``reason``.

    For a batch that kept killing its worker; "Retry failed" queues them again. Returns their number.
    """
    missing = ImageState.objects.filter(pk__in=list(image_ids)).exclude(embeddings__model=current_embedding_model())
    return missing.update(status=ImageState.Status.FAILED, error=reason[:2000])


def images_missing(model: EmbeddingModel):
    """Usable images (not failed) that have no vector of ``model`` yet."""
    return ImageState.objects.exclude(status=ImageState.Status.FAILED).exclude(embeddings__model=model)


def switch_if_complete(target: EmbeddingModel) -> bool:
    """Activate ``target`` once it covers every usable image, then drop older versions' vectors.

    Until then the active version keeps serving. Returns True when a switch happened.
    """
    if target.is_active or images_missing(target).exists():
        return False
    target.ensure_index()  # a version never serves without its index (one filled in bulk gets it last)
    activate_embedding_model(target)
    for old in EmbeddingModel.objects.filter(is_active=False).exclude(pk=target.pk):
        deleted, _ = ImageEmbedding.objects.filter(model=old).delete()
        with connection.cursor() as cursor:
            cursor.execute(f"DROP INDEX IF EXISTS {old.index_name}")
        logger.info("dropped old embedding version", extra={"model": old.pk, "vectors": deleted})
    return True


@dataclass
class _Batch:
    """One batch in flight: images still to store, vectors known so far, decodes running."""

    images: list
    vectors: dict[int, np.ndarray]
    copies: list  # (image, original image) with the same file content
    futures: list
    done: int


def _run_pipeline(batches, model, embedder, pool, force, report, progress) -> None:
    """Decode batch k+1 in threads while the model embeds batch k."""
    in_flight: _Batch | None = None
    done = 0
    for ids in batches:
        done += len(ids)
        batch = _plan(ids, model, embedder, pool, force, report, done)
        if in_flight is not None:
            _finish(in_flight, model, embedder, report, progress, sum(map(len, batches)))
        in_flight = batch
    if in_flight is not None:
        _finish(in_flight, model, embedder, report, progress, sum(map(len, batches)))


def _plan(ids, model, embedder, pool, force, report, done) -> _Batch:
    """Load the rows, skip what is done, reuse known vectors, start decoding the rest."""
    Image = ImageState
    images = list(Image.objects.filter(pk__in=ids).order_by("pk"))
    report.skipped += len(ids) - len(images)
    if not force:
        embedded = set(ImageEmbedding.objects.filter(model=model, image_id__in=ids).values_list("image_id", flat=True))
        for image in images:
            if image.pk in embedded and image.status != Image.Status.READY:
                _mark(image, Image.Status.READY, "")
        report.skipped += len(embedded)
        images = [im for im in images if im.pk not in embedded]
    known = {} if force else _known_vectors(model, {im.sha256 for im in images if im.sha256})
    vectors: dict[int, np.ndarray] = {}
    first_by_sha: dict[str, object] = {}
    to_decode, copies = [], []
    for image in images:
        if image.sha256 and image.sha256 in known:
            vectors[image.pk] = known[image.sha256]
            report.reused += 1
        elif image.sha256 and image.sha256 in first_by_sha:
            copies.append((image, first_by_sha[image.sha256]))  # same file earlier in this batch: embed once
        else:
            first_by_sha.setdefault(image.sha256 or f"pk{image.pk}", image)
            to_decode.append(image)
    _attach_records(to_decode)
    futures = [pool.submit(_prepare, image, embedder.prepare) for image in to_decode]
    return _Batch(images, vectors, copies, futures, done)


def _finish(batch: _Batch, model, embedder, report, progress, total) -> None:
    """Wait for the decodes, run the model once for the batch, store the vectors."""
    decoded = []
    for future in batch.futures:
        image, tensor, error = future.result()
        if tensor is None:
            _fail(image, error, report)
        else:
            decoded.append((image, tensor))
    if decoded:
        for (image, _), vector in zip(decoded, embedder.embed_arrays([t for _, t in decoded]), strict=True):
            batch.vectors[image.pk] = vector
        report.embedded += len(decoded)
    for image, original in batch.copies:
        if original.pk in batch.vectors:
            batch.vectors[image.pk] = batch.vectors[original.pk]
            image.width, image.height = original.width, original.height
            report.reused += 1
        else:
            _fail(image, original.error, report)
    if batch.vectors:
        _store(model, batch.images, batch.vectors)
    if progress:
        progress(batch.done, total)


def _attach_records(images: list[ImageState]) -> None:
    """Give each image state the adapter's ``ImageRecord`` (``image.record``: how to open the file)."""
    adapter = get_adapter()
    products = adapter.prefetch(adapter.model._default_manager.filter(pk__in={im.product_id for im in images}))
    records = {(product.pk, rec.key): rec for product in products for rec in adapter.images(product)}
    for image in images:
        image.record = records.get((image.product_id, image.key))


def _fail(image, error: str, report: EmbedReport) -> None:
    _mark(image, ImageState.Status.FAILED, error)
    report.failed += 1
    report.failures[image.pk] = error


def _known_vectors(model: EmbeddingModel, shas: set[str]) -> dict[str, np.ndarray]:
    if not shas:
        return {}
    rows = ImageEmbedding.objects.filter(model=model, image__sha256__in=shas).values_list("image__sha256", "vector")
    return {sha: np.asarray(vec, dtype=np.float32) for sha, vec in rows}


@transaction.atomic
def _store(model: EmbeddingModel, images, vectors: dict[int, np.ndarray]) -> None:
    from pgvector import HalfVector

    Image = ImageState
    rows = [ImageEmbedding(image_id=pk, model=model, vector=HalfVector(vec)) for pk, vec in vectors.items()]
    ImageEmbedding.objects.bulk_create(
        rows, update_conflicts=True, unique_fields=["image", "model"], update_fields=["vector"]
    )
    ready = [im for im in images if im.pk in vectors]
    for image in ready:
        image.status, image.error = Image.Status.READY, ""
    Image.objects.bulk_update(ready, ["status", "error", "width", "height"])
    if primary := {im.product_id for im in ready if im.is_primary}:  # the vectors that serve similar items
        transaction.on_commit(functools.partial(_refresh_lists, primary, model))


def _refresh_lists(product_ids: set, model: EmbeddingModel) -> None:
    """Once the vectors are committed: the new products show in their neighbours' cached lists at once."""
    from .serving.fresh import refresh_lists_near

    dropped = refresh_lists_near(product_ids, model)
    logger.info("dropped cached lists near new vectors", extra={"products": len(product_ids), "lists": dropped})


def _mark(image, status: str, error: str) -> None:
    image.status, image.error = status, error[:2000]
    type(image).objects.filter(pk=image.pk).update(status=status, error=image.error)
    if error:
        logger.warning("image rejected", extra={"image_id": image.pk, "reason": error})
