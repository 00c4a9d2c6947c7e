#!/bin/sh
# The measurement sequence behind bench/RESULTS.md (this form since session 28), from the
# repository root: FASTRIDGE=/path/to/a/checkout sh bench/official.sh
# Benchmark a frozen checkout (a git worktree): editing the measured code while
# the runner works mixes versions. Takes ~60 min on the 2-core machine.
#
# Rounds (--rounds): every solver of a suite runs once per round, in turn, each time
# in a new process, and speed ratios are the median of the per-round ratios, so
# that a slow minute of this shared VM weighs on both sides of a ratio.
#
# OpenBLAS kernel: these machines set OPENBLAS_CORETYPE=Haswell (and
# OPENBLAS_L2_SIZE) for old OpenBLAS builds; with them numpy's current OpenBLAS
# runs its AVX2 kernels on this AVX-512 CPU at about half speed (478 against 237
# GFLOP/s float32 measured here). Every solver below runs with both unset (NATIVE)
# and the JSON records the kernel (threadpoolctl "architecture"); step 1b repeats
# the key comparison with the machine's settings as they are.
set -e
FASTRIDGE=${FASTRIDGE:-$(pwd)}
export PYTHONPATH=$FASTRIDGE
NATIVE="env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE"
echo "fastridge at $(git -C "$FASTRIDGE" rev-parse --short HEAD), load $(cut -d' ' -f1-3 /proc/loadavg)"
# 1. M size, 6 alphas, 3 rounds of one timed fit: the speed / memory / agreement
#    targets against scikit-learn, and cv=5 against himalaya's KernelRidgeCV (torch
#    backend, its fastest), returning dual coefficients or, with get_primal_coef(),
#    primal ones, as fastridge's two solutions.
SOLVERS="fastridge-loo-f32 sklearn-loo-f64 fastridge-loo-f32-dual fastridge-kfold5-f32
    fastridge-kfold5-f32-dual himalaya-kernel-torch-f32 himalaya-kernel-primal-torch-f32"
$NATIVE python bench/run.py suite --sizes M --alphas 6 --repeats-large 1 --rounds 3 \
    --solvers $SOLVERS
# 1b. The same LOO comparison with the machine's OpenBLAS settings (AVX2 kernels).
python bench/run.py suite --sizes M --alphas 6 --repeats-large 3 --solvers \
    fastridge-loo-f32 fastridge-loo-f32-dual sklearn-loo-f64
# 2. S size, 6 alphas, 3 rounds of a median of 3.
$NATIVE python bench/run.py suite --sizes S --alphas 6 --repeats 3 --rounds 3 --solvers $SOLVERS
# 3. The full headline problem through `fastridge solve`: data generated once (not
#    timed), all 173,568 targets solved with dual and with primal coefficients,
#    float64 spot checks, files removed.
$NATIVE python bench/headline.py generate
$NATIVE python bench/headline.py solve --solution dual
$NATIVE python bench/headline.py solve
python bench/headline.py clean
# 4. L size, 6 alphas, 2 rounds of one timed fit (scikit-learn does not fit in memory).
$NATIVE python bench/run.py suite --sizes L --alphas 6 --repeats-large 1 --rounds 2 --solvers \
    fastridge-loo-f32 fastridge-loo-f32-dual fastridge-kfold5-f32 fastridge-kfold5-f32-dual \
    himalaya-kernel-torch-f32 himalaya-kernel-primal-torch-f32
