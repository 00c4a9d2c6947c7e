#!/bin/sh
# The measurement sequence behind bench/RESULTS.md (session 3, 2026-11-23), from the
# repository root: FASTRIDGE=/path/to/a/checkout sh bench/official.sh
# Benchmark a frozen checkout (a git worktree): editing the measured code while
# the runner works mixes versions. Takes ~70 min on the 2-core machine.
set -e
FASTRIDGE=${FASTRIDGE:-$(pwd)}
export PYTHONPATH=$FASTRIDGE
echo "fastridge at $(git -C "$FASTRIDGE" rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg)"
# 1. M size, 6 alphas, median of 3: the speed / memory / agreement targets against
#    scikit-learn, and K-fold against himalaya's KernelRidgeCV on both CPU backends.
python bench/run.py suite --sizes M --alphas 6 --repeats-large 3 --solvers \
    fastridge-loo-f32 fastridge-loo-f64 fastridge-gcv-f32 fastridge-loo-f32-dual \
    fastridge-kfold5-f32 fastridge-kfold5-f32-dual \
    sklearn-loo-f64 himalaya-kernel-torch-f32 himalaya-kernel-numpy-f32
# 2. S size, 6 alphas, median of 3.
python bench/run.py suite --sizes S --alphas 6 --repeats 3 --solvers \
    fastridge-loo-f32 fastridge-loo-f64 fastridge-loo-f32-dual fastridge-kfold5-f32 \
    fastridge-kfold5-f32-dual sklearn-loo-f64 himalaya-kernel-torch-f32
# 3. The full headline problem through `fastridge solve`: data generated once (not
#    timed), all 173,568 targets solved with dual and with primal coefficients,
#    float64 spot checks, files removed.
python bench/headline.py generate
python bench/headline.py solve --solution dual
python bench/headline.py solve
python bench/headline.py clean
# 4. L size, 6 alphas, one timed fit each (scikit-learn does not fit in memory here;
#    session 3 ran fastridge only, for lack of time).
python bench/run.py suite --sizes L --alphas 6 --repeats-large 1 --solvers \
    fastridge-loo-f32 fastridge-loo-f32-dual
# (Session 3 also re-ran "--sizes M --solvers fastridge-loo-f32 sklearn-loo-f64" after
# a memory fix.) Per-alpha GEMMs vs one wide GEMM over the alphas (issue #6,
# session 2; not re-run):
#   for c in 512 2048 8192; do python bench/wide_gemm.py --chunk $c --repeats 7; done
