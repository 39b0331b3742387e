// MasksTest.cpp - grid and random keep masks (ARCHITECTURE.md "Masks").
#include "Error.h"
#include "Masks.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

using namespace sbp::rt;

namespace {

MaskSpec spec(int32_t kind, float keep, int32_t h, int32_t w, int32_t prefix = 0,
              int32_t capacity = -1) {
  MaskSpec s;
  s.kind = kind;
  s.keep_ratio = keep;
  s.grid_h = h;
  s.grid_w = w;
  s.prefix_tokens = prefix;
  s.capacity = capacity < 0 ? prefix + h * w : capacity;
  return s;
}

// Positions of an h x w grid on anti-diagonals i + j = t with t % s == start,
// counted per diagonal (not by visiting the grid as the implementation does).
int32_t onDiagonals(int32_t h, int32_t w, int32_t s, int32_t start) {
  int32_t n = 0;
  for (int32_t t = start; t <= h + w - 2; t += s)
    n += std::min(t, h - 1) - std::max(0, t - (w - 1)) + 1;
  return n;
}

} // namespace

TEST(Masks, StrideFollowsTheKeepRatio) {
  EXPECT_EQ(gridStride(0.5f), 2);
  EXPECT_EQ(gridStride(0.25f), 4);
  EXPECT_EQ(gridStride(1.0f / 3.0f), 3);
  EXPECT_EQ(gridStride(0.75f), 4);
  EXPECT_EQ(gridStride(0.9f), 10);
  EXPECT_EQ(gridStride(1.0f), 0);
}

TEST(Masks, GridKeepsTheExactCountForEveryStart) {
  for (float keep : {0.5f, 0.25f, 1.0f / 3.0f, 0.75f, 0.8f}) {
    for (auto [h, w] : {std::pair{14, 14}, std::pair{7, 7}, std::pair{4, 6}}) {
      int32_t s = gridStride(keep);
      for (int32_t start = 0; start < s; ++start) {
        int32_t matching = onDiagonals(h, w, s, start);
        int32_t expected = keep <= 0.5f ? matching : h * w - matching;
        EXPECT_EQ(int32_t(gridKeptPositions(spec(SBP_MASK_GRID, keep, h, w), start).size()),
                  expected)
            << "keep " << keep << " grid " << h << "x" << w << " start " << start;
      }
    }
  }
}

TEST(Masks, HalfIsACheckerboardOfTheDrawnParity) {
  for (int32_t start = 0; start < 2; ++start) {
    std::vector<int32_t> kept = gridKeptPositions(spec(SBP_MASK_GRID, 0.5f, 14, 14), start);
    ASSERT_EQ(kept.size(), 98u);
    for (int32_t p : kept)
      EXPECT_EQ((p / 14 + p % 14) % 2, start);
  }
}

TEST(Masks, QuarterKeepsOneDiagonalInFour) {
  std::vector<int32_t> kept = gridKeptPositions(spec(SBP_MASK_GRID, 0.25f, 8, 8), 3);
  std::set<int32_t> set(kept.begin(), kept.end());
  for (int32_t i = 0; i < 8; ++i)
    for (int32_t j = 0; j < 8; ++j)
      EXPECT_EQ(set.count(i * 8 + j) == 1, (i + j) % 4 == 3) << i << "," << j;
}

TEST(Masks, ThreeQuartersDropsOneDiagonalInFour) {
  std::vector<int32_t> kept = gridKeptPositions(spec(SBP_MASK_GRID, 0.75f, 8, 8), 1);
  std::set<int32_t> set(kept.begin(), kept.end());
  for (int32_t i = 0; i < 8; ++i)
    for (int32_t j = 0; j < 8; ++j)
      EXPECT_EQ(set.count(i * 8 + j) == 0, (i + j) % 4 == 1) << i << "," << j;
}

