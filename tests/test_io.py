"""New output files: disk blocks reserved up front (fastridge._io.preallocate), and
written coefficient rows dropped from the page cache once durable (RowWriter.sync)."""

import ctypes
import errno
import json
import mmap
import os

import numpy as np
import pytest
from test_cli import ALPHAS, data, one_error_line  # noqa: F401 (data is a fixture)

from fastridge import _io
from fastridge.cli import main


def _fallocate_works(directory) -> bool:
    if not hasattr(os, "posix_fallocate"):
        return False
    probe = directory / "probe"
    fd = os.open(probe, os.O_RDWR | os.O_CREAT)
    try:
        os.posix_fallocate(fd, 0, 1 << 20)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)
        probe.unlink()


def test_new_npy_files_have_their_blocks_reserved(tmp_path):
    if not _fallocate_works(tmp_path):
        pytest.skip("this file system cannot reserve blocks (posix_fallocate)")
    path = tmp_path / "coef.npy"
    _io.create_npy(path, (300, 1000), np.float32)
    a = np.load(path)
    assert a.shape == (300, 1000) and a.dtype == np.float32 and not a.any()
    assert os.stat(path).st_blocks * 512 >= a.nbytes
    m = _io.open_new_npy(tmp_path / "pred.npy", (50, 7, 8), np.float64)
    m[:] = 1.5
    m.flush()
    del m
    assert os.stat(tmp_path / "pred.npy").st_blocks * 512 >= 50 * 56 * 8
    pred = np.load(tmp_path / "pred.npy")
    assert pred.shape == (50, 7, 8) and (pred == 1.5).all()


def test_unsupported_file_system_stays_sparse(tmp_path, monkeypatch):
    def refuse(fd, offset, length):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(os, "posix_fallocate", refuse)
    _io.create_npy(tmp_path / "a.npy", (20, 30), np.float64)
    assert np.load(tmp_path / "a.npy").shape == (20, 30)


