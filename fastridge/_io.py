"""Files for the command line: safe .npy reading and writing, model directories, manifests.

Everything here works with plain formats (.npy and JSON) and never unpickles.
Large arrays are memory-mapped and written in row blocks; pages of a mapping that
stays open count toward the process's resident memory, so after each chunk the
pages already used are handed back to the kernel (`drop_pages`): the data stays
in the page cache (or goes to disk) but no longer in this process's RSS.
"""

from __future__ import annotations

import errno
import glob
import hashlib
import json
import mmap
import os
import shutil
import tempfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ._backend import host_copy, host_empty
from ._chunks import RowReader, drop_pages


class UserError(ValueError):
    """A problem with the user's input or files, reported as one line (exit code 2)."""


# -- reading ------------------------------------------------------------------------
def open_npy(path, name: str, labels: bool = False) -> np.ndarray:
    """Memory-map a .npy file read-only, refusing pickled or unsupported content.

    Parameters
    ----------
    path : str or Path
    name : str
        What the array is ("X", "Y", ...), for messages.
    labels : bool, default=False
        Also accept string dtypes (group labels).

    Returns
    -------
    np.memmap (or ndarray for an empty file) of the stored dtype and shape.
    Float16/32/64 and integer/bool dtypes are accepted (integers are cast later);
    complex, object, structured and (unless `labels`) string dtypes are refused.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"{name} file not found: {path}")
    if path.is_dir():
        raise UserError(f"{name} path is a directory, expected a .npy file: {path}")
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except OSError as exc:
        raise UserError(f"cannot read {name} file {path}: {exc.strerror}") from None
    if magic != b"\x93NUMPY":
        if magic[:1] == b"\x80":
            raise UserError(
                f"{name} file {path} is a Python pickle, not a .npy array; pickles are "
                "never loaded (they can run code): save it with np.save(path, array)"
            )
        raise UserError(f"{name} file {path} is not a .npy file (bad magic bytes)")
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as exc:
        try:
            npy_header(path)
        except (ValueError, SyntaxError, OSError):
            # (its parse error can mention "ast.Name object": it had been called a pickle)
            raise UserError(f"cannot read {name} file {path}: its .npy header is damaged") from None
        if "allow_pickle" in str(exc) or "object" in str(exc).lower():
            raise UserError(
                f"{name} file {path} holds a pickled/object array, which is never loaded "
                "(it could run code): store "
                + (
                    "integer or string labels"
                    if labels
                    else "a numeric array (float32 recommended)"
                )
            ) from None
        raise UserError(f"cannot read {name} file {path}: {exc}") from None
    except OSError as exc:
        raise UserError(f"cannot read {name} file {path}: {exc}") from None
    dt = arr.dtype
    if dt.hasobject:
        raise UserError(f"{name} file {path} holds an object array, which is never loaded")
    if dt.names is not None:
        raise UserError(f"{name} file {path} holds a structured array; give a plain numeric one")
    if dt.kind == "c":
        raise UserError(f"{name} has complex dtype {dt}: complex data is not supported")
    if labels and dt.kind in "US":
        return arr
    if dt.kind not in "fiub":
        raise UserError(f"{name} has dtype {dt}; give float16/32/64 (or integer) data")
    if dt.kind == "f" and dt.itemsize > 8:
        raise UserError(f"{name} has dtype {dt}; give float16, float32 or float64 data")
    return arr


def as_float(arr: np.ndarray, name: str) -> np.ndarray:
    """Integer/bool arrays -> float64 in memory (floats are returned untouched)."""
    if arr.dtype.kind in "iub":
        return host_copy(arr, np.float64)
    return arr


def check_finite_blocks(
    arr: np.ndarray, name: str, block_bytes: int = 64 << 20, dtype=None
) -> None:
    """Raise UserError if `arr` holds NaN or inf, reading it in row blocks, or, with
    `dtype` (what it will be cast to), values past that dtype's range (a float64 X
    test of values ~1e39 predicted by a float32 model had written all-NaN output)."""
    if arr.dtype.kind not in "f" or arr.size == 0:
        return
    limit = None
    if dtype is not None and np.dtype(dtype).itemsize < arr.dtype.itemsize:
        limit = float(np.finfo(dtype).max)
    row_bytes = max(1, arr[:1].nbytes)
    step = max(1, block_bytes // row_bytes)
    for start in range(0, arr.shape[0], step):
        block = np.asarray(arr[start : start + step])
        if not np.isfinite(block).all():
            kind = "NaN" if np.isnan(block).any() else "infinity"
            bad = start + int(np.argwhere(~np.isfinite(block.reshape(block.shape[0], -1)))[0, 0])
            raise UserError(f"{name} contains {kind} (first in row {bad})")
        if limit is not None and float(np.abs(block).max()) > limit:
            raise UserError(
                f"{name} has values up to {float(np.abs(block).max()):.3g}, beyond "
                f"{np.dtype(dtype).name} (the model's dtype): rescale it, or fit in float64"
            )
    drop_pages(arr)


# -- fingerprints -------------------------------------------------------------------
def npy_header(path) -> tuple[dict, int]:
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        offset = f.tell()
    return {"shape": list(shape), "fortran_order": bool(fortran), "dtype": dtype.str}, offset


def fingerprint(path, full: bool, block: int = 16 << 20) -> dict:
    """Identify an input file: size, dtype, shape and a sha256.

    full=True hashes every byte (read in blocks through the page cache, not
    mapped, so it costs no resident memory); full=False hashes the header and
    a few 1 MiB samples spread over the file (for a multi-GB Y).
    """
    path = Path(path)
    header, offset = npy_header(path)
    size = path.stat().st_size
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if full:
            while chunk := f.read(block):
                h.update(chunk)
        else:
            h.update(f.read(offset))
            n_samples = 8
            sample = 1 << 20
            for k in range(n_samples):
                pos = offset + (size - offset - sample) * k // max(n_samples - 1, 1)
                f.seek(max(offset, pos))
                h.update(f.read(sample))
    return {
        "path": str(path.resolve()),
        "size": size,
        **header,
        "sha256": h.hexdigest(),
        "hash": "full" if full else "header+samples",
    }


def target_checksum(Y: np.ndarray, start: int, stop: int, work: dict | None = None) -> int:
    """crc32 of the targets start:stop of Y (n_samples, *target_shape), a sample's
    values at a time: --resume checks with it that the targets it skips are the
    ones the interrupted run solved (Y's fingerprint only samples a multi-GB file:
    a value changed elsewhere had been resumed, old results mixed with new).

    A memmapped C-order Y is read one row slice at a time from its file
    (`_chunks.RowReader`, into the buffer work["rows"], kept there for the next
    chunk of the same shape, when `work` is given): through the mapping every page
    of every row is a page fault. Either way the bytes, and so the checksum, are
    the same."""
    n = Y.shape[0]
    if Y.ndim <= 2 or Y.flags.c_contiguous:
        flat = Y.reshape(n, -1)
        block = flat[:, start:stop]  # (a view)
        reader = RowReader.of(flat)
        if reader is not None:
            shape = (n, stop - start)
            out = None if work is None else work.get("rows")
            if out is None or out.shape != shape or out.dtype != reader.dtype:
                out = np.empty(shape, reader.dtype)
                if work is not None:
                    work["rows"] = out
            try:
                block = reader.read_into(slice(start, stop), out)
            finally:
                reader.close()
    else:
        block = Y[(slice(None), *np.unravel_index(np.arange(start, stop), Y.shape[1:]))]
    crc = 0
    for row in block:
        crc = zlib.crc32(np.ascontiguousarray(row), crc)
    return crc


class TargetChecksums:
    """`target_checksum` of each finished target chunk, computed in a background
    thread: it reads the chunk's targets again (0.05-0.27 s a chunk of the
    headline's Y, measured), which had been paid between chunks, on the solve's
    path. zlib and the file reads release the GIL.

    `submit(sl)` starts chunk `sl`'s; `settled()` returns (slice, crc) of every
    chunk submitted before the last, in order, waiting for them if need be, so a
    chunk is recorded (and skipped by --resume) one chunk after it finishes: the
    same point in every run, whatever the thread's speed."""

    def __init__(self, Y: np.ndarray):
        self.Y = Y
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="fastridge-checksum")
        self._jobs: list = []
        self._work = {}  # the thread's read buffer, reused chunk to chunk

    def submit(self, sl: slice) -> None:
        job = self._pool.submit(target_checksum, self.Y, sl.start, sl.stop, self._work)
        self._jobs.append((sl, job))

    def settled(self) -> list[tuple[slice, int]]:
        done = []
        while len(self._jobs) > 1:
            sl, job = self._jobs.pop(0)
            done.append((sl, job.result()))  # (re-raises the thread's error)
        return done

    def close(self) -> None:
        """Stop without waiting: what is still pending is not recorded."""
        self._pool.shutdown(wait=False, cancel_futures=True)


