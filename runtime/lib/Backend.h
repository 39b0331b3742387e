// Backend.h - where a trainer's buffers live and how its optimizer runs.
//
// The trainer core (Trainer.cpp) never touches memory of the target directly:
// it allocates, copies and updates through this interface. The host backend
// serves "cpu" trainers; a CUDA backend (device memory, a stream, an optimizer
// kernel) slots in beside it without changing the core.
#ifndef SBP_RUNTIME_BACKEND_H
#define SBP_RUNTIME_BACKEND_H

#include "Optimizers.h"

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

namespace sbp::rt {

constexpr size_t kBufferAlignment = 256;

// A zero-filled, 256-byte aligned allocation on the backend's memory.
class DeviceBuffer {
public:
  using Deleter = void (*)(void *);
  DeviceBuffer() = default;
  DeviceBuffer(void *data, size_t bytes, Deleter deleter) : data_(data, deleter), bytes_(bytes) {}

  void *data() const { return data_.get(); }
  template <typename T> T *as() const { return static_cast<T *>(data_.get()); }
  size_t bytes() const { return bytes_; }

private:
  std::unique_ptr<void, Deleter> data_{nullptr, nullptr};
  size_t bytes_ = 0;
};

class Backend {
public:
  virtual ~Backend() = default;
  virtual const char *target() const = 0;

  virtual DeviceBuffer allocate(size_t bytes) = 0;
  virtual void upload(void *dst, const void *src, size_t bytes) = 0;
  virtual void download(void *dst, const void *src, size_t bytes) const = 0;
  // A pointer the kernels can read `bytes` of host data through: the host
  // pointer itself where the kernels run on the host, else a copy in staging.
  virtual const void *stage(const void *host, DeviceBuffer &staging, size_t bytes) = 0;
  // cudaStream_t for device backends, nullptr on the host.
  virtual void *stream() const { return nullptr; }

  virtual void optimizerStep(const OptimizerConfig &config, const std::vector<ParamSpan> &spans,
                             float *params, const float *grads, const std::vector<float *> &state,
                             int64_t step, int32_t num_threads) = 0;
};

// The backend for a trainer's target ("cpu"); throws SBP_ERROR_UNSUPPORTED for
// targets this runtime was built without.
std::unique_ptr<Backend> makeBackend(const std::string &target, int32_t device);

} // namespace sbp::rt

#endif // SBP_RUNTIME_BACKEND_H
