"""Which device an embedding process uses: one pool process per GPU, CUDA initialised in the child.

A GPU embedding worker runs one pool process per device with prefetch 1 (README, "Worker
pools")::

    celery -A visrec_shop worker -Q embeddings -c <GPUs> --prefetch-multiplier 1

Celery's prefork pool forks its processes from the worker's main process, and a CUDA
context does not survive ``fork``: the main process must never initialise CUDA. It never
imports torch (the tasks import the embedding code lazily); each pool process records its
pool index at start (Celery's ``worker_process_init``, connected in ``tasks.py``) and, on its
first embedding, asks torch how many devices it sees and takes
``cuda:<index mod count>``. torch numbers only the devices ``CUDA_VISIBLE_DEVICES`` leaves
visible, so a worker started with ``CUDA_VISIBLE_DEVICES=2,3 ... -c 2`` uses physical GPUs
2 and 3. A pool process that replaces a dead one gets the dead one's index, hence its device.
On a host without a GPU (or with ``VISREC["DEVICE"] = "cpu"``) nothing here touches torch's
CUDA side and every process embeds on the CPU.
"""

from __future__ import annotations

import functools
import logging

logger = logging.getLogger(__name__)

_pool_index: int | None = None


def device_for(preference: str, index: int | None, device_count: int) -> str:
    """The device of pool process ``index`` (None: not a pool process) with ``device_count`` visible GPUs.

    ``preference`` is ``VISREC["DEVICE"]``: ``"auto"`` takes a GPU when there is one,
    ``"cuda"`` always does (torch raises on a host without one, as before), ``"cpu"`` never;
    any other value (``"cuda:1"``, ``"mps"``) is used as it is.
    """
    if preference == "cpu" or (preference == "auto" and device_count <= 0):
        return "cpu"
    if preference not in ("auto", "cuda"):
        return preference
    if device_count <= 0:
        return "cuda"
    return f"cuda:{(index or 0) % device_count}"


def remember_pool_index(**kwargs) -> None:
    """``worker_process_init`` handler (in the pool process, after the fork): keep this process's pool index."""
    from billiard.process import current_process

    global _pool_index
    _pool_index = getattr(current_process(), "index", None)


def process_device(preference: str) -> str:
    """The device this process embeds on (imports torch unless ``preference`` is ``"cpu"``).

    Called where the embedder is built, i.e. in the process that embeds, never in a
    worker's main process before it forks.
    """
    if preference == "cpu":
        return "cpu"
    count = _visible_gpus()
    device = device_for(preference, _pool_index, count)
    if count and _pool_index is not None and _pool_index >= count and device.startswith("cuda:"):
        logger.warning(
            "pool process %d shares %s with another: start the embeddings worker with -c %d (one process per GPU)",
            _pool_index,
            device,
            count,
        )
    return device


@functools.cache
def _visible_gpus() -> int:
    """How many GPUs torch sees in this process (it asks the driver once)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
