// Checkpoint.cpp - mapping a trainer's buffers to and from safetensors.
#include "Checkpoint.h"

#include "Error.h"
#include "SafeTensors.h"

#include <charconv>
#include <map>
#include <set>

namespace sbp::rt {
namespace {

constexpr const char *kStatePrefix = "optimizer.";

Shape shapeOf(const sbp_param_desc &p) { return Shape(p.shape, p.shape + p.rank); }

std::string stateName(const std::string &state, const char *param) {
  return std::string(kStatePrefix) + state + "." + param;
}

// One tensor per parameter, viewing `buffer` (the parameter buffer's layout).
std::vector<TensorData> layoutTensors(const sbp_model_desc &d, const float *buffer,
                                      const std::string &state = "") {
  std::vector<TensorData> tensors;
  for (int32_t i = 0; i < d.num_params; ++i) {
    const sbp_param_desc &p = d.params[i];
    tensors.push_back({state.empty() ? p.name : stateName(state, p.name), "F32", shapeOf(p),
                       buffer + p.offset});
  }
  return tensors;
}

std::map<std::string, std::string> baseMetadata(const Trainer &trainer, const char *format) {
  return {{"format", format},
          {"model", trainer.desc().model_name},
          {"abi", std::to_string(SBP_ABI_VERSION)}};
}

std::string joined(const std::vector<std::string> &names) {
  std::string out;
  for (size_t k = 0; k < names.size(); ++k)
    out += (k ? ", " : "") + names[k];
  return out;
}

// Fails, listing them, when the file lacks any of `expected` or holds a tensor
// that is neither expected nor accepted by `ignorable`.
template <typename Ignorable>
void checkTensorNames(const SafeTensorsReader &file, const std::set<std::string> &expected,
                      Ignorable ignorable, const char *model) {
  std::vector<std::string> missing, extra;
  for (const std::string &name : expected)
    if (!file.find(name))
      missing.push_back(name);
  for (const TensorEntry &t : file.tensors())
    if (!expected.count(t.name) && !ignorable(t.name))
      extra.push_back(t.name);
  if (!missing.empty())
    fail(SBP_ERROR_INVALID_ARGUMENT, "'{}' lacks {} tensor{} of model '{}': {}", file.path(),
         missing.size(), missing.size() > 1 ? "s" : "", model, joined(missing));
  if (!extra.empty())
    fail(SBP_ERROR_INVALID_ARGUMENT, "'{}' holds {} tensor{} that model '{}' does not have: {}",
         file.path(), extra.size(), extra.size() > 1 ? "s" : "", model, joined(extra));
}

void readLayout(const SafeTensorsReader &file, const sbp_model_desc &d, float *buffer,
                const std::string &state = "") {
  for (const TensorData &t : layoutTensors(d, buffer, state))
    file.read(t.name, "F32", t.shape, const_cast<void *>(t.data));
}

template <typename Int> Int metaNumber(const SafeTensorsReader &file, const std::string &key) {
  std::string text = file.meta(key);
  Int value{};
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size())
    fail(SBP_ERROR_CORRUPT_FILE, "checkpoint '{}' has a bad or missing \"{}\" in its metadata",
         file.path(), key);
  return value;
}

// The file's "abi" metadata must be this runtime's ABI version; files without
// one (written by PyTorch's safetensors) pass when `required` is false.
void checkAbi(const SafeTensorsReader &file, bool required) {
  std::string abi = file.meta("abi");
  if (abi.empty() && !required)
    return;
  if (abi.empty())
    fail(SBP_ERROR_CORRUPT_FILE, "checkpoint '{}' has no \"abi\" in its metadata", file.path());
  if (abi != std::to_string(SBP_ABI_VERSION))
    fail(SBP_ERROR_ABI_MISMATCH,
         "'{}' was written for ABI version {}, this runtime implements ABI version {}; "
         "its masks and state may mean something else here",
         file.path(), abi, SBP_ABI_VERSION);
}

} // namespace

void saveParams(const Trainer &trainer, const std::string &path) {
  std::vector<float> params = trainer.params();
  writeSafeTensors(path, baseMetadata(trainer, "sbp-params"),
                   layoutTensors(trainer.desc(), params.data()));
}

