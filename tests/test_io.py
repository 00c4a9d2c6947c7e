"""New output files: disk blocks reserved up front (fastridge._io.preallocate)."""

import errno
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
