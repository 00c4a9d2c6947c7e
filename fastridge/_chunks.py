"""Step 2 helpers: split the targets into column chunks and move them to the device.

Y is seen as a 2-D array of shape (n_samples, n_targets) where the targets are
Y's trailing dimensions flattened in C order. A chunk is a contiguous range of
those flat target indices; it is read from Y (a numpy memmap is read only for
those columns, never whole), converted to the compute dtype and moved to the
compute device.
"""

from __future__ import annotations

import mmap
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ._backend import array_kind, as_tensor, host_copy, host_empty

# Bytes per target of everything one chunk allocates, per element of these sizes:
# the Y chunk, the projected Ũ, the residual work buffer, the alpha-free
# remainder, scores and the coefficient rows (see `bytes_per_target`).
DEFAULT_MEMORY_BUDGET = 1 << 30  # 1 GiB on CPU; see `auto_target_chunk`


def parse_bytes(value, name: str = "memory_budget") -> int:
    """'2GB', '512MiB', 1e9 or an int -> bytes; a ValueError naming `name` for
    anything else, also for a size below 1 byte, infinite or NaN ('inf' had ended
    in an internal OverflowError, 'lots' in float()'s own message)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"{name} must be at least 1 byte, got {value!r}")
        return value
    text = str(value).strip().upper().replace(" ", "")
    units = {
        "KIB": 2**10,
        "MIB": 2**20,
        "GIB": 2**30,
        "TIB": 2**40,
        "KB": 10**3,
        "MB": 10**6,
        "GB": 10**9,
        "TB": 10**12,
        "B": 1,
    }
    factor = 1
    for unit, f in units.items():
        if text.endswith(unit):
            text, factor = text[: -len(unit)], f
            break
    try:
        size = float(text) * factor
    except ValueError:
        raise ValueError(
            f"{name} must be a number of bytes or a size such as '2GB' or '512MiB', got {value!r}"
        ) from None
    if not np.isfinite(size) or size < 1:
        raise ValueError(f"{name} must be a finite size of at least 1 byte, got {value!r}")
    return int(size)


def bytes_per_target(
    n_samples: int, rank: int, n_features: int, n_alphas: int, itemsize: int
) -> int:
    """Memory one target column costs inside a chunk, counted generously.

    n_samples-long columns, at most 5: the raw Y chunk and its centred copy (one
    buffer unless a score needs the raw targets), the next chunk read ahead (on
    CUDA only), the alpha-free remainder and the residual buffer. rank-long, 4:
    Ũ, its scaled copy and the float64 1 / (eigvals + alpha) factors.
    n_features-long, 2: the coefficient rows and a host copy of them. Plus the
    scores of every alpha and the best ones.
    The leave-one-out dual route (`_cv.DualRoute`, full rank, so rank >= n_samples
    - 1) has no rank-long columns but one more n_samples-long one (the kept
    residuals) and a 256-row block of squares: within this count.
    """
    return itemsize * (5 * n_samples + 4 * rank + 2 * n_features + n_alphas + 2)


def available_memory(device: torch.device) -> int:
    """Free memory on `device` in bytes (host: MemAvailable from /proc/meminfo)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def auto_target_chunk(
    n_targets: int, per_target: int, device: torch.device, memory_budget=None
) -> int:
    """Targets per chunk from a memory budget.

    The budget defaults to min(1 GiB, half the free memory) on the host and to
    half the free device memory on CUDA. Chunks are at least 1 and at most all
    targets; above a few hundred columns the GEMMs run at full speed already, so
    a modest budget costs little time.
    """
    if memory_budget is None or memory_budget == "auto":
        free = available_memory(device)
        budget = free // 2 if device.type == "cuda" else min(DEFAULT_MEMORY_BUDGET, free // 2)
    else:
        budget = parse_bytes(memory_budget)
    return int(max(1, min(n_targets, budget // max(per_target, 1))))


def chunk_slices(n_targets: int, target_chunk: int):
    """Consecutive `slice`s of at most `target_chunk` flat target indices."""
    for start in range(0, n_targets, target_chunk):
        yield slice(start, min(start + target_chunk, n_targets))


def drop_pages(*arrays) -> None:
    """Hand the resident pages of memory-mapped arrays back to the kernel.

    Clean pages stay in the page cache, dirty ones are written back first
    (callers flush), so the data is intact; only this process's RSS drops.
    """
    for a in arrays:
        mm = getattr(a, "_mmap", None)
        if mm is None:
            base = getattr(a, "base", None)
            while base is not None and mm is None:
                mm = getattr(base, "_mmap", None) if not isinstance(base, mmap.mmap) else base
                base = getattr(base, "base", None)
        if isinstance(mm, mmap.mmap) and hasattr(mm, "madvise"):
            try:
                mm.madvise(mmap.MADV_DONTNEED)
            except (OSError, ValueError):
                pass  # best effort: a closed or special mapping


def _file_position(a: np.ndarray) -> int | None:
    """Byte position in its file of the first element of a C-contiguous view of a
    numpy memmap, or None when `a` is not such a view."""
    mm = getattr(a, "_mmap", None)
    name = getattr(a, "filename", None)
    if not isinstance(mm, mmap.mmap) or not name or not a.flags.c_contiguous:
        return None
    try:
        mapped = np.frombuffer(mm, dtype=np.uint8).ctypes.data
    except (TypeError, ValueError):  # a closed mapping
        return None
    # np.memmap maps from the allocation boundary below its offset
    start = a.offset - a.offset % mmap.ALLOCATIONGRANULARITY
    return start + (a.ctypes.data - mapped)


class RowReader:
    """Column blocks of a C-contiguous 2-D memmap (n_samples, n_targets) read with
    one positioned read per row, not through the mapping.

    A block of columns touches every row; through the mapping each page is a page
    fault, then a dropped mapping (`drop_pages`). One `os.preadv` per row copies
    straight from the page cache: measured on the headline's Y (8,859 rows, 2,241
    columns of float32 a chunk, page cache warm), 48-51 ms a chunk against 90-260
    ms through the mapping.
    """

    def __init__(self, flat: np.ndarray, position: int):
        self.position = position
        self.dtype = flat.dtype
        self.row_bytes = flat.shape[1] * flat.dtype.itemsize
        self.fd = os.open(flat.filename, os.O_RDONLY)

    @classmethod
    def of(cls, flat) -> RowReader | None:
        """A reader for `flat` (2-D), or None when it is not a C-contiguous memmap view."""
        position = None if flat is None else _file_position(flat)
        if not hasattr(os, "preadv") or position is None:
            return None
        try:
            return cls(flat, position)
        except OSError:  # e.g. the file was renamed since it was mapped
            return None

    def read_into(self, sl: slice, out: np.ndarray) -> np.ndarray:
        """Columns `sl` into `out` (n_rows, width), C-contiguous, of the file's dtype."""
        first = self.position + sl.start * self.dtype.itemsize
        want = out.shape[1] * self.dtype.itemsize
        for i, row in enumerate(out):
            got = os.preadv(self.fd, [row], first + i * self.row_bytes)
            if got != want:
                raise OSError(f"short read of row {i} of the targets' file ({got} of {want} bytes)")
        return out

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class TargetReader:
    """Reads column chunks of Y (any trailing shape) as device tensors.

    Parameters
    ----------
    Y : array of shape (n_samples, *target_shape)
        numpy array or memmap, torch tensor or cupy array.
    device, dtype : where and in which dtype chunks are returned
    read_ahead : bool or None
        Whether `prefetch` reads the next chunk early. None: on CUDA, where the
        copy overlaps queued GPU work, and for a memory-mapped Y on the CPU, read
        in a background thread while the current chunk's GEMMs run (the thread
        waits on the disk or copies from the page cache, with the GIL released;
        one more chunk buffer). Otherwise reading early overlaps nothing. Tests
        set it on the CPU for in-memory arrays too (read at once).
    """

    def __init__(self, Y, device: torch.device, dtype: torch.dtype, read_ahead=None):
        self.Y = Y
        self.device = device
        self.dtype = dtype
        self.n_samples = Y.shape[0]
        self.target_shape = tuple(Y.shape[1:])
        self.n_targets = int(np.prod(self.target_shape, dtype=np.int64))
        self.kind = array_kind(Y)
        self._flat = None
        self._pending = None  # (bounds, device tensor or Future, CUDA event or None)
        if self.kind == "torch":
            self._flat = Y.reshape(self.n_samples, self.n_targets)
        elif self.kind == "cupy":
            self._flat = Y.reshape(self.n_samples, self.n_targets)
        else:
            # Reshaping a non-C-contiguous N-d array would copy (and read a memmap
            # whole): gather each chunk's columns by index instead.
            if Y.ndim <= 2 or Y.flags.c_contiguous:
                self._flat = Y.reshape(self.n_samples, self.n_targets)
        mapped = self.kind == "numpy" and isinstance(Y, np.memmap)
        self.in_background = device.type == "cpu" and mapped and read_ahead is not False
        if read_ahead is None:
            read_ahead = device.type == "cuda" or self.in_background
        self.read_ahead = bool(read_ahead)
        self._rows = RowReader.of(self._flat) if self.kind == "numpy" and mapped else None
        self._worker = None  # ThreadPoolExecutor of one thread, made on first use
        self._spare = None  # the background read's buffer when it is free again

    def _host_block(self, sl: slice, copy: bool = True):
        """Columns `sl` as a host array (numpy input; a strided view of Y when
        `copy` is False and Y's layout allows it) or a tensor/cupy view."""
        if self._flat is not None:
            if self.kind == "numpy":
                view = self._flat[:, sl]
                # (copied only when strided, as np.ascontiguousarray, into plain pages)
                return host_copy(view) if copy and not view.flags.c_contiguous else view
            return self._flat[:, sl]
        idx = np.unravel_index(np.arange(sl.start, sl.stop), self.target_shape)
        block = self.Y[(slice(None),) + idx]  # (fancy indexing: already a new array)
        return block if block.flags.c_contiguous else host_copy(block)

    def _release(self) -> None:
        """A chunk of a memmapped Y touches pages across every row: give them back
        after copying, so resident memory does not grow with Y's size."""
        if self.kind == "numpy":
            drop_pages(self.Y)

    def read(self, sl: slice, out: torch.Tensor | None = None) -> torch.Tensor:
        """Columns `sl` of the flattened targets -> tensor (n_samples, len) on device.

        Returns the chunk started by `prefetch(sl)` when there is one. Otherwise,
        with `out` (a contiguous tensor of that shape, device and dtype) and host
        data on the CPU, the columns are copied straight into `out`, which is
        returned: a buffer reused by every chunk is touched once, where a fresh
        chunk costs its page faults each time. Without `out` (or when it does not
        apply) the result may be a view of Y: callers must not write into it.
        """
        pending, self._pending = self._pending, None
        if pending is not None and not isinstance(pending[1], torch.Tensor):
            tensor = pending[1].result()  # the background read (re-raises its error)
            if pending[0] != (sl.start, sl.stop):
                self._spare = tensor
            elif out is None or out.shape != tensor.shape or out.dtype != tensor.dtype:
                return tensor  # handed over: the next read goes to a new buffer
            else:
                out.copy_(tensor)  # (a memcpy; the buffer is free for the next read)
                self._spare = tensor
                return out
        elif pending is not None and pending[0] == (sl.start, sl.stop):
            _, tensor, event = pending
            if event is not None:  # CUDA: wait for the side-stream copy, keep memory alive
                torch.cuda.current_stream(self.device).wait_event(event)
                tensor.record_stream(torch.cuda.current_stream(self.device))
            return tensor
        if out is not None and self.kind == "numpy" and self.device.type == "cpu":
            self._read_host(sl, out)
            return out
        tensor = as_tensor(self._host_block(sl), self.device, self.dtype)
        self._release()
        return tensor

    def prefetch(self, sl: slice | None) -> None:
        """Start reading chunk `sl` now, so that the next `read(sl)` finds it ready.

        On CUDA with host data the block goes through a pinned staging buffer and
        is copied on a side stream: the disk read and the host-to-device copy of
        chunk k+1 overlap the GPU work already queued for chunk k. Otherwise
        (`read_ahead` set on the CPU) the block is simply read now, synchronously.
        Without `read_ahead` this does nothing.
        """
        if self._pending is not None and sl is not None and self._pending[0] == (sl.start, sl.stop):
            return  # already under way
        self.drop_prefetch()
        if sl is None or sl.start >= sl.stop or not self.read_ahead:
            return
        if self.in_background:
            shape = (self.n_samples, sl.stop - sl.start)
            buf = self._spare
            self._spare = None
            if buf is None or buf.shape != shape:
                buf = torch.from_numpy(host_empty(shape, self.dtype))
            if self._worker is None:
                self._worker = ThreadPoolExecutor(1, thread_name_prefix="fastridge-read")
            job = self._worker.submit(self._read_host, sl, buf)
            self._pending = ((sl.start, sl.stop), job, None)
            return
        if self.device.type != "cuda" or self.kind != "numpy":
            self._pending = ((sl.start, sl.stop), self.read(sl), None)
            return
        host = torch.from_numpy(
            np.asarray(self._host_block(sl), dtype=str(self.dtype).replace("torch.", ""))
        ).pin_memory()
        self._release()
        stream = self._copy_stream = getattr(self, "_copy_stream", None) or torch.cuda.Stream(
            self.device
        )
        with torch.cuda.stream(stream):
            tensor = host.to(self.device, non_blocking=True)
            event = torch.cuda.Event()
            event.record(stream)
        self._pending = ((sl.start, sl.stop), tensor, event)

    def _read_host(self, sl: slice, out: torch.Tensor) -> torch.Tensor:
        """Columns `sl` of a numpy Y into `out` (contiguous, on the CPU), cast to its
        dtype; row by row from the file for a memmap (see `RowReader`)."""
        dst = out.numpy()
        # (values beyond dst's range become inf, found and named by the finite check)
        if self._rows is not None and dst.dtype == self._rows.dtype:
            self._rows.read_into(sl, dst)
        elif self._rows is not None:
            block = host_empty(dst.shape, self._rows.dtype)
            with np.errstate(over="ignore"):
                np.copyto(dst, self._rows.read_into(sl, block), casting="unsafe")
        else:
            with np.errstate(over="ignore"):
                np.copyto(dst, self._host_block(sl, copy=False), casting="unsafe")
            self._release()
        return out

    def drop_prefetch(self) -> None:
        """Forget a prefetched chunk (e.g. before retrying with smaller chunks); a
        background read is waited for (its buffer is reused) and its error dropped."""
        pending, self._pending = self._pending, None
        if pending is not None and not isinstance(pending[1], torch.Tensor):
            try:
                self._spare = pending[1].result()
            except Exception:  # noqa: BLE001 - the chunk is no longer wanted
                self._spare = None

    def close(self) -> None:
        """Finish any background read and close the file (idempotent)."""
        self.drop_prefetch()
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker = None
        if self._rows is not None:
            self._rows.close()
        self._spare = None

    def __del__(self):
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


class ResultWriter:
    """Moves each chunk's results (coefficient rows, intercepts, chosen alphas)
    from the device into the host arrays, then reports the chunk done.

    On CUDA the device-to-host copy of chunk k goes into pinned buffers on a side
    stream and returns at once; the host arrays are written (and `write` called)
    only when chunk k+1's GPU work has been queued (`finish_pending`) or at
    `close`, so the copy-back of k overlaps the compute of k+1. On CPU (and
    whenever `defer` is False) `submit` writes at once: the same code path,
    synchronous. A chunk counts as done only once `write` has run for it, so an
    interrupted run never reports a chunk whose rows are not in the host arrays.

    Parameters
    ----------
    device : torch.device
    defer : bool or None
        Defer the host writes by one chunk (None: on CUDA only). Tests set it on
        CPU to exercise the deferred order without a GPU.
    """

    def __init__(self, device: torch.device, defer: bool | None = None):
        self.device = device
        self.defer = device.type == "cuda" if defer is None else bool(defer)
        self._pending = None  # (host tensors, write, CUDA event or None)
        self._stream = None

    def submit(self, tensors: dict, write) -> None:
        """Copy `tensors` (name -> device tensor) to the host, then call
        `write(host)` with name -> host tensor: now, or after the next chunk's
        work is queued (deferred)."""
        self.finish_pending()
        if not self.defer:
            write({k: v.cpu() for k, v in tensors.items()})
            return
        event = None
        if self.device.type == "cuda":
            current = torch.cuda.current_stream(self.device)
            if self._stream is None:
                self._stream = torch.cuda.Stream(self.device)
            self._stream.wait_stream(current)  # the results are computed on `current`
            with torch.cuda.stream(self._stream):
                host = {}
                for k, v in tensors.items():
                    host[k] = torch.empty(v.shape, dtype=v.dtype, pin_memory=True)
                    host[k].copy_(v, non_blocking=True)
                    v.record_stream(self._stream)  # keep v's memory until the copy is done
                event = torch.cuda.Event()
                event.record(self._stream)
        else:
            host = {k: v.clone() for k, v in tensors.items()}  # deferred on CPU (tests)
        self._pending = (host, write, event)

    def finish_pending(self) -> None:
        """Write the previous chunk's results, if any are waiting (waits for their copy)."""
        if self._pending is None:
            return
        host, write, event = self._pending
        self._pending = None
        if event is not None:
            event.synchronize()
        write(host)

    close = finish_pending
