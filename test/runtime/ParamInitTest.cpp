// ParamInitTest.cpp - parameter initialisation per sbp_param_desc.
#include "ParamInit.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

using namespace sbp::rt;

namespace {

std::vector<float> init(int32_t kind, float scale, int64_t n, uint64_t seed = 1,
                        int32_t index = 0) {
  sbp_param_desc p{};
  p.name = "w";
  p.rank = 1;
  p.shape[0] = n;
  p.numel = n;
  p.init = kind;
  p.init_scale = scale;
  std::vector<float> out(size_t(n), 123.0f);
  initParam(p, index, seed, out.data());
  return out;
}

void moments(const std::vector<float> &v, double &mean, double &sd) {
  double s = 0, s2 = 0;
  for (float x : v) {
    s += x;
    s2 += double(x) * x;
  }
  mean = s / double(v.size());
  sd = std::sqrt(s2 / double(v.size()) - mean * mean);
}

} // namespace

TEST(ParamInit, ZerosAndOnes) {
  for (float x : init(SBP_INIT_ZEROS, 0.0f, 100))
    EXPECT_EQ(x, 0.0f);
  for (float x : init(SBP_INIT_ONES, 0.0f, 100))
    EXPECT_EQ(x, 1.0f);
}

// ConvNeXt's layer scale gamma: every element the scale (1e-6), whatever the seed.
TEST(ParamInit, ConstantIsTheScale) {
  for (float x : init(SBP_INIT_CONSTANT, 1e-6f, 100))
    EXPECT_EQ(x, 1e-6f);
}

TEST(ParamInit, NormalHasTheScaleAsStandardDeviation) {
  double mean = 0, sd = 0;
  moments(init(SBP_INIT_NORMAL, 0.02f, 100000), mean, sd);
  EXPECT_NEAR(mean, 0.0, 0.0005);
  EXPECT_NEAR(sd, 0.02, 0.0005);
}

TEST(ParamInit, TruncatedNormalStaysWithinTwoScales) {
  std::vector<float> v = init(SBP_INIT_TRUNC_NORMAL, 0.02f, 100000);
  for (float x : v)
    ASSERT_LE(std::fabs(x), 0.04f);
  double mean = 0, sd = 0;
  moments(v, mean, sd);
  EXPECT_NEAR(mean, 0.0, 0.0005);
  EXPECT_NEAR(sd, 0.02 * 0.8796, 0.0005); // sd of N(0,1) truncated to [-2, 2]
}

TEST(ParamInit, UniformCoversMinusScaleToScale) {
  std::vector<float> v = init(SBP_INIT_UNIFORM, 0.5f, 100000);
  for (float x : v)
    ASSERT_LE(std::fabs(x), 0.5f);
  double mean = 0, sd = 0;
  moments(v, mean, sd);
  EXPECT_NEAR(mean, 0.0, 0.005);
  EXPECT_NEAR(sd, 0.5 / std::sqrt(3.0), 0.005);
}

TEST(ParamInit, ValuesDependOnlyOnSeedAndIndex) {
  EXPECT_EQ(init(SBP_INIT_NORMAL, 1.0f, 50, 7, 3), init(SBP_INIT_NORMAL, 1.0f, 50, 7, 3));
  EXPECT_NE(init(SBP_INIT_NORMAL, 1.0f, 50, 7, 3), init(SBP_INIT_NORMAL, 1.0f, 50, 8, 3));
  EXPECT_NE(init(SBP_INIT_NORMAL, 1.0f, 50, 7, 3), init(SBP_INIT_NORMAL, 1.0f, 50, 7, 4));
  // A longer tensor starts with the same values: a prefix of one stream.
  std::vector<float> longer = init(SBP_INIT_UNIFORM, 1.0f, 80, 7, 3);
  std::vector<float> shorter = init(SBP_INIT_UNIFORM, 1.0f, 50, 7, 3);
  EXPECT_TRUE(std::equal(shorter.begin(), shorter.end(), longer.begin()));
}
