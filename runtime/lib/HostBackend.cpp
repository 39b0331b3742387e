// HostBackend.cpp - the backend of "cpu" trainers: aligned host memory.
#include "Backend.h"

#include "Error.h"
#ifdef SBP_HAVE_CUDA_RUNTIME
#include "cuda/CudaBackend.h"
#endif

#include <cstdlib>
#include <cstring>
#include <new>

namespace sbp::rt {
namespace {

class HostBackend final : public Backend {
public:
  const char *target() const override { return "cpu"; }

  DeviceBuffer allocate(size_t bytes) override {
    // aligned_alloc wants a multiple of the alignment; never hand out nullptr.
    size_t rounded = (bytes + kBufferAlignment - 1) / kBufferAlignment * kBufferAlignment;
    if (rounded == 0)
      rounded = kBufferAlignment;
    void *data = std::aligned_alloc(kBufferAlignment, rounded);
    if (!data)
      fail(SBP_ERROR_INTERNAL, "out of memory allocating {} bytes", rounded);
    std::memset(data, 0, rounded);
    return DeviceBuffer(data, bytes, std::free);
  }

  void upload(void *dst, const void *src, size_t bytes) override {
    if (bytes)
      std::memcpy(dst, src, bytes);
  }

  void download(void *dst, const void *src, size_t bytes) const override {
    if (bytes)
      std::memcpy(dst, src, bytes);
  }

  const void *stage(const void *host, DeviceBuffer &, size_t) override { return host; }

  void optimizerStep(const OptimizerConfig &config, const std::vector<ParamSpan> &spans,
                     float *params, const float *grads, const std::vector<float *> &state,
                     int64_t step, int32_t num_threads) override {
    applyOptimizer(config, spans, params, grads, state, step, num_threads);
  }
};

} // namespace

std::unique_ptr<Backend> makeBackend(const std::string &target, int32_t device) {
  if (target == "cpu")
    return std::make_unique<HostBackend>();
  if (target == "cuda")
#ifdef SBP_HAVE_CUDA_RUNTIME
    return cuda::makeCudaBackend(device);
#else
    fail(SBP_ERROR_UNSUPPORTED,
         "this runtime was built without CUDA; it cannot run a \"cuda\" trainer (device {})",
         device);
#endif
  fail(SBP_ERROR_UNSUPPORTED, "unknown trainer target \"{}\"", target);
}

} // namespace sbp::rt
