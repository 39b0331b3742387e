// Trainer.cpp - creation, steps, masks and parameter access of a trainer.
#include "Trainer.h"

#include "Error.h"
#include "ParamInit.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace sbp::rt {
namespace {

// More would only oversubscribe any machine this runs on, and OpenMP aborts the
// process when it cannot create the threads it was asked for.
constexpr int32_t kMaxThreads = 1024;

// The model's optimizer with the options' values on top. Exactly -1 (what
// sbp_trainer_options_init sets) keeps the model's value; any other value,
// negative ones included, is taken and then validated: a negative learning rate
// must be an error, not silently the model's.
OptimizerConfig withOverrides(const sbp_optimizer_desc &model, const sbp_trainer_options &o) {
  OptimizerConfig c = OptimizerConfig::from(model);
  auto take = [](float &field, float value) {
    if (value != -1.0f)
      field = value;
  };
  take(c.lr, o.lr);
  take(c.weight_decay, o.weight_decay);
  take(c.momentum, o.momentum);
  take(c.beta1, o.beta1);
  take(c.beta2, o.beta2);
  take(c.eps, o.eps);
  if (o.nesterov != -1)
    c.nesterov = o.nesterov;
  return c;
}

std::vector<MaskSpec> maskSpecs(const sbp_model_desc &d) {
  std::vector<MaskSpec> specs;
  for (int32_t g = 0; g < d.num_mask_groups; ++g)
    specs.push_back(MaskSpec::from(d.mask_groups[g]));
  return specs;
}

} // namespace

Trainer::Trainer(const std::string &library_path, const sbp_trainer_options &options)
    : library_(std::make_unique<TrainerLibrary>(library_path)),
      backend_(makeBackend(desc().target, options.device)),
      optimizer_(withOverrides(desc().optimizer, options)), seed_(options.seed),
      num_threads_(options.num_threads), masks_(maskSpecs(desc())) {
  if (num_threads_ < 0 || num_threads_ > kMaxThreads)
    fail(SBP_ERROR_INVALID_ARGUMENT, "num_threads {} must be in [0, {}] (0: OpenMP's default)",
         num_threads_, kMaxThreads);
  optimizer_.validate();
  const sbp_model_desc &d = desc();
  const size_t param_bytes = size_t(d.param_elements) * sizeof(float);
  for (int32_t i = 0; i < d.num_params; ++i)
    spans_.push_back({d.params[i].offset, d.params[i].numel, d.params[i].weight_decay != 0});
  TrainerModel model;
  model.desc = &d;
  model.library_path = library_->path();
  model.optimizer = optimizer_;
  model.masks = &masks_;
  model.spans = spans_;
  TrainerBuffers buffers = backend_->allocateTrainer(model);
  params_ = std::move(buffers.params);
  grads_ = std::move(buffers.grads);
  state_ = std::move(buffers.state);
  arena_ = std::move(buffers.arena);
  loss_ = std::move(buffers.loss);

  fixed_.resize(size_t(d.num_mask_groups));
  keep_staging_.resize(size_t(d.num_mask_groups));
  // Never hand the trainer a NULL keep_idx, even for a model without groups.
  keep_ptrs_.assign(size_t(std::max(d.num_mask_groups, 1)), nullptr);
  for (int32_t g = 0; g < d.num_mask_groups; ++g)
    keep_ratios_.push_back(d.mask_groups[g].keep_ratio);

  std::vector<float> init(size_t(d.param_elements), 0.0f);
  for (int32_t i = 0; i < d.num_params; ++i)
    initParam(d.params[i], i, seed_, init.data() + d.params[i].offset);
  backend_->upload(params_.data(), init.data(), param_bytes);
}

void Trainer::checkBatch(const float *images, const int32_t *labels) const {
  if (!images || !labels)
    fail(SBP_ERROR_INVALID_ARGUMENT, "images and labels must not be NULL");
  if (backend_->isDevicePointer(labels))
    return; // checked on the device, inside the step
  const sbp_model_desc &d = desc();
  for (int64_t b = 0; b < d.batch; ++b)
    if (labels[b] < 0 || labels[b] >= d.num_classes)
      fail(SBP_ERROR_INVALID_ARGUMENT, "label {} at batch index {} is outside [0, {})", labels[b],
           b, d.num_classes);
}

