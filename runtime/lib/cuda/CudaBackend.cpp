// CudaBackend.cpp - the backend of "cuda" trainers.
//
// Everything a trainer needs on the GPU lives in ONE cudaMalloc made at
// creation (DevicePlan.h lays it out); the host side keeps one pinned block for
// the per-step scalars, the step's status and the batch staging. A step is
//
//   batch upload (pinned staging H2D, or D2D from the caller's device memory)
//   then, in a CUDA graph after the first call:
//     scalars H2D (seed, step, lr, AdamW factors) -> begin-step kernel (status
//     reset, labels) -> mask kernel -> desc->train_step -> fused optimizer
//     (skipped on a non-finite loss) -> status D2H
//   and one cudaStreamSynchronize.
//
// Every CUDA call is checked; failures become sbp::rt::Error (SBP_ERROR_INTERNAL
// with cudaGetErrorString's text), never an abort.
#include "CudaBackend.h"

#include "DevicePlan.h"
#include "Error.h"
#include "Kernels.h"

#include <cuda_runtime_api.h>

#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

namespace sbp::rt::cuda {
namespace {

void check(cudaError_t err, const char *what) {
  if (err != cudaSuccess) {
    (void)cudaGetLastError(); // clear a non-sticky error so later calls start clean
    fail(SBP_ERROR_INTERNAL, "CUDA error in {}: {} ({})", what, cudaGetErrorString(err),
         cudaGetErrorName(err));
  }
}

// Makes `device` current for a scope and gives the caller its own current
// device back afterwards (embedding applications keep theirs).
class DeviceScope {
public:
  explicit DeviceScope(int32_t device) {
    if (cudaGetDevice(&previous_) != cudaSuccess) {
      (void)cudaGetLastError();
      previous_ = -1;
    }
    if (previous_ != device) {
      check(cudaSetDevice(device), "cudaSetDevice");
      changed_ = true;
    }
  }
  ~DeviceScope() {
    if (changed_ && previous_ >= 0)
      (void)cudaSetDevice(previous_);
  }
  DeviceScope(const DeviceScope &) = delete;
  DeviceScope &operator=(const DeviceScope &) = delete;

private:
  int previous_ = -1;
  bool changed_ = false;
};

// Checks there is a CUDA device `device` whose kernels this runtime can run.
void requireDevice(int32_t device) {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    int driver = 0;
    if (cudaDriverGetVersion(&driver) == cudaSuccess && driver == 0)
      fail(SBP_ERROR_UNSUPPORTED, "no CUDA device: no NVIDIA driver is installed (libcuda.so.1 "
                                  "not found); a \"cuda\" trainer needs an NVIDIA GPU and its "
                                  "driver");
    (void)cudaGetLastError();
    fail(SBP_ERROR_UNSUPPORTED,
         "no CUDA device: {} ({}); a \"cuda\" trainer needs an NVIDIA GPU and its driver",
         cudaGetErrorString(err), cudaGetErrorName(err));
  }
  if (count == 0)
    fail(SBP_ERROR_UNSUPPORTED,
         "no CUDA device: the CUDA driver reports none; a \"cuda\" trainer needs an NVIDIA GPU");
  if (device < 0 || device >= count)
    fail(SBP_ERROR_INVALID_ARGUMENT,
         "CUDA device {} does not exist: this machine has {} CUDA device{} ({})", device, count,
         count == 1 ? "" : "s", count == 1 ? "0" : fmt::format("0 to {}", count - 1));
}

void freeDevice(void *pointer) { (void)cudaFree(pointer); }
void keepView(void *) {} // views into the trainer's block: the backend frees the block

// What memory a caller's pointer is: cudaMemoryTypeUnregistered (pageable
// host memory), cudaMemoryTypeHost (pinned), cudaMemoryTypeDevice or Managed.
cudaMemoryType memoryType(const void *pointer) {
  cudaPointerAttributes a{};
  if (!pointer || cudaPointerGetAttributes(&a, pointer) != cudaSuccess) {
    (void)cudaGetLastError();
    return cudaMemoryTypeUnregistered;
  }
  return a.type;
}

bool isDeviceMemory(const void *pointer) {
  cudaMemoryType type = memoryType(pointer);
  return type == cudaMemoryTypeDevice || type == cudaMemoryTypeManaged;
}

// SBP_NO_CUDA_GRAPH set to anything but "" or "0" turns capture off.
bool graphsWanted() {
  const char *value = std::getenv("SBP_NO_CUDA_GRAPH");
  return !(value && *value && std::strcmp(value, "0") != 0);
}

template <typename T> T *at(void *block, size_t offset) {
  return reinterpret_cast<T *>(static_cast<char *>(block) + offset);
}

class CudaBackend final : public Backend {
public:
  explicit CudaBackend(int32_t device) : device_(device), use_graph_(graphsWanted()) {
    requireDevice(device);
    cudaDeviceProp prop{};
    check(cudaGetDeviceProperties(&prop, device), "cudaGetDeviceProperties");
    name_ = prop.name;
    DeviceScope scope(device_);
    cudaError_t image = probeKernelImage();
    if (image != cudaSuccess) {
      (void)cudaGetLastError();
      fail(SBP_ERROR_UNSUPPORTED,
           "the runtime's CUDA kernels cannot run on CUDA device {} ({}, compute capability "
           "{}.{}): {} ({})",
           device, name_, prop.major, prop.minor, cudaGetErrorString(image),
           cudaGetErrorName(image));
    }
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  }

