// CudaPlanTest.cpp - the CUDA backend's host-side arithmetic, on any machine:
// the layout of the one device allocation, the kernel tables, the step scalars
// and the mask draw of MaskDraw.h (compiled for the host here, for the device
// in MaskKernels.cu) against Philox.cpp and Masks.cpp.
#include "Masks.h"
#include "Optimizers.h"
#include "Philox.h"
#include "cuda/DevicePlan.h"
#include "cuda/MaskDraw.h"
#include "sbp/mask_rules.h"

#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

using namespace sbp::rt;
using namespace sbp::rt::cuda;

namespace {

MaskSpec spec(int32_t kind, float keep, int32_t h, int32_t w, int32_t prefix = 0, int32_t cell = 1) {
  MaskSpec s;
  s.kind = kind;
  s.keep_ratio = keep;
  s.grid_h = h;
  s.grid_w = w;
  s.prefix_tokens = prefix;
  s.cell = cell;
  s.capacity = prefix + h * w;
  s.capacity = maxKeptTokens(s);
  return s;
}

// The kernel's result for one group, computed serially from MaskDraw.h: what
// sampleMasksKernel writes into the group's keep array.
// The draw is made on the drawn grid (the group's grid divided by its cell);
// the compaction walks the group's grid and asks each position's drawn one.
std::vector<int32_t> emulateKernel(const DeviceMaskGroup &g, uint64_t seed, int64_t step) {
  const int32_t n = g.grid_h * g.grid_w, drawn_n = g.drawnSize(), drawn_w = g.grid_w / g.cell;
  std::vector<uint8_t> kept(size_t(drawn_n), 1);
  if (g.kind == SBP_MASK_RANDOM) {
    std::vector<int32_t> order(static_cast<size_t>(drawn_n));
    std::iota(order.begin(), order.end(), 0);
    randomDropOrder(order.data(), drawn_n, g.drop, seed, step, g.draw);
    for (int32_t k = 0; k < g.drop; ++k)
      kept[size_t(order[size_t(k)])] = 0;
  } else if (g.kind == SBP_MASK_HEADS) {
    for (int32_t p = 0; p < n; ++p) // one thread per head in the kernel
      kept[size_t(p)] = headKeeps(p, g.head_threshold, seed, step, g.draw);
  } else {
    int32_t start = gridStart(g.stride, seed, step, g.draw);
    for (int32_t q = 0; q < drawn_n; ++q)
      kept[size_t(q)] = gridKeeps(q, drawn_w, g.stride, g.keep_matching, start);
  }
  std::vector<int32_t> out(size_t(g.capacity), -1);
  int32_t slot = 0;
  for (int32_t t = 0; t < g.prefix_tokens; ++t)
    out[size_t(slot++)] = t;
  for (int32_t p = 0; p < n; ++p)
    if (kept[size_t(drawnPosition(p, g.grid_w, g.cell))])
      out[size_t(slot++)] = g.prefix_tokens + p;
  return out;
}

} // namespace

TEST(CudaPlan, LayoutAlignsEveryRegion) {
  DeviceLayout layout(256);
  EXPECT_EQ(layout.add(10), 0u);
  EXPECT_EQ(layout.add(0), 256u); // an empty region still gets its own address
  EXPECT_EQ(layout.add(256), 512u);
  EXPECT_EQ(layout.add(1), 768u);
  EXPECT_EQ(layout.total(), 769u);
  DeviceLayout big(256);
  big.add(size_t(1) << 40);
  EXPECT_EQ(big.add(4) % 256, 0u);
}

TEST(CudaPlan, DevicePhiloxIsPhilox) {
  for (uint64_t seed : {uint64_t(0), uint64_t(1), uint64_t(0xDEADBEEFCAFEF00Dull)})
    for (int64_t step : {int64_t(0), int64_t(7), int64_t(1) << 40})
      for (uint32_t draw : {0u, 3u, 0xFFFFFFu}) {
        PhiloxStream host(seed, Purpose::Mask, uint64_t(step), draw);
        PhiloxDraws device = maskStream(seed, step, draw);
        for (int k = 0; k < 11; ++k) // crosses block boundaries
          ASSERT_EQ(philoxNext(device), host.nextU32()) << seed << " " << step << " " << k;
        for (uint32_t n : {1u, 2u, 7u, 196u, 65536u})
          ASSERT_EQ(philoxBelow(device, n), host.below(n));
      }
}

