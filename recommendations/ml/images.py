"""Safe image loading: validate, decode, orient and convert any shop image to RGB, in bounded memory.

Every failure is an :class:`ImageRejected` with a human-readable reason; nothing else
escapes, so one hostile file never stops a batch.

Memory stays bounded by the pixel limit a caller passes: it is checked from the header
before any pixel is decoded. Pillow's own decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``,
left as Pillow sets it) refuses anything beyond twice its limit whatever the caller allows.
With ``draft_size`` a JPEG is decoded by libjpeg at 1/2, 1/4 or 1/8 scale, the smallest
that still covers that size, and the limit applies to the pixels actually decoded. 16- and
32-bit images are scaled to 8 bits a band of rows at a time with integer arithmetic, never
as a float64 copy of the whole picture.
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
WIDE_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
BAND_PIXELS = 1 << 20  # pixels of a 16/32-bit image scaled to 8 bits at once


class ImageRejected(ValueError):
    """An image that cannot be used, with the reason shown to the shop owner."""


@dataclass(frozen=True)
class ImageInfo:
    """What a header tells about an image without decoding its pixels."""

    format: str
    width: int
    height: int
    mode: str


def _open(data: bytes) -> Image.Image:
    """Open ``data`` lazily (header only); raises :class:`ImageRejected` for what is no image."""
    if not data:
        raise ImageRejected("empty file")
    head = data[:512].lstrip().lower()
    if head.startswith((b"<svg", b"<?xml", b"<!doctype", b"<html")):
        raise ImageRejected("not an image (markup such as SVG/HTML is not accepted)")
    try:
        return Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError:
        raise ImageRejected("not a supported image (JPEG, PNG, WebP, GIF, BMP or TIFF)") from None
    except Image.DecompressionBombError as e:
        raise ImageRejected(f"image too large: {e}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise ImageRejected(f"corrupt or truncated image (unreadable header: {e})") from None


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width < 1 or height < 1:
        raise ImageRejected("image has no pixels")
    if width * height > max_pixels:
        raise ImageRejected(
            f"image too large: {width}x{height} = {width * height:,} pixels "
            f"exceeds the limit of {max_pixels:,} (possible decompression bomb)"
        )


def probe(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, *, draft_size: tuple[int, int] | None = None) -> ImageInfo:
    """Read only the header: reject empty files, non-images and oversized images.

    With ``draft_size`` a JPEG's size is the one :func:`load_image` would decode it at.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's bomb warning: the limit below decides
        with _open(data) as im:
            if draft_size is not None and im.format == "JPEG":
                im.draft(im.mode, draft_size)  # sets the scale only: nothing is decoded
            info = ImageInfo(im.format or "", im.width, im.height, im.mode)
    _check_pixels(info.width, info.height, max_pixels)
    return info


def _to_8bit(im: Image.Image) -> Image.Image:
    """A 16/32-bit single-band image as ``L``, scaled so its brightest pixel is 255 (when above 255).

    Works a band of about ``BAND_PIXELS`` at a time, so the temporary arrays stay a few
    megabytes whatever the image size; integers are scaled with integer arithmetic.
    """
    hi = im.getextrema()[1]
    width, height = im.size
    out = np.empty((height, width), dtype=np.uint8)
    rows = max(1, BAND_PIXELS // width)
    for top in range(0, height, rows):
        band = np.asarray(im.crop((0, top, width, min(top + rows, height))))
        out[top : top + rows] = _scaled(band, hi)
    return Image.fromarray(out, mode="L")


def _scaled(band: np.ndarray, hi) -> np.ndarray:
    """One band of 16/32-bit values in 0..255 (negative values are 0)."""
    if band.dtype.kind == "f":
        scale = np.float32(255.0 / hi) if np.isfinite(hi) and hi > 255 else np.float32(1.0)
        values = np.nan_to_num(band.astype(np.float32) * scale, nan=0.0, posinf=255.0, neginf=0.0)
        return np.clip(values, 0, 255).astype(np.uint8)
    values = band.astype(np.int64)
    np.maximum(values, 0, out=values)
    if hi > 255:
        values *= 255
        values //= int(hi)
    else:
        np.minimum(values, 255, out=values)
    return values.astype(np.uint8)


def _to_rgb(im: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB; transparency is flattened onto a white background."""
    if im.mode in WIDE_MODES:
        im = _to_8bit(im)
    if im.mode == "P":
        im = im.convert("RGBA") if "transparency" in im.info else im.convert("RGB")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im if im.mode == "RGBA" else im.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, BACKGROUND)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    if im.mode != "RGB":
        return im.convert("RGB")
    return im


def load_image(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, *, draft_size: tuple[int, int] | None = None
) -> Image.Image:
    """Validate and decode ``data`` into an upright RGB image of at most ``max_pixels`` pixels.

    With ``draft_size`` a JPEG is decoded at the smallest of 1/1, 1/2, 1/4 and 1/8 scale
    that still covers ``draft_size`` (for a photo that is only resized down afterwards), and
    ``max_pixels`` bounds those decoded pixels. Raises :class:`ImageRejected` for empty,
    non-image, oversized, truncated or corrupt input.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's bomb warning: the pixel limit decides
            im = _open(data)
            if draft_size is not None and im.format == "JPEG":
                im.draft(im.mode, draft_size)
            _check_pixels(im.width, im.height, max_pixels)
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
