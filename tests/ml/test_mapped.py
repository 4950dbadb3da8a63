"""Memory-mapped artifact arrays: unpacked once, shared read-only, safe when processes race."""

from __future__ import annotations

import multiprocessing
import os

import numpy as np
import pytest

from recommendations.ml import mapped


@pytest.fixture
def artifact(tmp_path):
    """A compressed .npz of a few arrays, one of them several MB (written in many chunks)."""
    rng = np.random.default_rng(0)
    arrays = {
        "big": rng.standard_normal((40_000, 64)).astype(np.float32),
        "keys": np.array(["s-abc", "u12", "u7"]),
        "scalar": np.asarray(0.25),
        "empty": np.zeros(0, dtype=np.float32),
    }
    path = tmp_path / "als-0123.npz"
    np.savez_compressed(path, **arrays)
    return path, arrays


def test_unpacked_arrays_are_mapped_read_only_copies_of_the_artifact(artifact):
    path, arrays = artifact
    # when
    out = mapped.unpack(path)
    # then: the same arrays, the large one a read-only map of its .npy (owning no memory), small ones in memory
    assert sorted(out) == sorted(arrays)
    for name, want in arrays.items():
        np.testing.assert_array_equal(out[name], want)
        assert out[name].dtype == want.dtype and out[name].shape == want.shape
    big = out["big"]
    assert type(big) is np.ndarray and mapped.is_mapped(big) and not big.flags.owndata and not big.flags.writeable
    assert not mapped.is_mapped(out["keys"]) and not mapped.is_mapped(np.array(arrays["big"]))
    folder = path.with_name("als-0123.mmap")
    assert sorted(p.name for p in folder.iterdir()) == ["big.npy", "empty.npy", "keys.npy", "scalar.npy"]
    assert np.load(folder / "big.npy", mmap_mode="r").offset % 64 == 0  # aligned


def test_a_second_load_maps_the_files_already_there(artifact):
    path, arrays = artifact
    mapped.unpack(path)
    inode = (path.with_name("als-0123.mmap") / "big.npy").stat().st_ino
    out = mapped.unpack(path, mmap_mode=False)  # the in-memory reading of the same copies
    assert (path.with_name("als-0123.mmap") / "big.npy").stat().st_ino == inode
    assert not mapped.is_mapped(out["big"]) and out["big"].flags.writeable
    np.testing.assert_array_equal(out["big"], arrays["big"])


def _unpack_after(path, barrier, want: float) -> None:
    barrier.wait()
    got = float(mapped.unpack(path)["big"].sum(dtype=np.float64))
    os._exit(0 if got == want else 3)  # what this process read is the whole array, whoever wrote it


def test_processes_racing_to_unpack_the_same_artifact_leave_whole_files(artifact):
    # given: four processes that start unpacking the same artifact at the same moment
    path, arrays = artifact
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(4)
    want = float(arrays["big"].sum(dtype=np.float64))
    workers = [context.Process(target=_unpack_after, args=(path, barrier, want)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    # then: each read whole arrays, no temporary file is left, and the files read back whole
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    folder = path.with_name("als-0123.mmap")
    assert sorted(p.name for p in folder.iterdir()) == ["big.npy", "empty.npy", "keys.npy", "scalar.npy"]
    for name, array in mapped.unpack(path).items():
        np.testing.assert_array_equal(array, arrays[name])


def test_replacing_a_file_does_not_change_what_a_reader_has_mapped(tmp_path):
    # given: a process that has mapped an array
    path = tmp_path / "derived__x.npy"
    mapped.write_array(path, np.arange(1_000_000, dtype=np.int64))
    first = mapped.read_array(path)
    # when: another process writes the file again (a racing writer)
    mapped.write_array(path, np.zeros(1_000_000, dtype=np.int64))
    # then: the reader still sees the file it mapped, a new reader the new one
    assert first[999_999] == 999_999
    assert mapped.read_array(path)[999_999] == 0


def test_a_failed_write_leaves_neither_the_file_nor_a_temporary(tmp_path):
    with pytest.raises(ValueError, match="object arrays"):
        mapped.write_array(tmp_path / "bad.npy", np.array([{"a": 1}], dtype=object))
    assert os.listdir(tmp_path) == []


def test_cached_array_computes_once(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return np.arange(10)

    first = mapped.cached_array(tmp_path, "derived__order", compute)
    again = mapped.cached_array(tmp_path, "derived__order", compute)
    assert len(calls) == 1
    np.testing.assert_array_equal(first, again)


def test_member_names_cannot_leave_the_folder(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, **{"../outside": np.arange(3)})
    with pytest.raises(ValueError, match="not a valid array name"):
        mapped.unpack(path)
    assert not (tmp_path / "outside.npy").exists()
