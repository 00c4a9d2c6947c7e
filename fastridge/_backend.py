"""The only module that knows the differences between numpy, torch and cupy.

Inputs may be numpy arrays (memmaps included), torch tensors on any device or
cupy arrays. The solver works on torch tensors; results go back as the kind of
array the user passed, on the same device. cupy is never imported here: cupy
arrays are recognised by their type's module name and converted with DLPack,
so ``import fastridge`` neither imports cupy nor initialises CUDA.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

_TORCH_FLOATS = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}


def array_kind(a) -> str:
    """Return "torch", "cupy" or "numpy" (anything else is treated as numpy)."""
    if isinstance(a, torch.Tensor):
        return "torch"
    if type(a).__module__.split(".")[0] == "cupy":
        return "cupy"
    return "numpy"


@dataclass(frozen=True)
class OutputKind:
    """How to hand results back: the array library and device of an input."""

    kind: str  # "numpy", "torch" or "cupy"
    device: torch.device

    @classmethod
    def of(cls, a) -> OutputKind:
        kind = array_kind(a)
        if kind == "torch":
            return cls(kind, a.device)
        if kind == "cupy":
            return cls(kind, torch.device("cuda", a.device.id))
        return cls(kind, torch.device("cpu"))

    def wrap(self, t: torch.Tensor):
        """Convert a torch tensor to this kind (numpy: on the host; else on `device`)."""
        if self.kind == "numpy":
            return t.detach().cpu().numpy()
        t = t.detach().to(self.device)
        if self.kind == "torch":
            return t
        import cupy  # only reached when the user passed cupy arrays

        return cupy.from_dlpack(t)


def resolve_device(device, *arrays) -> torch.device:
    """The compute device: explicit, or "auto" = the device of a GPU input, else
    CUDA if available, else CPU."""
    if device is None or device == "auto":
        for a in arrays:
            kind = array_kind(a)
            if kind == "torch" and a.device.type != "cpu":
                return a.device
            if kind == "cupy":
                return torch.device("cuda", a.device.id)
        return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was requested but CUDA is not available")
    return dev


def torch_dtype(dtype) -> torch.dtype:
    """torch dtype for a numpy/torch/str float dtype (float32 or float64)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    return _TORCH_FLOATS[np.dtype(dtype)]


def as_tensor(a, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """A torch tensor on `device` with `dtype`; no copy when nothing changes.

    cupy arrays are shared through DLPack (zero copy); numpy arrays are wrapped
    with ``torch.from_numpy`` when their layout allows it.
    """
    kind = array_kind(a)
    if kind == "torch":
        t = a
    elif kind == "cupy":
        t = torch.from_dlpack(a)
    else:
        a = np.asarray(a)
        if a.dtype.kind == "f" and a.dtype.itemsize < 4:
            a = a.astype(np.float32)  # float16 storage: torch on CPU computes poorly in half
        if not a.flags.writeable:
            # torch warns on read-only buffers (memmaps opened with mode "r"); the
            # chunk is converted to the compute dtype right after, so copy here.
            a = np.array(a, dtype=np.dtype(str(dtype).replace("torch.", "")))
        t = torch.from_numpy(a)
    return t.to(device=device, dtype=dtype)


def float_dtype_of(a) -> np.dtype:
    """The numpy float dtype the computation should use for input `a`:
    float32 stays float32, float16 computes in float32, everything else float64."""
    dt = a.dtype
    if isinstance(dt, torch.dtype):
        name = str(dt).replace("torch.", "")
        dt = np.dtype(name) if name != "bfloat16" else np.dtype(np.float32)
    dt = np.dtype(dt)
    if dt == np.float32 or (dt.kind == "f" and dt.itemsize < 4):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


@contextlib.contextmanager
def cpu_threads(n_threads: int | None):
    """Temporarily set torch's intra-op CPU threads (None leaves torch's setting)."""
    if n_threads is None:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n_threads))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def synchronize(device: torch.device) -> None:
    """Wait for queued device work (for timings and progress); no-op on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
