//===- Bf16TestSupport.h - Helpers of the bf16 kernel tests -----*- CUDA -*-===//
//
// Host-side bfloat16 (round-to-nearest-even, independent of cuda_bf16.h's
// conversions, so that the cast kernel is checked against an independent
// rounding), device tensors of float or __nv_bfloat16 filled from and read
// back as float vectors, and the max-norm comparison of the bf16 tests:
// max|got - want| / max|want|, with any NaN or infinity mismatch a failure
// (outputs are NaN-poisoned before each call, so a missed element fails).
//
//===----------------------------------------------------------------------===//
#ifndef SBP_TEST_CUDA_KERNELS_BF16_TEST_SUPPORT_H
#define SBP_TEST_CUDA_KERNELS_BF16_TEST_SUPPORT_H

#include "CudaTestSupport.h"

#include <cuda_bf16.h>

#include <limits>
#include <type_traits>

namespace sbp::cuda::test {

/// float -> bf16 bits, round-to-nearest-even; NaN -> a quiet NaN of the
/// same sign. Overflow rounds to infinity (the carry runs into the exponent).
inline uint16_t bf16BitsRne(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  if (std::isnan(f))
    return uint16_t((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
inline float bf16BitsToFloat(uint16_t b) {
  const uint32_t u = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}
/// The float nearest to f with a bf16 representation (ties to even).
inline float roundBf16(float f) { return bf16BitsToFloat(bf16BitsRne(f)); }
inline Vec roundedBf16(Vec v) {
  for (float &x : v)
    x = roundBf16(x);
  return v;
}
inline uint16_t bitsOf(__nv_bfloat16 x) { return __nv_bfloat16_raw(x).x; }
inline __nv_bfloat16 bf16FromBits(uint16_t u) {
  __nv_bfloat16_raw r;
  r.x = u;
  return __nv_bfloat16(r);
}

/// Random values already representable in bf16.
inline Vec randomBf16Vec(size_t n, uint32_t seed, float lo = -2.0f,
                         float hi = 2.0f) {
  return roundedBf16(randomVec(n, seed, lo, hi));
}

/// A device tensor of T (float or __nv_bfloat16) seen from the host as
/// floats: upload() rounds to T (nearest even), download() widens exactly.
/// `offset` elements of slack in front misalign the data pointer (1 bf16 =
/// 2 bytes: the scalar paths; 4 bf16 = 8 bytes: the 4-wide paths).
template <class T> class Tensor {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, __nv_bfloat16>);

public:
  /// NaN-filled.
  explicit Tensor(size_t n, size_t offset = 0) : a_(n, offset) { poison(); }
  Tensor(const Vec &host, size_t offset = 0) : a_(host.size(), offset) {
    upload(host);
  }

  T *get() const { return a_.get(); }
  operator T *() const { return a_.get(); }
  size_t size() const { return a_.size(); }

  void upload(const Vec &host) {
    if constexpr (std::is_same_v<T, float>) {
      a_.upload(host);
    } else {
      std::vector<T> b(host.size());
      for (size_t i = 0; i < host.size(); ++i)
        b[i] = bf16FromBits(bf16BitsRne(host[i]));
      a_.upload(b);
    }
  }
  Vec download() const {
    if constexpr (std::is_same_v<T, float>) {
      return a_.download();
    } else {
      const std::vector<T> b = a_.download();
      Vec out(b.size());
      for (size_t i = 0; i < b.size(); ++i)
        out[i] = bf16BitsToFloat(bitsOf(b[i]));
      return out;
    }
  }
  /// The raw bits (bf16: 16-bit patterns).
  std::vector<uint32_t> bits() const {
    const std::vector<T> b = a_.download();
    std::vector<uint32_t> out(b.size());
    for (size_t i = 0; i < b.size(); ++i) {
      if constexpr (std::is_same_v<T, float>)
        std::memcpy(&out[i], &b[i], sizeof(float));
      else
        out[i] = bitsOf(b[i]);
    }
    return out;
  }
  void poison() {
    upload(Vec(a_.size(), std::numeric_limits<float>::quiet_NaN()));
  }

private:
  DeviceArray<T> a_;
};
using FTensor = Tensor<float>;
using BTensor = Tensor<__nv_bfloat16>;

/// The values a tensor of T holds for `v` (bf16: rounded).
template <class T> Vec asStored(const Vec &v) {
  if constexpr (std::is_same_v<T, float>)
    return v;
  else
    return roundedBf16(v);
}

/// max|got - want| / max|want| < tol over the finite entries of want; a NaN
/// or infinity in one and not equally in the other fails, as does an
/// all-zero want that got does not match exactly.
inline ::testing::AssertionResult maxRelBelow(const Vec &got, const Vec &want,
                                              double tol) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure()
           << "size " << got.size() << " vs " << want.size();
  double scale = 0.0, worst = 0.0;
  size_t at = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    const bool wn = std::isnan(want[i]), gn = std::isnan(got[i]);
    const bool wi = std::isinf(want[i]), gi = std::isinf(got[i]);
    if (wn != gn || ((wi || gi) && !wn && got[i] != want[i]))
      return ::testing::AssertionFailure()
             << "element " << i << ": got " << got[i] << ", want " << want[i];
    if (wn || wi)
      continue;
    scale = std::max(scale, std::fabs(double(want[i])));
    const double d = std::fabs(double(got[i]) - double(want[i]));
    if (d > worst) {
      worst = d;
      at = i;
    }
  }
  const double rel = scale > 0.0 ? worst / scale : (worst == 0.0 ? 0.0 : 1.0);
  if (!(rel < tol))
    return ::testing::AssertionFailure()
           << "max|got - want| / max|want| = " << rel << " >= " << tol
           << " (worst at element " << at << ": got " << got[at] << ", want "
           << want[at] << ")";
  return ::testing::AssertionSuccess();
}

/// Tolerances of the bf16 tests: a bf16 output is within half a bf16 ulp
/// (2^-9 relative) of the float result plus the float kernels' own error;
/// a float output from bf16-representable inputs is the float kernel's.
constexpr double kBf16OutTol = 1e-2;
constexpr double kFloatOutTol = 1e-5;

template <class T> constexpr double outTol(double floatTol = kFloatOutTol) {
  return std::is_same_v<T, float> ? floatTol : kBf16OutTol;
}

inline const char *typeName(const float *) { return "float"; }
inline const char *typeName(const __nv_bfloat16 *) { return "bf16"; }

} // namespace sbp::cuda::test

#endif // SBP_TEST_CUDA_KERNELS_BF16_TEST_SUPPORT_H
