"""Foreground colour descriptor: what shoppers mean by "the same colour".

A CNN trained on ImageNet classes is nearly blind to colour (a red and a blue shirt
are the same class), so its neighbours rarely share the product's colour. This
descriptor is a joint CIELAB histogram of the product's own pixels: the background is
estimated from the picture's border (product photos are shot on a plain light
background: its dominant border colours) and left out; only when hardly anything differs from it (a white garment
on white) does every pixel count. Bin counts are square-rooted (the Hellinger kernel,
so a large area of one colour does not drown the rest) and L2-normalised, so a dot
product of two descriptors is their colour similarity.

Runs in numpy on the model's prepared ``(n, H, W, 3)`` uint8 input, batched; no
weights, no fitting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Working resolution: every ``STEP``-th pixel of the prepared input (224 -> 56).
STEP = 4
# Border strip (in working pixels) that estimates the background colour.
BORDER = 2
# Below this share of foreground pixels the mask is ignored (a white product on white).
MIN_FOREGROUND = 0.02
# Background colours: up to this many, each holding at least this share of the border.
MAX_BACKGROUNDS = 3
MIN_BACKGROUND_SHARE = 0.2


@dataclass(frozen=True)
class ColourSpec:
    """Bins and background threshold of the descriptor (recorded with each embedding version)."""

    lightness_bins: int = 4
    chroma_bins: int = 8
    # A pixel whose largest channel difference from the background exceeds this is product.
    threshold: int = 24

    @property
    def dimensions(self) -> int:
        return self.lightness_bins * self.chroma_bins * self.chroma_bins

    def describe(self) -> dict:
        return {
            "space": "lab",
            "binning": "soft",
            "background": f"border modes x{MAX_BACKGROUNDS} >= {MIN_BACKGROUND_SHARE}, eroded",
            "lightness_bins": self.lightness_bins,
            "chroma_bins": self.chroma_bins,
            "threshold": self.threshold,
            "step": STEP,
        }


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """``(..., 3)`` uint8 sRGB -> CIELAB (D65): L in [0, 100], a and b roughly in [-110, 110]."""
    c = rgb.astype(np.float32) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = linear @ np.array(
        [[0.4124, 0.2126, 0.0193], [0.3576, 0.7152, 0.1192], [0.1805, 0.0722, 0.9505]], dtype=np.float32
    )
    xyz /= np.array([0.95047, 1.0, 1.08883], dtype=np.float32)
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16.0 / 116.0)
    lightness = 116.0 * f[..., 1] - 16.0
    a = 500.0 * (f[..., 0] - f[..., 1])
    b = 200.0 * (f[..., 1] - f[..., 2])
    return np.stack([lightness, a, b], axis=-1)


def foreground_mask(small: np.ndarray, threshold: int) -> np.ndarray:
    """``(n, h, w, 3)`` uint8 -> ``(n, h, w)`` bool: pixels unlike every background colour.

    The background colours are the border's dominant colours: the border colour with the
    most border pixels within ``threshold`` of it, then again among the border pixels not
    yet explained, while such a colour holds at least ``MIN_BACKGROUND_SHARE`` of the
    border. A garment that touches the frame in a few places stays foreground, and a
    pattern that fills half the border (stripes to the edge) counts as background whatever
    the JPEG noise, so near-identical photos always get near-identical descriptors.
    """
    n = small.shape[0]
    border = np.concatenate(
        [
            small[:, :BORDER].reshape(n, -1, 3),
            small[:, -BORDER:].reshape(n, -1, 3),
            small[:, :, :BORDER].reshape(n, -1, 3),
            small[:, :, -BORDER:].reshape(n, -1, 3),
        ],
        axis=1,
    ).astype(np.int16)
    candidates = border[:, :: max(border.shape[1] // 64, 1)]  # (n, c, 3)
    near = np.abs(candidates[:, :, None, :] - border[:, None, :, :]).max(axis=-1) <= threshold  # (n, c, b)
    pixels = small.astype(np.int16)
    mask = np.ones(small.shape[:3], dtype=bool)
    explained = np.zeros(border.shape[:2], dtype=bool)  # (n, b)
    rows = np.arange(n)
    for _ in range(MAX_BACKGROUNDS):
        counts = (near & ~explained[:, None, :]).sum(axis=2)  # (n, c)
        best = counts.argmax(axis=1)
        found = counts[rows, best] >= MIN_BACKGROUND_SHARE * border.shape[1]
        if not found.any():
            break
        colour = candidates[rows, best]  # (n, 3)
        unlike = np.abs(pixels - colour[:, None, None, :]).max(axis=-1) > threshold
        mask &= unlike | ~found[:, None, None]
        explained |= near[rows, best] & found[:, None]
    # Erode by one pixel: anti-aliased and JPEG-blurred edges mix product and background.
    eroded = np.zeros_like(mask)
    eroded[:, 1:-1, 1:-1] = (
        mask[:, 1:-1, 1:-1] & mask[:, :-2, 1:-1] & mask[:, 2:, 1:-1] & mask[:, 1:-1, :-2] & mask[:, 1:-1, 2:]
    )
    too_small = eroded.mean(axis=(1, 2)) < MIN_FOREGROUND
    eroded[too_small] = True
    return eroded


def colour_descriptor(arrays: np.ndarray, spec: ColourSpec | None = None) -> np.ndarray:
    """Prepared ``(n, H, W, 3)`` uint8 images -> ``(n, spec.dimensions)`` unit vectors."""
    spec = spec or ColourSpec()
    arrays = np.asarray(arrays)
    n = arrays.shape[0]
    if n == 0:
        return np.zeros((0, spec.dimensions), dtype=np.float32)
    small = arrays[:, ::STEP, ::STEP, :]
    mask = foreground_mask(small, spec.threshold)
    lab = srgb_to_lab(small)[mask]  # (pixels, 3), every image's foreground in turn
    owner = np.broadcast_to(np.arange(n)[:, None, None], mask.shape)[mask]
    lb, cb = spec.lightness_bins, spec.chroma_bins
    # Soft binning: each pixel is shared between the two nearest bin centres on each axis
    # (trilinear), so a slightly darker red still meets red. a and b: [-80, 80] covers
    # garment colours; the outer bins take the rest.
    axes = []
    for values, lo, hi, bins in (
        (lab[:, 0], 0.0, 100.0, lb),
        (lab[:, 1], -80.0, 80.0, cb),
        (lab[:, 2], -80.0, 80.0, cb),
    ):
        x = np.clip((values - lo) / (hi - lo) * bins - 0.5, 0.0, bins - 1.0)
        low = np.minimum(x.astype(np.int64), bins - 2) if bins > 1 else np.zeros(len(x), dtype=np.int64)
        frac = (x - low).astype(np.float32)
        axes.append(((low, 1.0 - frac), (low + 1 if bins > 1 else low, frac)))
    counts = np.zeros(n * spec.dimensions, dtype=np.float64)
    base = owner.astype(np.int64) * spec.dimensions
    for li, lw in axes[0]:
        for ai, aw in axes[1]:
            for bi, bw in axes[2]:
                counts += np.bincount(base + (li * cb + ai) * cb + bi, weights=lw * aw * bw, minlength=counts.size)
    counts = counts.reshape(n, spec.dimensions).astype(np.float32)
    hist = np.sqrt(counts)
    return hist / np.maximum(np.linalg.norm(hist, axis=1, keepdims=True), 1e-12)


def combine(cnn: np.ndarray, colour: np.ndarray, weight: float) -> np.ndarray:
    """Join unit CNN and colour vectors into one unit vector for a single cosine search.

    ``[sqrt(1 - weight) * cnn, sqrt(weight) * colour]``: the dot product of two such
    vectors is ``(1 - weight) * cnn_cosine + weight * colour_cosine``.
    """
    out = np.concatenate([np.sqrt(1.0 - weight) * cnn, np.sqrt(weight) * colour], axis=1)
    return (out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)).astype(np.float32)