  ~CudaBackend() override { release(); }
  CudaBackend(const CudaBackend &) = delete;
  CudaBackend &operator=(const CudaBackend &) = delete;

  const char *target() const override { return "cuda"; }
  int32_t deviceOrdinal() const override { return device_; }
  const char *deviceName() const override { return name_.c_str(); }
  void *stream() const override { return stream_; }
  bool isDevicePointer(const void *pointer) const override { return isDeviceMemory(pointer); }

  // --- the generic interface (tests, tools; not used by the step) ---------

  DeviceBuffer allocate(size_t bytes) override {
    DeviceScope scope(device_);
    size_t rounded = (bytes + kBufferAlignment - 1) / kBufferAlignment * kBufferAlignment;
    if (rounded == 0)
      rounded = kBufferAlignment;
    void *data = nullptr;
    allocateOrFail(&data, rounded, "a buffer");
    DeviceBuffer buffer(data, bytes, freeDevice);
    check(cudaMemsetAsync(data, 0, rounded, stream_), "cudaMemsetAsync");
    check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    return buffer;
  }

  void upload(void *dst, const void *src, size_t bytes) override { copy(dst, src, bytes); }

  void download(void *dst, const void *src, size_t bytes) const override { copy(dst, src, bytes); }

  const void *stage(const void *host, DeviceBuffer &staging, size_t bytes) override {
    if (isDeviceMemory(host))
      return host;
    if (staging.bytes() < bytes)
      staging = allocate(bytes);
    upload(staging.data(), host, bytes);
    return staging.data();
  }

  void optimizerStep(const OptimizerConfig &config, const std::vector<ParamSpan> &spans,
                     float *params, const float *grads, const std::vector<float *> &state,
                     int64_t step, int32_t) override {
    if (state.size() != config.stateNames().size())
      fail(SBP_ERROR_INTERNAL, "optimizer {} needs {} state buffers, got {}", config.name(),
           config.stateNames().size(), state.size());
    std::vector<OptimizerChunk> chunks = optimizerChunks(spans);
    if (chunks.empty())
      return;
    DeviceScope scope(device_);
    StepScalars scalars = stepScalars(config, 0, step - 1, true); // `step` is the update's number
    DeviceLayout layout(kBufferAlignment);
    size_t off_scalars = layout.add(sizeof(StepScalars));
    size_t off_chunks = layout.add(chunks.size() * sizeof(OptimizerChunk));
    void *block = nullptr;
    allocateOrFail(&block, layout.total(), "the optimizer's tables");
    std::unique_ptr<void, void (*)(void *)> owner(block, freeDevice);
    copy(at<void>(block, off_scalars), &scalars, sizeof(scalars));
    copy(at<void>(block, off_chunks), chunks.data(), chunks.size() * sizeof(OptimizerChunk));
    check(launchOptimizer(config.kind, at<OptimizerChunk>(block, off_chunks),
                          int64_t(chunks.size()), params, grads, state[0],
                          state.size() > 1 ? state[1] : nullptr,
                          at<StepScalars>(block, off_scalars), nullptr, stream_),
          "the optimizer kernel");
    check(cudaStreamSynchronize(stream_), "the optimizer kernel");
  }

