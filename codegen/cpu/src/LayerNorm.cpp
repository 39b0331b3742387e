//===- LayerNorm.cpp - LayerNorm forward and backward ---------------------===//
//
// Row statistics are two-pass in float (a shifted mean, then the mean of
// squared deviations: no cancellation, unlike E[x^2] - E[x]^2). The backward
// recomputes them from x, so only x is saved. dgamma and dbeta sum over all
// rows in double: each thread sums a contiguous block of rows into a
// thread-local double workspace, then the partial rows are added in thread
// order (deterministic for a given team size).
//
//===----------------------------------------------------------------------===//

#include "KernelSupport.h"
#include "sbp/cpu_kernels.h"

#include <cmath>

namespace sbp {
namespace cpu {
namespace {

struct RowStats {
  float mean;
  float rstd;
};

RowStats rowStats(const float *x, int64_t n, float eps) {
  // Summing x - x[0] keeps the partial sums at the scale of the spread, not
  // of the mean: a row like 300 +- 1 keeps its digits.
  const float pivot = x[0];
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int64_t j = 0; j < n; ++j)
    sum += x[j] - pivot;
  const float mean = pivot + sum / float(n);
  float sq = 0.0f;
#pragma omp simd reduction(+ : sq)
  for (int64_t j = 0; j < n; ++j) {
    const float d = x[j] - mean;
    sq += d * d;
  }
  return {mean, 1.0f / std::sqrt(sq / float(n) + eps)};
}

} // namespace

void layer_norm(const float *x, const float *gamma, const float *beta, float *y,
                int64_t rows, int64_t n, float eps) {
  if (n <= 0)
    return;
  const bool parallel = rows * n >= detail::kParallelMinElems;
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t r = 0; r < rows; ++r) {
    const float *xr = x + r * n;
    float *yr = y + r * n;
    const RowStats s = rowStats(xr, n, eps);
#pragma omp simd
    for (int64_t j = 0; j < n; ++j)
      yr[j] = (xr[j] - s.mean) * s.rstd * gamma[j] + beta[j];
  }
}

void layer_norm_grad(const float *x, const float *gamma, const float *dy,
                     float *dx, float *dgamma, float *dbeta, int64_t rows,
                     int64_t n, float eps) {
  if (n <= 0)
    return;
  const double *parts[detail::kMaxThreads];
  const bool parallel = rows * n >= detail::kParallelMinElems;
  const float invN = 1.0f / float(n);
#pragma omp parallel num_threads(detail::maxThreads()) if (parallel)
  {
    const int t = detail::threadNum(), nt = detail::numThreads();
    int64_t r0, r1;
    detail::partition(rows, nt, t, r0, r1);
    // [0, n): partial dgamma, [n, 2n): partial dbeta.
    double *acc = detail::threadWorkspace<double>(size_t(2 * n));
    for (int64_t j = 0; j < 2 * n; ++j)
      acc[j] = 0.0;
    double *accGamma = acc, *accBeta = acc + n;
    for (int64_t r = r0; r < r1; ++r) {
      const float *xr = x + r * n;
      const float *dyr = dy + r * n;
      float *dxr = dx + r * n;
      const RowStats s = rowStats(xr, n, eps);
      // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * gamma.
      float sumG = 0.0f, sumGX = 0.0f;
#pragma omp simd reduction(+ : sumG, sumGX)
      for (int64_t j = 0; j < n; ++j) {
        const float xhat = (xr[j] - s.mean) * s.rstd;
        const float g = dyr[j] * gamma[j];
        sumG += g;
        sumGX += g * xhat;
        accGamma[j] += double(dyr[j]) * double(xhat);
        accBeta[j] += double(dyr[j]);
      }
      const float meanG = sumG * invN, meanGX = sumGX * invN;
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) {
        const float xhat = (xr[j] - s.mean) * s.rstd;
        dxr[j] = s.rstd * (dyr[j] * gamma[j] - meanG - xhat * meanGX);
      }
    }
    parts[t] = acc;
#pragma omp barrier
#pragma omp for schedule(static)
    for (int64_t j = 0; j < n; ++j) {
      double sg = 0.0, sb = 0.0;
      for (int p = 0; p < nt; ++p) {
        sg += parts[p][j];
        sb += parts[p][n + j];
      }
      dgamma[j] = float(sg);
      dbeta[j] = float(sb);
    }
  }
}

} // namespace cpu
} // namespace sbp