def test_full_disk_at_reservation_fails_cleanly(data, tmp_path, capsys, monkeypatch):  # noqa: F811
    """No space for the blocks: exit 2 with a one-line message naming it, before any
    work, and no staging directory or model left behind."""
    d, _ = data

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    args = ["solve", str(d / "X.npy"), str(d / "Y.npy"), "--alphas", *ALPHAS]
    assert main([*args, "--out", str(tmp_path / "m")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "out of disk space" in line and "coef.npy" in line
    assert not list(tmp_path.iterdir())


def _resident_pages(path) -> int:
    """How many of the file's pages are in the page cache (mincore on a mapping)."""
    libc = ctypes.CDLL(None, use_errno=True)
    size = os.path.getsize(path)
    with open(path, "rb") as f, mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ) as m:
        mapped = np.frombuffer(m, dtype=np.uint8)
        vec = np.zeros(-(-size // mmap.PAGESIZE), dtype=np.uint8)
        addr, out = ctypes.c_void_p(mapped.ctypes.data), ctypes.c_void_p(vec.ctypes.data)
        rc = libc.mincore(addr, ctypes.c_size_t(size), out)
        if rc != 0:
            raise OSError(ctypes.get_errno(), "mincore")
        del mapped
        return int((vec & 1).sum())


def _cache_drop_works(directory) -> bool:
    """Whether this file system drops a synced file's pages on POSIX_FADV_DONTNEED
    (tmpfs, for one, keeps them: they are the file)."""
    if not hasattr(os, "posix_fadvise"):
        return False
    probe = directory / "probe"
    probe.write_bytes(b"x" * (1 << 20))
    fd = os.open(probe, os.O_RDWR)
    try:
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return _resident_pages(probe) == 0
    finally:
        os.close(fd)
        probe.unlink()


@pytest.mark.parametrize("piece_bytes", [16 << 20, 3 * 4096 + 100])
def test_row_writer_leaves_no_written_rows_in_the_page_cache(tmp_path, piece_bytes):
    """Rows written in any order, in pieces that do not end on page (or row)
    boundaries, read back exactly, and none of their pages stay in the page
    cache once written (each piece is synced, then dropped)."""
    if not _cache_drop_works(tmp_path):
        pytest.skip("this file system keeps synced pages on POSIX_FADV_DONTNEED")
    path = tmp_path / "coef.npy"
    shape = (600, 1000)  # 4000-byte rows, so row blocks do not end on page boundaries
    _io.create_npy(path, shape, np.float32)
    rows = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    w = _io.RowWriter(path, piece_bytes=piece_bytes)
    # out first: the header's pages (written by create_npy, read by RowWriter)
    fd = os.open(path, os.O_RDWR)
    os.fsync(fd)
    _io.drop_file_cache(fd)
    os.close(fd)
    assert _resident_pages(path) == 0
    for block in (slice(300, 600), slice(0, 100), slice(100, 300)):
        w[block] = rows[block]
        assert _resident_pages(path) == 0
    w.sync()
    w.close()
    np.testing.assert_array_equal(np.load(path), rows)


@pytest.mark.parametrize("layout", ["C 2-D", "C 3-D", "F 2-D", "in memory"])
def test_target_checksum_is_the_same_however_y_is_read(tmp_path, layout):
    """A memmapped C-order Y is read row by row from its file (not through the
    mapping); the checksum must be that of the same bytes read any other way, or
    --resume would refuse the runs recorded before (or accept a changed Y)."""
    import zlib

    rng = np.random.default_rng(0)
    shape = (37, 6, 11) if layout == "C 3-D" else (37, 66)
    Y = rng.standard_normal(shape).astype(np.float32)
    if layout == "F 2-D":
        Y = np.asfortranarray(Y)
    if layout != "in memory":
        np.save(tmp_path / "Y.npy", Y)
        Y = np.load(tmp_path / "Y.npy", mmap_mode="r")
    flat = np.asarray(Y).reshape(37, -1)
    for start, stop in ((0, 66), (5, 23), (65, 66)):
        crc = 0
        for row in flat[:, start:stop]:
            crc = zlib.crc32(np.ascontiguousarray(row), crc)
        assert _io.target_checksum(Y, start, stop) == crc
        work = {}  # (a read buffer kept there for the next chunk, as TargetChecksums does)
        assert _io.target_checksum(Y, start, stop, work) == crc
        assert _io.target_checksum(Y, start, stop, work) == crc


def test_chunk_checksums_are_made_off_the_solve_thread(data, tmp_path, monkeypatch):  # noqa: F811
    """The targets' checksums (for --resume) are made in a background thread: reading
    a chunk's targets again had cost the headline solve 0.05-0.27 s a chunk between
    chunks. Each chunk but the last is still recorded, once the next one finishes."""
    import threading

    d, _ = data
    threads, checksum = [], _io.target_checksum

    def spy(*args):
        threads.append(threading.current_thread().name)
        return checksum(*args)

    monkeypatch.setattr(_io, "target_checksum", spy)
    model = tmp_path / "model"
    manifests = []
    write_json = _io.write_json_atomic

    def keep_manifests(path, doc):
        if path.name == _io.MANIFEST:
            manifests.append(json.loads(json.dumps(doc)))
        return write_json(path, doc)

    monkeypatch.setattr(_io, "write_json_atomic", keep_manifests)
    argv = ["solve", d / "X.npy", d / "Y.npy", "--alphas", *ALPHAS, "--target-chunk", "8",
            "--out", model, "-q"]  # fmt: skip
    assert main(list(map(str, argv))) == 0
    assert threads and all(name.startswith("fastridge-checksum") for name in threads), threads
    recorded = [m["done"] for m in manifests if m["done"]]
    assert recorded[-1] == [[0, 40]]  # (48 targets: all but the last chunk of 8)
    assert sorted(int(k) for k in manifests[-1]["checksums"]) == list(range(0, 40, 8))
