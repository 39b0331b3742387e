// CudaBackendTest.cpp - the CUDA backend's kernels against the host code, on
// a GPU (ctest label "cuda"; skipped without a device): masks sampled on the
// device (grid, random, heads; derived groups) equal MaskSampler's bit for bit, the fused
// optimizer equals Optimizers.cpp.
#include "cuda/CudaBackend.h"
#include "Backend.h"
#include "Masks.h"
#include "Optimizers.h"
#include "Philox.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

using namespace sbp::rt;

namespace {

#define SKIP_WITHOUT_GPU()                                                                         \
  do {                                                                                             \
    if (cuda::deviceCount() == 0)                                                                  \
      GTEST_SKIP() << "no CUDA device";                                                            \
  } while (0)

MaskSpec spec(int32_t kind, float keep, int32_t h, int32_t w, int32_t prefix, int32_t slack = 0,
              int32_t cell = 1) {
  MaskSpec s;
  s.kind = kind;
  s.keep_ratio = keep;
  s.grid_h = h;
  s.grid_w = w;
  s.prefix_tokens = prefix;
  s.cell = cell;
  s.capacity = prefix + h * w;
  s.capacity = maxKeptTokens(s) + slack;
  return s;
}

std::vector<float> randomFloats(size_t n, uint64_t seed, float scale) {
  PhiloxStream rng(seed, Purpose::ParamInit, 0);
  std::vector<float> v(n);
  for (float &x : v)
    x = scale * rng.normal();
  return v;
}

} // namespace

TEST(CudaBackend, DeviceMasksEqualHostMasks) {
  SKIP_WITHOUT_GPU();
  std::vector<MaskSpec> specs;
  for (float keep : {0.5f, 0.25f, 1.0f / 3.0f, 0.75f, 0.8f, 0.9f, 1.0f, 0.1f, 0.6f})
    for (int32_t kind : {int32_t(SBP_MASK_GRID), int32_t(SBP_MASK_RANDOM)}) {
      specs.push_back(spec(kind, keep, 14, 14, 1));
      specs.push_back(spec(kind, keep, 7, 7, 0, 3)); // capacity with slack: -1 padding
      specs.push_back(spec(kind, keep, 4, 6, 2));
      specs.push_back(spec(kind, keep, 1, 1, 0));
      specs.push_back(spec(kind, keep, 3, 300, 1)); // wide: more than one tile
    }
  specs.push_back(spec(SBP_MASK_RANDOM, 0.3f, 64, 64, 1)); // 4096 positions
  specs.push_back(spec(SBP_MASK_GRID, 0.5f, 14, 14, 0));   // shares the first group's draw
  // Derived groups: ConvNeXt-T's stages (56/4, 28/2, 14/1: one draw per kind),
  // an odd cell on a non-square grid, and a fine grid of more than one tile
  // over a drawn grid of more than one tile.
  for (float keep : {0.5f, 0.25f, 0.75f, 1.0f / 3.0f, 0.9f})
    for (int32_t kind : {int32_t(SBP_MASK_GRID), int32_t(SBP_MASK_RANDOM)}) {
      specs.push_back(spec(kind, keep, 56, 56, 0, 0, 4));
      specs.push_back(spec(kind, keep, 28, 28, 0, 5, 2)); // slack: -1 padding
      specs.push_back(spec(kind, keep, 14, 14, 0, 0, 1));
      specs.push_back(spec(kind, keep, 15, 21, 0, 0, 3));
      specs.push_back(spec(kind, keep, 40, 400, 0, 0, 2));
    }
  // Heads: grid 1 x H, no prefix, capacity H; some draws keep no head at all.
  for (float keep : {0.5f, 0.25f, 0.75f, 0.9f, 1.0f, 0.1f, 1.0f / 3.0f, 0.05f})
    for (int32_t heads : {1, 3, 6, 12, 16, 300}) // 300: more than one tile
      specs.push_back(spec(SBP_MASK_HEADS, keep, 1, heads, 0));
  specs.push_back(spec(SBP_MASK_HEADS, 0.5f, 1, 12, 0)); // same settings, its own draw
  // Samples (drop path): grid 1 x batch, drawn as heads, one draw per group;
  // 0.9 of 8 (ConvNeXt-T's late blocks), large batches over several tiles.
  for (float keep : {0.9f, 0.7f, 0.95f, 0.5f})
    for (int32_t batch : {1, 8, 128, 1024})
      specs.push_back(spec(SBP_MASK_SAMPLES, keep, 1, batch, 0));
  // drop_head per block: a 12-block ViT-Tiny's heads groups (3 heads, the
  // reference's keep probability 99/197), one draw each; and ratios whose grid
  // stride is a tie (0.4, 0.6: 2.5 rounds to 2).
  const size_t first_block = specs.size();
  for (int block = 0; block < 12; ++block)
    specs.push_back(spec(SBP_MASK_HEADS, 0.502538f, 1, 3, 0));
  for (float keep : {0.4f, 0.6f, 0.08f, 0.92f})
    specs.push_back(spec(SBP_MASK_GRID, keep, 14, 14, 1));
  MaskSampler sampler(specs);
  for (size_t g = first_block; g < first_block + 12; ++g)
    ASSERT_EQ(sampler.drawOf(int32_t(g)), uint32_t(g));
  int blocks_differ = 0;
  std::vector<int64_t> steps;
  for (int64_t s = 0; s < 24; ++s)
    steps.push_back(s);
  for (int64_t s : {int64_t(1000003), (int64_t(1) << 33) + 5, INT64_MAX - 1})
    steps.push_back(s);
  for (uint64_t seed : {uint64_t(0), uint64_t(1), uint64_t(0xDEADBEEFCAFEull), ~uint64_t(0)}) {
    auto device = cuda::sampleMasksOnDevice(sampler, seed, steps);
    ASSERT_EQ(device.size(), steps.size());
    for (size_t s = 0; s < steps.size(); ++s) {
      std::vector<std::vector<int32_t>> host;
      sampler.sample(seed, steps[s], host);
      ASSERT_EQ(device[s].size(), host.size());
      for (size_t g = 0; g < host.size(); ++g)
        ASSERT_EQ(device[s][g], host[g])
            << "seed " << seed << " step " << steps[s] << " group " << g << " (kind "
            << specs[g].kind << ", keep " << specs[g].keep_ratio << ", grid " << specs[g].grid_h
            << "x" << specs[g].grid_w << ", cell " << specs[g].cell << ")";
      for (size_t g = first_block + 1; g < first_block + 12; ++g)
        blocks_differ += device[s][g] != device[s][first_block];
    }
  }
  // The blocks' heads are drawn apart on the device too (two independent draws
  // of 3 heads at about 0.5 are equal with probability about 1/8).
  EXPECT_GT(blocks_differ, int(4 * steps.size() * 11 / 2));
}

