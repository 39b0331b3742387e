// MasksTest.cpp - grid, random and heads keep masks (ARCHITECTURE.md "Masks").
#include "Error.h"
#include "Masks.h"
#include "Philox.h"
#include "sbp/mask_rules.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>

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

// A derived group: drawn on (h / cell) x (w / cell), each drawn position an
// N x N cell of the h x w grid; capacity from maxKeptTokens.
MaskSpec derived(int32_t kind, float keep, int32_t h, int32_t w, int32_t cell) {
  MaskSpec s = spec(kind, keep, h, w);
  s.cell = cell;
  s.capacity = maxKeptTokens(s);
  return s;
}

// A heads group: grid 1 x heads, no prefix, capacity = heads.
MaskSpec headsSpec(float keep, int32_t heads) {
  return spec(SBP_MASK_HEADS, keep, 1, heads, 0, sbp_heads_capacity(heads));
}

// FNV-1a over every group's keep array for steps [0, steps) of two seeds.
uint64_t drawsHash(const MaskSampler &sampler, int64_t steps) {
  uint64_t hash = 1469598103934665603ull;
  std::vector<std::vector<int32_t>> out;
  for (uint64_t seed : {uint64_t(0), uint64_t(42)})
    for (int64_t step = 0; step < steps; ++step) {
      sampler.sample(seed, step, out);
      for (const std::vector<int32_t> &group : out)
        for (int32_t v : group) {
          hash ^= uint32_t(v);
          hash *= 1099511628211ull;
        }
    }
  return hash;
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

// The reference (mask_ops.py, vit_sbp.py) rounds with numpy, half to even, in
// float64 from the ratio as written: 1/0.4 = 2.5 -> 2 and 1/(1 - 0.6) = 2.5 -> 2
// (a float 0.6 used to give just above 2.5, so 3); 1/0.08 = 12.5 -> 12; and
// 1/(1 - 0.92) is 12.500000000000005 in double, so 13, as in the reference.
TEST(Masks, StrideRoundsHalfToEvenAsTheReference) {
  EXPECT_EQ(gridStride(0.4f), 2);
  EXPECT_EQ(gridStride(0.6f), 2);
  EXPECT_EQ(gridStride(0.08f), 12);
  EXPECT_EQ(gridStride(0.92f), 13);
  EXPECT_EQ(gridStride(0.3f), 3);  // 3.33
  EXPECT_EQ(gridStride(0.7f), 3);  // 3.33
  EXPECT_EQ(gridStride(0.35f), 3); // 2.857
  EXPECT_EQ(gridStride(0.2f), 5);
  EXPECT_EQ(gridStride(1e-12f), INT32_MAX); // no hang, no overflow: the verifier refuses it
  EXPECT_EQ(sbp_round_half_even(2.5), 2.0);
  EXPECT_EQ(sbp_round_half_even(3.5), 4.0);
  EXPECT_EQ(sbp_round_half_even(2.5000001), 3.0);
  EXPECT_EQ(sbp_keep_ratio_decimal(0.6f), 0.6);
  EXPECT_EQ(sbp_keep_ratio_decimal(0.92f), 0.92);
}

// At 0.4 and 0.6 a 14x14 grid keeps exactly half: every start, host and
// compiler count alike.
TEST(Masks, FourAndSixTenthsKeepHalfOfTheGrid) {
  for (float keep : {0.4f, 0.6f}) {
    MaskSpec s = spec(SBP_MASK_GRID, keep, 14, 14, 1);
    for (int32_t start = 0; start < 2; ++start)
      EXPECT_EQ(gridKeptPositions(s, start).size(), 98u) << keep;
    EXPECT_EQ(maxKeptTokens(s), 99) << keep;
    for (int64_t step = 0; step < 8; ++step) {
      auto kept = sampleKeptPositions(s, 3, step, 0);
      ASSERT_EQ(kept.size(), 98u);
      for (int32_t p : kept) // a checkerboard: kept (0.4) or dropped (0.6) on one parity
        EXPECT_EQ((p / 14 + p % 14) % 2, (kept[0] / 14 + kept[0] % 14) % 2);
    }
  }
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

// The class token (a prefix token) is always kept, as every draw keeps it
// (vit_sbp.py never drops token 0): a list without it is refused, not taken
// literally; the message says why (patch numbering is the likely mistake).
TEST(Masks, FixedIndicesMustKeepThePrefixTokens) {
  MaskSpec s = spec(SBP_MASK_GRID, 0.5f, 4, 4, 1, 9);
  auto message = [&](std::vector<int32_t> idx) -> std::string {
    try {
      checkedFixedIndices(s, "m", idx.data(), int32_t(idx.size()));
      return "";
    } catch (const Error &e) {
      EXPECT_EQ(e.status(), SBP_ERROR_INVALID_ARGUMENT);
      return e.what();
    }
  };
  EXPECT_EQ(message({0, 2, 4, 5, 7, 10, 12, 13, 15}), "");
  EXPECT_EQ(message({0}), ""); // the class token alone
  EXPECT_EQ(message({1, 3, 4, 6, 9, 11, 12, 14}),
            "mask group 'm': keep indices must start with token 0 (always kept: the class "
            "token), got 1 at entry 0; indices count tokens, so grid position p is token 1 + p");
  EXPECT_NE(message({}).find("got 0 indices"), std::string::npos);
  MaskSpec two = spec(SBP_MASK_GRID, 0.5f, 2, 2, 2, 4);
  auto twoMessage = [&](std::vector<int32_t> idx) -> std::string {
    try {
      checkedFixedIndices(two, "p", idx.data(), int32_t(idx.size()));
      return "";
    } catch (const Error &e) {
      return e.what();
    }
  };
  EXPECT_EQ(twoMessage({0, 1, 3}), "");
  EXPECT_NE(twoMessage({0, 3}).find("must start with tokens 0..1"), std::string::npos);
  // No prefix: any list, also an empty one.
  MaskSpec none = spec(SBP_MASK_GRID, 0.5f, 2, 2, 0, 2);
  const int32_t one[] = {3};
  EXPECT_EQ(checkedFixedIndices(none, "n", one, 1), (std::vector<int32_t>{3, -1}));
}

// The draws of the grid and random kinds are pinned: adding a kind must not
// move them (a resumed run and sbp_trainer_get_keep_indices rely on them).
// Values recorded from the runtime before SBP_MASK_HEADS existed.
TEST(Masks, GridAndRandomDrawsArePinned) {
  auto sized = [](int32_t kind, float keep, int32_t h, int32_t w, int32_t prefix) {
    MaskSpec s = spec(kind, keep, h, w, prefix);
    s.capacity = maxKeptTokens(s);
    return s;
  };
  std::vector<MaskSpec> specs;
  for (float keep : {0.5f, 0.25f, 1.0f / 3.0f, 0.75f, 0.9f, 1.0f})
    for (int32_t kind : {int32_t(SBP_MASK_GRID), int32_t(SBP_MASK_RANDOM)}) {
      specs.push_back(sized(kind, keep, 14, 14, 1));
      specs.push_back(sized(kind, keep, 4, 6, 0));
    }
  EXPECT_EQ(drawsHash(MaskSampler(specs), 200), 0xfc5904b682dbd51full);
  using V = std::vector<int32_t>;
  MaskSpec grid = spec(SBP_MASK_GRID, 0.25f, 4, 4), random = spec(SBP_MASK_RANDOM, 0.5f, 4, 4);
  EXPECT_EQ(sampleKeptPositions(grid, 7, 0, 1), (V{1, 4, 11, 14}));
  EXPECT_EQ(sampleKeptPositions(grid, 7, 1, 1), (V{3, 6, 9, 12}));
  EXPECT_EQ(sampleKeptPositions(random, 7, 0, 1), (V{0, 1, 2, 5, 6, 8, 12, 15}));
  EXPECT_EQ(sampleKeptPositions(random, 7, 1, 1), (V{1, 2, 4, 7, 10, 11, 13, 15}));
  EXPECT_EQ(sampleKeptPositions(random, 7, 2, 1), (V{1, 5, 7, 8, 9, 12, 14, 15}));
}

// ---- derived groups (cell N > 1): drawn on the coarse grid, repeated over N x N cells.

// Position (i, j) of the group is kept iff drawn position (i / N, j / N) is,
// the draw being the one a cell-1 group of the coarse grid makes.
TEST(MasksCell, KeptIffTheDrawnCellIsKept) {
  const int32_t dh = 5, dw = 7; // not square, odd: rows and columns must not mix
  for (int32_t kind : {int32_t(SBP_MASK_GRID), int32_t(SBP_MASK_RANDOM)})
    for (float keep : {0.5f, 0.25f, 0.75f, 1.0f})
      for (int32_t n : {2, 3, 4}) {
        MaskSpec fine = derived(kind, keep, dh * n, dw * n, n);
        MaskSpec coarse = spec(kind, keep, dh, dw);
        for (int64_t step = 0; step < 20; ++step) {
          std::vector<int32_t> kept = sampleKeptPositions(fine, 11, step, 3);
          std::vector<int32_t> drawn = sampleKeptPositions(coarse, 11, step, 3);
          ASSERT_TRUE(std::is_sorted(kept.begin(), kept.end()));
          std::set<int32_t> keptSet(kept.begin(), kept.end()), drawnSet(drawn.begin(), drawn.end());
          ASSERT_EQ(keptSet.size(), kept.size()); // unique
          for (int32_t i = 0; i < dh * n; ++i)
            for (int32_t j = 0; j < dw * n; ++j)
              ASSERT_EQ(keptSet.count(i * dw * n + j), drawnSet.count((i / n) * dw + j / n))
                  << "kind " << kind << " keep " << keep << " cell " << n << " step " << step
                  << " at (" << i << ", " << j << ")";
          EXPECT_EQ(kept.size(), drawn.size() * size_t(n * n));
        }
      }
}

// ConvNeXt-T's SBP stages: 56x56 cell 4, 28x28 cell 2 and 14x14 share one
// draw, and keep the same locations of the image at every resolution.
TEST(MasksCell, ConvNeXtStagesShareOneDrawAtTheSameLocations) {
  for (int32_t kind : {int32_t(SBP_MASK_GRID), int32_t(SBP_MASK_RANDOM)}) {
    MaskSampler sampler({derived(kind, 0.5f, 56, 56, 4), derived(kind, 0.5f, 28, 28, 2),
                         derived(kind, 0.5f, 14, 14, 1), derived(kind, 0.5f, 28, 28, 1),
                         derived(kind, 0.25f, 28, 28, 2)});
    EXPECT_EQ(sampler.drawOf(1), 0u);
    EXPECT_EQ(sampler.drawOf(2), 0u);
    EXPECT_EQ(sampler.drawOf(3), 3u); // 28x28 drawn: its own draw
    EXPECT_EQ(sampler.drawOf(4), 4u); // another ratio
    std::vector<std::vector<int32_t>> out;
    for (int64_t step = 0; step < 10; ++step) {
      sampler.sample(9, step, out);
      // Each kept token as the 14x14 cell it lies in.
      auto cells = [&](int32_t g, int32_t size) {
        std::set<int32_t> at14;
        int32_t scale = size / 14;
        for (int32_t t : out[size_t(g)])
          if (t >= 0)
            at14.insert((t / size / scale) * 14 + (t % size) / scale);
        return at14;
      };
      std::set<int32_t> s2 = cells(2, 14);
      EXPECT_EQ(cells(0, 56), s2) << "step " << step;
      EXPECT_EQ(cells(1, 28), s2) << "step " << step;
      EXPECT_EQ(std::count(out[0].begin(), out[0].end(), -1), 0); // 98 cells of 16: full
    }
  }
}

// The capacity counts whole cells of the drawn grid's most kept positions.
TEST(MasksCell, CapacityIsTheDrawnGridsTimesTheCellArea) {
  EXPECT_EQ(maxKeptTokens(derived(SBP_MASK_GRID, 0.5f, 56, 56, 4)), 98 * 16);
  EXPECT_EQ(maxKeptTokens(derived(SBP_MASK_GRID, 0.5f, 28, 28, 2)), 98 * 4);
  // 3x3 drawn at 0.5: 5 of one parity; the 6x6 grid itself keeps at most 18.
  EXPECT_EQ(maxKeptTokens(derived(SBP_MASK_GRID, 0.5f, 6, 6, 2)), 5 * 4);
  EXPECT_EQ(maxKeptTokens(spec(SBP_MASK_GRID, 0.5f, 6, 6)), 18);
  // 2x2 drawn at 0.3: int(0.7 * 4) = 2 dropped, 2 kept cells of 9.
  EXPECT_EQ(maxKeptTokens(derived(SBP_MASK_RANDOM, 0.3f, 6, 6, 3)), 2 * 9);
  EXPECT_EQ(maxKeptTokens(spec(SBP_MASK_RANDOM, 0.3f, 6, 6)), 36 - 25);
  // Every draw fits the capacity (writeKeepIndices throws otherwise).
  MaskSampler sampler({derived(SBP_MASK_GRID, 0.5f, 6, 6, 2), derived(SBP_MASK_RANDOM, 0.3f, 6, 6, 3),
                       derived(SBP_MASK_GRID, 0.75f, 12, 8, 4)});
  std::vector<std::vector<int32_t>> out;
  for (int64_t step = 0; step < 50; ++step)
    EXPECT_NO_THROW(sampler.sample(1, step, out));
}

// Cell 1 is the group's own grid: the same draw as before cells existed (the
// pinned hashes above also hold), and the spec it draws on is itself.
TEST(MasksCell, CellOneDrawsOnItsOwnGrid) {
  MaskSpec s = spec(SBP_MASK_GRID, 0.25f, 4, 4);
  ASSERT_EQ(s.cell, 1);
  EXPECT_EQ(s.drawnSpec().grid_h, 4);
  EXPECT_EQ(s.drawnSpec().capacity, s.capacity);
  EXPECT_EQ(sampleKeptPositions(s, 7, 0, 1), (std::vector<int32_t>{1, 4, 11, 14}));
  EXPECT_TRUE(s.sharesDrawWith(spec(SBP_MASK_GRID, 0.25f, 4, 4, 1)));   // the prefix aside
  EXPECT_FALSE(s.sharesDrawWith(spec(SBP_MASK_GRID, 0.25f, 8, 8)));      // drawn on 8x8
  EXPECT_TRUE(s.sharesDrawWith(derived(SBP_MASK_GRID, 0.25f, 8, 8, 2))); // drawn on 4x4
}

// Fixed keep indices stay per group: any valid indices of the group's own
// grid, whether or not they repeat over cells.
TEST(MasksCell, FixedIndicesAreAnyPositionsOfTheGroupsGrid) {
  MaskSpec s = derived(SBP_MASK_GRID, 0.5f, 8, 8, 2); // capacity 8 cells of 4
  ASSERT_EQ(s.capacity, 32);
  std::vector<int32_t> checkerboard; // of the 8x8 grid: no 2x2 cell is whole
  for (int32_t p = 0; p < 64; ++p)
    if ((p / 8 + p % 8) % 2 == 1)
      checkerboard.push_back(p);
  EXPECT_EQ(checkedFixedIndices(s, "s0", checkerboard.data(), 32), checkerboard);
  const int32_t beyond[] = {64};
  EXPECT_THROW(checkedFixedIndices(s, "s0", beyond, 1), Error);
}

// ---- heads (SBP_MASK_HEADS): each head kept independently with probability r.

TEST(MasksHeads, EachHeadIsKeptWithFrequencyNearTheKeepRatio) {
  const int steps = 4000;
  for (float keep : {0.5f, 0.25f, 0.75f, 0.9f, 0.1f}) {
    MaskSpec s = headsSpec(keep, 12);
    std::vector<int> kept(12, 0);
    double total = 0.0;
    for (int64_t step = 0; step < steps; ++step) {
      std::vector<int32_t> heads = sampleKeptPositions(s, 99, step, 0);
      total += double(heads.size());
      for (int32_t h : heads)
        ++kept[size_t(h)];
    }
    // 5 standard deviations of a frequency over 4000 steps is at most 0.04.
    for (int32_t h = 0; h < 12; ++h)
      EXPECT_NEAR(double(kept[size_t(h)]) / steps, keep, 0.04) << "keep " << keep << " head " << h;
    EXPECT_NEAR(total / steps, 12.0 * keep, 0.12) << "keep " << keep;
  }
}

TEST(MasksHeads, HeadsAreKeptIndependentlyNotAsAFixedCount) {
  // Independent heads: the count kept varies from step to step (binomial), and
  // two heads are kept together with probability r^2. A uniform subset of a
  // fixed size (the random kind) would give one count and r (rH - 1) / (H - 1).
  const int steps = 20000;
  MaskSpec s = headsSpec(0.5f, 12);
  std::vector<int> counts(13, 0);
  int both = 0;
  for (int64_t step = 0; step < steps; ++step) {
    std::vector<int32_t> heads = sampleKeptPositions(s, 5, step, 3);
    ++counts[heads.size()];
    bool h0 = std::count(heads.begin(), heads.end(), 0) == 1;
    bool h7 = std::count(heads.begin(), heads.end(), 7) == 1;
    both += h0 && h7;
  }
  EXPECT_NEAR(double(both) / steps, 0.25, 0.01); // a fixed count of 6 would give 0.227
  // Binomial(12, 0.5): P(6) = 0.2256, P(3) = 0.0537, P(0) = 0.00024.
  EXPECT_NEAR(double(counts[6]) / steps, 0.2256, 0.015);
  EXPECT_NEAR(double(counts[3]) / steps, 0.0537, 0.01);
  int distinct = int(std::count_if(counts.begin(), counts.end(), [](int c) { return c > 0; }));
  EXPECT_GE(distinct, 10);
}

TEST(MasksHeads, KeepOneKeepsEveryHeadAndAnyDrawMayKeepNone) {
  for (int64_t step = 0; step < 200; ++step)
    EXPECT_EQ(sampleKeptPositions(headsSpec(1.0f, 16), 3, step, 0).size(), 16u) << step;
  // At r = 0.1 and 4 heads, no head is kept with probability 0.9^4 = 0.66.
  int none = 0;
  MaskSpec s = headsSpec(0.1f, 4);
  std::vector<int32_t> out(4, 77);
  for (int64_t step = 0; step < 400; ++step) {
    std::vector<int32_t> heads = sampleKeptPositions(s, 3, step, 0);
    if (!heads.empty())
      continue;
    ++none;
    writeKeepIndices(s, heads, out.data()); // zero kept heads: all padding
    EXPECT_EQ(out, (std::vector<int32_t>{-1, -1, -1, -1}));
  }
  EXPECT_NEAR(none / 400.0, 0.6561, 0.08);
}

TEST(MasksHeads, KeepArrayIsAscendingHeadIndicesThenPadding) {
  MaskSpec s = headsSpec(0.5f, 12);
  for (int64_t step = 0; step < 50; ++step) {
    std::vector<int32_t> heads = sampleKeptPositions(s, 8, step, 0);
    EXPECT_TRUE(std::is_sorted(heads.begin(), heads.end()));
    EXPECT_EQ(std::set<int32_t>(heads.begin(), heads.end()).size(), heads.size());
    std::vector<int32_t> out(12, 77);
    writeKeepIndices(s, heads, out.data());
    for (size_t k = 0; k < 12; ++k)
      EXPECT_EQ(out[k], k < heads.size() ? heads[k] : -1) << "step " << step << " entry " << k;
    for (int32_t h : heads)
      EXPECT_TRUE(h >= 0 && h < 12) << h;
  }
}

TEST(MasksHeads, DrawIsAFunctionOfSeedStepAndDrawAndStepsDiffer) {
  MaskSpec s = headsSpec(0.5f, 16);
  EXPECT_EQ(sampleKeptPositions(s, 11, 1234, 2), sampleKeptPositions(s, 11, 1234, 2));
  sampleKeptPositions(s, 11, 5, 2); // no history
  EXPECT_EQ(sampleKeptPositions(s, 11, 1234, 2), sampleKeptPositions(s, 11, 1234, 2));
  std::set<std::vector<int32_t>> masks;
  for (int64_t step = 0; step < 20; ++step)
    masks.insert(sampleKeptPositions(s, 7, step, 0));
  EXPECT_EQ(masks.size(), 20u); // 2^16 patterns: 20 steps all differ (for this seed)
  EXPECT_NE(sampleKeptPositions(s, 7, 0, 0), sampleKeptPositions(s, 8, 0, 0));
  EXPECT_NE(sampleKeptPositions(s, 7, 0, 0), sampleKeptPositions(s, 7, 0, 1));
}

TEST(MasksHeads, TheHthUniformOfTheMaskStreamDecidesHeadH) {
  // The rule itself, against the stream: head h kept iff uniform number h < r.
  for (float keep : {0.5f, 0.3f, 0.97f})
    for (int64_t step : {int64_t(0), int64_t(17), int64_t(1) << 35}) {
      MaskSpec s = headsSpec(keep, 37);
      PhiloxStream rng(21, Purpose::Mask, uint64_t(step), 4);
      std::vector<int32_t> expected;
      for (int32_t h = 0; h < 37; ++h)
        if (rng.uniform() < keep)
          expected.push_back(h);
      EXPECT_EQ(sampleKeptPositions(s, 21, step, 4), expected) << keep << " " << step;
    }
}

TEST(MasksHeads, KeepThresholdIsTheUniformTest) {
  // (x >> 8) < sbp_heads_keep_threshold(r) iff (x >> 8) * 2^-24 < r: checked at
  // the threshold and its neighbours for ratios with and without exact 24-bit
  // products, including the float just below 1 and the smallest ratios.
  std::vector<float> ratios = {1.0f, 0.5f, 0.25f, 0.1f, 1.0f / 3.0f, 0.7f, 0.9f, 0.999f,
                               std::nextafter(1.0f, 0.0f), std::nextafter(0.5f, 1.0f),
                               std::nextafter(0.5f, 0.0f), 1e-7f, 0x1.0p-24f, 0x1.8p-25f,
                               1e-30f};
  for (int k = 1; k < 200; ++k)
    ratios.push_back(float(k) / 199.0f + 1e-9f * float(k));
  for (float r : ratios) {
    uint32_t t = sbp_heads_keep_threshold(r);
    ASSERT_LE(t, 1u << 24);
    for (int64_t v = int64_t(t) - 2; v <= int64_t(t) + 2; ++v) {
      if (v < 0 || v >= (int64_t(1) << 24))
        continue;
      bool by_float = float(v) * 0x1.0p-24f < r;
      EXPECT_EQ(v < int64_t(t), by_float) << "r " << r << " v " << v << " threshold " << t;
    }
  }
  EXPECT_EQ(sbp_heads_keep_threshold(1.0f), 1u << 24);
  EXPECT_EQ(sbp_heads_keep_threshold(0.5f), 1u << 23);
  EXPECT_EQ(sbp_heads_keep_threshold(0.0f), 0u);
  EXPECT_EQ(sbp_heads_keep_threshold(std::nanf("")), 0u);
  EXPECT_EQ(sbp_heads_capacity(12), 12);
}

TEST(MasksHeads, MaxKeptAndCapacityAreTheNumberOfHeads) {
  for (float keep : {0.1f, 0.5f, 1.0f})
    EXPECT_EQ(maxKeptTokens(headsSpec(keep, 12)), 12) << keep;
  EXPECT_EQ(maxKeptTokens(headsSpec(0.5f, 1)), 1);
  std::vector<int32_t> out(3);
  try {
    writeKeepIndices(spec(SBP_MASK_HEADS, 0.5f, 1, 6, 0, 3), {0, 1, 2, 4}, out.data());
    FAIL() << "no error";
  } catch (const Error &e) {
    EXPECT_EQ(e.status(), SBP_ERROR_INTERNAL);
    EXPECT_NE(std::string(e.what()).find("4 heads"), std::string::npos) << e.what();
  }
}

// A heads group is one block's draw (vit_sbp.py draws every block's heads
// anew; sbpc gives each block its own group): heads groups never share a draw,
// even with equal settings, and never with a token group.
TEST(MasksHeads, EveryHeadsGroupDrawsItsOwnHeads) {
  MaskSampler sampler({headsSpec(0.5f, 12), spec(SBP_MASK_RANDOM, 0.5f, 1, 12),
                       headsSpec(0.5f, 12), headsSpec(0.25f, 12), headsSpec(0.5f, 16),
                       spec(SBP_MASK_GRID, 0.5f, 1, 12), headsSpec(0.25f, 12),
                       spec(SBP_MASK_RANDOM, 0.5f, 1, 12)});
  for (int32_t g = 0; g < 7; ++g)
    EXPECT_EQ(sampler.drawOf(g), uint32_t(g));
  EXPECT_EQ(sampler.drawOf(7), 1u); // token groups still share
  EXPECT_FALSE(headsSpec(0.5f, 12).sharesDrawWith(spec(SBP_MASK_RANDOM, 0.5f, 1, 12)));
  EXPECT_FALSE(headsSpec(0.5f, 12).sharesDrawWith(headsSpec(0.5f, 12)));
  std::vector<std::vector<int32_t>> out;
  int differ = 0, differ_quarter = 0;
  for (int64_t step = 0; step < 40; ++step) {
    sampler.sample(5, step, out);
    EXPECT_EQ(out[1], out[7]);
    EXPECT_EQ(out[4].size(), 16u);
    differ += out[0] != out[2];
    differ_quarter += out[3] != out[6];
  }
  // Two independent draws of 12 heads at 0.5 agree with probability 2^-12.
  EXPECT_GT(differ, 35);
  EXPECT_GT(differ_quarter, 20);
}

// Independent draws: over many steps, the heads two groups keep agree as often
// as independent coins would (r^2 + (1-r)^2 per head), not always.
TEST(MasksHeads, PerBlockDrawsAreIndependent) {
  const int32_t heads = 12;
  const float r = 0.5f;
  MaskSampler sampler({headsSpec(r, heads), headsSpec(r, heads)});
  std::vector<std::vector<int32_t>> out;
  int64_t same = 0, both = 0, total = 0;
  for (int64_t step = 0; step < 2000; ++step) {
    sampler.sample(11, step, out);
    std::set<int32_t> a(out[0].begin(), out[0].end()), b(out[1].begin(), out[1].end());
    for (int32_t h = 0; h < heads; ++h) {
      bool ka = a.count(h), kb = b.count(h);
      same += ka == kb;
      both += ka && kb;
      ++total;
    }
  }
  EXPECT_NEAR(double(same) / double(total), 0.5, 0.02);
  EXPECT_NEAR(double(both) / double(total), 0.25, 0.02);
}

TEST(MasksHeads, FixedHeadIndicesAreValidatedAndPadded) {
  MaskSpec s = headsSpec(0.5f, 6);
  const int32_t good[] = {0, 2, 5};
  EXPECT_EQ(checkedFixedIndices(s, "h0", good, 3), (std::vector<int32_t>{0, 2, 5, -1, -1, -1}));
  const int32_t all[] = {0, 1, 2, 3, 4, 5};
  EXPECT_EQ(checkedFixedIndices(s, "h0", all, 6), (std::vector<int32_t>(all, all + 6)));
  // No head kept: legal, with or without an array.
  EXPECT_EQ(checkedFixedIndices(s, "h0", good, 0), (std::vector<int32_t>(6, -1)));
  EXPECT_EQ(checkedFixedIndices(s, "h0", nullptr, 0), (std::vector<int32_t>(6, -1)));
  auto message = [&](std::vector<int32_t> idx) -> std::string {
    try {
      checkedFixedIndices(s, "h0", idx.data(), int32_t(idx.size()));
      return "";
    } catch (const Error &e) {
      EXPECT_EQ(e.status(), SBP_ERROR_INVALID_ARGUMENT);
      return e.what();
    }
  };
  for (const std::vector<int32_t> &bad :
       {std::vector<int32_t>{0, 6}, {-1}, {3, 1}, {2, 2}, {0, 1, 2, 3, 4, 5, 5}}) {
    std::string what = message(bad);
    EXPECT_NE(what.find("mask group 'h0'"), std::string::npos) << what;
    EXPECT_NE(what.find("head ind"), std::string::npos) << what;
  }
  EXPECT_NE(message({0, 6}).find("outside [0, 6)"), std::string::npos);
  EXPECT_NE(message({0, 1, 2, 3, 4, 5, 5}).find("7 head indices given, capacity is 6"),
            std::string::npos);
}

// ---- samples (SBP_MASK_SAMPLES, drop path): drawn as heads, never shared.

MaskSpec samplesSpec(float keep, int32_t batch) { return spec(SBP_MASK_SAMPLES, keep, 1, batch, 0, batch); }

TEST(MasksSamples, TheBthUniformOfTheMaskStreamDecidesSampleB) {
  for (float keep : {0.9f, 0.7f, 0.5f})
    for (int64_t step : {int64_t(0), int64_t(3), int64_t(1) << 33}) {
      PhiloxStream rng(11, Purpose::Mask, uint64_t(step), 2);
      std::vector<int32_t> expected;
      for (int32_t b = 0; b < 64; ++b)
        if (rng.uniform() < keep)
          expected.push_back(b);
      EXPECT_EQ(sampleKeptPositions(samplesSpec(keep, 64), 11, step, 2), expected) << keep << " " << step;
      // The same draw as a heads group of the same size.
      EXPECT_EQ(sampleKeptPositions(headsSpec(keep, 64), 11, step, 2), expected);
    }
}

TEST(MasksSamples, EveryGroupDrawsItsOwnAndMayKeepNone) {
  MaskSampler sampler({samplesSpec(0.9f, 8), samplesSpec(0.9f, 8), headsSpec(0.9f, 8), samplesSpec(0.9f, 8)});
  for (int32_t g = 0; g < 4; ++g)
    EXPECT_EQ(sampler.drawOf(g), uint32_t(g));
  EXPECT_FALSE(samplesSpec(0.5f, 8).sharesDrawWith(samplesSpec(0.5f, 8)));
  EXPECT_EQ(maxKeptTokens(samplesSpec(0.1f, 8)), 8);
  std::vector<std::vector<int32_t>> out;
  int differ = 0, none = 0, kept = 0;
  for (int64_t step = 0; step < 400; ++step) {
    sampler.sample(9, step, out);
    differ += out[0] != out[1];
    kept += int(std::count_if(out[0].begin(), out[0].end(), [](int32_t b) { return b >= 0; }));
    none += std::all_of(out[3].begin(), out[3].end(), [](int32_t b) { return b < 0; });
  }
  // Two draws of 8 samples at 0.9 agree with probability 0.82^8 = 0.2.
  EXPECT_GT(differ, 250);
  EXPECT_NEAR(kept / 400.0, 7.2, 0.25);
  EXPECT_EQ(none, 0); // 0.1^8 per step
  std::vector<int32_t> empty(4, 5);
  writeKeepIndices(samplesSpec(0.5f, 4), {}, empty.data());
  EXPECT_EQ(empty, (std::vector<int32_t>{-1, -1, -1, -1}));
}

TEST(MasksSamples, FixedSampleIndicesAreValidated) {
  MaskSpec s = samplesSpec(0.5f, 4);
  int32_t good[] = {0, 3};
  EXPECT_EQ(checkedFixedIndices(s, "dp", good, 2), (std::vector<int32_t>{0, 3, -1, -1}));
  int32_t bad[] = {4};
  try {
    checkedFixedIndices(s, "dp", bad, 1);
    FAIL() << "sample 4 of 4 accepted";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("sample index 4 (entry 0) is outside [0, 4)"), std::string::npos)
        << e.what();
  }
}

TEST(MasksHeads, UnknownKindsAreRefusedNotDrawn) {
  for (int32_t kind : {4, 7, -1}) {
    MaskSpec s = spec(kind, 0.5f, 1, 8);
    for (int which = 0; which < 2; ++which) {
      try {
        if (which == 0)
          sampleKeptPositions(s, 1, 0, 0);
        else
          maxKeptTokens(s);
        FAIL() << "kind " << kind << " accepted";
      } catch (const Error &e) {
        EXPECT_EQ(e.status(), SBP_ERROR_INVALID_ARGUMENT);
        EXPECT_NE(std::string(e.what()).find("unknown mask kind " + std::to_string(kind)),
                  std::string::npos)
            << e.what();
      }
    }
  }
  EXPECT_STREQ(maskKindName(SBP_MASK_HEADS), "heads");
  EXPECT_STREQ(maskKindName(SBP_MASK_SAMPLES), "samples");
  EXPECT_STREQ(maskKindName(4), "unknown");
  EXPECT_FALSE(isKnownMaskKind(4));
}