sbp_step_args Trainer::stepArgs(const float *images, const int32_t *labels) {
  const sbp_model_desc &d = desc();
  masks_.sample(seed_, step_, keep_);
  for (size_t g = 0; g < keep_.size(); ++g) {
    if (!fixed_[g].empty())
      keep_[g] = fixed_[g];
    keep_ptrs_[g] = static_cast<const int32_t *>(
        backend_->stage(keep_[g].data(), keep_staging_[g], keep_[g].size() * sizeof(int32_t)));
  }
  const size_t image_bytes =
      size_t(d.batch) * size_t(d.in_channels) * size_t(d.in_height) * size_t(d.in_width) * 4;
  sbp_step_args args{};
  args.params = params_.as<float>();
  args.grads = grads_.as<float>();
  args.images = static_cast<const float *>(backend_->stage(images, images_staging_, image_bytes));
  args.labels = static_cast<const int32_t *>(
      backend_->stage(labels, labels_staging_, size_t(d.batch) * sizeof(int32_t)));
  args.keep_idx = keep_ptrs_.data();
  args.arena = arena_.data();
  args.loss = loss_.as<float>();
  args.logits = nullptr;
  args.num_threads = num_threads_;
  args.stream = backend_->stream();
  return args;
}

void callTrainerStep(sbp_step_fn fn, const sbp_step_args &args, const char *what,
                     const std::string &path) {
  char err[1024] = {0};
  int rc = fn(&args, err, sizeof(err));
  err[sizeof(err) - 1] = '\0';
  if (rc != 0)
    fail(SBP_ERROR_INTERNAL, "{} of trainer '{}' failed (code {}): {}", what, path, rc,
         *err ? err : "no message");
}

float Trainer::finiteLoss(const char *what) const {
  float loss = 0.0f;
  backend_->download(&loss, loss_.data(), sizeof(float));
  return checkFinite(loss, what);
}

float Trainer::checkFinite(float loss, const char *what) const {
  if (!std::isfinite(loss))
    fail(SBP_ERROR_NUMERIC, "{} is {} at step {}", what, std::isnan(loss) ? "NaN" : "infinite",
         step_);
  return loss;
}

float Trainer::backendStep(const float *images, const int32_t *labels, bool update) {
  checkBatch(images, labels);
  StepRequest request;
  request.images = images;
  request.labels = labels;
  request.seed = seed_;
  request.step = step_;
  request.optimizer = &optimizer_;
  request.update = update;
  // The backend skips the update itself when the loss is not finite.
  float loss = checkFinite(backend_->trainStep(request), "loss");
  if (update)
    ++step_;
  return loss;
}

void Trainer::forwardBackward(const float *images, const int32_t *labels, float *loss) {
  checkBatch(images, labels);
  callTrainerStep(desc().train_step, stepArgs(images, labels), "train_step", library_->path());
  float value = finiteLoss("loss");
  if (loss)
    *loss = value;
}

void Trainer::checkStepCanAdvance() const {
  if (step_ == std::numeric_limits<int64_t>::max())
    fail(SBP_ERROR_INVALID_ARGUMENT,
         "the trainer is at step {}, the largest its step counter holds: it cannot take another "
         "step", step_);
}

void Trainer::step(const float *images, const int32_t *labels, float *loss) {
  checkStepCanAdvance();
  if (backend_->runsSteps()) {
    float value = backendStep(images, labels, true);
    if (loss)
      *loss = value;
    return;
  }
  forwardBackward(images, labels, loss);
  std::vector<float *> state;
  for (DeviceBuffer &s : state_)
    state.push_back(s.as<float>());
  backend_->optimizerStep(optimizer_, spans_, params_.as<float>(), grads_.as<float>(), state,
                          step_ + 1, num_threads_);
  ++step_;
}

void Trainer::computeGradients(const float *images, const int32_t *labels, float *loss) {
  if (backend_->runsSteps()) {
    float value = backendStep(images, labels, false);
    if (loss)
      *loss = value;
    return;
  }
  forwardBackward(images, labels, loss);
}