// The fused kernel over tensors with gaps, mixed decay flags and more than one
// chunk, against applyOptimizer on the same data, for a few steps with the
// learning rate changing.
class CudaOptimizer : public ::testing::TestWithParam<int> {};

TEST_P(CudaOptimizer, FusedKernelEqualsHostOptimizer) {
  SKIP_WITHOUT_GPU();
  OptimizerConfig c;
  switch (GetParam()) {
  case 0: // AdamW
    c.kind = SBP_OPT_ADAMW;
    c.lr = 0.01f;
    c.weight_decay = 0.05f;
    c.beta1 = 0.9f;
    c.beta2 = 0.999f;
    c.eps = 1e-8f;
    break;
  case 1: // SGD, momentum, coupled weight decay
    c.kind = SBP_OPT_SGD;
    c.lr = 0.05f;
    c.momentum = 0.9f;
    c.weight_decay = 1e-4f;
    break;
  case 2: // SGD, Nesterov
    c.kind = SBP_OPT_SGD;
    c.lr = 0.1f;
    c.momentum = 0.8f;
    c.nesterov = 1;
    c.weight_decay = 0.01f;
    break;
  default: // plain SGD
    c.kind = SBP_OPT_SGD;
    c.lr = 0.2f;
    break;
  }
  const std::vector<ParamSpan> spans = {
      {0, 10000, true}, {10007, 3, false}, {10016, 4096, true}, {14200, 1, false}};
  const size_t n = 14208, bytes = n * sizeof(float);
  const size_t num_state = c.stateNames().size();
  auto backend = makeBackend("cuda", 0);
  std::vector<float> p = randomFloats(n, 1, 1.0f);
  std::vector<std::vector<float>> state(num_state, std::vector<float>(n, 0.0f));
  DeviceBuffer dp = backend->allocate(bytes), dg = backend->allocate(bytes);
  std::vector<DeviceBuffer> ds;
  for (size_t k = 0; k < num_state; ++k)
    ds.push_back(backend->allocate(bytes));
  backend->upload(dp.data(), p.data(), bytes);
  for (int64_t step = 1; step <= 4; ++step) {
    std::vector<float> g = randomFloats(n, uint64_t(100 + step), 0.1f);
    g[5] = 0.0f; // AdamW with a zero gradient
    backend->upload(dg.data(), g.data(), bytes);
    std::vector<float *> host_state, device_state;
    for (size_t k = 0; k < num_state; ++k) {
      host_state.push_back(state[k].data());
      device_state.push_back(ds[k].as<float>());
    }
    applyOptimizer(c, spans, p.data(), g.data(), host_state, step, 1);
    backend->optimizerStep(c, spans, dp.as<float>(), dg.as<const float>(), device_state, step, 0);
    std::vector<float> got(n);
    backend->download(got.data(), dp.data(), bytes);
    size_t differing = 0;
    for (size_t i = 0; i < n; ++i) {
      ASSERT_NEAR(got[i], p[i], 1e-6) << "step " << step << " element " << i;
      differing += std::memcmp(&got[i], &p[i], sizeof(float)) != 0;
    }
    EXPECT_EQ(differing, 0u) << "the kernel rounds as the host does, element by element";
    for (size_t k = 0; k < num_state; ++k) {
      backend->download(got.data(), ds[k].data(), bytes);
      for (size_t i = 0; i < n; ++i)
        ASSERT_NEAR(got[i], state[k][i], 1e-6) << "state " << k << " element " << i;
    }
    c.lr *= 0.5f; // a schedule
  }
}

INSTANTIATE_TEST_SUITE_P(Kinds, CudaOptimizer, ::testing::Values(0, 1, 2, 3));

TEST(CudaBackend, ReportsAndChecksTheDevice) {
  SKIP_WITHOUT_GPU();
  auto backend = makeBackend("cuda", 0);
  EXPECT_STREQ(backend->target(), "cuda");
  EXPECT_EQ(backend->deviceOrdinal(), 0);
  EXPECT_GT(std::strlen(backend->deviceName()), 0u);
  EXPECT_NE(backend->stream(), nullptr);
  DeviceBuffer buffer = backend->allocate(1000);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(buffer.data()) % kBufferAlignment, 0u);
  EXPECT_TRUE(backend->isDevicePointer(buffer.data()));
  float host = 0.0f;
  EXPECT_FALSE(backend->isDevicePointer(&host));
  try {
    makeBackend("cuda", cuda::deviceCount());
    ADD_FAILURE() << "a device past the last was accepted";
  } catch (const Error &e) {
    EXPECT_EQ(e.status(), SBP_ERROR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(e.what()).find("does not exist"), std::string::npos) << e.what();
  }
}
