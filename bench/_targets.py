"""The issue-#4 targets, checked against result JSONs: prints met / missed with the numbers.

python bench/_targets.py bench/out/suite-<M>.json [suite-<S>.json ...] [headline-*.json]
"""

from __future__ import annotations

import json
import statistics
import sys


def speed_ratio(slow: dict, fast: dict) -> float:
    """How many times faster `fast` ran than `slow` (two run records): with rounds
    (bench/run.py --rounds) the median of the per-round ratios, each round having
    run every solver once, in turn, so that a slow minute of the machine touches
    both sides of a ratio; else the ratio of their median walls."""
    a, b = slow.get("round_walls"), fast.get("round_walls")
    if a and b and len(a) == len(b):
        return statistics.median(x / y for x, y in zip(a, b, strict=True))
    return slow["wall"] / fast["wall"]


def _runs(docs):
    for d in docs:
        for r in d.get("runs", []):
            if r.get("ok"):
                yield r


def check(docs) -> list[str]:
    out = []
    runs = list(_runs(docs))

    def find(problem, config, n_alphas):
        for r in runs:
            if r["problem"] == problem and r["config"] == config and len(r["alphas"]) == n_alphas:
                return r
        return None

    fr, sk = find("M", "fastridge-loo-f32", 6), find("M", "sklearn-loo-f64", 6)
    if fr and sk:
        speed = speed_ratio(sk, fr)
        same = fr.get("agreement", {}).get("same_alpha", float("nan"))
        rss = fr["peak_rss"] / sk["peak_rss"]
        out.append(
            f"M, 6 alphas, exact LOO, float32: speed-up vs scikit-learn {speed:.1f}x "
            f"({'met' if speed >= 8 else 'MISSED'}, target >= 8x); identical alphas "
            f"{same:.3%} ({'met' if same >= 0.999 else 'MISSED'}, target >= 99.9%); "
            f"peak RSS ratio {rss:.2f} ({'met' if rss <= 0.25 else 'MISSED'}, target <= 0.25)"
        )
    fr64 = find("M", "fastridge-loo-f64", 6)
    if fr64 and sk:
        speed = speed_ratio(sk, fr64)
        same = fr64.get("agreement", {}).get("same_alpha", float("nan"))
        rss = fr64["peak_rss"] / sk["peak_rss"]
        out.append(
            f"M, 6 alphas, exact LOO, float64: speed-up {speed:.1f}x "
            f"({'met' if speed >= 8 else 'MISSED'}); identical alphas {same:.3%} "
            f"({'met' if same >= 0.999 else 'MISSED'}); peak RSS ratio {rss:.2f} "
            f"({'met' if rss <= 0.25 else 'MISSED'})"
        )
    for r in runs:
        if r["solver"] == "fastridge" and r["scheme"] == "loo":
            f = r["roofline_fraction"]
            out.append(
                f"roofline {r['problem']} {len(r['alphas'])} alphas {r['config']}: {f:.0%} "
                f"({'met' if f >= 0.85 else 'MISSED'}, target >= 85%)"
            )
    for problem in sorted({r["problem"] for r in runs}):
        here = [r for r in runs if r["problem"] == problem]
        him = [r for r in here if r["solver"].startswith("himalaya")]
        kf = [r for r in here if r["config"].startswith("fastridge-kfold5")]
        if not (kf and him):
            continue
        # Each fastridge output against himalaya's fastest run returning the same
        # one (KernelRidgeCV: dual coefficients; with get_primal_coef(), or its
        # RidgeCV: primal ones), or, in suites without such a run, its fastest run
        # of any output (then said).
        for label, dual in (("primal coefficients", False), ("dual coefficients", True)):
            mine = [r for r in kf if r["config"].endswith("-dual") == dual]
            if not mine:
                continue
            same = [r for r in him if (r["solver"] == "himalaya_kernel") == dual]
            best_h = min(same or him, key=lambda r: r["wall"])
            output = "the same output" if same else "another output"
            best_fr = min(mine, key=lambda r: r["wall"])
            ratio = speed_ratio(best_h, best_fr)
            out.append(
                f"{problem} cv=5, {label}: fastridge {best_fr['config']} {best_fr['wall']:.2f}s "
                f"vs himalaya's fastest run with {output} {best_h['config']} "
                f"{best_h['wall']:.2f}s: {ratio:.2f}x "
                f"({'met' if ratio >= 2 else 'MISSED'}, target >= 2x)"
            )
    for d in docs:
        if d.get("kind") == "headline":
            wall, rss = d["wall_seconds"], d["peak_rss"] / 2**30
            out.append(
                f"headline: {wall / 60:.2f} min ({'met' if wall <= 600 else 'MISSED'}, "
                f"target <= 10 min), peak RSS {rss:.2f} GiB "
                f"({'met' if rss <= 10 else 'MISSED'}, target <= 10 GiB)"
            )
    return out


def main(paths):
    docs = []
    for p in paths:
        with open(p) as f:
            docs.append(json.load(f))
    for line in check(docs):
        print("- " + line)


if __name__ == "__main__":
    main(sys.argv[1:])