  // --- the trainer: one allocation, whole steps ---------------------------

  TrainerBuffers allocateTrainer(const TrainerModel &model) override {
    if (block_)
      fail(SBP_ERROR_INTERNAL, "the CUDA backend serves one trainer");
    DeviceScope scope(device_);
    desc_ = model.desc;
    path_ = model.library_path;
    optimizer_kind_ = model.optimizer.kind;
    const sbp_model_desc &d = *desc_;
    const size_t param_bytes = size_t(d.param_elements) * sizeof(float);
    const size_t arena_bytes =
        size_t(std::max(d.report.train_arena_bytes, d.report.eval_arena_bytes));
    image_bytes_ = size_t(d.batch) * size_t(d.in_channels) * size_t(d.in_height) *
                   size_t(d.in_width) * sizeof(float);
    label_bytes_ = size_t(d.batch) * sizeof(int32_t);
    logit_bytes_ = size_t(d.batch) * size_t(d.num_classes) * sizeof(float);
    groups_ = maskGroupTable(*model.masks);
    std::vector<OptimizerChunk> chunks = optimizerChunks(model.spans);
    num_chunks_ = int64_t(chunks.size());
    const size_t num_state = model.optimizer.stateNames().size();

    // The one device allocation.
    DeviceLayout layout(kBufferAlignment);
    const size_t off_params = layout.add(param_bytes);
    const size_t off_grads = layout.add(param_bytes);
    std::vector<size_t> off_state;
    for (size_t k = 0; k < num_state; ++k)
      off_state.push_back(layout.add(param_bytes));
    const size_t off_arena = layout.add(arena_bytes);
    // A trainer that plans the batch into its arena (ABI 4) gets it copied
    // there: no buffer of the batch's own, which would add to the peak.
    const size_t off_images = d.images_in_arena ? off_arena : layout.add(image_bytes_);
    const size_t off_labels = layout.add(label_bytes_);
    const size_t off_logits = layout.add(logit_bytes_);
    const size_t off_status = layout.add(sizeof(StepStatus));
    const size_t off_scalars = layout.add(sizeof(StepScalars));
    const size_t off_groups = layout.add(groups_.size() * sizeof(DeviceMaskGroup));
    const size_t off_chunks = layout.add(chunks.size() * sizeof(OptimizerChunk));
    std::vector<size_t> off_keep, off_order, off_dropped;
    for (const DeviceMaskGroup &g : groups_) {
      off_keep.push_back(layout.add(size_t(g.capacity) * sizeof(int32_t)));
      const bool random = g.kind == SBP_MASK_RANDOM;
      const size_t n = size_t(g.drawnSize()); // the shuffle runs on the drawn grid
      off_order.push_back(random ? layout.add(n * sizeof(int32_t)) : 0);
      off_dropped.push_back(random ? layout.add(n) : 0);
    }
    allocateOrFail(&block_, layout.total(), "the trainer");
    block_bytes_ = layout.total();
    check(cudaMemsetAsync(block_, 0, block_bytes_, stream_), "cudaMemsetAsync");

    // The pinned host block: scalars, status, batch staging.
    DeviceLayout host(kBufferAlignment);
    const size_t hoff_scalars = host.add(sizeof(StepScalars));
    const size_t hoff_status = host.add(sizeof(StepStatus));
    const size_t hoff_images = host.add(image_bytes_);
    const size_t hoff_labels = host.add(label_bytes_);
    check(cudaHostAlloc(&pinned_, host.total(), cudaHostAllocDefault),
          "cudaHostAlloc (pinned staging)");
    h_scalars_ = at<StepScalars>(pinned_, hoff_scalars);
    h_status_ = at<StepStatus>(pinned_, hoff_status);
    h_images_ = at<float>(pinned_, hoff_images);
    h_labels_ = at<int32_t>(pinned_, hoff_labels);
    *h_scalars_ = StepScalars();
    *h_status_ = StepStatus();

    d_params_ = at<float>(block_, off_params);
    d_grads_ = at<float>(block_, off_grads);
    d_state0_ = num_state > 0 ? at<float>(block_, off_state[0]) : nullptr;
    d_state1_ = num_state > 1 ? at<float>(block_, off_state[1]) : nullptr;
    d_arena_ = at<void>(block_, off_arena);
    d_images_ = at<float>(block_, off_images);
    d_labels_ = at<int32_t>(block_, off_labels);
    d_logits_ = at<float>(block_, off_logits);
    d_status_ = at<StepStatus>(block_, off_status);
    d_scalars_ = at<StepScalars>(block_, off_scalars);
    d_groups_ = at<DeviceMaskGroup>(block_, off_groups);
    d_chunks_ = at<OptimizerChunk>(block_, off_chunks);

    // Never hand the trainer a NULL keep_idx, even for a model without groups.
    keep_ptrs_.assign(std::max<size_t>(groups_.size(), 1), nullptr);
    for (size_t g = 0; g < groups_.size(); ++g) {
      groups_[g].keep = at<int32_t>(block_, off_keep[g]);
      if (groups_[g].kind == SBP_MASK_RANDOM) {
        groups_[g].order = at<int32_t>(block_, off_order[g]);
        groups_[g].dropped = at<uint8_t>(block_, off_dropped[g]);
      }
      keep_ptrs_[g] = groups_[g].keep;
    }
    if (!groups_.empty())
      copy(d_groups_, groups_.data(), groups_.size() * sizeof(DeviceMaskGroup));
    if (!chunks.empty())
      copy(d_chunks_, chunks.data(), chunks.size() * sizeof(OptimizerChunk));

    // The arguments of every call: the same pointers for the whole life of
    // the trainer, which is what lets a captured graph be replayed.
    train_args_ = sbp_step_args{};
    train_args_.params = d_params_;
    train_args_.grads = d_grads_;
    train_args_.images = d_images_;
    train_args_.labels = d_labels_;
    train_args_.keep_idx = keep_ptrs_.data();
    train_args_.arena = d_arena_;
    train_args_.loss = &d_status_->loss;
    train_args_.logits = nullptr;
    train_args_.num_threads = 0;
    train_args_.stream = stream_;

    TrainerBuffers buffers;
    buffers.params = DeviceBuffer(d_params_, param_bytes, keepView);
    buffers.grads = DeviceBuffer(d_grads_, param_bytes, keepView);
    for (size_t k = 0; k < num_state; ++k)
      buffers.state.emplace_back(at<void>(block_, off_state[k]), param_bytes, keepView);
    buffers.arena = DeviceBuffer(d_arena_, arena_bytes, keepView);
    buffers.loss = DeviceBuffer(&d_status_->loss, sizeof(float), keepView);
    return buffers;
  }

