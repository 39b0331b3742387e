//===- fused_support.h - scalar functions of generated fused loops -*- C++ -*-===//
//
// The CPU twin of <sbp/fused_support.cuh>: the fusion groups that sbpc
// generates as loops in a CPU trainer call these for the fusible ops.
//
//===----------------------------------------------------------------------===//
#ifndef SBP_FUSED_SUPPORT_H
#define SBP_FUSED_SUPPORT_H

#include <cmath>

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

} // namespace fused
} // namespace sbp

#endif // SBP_FUSED_SUPPORT_H
