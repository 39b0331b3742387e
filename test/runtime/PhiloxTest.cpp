// PhiloxTest.cpp - Philox4x32-10 against Random123's known-answer vectors, and
// the statistics of the streams built on it.
#include "Philox.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>

using namespace sbp::rt;

// Known-answer tests from Random123 (kat_vectors, philox4x32 with 10 rounds).
TEST(Philox, KnownAnswerZero) {
  PhiloxCounter out = philox4x32_10({0, 0, 0, 0}, {0, 0});
  EXPECT_EQ(out, (PhiloxCounter{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}));
}

TEST(Philox, KnownAnswerAllOnes) {
  PhiloxCounter out = philox4x32_10({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
                                    {0xffffffffu, 0xffffffffu});
  EXPECT_EQ(out, (PhiloxCounter{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}));
}

TEST(Philox, KnownAnswerPi) {
  PhiloxCounter out = philox4x32_10({0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u},
                                    {0xa4093822u, 0x299f31d0u});
  EXPECT_EQ(out, (PhiloxCounter{0xd16cfe09u, 0x94fdccebu, 0x5001e420u, 0x24126ea1u}));
}

TEST(Philox, StreamIsAFunctionOfItsIdentity) {
  PhiloxStream a(42, Purpose::Mask, 7, 3), b(42, Purpose::Mask, 7, 3);
  for (int k = 0; k < 100; ++k)
    ASSERT_EQ(a.nextU32(), b.nextU32());
}

TEST(Philox, StreamsOfDifferentIdentityDiffer) {
  auto first = [](PhiloxStream s) { return s.nextU32(); };
  std::set<uint32_t> seen = {
      first(PhiloxStream(1, Purpose::Mask, 0, 0)), first(PhiloxStream(2, Purpose::Mask, 0, 0)),
      first(PhiloxStream(1, Purpose::ParamInit, 0, 0)),
      first(PhiloxStream(1, Purpose::Mask, 1, 0)), first(PhiloxStream(1, Purpose::Mask, 0, 1)),
      first(PhiloxStream(1ull << 32, Purpose::Mask, 0, 0)),
      first(PhiloxStream(1, Purpose::Mask, 1ull << 32, 0))};
  EXPECT_EQ(seen.size(), 7u);
}

TEST(Philox, UniformLiesInUnitIntervalWithTheRightMean) {
  PhiloxStream rng(5, Purpose::Shuffle, 0);
  double sum = 0.0;
  const int n = 200000;
  for (int k = 0; k < n; ++k) {
    float u = rng.uniform();
    ASSERT_GE(u, 0.0f);
    ASSERT_LT(u, 1.0f);
    sum += u;
  }
  EXPECT_NEAR(sum / n, 0.5, 0.005);
}

TEST(Philox, NormalHasZeroMeanAndUnitVariance) {
  PhiloxStream rng(9, Purpose::ParamInit, 3);
  double sum = 0.0, sum_sq = 0.0;
  const int n = 200000;
  for (int k = 0; k < n; ++k) {
    double z = rng.normal();
    ASSERT_TRUE(std::isfinite(z));
    sum += z;
    sum_sq += z * z;
  }
  EXPECT_NEAR(sum / n, 0.0, 0.01);
  EXPECT_NEAR(sum_sq / n, 1.0, 0.02);
}

TEST(Philox, BelowCoversItsRangeUniformly) {
  PhiloxStream rng(3, Purpose::Mask, 0);
  int counts[7] = {0};
  const int n = 70000;
  for (int k = 0; k < n; ++k) {
    uint32_t v = rng.below(7);
    ASSERT_LT(v, 7u);
    ++counts[v];
  }
  for (int c : counts)
    EXPECT_NEAR(c, n / 7, 400);
}