TEST(Masks, KeepOneKeepsEverything) {
  for (int32_t kind : {SBP_MASK_GRID, SBP_MASK_RANDOM})
    for (int64_t step = 0; step < 5; ++step)
      EXPECT_EQ(sampleKeptPositions(spec(kind, 1.0f, 5, 7), 1, step, 0).size(), 35u);
}

TEST(Masks, RandomDropsTheTruncatedCount) {
  EXPECT_EQ(randomDropCount(0.5f, 196), 98);
  EXPECT_EQ(randomDropCount(0.7f, 196), 58); // int(0.3 * 196) = int(58.8)
  EXPECT_EQ(randomDropCount(0.9f, 10), 1);   // exact although 1 - 0.9f is not 0.1
  EXPECT_EQ(randomDropCount(0.25f, 49), 36); // int(36.75)
  for (int64_t step = 0; step < 20; ++step) {
    std::vector<int32_t> kept = sampleKeptPositions(spec(SBP_MASK_RANDOM, 0.7f, 14, 14), 3, step, 0);
    EXPECT_EQ(kept.size(), 138u);
    EXPECT_TRUE(std::is_sorted(kept.begin(), kept.end()));
    EXPECT_EQ(std::set<int32_t>(kept.begin(), kept.end()).size(), kept.size());
  }
}

TEST(Masks, DrawIsAFunctionOfSeedStepAndDraw) {
  for (int32_t kind : {SBP_MASK_GRID, SBP_MASK_RANDOM}) {
    MaskSpec s = spec(kind, 0.5f, 14, 14);
    EXPECT_EQ(sampleKeptPositions(s, 11, 1234, 2), sampleKeptPositions(s, 11, 1234, 2));
    // Another order of calls (no history) gives the same mask.
    sampleKeptPositions(s, 11, 5, 2);
    EXPECT_EQ(sampleKeptPositions(s, 11, 1234, 2), sampleKeptPositions(s, 11, 1234, 2));
  }
}

TEST(Masks, DifferentStepsGiveDifferentMasks) {
  MaskSpec random = spec(SBP_MASK_RANDOM, 0.5f, 14, 14);
  std::set<std::vector<int32_t>> masks;
  for (int64_t step = 0; step < 20; ++step)
    masks.insert(sampleKeptPositions(random, 7, step, 0));
  EXPECT_EQ(masks.size(), 20u);
  // A grid mask has only `stride` patterns; over 40 steps at 0.25 all 4 appear.
  MaskSpec grid = spec(SBP_MASK_GRID, 0.25f, 14, 14);
  std::set<std::vector<int32_t>> patterns;
  for (int64_t step = 0; step < 40; ++step)
    patterns.insert(sampleKeptPositions(grid, 7, step, 0));
  EXPECT_EQ(patterns.size(), 4u);
  EXPECT_NE(sampleKeptPositions(random, 7, 0, 0), sampleKeptPositions(random, 8, 0, 0));
}

TEST(Masks, EachPositionIsKeptWithFrequencyNearTheKeepRatio) {
  const int steps = 4000;
  for (auto [kind, keep] : {std::pair{SBP_MASK_RANDOM, 0.5f}, std::pair{SBP_MASK_RANDOM, 0.25f},
                            std::pair{SBP_MASK_GRID, 0.5f}, std::pair{SBP_MASK_GRID, 0.25f},
                            std::pair{SBP_MASK_GRID, 0.75f}}) {
    MaskSpec s = spec(kind, keep, 8, 8);
    std::vector<int> kept(64, 0);
    for (int64_t step = 0; step < steps; ++step)
      for (int32_t p : sampleKeptPositions(s, 99, step, 0))
        ++kept[size_t(p)];
    for (int32_t p = 0; p < 64; ++p)
      EXPECT_NEAR(double(kept[size_t(p)]) / steps, keep, 0.04)
          << "kind " << kind << " keep " << keep << " position " << p;
  }
}

