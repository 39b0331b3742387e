// sbp/trainer.hpp - a thin RAII C++ layer over sbp/trainer.h.
//
// Error handling: every method that can fail throws sbp::Error, which carries
// the sbp_status and the runtime's message. Handles are move-only and released
// by their destructors. Everything is inline: only libsbprt's C ABI is linked.
//
//   sbp::Trainer trainer("train.so", sbp::TrainerOptions().withSeed(1));
//   float loss = trainer.step(images.data(), labels.data());
#ifndef SBP_TRAINER_HPP
#define SBP_TRAINER_HPP

#include "sbp/trainer.h"

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace sbp {

class Error : public std::runtime_error {
public:
  Error(sbp_status status, const std::string &message)
      : std::runtime_error(message), status_(status) {}
  sbp_status status() const noexcept { return status_; }

private:
  sbp_status status_;
};

namespace detail {
// Every failing call records its message as the thread's last error.
inline void check(sbp_status status) {
  if (status == SBP_OK)
    return;
  const char *message = sbp_last_error();
  throw Error(status, *message ? message : sbp_status_string(status));
}
} // namespace detail

// sbp_trainer_options with its defaults set, plus chainable setters.
struct TrainerOptions : sbp_trainer_options {
  TrainerOptions() { sbp_trainer_options_init(this); }
  TrainerOptions &withSeed(uint64_t s) { seed = s; return *this; }
  TrainerOptions &withThreads(int32_t n) { num_threads = n; return *this; }
  TrainerOptions &withLearningRate(float v) { lr = v; return *this; }
  TrainerOptions &withWeightDecay(float v) { weight_decay = v; return *this; }
};

class Trainer {
public:
  explicit Trainer(const std::string &library_path, const TrainerOptions &options = {}) {
    detail::check(sbp_trainer_create(library_path.c_str(), &options, &handle_));
  }
  ~Trainer() { sbp_trainer_release(handle_); }
  Trainer(Trainer &&other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
  Trainer &operator=(Trainer &&other) noexcept {
    std::swap(handle_, other.handle_);
    return *this;
  }
  Trainer(const Trainer &) = delete;
  Trainer &operator=(const Trainer &) = delete;

  sbp_trainer *get() const noexcept { return handle_; }

  sbp_trainer_info info() const {
    sbp_trainer_info i{};
    i.struct_size = sizeof(i);
    detail::check(sbp_trainer_get_info(handle_, &i));
    return i;
  }

  // One optimizer step; returns the loss. Throws sbp::Error (SBP_ERROR_NUMERIC
  // on a NaN loss, with the parameters unchanged).
  float step(const float *images, const int32_t *labels) {
    float loss = 0.0f;
    detail::check(sbp_trainer_step(handle_, images, labels, &loss));
    return loss;
  }
  float computeGradients(const float *images, const int32_t *labels) {
    float loss = 0.0f;
    detail::check(sbp_trainer_compute_gradients(handle_, images, labels, &loss));
    return loss;
  }
  // Every keep ratio 1.0 (sbpc --exact-step): the gradients SBP estimates.
  float computeExactGradients(const float *images, const int32_t *labels) {
    float loss = 0.0f;
    detail::check(sbp_trainer_compute_exact_gradients(handle_, images, labels, &loss));
    return loss;
  }
  // logits (nullable) receives [batch, num_classes].
  float eval(const float *images, const int32_t *labels, float *logits = nullptr) {
    float loss = 0.0f;
    detail::check(sbp_trainer_eval(handle_, images, labels, &loss, logits));
    return loss;
  }

  // Fixes the mask of `group` (-1: all groups); an empty idx keeps no grid token.
  void setKeepIndices(int32_t group, const std::vector<int32_t> &idx) {
    static const int32_t none = 0; // NULL would mean "random" to the C API
    detail::check(sbp_trainer_set_keep_indices(handle_, group, idx.empty() ? &none : idx.data(),
                                               int32_t(idx.size())));
  }
  void useRandomMasks(int32_t group = -1) {
    detail::check(sbp_trainer_set_keep_indices(handle_, group, nullptr, 0));
  }
  void setLearningRate(float lr) { detail::check(sbp_trainer_set_learning_rate(handle_, lr)); }

  void saveParams(const std::string &path) const {
    detail::check(sbp_trainer_save_params(handle_, path.c_str()));
  }
  void loadParams(const std::string &path) { detail::check(sbp_trainer_load_params(handle_, path.c_str())); }
  void saveCheckpoint(const std::string &path) const {
    detail::check(sbp_trainer_save_checkpoint(handle_, path.c_str()));
  }
  void loadCheckpoint(const std::string &path) {
    detail::check(sbp_trainer_load_checkpoint(handle_, path.c_str()));
  }
  void saveGradients(const std::string &path) const {
    detail::check(sbp_trainer_save_gradients(handle_, path.c_str()));
  }
  void readBatchFile(const std::string &path, float *images, int32_t *labels) const {
    detail::check(sbp_trainer_read_batch_file(handle_, path.c_str(), images, labels));
  }

private:
  sbp_trainer *handle_ = nullptr;
};

class Dataset {
public:
  explicit Dataset(const std::string &directory) {
    detail::check(sbp_dataset_open(directory.c_str(), &handle_));
  }
  ~Dataset() { sbp_dataset_release(handle_); }
  Dataset(Dataset &&other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
  Dataset &operator=(Dataset &&other) noexcept {
    std::swap(handle_, other.handle_);
    return *this;
  }
  Dataset(const Dataset &) = delete;
  Dataset &operator=(const Dataset &) = delete;

  sbp_dataset *get() const noexcept { return handle_; }

  sbp_dataset_info info() const {
    sbp_dataset_info i{};
    i.struct_size = sizeof(i);
    detail::check(sbp_dataset_get_info(handle_, &i));
    return i;
  }
  int64_t numTrainBatches(int64_t batch, sbp_split split = SBP_SPLIT_TRAIN) const {
    return sbp_dataset_num_train_batches(handle_, split, batch);
  }
  int64_t numEvalBatches(int64_t batch, sbp_split split = SBP_SPLIT_TEST) const {
    return sbp_dataset_num_eval_batches(handle_, split, batch);
  }
  void trainBatch(int64_t batch, uint64_t seed, int64_t epoch, int64_t index, float *images,
                  int32_t *labels, sbp_split split = SBP_SPLIT_TRAIN) {
    detail::check(sbp_dataset_get_train_batch(handle_, split, batch, seed, epoch, index, images,
                                              labels));
  }
  // Returns how many leading entries are real (the rest pad the last batch).
  int64_t evalBatch(int64_t batch, int64_t index, float *images, int32_t *labels,
                    sbp_split split = SBP_SPLIT_TEST) const {
    int64_t valid = 0;
    detail::check(
        sbp_dataset_get_eval_batch(handle_, split, batch, index, images, labels, &valid));
    return valid;
  }

private:
  sbp_dataset *handle_ = nullptr;
};

} // namespace sbp

#endif // SBP_TRAINER_HPP