def same_inputs(a: dict, b: dict, layout_only: bool = False) -> bool:
    """Fingerprints match (the path may differ: files can be moved); with
    `layout_only` their size, shape, order and dtype only."""
    keys = ("size", "shape", "fortran_order", "dtype")
    if not layout_only:
        keys += ("sha256", "hash")
    return all(a.get(k) == b.get(k) for k in keys)


# -- writing ------------------------------------------------------------------------
def write_json_atomic(path, obj) -> None:
    """Write JSON to a temporary file, fsync it, then os.replace: never half-written."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, default=_json_default)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path) -> dict:
    with open(path) as f:
        return json.load(f)


def preallocate(path) -> None:
    """Reserve the disk blocks of a new (sparse) file now, with posix_fallocate.

    Why: writing into a sparse file makes the file system allocate blocks on the
    way, which was ~20x slower on this project's machines (ext4): 0.55-0.60 s per
    179 MB coefficient chunk against 0.03 s into reserved blocks. A full disk
    also fails here, before any work, rather than part-way through a solve.
    Where the file system cannot reserve blocks, the file simply stays sparse.
    """
    if not hasattr(os, "posix_fallocate"):
        return
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        if size:
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    raise OSError(exc.errno, exc.strerror, str(path)) from None
    finally:
        os.close(fd)


def open_new_npy(path, shape, dtype) -> np.memmap:
    """A new .npy file of `shape`, its blocks reserved (`preallocate`), mapped for writing."""
    m = np.lib.format.open_memmap(path, mode="w+", dtype=np.dtype(dtype), shape=tuple(shape))
    preallocate(path)
    return m


def create_npy(path, shape, dtype) -> None:
    """Create a .npy file of `shape` with its disk blocks reserved, then close it."""
    m = open_new_npy(path, shape, dtype)
    del m


def save_npy_blocks(path, A, dtype, block_bytes: int = 64 << 20) -> None:
    """Write the 2-D array `A` (e.g. a memmap) to a new .npy file in `dtype`, a
    block of rows at a time, so neither A nor the file is held in memory."""
    out = open_new_npy(path, A.shape, dtype)
    step = max(1, block_bytes // max(1, A.shape[1] * out.dtype.itemsize))
    for start in range(0, A.shape[0], step):
        out[start : start + step] = A[start : start + step]
        drop_pages(A)
    out.flush()
    del out


class RowWriter:
    """Writes row blocks of a C-ordered 2-D .npy file at their byte offsets.

    Looks like an array to the solver (`shape`, `dtype`, `w[rows] = block`), but
    nothing is mapped: rows go out with pwrite, so writing a coefficient file of
    many GB costs no resident memory. They are written `piece_bytes` at a time,
    each piece made durable (fdatasync) and its pages dropped from the page cache
    (`drop_file_cache`) before the next: a write-once file of many GB does not
    push everything else out of the cache, and each piece reuses the pages the
    last one just gave back. Why pieces: on this project's VM, memory the host
    has not backed for a few seconds is slow to touch, so pages dropped once per
    179 MB chunk (a few seconds of GEMM apart) came back slow. Measured there,
    8 chunks of 179 MB 3 s apart: pwrite + fdatasync 1.79 s a chunk keeping the
    pages, 1.19 s dropping them after each chunk, 0.14 s in 16 MiB pieces.

    Parameters
    ----------
    path : str or Path
        An existing .npy file of shape (n_rows, n_cols) (see `create_npy`).
    piece_bytes : int
        Bytes written, synced and dropped at a time.
    """

    def __init__(self, path, piece_bytes: int = 16 << 20):
        self._fd = -1  # (before anything can fail: __del__ closes it)
        header, self.offset = npy_header(path)
        if header["fortran_order"] or len(header["shape"]) != 2:
            raise ValueError(f"{path}: RowWriter needs a C-ordered 2-D .npy file")
        self.shape = tuple(header["shape"])
        self.dtype = np.dtype(header["dtype"])
        self.ndim = 2
        self.path = Path(path)
        self._row_bytes = self.shape[1] * self.dtype.itemsize
        self._piece = max(int(piece_bytes), 1)
        self._fd = os.open(path, os.O_WRONLY)

    def __setitem__(self, rows, value) -> None:
        if not isinstance(rows, slice) or rows.step not in (None, 1):
            raise TypeError("RowWriter only writes contiguous row slices")
        start, stop, _ = rows.indices(self.shape[0])
        block = np.ascontiguousarray(value, dtype=self.dtype)
        if block.shape != (stop - start, self.shape[1]):
            raise ValueError(f"block of shape {block.shape} for rows {start}:{stop}")
        data = memoryview(block.reshape(-1)).cast("B")
        pos = self.offset + start * self._row_bytes
        while len(data):
            first = pos
            piece, data = data[: self._piece], data[self._piece :]
            while len(piece):
                n = os.pwrite(self._fd, piece, pos)
                piece, pos = piece[n:], pos + n
            os.fdatasync(self._fd)
            # whole pages, the partial ones at either end included: fdatasync has
            # made every page of the file clean, and the kernel keeps partial ones
            first -= first % mmap.PAGESIZE
            drop_file_cache(self._fd, first, -(-pos // mmap.PAGESIZE) * mmap.PAGESIZE - first)

    def __len__(self) -> int:
        return self.shape[0]

    def sync(self) -> None:
        """Make the rows written so far durable (before a chunk is recorded as done;
        each piece already is)."""
        os.fdatasync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self):
        self.close()


def drop_file_cache(fd: int, offset: int = 0, length: int = 0) -> None:
    """Ask the kernel to drop a file range's pages from the page cache (length 0:
    to the end of the file). Only clean pages go, so call it after an fsync; the
    data stays on disk. Best effort: a no-op where posix_fadvise is missing or
    refused."""
    if not hasattr(os, "posix_fadvise"):
        return
    try:
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
    except OSError:
        pass


def read_rows(path, rows: slice) -> np.ndarray:
    """Rows of a C-ordered 2-D .npy file read with plain file reads (nothing mapped,
    so the rows cost resident memory only while the returned array lives).

    Returns
    -------
    array of shape (rows.stop - rows.start, n_cols)
    """
    header, offset = npy_header(path)
    if header["fortran_order"] or len(header["shape"]) != 2:
        raise ValueError(f"{path}: read_rows needs a C-ordered 2-D .npy file")
    n_rows, n_cols = header["shape"]
    start, stop, _ = rows.indices(n_rows)
    dtype = np.dtype(header["dtype"])
    out = host_empty((stop - start, n_cols), dtype)  # (plain pages: see host_empty)
    with open(path, "rb", buffering=0) as f:
        f.seek(offset + start * n_cols * dtype.itemsize)
        view = memoryview(out.reshape(-1)).cast("B")
        got = 0
        while got < len(view):
            n = f.readinto(view[got:])
            if not n:
                raise OSError(f"{path} is truncated (rows {start}:{stop})")
            got += n
    return out


def fsync_dir(path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def check_free_space(directory, need: int, what: str) -> None:
    """UserError when the file system holding `directory` has less than `need` bytes free."""
    free = shutil.disk_usage(directory).free
    if free < need:
        raise UserError(
            f"out of disk space: {what} needs {human_bytes(need)}, "
            f"only {human_bytes(free)} free in {directory}"
        )


def human_bytes(n: int) -> str:
    """A size in the largest binary unit that keeps it >= 1 ("1.50 GiB", "512 B"):
    a small model had needed "0.00 GiB" of "0.00 GiB free"."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def make_parent(path: Path, what: str) -> None:
    """Create the directory `path` goes in (and its parents) and check that a file can
    be made there, before any work. Named errors instead of the OS's alone: a parent
    that is a file had said "File exists", and a file system that takes no files
    (/proc) "out of disk space ... 0.00 GiB free" (a CLI review found both)."""
    parent = Path(path).parent
    for above in (parent, *parent.parents):
        if above.is_symlink() and not above.exists():
            raise UserError(f"cannot write {what} {path}: {above} is a broken symbolic link")
        if above.exists():
            if not above.is_dir():
                raise UserError(f"cannot write {what} {path}: {above} is a file, not a directory")
            break
    try:
        parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as exc:
        raise UserError(
            f"cannot write {what} in {parent}: no file can be made there ({exc.strerror or exc})"
        ) from None


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


