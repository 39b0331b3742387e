//===- TrainerLinkTest.cu - dlopen the stand-in CUDA trainer --------------===//

#include "CudaTestSupport.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace sbp::cuda::test {
namespace {

/// The stand-in trainer, found so that a test binary copied elsewhere (with
/// the .so beside it) still runs: $SBP_CUDA_SMOKE_TRAINER if set, else
/// sbp_cuda_smoke_trainer.so next to the binary or in
/// <binary dir>/../test/cuda_kernels/ (the build tree's layout), else the
/// path compiled in.
std::string smokeTrainerPath() {
  if (const char *env = std::getenv("SBP_CUDA_SMOKE_TRAINER"); env && *env)
    return env;
  const std::string built = SBP_CUDA_SMOKE_TRAINER;
  const std::string file = built.substr(built.find_last_of('/') + 1);
  char exe[4096];
  const ssize_t len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
  if (len > 0) {
    const std::string path(exe, size_t(len));
    const std::string dir = path.substr(0, path.find_last_of('/'));
    for (const std::string &cand :
         {dir + "/" + file, dir + "/../test/cuda_kernels/" + file})
      if (access(cand.c_str(), R_OK) == 0)
        return cand;
  }
  return built;
}

using InitFn = int (*)(char *, size_t);
using FiniFn = void (*)();
using StepFn = int (*)(void *, const float *, const float *, const float *,
                       const float *, const float *, const int32_t *, float *,
                       float *, float *, float *, int64_t, int64_t, int64_t,
                       char *, size_t);

struct Library {
  // As the runtime loads trainers (TrainerLibrary.cpp): never unmapped, since
  // unloading CUDA code and loading it again in one process hung on the H100.
  void *handle = dlopen(smokeTrainerPath().c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  ~Library() {
    if (handle)
      dlclose(handle);
  }
  template <class F> F get(const char *name) {
    return reinterpret_cast<F>(dlsym(handle, name));
  }
};

// Needs no device: the library loads and exports its entry points.
TEST(TrainerLink, LoadsWithTheDocumentedLinkLine) {
  Library lib;
  ASSERT_NE(lib.handle, nullptr) << dlerror();
  EXPECT_NE(lib.get<InitFn>("sbp_cuda_smoke_init"), nullptr);
  EXPECT_NE(lib.get<FiniFn>("sbp_cuda_smoke_fini"), nullptr);
  EXPECT_NE(lib.get<StepFn>("sbp_cuda_smoke_step"), nullptr);
  // Hidden visibility: the kernel library's symbols stay inside the trainer.
  EXPECT_EQ(dlsym(lib.handle, "_ZN3sbp4cuda6detail6statusEv"), nullptr);
}

using TrainerRun = CudaKernelTest;

TEST_F(TrainerRun, StepMatchesTheSameKernelsInProcess) {
  Library lib;
  ASSERT_NE(lib.handle, nullptr) << dlerror();
  auto init = lib.get<InitFn>("sbp_cuda_smoke_init");
  auto fini = lib.get<FiniFn>("sbp_cuda_smoke_fini");
  auto step = lib.get<StepFn>("sbp_cuda_smoke_step");
  char err[512] = {};
  ASSERT_EQ(init(err, sizeof(err)), 0) << err;

  const int64_t rows = 64, n = 96, classes = 10;
  DFloat x(randomVec(rows * n, 1)), g(randomVec(n, 2, 0.5f, 1.5f)),
      beta(randomVec(n, 3)), w(randomVec(classes * n, 4, -0.2f, 0.2f)),
      b(randomVec(classes, 5));
  IVec labels(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r)
    labels[size_t(r)] = int32_t(r % classes);
  DInt dl(labels);
  DFloat s1(rows * n), s2(rows * n), z1(rows * classes), z2(rows * classes),
      d1(rows * classes), d2(rows * classes), l1(1), l2(1);
  ASSERT_EQ(step(ctx.stream, x, g, beta, w, b, dl, s1, z1, d1, l1, rows, n,
                 classes, err, sizeof(err)),
            0)
      << err;
  layer_norm(ctx, x, g, beta, s2, rows, n, 1e-6f);
  gemm(ctx, false, true, rows, classes, n, 1.0f, s2, n, w, n, 0.0f, z2,
       classes);
  bias_add(ctx, z2, b, z2, rows, classes);
  gelu(ctx, z2, z2, rows * classes);
  softmax_xent(ctx, z2, dl, l2, d2, rows, classes, 1.0f);
  sync();
  EXPECT_TRUE(sameBits(z1.download(), z2.download()));
  EXPECT_TRUE(sameBits(d1.download(), d2.download()));
  EXPECT_TRUE(sameBits(l1.download(), l2.download()));
  fini();
}

} // namespace
} // namespace sbp::cuda::test
