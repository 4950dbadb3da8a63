"""Write use-cases of the catalogue (the only place that creates images).

Shopper events are visrec's: ``record_interaction`` is :func:`recommendations.events.record_interaction`.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import PurePath
from typing import IO

from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction

from recommendations.events import record_interaction  # noqa: F401  (the shop's views record through it)

from .models import Product, ProductImage

logger = logging.getLogger(__name__)


def sha256_of(data: bytes) -> str:
    """Hex SHA-256 of raw file bytes (identical files embed once)."""
    return hashlib.sha256(data).hexdigest()


def read_upload(fileobj: IO[bytes], limit: int) -> bytes:
    """Read at most ``limit`` bytes; raise ``ValueError`` if the file is larger."""
    data = fileobj.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"file is larger than {limit} bytes")
    return data


@transaction.atomic
def add_product_image(
    product: Product, data: bytes, filename: str, *, is_primary: bool | None = None, position: int | None = None
) -> ProductImage:
    """Store an image file for ``product``; its embedding is queued after commit.

    The first image of a product becomes its primary image unless told otherwise.
    """
    existing = product.images.count()
    if is_primary is None:
        is_primary = not product.images.filter(is_primary=True).exists()
    if is_primary:
        product.images.filter(is_primary=True).update(is_primary=False)
    image = ProductImage(
        product=product,
        sha256=sha256_of(data),
        is_primary=is_primary,
        position=existing if position is None else position,
    )
    image.file.save(filename, ContentFile(data), save=False)
    image.save()
    return image


#: Formats an admin upload may have (raster images every browser shows; never SVG or HTML), with their suffix.
UPLOAD_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif"}


def check_image_upload(upload: UploadedFile) -> None:
    """Accept ``upload`` only if Pillow decodes it as a JPEG, PNG, WebP or GIF within the size limits.

    Raises ``ValueError`` with the reason. The upload is renamed to the suffix of its real
    format, so the file is always served as the image it is.
    """
    from recommendations.conf import visrec_settings
    from recommendations.ml.images import load_image, probe

    upload.seek(0)
    data = read_upload(upload, int(visrec_settings.MAX_IMAGE_BYTES))
    pixels = int(visrec_settings.MAX_IMAGE_PIXELS)
    info = probe(data, pixels)
    if info.format not in UPLOAD_FORMATS:
        raise ValueError(f"{info.format} images are not accepted; upload a JPEG, PNG, WebP or GIF")
    load_image(data, pixels)  # every pixel decodes (a truncated file fails here)
    upload.seek(0)
    upload.name = f"{PurePath(upload.name).stem or 'image'}{UPLOAD_FORMATS[info.format]}"


def checksum_new_file(image: ProductImage) -> None:
    """An image got a new file (admin upload): checksum it (visrec embeds the new version once saved)."""
    if not image.file:
        return
    image.file.seek(0)
    image.sha256 = sha256_of(image.file.read())
    image.file.seek(0)
    image.import_error = ""
