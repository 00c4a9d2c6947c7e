"""Markdown summary of a bench/out/headline-*.json (used for bench/RESULTS.md).

python bench/_headline_report.py bench/out/headline-<time>.json
"""

from __future__ import annotations

import json
import sys


def _roofline_lines(d) -> list[str]:
    """The roofline sentence (runs from before session 23 have none)."""
    if "roofline" not in d:
        return []
    ideal, tm, used = d["roofline"], d["timings"], d["gemm_gflops_used"]
    stages = "; ".join(
        f"{k} {tm[k]:.1f} [ideal {ideal[k]:.1f}]" for k in ("decompose", "cv", "refit") if k in tm
    )
    return [
        f"Roofline (flop model at the run's fastest GEMM rates, {used['float32']:.0f} GFLOP/s "
        f"float32 and {used['float64']:.0f} float64, measured before and after the solve): "
        f"**{ideal['total']:.1f} s, {d['roofline_fraction']:.0%} of the wall** "
        f"({d['roofline_fraction_of_stages']:.0%} of the stages' sum); {stages}  ",
    ]


def main(path):
    with open(path) as f:
        d = json.load(f)
    gib = 2**30
    tm = d["timings"]
    pr = d["problem"]
    cli = d.get("via") == "cli"
    solution = d.get("solution", "primal")
    lines = [
        f"Command: `{d['command']}`  ",
        f"Started {d['started_utc']}, finished {d['finished_utc']}; load average at start "
        f"{d['load_start']}, at end {d['load_end']}  ",
        f"fastridge {d['fastridge_commit']}  ",
        f"Problem: n={pr['n_samples']}, p={pr['n_features']}, t={pr['n_targets']} "
        f"(shape {pr['target_shape']}), float32, alphas {d['alphas']}, exact LOO per target; "
        f"{d['form']} form, rank {d['rank']}, target_chunk {d['target_chunk']}, "
        + (f"{d['torch_threads']} torch threads; " if "torch_threads" in d else "")
        + f"solution {solution}"
        + (f"; `{' '.join(d['cli_argv'])}`" if cli else ""),
        "",
        "| stage | seconds |",
        "|---|---|",
    ]
    if not cli:
        lines.append(
            f"| load X (np.load), open Y memmap, create coef.npy | {d['load_seconds']:.1f} |"
        )
    who = "fastridge solve" if cli else "ridge_cv"
    for k in ("fingerprint", "decompose", "project", "read", "cv", "refit"):
        if k in tm:
            note = " (inside project)" if k == "read" else ""
            lines.append(f"| {who} {k}{note} | {tm[k]:.1f} |")
    total = "sum of the stages" if cli else "total (solve)"
    lines.append(f"| {who} {total} | {d['solve_seconds']:.1f} |")
    if not cli:
        lines.append(f"| coef.npy flush | {d['flush_seconds']:.1f} |")
    lines += [
        f"| **wall, end to end** | **{d['wall_seconds']:.1f}** "
        f"({d['wall_seconds'] / 60:.2f} min) |",
        "",
        f"Peak RSS (ru_maxrss): **{d['peak_rss'] / gib:.2f} GiB**; sampled peaks: "
        + ", ".join(f"{k} {v / gib:.2f} GiB" for k, v in d["sampled_peaks"].items())
        + "  ",
        f"Model: {d['model_gflop']:.0f} GFLOP "
        + "("
        + ", ".join(f"{k} {v:.0f}" for k, v in d["model_stages_gflop"].items())
        + f"); achieved {d['achieved_gflops']:.0f} GFLOP/s over the solve  ",
        *_roofline_lines(d),
        f"Selected alphas: {d['alpha_counts']}  ",
        (
            f"Spot check vs a float64 normal-equation solve: max rel diff "
            f"{max(d['check']['coef_max_rel_diff']):.1e} over targets {d['check']['targets']}"
            if d.get("check")
            else "Spot check: skipped (--skip-check)"
        ),
        "",
        "Peers on this problem:",
        "",
    ]
    for k, v in d["peer_estimates"].items():
        lines.append(f"- {k}: {v}")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1])
