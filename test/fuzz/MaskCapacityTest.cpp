//===- MaskCapacityTest.cpp - closed-form grid mask counts ----------------===//
//
// sbp_grid_matches_max/min (sbp/mask_rules.h) replace a visit of every grid
// cell per start with a closed form; this checks them against that visit for
// every small grid and stride, and that huge grids cost nothing.
//
//===----------------------------------------------------------------------===//
#include "sbp/mask_rules.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <limits>

/// The most and the fewest cells with (i + j) mod s == start over all starts,
/// by visiting every cell (what the compiler did before the closed form).
static std::pair<int64_t, int64_t> bruteForce(int64_t h, int64_t w, int64_t s) {
  int64_t most = 0, fewest = std::numeric_limits<int64_t>::max();
  for (int64_t start = 0; start < s; ++start) {
    int64_t matches = 0;
    for (int64_t i = 0; i < h; ++i)
      for (int64_t j = 0; j < w; ++j)
        matches += (i + j) % s == start;
    most = std::max(most, matches);
    fewest = std::min(fewest, matches);
  }
  return {most, fewest};
}

TEST(MaskCapacity, ClosedFormEqualsEveryCellVisit) {
  for (int64_t h = 1; h <= 24; ++h)
    for (int64_t w = 1; w <= 24; ++w)
      for (int64_t s = 1; s <= h + w + 2; ++s) {
        auto [most, fewest] = bruteForce(h, w, s);
        ASSERT_EQ(sbp_grid_matches_max(h, w, s), most) << h << "x" << w << " stride " << s;
        ASSERT_EQ(sbp_grid_matches_min(h, w, s), fewest) << h << "x" << w << " stride " << s;
      }
}

TEST(MaskCapacity, LargestGridIsInstant) {
  // 46340^2 < 2^31: the largest square grid a mask group may have. The loop
  // it replaces took minutes at this size.
  const int64_t side = 46340;
  EXPECT_EQ(sbp_grid_matches_max(side, side, 2), side * side / 2);
  EXPECT_EQ(sbp_grid_matches_min(side, side, 2), side * side / 2);
  EXPECT_EQ(sbp_grid_matches_max(1, std::numeric_limits<int32_t>::max(), 3), 715827883);
  EXPECT_EQ(sbp_grid_matches_min(1, std::numeric_limits<int32_t>::max(), 3), 715827882);
}
