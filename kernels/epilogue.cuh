// fastridge fused epilogues: the arithmetic shared by the CUDA kernels
// (epilogue.cu) and their host build (epilogue_host.cpp).
//
// Everything that decides a number lives here, in __host__ __device__ inline
// functions, so the host build that the tests run on a CPU executes the same
// operations, in the same order, as the device kernels:
//   - every multiply-add is an explicit fma() (kernels are compiled with
//     --fmad=false, the host build with -ffp-contract=off), so neither compiler
//     may fuse or split an operation on its own;
//   - the work split (rows per split, row lanes per block, the tree reduction
//     over lanes, the order in which splits are summed) is fixed by the
//     constants and helpers below, not by the device.
// With IEEE double arithmetic on both sides the host build and the kernels
// therefore produce the same bits for the same (inputs, n_split).
//
// Accumulation is always in double, also for float32 inputs: for float32 e and
// w the product (double)e * (double)w is exact (24 + 24 bits < 53), so the only
// roundings are those of the double sums. The epilogue is memory bound (one
// fma per loaded element), so the double arithmetic costs nothing measurable
// on data-centre GPUs (see README.md for the model).
//
// Layout: row-major (C-contiguous) blocks as torch allocates them. E is
// (n_samples, n_cols) with row stride ld_e >= n_cols; a "column" is one target.
#ifndef FASTRIDGE_EPILOGUE_CUH
#define FASTRIDGE_EPILOGUE_CUH

#if defined(__CUDACC__)
#define FR_HD __host__ __device__ __forceinline__
#else
// Host build: the same functions as plain inline C++.
#include <cmath>
#define FR_HD inline
using std::fma;
#endif

// Fully unrolled loops keep the per-alpha GCV accumulators in registers. Only
// the device pass sees the pragma (host compilers warn about it).
#if defined(__CUDA_ARCH__)
#define FR_UNROLL _Pragma("unroll")
#else
#define FR_UNROLL
#endif

// Block shape of the partial-sum kernels: FR_BLOCK_COLS consecutive columns
// (one warp, so each row of a tile is one coalesced 128-byte or 256-byte load)
// times FR_BLOCK_ROWS row lanes that stride through the rows of a split.
#define FR_BLOCK_COLS 32
#define FR_BLOCK_ROWS 8
// Most alphas one GCV partial block keeps in registers; more alphas use more
// blocks along grid.z (each re-reads its rows of UtY).
#define FR_GCV_ALPHAS 8
// Threads per block of the per-column finalize and keep kernels.
#define FR_FINALIZE_THREADS 256

