#!/bin/sh
# The measurement sequence behind bench/RESULTS.md, in the order it was run.
# Usage: FASTRIDGE=/work/main sh bench/official.sh   (from the repository root)
# The headline data are generated first (not timed); the solve is timed.
set -e
FASTRIDGE=${FASTRIDGE:-$(pwd)}
export PYTHONPATH=$FASTRIDGE
echo "fastridge at $(git -C "$FASTRIDGE" rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg)"
# 1. M size, 6 alphas: the speed / memory / agreement targets against scikit-learn.
python bench/run.py suite --sizes M --alphas 6 --repeats-large 1 --solvers \
    fastridge-loo-f32 fastridge-loo-f64 fastridge-gcv-f32 fastridge-kfold5-f32 \
    sklearn-loo-f64 himalaya-kernel-torch-f32 himalaya-ridge-torch-f32
# 2. The headline problem, end to end from .npy files (generated beforehand if missing).
python bench/headline.py all
# 3. S size, 3 and 6 alphas, every solver but himalaya's slow numpy primal RidgeCV.
python bench/run.py suite --sizes S --alphas 3 6 --repeats 3 --solvers \
    fastridge-loo-f32 fastridge-loo-f64 fastridge-gcv-f32 fastridge-gcv-f64 \
    fastridge-kfold5-f32 fastridge-kfold5-f64 sklearn-loo-f64 \
    himalaya-kernel-numpy-f32 himalaya-kernel-torch-f32 himalaya-ridge-torch-f32
