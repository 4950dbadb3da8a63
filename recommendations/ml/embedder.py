"""Batched image embedding: PIL images in, L2-normalised float32 vectors out."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .backbones import Backbone


def pick_device(preference: str = "auto") -> str:
    import torch

    if preference == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return preference


def l2_normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


class Embedder:
    """Runs a backbone over batches of images.

    Parameters
    ----------
    backbone : Backbone
        Loaded feature extractor.
    device : str
        "cpu", "cuda" or "auto".
    batch_size : int
        Images per forward pass.
    workers : int
        Threads that preprocess (resize, crop, normalise) in parallel.
    """

    def __init__(self, backbone: Backbone, device: str = "auto", batch_size: int = 32, workers: int = 2) -> None:
        import torch

        self.backbone = backbone
        self.device = pick_device(device)
        self.batch_size = batch_size
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers))
        self.model = backbone.model.to(self.device).to(memory_format=torch.channels_last)
        self.model.eval()

    @property
    def dimensions(self) -> int:
        return self.backbone.dimensions

    def embed(self, images: Sequence) -> np.ndarray:
        """Embed RGB PIL images; returns an ``(n, dimensions)`` array of unit vectors."""
        if not images:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        out = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            tensors = list(self._pool.map(self.backbone.transform, chunk))
            out.append(self.embed_tensors(tensors))
        return np.concatenate(out)

    def embed_tensors(self, tensors: Sequence) -> np.ndarray:
        """Embed already preprocessed ``(3, H, W)`` tensors."""
        import torch

        batch = torch.stack(list(tensors)).to(self.device, non_blocking=True)
        batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            if self.device == "cuda":
                with torch.autocast("cuda", dtype=torch.float16):
                    features = self.model(batch)
            else:
                features = self.model(batch)
        return l2_normalise(features.float().cpu().numpy())
