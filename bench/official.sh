#!/bin/sh
# The measurement sequence behind bench/RESULTS.md, as run on 2026-11-23 (session 2),
# from the repository root: FASTRIDGE=/work/main sh bench/official.sh
# Takes ~45 min on the 2-core machine, most of it the full headline solve.
set -e
FASTRIDGE=${FASTRIDGE:-$(pwd)}
export PYTHONPATH=$FASTRIDGE
echo "fastridge at $(git -C "$FASTRIDGE" rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg)"
# 1. M size, 6 alphas: the speed / memory / agreement targets against scikit-learn,
#    and K-fold against himalaya's KernelRidgeCV on both of its CPU backends.
python bench/run.py suite --sizes M --alphas 6 --repeats-large 1 --solvers \
    fastridge-loo-f32 fastridge-loo-f64 fastridge-gcv-f32 fastridge-loo-f32-dual \
    fastridge-kfold5-f32 fastridge-kfold5-f32-dual \
    sklearn-loo-f64 himalaya-kernel-torch-f32 himalaya-kernel-numpy-f32
# 2. The full headline problem from .npy files: data generated once (not timed),
#    all 173,568 targets solved with a float64 spot check, files removed.
python bench/headline.py generate
python bench/headline.py solve
python bench/headline.py clean
# 3. S size, 6 alphas, median of 3.
python bench/run.py suite --sizes S --alphas 6 --repeats 3 --solvers \
    fastridge-loo-f32 fastridge-loo-f64 fastridge-loo-f32-dual fastridge-kfold5-f32 \
    fastridge-kfold5-f32-dual sklearn-loo-f64 himalaya-kernel-torch-f32