void loadParams(Trainer &trainer, const std::string &path) {
  const sbp_model_desc &d = trainer.desc();
  SafeTensorsReader file(path);
  checkAbi(file, false);
  std::set<std::string> names;
  for (int32_t i = 0; i < d.num_params; ++i)
    names.insert(d.params[i].name);
  checkTensorNames(
      file, names, [](const std::string &name) { return name.rfind(kStatePrefix, 0) == 0; },
      d.model_name);
  std::vector<float> params = trainer.params(); // bytes between parameters stay as they are
  readLayout(file, d, params.data());
  trainer.restoreParams(params);
}

void saveCheckpoint(const Trainer &trainer, const std::string &path) {
  const sbp_model_desc &d = trainer.desc();
  std::vector<float> params = trainer.params();
  std::vector<std::vector<float>> state = trainer.optimizerState();
  std::vector<TensorData> tensors = layoutTensors(d, params.data());
  std::vector<std::string> state_names = trainer.optimizer().stateNames();
  for (size_t k = 0; k < state.size(); ++k)
    for (TensorData &t : layoutTensors(d, state[k].data(), state_names[k]))
      tensors.push_back(std::move(t));
  auto metadata = baseMetadata(trainer, "sbp-checkpoint");
  metadata["optimizer"] = trainer.optimizer().name();
  metadata["step"] = std::to_string(trainer.stepCount());
  metadata["seed"] = std::to_string(trainer.seed());
  if (d.sbpc_version)
    metadata["sbpc_version"] = d.sbpc_version;
  writeSafeTensors(path, metadata, tensors);
}

void loadCheckpoint(Trainer &trainer, const std::string &path) {
  const sbp_model_desc &d = trainer.desc();
  SafeTensorsReader file(path);
  if (file.meta("format") != "sbp-checkpoint")
    fail(SBP_ERROR_INVALID_ARGUMENT,
         "'{}' is not an sbp checkpoint (its metadata has no format \"sbp-checkpoint\"); load "
         "parameter files with load_params",
         path);
  checkAbi(file, true);
  if (file.meta("model") != d.model_name)
    fail(SBP_ERROR_INVALID_ARGUMENT, "checkpoint '{}' is for model '{}', this trainer is '{}'",
         path, file.meta("model"), d.model_name);
  if (file.meta("optimizer") != trainer.optimizer().name())
    fail(SBP_ERROR_INVALID_ARGUMENT, "checkpoint '{}' holds {} state, this trainer uses {}", path,
         file.meta("optimizer"), trainer.optimizer().name());
  auto step = metaNumber<int64_t>(file, "step");
  auto seed = metaNumber<uint64_t>(file, "seed");
  if (step < 0)
    fail(SBP_ERROR_CORRUPT_FILE, "checkpoint '{}' has a negative step", path);

  std::vector<std::string> state_names = trainer.optimizer().stateNames();
  std::set<std::string> names;
  for (int32_t i = 0; i < d.num_params; ++i) {
    names.insert(d.params[i].name);
    for (const std::string &s : state_names)
      names.insert(stateName(s, d.params[i].name));
  }
  checkTensorNames(file, names, [](const std::string &) { return false; }, d.model_name);
  // Read everything before touching the trainer: a failed load changes nothing.
  std::vector<float> params = trainer.params();
  std::vector<std::vector<float>> state = trainer.optimizerState();
  readLayout(file, d, params.data());
  for (size_t k = 0; k < state.size(); ++k)
    readLayout(file, d, state[k].data(), state_names[k]);
  trainer.restoreState(params, state, step, seed);
}

void saveGradients(const Trainer &trainer, const std::string &path) {
  std::vector<float> grads = trainer.grads();
  auto metadata = baseMetadata(trainer, "sbp-gradients");
  metadata["step"] = std::to_string(trainer.stepCount());
  writeSafeTensors(path, metadata, layoutTensors(trainer.desc(), grads.data()));
}

void readBatchFile(const Trainer &trainer, const std::string &path, float *images,
                   int32_t *labels) {
  if (!images || !labels)
    fail(SBP_ERROR_INVALID_ARGUMENT, "images and labels must not be NULL");
  const sbp_model_desc &d = trainer.desc();
  SafeTensorsReader file(path);
  file.read("images", "F32", {d.batch, d.in_channels, d.in_height, d.in_width}, images);
  file.read("labels", "I32", {d.batch}, labels);
}

} // namespace sbp::rt