  bool runsSteps() const override { return block_ != nullptr; }

  float trainStep(const StepRequest &request) override {
    DeviceScope scope(device_);
    try {
      *h_scalars_ = stepScalars(*request.optimizer, request.seed, request.step, request.update);
      // The trainer's first call runs uncaptured: it may create handles
      // (cuBLASLt) or allocate, which a capture forbids.
      const bool replay = use_graph_ && train_step_called_;
      if (replay && !train_graph_)
        captureTrainStep();
      copyBatch(request.images, request.labels);
      if (replay)
        check(cudaGraphLaunch(train_graph_, stream_), "cudaGraphLaunch (the train step)");
      else
        enqueueTrainStep();
      check(cudaStreamSynchronize(stream_), "the train step");
    } catch (...) {
      drain();
      throw;
    }
    return takeStatus();
  }

  float evalStep(const StepRequest &request, float *logits) override {
    DeviceScope scope(device_);
    try {
      *h_scalars_ = stepScalars(*request.optimizer, request.seed, request.step, false);
      copyBatch(request.images, request.labels);
      enqueuePrologue();
      sbp_step_args args = train_args_;
      args.grads = nullptr;
      args.logits = logits ? d_logits_ : nullptr;
      callTrainerStep(desc_->eval_step, args, "eval_step", path_);
      check(cudaGetLastError(), "eval_step (a kernel launch it did not check)");
      check(cudaMemcpyAsync(h_status_, d_status_, sizeof(StepStatus), cudaMemcpyDeviceToHost,
                            stream_),
            "cudaMemcpyAsync (step status)");
      if (logits)
        check(cudaMemcpyAsync(logits, d_logits_, logit_bytes_, cudaMemcpyDefault, stream_),
              "cudaMemcpyAsync (logits)");
      check(cudaStreamSynchronize(stream_), "the eval step");
    } catch (...) {
      drain();
      throw;
    }
    return takeStatus();
  }