TEST(CudaPlan, MaskWordAtIsTheStreamsWord) {
  for (uint64_t seed : {uint64_t(0), uint64_t(9), ~uint64_t(0)})
    for (int64_t step : {int64_t(0), int64_t(5), (int64_t(1) << 40) + 3})
      for (uint32_t draw : {0u, 2u, 0xFFFFFFu}) {
        PhiloxStream host(seed, Purpose::Mask, uint64_t(step), draw);
        for (uint32_t k = 0; k < 70; ++k) // many blocks, every position in a block
          ASSERT_EQ(maskWordAt(seed, step, draw, k), host.nextU32())
              << seed << " " << step << " " << draw << " word " << k;
      }
}

TEST(CudaPlan, HeadKeepsIsTheHostsUniformTest) {
  // Head by head against the host's rule (uniform h of the stream < r), for
  // ratios whose 24-bit product is exact and ones where it is not.
  for (float keep : {0.5f, 0.1f, 1.0f / 3.0f, 0.7f, 0.999f, 1.0f, 0x1.0p-24f})
    for (int64_t step : {int64_t(0), int64_t(3), int64_t(123456)}) {
      uint32_t threshold = sbp_heads_keep_threshold(keep);
      PhiloxStream host(77, Purpose::Mask, uint64_t(step), 1);
      for (int32_t h = 0; h < 300; ++h)
        ASSERT_EQ(headKeeps(h, threshold, 77, step, 1), host.uniform() < keep)
            << "keep " << keep << " step " << step << " head " << h;
    }
}

TEST(CudaPlan, HeadKeepsComparesTheTop24BitsStrictly) {
  // At threshold v = word >> 8 the head is dropped (u < r is strict), at v + 1 kept.
  for (int32_t h = 0; h < 64; ++h) {
    uint32_t v = maskWordAt(5, 11, 2, uint32_t(h)) >> 8;
    EXPECT_FALSE(headKeeps(h, v, 5, 11, 2)) << h;
    EXPECT_TRUE(headKeeps(h, v + 1, 5, 11, 2)) << h;
  }
}

TEST(CudaPlan, MaskTableAndDrawsMatchTheHostSampler) {
  std::vector<MaskSpec> specs;
  for (float keep : {0.5f, 0.25f, 1.0f / 3.0f, 0.75f, 0.8f, 0.9f, 1.0f, 0.1f})
    for (int32_t kind : {int32_t(SBP_MASK_GRID), int32_t(SBP_MASK_RANDOM)}) {
      specs.push_back(spec(kind, keep, 14, 14, 1));
      specs.push_back(spec(kind, keep, 4, 6, 0));
    }
  specs.push_back(spec(SBP_MASK_GRID, 0.5f, 14, 14, 2)); // shares m0's draw, other prefix
  // Derived groups (ConvNeXt's stages): drawn on the coarse grid, one draw for
  // the three grid groups 56/4, 28/2, 14/1 of a kind.
  const size_t first_derived = specs.size();
  for (float keep : {0.5f, 0.25f, 0.75f, 1.0f / 3.0f})
    for (int32_t kind : {int32_t(SBP_MASK_GRID), int32_t(SBP_MASK_RANDOM)}) {
      specs.push_back(spec(kind, keep, 56, 56, 0, 4));
      specs.push_back(spec(kind, keep, 28, 28, 0, 2));
      specs.push_back(spec(kind, keep, 14, 14, 0, 1));
      specs.push_back(spec(kind, keep, 12, 18, 0, 3)); // 4x6 drawn, odd cell
    }
  const size_t first_heads = specs.size();
  for (float keep : {0.5f, 0.25f, 0.75f, 0.9f, 1.0f, 0.1f, 1.0f / 3.0f})
    for (int32_t heads : {1, 6, 12, 16, 300}) // 300: more than one tile of the kernel
      specs.push_back(spec(SBP_MASK_HEADS, keep, 1, heads, 0));
  // Per-block heads groups (a 12-block model's): the same settings, each its own draw.
  for (int block = 0; block < 12; ++block)
    specs.push_back(spec(SBP_MASK_HEADS, 0.502538f, 1, 3, 0));
  specs.push_back(spec(SBP_MASK_HEADS, 0.5f, 1, 12, 0)); // equal to an earlier group, not shared
  MaskSampler sampler(specs);
  std::vector<DeviceMaskGroup> table = maskGroupTable(sampler);
  ASSERT_EQ(table.size(), specs.size());
  EXPECT_EQ(table[first_derived - 1].draw, 0u);
  EXPECT_EQ(table[first_derived].cell, 4);
  EXPECT_EQ(table[first_derived + 1].draw, table[first_derived].draw);
  EXPECT_EQ(table[first_derived + 2].draw, table[first_derived].draw);
  EXPECT_EQ(table[first_derived + 4 + 3].drop, 12); // random 0.5 on 4x6 drawn: 12 of 24
  EXPECT_EQ(table[first_derived + 4 + 3].drawnSize(), 24);
  for (size_t g = first_heads; g < table.size(); ++g)
    EXPECT_EQ(table[g].draw, uint32_t(g)); // heads groups never share a draw
  // A 14x14 grid at 0.6 keeps half, as the reference's stride 2 (round half to even).
  EXPECT_EQ(maskGroupTable(MaskSampler({spec(SBP_MASK_GRID, 0.6f, 14, 14, 1)}))[0].stride, 2);
  EXPECT_EQ(table[first_heads].kind, SBP_MASK_HEADS);
  EXPECT_EQ(table[first_heads].head_threshold, 1u << 23);
  EXPECT_EQ(table[first_heads].capacity, 1);
  EXPECT_EQ(table[first_heads + 3].capacity, 16);
  for (uint64_t seed : {uint64_t(0), uint64_t(42), ~uint64_t(0)})
    for (int64_t step : {int64_t(0), int64_t(1), int64_t(2), int64_t(99), int64_t(123456789)}) {
      std::vector<std::vector<int32_t>> host;
      sampler.sample(seed, step, host);
      for (size_t g = 0; g < table.size(); ++g)
        ASSERT_EQ(emulateKernel(table[g], seed, step), host[g])
            << "group " << g << " seed " << seed << " step " << step;
    }
}

