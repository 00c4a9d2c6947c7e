// fastridge fused epilogues (CUDA). Reference twins: fastridge/_kernels.py.
// Host build of the same arithmetic: epilogue_host.cpp. See README.md.
//
// Compiled at run time by cupy (NVRTC; fastridge/_kernels.py inlines
// epilogue.cuh) and by kernels/check.sh with nvcc -Werror for CI.
//
// Leave-one-out epilogue, per target chunk and alpha a, in two launches on one
// stream, one pass over E:
//   loo_partial   grid (ceil(n_cols / 32), n_split), block (32, 8):
//                 partial[s, t] = sum over rows i of split s of (E[i, t] w[i])^2
//   loo_finalize  grid ceil(n_cols / 256), block 256:
//                 score[t] = -sum_s partial[s, t] / n_samples, stored in scores[a]
//                 if asked, and the running per-target best alpha updated.
//   loo_keep      (optional) keep[:, t] = E[:, t] * scale for targets whose best
//                 alpha became a (scale = 1 / alpha keeps the dual coefficients).
// GCV squared-error sums, per target chunk, every alpha in one pass over UtY:
//   gcv_partial   grid (ceil(n_cols / 32), n_split, ceil(n_alphas / 8)), block (32, 8)
//   gcv_finalize  grid ceil(n_cols / 256), n_alphas), block 256.
#include "epilogue.cuh"

namespace fastridge {

template <typename T>
__global__ void __launch_bounds__(FR_BLOCK_COLS* FR_BLOCK_ROWS)
    loo_partial(const T* __restrict__ E, long long ld_e, const T* __restrict__ w,
                long long n_rows, long long n_cols, int n_split, double* __restrict__ partial) {
  // lanes[column][row lane]: one column's lane sums are contiguous for reduce_lanes.
  __shared__ double lanes[FR_BLOCK_COLS][FR_BLOCK_ROWS];
  const int tx = threadIdx.x;
  const int ty = threadIdx.y;
  const long long col = static_cast<long long>(blockIdx.x) * FR_BLOCK_COLS + tx;
  const int s = blockIdx.y;
  long long row_begin;
  long long row_end;
  split_rows(n_rows, n_split, s, &row_begin, &row_end);
  double acc = 0.0;
  if (col < n_cols) acc = loo_lane_sum(E, ld_e, w, col, row_begin + ty, row_end, FR_BLOCK_ROWS);
  lanes[tx][ty] = acc;
  __syncthreads();
  if (ty == 0 && col < n_cols) partial[s * n_cols + col] = reduce_lanes(lanes[tx]);
}

__global__ void __launch_bounds__(FR_FINALIZE_THREADS)
    loo_finalize(const double* __restrict__ partial, long long n_cols, int n_split,
                 long long n_samples, int a, int store_scores, double* __restrict__ scores_row,
                 double* __restrict__ best_score, long long* __restrict__ best_index) {
  const long long col = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (col < n_cols) {
    loo_finalize_column(partial, n_cols, n_split, col, n_samples, a,
                        store_scores ? scores_row : nullptr, best_score, best_index);
  }
}

template <typename T>
__global__ void __launch_bounds__(FR_BLOCK_COLS* FR_BLOCK_ROWS)
    loo_keep(const T* __restrict__ E, long long ld_e, T* __restrict__ keep, long long ld_k,
             long long n_rows, long long n_cols, const long long* __restrict__ best_index, int a,
             T scale) {
  const long long col = static_cast<long long>(blockIdx.x) * FR_BLOCK_COLS + threadIdx.x;
  // Targets whose best alpha did not change read nothing more of E.
  if (col >= n_cols || best_index[col] != a) return;
  const long long step = static_cast<long long>(gridDim.y) * FR_BLOCK_ROWS;
  for (long long row = static_cast<long long>(blockIdx.y) * FR_BLOCK_ROWS + threadIdx.y;
       row < n_rows; row += step) {
    keep_element(E, ld_e, keep, ld_k, row, col, best_index, a, scale);
  }
}

template <typename T>
__global__ void __launch_bounds__(FR_BLOCK_COLS* FR_BLOCK_ROWS)
    gcv_partial(const T* __restrict__ UtY, long long ld_u, const T* __restrict__ shrink_sq,
                long long ld_s, long long rank, long long n_cols, int n_alphas, int n_split,
                double* __restrict__ partial) {
  __shared__ double lanes[FR_GCV_ALPHAS][FR_BLOCK_COLS][FR_BLOCK_ROWS];
  const int tx = threadIdx.x;
  const int ty = threadIdx.y;
  const long long col = static_cast<long long>(blockIdx.x) * FR_BLOCK_COLS + tx;
  const int s = blockIdx.y;
  const int a_begin = blockIdx.z * FR_GCV_ALPHAS;
  const int n_a = min(FR_GCV_ALPHAS, n_alphas - a_begin);
  long long row_begin;
  long long row_end;
  split_rows(rank, n_split, s, &row_begin, &row_end);
  double acc[FR_GCV_ALPHAS];
  if (col < n_cols) {
    gcv_lane_sums(UtY, ld_u, shrink_sq, ld_s, a_begin, n_a, col, row_begin + ty, row_end,
                  FR_BLOCK_ROWS, acc);
  } else {
    FR_UNROLL
    for (int k = 0; k < FR_GCV_ALPHAS; ++k) acc[k] = 0.0;
  }
  FR_UNROLL
  for (int k = 0; k < FR_GCV_ALPHAS; ++k) lanes[k][tx][ty] = acc[k];
  __syncthreads();
  if (col < n_cols) {
    // Row lane ty reduces alpha a_begin + ty (FR_BLOCK_ROWS == FR_GCV_ALPHAS).
    const int k = ty;
    if (k < n_a) {
      partial[(static_cast<long long>(s) * n_alphas + a_begin + k) * n_cols + col] =
          reduce_lanes(lanes[k][tx]);
    }
  }
}

__global__ void __launch_bounds__(FR_FINALIZE_THREADS)
    gcv_finalize(const double* __restrict__ partial, int n_split, int n_alphas, long long n_cols,
                 double* __restrict__ out) {
  const long long col = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (col < n_cols) gcv_finalize_column(partial, n_split, n_alphas, n_cols, blockIdx.y, col, out);
}

static_assert(FR_BLOCK_ROWS == FR_GCV_ALPHAS, "gcv_partial reduces one alpha per row lane");

// Explicit instantiations: the names fastridge/_kernels.py asks NVRTC for, and
// what nvcc compiles (and warns about) in kernels/check.sh.
template __global__ void loo_partial<float>(const float*, long long, const float*, long long,
                                            long long, int, double*);
template __global__ void loo_partial<double>(const double*, long long, const double*, long long,
                                             long long, int, double*);
template __global__ void loo_keep<float>(const float*, long long, float*, long long, long long,
                                         long long, const long long*, int, float);
template __global__ void loo_keep<double>(const double*, long long, double*, long long, long long,
                                          long long, const long long*, int, double);
template __global__ void gcv_partial<float>(const float*, long long, const float*, long long,
                                            long long, long long, int, int, double*);
template __global__ void gcv_partial<double>(const double*, long long, const double*, long long,
                                             long long, long long, int, int, double*);

}  // namespace fastridge
