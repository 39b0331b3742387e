//===- ReductionTest.cpp - Sums over rows and tokens ----------------------===//

#include "TestSupport.h"
#include "sbp/cpu_kernels.h"

#include <limits>
#include <tuple>

namespace sbp::cpu::test {
namespace {

DVec columnSums(const Vec &x, int64_t rows, int64_t n) {
  DVec s(n, 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j)
      s[j] += x[r * n + j];
  return s;
}

TEST(Reductions, BiasGradFiniteDifferences) {
  const int64_t rows = 37, n = 19;
  Vec x = randomVec(rows * n, 1), bias = randomVec(n, 2),
      dy = randomVec(rows * n, 3), dbias(n, 123.0f);
  bias_grad(dy.data(), dbias.data(), rows, n);
  // L(bias) = sum dy * (x + bias), the bias_add forward in double.
  const DVec fd = numericGrad(
      [&](const DVec &b) {
        double L = 0.0;
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t j = 0; j < n; ++j)
            L += double(dy[r * n + j]) * (double(x[r * n + j]) + b[j]);
        return L;
      },
      toDouble(bias));
  EXPECT_TRUE(gradClose(dbias, fd));
  EXPECT_TRUE(allClose(dbias, columnSums(dy, rows, n), 1e-6, 1e-6));
}

// 10^5 rows: a float running sum would be off by ~1e-5 relative here.
TEST(Reductions, BiasGradIsAccurateOverManyRows) {
  for (auto [rows, n] : {std::pair<int64_t, int64_t>{100003, 7},
                         std::pair<int64_t, int64_t>{20011, 301}}) {
    Vec dy = randomVec(size_t(rows * n), 4, -0.7f, 1.3f);
    const DVec ref = columnSums(dy, rows, n);
    Vec dbias(n);
    forEachTeamSize([&] {
      std::fill(dbias.begin(), dbias.end(),
                std::numeric_limits<float>::quiet_NaN());
      bias_grad(dy.data(), dbias.data(), rows, n);
      EXPECT_TRUE(allClose(dbias, ref, 1e-6, 0.0));
    });
  }
}

TEST(Reductions, PosGradFiniteDifferences) {
  for (auto [B, T, D] : {std::tuple<int64_t, int64_t, int64_t>{3, 7, 5},
                         std::tuple<int64_t, int64_t, int64_t>{64, 197, 24}}) {
    Vec dy = randomVec(B * T * D, 5), dpos(T * D);
    const DVec ref = columnSums(dy, B, T * D);
    forEachTeamSize([&] {
      pos_grad(dy.data(), dpos.data(), B, T, D);
      EXPECT_TRUE(allClose(dpos, ref, 1e-6, 1e-6));
    });
    if (B * T * D > 1000)
      continue;
    Vec x = randomVec(B * T * D, 6), pos = randomVec(T * D, 7);
    const DVec fd = numericGrad(
        [&](const DVec &p) {
          double L = 0.0;
          for (int64_t b = 0; b < B; ++b)
            for (int64_t i = 0; i < T * D; ++i)
              L += double(dy[b * T * D + i]) * (x[b * T * D + i] + p[i]);
          return L;
        },
        toDouble(pos));
    EXPECT_TRUE(gradClose(dpos, fd));
  }
}

DVec meanTokensRef(const DVec &x, int64_t B, int64_t T, int64_t D) {
  DVec y(B * D, 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t d = 0; d < D; ++d)
        y[b * D + d] += x[(b * T + t) * D + d] / double(T);
  return y;
}

TEST(Reductions, MeanTokens) {
  for (auto [B, T, D] : {std::tuple<int64_t, int64_t, int64_t>{3, 7, 5},
                         std::tuple<int64_t, int64_t, int64_t>{9, 197, 300}}) {
    Vec x = randomVec(B * T * D, 8), y(B * D);
    const DVec ref = meanTokensRef(toDouble(x), B, T, D);
    forEachTeamSize([&] {
      mean_tokens(x.data(), y.data(), B, T, D);
      EXPECT_TRUE(allClose(y, ref, 1e-6, 1e-7));
    });
  }
}

TEST(Reductions, MeanTokensGradFiniteDifferences) {
  const int64_t B = 3, T = 7, D = 5;
  Vec x = randomVec(B * T * D, 9), dy = randomVec(B * D, 10), dx(B * T * D);
  mean_tokens_grad(dy.data(), dx.data(), B, T, D);
  const DVec w = toDouble(dy);
  const DVec fd = numericGrad(
      [&](const DVec &p) { return dotD(w, meanTokensRef(p, B, T, D)); },
      toDouble(x));
  EXPECT_TRUE(gradClose(dx, fd));
  EXPECT_TRUE(allClose(dx, fd, 1e-6, 1e-7));
  // Parallel path.
  const int64_t bB = 32, bT = 197, bD = 16;
  Vec dyb = randomVec(bB * bD, 11), dxb(bB * bT * bD);
  forEachTeamSize([&] {
    mean_tokens_grad(dyb.data(), dxb.data(), bB, bT, bD);
    for (int64_t b = 0; b < bB; ++b)
      for (int64_t t = 0; t < bT; ++t)
        for (int64_t d = 0; d < bD; ++d)
          ASSERT_FLOAT_EQ(dxb[(b * bT + t) * bD + d], dyb[b * bD + d] / bT);
  });
}

} // namespace
} // namespace sbp::cpu::test
