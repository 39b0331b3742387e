//===- fused_support.h - scalar functions of generated fused loops -*- C++ -*-===//
//
// The CPU twin of <sbp/fused_support.cuh>: the fusion groups that sbpc
// generates as loops in a CPU trainer call these for the fusible ops.
//
//===----------------------------------------------------------------------===//
#ifndef SBP_FUSED_SUPPORT_H
#define SBP_FUSED_SUPPORT_H

#include <cmath>
#include <cstdint>
#include <vector>

namespace sbp {
namespace fused {

/// Phi(x) = erfc(-x / sqrt 2) / 2: no 1 + erf cancellation for x < 0.
inline float normal_cdf(float x) { return 0.5f * std::erfc(x * -0.70710678118654752440f); }
/// Exact (erf) GELU, as timm's nn.GELU: x Phi(x).
inline float gelu(float x) { return x * normal_cdf(x); }
/// d/dx [x Phi(x)] dy = (Phi(x) + x phi(x)) dy.
inline float gelu_grad(float x, float dy) {
  return dy * (normal_cdf(x) + x * 0.398942280401432678f * std::exp(-0.5f * x * x));
}
inline float relu(float x) { return x > 0.0f ? x : 0.0f; }
inline float relu_grad(float x, float dy) { return x > 0.0f ? dy : 0.0f; }

/// The inverse of an index list: inv[t] = k where idx[k] == t, -1 for
/// dropped tokens (the runtime's lists are ascending and unique, -1-padded
/// at the end).
inline std::vector<int32_t> keep_map(const int32_t *idx, int64_t K, int64_t T) {
  std::vector<int32_t> inv(size_t(T), -1);
  for (int64_t k = 0; k < K; ++k)
    if (idx[k] >= 0 && idx[k] < T)
      inv[size_t(idx[k])] = int32_t(k);
  return inv;
}
/// The number of valid entries: the kept rows past them are padding.
inline int64_t valid_count(const int32_t *idx, int64_t K, int64_t T) {
  int64_t n = 0;
  for (int64_t k = 0; k < K; ++k)
    n += idx[k] >= 0 && idx[k] < T;
  return n;
}

} // namespace fused
} // namespace sbp

#endif // SBP_FUSED_SUPPORT_H