  void setKeepIndices(int32_t group, const std::vector<int32_t> &padded) override {
    DeviceScope scope(device_);
    DeviceMaskGroup &g = groups_.at(size_t(group));
    if (!padded.empty()) {
      if (padded.size() != size_t(g.capacity))
        fail(SBP_ERROR_INTERNAL, "fixed keep indices of group {}: {} entries for capacity {}",
             group, padded.size(), g.capacity);
      copy(g.keep, padded.data(), padded.size() * sizeof(int32_t));
    }
    g.fixed = padded.empty() ? 0 : 1;
    copy(d_groups_ + group, &g, sizeof(DeviceMaskGroup));
  }

private:
  void allocateOrFail(void **pointer, size_t bytes, const char *what) const {
    cudaError_t err = cudaMalloc(pointer, bytes);
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      size_t free_bytes = 0, total_bytes = 0;
      (void)cudaMemGetInfo(&free_bytes, &total_bytes);
      (void)cudaGetLastError();
      fail(SBP_ERROR_INTERNAL,
           "out of device memory: {} needs {} bytes on CUDA device {} ({}), {} of {} are free",
           what, bytes, device_, name_, free_bytes, total_bytes);
    }
    check(err, "cudaMalloc");
  }

  // A synchronous copy in either direction, ordered with the trainer's steps.
  void copy(void *dst, const void *src, size_t bytes) const {
    if (bytes == 0)
      return;
    DeviceScope scope(device_);
    check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream_), "cudaMemcpyAsync");
    check(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
  }

  // One input into the trainer's batch buffer: device memory device to device,
  // the caller's pinned memory directly, pageable memory through the staging.
  void copyIn(void *dst, const void *src, void *staging, size_t bytes, const char *what) {
    if (memoryType(src) != cudaMemoryTypeUnregistered) {
      check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, stream_), what);
      return;
    }
    std::memcpy(staging, src, bytes);
    check(cudaMemcpyAsync(dst, staging, bytes, cudaMemcpyHostToDevice, stream_), what);
  }

  void copyBatch(const float *images, const int32_t *labels) {
    copyIn(d_images_, images, h_images_, image_bytes_, "cudaMemcpyAsync (images)");
    copyIn(d_labels_, labels, h_labels_, label_bytes_, "cudaMemcpyAsync (labels)");
  }

  // Scalars, status reset and labels, masks: what opens every step.
  void enqueuePrologue() {
    check(cudaMemcpyAsync(d_scalars_, h_scalars_, sizeof(StepScalars), cudaMemcpyHostToDevice,
                          stream_),
          "cudaMemcpyAsync (step scalars)");
    check(launchBeginStep(d_labels_, desc_->batch, desc_->num_classes, d_status_, stream_),
          "the begin-step kernel");
    check(launchSampleMasks(d_groups_, int32_t(groups_.size()), d_scalars_, d_status_, stream_),
          "the mask kernel");
  }

  // The train step as stream work, run directly or recorded by a capture.
  void enqueueTrainStep() {
    enqueuePrologue();
    callTrainerStep(desc_->train_step, train_args_, "train_step", path_);
    train_step_called_ = true;
    check(cudaGetLastError(), "train_step (a kernel launch it did not check)");
    check(launchOptimizer(optimizer_kind_, d_chunks_, num_chunks_, d_params_, d_grads_, d_state0_,
                          d_state1_, d_scalars_, d_status_, stream_),
          "the optimizer kernel");
    check(
        cudaMemcpyAsync(h_status_, d_status_, sizeof(StepStatus), cudaMemcpyDeviceToHost, stream_),
        "cudaMemcpyAsync (step status)");
  }

  // Records enqueueTrainStep() into train_graph_. On failure the capture is
  // closed, graphs are turned off for this trainer and the error says why.
  void captureTrainStep() {
    const char *advice = "CUDA graphs are now off for this trainer (SBP_NO_CUDA_GRAPH=1 "
                         "turns them off from the start)";
    check(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal),
          "cudaStreamBeginCapture");
    cudaGraph_t graph = nullptr;
    auto abandon = [&] {
      graph = nullptr;
      (void)cudaStreamEndCapture(stream_, &graph);
      if (graph)
        (void)cudaGraphDestroy(graph);
      (void)cudaGetLastError();
      use_graph_ = false;
    };
    try {
      enqueueTrainStep();
    } catch (const Error &e) {
      abandon();
      fail(e.status(), "{} (while capturing the step in a CUDA graph; {})", e.what(), advice);
    } catch (...) {
      abandon();
      throw;
    }
    cudaError_t err = cudaStreamEndCapture(stream_, &graph);
    if (err == cudaSuccess) {
      err = cudaGraphInstantiate(&train_graph_, graph, 0);
      if (err != cudaSuccess)
        train_graph_ = nullptr;
    }
    if (graph)
      (void)cudaGraphDestroy(graph);
    if (err != cudaSuccess) {
      (void)cudaGetLastError();
      use_graph_ = false;
      fail(SBP_ERROR_INTERNAL,
           "cannot capture the train step of trainer '{}' in a CUDA graph: {} ({}); train_step "
           "must only enqueue work on args->stream (no synchronisation, allocation or "
           "default-stream work after its first call); {}",
           path_, cudaGetErrorString(err), cudaGetErrorName(err), advice);
    }
  }

  // Reads the status the step copied back; refuses bad labels and masks.
  float takeStatus() const {
    const StepStatus s = *h_status_;
    if (s.bad_label_index >= 0)
      fail(SBP_ERROR_INVALID_ARGUMENT, "label {} at batch index {} is outside [0, {})",
           s.bad_label_value, s.bad_label_index, desc_->num_classes);
    if (s.mask_group >= 0 && size_t(s.mask_group) < groups_.size()) {
      const sbp_mask_group_desc &m = desc_->mask_groups[s.mask_group];
      fail(SBP_ERROR_INTERNAL, "mask group '{}' keeps {} tokens but its capacity is {}",
           m.name ? m.name : "?", s.mask_tokens, m.capacity);
    }
    return s.loss;
  }

  // After a failure: let queued work finish before the host reuses staging.
  void drain() {
    (void)cudaStreamSynchronize(stream_);
    (void)cudaGetLastError();
  }

  void release() noexcept {
    if (cudaSetDevice(device_) != cudaSuccess)
      (void)cudaGetLastError();
    if (stream_)
      (void)cudaStreamSynchronize(stream_);
    if (train_graph_)
      (void)cudaGraphExecDestroy(train_graph_);
    if (stream_)
      (void)cudaStreamDestroy(stream_);
    if (block_)
      (void)cudaFree(block_);
    if (pinned_)
      (void)cudaFreeHost(pinned_);
    (void)cudaGetLastError();
    train_graph_ = nullptr;
    stream_ = nullptr;
    block_ = pinned_ = nullptr;
  }

  int32_t device_;
  std::string name_;
  bool use_graph_;
  cudaStream_t stream_ = nullptr;

  const sbp_model_desc *desc_ = nullptr;
  std::string path_;
  int32_t optimizer_kind_ = SBP_OPT_SGD;
  size_t image_bytes_ = 0, label_bytes_ = 0, logit_bytes_ = 0;

  void *block_ = nullptr; // the one device allocation
  size_t block_bytes_ = 0;
  void *pinned_ = nullptr; // the one pinned host allocation
  StepScalars *h_scalars_ = nullptr;
  StepStatus *h_status_ = nullptr;
  float *h_images_ = nullptr;
  int32_t *h_labels_ = nullptr;

  float *d_params_ = nullptr, *d_grads_ = nullptr, *d_state0_ = nullptr, *d_state1_ = nullptr;
  void *d_arena_ = nullptr;
  float *d_images_ = nullptr, *d_logits_ = nullptr;
  int32_t *d_labels_ = nullptr;
  StepStatus *d_status_ = nullptr;
  StepScalars *d_scalars_ = nullptr;
  DeviceMaskGroup *d_groups_ = nullptr;
  OptimizerChunk *d_chunks_ = nullptr;
  int64_t num_chunks_ = 0;

  std::vector<DeviceMaskGroup> groups_;    // host copy of the device table
  std::vector<const int32_t *> keep_ptrs_; // host array of device pointers: args.keep_idx
  sbp_step_args train_args_{};
  cudaGraphExec_t train_graph_ = nullptr;
  bool train_step_called_ = false;
};

} // namespace