# -- model directories ---------------------------------------------------------------
MANIFEST = "manifest.json"


def staging_dirs(model_dir: Path) -> list[Path]:
    """Temporary directories of earlier (possibly killed) solves into `model_dir`."""
    parent = model_dir.parent
    if not parent.exists():
        return []
    # (escaped: a name like "run[1]" is a glob pattern that matched neither its own
    # staging directories nor only its own, and --resume started over or took another's)
    return sorted(parent.glob(f"{glob.escape(model_dir.name)}.tmp-*"))


def pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    # a recycled pid belongs to another program: only a fastridge process counts
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"fastridge" in f.read()
    except OSError:
        return True  # no /proc: assume the worst


def staging_pid(path: Path) -> int | None:
    try:
        return int(path.name.rsplit(".tmp-", 1)[1])
    except (IndexError, ValueError):
        return None


def check_output_dir(path, overwrite: bool, marker: str, what: str) -> Path:
    """The directory a command will write (absolute, so "." and ".." have a name),
    checked before any work. It may exist only with `overwrite`, and then only as
    what the command writes (a directory holding `marker`) or empty: --overwrite
    replaces the directory as a whole, and had deleted a data directory given as
    --out with the inputs in it (a helper's CLI fuzz)."""
    path = Path(os.path.abspath(path))
    if not (path.exists() or path.is_symlink()):
        return path
    if not overwrite:
        raise UserError(f"{path} already exists (use --overwrite to replace it)")
    if not path.is_dir():
        raise UserError(f"{path} exists and is not a directory")
    cwd = Path.cwd()
    if path == cwd or path in cwd.parents:
        raise UserError(f"{path} is the current directory or above it: choose another --out")
    if os.path.ismount(path):
        # (`publish` renames it aside, which a mount point refuses: the failure had come
        # only after the whole solve, its result left in a staging directory)
        raise UserError(
            f"{path} is a mount point, which --overwrite cannot replace (it renames the "
            "old directory aside): choose a directory inside it"
        )
    if any(path.iterdir()) and not (path / marker).is_file():
        raise UserError(
            f"{path} is not a fastridge {what} (it has no {marker}), and --overwrite "
            "replaces a directory as a whole: choose another --out, or remove it yourself"
        )
    return path


def publish(staging: Path, model_dir: Path, overwrite: bool) -> None:
    """Move a complete staging directory to `model_dir` with renames only.

    Without `overwrite` an existing `model_dir` is never touched. With it, the
    old directory is renamed aside, the new one renamed in, and only then the
    old one removed, so at every instant `model_dir` is either the old model or
    the new one (or, for a moment between the two renames, absent).
    """
    fsync_dir(staging)
    if model_dir.exists() or model_dir.is_symlink():
        if not overwrite:
            raise UserError(f"{model_dir} already exists (use --overwrite to replace it)")
        old = model_dir.with_name(f"{model_dir.name}.old-{os.getpid()}")
        os.rename(model_dir, old)
        try:
            os.rename(staging, model_dir)
        except OSError:
            os.rename(old, model_dir)
            raise
        fsync_dir(model_dir.parent)
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()
    else:
        os.rename(staging, model_dir)
        fsync_dir(model_dir.parent)


def publish_file(tmp: Path, out: Path) -> None:
    """Rename a finished temporary file to its final name (atomic on one file system)."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, out)
