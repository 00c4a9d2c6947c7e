"""Per-alpha residual GEMMs vs one wide GEMM over all alphas, on this machine.

The leave-one-out pass computes, per alpha a, E_a = U diag(shrink_a) UtY and
its column sums of squares. Two ways to lay that out:

- per alpha (what fastridge does): scale UtY into a reused (rank, chunk)
  buffer, one (n, rank) x (rank, chunk) GEMM into a reused (n, chunk) buffer,
  score it; n_alphas GEMMs per chunk.
- wide: scale UtY for every alpha into one (rank, n_alphas * chunk) buffer
  (no permute copy: alpha-major blocks of columns), ONE GEMM
  (n, rank) x (rank, n_alphas * chunk), score each (n, chunk) block.

Same flops; the wide form needs n_alphas times the buffers. Usage:

    PYTHONPATH=. python bench/wide_gemm.py [--n 2000] [--chunk 2048] [--alphas 6]

Prints the median of --repeats timings of both, for the CPU BLAS fastridge
uses here and for torch's, and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from fastridge import _backend


def per_alpha(U, UtY, shrink, scaled, E):
    scores = []
    for a in range(shrink.shape[0]):
        torch.mul(UtY, shrink[a][:, None], out=scaled)
        _backend.mm(U, scaled, out=E)
        scores.append(_backend.column_sq_sums(E, overwrite=True))
    return torch.stack(scores)


def wide(U, UtY, shrink, scaled_all, E_all):
    n_alphas, chunk = shrink.shape[0], UtY.shape[1]
    for a in range(n_alphas):
        torch.mul(UtY, shrink[a][:, None], out=scaled_all[:, a * chunk : (a + 1) * chunk])
    _backend.mm(U, scaled_all, out=E_all)
    return torch.stack(
        [_backend.column_sq_sums(E_all[:, a * chunk : (a + 1) * chunk]) for a in range(n_alphas)]
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--chunk", type=int, default=2048)
    parser.add_argument("--alphas", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--torch-threads", type=int, default=1, help="torch threads (1, as fastridge's fit)"
    )
    ns = parser.parse_args(argv)
    torch.set_num_threads(ns.torch_threads)
    g = torch.Generator().manual_seed(0)
    n, r, c, k = ns.n, ns.n - 1, ns.chunk, ns.alphas
    U = torch.randn(n, r, generator=g)
    UtY = torch.randn(r, c, generator=g)
    shrink = torch.rand(k, r, generator=g)
    buffers = {
        "per alpha": (per_alpha, torch.empty(r, c), torch.empty(n, c)),
        "wide": (wide, torch.empty(r, k * c), torch.empty(n, k * c)),
    }
    for lib in ("numpy", "torch"):
        _backend.set_cpu_blas(lib)
        times = {}
        for name, (f, s_buf, e_buf) in buffers.items():
            f(U, UtY, shrink, s_buf, e_buf)  # warm-up: pages, thread pools
            ts = []
            for _ in range(ns.repeats):
                t0 = time.perf_counter()
                f(U, UtY, shrink, s_buf, e_buf)
                ts.append(time.perf_counter() - t0)
            times[name] = statistics.median(ts)
        gflop = 2.0 * n * r * c * k / 1e9
        print(
            f"{lib:5s} n={n} chunk={c} alphas={k}: per alpha {times['per alpha']:.3f}s "
            f"({gflop / times['per alpha']:.0f} GFLOP/s), wide {times['wide']:.3f}s "
            f"({gflop / times['wide']:.0f} GFLOP/s); wide / per alpha = "
            f"{times['wide'] / times['per alpha']:.2f}"
        )
    _backend.set_cpu_blas(None)


if __name__ == "__main__":
    main()