std::unique_ptr<Backend> makeCudaBackend(int32_t device) {
  return std::make_unique<CudaBackend>(device);
}

int32_t deviceCount() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return count;
}

std::vector<std::vector<std::vector<int32_t>>>
sampleMasksOnDevice(const MaskSampler &sampler, uint64_t seed, const std::vector<int64_t> &steps,
                    int32_t device) {
  requireDevice(device);
  DeviceScope scope(device);
  std::vector<DeviceMaskGroup> groups = maskGroupTable(sampler);
  DeviceLayout layout(kBufferAlignment);
  const size_t off_groups = layout.add(groups.size() * sizeof(DeviceMaskGroup));
  const size_t off_scalars = layout.add(sizeof(StepScalars));
  const size_t off_status = layout.add(sizeof(StepStatus));
  std::vector<size_t> off_keep, off_order, off_dropped;
  for (const DeviceMaskGroup &g : groups) {
    const size_t n = size_t(g.drawnSize());
    off_keep.push_back(layout.add(size_t(g.capacity) * sizeof(int32_t)));
    off_order.push_back(layout.add(n * sizeof(int32_t)));
    off_dropped.push_back(layout.add(n));
  }
  void *block = nullptr;
  check(cudaMalloc(&block, layout.total()), "cudaMalloc");
  std::unique_ptr<void, void (*)(void *)> owner(block, freeDevice);
  for (size_t g = 0; g < groups.size(); ++g) {
    groups[g].keep = at<int32_t>(block, off_keep[g]);
    groups[g].order = at<int32_t>(block, off_order[g]);
    groups[g].dropped = at<uint8_t>(block, off_dropped[g]);
  }
  auto *d_groups = at<DeviceMaskGroup>(block, off_groups);
  auto *d_scalars = at<StepScalars>(block, off_scalars);
  auto *d_status = at<StepStatus>(block, off_status);
  if (!groups.empty())
    check(cudaMemcpy(d_groups, groups.data(), groups.size() * sizeof(DeviceMaskGroup),
                     cudaMemcpyHostToDevice),
          "cudaMemcpy");
  std::vector<std::vector<std::vector<int32_t>>> out;
  for (int64_t step : steps) {
    StepScalars scalars;
    scalars.seed = seed;
    scalars.step = step;
    StepStatus status;
    check(cudaMemcpy(d_scalars, &scalars, sizeof(scalars), cudaMemcpyHostToDevice), "cudaMemcpy");
    check(cudaMemcpy(d_status, &status, sizeof(status), cudaMemcpyHostToDevice), "cudaMemcpy");
    check(launchSampleMasks(d_groups, int32_t(groups.size()), d_scalars, d_status, nullptr),
          "the mask kernel");
    std::vector<std::vector<int32_t>> keep(groups.size());
    for (size_t g = 0; g < groups.size(); ++g) {
      keep[g].resize(size_t(groups[g].capacity));
      check(cudaMemcpy(keep[g].data(), groups[g].keep, keep[g].size() * sizeof(int32_t),
                       cudaMemcpyDeviceToHost),
            "cudaMemcpy");
    }
    check(cudaMemcpy(&status, d_status, sizeof(status), cudaMemcpyDeviceToHost), "cudaMemcpy");
    if (status.mask_group >= 0)
      fail(SBP_ERROR_INTERNAL, "mask group {} keeps {} tokens, over its capacity",
           status.mask_group, status.mask_tokens);
    out.push_back(std::move(keep));
  }
  return out;
}

} // namespace sbp::rt::cuda
