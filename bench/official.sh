#!/bin/sh
# The measurement sequence behind bench/RESULTS.md, in the order it was run.
# Usage (from the repository root): FASTRIDGE=/work/main sh bench/official.sh
# Generate the headline data beforehand (`python bench/headline.py generate`,
# not timed) or step 3 generates it first.
set -e
FASTRIDGE=${FASTRIDGE:-$(pwd)}
export PYTHONPATH=$FASTRIDGE
echo "fastridge at $(git -C "$FASTRIDGE" rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg)"
# 1. M size, 6 alphas: the speed / memory / agreement targets against scikit-learn,
#    and K-fold against himalaya's fastest configuration (KernelRidgeCV, torch).
python bench/run.py suite --sizes M --alphas 6 --repeats-large 1 --solvers \
    fastridge-loo-f32 fastridge-loo-f64 fastridge-gcv-f32 fastridge-kfold5-f32 \
    sklearn-loo-f64 himalaya-kernel-torch-f32
# 2. S size, 6 alphas, median of 3.
python bench/run.py suite --sizes S --alphas 6 --repeats 3 --solvers \
    fastridge-loo-f32 fastridge-loo-f64 fastridge-kfold5-f32 sklearn-loo-f64 \
    himalaya-kernel-torch-f32 himalaya-kernel-numpy-f32
# 3. The headline problem, end to end from .npy files; deletes them afterwards.
python bench/headline.py all
