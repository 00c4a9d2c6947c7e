// CPU emulation of the CUDA kernels in epilogue.cu: the kernel bodies themselves
// (index arithmetic, bounds guards, shared-memory layout, __syncthreads), not a
// re-implementation. A tiny shim maps the CUDA built-ins to C++: blocks run one
// at a time, one std::thread per CUDA thread of a block, __shared__ arrays are
// function statics (the running block's threads share them), __syncthreads is
// a std::barrier.
//
// tests/test_kernels.py compiles it into a temporary shared library and
// substitutes it for cupy's launcher, so fastridge/_kernels.py's CUDA path
// (grid sizes, workspaces, argument order and types) runs end to end on CPU
// tensors:
//   g++ -std=c++20 -O1 -ffp-contract=off -pthread -shared -fPIC epilogue_emulate.cpp
// Test instrument only, never shipped as a binary.
#include <algorithm>
#include <barrier>
#include <thread>
#include <vector>

namespace {

struct dim3 {
  unsigned x = 1, y = 1, z = 1;
};

thread_local dim3 threadIdx;
thread_local dim3 blockIdx;
dim3 blockDim;
dim3 gridDim;
std::barrier<>* block_barrier = nullptr;

void __syncthreads() { block_barrier->arrive_and_wait(); }

using std::min;

// Runs `call` as kernel<<<grid, block>>>: one std::thread per CUDA thread of a
// block, all walking the blocks in the same order and meeting at a barrier after
// each, so one block runs at a time and its __shared__ statics are its own.
template <class F>
void launch(dim3 grid, dim3 block, F call) {
  gridDim = grid;
  blockDim = block;
  const unsigned n_threads = block.x * block.y * block.z;
  std::barrier<> sync(n_threads);
  std::barrier<> block_done(n_threads);
  block_barrier = &sync;
  std::vector<std::thread> threads;
  threads.reserve(n_threads);
  for (unsigned tz = 0; tz < block.z; ++tz) {
    for (unsigned ty = 0; ty < block.y; ++ty) {
      for (unsigned tx = 0; tx < block.x; ++tx) {
        threads.emplace_back([=, &block_done] {
          threadIdx = dim3{tx, ty, tz};
          for (unsigned bz = 0; bz < grid.z; ++bz) {
            for (unsigned by = 0; by < grid.y; ++by) {
              for (unsigned bx = 0; bx < grid.x; ++bx) {
                blockIdx = dim3{bx, by, bz};
                call();  // may return early, as a CUDA thread may
                block_done.arrive_and_wait();
              }
            }
          }
        });
      }
    }
  }
  for (auto& t : threads) t.join();
}

}  // namespace

#define __global__
#define __launch_bounds__(...)
#define __shared__ static
#include "epilogue.cu"

#define EMU_GRID unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz
#define EMU_DIMS dim3{gx, gy, gz}, dim3{bx, by, bz}

extern "C" {

void emu_loo_partial_float(EMU_GRID, const float* E, long long ld_e, const float* w,
                           long long n_rows, long long n_cols, int n_split, double* partial) {
  launch(EMU_DIMS, [=] { fastridge::loo_partial<float>(E, ld_e, w, n_rows, n_cols, n_split,
                                                       partial); });
}

void emu_loo_partial_double(EMU_GRID, const double* E, long long ld_e, const double* w,
                            long long n_rows, long long n_cols, int n_split, double* partial) {
  launch(EMU_DIMS, [=] { fastridge::loo_partial<double>(E, ld_e, w, n_rows, n_cols, n_split,
                                                        partial); });
}

void emu_loo_finalize(EMU_GRID, const double* partial, long long n_cols, int n_split,
                      long long n_samples, int a, int store_scores, double* scores_row,
                      double* best_score, long long* best_index) {
  launch(EMU_DIMS, [=] {
    fastridge::loo_finalize(partial, n_cols, n_split, n_samples, a, store_scores, scores_row,
                            best_score, best_index);
  });
}

void emu_loo_keep_float(EMU_GRID, const float* E, long long ld_e, float* keep, long long ld_k,
                        long long n_rows, long long n_cols, const long long* best_index, int a,
                        float scale) {
  launch(EMU_DIMS, [=] { fastridge::loo_keep<float>(E, ld_e, keep, ld_k, n_rows, n_cols,
                                                    best_index, a, scale); });
}

void emu_loo_keep_double(EMU_GRID, const double* E, long long ld_e, double* keep, long long ld_k,
                         long long n_rows, long long n_cols, const long long* best_index, int a,
                         double scale) {
  launch(EMU_DIMS, [=] { fastridge::loo_keep<double>(E, ld_e, keep, ld_k, n_rows, n_cols,
                                                     best_index, a, scale); });
}

void emu_gcv_partial_float(EMU_GRID, const float* UtY, long long ld_u, const float* shrink_sq,
                           long long ld_s, long long rank, long long n_cols, int n_alphas,
                           int n_split, double* partial) {
  launch(EMU_DIMS, [=] { fastridge::gcv_partial<float>(UtY, ld_u, shrink_sq, ld_s, rank, n_cols,
                                                       n_alphas, n_split, partial); });
}

void emu_gcv_partial_double(EMU_GRID, const double* UtY, long long ld_u, const double* shrink_sq,
                            long long ld_s, long long rank, long long n_cols, int n_alphas,
                            int n_split, double* partial) {
  launch(EMU_DIMS, [=] { fastridge::gcv_partial<double>(UtY, ld_u, shrink_sq, ld_s, rank, n_cols,
                                                        n_alphas, n_split, partial); });
}

void emu_gcv_finalize(EMU_GRID, const double* partial, int n_split, int n_alphas, long long n_cols,
                      double* out) {
  launch(EMU_DIMS, [=] { fastridge::gcv_finalize(partial, n_split, n_alphas, n_cols, out); });
}

}  // extern "C"
