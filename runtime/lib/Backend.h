// Backend.h - where a trainer's buffers live and how its optimizer runs.
//
// The trainer core (Trainer.cpp) never touches memory of the target directly:
// it allocates, copies and updates through this interface. The host backend
// serves "cpu" trainers: the core drives each step through allocate/stage/
// optimizerStep. The CUDA backend (cuda/CudaBackend.cpp) runs whole steps
// itself (runsSteps()): masks sampled on the device, the step captured in a
// CUDA graph, one synchronisation per step.
#ifndef SBP_RUNTIME_BACKEND_H
#define SBP_RUNTIME_BACKEND_H

#include "Masks.h"
#include "Optimizers.h"

#include "Error.h"

#include <algorithm>
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

// What a backend is told, once, about the trainer it serves.
struct TrainerModel {
  const sbp_model_desc *desc = nullptr;
  std::string library_path;          // for messages
  OptimizerConfig optimizer;         // kind and hyper-parameters at creation
  const MaskSampler *masks = nullptr; // the mask groups and their draws
  std::vector<ParamSpan> spans;      // the parameter tensors, in descriptor order
};

// A trainer's buffers on the backend, in the parameter buffer's layout.
struct TrainerBuffers {
  DeviceBuffer params, grads, arena, loss;
  std::vector<DeviceBuffer> state; // optimizer.stateNames().size() buffers
};

// One training step as the core asks a step-running backend for it.
struct StepRequest {
  const float *images = nullptr;   // [batch, C, H, W], host or device memory
  const int32_t *labels = nullptr; // [batch], host or device memory
  uint64_t seed = 0;
  int64_t step = 0;                // 0-based: whose masks; the update is number step + 1
  const OptimizerConfig *optimizer = nullptr; // as in effect now (the lr changes)
  bool update = true;              // false: forward + backward only
};

// Calls a trainer's step function; a non-zero return becomes SBP_ERROR_INTERNAL
// naming `what` and the library.
void callTrainerStep(sbp_step_fn fn, const sbp_step_args &args, const char *what,
                     const std::string &library_path);

class Backend {
public:
  virtual ~Backend() = default;
  virtual const char *target() const = 0;
  // The device, for sbp_trainer_info: ordinal (-1 on the host) and name.
  virtual int32_t deviceOrdinal() const { return -1; }
  virtual const char *deviceName() const { return "host"; }

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

  // The trainer's parameters, gradients, optimizer state, arena and loss. The
  // default allocates each; a device backend may sub-allocate one block.
  virtual TrainerBuffers allocateTrainer(const TrainerModel &model) {
    const sbp_model_desc &d = *model.desc;
    const size_t param_bytes = size_t(d.param_elements) * sizeof(float);
    TrainerBuffers b;
    b.params = allocate(param_bytes);
    b.grads = allocate(param_bytes);
    for (size_t k = 0; k < model.optimizer.stateNames().size(); ++k)
      b.state.push_back(allocate(param_bytes));
    b.arena = allocate(size_t(std::max(d.report.train_arena_bytes, d.report.eval_arena_bytes)));
    b.loss = allocate(sizeof(float));
    return b;
  }

  // Whether `pointer` is memory of the backend's device (the host backend: never).
  virtual bool isDevicePointer(const void *) const { return false; }

  // --- backends that run whole steps -------------------------------------
  // When true, the core calls trainStep/evalStep instead of driving a step
  // through stage() and optimizerStep(); allocateTrainer() has been called.
  virtual bool runsSteps() const { return false; }
  // Masks, forward + backward and (request.update) the optimizer update, which
  // is skipped when the loss is not finite. Returns the loss, which the core
  // checks. Throws SBP_ERROR_INVALID_ARGUMENT for a device label out of range.
  virtual float trainStep(const StepRequest &) {
    fail(SBP_ERROR_INTERNAL, "backend {} does not run steps", target());
  }
  // Forward only (request.update and .optimizer are ignored); logits
  // (nullable, host or device memory) receives [batch, num_classes].
  virtual float evalStep(const StepRequest &, float *) {
    fail(SBP_ERROR_INTERNAL, "backend {} does not run steps", target());
  }
  // Fixes group's keep indices (`capacity` entries, -1 padded), or returns the
  // group to sampling when `padded` is empty.
  virtual void setKeepIndices(int32_t, const std::vector<int32_t> &) {}
};

// The backend for a trainer's target ("cpu", or "cuda" on device `device` when
// the runtime was built with the CUDA backend); throws SBP_ERROR_UNSUPPORTED
// for targets this runtime was built without or cannot run here (no GPU).
std::unique_ptr<Backend> makeBackend(const std::string &target, int32_t device);

} // namespace sbp::rt

#endif // SBP_RUNTIME_BACKEND_H