void Trainer::computeExactGradients(const float *images, const int32_t *labels, float *loss) {
  const sbp_model_desc &d = desc();
  if (!d.exact_train_step)
    fail(SBP_ERROR_UNSUPPORTED,
         "trainer '{}' carries no exact-gradient step: compile it with `sbpc --exact-step`",
         library_->path());
  checkBatch(images, labels);
  if (!exact_arena_.data())
    exact_arena_ = backend_->allocate(size_t(std::max<int64_t>(d.exact_arena_bytes, 1)));
  // The same path as a host-driven step on every backend: the step is not
  // captured, and it reads no keep indices (they are only valid, not used).
  sbp_step_args args = stepArgs(images, labels);
  args.arena = exact_arena_.data();
  callTrainerStep(d.exact_train_step, args, "exact_train_step", library_->path());
  float value = finiteLoss("exact loss");
  if (loss)
    *loss = value;
}

void Trainer::eval(const float *images, const int32_t *labels, float *loss, float *logits) {
  checkBatch(images, labels);
  if (backend_->runsSteps()) {
    StepRequest request;
    request.images = images;
    request.labels = labels;
    request.seed = seed_;
    request.step = step_;
    request.optimizer = &optimizer_;
    float value = checkFinite(backend_->evalStep(request, logits), "eval loss");
    if (loss)
      *loss = value;
    return;
  }
  const sbp_model_desc &d = desc();
  const size_t logit_bytes = size_t(d.batch) * size_t(d.num_classes) * sizeof(float);
  if (logits && logits_staging_.bytes() < logit_bytes)
    logits_staging_ = backend_->allocate(logit_bytes);
  sbp_step_args args = stepArgs(images, labels); // no SBP in eval; the masks are just valid
  args.grads = nullptr;
  args.logits = logits ? logits_staging_.as<float>() : nullptr;
  callTrainerStep(d.eval_step, args, "eval_step", library_->path());
  if (logits)
    backend_->download(logits, logits_staging_.data(), logit_bytes);
  float value = finiteLoss("eval loss");
  if (loss)
    *loss = value;
}

const sbp_mask_group_desc &Trainer::maskGroup(int32_t group) const {
  if (group < 0 || group >= desc().num_mask_groups)
    fail(SBP_ERROR_INVALID_ARGUMENT, "mask group {} does not exist (the model has {})", group,
         desc().num_mask_groups);
  return desc().mask_groups[group];
}

void Trainer::setKeepIndices(int32_t group, const int32_t *idx, int32_t count) {
  const sbp_model_desc &d = desc();
  if (group == -1 && d.num_mask_groups == 0)
    fail(SBP_ERROR_INVALID_ARGUMENT, "the model has no mask groups to set keep indices for");
  if (group != -1)
    maskGroup(group);
  int32_t first = group < 0 ? 0 : group;
  int32_t last = group < 0 ? d.num_mask_groups - 1 : group;
  // Validate every group before changing any: the call is all-or-nothing.
  std::vector<std::vector<int32_t>> chosen;
  for (int32_t g = first; g <= last; ++g)
    chosen.push_back(idx ? checkedFixedIndices(masks_.spec(g), d.mask_groups[g].name, idx, count)
                         : std::vector<int32_t>());
  for (int32_t g = first; g <= last; ++g) {
    backend_->setKeepIndices(g, chosen[size_t(g - first)]);
    fixed_[size_t(g)] = std::move(chosen[size_t(g - first)]);
  }
}

std::vector<int32_t> Trainer::keepIndices(int32_t group, int64_t step) const {
  maskGroup(group);
  if (step < 0)
    fail(SBP_ERROR_INVALID_ARGUMENT, "step {} is negative", step);
  if (isFixed(group))
    return fixed_[size_t(group)];
  const MaskSpec &spec = masks_.spec(group);
  std::vector<int32_t> out(size_t(spec.capacity));
  writeKeepIndices(spec, sampleKeptPositions(spec, seed_, step, masks_.drawOf(group)),
                   out.data());
  return out;
}

void Trainer::setLearningRate(float lr) {
  if (!std::isfinite(lr) || lr < 0.0f)
    fail(SBP_ERROR_INVALID_ARGUMENT, "learning rate {} must be finite and >= 0", lr);
  optimizer_.lr = lr;
}

