//===- SoftmaxXent.cpp - Fused softmax cross-entropy loss and gradient ----===//
//
// One pass per row: max (for the shifted exponentials), log-sum-exp, the
// row's loss, its gradient and its argmax. The mean over rows accumulates in
// double.
//
//===----------------------------------------------------------------------===//

#include "KernelSupport.h"
#include "VecMath.h"
#include "sbp/cpu_kernels.h"

#include <cmath>

namespace sbp {
namespace cpu {

int64_t softmax_xent(const float *logits, const int32_t *labels, float *loss,
                     float *dlogits, int64_t B, int64_t C, float dloss_scale) {
  if (B <= 0 || C <= 0) {
    if (loss)
      *loss = 0.0f;
    return 0;
  }
  double lossSum = 0.0;
  int64_t correct = 0;
  const float gradScale = float(double(dloss_scale) / double(B));
#pragma omp parallel for schedule(static) reduction(+ : lossSum, correct)      \
    if (B * C >= detail::kParallelMinElems / 4)
  for (int64_t r = 0; r < B; ++r) {
    const float *z = logits + r * C;
    // First maximum, as torch.argmax; it is also the shift of the exps.
    int64_t best = 0;
    float m = z[0];
    for (int64_t j = 1; j < C; ++j)
      if (z[j] > m) {
        m = z[j];
        best = j;
      }
    const int64_t label = labels[r];
    if (label < 0 || label >= C) {
      // Not a class: no loss, no gradient, not correct (the mean still
      // divides by B). The runtime validates labels; this only keeps a bad
      // one from reading out of bounds.
      if (dlogits)
        for (int64_t j = 0; j < C; ++j)
          dlogits[r * C + j] = 0.0f;
      continue;
    }
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < C; ++j)
      s += detail::expApprox(z[j] - m);
    // loss_r = logsumexp(z) - z[label] = log(s) - (z[label] - m)
    lossSum += double(std::log(s)) - (double(z[label]) - double(m));
    correct += best == label ? 1 : 0;
    if (dlogits) {
      float *g = dlogits + r * C;
      const float invS = 1.0f / s;
#pragma omp simd
      for (int64_t j = 0; j < C; ++j)
        g[j] = detail::expApprox(z[j] - m) * invS * gradScale;
      g[label] -= gradScale;
    }
  }
  if (loss)
    *loss = float(lossSum / double(B));
  return correct;
}

} // namespace cpu
} // namespace sbp