TEST(CudaPlan, OptimizerChunksCoverEachSpanOnce) {
  std::vector<ParamSpan> spans = {{0, 10000, true}, {10240, 5, false}, {20000, 4096, true}};
  std::vector<OptimizerChunk> chunks = optimizerChunks(spans, 4096);
  ASSERT_EQ(chunks.size(), 3u + 1u + 1u);
  EXPECT_EQ(chunks[0].offset, 0);
  EXPECT_EQ(chunks[1].offset, 4096);
  EXPECT_EQ(chunks[2].offset, 8192);
  EXPECT_EQ(chunks[2].numel, 10000 - 8192);
  EXPECT_EQ(chunks[3].offset, 10240);
  EXPECT_EQ(chunks[3].decay, 0);
  EXPECT_EQ(chunks[4].numel, 4096);
  EXPECT_EQ(chunks[4].decay, 1);
  EXPECT_TRUE(optimizerChunks({}).empty());
}

TEST(CudaPlan, StepScalarsAreTheHostOptimizersFactors) {
  OptimizerConfig c;
  c.kind = SBP_OPT_ADAMW;
  c.lr = 0.003f;
  c.weight_decay = 0.05f;
  c.beta1 = 0.9f;
  c.beta2 = 0.999f;
  c.eps = 1e-8f;
  // One AdamW update through Optimizers.cpp, redone from the scalars.
  for (int64_t step : {int64_t(0), int64_t(1), int64_t(999)}) {
    StepScalars s = stepScalars(c, 7, step, true);
    EXPECT_EQ(s.seed, 7u);
    EXPECT_EQ(s.step, step);
    EXPECT_EQ(s.update, 1);
    float p = 0.5f, g = 0.25f, m = 0.01f, v = 0.002f;
    float pe = p, me = m, ve = v;
    applyOptimizer(c, {{0, 1, true}}, &p, &g, {&m, &v}, step + 1, 1);
    pe *= s.adam_decay;
    me += (g - me) * (1.0f - s.beta1);
    ve = ve * s.beta2 + (1.0f - s.beta2) * g * g;
    pe -= s.adam_step_size * (me / (std::sqrt(ve) / s.adam_bias2_sqrt + s.eps));
    EXPECT_EQ(p, pe) << "step " << step;
    EXPECT_EQ(m, me);
    EXPECT_EQ(v, ve);
  }
  EXPECT_EQ(stepScalars(c, 0, 0, false).update, 0);
}
