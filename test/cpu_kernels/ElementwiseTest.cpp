//===- ElementwiseTest.cpp - Pointwise and broadcast kernels --------------===//

#include "TestSupport.h"
#include "sbp/cpu_kernels.h"

namespace sbp::cpu::test {
namespace {

// Sizes: an awkward small one (serial path) and one past the parallel
// threshold (2^15 elements).
constexpr int64_t kRows = 37, kN = 19;
constexpr int64_t kBigRows = 2003, kBigN = 37;

double geluRef(double x) {
  return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0)));
}

TEST(Elementwise, AddAndAddAcc) {
  for (int64_t n : {int64_t(703), kBigRows * kBigN}) {
    Vec a = randomVec(n, 1), b = randomVec(n, 2), out(n, 7.0f);
    forEachTeamSize([&] {
      add(a.data(), b.data(), out.data(), n);
      for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(out[i], a[i] + b[i]) << i;
      Vec acc = a;
      add_acc(acc.data(), b.data(), n);
      for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(acc[i], a[i] + b[i]) << i;
    });
    // In place.
    Vec c = a;
    add(c.data(), b.data(), c.data(), n);
    for (int64_t i = 0; i < n; ++i)
      ASSERT_EQ(c[i], a[i] + b[i]);
  }
}

TEST(Elementwise, BiasAdd) {
  for (auto [rows, n] : {std::pair{kRows, kN}, std::pair{kBigRows, kBigN}}) {
    Vec x = randomVec(rows * n, 3), bias = randomVec(n, 4), y(rows * n, 0.f);
    forEachTeamSize([&] {
      bias_add(x.data(), bias.data(), y.data(), rows, n);
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t j = 0; j < n; ++j)
          ASSERT_EQ(y[r * n + j], x[r * n + j] + bias[j]);
    });
  }
}

TEST(Elementwise, PosAdd) {
  const int64_t B = 3, T = 7, D = 5;
  Vec x = randomVec(B * T * D, 5), pos = randomVec(T * D, 6), y(B * T * D);
  pos_add(x.data(), pos.data(), y.data(), B, T, D);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t d = 0; d < D; ++d) {
        const int64_t i = (b * T + t) * D + d;
        ASSERT_EQ(y[i], x[i] + pos[t * D + d]);
      }
}

TEST(Elementwise, GeluMatchesExactErfForm) {
  for (int64_t n : {int64_t(703), kBigRows * kBigN}) {
    Vec x = randomVec(n, 7, -5.0f, 5.0f), y(n);
    DVec ref(n);
    for (int64_t i = 0; i < n; ++i)
      ref[i] = geluRef(x[i]);
    forEachTeamSize([&] {
      gelu(x.data(), y.data(), n);
      EXPECT_TRUE(allClose(y, ref, 1e-5, 1e-6));
    });
  }
  // Reference points of torch.nn.GELU() (exact, erf form).
  const float pts[] = {-3.0f, -1.0f, 0.0f, 0.5f, 2.0f};
  const float want[] = {-0.0040496886f, -0.15865526f, 0.0f, 0.34573123f,
                        1.9544997f};
  float got[5];
  gelu(pts, got, 5);
  for (int i = 0; i < 5; ++i)
    EXPECT_NEAR(got[i], want[i], 1e-6f) << pts[i];
}

// The erf form, not the tanh approximation, and with relative accuracy in
// the negative tail, where 1 + erf(x / sqrt 2) cancels in float.
TEST(Elementwise, GeluAndGradAccurateOverTheWholeRange) {
  Vec x;
  for (double v = -13.0; v <= 13.0; v += 1.0 / 256.0 + 1e-6)
    x.push_back(float(v));
  const int64_t n = int64_t(x.size());
  Vec y(n), dx(n), ones(n, 1.0f);
  gelu(x.data(), y.data(), n);
  gelu_grad(x.data(), ones.data(), dx.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i];
    const double cdf = 0.5 * std::erfc(-v / std::sqrt(2.0));
    const double want = v * cdf;
    const double dwant =
        cdf + v * std::exp(-0.5 * v * v) / std::sqrt(2.0 * M_PI);
    ASSERT_NEAR(y[i], want, 3e-5 * std::fabs(want) + 1e-37) << "x = " << v;
    ASSERT_NEAR(dx[i], dwant, 3e-5 * std::fabs(dwant) + 1e-6) << "x = " << v;
    if (v < -4.0) // relative, where an erf-based float formula has none left
      ASSERT_NEAR(dx[i], dwant, 3e-5 * std::fabs(dwant) + 1e-37) << "x = " << v;
  }
  // The tanh approximation differs by ~1e-3 around |x| = 2: make sure we
  // are not it.
  const float two = 2.0f;
  float g;
  gelu(&two, &g, 1);
  EXPECT_NEAR(g, 2.0 * 0.5 * std::erfc(-2.0 / std::sqrt(2.0)), 1e-6);
}