TEST(Masks, KeepIndicesHavePrefixThenShiftedPositionsThenPadding) {
  MaskSpec s = spec(SBP_MASK_GRID, 0.5f, 2, 2, /*prefix=*/2, /*capacity=*/6);
  std::vector<int32_t> out(6, 77);
  writeKeepIndices(s, {0, 3}, out.data());
  EXPECT_EQ(out, (std::vector<int32_t>{0, 1, 2, 5, -1, -1}));
}

TEST(Masks, OverCapacityIsAnInternalError) {
  MaskSpec s = spec(SBP_MASK_GRID, 0.5f, 4, 4, 1, /*capacity=*/5);
  std::vector<int32_t> out(5);
  try {
    writeKeepIndices(s, gridKeptPositions(s, 0), out.data());
    FAIL() << "no error";
  } catch (const Error &e) {
    EXPECT_EQ(e.status(), SBP_ERROR_INTERNAL);
    EXPECT_NE(std::string(e.what()).find("capacity is 5"), std::string::npos) << e.what();
  }
}

TEST(Masks, MaxKeptTokensCoversEveryStart) {
  EXPECT_EQ(maxKeptTokens(spec(SBP_MASK_GRID, 0.5f, 7, 7, 1)), 1 + 25);
  EXPECT_EQ(maxKeptTokens(spec(SBP_MASK_GRID, 0.75f, 7, 7)), 49 - onDiagonals(7, 7, 4, 3));
  EXPECT_EQ(maxKeptTokens(spec(SBP_MASK_RANDOM, 0.25f, 7, 7)), 13);
  EXPECT_EQ(maxKeptTokens(spec(SBP_MASK_GRID, 1.0f, 3, 3, 1)), 10);
}

TEST(Masks, GroupsWithTheSameSettingsShareOneDraw) {
  MaskSampler sampler({spec(SBP_MASK_GRID, 0.5f, 14, 14, 1), spec(SBP_MASK_RANDOM, 0.5f, 14, 14),
                       spec(SBP_MASK_GRID, 0.5f, 14, 14, 1), spec(SBP_MASK_RANDOM, 0.5f, 14, 14),
                       spec(SBP_MASK_RANDOM, 0.25f, 14, 14)});
  EXPECT_EQ(sampler.drawOf(2), 0u);
  EXPECT_EQ(sampler.drawOf(3), 1u);
  EXPECT_EQ(sampler.drawOf(4), 4u);
  std::vector<std::vector<int32_t>> out;
  for (int64_t step = 0; step < 10; ++step) {
    sampler.sample(5, step, out);
    EXPECT_EQ(out[0], out[2]);
    EXPECT_EQ(out[1], out[3]);
    EXPECT_NE(out[1], out[4]);
    EXPECT_EQ(out[0][0], 0); // the class token
  }
}

TEST(Masks, FixedIndicesAreValidatedAndPadded) {
  MaskSpec s = spec(SBP_MASK_GRID, 0.5f, 2, 2, 1, 4);
  const int32_t good[] = {0, 2, 4};
  EXPECT_EQ(checkedFixedIndices(s, "m0", good, 3), (std::vector<int32_t>{0, 2, 4, -1}));
  auto status = [&](std::vector<int32_t> idx) {
    try {
      checkedFixedIndices(s, "m0", idx.data(), int32_t(idx.size()));
      return SBP_OK;
    } catch (const Error &e) {
      EXPECT_NE(std::string(e.what()).find("'m0'"), std::string::npos);
      return e.status();
    }
  };
  EXPECT_EQ(status({0, 5}), SBP_ERROR_INVALID_ARGUMENT);       // beyond the tokens
  EXPECT_EQ(status({-1}), SBP_ERROR_INVALID_ARGUMENT);         // negative
  EXPECT_EQ(status({2, 1}), SBP_ERROR_INVALID_ARGUMENT);       // descending
  EXPECT_EQ(status({1, 1}), SBP_ERROR_INVALID_ARGUMENT);       // repeated
  EXPECT_EQ(status({0, 1, 2, 3, 4}), SBP_ERROR_INVALID_ARGUMENT); // over capacity
}
