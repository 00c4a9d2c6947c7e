"""The headline problem on a CUDA GPU, and flop-model PREDICTIONS for H100 / A100 / RTX 3090.

    python bench/gpu_full.py predict                  # no GPU needed: the prediction table
    python bench/headline.py generate                 # X.npy, Y.npy (once, on the host)
    PYTHONPATH=/path/to/fastridge python bench/gpu_full.py run [--precision high] [--tf32]
    python bench/headline.py clean

`run` needs a CUDA device (it refuses to run without one unless --device cpu
is given, which only exists to test this script on a small problem). It runs
fastridge.ridge_cv on the memmapped Y with device="cuda" and coefficients
written chunk by chunk into coef.npy, with torch.cuda.synchronize() around
the whole call (ridge_cv itself synchronizes at the end of each stage it
times), and records result.timings per stage, the wall time,
torch.cuda.max_memory_allocated() and the device name. It also times a GEMM
of the per-alpha shape on the device, so the achieved fraction of that
device's GEMM rate can be computed like on the CPU (bench/_flops.py).

`predict` turns the flop model (bench/_flops.py) into seconds per stage with
published peak rates (vendor specifications, see SPECS) and an assumed
efficiency. These are PREDICTIONS, not measurements: nothing here ran on a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(1, str(HERE))
import _problems  # noqa: E402
from _flops import flop_model  # noqa: E402

# Vendor specifications (dense, no sparsity), TFLOP/s and GB/s:
# - H100 SXM5 80 GB: NVIDIA H100 Tensor Core GPU datasheet (FP64 34, FP64 Tensor
#   67, FP32 67, TF32 Tensor 989 "with sparsity" = 494.7 dense, HBM3 3.35 TB/s,
#   PCIe Gen5 128 GB/s both directions together).
# - A100 SXM4 80 GB: NVIDIA A100 Tensor Core GPU datasheet (FP64 9.7, FP64 Tensor
#   19.5, FP32 19.5, TF32 Tensor 156 dense / 312 sparse, HBM2e 2,039 GB/s,
#   PCIe Gen4 64 GB/s both directions together).
# - GeForce RTX 3090: NVIDIA Ampere GA102 GPU architecture whitepaper (FP32 35.6,
#   TF32 Tensor 35.6 dense / 71 sparse, FP64 at 1/64 of FP32 = 0.56, GDDR6X
#   936 GB/s, 24 GB, PCIe Gen4 x16).
SPECS = {
    "H100 SXM5 80GB": dict(fp64=34.0, fp32=67.0, tf32=494.7, bw=3350.0, pcie=64.0, mem_gb=80),
    "A100 SXM4 80GB": dict(fp64=9.7, fp32=19.5, tf32=156.0, bw=2039.0, pcie=32.0, mem_gb=80),
    "RTX 3090": dict(fp64=0.56, fp32=35.6, tf32=35.6, bw=936.0, pcie=32.0, mem_gb=24),
}
# Assumptions of the prediction (stated in its output):
GEMM_EFFICIENCY = 0.70  # large cuBLAS GEMMs reach ~70% of peak
EIGH_EFFICIENCY = 0.10  # cuSOLVER syevd is not GEMM-bound: ~10% of FP64 peak (9 m^3 flops)
BW_EFFICIENCY = 0.80  # streaming kernels reach ~80% of peak memory bandwidth
PCIE_EFFICIENCY = 0.80  # pinned host<->device copies, per direction


def predict(n, p, t, n_alphas, decompose_dtype="float64") -> dict:
    """Seconds per stage on each GPU in SPECS (PREDICTIONS from the flop model)."""
    # fp32: precision="highest", the dual route; tf32: precision="high", whose split
    # GEMMs need the projection route
    models = {
        "fp32": flop_model(n, p, t, n_alphas, cv=None),
        "tf32": flop_model(n, p, t, n_alphas, cv=None, dual_route=False),
    }
    out = {}
    for gpu, s in SPECS.items():
        dec_rate = (s["fp64"] if decompose_dtype == "float64" else s["fp32"]) * 1e12
        rows = {}
        for mode, rate in (("fp32", s["fp32"]), ("tf32", s["tf32"])):
            st = models[mode]["stages"]
            gemm = GEMM_EFFICIENCY * rate * 1e12
            bw = BW_EFFICIENCY * s["bw"] * 1e9
            pcie = PCIE_EFFICIENCY * s["pcie"] * 1e9
            stages = {
                # the Gram (and the dual route's Cholesky inverses) in the decomposition
                # dtype, M in the compute dtype; the eigh (projection route only)
                "decompose": (st["gram"] + st.get("factor", 0.0)) / (GEMM_EFFICIENCY * dec_rate)
                + st["M"] / gemm
                + 9.0 * models[mode]["eigh_size"] ** 3 / (EIGH_EFFICIENCY * dec_rate),
                # Y to the device once (4 n t bytes) + centring reads/writes it twice.
                "project": st["project"] / gemm + 4.0 * n * t / pcie + 2 * 4.0 * n * t / bw,
                # Per alpha: GEMM + squares (2 passes), weighted column sums (1) and, in
                # the dual route, keeping the best alpha's residuals (3 streams): ~6
                # passes of n x t (the projection route scales instead: ~3).
                "cv": st["cv"] / gemm + n_alphas * (6 if mode == "fp32" else 3) * 4.0 * n * t / bw,
                # Coefficients back to the host: 4 p t bytes.
                "refit": st["refit"] / gemm + 4.0 * p * t / pcie,
            }
            stages["total"] = sum(stages.values())
            rows[mode] = stages
        out[gpu] = rows
    return {
        "label": "PREDICTIONS from the flop model and vendor peak rates; not measured",
        "problem": {"n_samples": n, "n_features": p, "n_targets": t, "n_alphas": n_alphas},
        "decompose_dtype": decompose_dtype,
        "assumptions": {
            "gemm_efficiency": GEMM_EFFICIENCY,
            "eigh_efficiency_of_decompose_peak": EIGH_EFFICIENCY,
            "bandwidth_efficiency": BW_EFFICIENCY,
            "pcie_efficiency_per_direction": PCIE_EFFICIENCY,
            "excluded": "reading Y from disk and writing coef.npy to disk (storage-bound)",
        },
        "model_gflop": {
            mode: {k: v / 1e9 for k, v in model["stages"].items()} for mode, model in models.items()
        },
        "eigh_size": {mode: model["eigh_size"] for mode, model in models.items()},
        "specs": SPECS,
        "seconds": out,
    }


def predict_markdown(pred: dict) -> str:
    lines = [
        f"**{pred['label']}** (decomposition in {pred['decompose_dtype']}; GEMMs at "
        f"{GEMM_EFFICIENCY:.0%} of peak, eigh at {EIGH_EFFICIENCY:.0%} of the "
        f"decomposition dtype's peak, memory at {BW_EFFICIENCY:.0%} of peak bandwidth, "
        "disk I/O excluded)",
        "",
        "| GPU | matmul | decompose s | project s | cv s | refit s | total s |",
        "|---|---|---|---|---|---|---|",
    ]
    for gpu, rows in pred["seconds"].items():
        for mode, s in rows.items():
            lines.append(
                f"| {gpu} | {mode} | {s['decompose']:.1f} | {s['project']:.1f} | "
                f"{s['cv']:.1f} | {s['refit']:.1f} | {s['total']:.1f} |"
            )
    return "\n".join(lines) + "\n"


def run(ns):
    import torch
    from numpy.lib.format import open_memmap

    try:
        import fastridge
    except ImportError:
        sys.path.append(str(HERE.parent))
        import fastridge
    from _machine import machine_info

    if ns.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this script measures a GPU (use `predict` here)")
    dev = torch.device(ns.device)
    cuda = dev.type == "cuda"
    if ns.tf32:
        torch.backends.cuda.matmul.allow_tf32 = True

    def sync():
        if cuda:
            torch.cuda.synchronize(dev)

    d = Path(ns.dir)
    X = np.load(d / "X.npy")
    Y = np.load(d / "Y.npy", mmap_mode="r")
    n, p = X.shape
    t = int(np.prod(Y.shape[1:]))
    coef = open_memmap(d / "coef.npy", mode="w+", dtype=np.float32, shape=(t, p))

    # Device GEMM rate at the per-alpha shape (n x n) @ (n x 4096), float32.
    A = torch.randn(n, n, device=dev)
    B = torch.randn(n, 4096, device=dev)
    torch.mm(A, B)
    sync()
    t0 = time.perf_counter()
    for _ in range(5):
        torch.mm(A, B)
    sync()
    gemm_gflops = 5 * 2.0 * n * n * 4096 / (time.perf_counter() - t0) / 1e9
    del A, B
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)

    sync()
    t0 = time.perf_counter()
    res = fastridge.ridge_cv(
        X,
        Y,
        tuple(ns.alphas),
        cv=None,
        alpha_per_target=True,
        dtype="float32",
        decompose_dtype=ns.decompose_dtype,
        device=dev,
        target_chunk=ns.target_chunk if ns.target_chunk == "auto" else int(ns.target_chunk),
        memory_budget=ns.memory_budget,
        coef_out=coef,
        verbose=True,
        **({} if ns.precision is None else {"precision": ns.precision}),
    )
    sync()
    solve_seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    coef.flush()
    flush_seconds = time.perf_counter() - t1
    model = flop_model(n, p, t, len(ns.alphas), cv=None)
    doc = {
        "kind": "gpu_full",
        "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["python", "bench/gpu_full.py", *sys.argv[1:]]),
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if cuda else "cpu (script test only)",
        "tf32": bool(ns.tf32),
        "precision": ns.precision,
        "decompose_dtype": ns.decompose_dtype,
        "problem": {"n_samples": n, "n_features": p, "n_targets": t},
        "alphas": list(ns.alphas),
        "timings": res.timings,
        "solve_seconds": solve_seconds,
        "flush_seconds": flush_seconds,
        "max_memory_allocated": torch.cuda.max_memory_allocated(dev) if cuda else None,
        "target_chunk": res.target_chunk,
        "device_gemm_gflops_float32": gemm_gflops,
        "model_gflop": model["gemm_flops"] / 1e9,
        "achieved_gflops": model["gemm_flops"] / solve_seconds / 1e9,
        "machine": machine_info(),
        "prediction": predict(n, p, t, len(ns.alphas), ns.decompose_dtype),
    }
    out = HERE / "out" / f"gpu_full-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1, default=str))
    print(json.dumps({k: doc[k] for k in ("device_name", "timings", "solve_seconds")}, indent=1))
    if cuda:
        print(f"max_memory_allocated {doc['max_memory_allocated'] / 2**30:.2f} GiB")
    print(f"wrote {out}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("step", choices=["predict", "run"])
    dims = _problems.SIZES["headline"]
    parser.add_argument("--n-samples", type=int, default=dims["n_samples"])
    parser.add_argument("--n-features", type=int, default=dims["n_features"])
    parser.add_argument("--n-targets", type=int, default=dims["n_targets"])
    parser.add_argument("--alphas", type=float, nargs="+", default=list(_problems.ALPHAS_3))
    parser.add_argument("--dir", default=str(HERE / "out" / "headline"))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tf32", action="store_true", help="allow TF32 tensor-core matmuls")
    parser.add_argument(
        "--precision",
        default=None,
        choices=["highest", "high", "medium"],
        help="ridge_cv's scoring-GEMM precision (3xTF32 / 3xbf16 on tensor cores)",
    )
    parser.add_argument("--decompose-dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--target-chunk", default="auto")
    parser.add_argument("--memory-budget", default=None)
    parser.add_argument("--json", action="store_true", help="predict: print JSON too")
    ns = parser.parse_args(argv)
    if ns.step == "predict":
        for dd in ("float64", "float32"):
            pred = predict(ns.n_samples, ns.n_features, ns.n_targets, len(ns.alphas), dd)
            print(predict_markdown(pred))
            if ns.json:
                print(json.dumps(pred, indent=1))
    else:
        run(ns)


if __name__ == "__main__":
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")
    main()