TEST(Elementwise, GeluGradFiniteDifferences) {
  const int64_t n = kRows * kN;
  Vec x = randomVec(n, 8, -4.0f, 4.0f), dy = randomVec(n, 9), dx(n);
  gelu_grad(x.data(), dy.data(), dx.data(), n);
  const DVec w = toDouble(dy);
  DVec fd = numericGrad(
      [&](const DVec &p) {
        double L = 0.0;
        for (int64_t i = 0; i < n; ++i)
          L += w[i] * geluRef(p[i]);
        return L;
      },
      toDouble(x));
  EXPECT_TRUE(gradClose(dx, fd));
  // Elementwise too, and on the parallel path.
  EXPECT_TRUE(allClose(dx, fd, 1e-4, 1e-6));
  const int64_t big = kBigRows * kBigN;
  Vec xb = randomVec(big, 10, -4.0f, 4.0f), dyb = randomVec(big, 11), dxb(big);
  forEachTeamSize([&] {
    gelu_grad(xb.data(), dyb.data(), dxb.data(), big);
    for (int64_t i = 0; i < big; ++i) {
      const double v = xb[i];
      const double d = 0.5 * (1.0 + std::erf(v / std::sqrt(2.0))) +
                       v * std::exp(-0.5 * v * v) / std::sqrt(2.0 * M_PI);
      ASSERT_NEAR(dxb[i], dyb[i] * d, 1e-5 * std::fabs(dyb[i] * d) + 1e-6);
    }
  });
}

TEST(Elementwise, ReluAndGrad) {
  const int64_t n = kRows * kN;
  Vec x = randomVec(n, 12), dy = randomVec(n, 13), y(n), dx(n);
  // Keep finite differences away from the kink.
  for (float &v : x)
    if (std::fabs(v) < 1e-2f)
      v = 0.5f;
  relu(x.data(), y.data(), n);
  relu_grad(x.data(), dy.data(), dx.data(), n);
  int positives = 0;
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(y[i], x[i] > 0 ? x[i] : 0.0f);
    positives += x[i] > 0;
  }
  ASSERT_GT(positives, 0);
  ASSERT_LT(positives, n);
  const DVec w = toDouble(dy);
  DVec fd = numericGrad(
      [&](const DVec &p) {
        double L = 0.0;
        for (int64_t i = 0; i < n; ++i)
          L += w[i] * std::max(p[i], 0.0);
        return L;
      },
      toDouble(x));
  EXPECT_TRUE(gradClose(dx, fd));
  EXPECT_TRUE(allClose(dx, fd, 1e-6, 1e-6));
  // x == 0 has zero gradient (x > 0 gate), as torch.relu's backward.
  const float zero = 0.0f, one = 1.0f;
  float g = 5.0f;
  relu_grad(&zero, &one, &g, 1);
  EXPECT_EQ(g, 0.0f);
}

TEST(Elementwise, FillAndCopy) {
  for (int64_t n : {int64_t(5), int64_t(100001)}) {
    Vec x = randomVec(n, 14), y(n, -1.0f);
    forEachTeamSize([&] {
      fill(y.data(), 3.25f, n);
      for (float v : y)
        ASSERT_EQ(v, 3.25f);
      copy(x.data(), y.data(), n);
      ASSERT_EQ(x, y);
    });
  }
}

} // namespace
} // namespace sbp::cpu::test
