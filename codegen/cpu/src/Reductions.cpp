//===- Reductions.cpp - Sums over rows and over tokens --------------------===//
//
// Parameter gradients sum up to ~10^5 rows, so every sum accumulates in
// double and rounds once to float. Two parallel schedules, both with a fixed
// summation order for a given team size (results reproduce run to run):
//  - many columns: each thread owns column chunks and walks all rows with a
//    stack accumulator (no workspace);
//  - few columns, many rows: each thread sums a contiguous block of rows into
//    a thread-local double row, then the partial rows are added in thread
//    order.
//
//===----------------------------------------------------------------------===//

#include "KernelSupport.h"
#include "sbp/cpu_kernels.h"

namespace sbp {
namespace cpu {
namespace {

using detail::kParallelMinElems;

using detail::kColumnChunk;
using detail::sumColumnChunk;

/// out[j] = sum_r x[r * n + j], accumulated in double.
void sumRows(const float *x, int64_t rows, int64_t n, float *out) {
  if (n <= 0)
    return;
  const int64_t chunks = (n + kColumnChunk - 1) / kColumnChunk;
  const int threads = detail::maxThreads();
  const bool parallel = rows * n >= kParallelMinElems && threads > 1;
  if (!parallel || chunks >= 2 * threads || rows < 4 * threads) {
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t c0 = c * kColumnChunk;
      const int64_t c1 = c0 + kColumnChunk < n ? c0 + kColumnChunk : n;
      sumColumnChunk(x, rows, n, c0, c1, 1.0, out);
    }
    return;
  }
  const double *parts[detail::kMaxThreads];
#pragma omp parallel num_threads(threads)
  {
    const int t = detail::threadNum(), nt = detail::numThreads();
    int64_t r0, r1;
    detail::partition(rows, nt, t, r0, r1);
    double *acc = detail::threadWorkspace<double>(size_t(n));
    for (int64_t j = 0; j < n; ++j)
      acc[j] = 0.0;
    for (int64_t r = r0; r < r1; ++r) {
      const float *xr = x + r * n;
#pragma omp simd
      for (int64_t j = 0; j < n; ++j)
        acc[j] += double(xr[j]);
    }
    parts[t] = acc;
#pragma omp barrier
#pragma omp for schedule(static)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0.0;
      for (int p = 0; p < nt; ++p)
        s += parts[p][j];
      out[j] = float(s);
    }
  }
}

} // namespace

void bias_grad(const float *dy, float *dbias, int64_t rows, int64_t n) {
  sumRows(dy, rows, n, dbias);
}

void pos_grad(const float *dy, float *dpos, int64_t B, int64_t T, int64_t D) {
  sumRows(dy, B, T * D, dpos);
}

void mean_tokens(const float *x, float *y, int64_t B, int64_t T, int64_t D) {
  const int64_t chunks = (D + kColumnChunk - 1) / kColumnChunk;
  const double scale = T > 0 ? 1.0 / double(T) : 0.0;
#pragma omp parallel for collapse(2)                                           \
    schedule(static) if (B * T * D >= kParallelMinElems)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < chunks; ++c) {
      const int64_t c0 = c * kColumnChunk;
      const int64_t c1 = c0 + kColumnChunk < D ? c0 + kColumnChunk : D;
      sumColumnChunk(x + b * T * D, T, D, c0, c1, scale, y + b * D);
    }
}

void mean_tokens_grad(const float *dy, float *dx, int64_t B, int64_t T,
                      int64_t D) {
  const float t = float(T);
  const int64_t rows = B * T;
#pragma omp parallel for schedule(static) if (rows * D >= kParallelMinElems)
  for (int64_t r = 0; r < rows; ++r) {
    const float *g = dy + (r / T) * D;
    float *out = dx + r * D;
#pragma omp simd
    for (int64_t j = 0; j < D; ++j)
      out[j] = g[j] / t;
  }
}

} // namespace cpu
} // namespace sbp
