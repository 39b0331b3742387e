//===- TestSupport.h - Helpers of the CPU kernel tests ----------*- C++ -*-===//
//
// Random inputs, double-precision comparisons, central finite differences,
// and a helper that runs a check under several OpenMP team sizes (so both
// the serial and the parallel code paths, and uneven partitions, are hit).
//
//===----------------------------------------------------------------------===//
#ifndef SBP_TEST_CPU_KERNELS_TEST_SUPPORT_H
#define SBP_TEST_CPU_KERNELS_TEST_SUPPORT_H

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <random>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace sbp::cpu::test {

using Vec = std::vector<float>;
using DVec = std::vector<double>;

/// Uniform values in [lo, hi), never an all-zero tensor.
inline Vec randomVec(size_t n, uint32_t seed, float lo = -2.0f,
                     float hi = 2.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  Vec v(n);
  for (float &x : v)
    x = dist(gen);
  return v;
}

inline DVec toDouble(const Vec &v) { return DVec(v.begin(), v.end()); }

/// |a - b| <= atol + rtol * |b| elementwise, b the double reference.
inline ::testing::AssertionResult allClose(const float *a, const double *b,
                                           size_t n, double rtol, double atol) {
  for (size_t i = 0; i < n; ++i) {
    const double err = std::fabs(double(a[i]) - b[i]);
    if (!(err <= atol + rtol * std::fabs(b[i])))
      return ::testing::AssertionFailure()
             << "element " << i << ": got " << a[i] << ", want " << b[i]
             << " (|err| " << err << ")";
  }
  return ::testing::AssertionSuccess();
}
inline ::testing::AssertionResult allClose(const Vec &a, const DVec &b,
                                           double rtol, double atol) {
  if (a.size() != b.size())
    return ::testing::AssertionFailure()
           << "size " << a.size() << " vs " << b.size();
  return allClose(a.data(), b.data(), a.size(), rtol, atol);
}

/// max|g - ref| / max|ref| < tol: the gradient check metric. A NaN anywhere
/// (e.g. an element the kernel never wrote over its NaN poison) fails.
inline ::testing::AssertionResult gradClose(const Vec &g, const DVec &ref,
                                            double tol = 1e-3) {
  if (g.size() != ref.size())
    return ::testing::AssertionFailure()
           << "size " << g.size() << " vs " << ref.size();
  double maxRef = 0.0, maxErr = 0.0;
  size_t worst = 0;
  for (size_t i = 0; i < g.size(); ++i) {
    maxRef = std::max(maxRef, std::fabs(ref[i]));
    const double err = std::fabs(double(g[i]) - ref[i]);
    if (std::isnan(err))
      return ::testing::AssertionFailure()
             << "element " << i << ": got " << g[i] << ", want " << ref[i];
    if (!(err <= maxErr)) {
      maxErr = err;
      worst = i;
    }
  }
  if (maxRef == 0.0)
    return ::testing::AssertionFailure() << "reference gradient is all zero";
  if (!(maxErr / maxRef < tol))
    return ::testing::AssertionFailure()
           << "relative error " << maxErr / maxRef << " at " << worst
           << ": got " << g[worst] << ", want " << ref[worst];
  return ::testing::AssertionSuccess();
}

/// Central differences of a scalar double function of p.
inline DVec numericGrad(const std::function<double(const DVec &)> &loss, DVec p,
                        double h = 1e-5) {
  DVec g(p.size());
  for (size_t i = 0; i < p.size(); ++i) {
    const double saved = p[i];
    p[i] = saved + h;
    const double up = loss(p);
    p[i] = saved - h;
    const double down = loss(p);
    p[i] = saved;
    g[i] = (up - down) / (2.0 * h);
  }
  return g;
}

inline double dotD(const DVec &a, const DVec &b) {
  double s = 0.0;
  for (size_t i = 0; i < a.size(); ++i)
    s += a[i] * b[i];
  return s;
}

/// Runs `check` with OpenMP teams of 1, 2 and 3 threads (3 oversubscribes a
/// 2-core machine on purpose: uneven static partitions).
inline void forEachTeamSize(const std::function<void()> &check) {
#ifdef _OPENMP
  const int saved = omp_get_max_threads();
  for (int threads : {1, 2, 3}) {
    SCOPED_TRACE(::testing::Message() << threads << " OpenMP threads");
    omp_set_num_threads(threads);
    check();
  }
  omp_set_num_threads(saved);
#else
  check();
#endif
}

} // namespace sbp::cpu::test

#endif // SBP_TEST_CPU_KERNELS_TEST_SUPPORT_H
