#!/usr/bin/env bash
# Compile every CUDA source in kernels/ with nvcc and fail on any error or
# warning (front end, host compiler, ptxas), for the architectures in
# FASTRIDGE_CUDA_ARCHS (default: 80 90, i.e. A100 and H100). Also compiles the
# test instruments (epilogue_host.cpp, epilogue_emulate.cpp) with the host
# compiler under -Werror, since the tests run them. Needs nvcc (no GPU); CI calls it, tests/test_kernels.py too.
#
# Usage: kernels/check.sh            (from anywhere)
#        FASTRIDGE_CUDA_ARCHS="80 90 120" kernels/check.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
archs="${FASTRIDGE_CUDA_ARCHS:-80 90}"
nvcc="${NVCC:-nvcc}"
cxx="${CXX:-g++}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

gencode=()
for arch in $archs; do
  gencode+=(-gencode "arch=compute_${arch},code=sm_${arch}")
done

status=0
for src in "$here"/*.cu; do
  name="$(basename "$src" .cu)"
  # --fmad=false as at run time (fastridge/_kernels.py): every fma is explicit.
  # -warn-spills / -warn-lmem-usage: a spill or local-memory array in these
  # memory-bound loops is a bug, so it fails the check like any warning.
  cmd=("$nvcc" -std=c++17 -O3 --fmad=false "${gencode[@]}"
       --Werror all-warnings
       -Xptxas -warn-spills,-warn-lmem-usage,--warning-as-error
       -Xcompiler -Wall,-Wextra,-Werror
       -c "$src" -o "$out/$name.o")
  echo "+ ${cmd[*]}"
  if ! "${cmd[@]}"; then
    echo "FAILED: $src" >&2
    status=1
  fi
done

# The test instruments (host build, kernel emulator) under the same -Werror.
for src in "$here"/*.cpp; do
  name="$(basename "$src" .cpp)"
  cmd=("$cxx" -std=c++20 -O2 -ffp-contract=off -pthread -Wall -Wextra -Werror
       -shared -fPIC "$src" -o "$out/lib$name.so")
  echo "+ ${cmd[*]}"
  if ! "${cmd[@]}"; then
    echo "FAILED: $src" >&2
    status=1
  fi
done

if [ "$status" -eq 0 ]; then
  echo "kernels/check.sh: all sources compiled without warnings (archs: $archs)"
fi
exit "$status"