void Trainer::info(sbp_trainer_info &out) const {
  const sbp_model_desc &d = desc();
  out.model_name = d.model_name;
  out.target = d.target;
  out.sbpc_version = d.sbpc_version ? d.sbpc_version : "";
  out.batch = d.batch;
  out.in_channels = d.in_channels;
  out.in_height = d.in_height;
  out.in_width = d.in_width;
  out.num_classes = d.num_classes;
  out.num_params = d.num_params;
  out.param_elements = d.param_elements;
  out.num_mask_groups = d.num_mask_groups;
  out.keep_ratios = keep_ratios_.data();
  out.optimizer = optimizer_.name();
  out.lr = optimizer_.lr;
  out.weight_decay = optimizer_.weight_decay;
  out.momentum = optimizer_.momentum;
  out.beta1 = optimizer_.beta1;
  out.beta2 = optimizer_.beta2;
  out.eps = optimizer_.eps;
  out.nesterov = optimizer_.nesterov;
  out.seed = seed_;
  out.num_threads = num_threads_;
  out.device = backend_->deviceOrdinal();
  out.device_name = backend_->deviceName();
  out.forward_flops = d.report.forward_flops;
  out.backward_flops = d.report.backward_flops;
  out.saved_activation_bytes = d.report.saved_activation_bytes;
  out.train_arena_bytes = d.report.train_arena_bytes;
  out.eval_arena_bytes = d.report.eval_arena_bytes;
  out.arena_bytes = int64_t(arena_.bytes());
  out.state_bytes = int64_t(params_.bytes() * (2 + state_.size()));
  out.step = step_;
  out.has_exact_step = d.exact_train_step ? 1 : 0;
  out.exact_arena_bytes = d.exact_train_step ? d.exact_arena_bytes : 0;
  out.sbp_plan = d.sbp_plan ? d.sbp_plan : "";
}

const sbp_param_desc &Trainer::param(int32_t index) const {
  if (index < 0 || index >= desc().num_params)
    fail(SBP_ERROR_INVALID_ARGUMENT, "parameter index {} is outside [0, {})", index,
         desc().num_params);
  return desc().params[index];
}

int32_t Trainer::findParam(const std::string &name) const {
  for (int32_t i = 0; i < desc().num_params; ++i)
    if (name == desc().params[i].name)
      return i;
  return -1;
}

void Trainer::readParam(int32_t index, float *dst) const {
  const sbp_param_desc &p = param(index);
  backend_->download(dst, params_.as<float>() + p.offset, size_t(p.numel) * sizeof(float));
}

void Trainer::writeParam(int32_t index, const float *src) {
  const sbp_param_desc &p = param(index);
  backend_->upload(params_.as<float>() + p.offset, src, size_t(p.numel) * sizeof(float));
}

void Trainer::readGradient(int32_t index, float *dst) const {
  const sbp_param_desc &p = param(index);
  backend_->download(dst, grads_.as<float>() + p.offset, size_t(p.numel) * sizeof(float));
}

std::vector<float> Trainer::download(const DeviceBuffer &buffer) const {
  std::vector<float> host(buffer.bytes() / sizeof(float));
  backend_->download(host.data(), buffer.data(), host.size() * sizeof(float));
  return host;
}

std::vector<std::vector<float>> Trainer::optimizerState() const {
  std::vector<std::vector<float>> state;
  for (const DeviceBuffer &s : state_)
    state.push_back(download(s));
  return state;
}

void Trainer::restoreParams(const std::vector<float> &params) {
  if (params.size() * sizeof(float) != params_.bytes())
    fail(SBP_ERROR_INTERNAL, "restore: the parameter buffer has the wrong size");
  backend_->upload(params_.data(), params.data(), params_.bytes());
}

void Trainer::restoreState(const std::vector<float> &params,
                           const std::vector<std::vector<float>> &state, int64_t step,
                           uint64_t seed) {
  if (state.size() != state_.size())
    fail(SBP_ERROR_INTERNAL, "restore: {} optimizer state buffers for {}", state.size(),
         state_.size());
  for (size_t k = 0; k < state_.size(); ++k)
    if (state[k].size() * sizeof(float) != state_[k].bytes())
      fail(SBP_ERROR_INTERNAL, "restore: an optimizer state buffer has the wrong size");
  restoreParams(params);
  for (size_t k = 0; k < state_.size(); ++k)
    backend_->upload(state_[k].data(), state[k].data(), state_[k].bytes());
  step_ = step;
  seed_ = seed;
}

} // namespace sbp::rt
