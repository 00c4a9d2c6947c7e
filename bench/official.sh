#!/bin/sh
# The measurement sequence behind bench/RESULTS.md, as it was run on 2026-11-23
# (from the repository root): FASTRIDGE=/work/main sh bench/official.sh
# The full headline run (`python bench/headline.py all`) takes ~48 min on that
# machine, so RESULTS.md has a measured prefix of 8,192 targets instead.
set -e
FASTRIDGE=${FASTRIDGE:-$(pwd)}
export PYTHONPATH=$FASTRIDGE
echo "fastridge at $(git -C "$FASTRIDGE" rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg)"
# 1. M size, 6 alphas: the speed / memory / agreement targets against scikit-learn,
#    and K-fold against himalaya's fastest configuration (KernelRidgeCV, torch).
python bench/run.py suite --sizes M --alphas 6 --repeats-large 1 --solvers \
    fastridge-loo-f32 fastridge-loo-f64 fastridge-gcv-f32 fastridge-kfold5-f32 \
    sklearn-loo-f64 himalaya-kernel-torch-f32
# 2. The headline problem from .npy files: data generated once (not timed), the
#    first 8,192 targets solved (the rest extrapolated, labelled), files removed.
python bench/headline.py generate
python bench/headline.py solve --limit-targets 8192 --skip-check
python bench/headline.py clean
# 3. S size, 6 alphas, median of 3.
python bench/run.py suite --sizes S --alphas 6 --repeats 3 --solvers \
    fastridge-loo-f32 fastridge-loo-f64 fastridge-kfold5-f32 sklearn-loo-f64 \
    himalaya-kernel-torch-f32
