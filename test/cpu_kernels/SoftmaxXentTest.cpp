//===- SoftmaxXentTest.cpp - Fused softmax cross-entropy ------------------===//

#include "TestSupport.h"
#include "sbp/cpu_kernels.h"

#include <limits>

namespace sbp::cpu::test {
namespace {

double xentRef(const DVec &z, const std::vector<int32_t> &labels, int64_t B,
               int64_t C) {
  double total = 0.0;
  for (int64_t r = 0; r < B; ++r) {
    double m = z[r * C];
    for (int64_t j = 1; j < C; ++j)
      m = std::max(m, z[r * C + j]);
    double s = 0.0;
    for (int64_t j = 0; j < C; ++j)
      s += std::exp(z[r * C + j] - m);
    total += m + std::log(s) - z[r * C + labels[r]];
  }
  return total / double(B);
}

struct XentData {
  int64_t B, C;
  Vec logits;
  std::vector<int32_t> labels;
  int64_t expectCorrect = 0;
  XentData(int64_t B, int64_t C, uint32_t seed) : B(B), C(C) {
    logits = randomVec(B * C, seed, -3.0f, 3.0f);
    std::mt19937 gen(seed + 1);
    labels.resize(B);
    for (int64_t r = 0; r < B; ++r) {
      labels[r] = int32_t(gen() % uint32_t(C));
      if (r % 3 == 0) // make about a third of the rows correct for sure
        logits[r * C + labels[r]] += 10.0f;
    }
    for (int64_t r = 0; r < B; ++r) {
      int64_t best = 0;
      for (int64_t j = 1; j < C; ++j)
        if (logits[r * C + j] > logits[r * C + best])
          best = j;
      expectCorrect += best == labels[r];
    }
  }
};

TEST(SoftmaxXent, LossGradientAndCountSmall) {
  XentData d(13, 11, 1);
  const float scale = 0.37f;
  float loss = -1.0f;
  Vec dlogits(d.B * d.C, 42.0f);
  const int64_t correct = softmax_xent(d.logits.data(), d.labels.data(), &loss,
                                       dlogits.data(), d.B, d.C, scale);
  const DVec z = toDouble(d.logits);
  const double ref = xentRef(z, d.labels, d.B, d.C);
  EXPECT_NEAR(loss, ref, 1e-6 * std::fabs(ref) + 1e-7);
  EXPECT_EQ(correct, d.expectCorrect);
  EXPECT_GT(correct, 0);
  EXPECT_LT(correct, d.B);
  DVec fd = numericGrad(
      [&](const DVec &p) {
        return double(scale) * xentRef(p, d.labels, d.B, d.C);
      },
      z);
  EXPECT_TRUE(gradClose(dlogits, fd));
  EXPECT_TRUE(allClose(dlogits, fd, 1e-5, 1e-7));
  // Each row of (softmax - onehot) sums to zero.
  for (int64_t r = 0; r < d.B; ++r) {
    double s = 0.0;
    for (int64_t j = 0; j < d.C; ++j)
      s += dlogits[r * d.C + j];
    EXPECT_NEAR(s, 0.0, 1e-7);
  }
}

TEST(SoftmaxXent, NullGradientAndLargeBatch) {
  XentData d(1031, 100, 2); // past the parallel threshold
  const DVec z = toDouble(d.logits);
  const double ref = xentRef(z, d.labels, d.B, d.C);
  forEachTeamSize([&] {
    float loss = 0.0f;
    EXPECT_EQ(softmax_xent(d.logits.data(), d.labels.data(), &loss, nullptr,
                           d.B, d.C, 1.0f),
              d.expectCorrect);
    EXPECT_NEAR(loss, ref, 1e-6 * std::fabs(ref));
    Vec g(d.B * d.C);
    softmax_xent(d.logits.data(), d.labels.data(), &loss, g.data(), d.B, d.C,
                 2.0f);
    for (int64_t r = 0; r < d.B; r += 97) {
      double m = -1e300, s = 0.0;
      for (int64_t j = 0; j < d.C; ++j)
        m = std::max(m, z[r * d.C + j]);
      for (int64_t j = 0; j < d.C; ++j)
        s += std::exp(z[r * d.C + j] - m);
      for (int64_t j = 0; j < d.C; ++j) {
        const double p = std::exp(z[r * d.C + j] - m) / s;
        const double want = (p - (j == d.labels[r])) * 2.0 / double(d.B);
        ASSERT_NEAR(g[r * d.C + j], want, 1e-6 * std::fabs(want) + 1e-9);
      }
    }
  });
}

TEST(SoftmaxXent, StableForHugeLogitsAndFirstMaxWins) {
  // Logits near 1e4 overflow a naive exp; ties resolve to the first index.
  const int64_t B = 2, C = 3;
  Vec z = {1.0e4f, 1.0e4f, 9.999e3f, -5.0e3f, -5.0e3f, -5.0e3f};
  std::vector<int32_t> labels = {0, 0};
  float loss = 0.0f;
  Vec g(B * C);
  const int64_t correct =
      softmax_xent(z.data(), labels.data(), &loss, g.data(), B, C, 1.0f);
  EXPECT_EQ(correct, 2); // both rows' argmax is 0, the first maximum
  const double ref = xentRef(toDouble(z), labels, B, C);
  ASSERT_TRUE(std::isfinite(loss));
  EXPECT_NEAR(loss, ref, 1e-6 * std::fabs(ref));
  for (float v : g)
    ASSERT_TRUE(std::isfinite(v));
}

TEST(SoftmaxXent, NaNPropagatesAndBadLabelsAreIgnored) {
  const int64_t B = 3, C = 4;
  Vec z = randomVec(B * C, 5);
  std::vector<int32_t> labels = {1, 2, 3};
  float loss = 0.0f;
  Vec g(B * C);
  z[5] = std::numeric_limits<float>::quiet_NaN(); // row 1
  softmax_xent(z.data(), labels.data(), &loss, g.data(), B, C, 1.0f);
  EXPECT_TRUE(std::isnan(loss)) << "a diverged step must show in the loss";
  // Labels outside [0, C): no loss, zero gradient row, never correct.
  z = randomVec(B * C, 6);
  labels = {-1, 0, 4};
  z[4 + 0] += 20.0f; // row 1 correct
  float lossBad = 0.0f;
  Vec gBad(B * C, 7.0f);
  EXPECT_EQ(
      softmax_xent(z.data(), labels.data(), &lossBad, gBad.data(), B, C, 1.0f),
      1);
  std::vector<int32_t> only = {0};
  float lossRow1 = 0.0f;
  softmax_xent(z.data() + C, only.data(), &lossRow1, nullptr, 1, C, 1.0f);
  EXPECT_NEAR(lossBad, lossRow1 / 3.0f, 1e-7);
  for (int64_t j = 0; j < C; ++j) {
    EXPECT_EQ(gBad[j], 0.0f);
    EXPECT_EQ(gBad[2 * C + j], 0.0f);
  }
}

} // namespace
} // namespace sbp::cpu::test
