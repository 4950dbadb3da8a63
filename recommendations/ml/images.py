"""Safe image loading: validate, decode, orient and convert any shop image to RGB.

Every failure is an :class:`ImageRejected` with a human-readable reason; nothing else
escapes, so one hostile file never stops a batch.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
DEFAULT_MAX_PIXELS = 50_000_000
BACKGROUND = (255, 255, 255)

# Our own pixel limit is checked before decoding; PIL's global guard stays as a backstop.
Image.MAX_IMAGE_PIXELS = None


class ImageRejected(ValueError):
    """An image that cannot be used, with the reason shown to the shop owner."""


@dataclass(frozen=True)
class ImageInfo:
    """What a header tells about an image without decoding its pixels."""

    format: str
    width: int
    height: int
    mode: str


def probe(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Read only the header: reject empty files, non-images and oversized images."""
    if not data:
        raise ImageRejected("empty file")
    head = data[:512].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml", b"<!doctype", b"<html")):
        raise ImageRejected("not an image (markup such as SVG/HTML is not accepted)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS) as im:
                info = ImageInfo(im.format or "", im.width, im.height, im.mode)
    except UnidentifiedImageError:
        raise ImageRejected("not a supported image (JPEG, PNG, WebP, GIF, BMP or TIFF)") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise ImageRejected(f"corrupt or truncated image (unreadable header: {e})") from None
    if info.width < 1 or info.height < 1:
        raise ImageRejected("image has no pixels")
    if info.width * info.height > max_pixels:
        raise ImageRejected(
            f"image too large: {info.width}x{info.height} = {info.width * info.height:,} pixels "
            f"exceeds the limit of {max_pixels:,} (possible decompression bomb)"
        )
    return info


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB; transparency is flattened onto a white background."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        hi = float(arr.max()) if arr.size else 0.0
        scale = 255.0 / hi if hi > 255 else 1.0
        im = Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8), mode="L")
    if im.mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, BACKGROUND)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    if im.mode != "RGB":
        return im.convert("RGB")
    return im


def load_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Validate and decode ``data`` into an upright RGB image.

    Raises :class:`ImageRejected` for empty, non-image, oversized, truncated or
    corrupt input.
    """
    probe(data, max_pixels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
            if getattr(im, "n_frames", 1) > 1:
                im.seek(0)
            im.load()
            im = ImageOps.exif_transpose(im) or im
            return _to_rgb(im)
    except ImageRejected:
        raise
    except Image.DecompressionBombError as e:
        raise ImageRejected(f"image too large: {e}") from None
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError, IndexError, TypeError) as e:
        raise ImageRejected(f"corrupt or truncated image: {e}") from None
