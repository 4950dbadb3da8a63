"""Batched image embedding: PIL images in, L2-normalised float32 vectors out."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .backbones import Backbone, l2_normalise
from .colour import ColourSpec, colour_descriptor, combine
from .head import SimilarityHead
from .preprocess import normalised, resize_crop


def pick_device(preference: str = "auto") -> str:
    import torch

    if preference == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return preference


def prepare_image(image, preprocessing: dict) -> np.ndarray:
    """One RGB PIL image -> a model's ``(H, W, 3)`` uint8 input, as ``preprocessing`` describes it.

    ``preprocessing`` is the backbone's record (``resize``, ``crop``, ``interpolation``,
    ``geometry``; a descriptor's ``colour``). A descriptor gets ``(H, W, 6)``: the CNN's
    view, then the whole photo on its own background that the colour histogram reads.
    """
    resize, crop, interpolation = preprocessing["resize"][0], preprocessing["crop"][0], preprocessing["interpolation"]
    cnn = resize_crop(image, resize, crop, interpolation, preprocessing.get("geometry", "crop-box"))
    if "colour" not in preprocessing:
        return cnn
    whole = resize_crop(image, crop, crop, interpolation, preprocessing["colour"]["geometry"])
    return np.concatenate([cnn, whole], axis=2)


def _joined(batch: np.ndarray, features, colour: ColourSpec | None, weight: float) -> np.ndarray:
    """Unit vectors of a prepared batch: ``features(batch)``, joined with the colour histogram if any."""
    if colour is None:
        return features(batch)
    return combine(features(np.ascontiguousarray(batch[..., :3])), colour_descriptor(batch[..., 3:], colour), weight)


class ExportedEmbedder:
    """An embedding version run from its exported ONNX file alone: torch is never imported.

    For a web process that embeds one shopper photo per request (search by photo): torch
    alone costs such a process about 650 MB of memory. The exported graph takes the
    prepared uint8 array and normalises inside it, so the preprocessing recorded with the
    version is all it needs; vectors equal :class:`Embedder`'s on ONNX Runtime.

    Parameters
    ----------
    path : Path
        The file :func:`.onnx.export` wrote for this version.
    preprocessing : dict
        The version's preprocessing record (``Backbone.preprocessing``).
    threads : int
        ONNX Runtime's threads per call (one photo per request: 1 leaves the cores to the
        other requests).
    """

    def __init__(self, path, preprocessing: dict, threads: int = 1) -> None:
        from .onnx import OnnxModel

        self.preprocessing = preprocessing
        colour = preprocessing.get("colour")
        self.colour, self.colour_weight = None, 0.0
        if colour:
            self.colour = ColourSpec(colour["lightness_bins"], colour["chroma_bins"], colour["threshold"])
            self.colour_weight = float(colour["weight"])
        self._onnx = OnnxModel(path, threads=threads)

    def prepare(self, image) -> np.ndarray:
        return prepare_image(image, self.preprocessing)

    def embed_arrays(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        return _joined(np.stack(arrays), lambda batch: l2_normalise(self._onnx(batch)), self.colour, self.colour_weight)


class Embedder:
    """Runs a backbone over batches of images.

    Parameters
    ----------
    backbone : Backbone
        Loaded feature extractor.
    device : str
        "cpu", "cuda", "cuda:<n>" (that GPU) or "auto".
    batch_size : int
        Images per forward pass.
    workers : int
        Threads that preprocess (resize, crop, normalise) in parallel.
    runtime : str
        "torch", "onnx" (CPU only, needs onnxruntime and ``cache_dir``) or "auto"
        (ONNX Runtime on the CPU when available, torch otherwise).
    cache_dir : Path, optional
        Where the exported ONNX model is kept.
    sub_batch : int
        Images per ONNX Runtime call on the CPU.
    """

    def __init__(
        self,
        backbone: Backbone,
        device: str = "auto",
        batch_size: int = 32,
        workers: int = 2,
        runtime: str = "auto",
        cache_dir=None,
        sub_batch: int = 4,
    ) -> None:
        import torch

        from . import onnx

        self.backbone = backbone
        self.device = pick_device(device)
        self.on_gpu = torch.device(self.device).type == "cuda"
        if self.on_gpu and torch.device(self.device).index is not None:
            torch.cuda.set_device(self.device)  # pinned buffers and autocast use this process's own GPU
        self.batch_size = batch_size
        self.sub_batch = max(int(sub_batch), 1)
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers))
        if runtime == "auto":
            runtime = "onnx" if self.device == "cpu" and cache_dir and onnx.available() else "torch"
        self.runtime = runtime
        prep = backbone.preprocessing
        model = normalised(backbone.model, prep["mean"], prep["std"])
        if runtime == "onnx":
            self._onnx = onnx.OnnxModel(onnx.export(model, backbone, cache_dir), threads=torch.get_num_threads())
        else:
            self.model = model.to(self.device).to(memory_format=torch.channels_last).eval()

    @property
    def dimensions(self) -> int:
        return self.backbone.dimensions

    def with_head(self, head: SimilarityHead, sha256: str, spec: dict) -> Embedder:
        """A twin of this embedder (same CNN, runtime and threads) joining a fitted descriptor's ``head``."""
        twin = copy.copy(self)
        twin.backbone = self.backbone.with_head(head, sha256, spec)
        return twin

    def prepare(self, image) -> np.ndarray:
        """One RGB PIL image -> the model's ``(H, W, 3)`` uint8 input (thread-safe; :func:`prepare_image`)."""
        return prepare_image(image, self.backbone.preprocessing)

    def embed(self, images: Sequence) -> np.ndarray:
        """Embed RGB PIL images; returns an ``(n, dimensions)`` array of unit vectors."""
        if not images:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            out.append(self.embed_arrays(list(self._pool.map(self.prepare, chunk))))
        return np.concatenate(out)

    def embed_arrays(self, arrays: Sequence[np.ndarray]) -> np.ndarray:
        """Embed prepared ``(H, W, 3)`` uint8 arrays (a descriptor joins its colour histogram and head)."""
        batch = np.stack(arrays)
        if self.backbone.colour is None:
            return self.backbone.compose(self._features(batch), None)
        features = self._features(np.ascontiguousarray(batch[..., :3]))
        return self.backbone.compose(features, colour_descriptor(batch[..., 3:], self.backbone.colour))

    def _features(self, batch: np.ndarray) -> np.ndarray:
        """The CNN's unit feature vectors of a prepared uint8 batch."""
        import torch

        if self.runtime == "onnx":  # small sub-batches stay in the CPU caches (measured fastest: 2-4)
            step = self.sub_batch
            return l2_normalise(np.concatenate([self._onnx(batch[i : i + step]) for i in range(0, len(batch), step)]))
        tensor = torch.from_numpy(batch)
        if self.on_gpu:
            tensor = tensor.pin_memory().to(self.device, non_blocking=True)
        with torch.inference_mode():
            if self.on_gpu:
                with torch.autocast("cuda", dtype=torch.float16):
                    features = self.model(tensor)
            else:
                features = self.model(tensor)
        return l2_normalise(features.float().cpu().numpy())
