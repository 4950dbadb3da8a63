"""The benchmarks' process-memory helper: USS grows with private pages, mapped files are told apart."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from _memory import mapped_files, process_memory  # noqa: E402


def test_private_pages_count_in_uss_and_a_mapped_file_is_reported_by_path(tmp_path):
    before = process_memory(os.getpid())
    assert 0 < before["uss_mb"] <= before["rss_mb"] and before["pss_mb"] > 0
    private = np.ones(64 * 2**20 // 8)  # 64 MB, every page written
    np.save(tmp_path / "shared.npy", np.arange(8 * 2**20 // 8, dtype=np.int64))
    shared = np.load(tmp_path / "shared.npy", mmap_mode="r")
    assert int(shared[::512].sum()) > 0  # touch every page
    after = process_memory(os.getpid())
    assert after["uss_mb"] - before["uss_mb"] > 60
    files = mapped_files(os.getpid(), tmp_path)
    assert list(files) == [str((tmp_path / "shared.npy").resolve())]
    assert 7.5 < files[str((tmp_path / "shared.npy").resolve())]["rss_mb"] < 8.5
    del private
