"""Bulk import from the admin as a Celery task: a products CSV and a ZIP of images.

The admin stores the uploads under ``MEDIA_ROOT/visrec/private/`` (never served) and
queues :func:`import_products` with the id of a ``TaskRun(kind=import)``. The task
unpacks the ZIP into a temporary folder with limits (file count, total and per-file
uncompressed size, no absolute paths, ``..`` or links), runs
:func:`catalog.importers.run_import` with a progress callback that updates the run,
writes every failed row (and every refused ZIP entry) to a CSV report stored privately
on the run, and queues the embedding of the new images. A bad row, image or ZIP entry
never stops the run; only an unusable file or mapping fails it.
"""

from __future__ import annotations

import logging
import shutil
import stat
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from celery import shared_task
from django.core.files import File
from django.core.files.storage import default_storage
from django.db import transaction

from recommendations import workers
from recommendations.audit import log_change
from recommendations.cockpit import taskruns
from recommendations.conf import visrec_settings
from recommendations.models import TaskRun

from . import importers
from .importers import ImportConfigError, ImportOptions, ImportReport

logger = logging.getLogger(__name__)

#: Where the admin stores uploads and reports (the media view refuses these prefixes).
PRIVATE_PREFIX = "visrec/private/"
REPORTS_PREFIX = "visrec/reports/"
PRIVATE_MEDIA_PREFIXES = (PRIVATE_PREFIX, REPORTS_PREFIX)

#: Limits on an uploaded ZIP of images.
MAX_ZIP_ENTRIES = 20_000
MAX_ZIP_TOTAL_BYTES = 4 * 1024**3
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
PROGRESS_EVERY_S = 0.5


@dataclass
class ZipLimits:
    """How much an images ZIP may unpack to."""

    entries: int = MAX_ZIP_ENTRIES
    total_bytes: int = MAX_ZIP_TOTAL_BYTES
    file_bytes: int = 0  # 0: the image size limit (VISREC["MAX_IMAGE_BYTES"])


def safe_member_path(name: str) -> PurePosixPath:
    """The relative path of a ZIP entry; raises ``ValueError`` for absolute or escaping names."""
    cleaned = name.replace("\\", "/")
    path = PurePosixPath(cleaned)
    if cleaned.startswith("/") or (path.parts and ":" in path.parts[0]):
        raise ValueError("absolute path")
    if any(part == ".." for part in path.parts):
        raise ValueError("path goes outside the archive ('..')")
    parts = [p for p in path.parts if p not in ("", ".")]
    if not parts:
        raise ValueError("empty name")
    return PurePosixPath(*parts)


def extract_images(archive: Path, target: Path, report: ImportReport, limits: ZipLimits | None = None) -> int:
    """Unpack the image files of ``archive`` into ``target``; refused entries go to ``report``.

    Sizes are counted while copying (a ZIP's declared sizes can lie). Returns the number
    of files written.
    """
    limits = limits or ZipLimits()
    per_file = limits.file_bytes or int(visrec_settings.MAX_IMAGE_BYTES)
    name = archive.name
    try:
        bundle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as e:
        raise ImportConfigError(f"the images file is not a ZIP archive: {e}") from e
    written, budget, paths = 0, limits.total_bytes, _Paths()
    with bundle:
        for index, info in enumerate(bundle.infolist()):
            if info.is_dir():
                continue
            if index >= limits.entries:
                report.fail(name, 0, "", f"the archive has more than {limits.entries} entries; the rest were skipped")
                break
            reason = _refusal(info) or paths.conflict(safe_member_path(info.filename))
            if reason is None and per_file >= info.file_size > budget:
                budget = -1  # declared too big for what is left
            elif reason is None:
                reason, size = _extract_one(bundle, info, target, min(per_file, budget))
                budget -= size
            if budget < 0:
                report.fail(name, 0, "", f"the archive unpacks to more than {limits.total_bytes} bytes; stopped")
                break
            if reason is not None:
                report.images.failed += 1
                report.fail(name, 0, "", f"{info.filename}: {reason}")
            else:
                written += 1
    return written


