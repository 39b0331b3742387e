//===- Elementwise.cpp - Pointwise and broadcast kernels ------------------===//
//
// Memory-bound loops: one parallel-for over the flat range (or over rows for
// broadcasts), vectorised by `omp simd`, serial below kParallelMinElems.
// All of them may run in place (output == an input).
//
//===----------------------------------------------------------------------===//

#include "KernelSupport.h"
#include "VecMath.h"
#include "sbp/cpu_kernels.h"

#include <cstring>

namespace sbp {
namespace cpu {

using detail::kParallelMinElems;

void add(const float *a, const float *b, float *out, int64_t n) {
#pragma omp parallel for simd if (parallel : n >= kParallelMinElems)
  for (int64_t i = 0; i < n; ++i)
    out[i] = a[i] + b[i];
}

void add_acc(float *acc, const float *b, int64_t n) {
#pragma omp parallel for simd if (parallel : n >= kParallelMinElems)
  for (int64_t i = 0; i < n; ++i)
    acc[i] += b[i];
}

void bias_add(const float *x, const float *bias, float *y, int64_t rows,
              int64_t n) {
#pragma omp parallel for schedule(static) if (rows * n >= kParallelMinElems)
  for (int64_t r = 0; r < rows; ++r) {
    const float *xr = x + r * n;
    float *yr = y + r * n;
#pragma omp simd
    for (int64_t j = 0; j < n; ++j)
      yr[j] = xr[j] + bias[j];
  }
}

void pos_add(const float *x, const float *pos, float *y, int64_t B, int64_t T,
             int64_t D) {
  const int64_t rows = B * T;
#pragma omp parallel for schedule(static) if (rows * D >= kParallelMinElems)
  for (int64_t r = 0; r < rows; ++r) {
    const float *xr = x + r * D;
    const float *pr = pos + (r % T) * D;
    float *yr = y + r * D;
#pragma omp simd
    for (int64_t j = 0; j < D; ++j)
      yr[j] = xr[j] + pr[j];
  }
}

// GELU costs an exp or two per element: worth going parallel from a smaller
// size than the plain streams. GELU(x) = x Phi(x), Phi the normal CDF.
constexpr int64_t kMinTranscendental = kParallelMinElems / 8;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;

void gelu(const float *x, float *y, int64_t n) {
#pragma omp parallel for simd if (parallel : n >= kMinTranscendental)
  for (int64_t i = 0; i < n; ++i)
    y[i] = x[i] * detail::normalCdf(x[i]);
}

void gelu_grad(const float *x, const float *dy, float *dx, int64_t n) {
  // d/dx [x Phi(x)] = Phi(x) + x phi(x)
#pragma omp parallel for simd if (parallel : n >= kMinTranscendental)
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    const float pdf = kInvSqrt2Pi * detail::expApprox(-0.5f * v * v);
    dx[i] = dy[i] * (detail::normalCdf(v) + v * pdf);
  }
}

void relu(const float *x, float *y, int64_t n) {
#pragma omp parallel for simd if (parallel : n >= kParallelMinElems)
  for (int64_t i = 0; i < n; ++i)
    y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void relu_grad(const float *x, const float *dy, float *dx, int64_t n) {
#pragma omp parallel for simd if (parallel : n >= kParallelMinElems)
  for (int64_t i = 0; i < n; ++i)
    dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
}

void fill(float *x, float value, int64_t n) {
#pragma omp parallel for simd if (parallel : n >= kParallelMinElems)
  for (int64_t i = 0; i < n; ++i)
    x[i] = value;
}

void copy(const float *x, float *y, int64_t n) {
  if (x == y || n <= 0)
    return;
  if (n < kParallelMinElems) {
    std::memmove(y, x, sizeof(float) * size_t(n));
    return;
  }
  // Overlapping ranges other than x == y are not supported in parallel.
#pragma omp parallel
  {
    int64_t begin, end;
    detail::partition(n, detail::numThreads(), detail::threadNum(), begin, end);
    if (end > begin)
      std::memcpy(y + begin, x + begin, sizeof(float) * size_t(end - begin));
  }
}

// The CPU target computes in float32 only: the conversion kernel is a copy.
void cast(const float *x, float *y, int64_t n) { copy(x, y, n); }

} // namespace cpu
} // namespace sbp
