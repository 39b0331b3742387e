//===- DropPath.cpp - stochastic depth: whole samples scaled or zeroed ----===//
//
// The kept-sample list (ascending, -1 padded) becomes one factor per sample
// first, so that the element loop reads a factor instead of searching.
//
//===----------------------------------------------------------------------===//

#include "KernelSupport.h"
#include "sbp/cpu_kernels.h"

namespace sbp {
namespace cpu {

void drop_path(const float *x, const int32_t *keep, float *y, int64_t batch, int64_t kept, int64_t n,
               float scale) {
  float *factor = detail::threadWorkspace<float>(size_t(batch > 0 ? batch : 1));
  for (int64_t b = 0; b < batch; ++b)
    factor[b] = 0.0f;
  for (int64_t k = 0; k < kept; ++k)
    if (keep[k] >= 0 && keep[k] < batch)
      factor[keep[k]] = scale;
#pragma omp parallel for schedule(static) if (batch * n >= detail::kParallelMinElems)
  for (int64_t b = 0; b < batch; ++b) {
    const float f = factor[b];
#pragma omp simd
    for (int64_t j = 0; j < n; ++j)
      y[b * n + j] = x[b * n + j] * f;
  }
}

} // namespace cpu
} // namespace sbp
