//===- TokenOpsTest.cpp - ViT class token and token pooling ---------------===//
//
// Pure row moves: compared exactly, element by element, with outputs
// poisoned with NaN first; the class-token gradient's batch sum against a
// double sum in the same (batch) order, rounded once.
//
//===----------------------------------------------------------------------===//

#include "TestSupport.h"
#include "sbp/cpu_kernels.h"

#include <limits>

namespace sbp::cpu::test {
namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();

struct Sizes {
  int64_t B, T, D;
};

// Small, and large enough for the parallel paths.
const Sizes kSizes[] = {{1, 1, 1}, {3, 4, 5}, {4, 196, 192}};

TEST(ClassToken, ConcatPrependsTheClassRow) {
  for (const Sizes &s : kSizes) {
    const Vec x = randomVec(s.B * s.T * s.D, 1), cls = randomVec(s.D, 2);
    forEachTeamSize([&] {
      Vec y(s.B * (s.T + 1) * s.D, kNaN);
      cls_concat(x.data(), cls.data(), y.data(), s.B, s.T, s.D);
      for (int64_t b = 0; b < s.B; ++b)
        for (int64_t t = 0; t <= s.T; ++t)
          for (int64_t d = 0; d < s.D; ++d)
            ASSERT_EQ(y[(b * (s.T + 1) + t) * s.D + d],
                      t == 0 ? cls[d] : x[(b * s.T + t - 1) * s.D + d])
                << "b=" << b << " t=" << t << " d=" << d;
    });
  }
}

TEST(ClassToken, GradientSplitsTokensAndSumsTheClassRows) {
  for (const Sizes &s : kSizes) {
    const Vec dy = randomVec(s.B * (s.T + 1) * s.D, 3);
    forEachTeamSize([&] {
      Vec dx(s.B * s.T * s.D, kNaN), dcls(s.D, kNaN);
      cls_concat_grad(dy.data(), dx.data(), dcls.data(), s.B, s.T, s.D);
      for (int64_t b = 0; b < s.B; ++b)
        for (int64_t t = 0; t < s.T; ++t)
          for (int64_t d = 0; d < s.D; ++d)
            ASSERT_EQ(dx[(b * s.T + t) * s.D + d],
                      dy[(b * (s.T + 1) + t + 1) * s.D + d]);
      for (int64_t d = 0; d < s.D; ++d) {
        double sum = 0.0;
        for (int64_t b = 0; b < s.B; ++b)
          sum += dy[b * (s.T + 1) * s.D + d];
        ASSERT_EQ(dcls[d], float(sum)) << "d=" << d;
      }
    });
  }
}

TEST(ClassToken, BatchSumIsDoubleAccumulated) {
  // 1 + 4096 * 2^-24: a float running sum stays at 1 (each addend is half
  // an ulp and rounds away); the double sum does not.
  const int64_t B = 4097, T = 1, D = 3;
  Vec dy(B * (T + 1) * D, 0.0f);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t d = 0; d < D; ++d)
      dy[b * (T + 1) * D + d] = b == 0 ? 1.0f : std::ldexp(1.0f, -24);
  Vec dx(B * T * D), dcls(D, kNaN);
  cls_concat_grad(dy.data(), dx.data(), dcls.data(), B, T, D);
  for (int64_t d = 0; d < D; ++d)
    EXPECT_EQ(dcls[d], float(1.0 + 4096.0 * std::ldexp(1.0, -24)));
}

TEST(TakeToken, PicksOneRowPerBatchElement) {
  for (const Sizes &s : kSizes)
    for (int64_t index : {int64_t(0), s.T - 1}) {
      const Vec x = randomVec(s.B * s.T * s.D, 4);
      forEachTeamSize([&] {
        Vec y(s.B * s.D, kNaN);
        take_token(x.data(), y.data(), s.B, s.T, s.D, index);
        for (int64_t b = 0; b < s.B; ++b)
          for (int64_t d = 0; d < s.D; ++d)
            ASSERT_EQ(y[b * s.D + d], x[(b * s.T + index) * s.D + d]);
      });
    }
}

TEST(TakeToken, GradientIsZeroExceptThePickedRow) {
  for (const Sizes &s : kSizes)
    for (int64_t index : {int64_t(0), s.T - 1}) {
      const Vec dy = randomVec(s.B * s.D, 5);
      forEachTeamSize([&] {
        Vec dx(s.B * s.T * s.D, kNaN);
        take_token_grad(dy.data(), dx.data(), s.B, s.T, s.D, index);
        for (int64_t b = 0; b < s.B; ++b)
          for (int64_t t = 0; t < s.T; ++t)
            for (int64_t d = 0; d < s.D; ++d)
              ASSERT_EQ(dx[(b * s.T + t) * s.D + d],
                        t == index ? dy[b * s.D + d] : 0.0f);
      });
    }
}

} // namespace
} // namespace sbp::cpu::test
