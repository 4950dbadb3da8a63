"""``manage.py visrec_check_images PATH...``: vet image files before importing them.

Prints one JSON line per file ``{"file", "ok", "reason", "width", "height"}`` and
exits 0 whatever the verdicts, so it can be piped into other tools.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from django.core.management.base import BaseCommand

from recommendations.conf import visrec_settings
from recommendations.ml.images import ImageRejected, load_image


def _files(paths: list[str]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file())
        else:
            yield path


def verdict(path: Path, max_bytes: int, max_pixels: int) -> dict:
    """Full check of one file: the same decoding the embedder does."""
    result = {"file": str(path), "ok": False, "reason": None, "width": None, "height": None}
    try:
        if path.stat().st_size > max_bytes:
            result["reason"] = f"file larger than {max_bytes} bytes"
            return result
        data = path.read_bytes()
    except OSError as e:
        result["reason"] = f"cannot read file: {e.strerror or e}"
        return result
    try:
        image = load_image(data, max_pixels)
    except ImageRejected as e:
        result["reason"] = str(e)
        return result
    result.update(ok=True, width=image.width, height=image.height)
    return result


class Command(BaseCommand):
    help = "Check image files (or folders of them) the way the embedder will; one JSON line per file."

    def add_arguments(self, parser) -> None:
        parser.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")

    def handle(self, *args, paths: list[str], **options) -> None:
        max_bytes, max_pixels = int(visrec_settings.MAX_IMAGE_BYTES), int(visrec_settings.MAX_IMAGE_PIXELS)
        for path in _files(paths):
            self.stdout.write(json.dumps(verdict(path, max_bytes, max_pixels)))
