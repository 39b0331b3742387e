//===- LinkTest.cpp - A trainer-like .so links and runs the kernels -------===//

#include "TestSupport.h"
#include "sbp/cpu_kernels.h"

#include <dlfcn.h>

namespace sbp::cpu::test {
namespace {

TEST(Link, SharedObjectBuiltLikeSbpcRunsTheKernels) {
  void *handle = dlopen(SBP_CPU_SMOKE_TRAINER, RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(handle, nullptr) << dlerror();
  using StepFn = int (*)(float *);
  auto step = reinterpret_cast<StepFn>(dlsym(handle, "sbp_cpu_smoke_step"));
  ASSERT_NE(step, nullptr) << dlerror();
  float out[4] = {0, 0, 0, 0};
  ASSERT_EQ(step(out), 0);

  // The same computation through the library linked into this binary.
  float x[2 * 3] = {1.0f, 2.0f, 3.0f, -1.0f, 0.5f, 2.0f};
  float w[3 * 4] = {0.1f,  0.2f, 0.3f, 0.4f,  -0.5f, 0.6f,
                    -0.7f, 0.8f, 0.9f, -1.0f, 1.1f,  -1.2f};
  float h[8], y[8], want[4];
  float gamma[4] = {1, 1, 1, 1}, beta[4] = {0, 0, 0, 0};
  gemm(false, false, 2, 4, 3, 1.0f, x, 3, w, 4, 0.0f, h, 4);
  layer_norm(h, gamma, beta, y, 2, 4, 1e-5f);
  gelu(y, h, 8);
  mean_tokens(h, want, 1, 2, 4);
  bool anyNonZero = false;
  for (int i = 0; i < 4; ++i) {
    EXPECT_FLOAT_EQ(out[i], want[i]) << i;
    anyNonZero |= out[i] != 0.0f;
  }
  EXPECT_TRUE(anyNonZero);
  // The kernels are hidden inside the trainer: not in its dynamic symbols.
  EXPECT_EQ(dlsym(handle, "_ZN3sbp3cpu4gemmEbblllfPKflS2_lfPfl"), nullptr);
  EXPECT_EQ(dlsym(handle, "_ZN3sbp3cpu10layer_normEPKfS2_S2_Pfllf"), nullptr);
  dlclose(handle);
}

} // namespace
} // namespace sbp::cpu::test
