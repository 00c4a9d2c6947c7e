// Host build of the fused epilogues in epilogue.cu: the same functions of
// epilogue.cuh, called over the same work split (splits x row lanes, lane tree,
// splits summed in order), so on IEEE doubles it gives the bits the kernels give.
// tests/test_kernels.py compiles it into a temporary shared library
//   g++ -std=c++17 -O2 -ffp-contract=off -shared -fPIC epilogue_host.cpp
// loads it with ctypes and compares it with the torch reference twins of
// fastridge/_kernels.py. It is a test instrument, never shipped as a binary.
#include <vector>

#include "epilogue.cuh"

namespace {

using fastridge::split_rows;

template <typename T>
void loo_epilogue(const T* E, long long ld_e, const T* w, long long n_rows, long long n_cols,
                  long long n_samples, int a, int n_split, double* scores_row, double* best_score,
                  long long* best_index) {
  // loo_partial: one block per (column tile, split); here one column at a time.
  std::vector<double> partial(static_cast<size_t>(n_split) * n_cols);
  double lanes[FR_BLOCK_ROWS];
  for (int s = 0; s < n_split; ++s) {
    long long row_begin;
    long long row_end;
    split_rows(n_rows, n_split, s, &row_begin, &row_end);
    for (long long col = 0; col < n_cols; ++col) {
      for (int ty = 0; ty < FR_BLOCK_ROWS; ++ty) {
        lanes[ty] = fastridge::loo_lane_sum(E, ld_e, w, col, row_begin + ty, row_end,
                                            FR_BLOCK_ROWS);
      }
      partial[s * n_cols + col] = fastridge::reduce_lanes(lanes);
    }
  }
  // loo_finalize
  for (long long col = 0; col < n_cols; ++col) {
    fastridge::loo_finalize_column(partial.data(), n_cols, n_split, col, n_samples, a, scores_row,
                                   best_score, best_index);
  }
}

template <typename T>
void loo_keep(const T* E, long long ld_e, T* keep, long long ld_k, long long n_rows,
              long long n_cols, const long long* best_index, int a, T scale) {
  for (long long row = 0; row < n_rows; ++row) {
    for (long long col = 0; col < n_cols; ++col) {
      fastridge::keep_element(E, ld_e, keep, ld_k, row, col, best_index, a, scale);
    }
  }
}

template <typename T>
void gcv_sums(const T* UtY, long long ld_u, const T* shrink_sq, long long ld_s, long long rank,
              long long n_cols, int n_alphas, int n_split, double* out) {
  // gcv_partial: blocks along z cover FR_GCV_ALPHAS alphas each.
  std::vector<double> partial(static_cast<size_t>(n_split) * n_alphas * n_cols);
  double acc[FR_GCV_ALPHAS];
  double lanes[FR_GCV_ALPHAS][FR_BLOCK_ROWS];
  for (int a_begin = 0; a_begin < n_alphas; a_begin += FR_GCV_ALPHAS) {
    const int n_a = n_alphas - a_begin < FR_GCV_ALPHAS ? n_alphas - a_begin : FR_GCV_ALPHAS;
    for (int s = 0; s < n_split; ++s) {
      long long row_begin;
      long long row_end;
      split_rows(rank, n_split, s, &row_begin, &row_end);
      for (long long col = 0; col < n_cols; ++col) {
        for (int ty = 0; ty < FR_BLOCK_ROWS; ++ty) {
          fastridge::gcv_lane_sums(UtY, ld_u, shrink_sq, ld_s, a_begin, n_a, col,
                                   row_begin + ty, row_end, FR_BLOCK_ROWS, acc);
          for (int k = 0; k < FR_GCV_ALPHAS; ++k) lanes[k][ty] = acc[k];
        }
        for (int k = 0; k < n_a; ++k) {
          partial[(static_cast<long long>(s) * n_alphas + a_begin + k) * n_cols + col] =
              fastridge::reduce_lanes(lanes[k]);
        }
      }
    }
  }
  // gcv_finalize
  for (int a = 0; a < n_alphas; ++a) {
    for (long long col = 0; col < n_cols; ++col) {
      fastridge::gcv_finalize_column(partial.data(), n_split, n_alphas, n_cols, a, col, out);
    }
  }
}

}  // namespace

extern "C" {

// scores_row may be null (no score buffer).
void fr_loo_epilogue_f32(const float* E, long long ld_e, const float* w, long long n_rows,
                         long long n_cols, long long n_samples, int a, int n_split,
                         double* scores_row, double* best_score, long long* best_index) {
  loo_epilogue(E, ld_e, w, n_rows, n_cols, n_samples, a, n_split, scores_row, best_score,
               best_index);
}

void fr_loo_epilogue_f64(const double* E, long long ld_e, const double* w, long long n_rows,
                         long long n_cols, long long n_samples, int a, int n_split,
                         double* scores_row, double* best_score, long long* best_index) {
  loo_epilogue(E, ld_e, w, n_rows, n_cols, n_samples, a, n_split, scores_row, best_score,
               best_index);
}

void fr_loo_keep_f32(const float* E, long long ld_e, float* keep, long long ld_k,
                     long long n_rows, long long n_cols, const long long* best_index, int a,
                     float scale) {
  loo_keep(E, ld_e, keep, ld_k, n_rows, n_cols, best_index, a, scale);
}

void fr_loo_keep_f64(const double* E, long long ld_e, double* keep, long long ld_k,
                     long long n_rows, long long n_cols, const long long* best_index, int a,
                     double scale) {
  loo_keep(E, ld_e, keep, ld_k, n_rows, n_cols, best_index, a, scale);
}

void fr_gcv_sums_f32(const float* UtY, long long ld_u, const float* shrink_sq, long long ld_s,
                     long long rank, long long n_cols, int n_alphas, int n_split, double* out) {
  gcv_sums(UtY, ld_u, shrink_sq, ld_s, rank, n_cols, n_alphas, n_split, out);
}

void fr_gcv_sums_f64(const double* UtY, long long ld_u, const double* shrink_sq, long long ld_s,
                     long long rank, long long n_cols, int n_alphas, int n_split, double* out) {
  gcv_sums(UtY, ld_u, shrink_sq, ld_s, rank, n_cols, n_alphas, n_split, out);
}

}  // extern "C"