class _Paths:
    """The files an archive has unpacked so far, to refuse entries that would clash with them."""

    def __init__(self) -> None:
        self.files: set[PurePosixPath] = set()
        self.folders: set[PurePosixPath] = set()

    def conflict(self, path: PurePosixPath) -> str | None:
        """Why ``path`` cannot be unpacked next to the earlier entries, or None (then it is recorded)."""
        if path in self.files:
            return "refused: a second entry with the same path"
        if path in self.folders:
            return "refused: an earlier entry uses this path as a folder"
        if clash := next((parent for parent in path.parents if parent in self.files), None):
            return f"refused: its folder {clash} is a file of the archive"
        self.files.add(path)
        self.folders.update(path.parents)
        return None


def _refusal(info: zipfile.ZipInfo) -> str | None:
    try:
        safe_member_path(info.filename)
    except ValueError as e:
        return f"refused: {e}"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "refused: symbolic link"
    if PurePosixPath(info.filename).suffix.lower() not in IMAGE_SUFFIXES:
        return "not an image file (skipped)"
    if info.flag_bits & 0x1:
        return "encrypted entry"
    return None


def _extract_one(bundle: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, limit: int) -> tuple[str | None, int]:
    """Copy one entry to ``target``, stopping past ``limit`` bytes; (reason or None, bytes written)."""
    destination = target / safe_member_path(info.filename)
    if info.file_size > limit:
        return f"larger than {limit} bytes unpacked", 0
    size = 0
    try:
        destination.parent.mkdir(parents=True, exist_ok=True)
        with bundle.open(info) as source, destination.open("wb") as sink:
            while chunk := source.read(1 << 16):
                size += len(chunk)
                if size > limit:
                    break
                sink.write(chunk)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as e:
        destination.unlink(missing_ok=True)
        return f"cannot be unpacked: {e}", size
    if size > limit:
        destination.unlink(missing_ok=True)
        return f"larger than {limit} bytes unpacked", size
    return None, size