namespace fastridge {

// Rows [*begin, *end) of split `s` when n_rows rows are cut into n_split
// contiguous splits of ceil(n_rows / n_split) rows (the last ones may be empty).
FR_HD void split_rows(long long n_rows, int n_split, int s, long long* begin, long long* end) {
  const long long per = (n_rows + n_split - 1) / n_split;
  long long b = per * s;
  long long e = b + per;
  if (b > n_rows) b = n_rows;
  if (e > n_rows) e = n_rows;
  *begin = b;
  *end = e;
}

// acc + (e * w)^2, in double. Exact product for float32 inputs.
template <typename T>
FR_HD double loo_accumulate(double acc, T e, T w) {
  const double x = static_cast<double>(e) * static_cast<double>(w);
  return fma(x, x, acc);
}

// Sum over rows row_begin, row_begin + row_step, ... < row_end of (E[i, col] w[i])^2:
// what one thread (one row lane of one column) of the partial kernel adds up.
template <typename T>
FR_HD double loo_lane_sum(const T* E, long long ld_e, const T* w, long long col,
                          long long row_begin, long long row_end, int row_step) {
  double acc = 0.0;
  for (long long i = row_begin; i < row_end; i += row_step) {
    acc = loo_accumulate(acc, E[i * ld_e + col], w[i]);
  }
  return acc;
}

// Sum of the FR_BLOCK_ROWS row-lane sums of one column, as a fixed tree
// ((v0+v4)+(v2+v6)) + ((v1+v5)+(v3+v7)): one thread does it on the device and
// the host build calls the same function, so the order is the same.
FR_HD double reduce_lanes(double* v) {
  for (int stride = FR_BLOCK_ROWS / 2; stride > 0; stride /= 2) {
    for (int t = 0; t < stride; ++t) v[t] += v[t + stride];
  }
  return v[0];
}

// Most negative finite double; spelled out because NVRTC has no <cfloat>.
#define FR_DBL_LOWEST (-1.7976931348623157e308)

FR_HD bool is_nan(double x) { return x != x; }

// Whether `score` beats `best` when NaN counts as -inf, as in
// fastridge._scoring.select (argmax over scores with NaN -> -inf): a NaN never
// wins, and anything above -inf beats a NaN best.
FR_HD bool beats(double score, double best) {
  if (is_nan(score)) return false;
  if (is_nan(best)) return score >= FR_DBL_LOWEST;
  return score > best;
}

// Per-target alpha selection, one alpha at a time, alphas visited in order:
// the first alpha initialises, later ones replace the best only when strictly
// better, so ties keep the alpha listed first (as scikit-learn's RidgeCV).
FR_HD void update_best(double score, int a, double* best_score, long long* best_index) {
  if (a == 0 || beats(score, *best_score)) {
    *best_score = score;
    *best_index = a;
  }
}

// Everything done once per column after the partial sums: sum the n_split
// partials in split order, turn the sum into the score -s / n_samples
// (scikit-learn RidgeCV's scoring=None), store it, and update the selection.
// partial has shape (n_split, n_cols); scores_row (n_cols,) may be null.
FR_HD void loo_finalize_column(const double* partial, long long n_cols, int n_split,
                               long long col, long long n_samples, int a, double* scores_row,
                               double* best_score, long long* best_index) {
  double s = 0.0;
  for (int k = 0; k < n_split; ++k) s += partial[k * n_cols + col];
  const double score = -s / static_cast<double>(n_samples);
  if (scores_row) scores_row[col] = score;
  update_best(score, a, best_score + col, best_index + col);
}

// keep[i, col] = E[i, col] * scale for a column whose best alpha is now `a`
// (it just became best: alphas are visited in order). With scale = 1 / alpha
// this keeps the best alpha's dual coefficients c = E / alpha (MATH.md).
template <typename T>
FR_HD void keep_element(const T* E, long long ld_e, T* keep, long long ld_k, long long row,
                        long long col, const long long* best_index, int a, T scale) {
  if (best_index[col] == a) keep[row * ld_k + col] = E[row * ld_e + col] * scale;
}

// GCV: acc[k] += shrink_sq[a_begin + k, j] * UtY[j, col]^2 over rows j of one
// lane, for k < n_a (n_a <= FR_GCV_ALPHAS). shrink_sq is (n_alphas, rank) with
// row stride ld_s.
template <typename T>
FR_HD void gcv_lane_sums(const T* UtY, long long ld_u, const T* shrink_sq, long long ld_s,
                         int a_begin, int n_a, long long col, long long row_begin,
                         long long row_end, int row_step, double* acc) {
  FR_UNROLL
  for (int k = 0; k < FR_GCV_ALPHAS; ++k) acc[k] = 0.0;
  for (long long j = row_begin; j < row_end; j += row_step) {
    const double u = static_cast<double>(UtY[j * ld_u + col]);
    const double u2 = u * u;
    // Constant trip count with a guard, not `k < n_a`: a runtime bound would
    // force acc into local memory on the device.
    FR_UNROLL
    for (int k = 0; k < FR_GCV_ALPHAS; ++k) {
      if (k < n_a) {
        acc[k] = fma(static_cast<double>(shrink_sq[(a_begin + k) * ld_s + j]), u2, acc[k]);
      }
    }
  }
}

// out[a, col] = sum over splits of partial[split, a, col], in split order.
// partial has shape (n_split, n_alphas, n_cols), out (n_alphas, n_cols).
FR_HD void gcv_finalize_column(const double* partial, int n_split, int n_alphas, long long n_cols,
                        int a, long long col, double* out) {
  double s = 0.0;
  for (int k = 0; k < n_split; ++k) s += partial[(k * n_alphas + a) * n_cols + col];
  out[a * n_cols + col] = s;
}

}  // namespace fastridge

#endif  // FASTRIDGE_EPILOGUE_CUH
