// Trainer.h - the trainer core behind the C API: owns the loaded library, the
// buffers on the backend, the optimizer, the step counter and the masks.
#ifndef SBP_RUNTIME_TRAINER_H
#define SBP_RUNTIME_TRAINER_H

#include "Backend.h"
#include "Masks.h"
#include "Optimizers.h"
#include "TrainerLibrary.h"
#include "sbp/trainer.h"

#include <memory>
#include <string>
#include <vector>

namespace sbp::rt {

class Trainer {
public:
  Trainer(const std::string &library_path, const sbp_trainer_options &options);

  const sbp_model_desc &desc() const { return library_->desc(); }
  const OptimizerConfig &optimizer() const { return optimizer_; }
  int64_t stepCount() const { return step_; }
  uint64_t seed() const { return seed_; }

  // images [batch, C, H, W] and labels [batch] in host memory (or, for a
  // backend that runs steps on a device, in that device's memory).
  void step(const float *images, const int32_t *labels, float *loss);
  void computeGradients(const float *images, const int32_t *labels, float *loss);
  // Every keep ratio 1.0 through the trainer's exact_train_step, no update.
  void computeExactGradients(const float *images, const int32_t *labels, float *loss);
  void eval(const float *images, const int32_t *labels, float *loss, float *logits);

  void setKeepIndices(int32_t group, const int32_t *idx, int32_t count);
  // The padded keep indices `step` uses for `group`.
  std::vector<int32_t> keepIndices(int32_t group, int64_t step) const;
  bool isFixed(int32_t group) const { return !fixed_[size_t(group)].empty(); }
  // The group's description; SBP_ERROR_INVALID_ARGUMENT when it does not exist.
  const sbp_mask_group_desc &maskGroup(int32_t group) const;
  void setLearningRate(float lr);
  void info(sbp_trainer_info &out) const;

  const sbp_param_desc &param(int32_t index) const;
  int32_t findParam(const std::string &name) const; // -1 when absent
  void readParam(int32_t index, float *dst) const;
  void writeParam(int32_t index, const float *src);
  void readGradient(int32_t index, float *dst) const;

  // Host copies of the whole buffers, for checkpoints.
  std::vector<float> params() const { return download(params_); }
  std::vector<float> grads() const { return download(grads_); }
  std::vector<std::vector<float>> optimizerState() const;
  // Replace the parameters (from a parameter file), or the whole training state
  // (from a checkpoint). Buffers are in the layout params()/optimizerState() return.
  void restoreParams(const std::vector<float> &params);
  void restoreState(const std::vector<float> &params,
                    const std::vector<std::vector<float>> &state, int64_t step, uint64_t seed);

private:
  void checkBatch(const float *images, const int32_t *labels) const;
  // Runs train_step for the current step's masks; checks the loss is finite.
  void forwardBackward(const float *images, const int32_t *labels, float *loss);
  sbp_step_args stepArgs(const float *images, const int32_t *labels);
  float finiteLoss(const char *what) const;
  float checkFinite(float loss, const char *what) const;
  // A training step (or, update false, forward + backward only) on a backend
  // that runs whole steps (runsSteps()).
  float backendStep(const float *images, const int32_t *labels, bool update);
  // Fails when the step counter is at INT64_MAX (a checkpoint can put it there):
  // before the step changes anything, not as an overflow after it.
  void checkStepCanAdvance() const;
  std::vector<float> download(const DeviceBuffer &buffer) const;

  std::unique_ptr<TrainerLibrary> library_;
  std::unique_ptr<Backend> backend_;
  OptimizerConfig optimizer_;
  uint64_t seed_;
  int32_t num_threads_;
  int64_t step_ = 0;

  DeviceBuffer params_, grads_, arena_, loss_;
  DeviceBuffer exact_arena_; // allocated by the first computeExactGradients
  std::vector<DeviceBuffer> state_;
  DeviceBuffer images_staging_, labels_staging_, logits_staging_;
  std::vector<ParamSpan> spans_;

  MaskSampler masks_;
  std::vector<std::vector<int32_t>> fixed_; // per group; empty = random
  std::vector<std::vector<int32_t>> keep_;  // this step's padded indices per group
  std::vector<DeviceBuffer> keep_staging_;
  std::vector<const int32_t *> keep_ptrs_;
  std::vector<float> keep_ratios_;
};

} // namespace sbp::rt

#endif // SBP_RUNTIME_TRAINER_H