class Progress:
    """Updates the run's done/total/message at most every :data:`PROGRESS_EVERY_S` seconds."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self.last = 0.0

    @contextmanager
    def __call__(self, kind: str, path: Path) -> Iterator[Callable[[int], None]]:
        total, done = importers.count_rows(path), 0
        taskruns.progress(self.run_id, 0, total, f"importing {kind}: 0 of {total} rows")

        def advance(n: int) -> None:
            nonlocal done
            done += n
            now = time.monotonic()
            if now - self.last >= PROGRESS_EVERY_S:
                self.last = now
                taskruns.progress(self.run_id, done, None, f"importing {kind}: {done} of {total} rows")

        yield advance
        taskruns.progress(self.run_id, done, max(total, done), f"imported {kind}: {done} rows")


@shared_task(bind=True, acks_late=True, queue="default")
def import_products(self, run_id: int) -> dict | None:
    """Run the import described by ``TaskRun`` ``run_id`` (queued by the admin's import page).

    A redelivered task takes over a run whose worker was lost (the import is idempotent);
    one whose worker died on each of ``TASK_MAX_DELIVERIES`` deliveries fails with the reason.
    """
    with workers.delivered(self) as delivery:
        run = workers.claim(run_id, self.request.id, "unpacking")
        if run is None or run.kind != TaskRun.IMPORT:
            logger.info("import run %s: missing or not queued, skipped", run_id)
            return None
        if reason := workers.over_cap(delivery):
            _failed(run, reason)
            return None
        with workers.heartbeat(run.pk):
            return _import(run)


def _import(run: TaskRun) -> dict | None:
    try:
        result = _run(run)
    except (ImportConfigError, UnicodeDecodeError) as e:
        _failed(run, str(e) if isinstance(e, ImportConfigError) else not_utf8(e))
        return None
    except Exception as e:  # a crash must end the run, not leave it "running"
        logger.exception("import run %s crashed", run.pk)
        taskruns.failed(run.pk, f"the import stopped unexpectedly: {e}")
        raise
    finally:
        delete_uploads(run.params)
    message = summary(result)
    taskruns.finished(run.pk, result, message)
    log_change(run.created_by, run, f"Import #{run.pk} finished: {message}")
    return result


def _failed(run: TaskRun, reason: str) -> None:
    taskruns.failed(run.pk, reason)
    log_change(run.created_by, run, f"Import #{run.pk} failed: {reason}")
    delete_uploads(run.params)


def not_utf8(error: UnicodeDecodeError) -> str:
    """The run's message for a CSV that is not UTF-8 (rows before the bad byte were imported)."""
    return (
        f"the products file is not UTF-8 (byte {error.start} of a read chunk cannot be decoded); "
        "save it as 'CSV UTF-8' and import it again (rows already imported are matched by SKU)"
    )


def _run(run: TaskRun) -> dict:
    params = run.params
    mapping = importers.build_mapping(params.get("preset") or None, None, params.get("columns") or [])
    with tempfile.TemporaryDirectory(prefix="visrec-import-") as tmp:
        folder = Path(tmp)
        products = _local_copy(params["products"], folder / "products.csv")
        images = folder / "images"
        images.mkdir()
        report_file = folder / "failures.csv"
        with report_file.open("w", newline="", encoding="utf-8") as stream:
            report = ImportReport(sink=importers.failure_writer(stream))
            if params.get("images"):
                archive = _local_copy(params["images"], folder / Path(params["images"]).name)
                extract_images(archive, images, report)
            options = ImportOptions(
                products=products,
                images_dir=images,
                mapping=mapping,
                workers=2,
                update_existing=bool(params.get("may_update")),  # catalog.change_product, checked at upload
            )
            importers.run_import(options, report, Progress(run.pk))
        if report.failure_count:
            with report_file.open("rb") as f:
                run.report.save(f"import-{run.pk}-failures.csv", File(f), save=False)
            TaskRun.objects.filter(pk=run.pk).update(report=run.report.name)  # not the stale counts
    with transaction.atomic():
        from recommendations.tasks import enqueue_embedding

        enqueue_embedding(report.new_image_ids)
    return result_of(report)


def result_of(report: ImportReport) -> dict:
    """The counts of ``report`` as JSON for ``TaskRun.result``."""
    p, i = report.products, report.images
    return {
        "products_created": p.created,
        "products_updated": p.updated,
        "products_skipped": p.skipped,
        "products_failed": p.failed,
        "images_stored": i.stored,
        "images_unchanged": i.unchanged,
        "images_failed": i.failed,
        "categories_created": report.categories_created,
        "failures": report.failure_count,
        "first_failures": [str(f) for f in report.failures[:5]],
        "images_queued": len(report.new_image_ids),
    }


def summary(result: dict) -> str:
    """One line for the run's message."""
    return (
        f"{result['products_created']} created, {result['products_updated']} updated, "
        f"{result['products_skipped']} unchanged, {result['products_failed']} failed rows; "
        f"{result['images_stored']} images stored, {result['images_failed']} failed"
    )


def _local_copy(name: str, destination: Path) -> Path:
    try:
        with default_storage.open(name, "rb") as source, destination.open("wb") as sink:
            shutil.copyfileobj(source, sink, 1 << 20)
    except OSError as e:
        raise ImportConfigError(f"the uploaded file {name} cannot be read: {e}") from e
    return destination


def delete_uploads(params: dict) -> None:
    """Delete a run's uploaded files (those under :data:`PRIVATE_PREFIX`)."""
    for key in ("products", "images"):
        name = params.get(key)
        if name and name.startswith(PRIVATE_PREFIX):
            try:
                default_storage.delete(name)
            except OSError as e:
                logger.warning("could not delete the upload %s: %s", name, e)
