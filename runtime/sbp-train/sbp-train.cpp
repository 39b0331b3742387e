// sbp-train - train a model with a trainer library written by sbpc.
//
//   sbp-train train.so --data /usr/share/datasets/fashion-mnist --epochs 3
//
// Exit status: 0 on success, 1 on any error (message "sbp-train: error: ..."
// on stderr), 2 for a bad command line. See docs/sbp-train.md.
#include "CsvLog.h"
#include "GradFidelity.h"
#include "KeepIndicesFile.h"
#include "Paths.h"
#include "Progress.h"
#include "Schedule.h"

#include "sbp/trainer.hpp"

#include <boost/program_options.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <typeinfo>
#include <unistd.h>
#include <vector>

namespace po = boost::program_options;
using namespace sbp::train;

namespace {

constexpr int64_t kTrainAccImages = 10000; // train-acc is measured on this many images
constexpr int32_t kMaxThreads = 1024;       // the runtime's limit (sbp_trainer_options)

// A command-line mistake: exit status 2.
class UsageError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

struct Options {
  std::string trainer, data, log, save, resume, schedule = "cosine";
  std::string params, keep_indices, batch, dump_grads, save_params;
  std::optional<int64_t> epochs, steps, warmup_steps;
  std::optional<float> lr, weight_decay;
  std::optional<uint64_t> seed;
  int32_t threads = 0;
  int32_t device = 0;
  bool eval_every_epoch = false, info = false;
  // Gradient fidelity and norms (docs/fidelity.md).
  std::optional<int64_t> grad_fidelity;
  std::string fidelity_csv;
  bool log_grad_norms = false;
};

template <typename T> std::optional<T> optionalOf(const po::variables_map &vm, const char *key) {
  return vm.count(key) ? std::optional<T>(vm[key].as<T>()) : std::nullopt;
}

po::options_description describeOptions(Options &o) {
  po::options_description run("Training");
  run.add_options()
      ("help,h", "print this help and exit")
      ("data", po::value(&o.data), "dataset directory (MNIST IDX or CIFAR-10 binary)")
      ("epochs", po::value<int64_t>(), "train for N epochs (default 1)")
      ("steps", po::value<int64_t>(), "train for N steps in all (instead of --epochs)")
      ("lr", po::value<float>(), "base learning rate (default: the model's)")
      ("weight-decay", po::value<float>(), "weight decay (default: the model's)")
      ("schedule", po::value(&o.schedule), "learning-rate schedule: cosine (default) | constant")
      ("warmup-steps", po::value<int64_t>(), "linear warm-up steps (default: 5% of the run, "
                                             "at most 500, for cosine; 0 for constant)")
      ("seed", po::value<std::string>(), "seed of initialisation, masks and shuffling (default 0)")
      ("threads", po::value(&o.threads), "CPU threads (default: all)")
      ("device", po::value(&o.device), "CUDA device of a cuda trainer (default 0)")
      ("log", po::value(&o.log), "append per-epoch rows to this CSV file")
      ("save", po::value(&o.save), "save a checkpoint here after every epoch")
      ("resume", po::value(&o.resume), "continue from this checkpoint")
      ("eval-every-epoch", po::bool_switch(&o.eval_every_epoch),
       "evaluate after every epoch (default: after the last)");
  po::options_description test("Testing and inspection");
  test.add_options()
      ("info", po::bool_switch(&o.info), "print the trainer's description and report, then exit")
      ("params", po::value(&o.params), "load parameters (safetensors) before training")
      ("keep-indices", po::value(&o.keep_indices), "fix the keep masks (text file of indices)")
      ("batch", po::value(&o.batch), "safetensors batch (images, labels) for --dump-grads")
      ("dump-grads", po::value(&o.dump_grads), "write the gradients of one batch here and exit")
      ("save-params", po::value(&o.save_params), "save the final parameters here")
      ("grad-fidelity", po::value<int64_t>(),
       "compare SBP with exact gradients (keep 1.0; trainer built with sbpc --exact-step) on N "
       "training batches at the same parameters, then exit")
      ("fidelity-csv", po::value(&o.fidelity_csv),
       "write --grad-fidelity's per-parameter cosine and norm ratio here (default: stdout)")
      ("log-grad-norms", po::bool_switch(&o.log_grad_norms),
       "add each parameter's gradient L2 norm (at the epoch's last step) to the --log CSV");
  po::options_description all;
  all.add(run).add(test);
  return all;
}

void printHelp(const po::options_description &options) {
  fmt::print("usage: sbp-train TRAINER.so --data DIR [--epochs N | --steps N] [options]\n\n");
  std::ostringstream text;
  text << options;
  fmt::print("{}\n", text.str());
}

// Boost reads "-1" as a uint64_t by wrapping it to 2^64-1: parse the digits here.
uint64_t parseSeed(const std::string &text) {
  uint64_t seed = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seed);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size())
    throw UsageError("--seed must be an integer in [0, 2^64-1], not '" + text + "'");
  return seed;
}

// A hyper-parameter the user gives must be one: negative values used to fall
// back to the model's silently.
void checkHyperParameter(const char *option, const std::optional<float> &value) {
  if (value && !(std::isfinite(*value) && *value >= 0.0f))
    throw UsageError(fmt::format("{} must be a finite number >= 0, not {}", option, *value));
}

// Returns std::nullopt when --help was handled.
std::optional<Options> parseCommandLine(int argc, char **argv) {
  Options o;
  po::options_description visible = describeOptions(o);
  po::options_description all;
  all.add(visible).add_options()("trainer", po::value(&o.trainer));
  po::positional_options_description positional;
  positional.add("trainer", 1);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(all).positional(positional).run(), vm);
    po::notify(vm);
  } catch (const po::error &e) {
    throw UsageError(e.what());
  }
  if (vm.count("help")) {
    printHelp(visible);
    return std::nullopt;
  }
  // An empty string reads as "option not given" below: --resume '' would
  // silently start from scratch, --save '' silently save nothing.
  for (const auto &[name, value] : vm)
    if (!value.empty() && value.value().type() == typeid(std::string) &&
        value.as<std::string>().empty())
      throw UsageError(fmt::format("--{} needs a value, not an empty string", name));
  o.epochs = optionalOf<int64_t>(vm, "epochs");
  o.steps = optionalOf<int64_t>(vm, "steps");
  o.warmup_steps = optionalOf<int64_t>(vm, "warmup-steps");
  o.grad_fidelity = optionalOf<int64_t>(vm, "grad-fidelity");
  if (o.grad_fidelity && *o.grad_fidelity < 1)
    throw UsageError("--grad-fidelity needs at least 1 batch");
  if (!o.fidelity_csv.empty() && !o.grad_fidelity)
    throw UsageError("--fidelity-csv is the output of --grad-fidelity; give --grad-fidelity N too");
  if (o.grad_fidelity && !o.dump_grads.empty())
    throw UsageError("give --grad-fidelity or --dump-grads, not both");
  if (o.log_grad_norms && vm.count("log") == 0)
    throw UsageError("--log-grad-norms adds columns to the --log CSV; give --log FILE too");
  o.lr = optionalOf<float>(vm, "lr");
  o.weight_decay = optionalOf<float>(vm, "weight-decay");
  if (vm.count("seed"))
    o.seed = parseSeed(vm["seed"].as<std::string>());
  if (o.trainer.empty())
    throw UsageError("no trainer library given");
  if (o.epochs && o.steps)
    throw UsageError("give --epochs or --steps, not both");
  if ((o.epochs && *o.epochs < 1) || (o.steps && *o.steps < 1))
    throw UsageError("--epochs and --steps must be at least 1");
  if (o.warmup_steps && *o.warmup_steps < 0)
    throw UsageError("--warmup-steps must not be negative");
  if (o.threads < 0 || o.threads > kMaxThreads)
    throw UsageError(fmt::format("--threads must be in [0, {}] (0: all), not {}", kMaxThreads,
                                 o.threads));
  checkHyperParameter("--lr", o.lr);
  checkHyperParameter("--weight-decay", o.weight_decay);
  if (o.device < 0)
    throw UsageError("--device must not be negative");
  if (!o.resume.empty() && !o.params.empty())
    throw UsageError("--resume already restores the parameters; drop --params");
  if (!o.batch.empty() && o.dump_grads.empty())
    throw UsageError("--batch is the batch of --dump-grads; give --dump-grads too");
  bool needs_data = !o.info && (o.dump_grads.empty() || o.batch.empty());
  if (needs_data && o.data.empty())
    throw UsageError("--data DIR is required");
  try {
    parseScheduleKind(o.schedule);
  } catch (const std::invalid_argument &e) {
    throw UsageError(e.what());
  }
  return o;
}

// ------------------------------------------------------------------ info --

std::string humanBytes(double bytes) {
  const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024.0 && u < 4) {
    bytes /= 1024.0;
    ++u;
  }
  return fmt::format(u ? "{:.1f} {}" : "{:.0f} {}", bytes, units[u]);
}

void printInfo(const sbp::Trainer &trainer) {
  sbp_trainer_info i = trainer.info();
  fmt::print("model          {}\n", i.model_name);
  fmt::print("target         {}\n", i.target);
  if (i.device >= 0)
    fmt::print("device         {} (CUDA device {})\n", i.device_name, i.device);
  else
    fmt::print("device         {}\n", i.device_name);
  fmt::print("sbpc version   {}\n", *i.sbpc_version ? i.sbpc_version : "unknown");
  fmt::print("batch          {}\n", i.batch);
  fmt::print("input          {}x{}x{}\n", i.in_channels, i.in_height, i.in_width);
  fmt::print("classes        {}\n", i.num_classes);
  fmt::print("parameters     {} elements in {} tensors ({})\n", i.param_elements, i.num_params,
             humanBytes(double(i.param_elements) * 4));
  for (int32_t p = 0; p < i.num_params; ++p) {
    sbp_param_info pi{};
    pi.struct_size = sizeof(pi);
    sbp::detail::check(sbp_trainer_get_param_info(trainer.get(), p, &pi));
    std::vector<int64_t> shape(pi.shape, pi.shape + pi.rank);
    fmt::print("  {:<40} [{}]{}\n", pi.name, fmt::join(shape, ", "),
               pi.weight_decay ? "" : "  (no weight decay)");
  }
  fmt::print("optimizer      {}  lr {}  weight decay {}", i.optimizer, i.lr, i.weight_decay);
  if (std::string(i.optimizer) == "adamw")
    fmt::print("  betas ({}, {})  eps {}\n", i.beta1, i.beta2, i.eps);
  else
    fmt::print("  momentum {}{}\n", i.momentum, i.nesterov ? " (Nesterov)" : "");
  fmt::print("mask groups    {}\n", i.num_mask_groups);
  for (int32_t g = 0; g < i.num_mask_groups; ++g) {
    sbp_mask_group_info m{};
    m.struct_size = sizeof(m);
    sbp::detail::check(sbp_trainer_get_mask_group_info(trainer.get(), g, &m));
    if (std::string(m.kind) == "heads") // grid 1 x heads, no prefix
      fmt::print("  {:<12} heads keep {}  {} heads  capacity {}\n", m.name, m.keep_ratio,
                 m.grid_w, m.capacity);
    else if (m.cell > 1) // a derived group: drawn on the coarse grid
      fmt::print("  {:<12} {} keep {}  grid {}x{} cell {} (drawn {}x{})  prefix {}  capacity {}\n",
                 m.name, m.kind, m.keep_ratio, m.grid_h, m.grid_w, m.cell, m.grid_h / m.cell,
                 m.grid_w / m.cell, m.prefix_tokens, m.capacity);
    else
      fmt::print("  {:<12} {} keep {}  grid {}x{}  prefix {}  capacity {}\n", m.name, m.kind,
                 m.keep_ratio, m.grid_h, m.grid_w, m.prefix_tokens, m.capacity);
  }
  fmt::print("report         forward {:.3g} FLOP, backward {:.3g} FLOP per step\n",
             i.forward_flops, i.backward_flops);
  fmt::print("               saved activations {}, arena train {} / eval {}\n",
             humanBytes(double(i.saved_activation_bytes)), humanBytes(double(i.train_arena_bytes)),
             humanBytes(double(i.eval_arena_bytes)));
  fmt::print("runtime        ABI {}, arena {}, parameters+gradients+optimizer {}\n",
             sbp_runtime_abi_version(), humanBytes(double(i.arena_bytes)),
             humanBytes(double(i.state_bytes)));
  if (*i.sbp_plan)
    fmt::print("sbp plan       {}\n", i.sbp_plan);
  if (i.has_exact_step)
    fmt::print("exact step     yes (sbpc --exact-step), arena {}\n",
               humanBytes(double(i.exact_arena_bytes)));
}

// ------------------------------------------------------------ batches ---

struct Batch {
  std::vector<float> images;
  std::vector<int32_t> labels;
  explicit Batch(const sbp_trainer_info &i)
      : images(size_t(i.batch) * size_t(i.in_channels) * size_t(i.in_height) *
               size_t(i.in_width)),
        labels(size_t(i.batch)) {}
};

void checkCompatible(const sbp_trainer_info &t, const sbp_dataset_info &d,
                     const std::string &dir) {
  if (t.in_channels != d.channels || t.in_height != d.height || t.in_width != d.width)
    throw std::runtime_error(fmt::format(
        "dataset '{}' has {}x{}x{} images, the trainer expects {}x{}x{}", dir, d.channels,
        d.height, d.width, t.in_channels, t.in_height, t.in_width));
  if (d.num_classes > t.num_classes)
    throw std::runtime_error(fmt::format("dataset '{}' has {} classes, the trainer only {}", dir,
                                         d.num_classes, t.num_classes));
}

// Fixes the masks from a --keep-indices file; a refused line is named as
// path:line (the runtime's message says why: range, order, the class token).
void applyKeepIndices(sbp::Trainer &trainer, const std::string &path) {
  std::vector<KeepIndexLine> lines = readKeepIndicesFile(path);
  int32_t groups = trainer.info().num_mask_groups;
  auto apply = [&](int32_t group, const KeepIndexLine &line) {
    try {
      trainer.setKeepIndices(group, line.indices);
    } catch (const sbp::Error &e) {
      throw std::runtime_error(fmt::format("{}:{}: {}", path, line.line, e.what()));
    }
  };
  if (!lines.front().group.empty()) { // every line names its group
    std::vector<int> line_of(size_t(std::max(groups, 0)), 0);
    std::vector<std::string> names;
    for (int32_t g = 0; g < groups; ++g) {
      sbp_mask_group_info m{};
      m.struct_size = sizeof(m);
      sbp::detail::check(sbp_trainer_get_mask_group_info(trainer.get(), g, &m));
      names.push_back(m.name ? m.name : "");
    }
    for (const KeepIndexLine &line : lines) {
      auto it = std::find(names.begin(), names.end(), line.group);
      if (it == names.end())
        throw std::runtime_error(fmt::format("{}:{}: the model has no mask group '{}' (it has {})",
                                             path, line.line, line.group,
                                             fmt::join(names, ", ")));
      size_t g = size_t(it - names.begin());
      if (line_of[g])
        throw std::runtime_error(fmt::format("{}:{}: mask group '{}' is already fixed on line {}",
                                             path, line.line, line.group, line_of[g]));
      line_of[g] = line.line;
      apply(int32_t(g), line);
    }
    for (size_t g = 0; g < names.size(); ++g)
      if (!line_of[g])
        throw std::runtime_error(fmt::format("'{}' names no line for mask group '{}' (name every "
                                             "group, or give unnamed lines)",
                                             path, names[g]));
    return;
  }
  if (lines.size() == 1) {
    apply(-1, lines[0]);
    return;
  }
  if (int32_t(lines.size()) != groups)
    throw std::runtime_error(fmt::format(
        "'{}' has {} lines of keep indices; the model has {} mask groups (give one line for all "
        "of them, or one per group)",
        path, lines.size(), groups));
  for (int32_t g = 0; g < groups; ++g)
    apply(g, lines[size_t(g)]);
}

int dumpGradients(sbp::Trainer &trainer, const Options &o) {
  sbp_trainer_info info = trainer.info();
  Batch batch(info);
  if (!o.batch.empty()) {
    trainer.readBatchFile(o.batch, batch.images.data(), batch.labels.data());
  } else {
    sbp::Dataset data(o.data);
    checkCompatible(info, data.info(), o.data);
    if (data.info().train_count < info.batch)
      throw std::runtime_error(fmt::format("dataset '{}' has fewer than {} training images",
                                           o.data, info.batch));
    data.evalBatch(info.batch, 0, batch.images.data(), batch.labels.data(), SBP_SPLIT_TRAIN);
  }
  float loss = trainer.computeGradients(batch.images.data(), batch.labels.data());
  trainer.saveGradients(o.dump_grads);
  if (!o.save_params.empty())
    trainer.saveParams(o.save_params);
  fmt::print("loss {:.6f}; gradients of {} parameters written to {}\n", loss, info.num_params,
             o.dump_grads);
  return 0;
}

// ------------------------------------------------- gradient fidelity ---

// Training batches of epoch 0 in the run's shuffle, as training would see them.
struct DatasetBatches : FidelityBatches {
  DatasetBatches(sbp::Dataset &data, int64_t batch, uint64_t seed)
      : data(data), batch(batch), seed(seed) {}
  void get(int64_t index, float *images, int32_t *labels) override {
    const int64_t per_epoch = data.numTrainBatches(batch);
    data.trainBatch(batch, seed, index / per_epoch, index % per_epoch, images, labels);
  }
  sbp::Dataset &data;
  int64_t batch;
  uint64_t seed;
};

int gradFidelity(sbp::Trainer &trainer, const Options &o) {
  sbp::Dataset data(o.data);
  sbp_trainer_info info = trainer.info();
  checkCompatible(info, data.info(), o.data);
  if (data.numTrainBatches(info.batch) < 1)
    throw std::runtime_error(fmt::format("dataset '{}' has fewer than {} training images", o.data,
                                         info.batch));
  DatasetBatches batches(data, info.batch, info.seed);
  std::FILE *csv = stdout;
  if (!o.fidelity_csv.empty() && !(csv = std::fopen(o.fidelity_csv.c_str(), "w")))
    throw std::runtime_error(fmt::format("cannot write '{}'", o.fidelity_csv));
  std::vector<double> cosine;
  try {
    cosine = measureGradientFidelity(trainer, batches, *o.grad_fidelity, csv);
  } catch (...) {
    if (csv != stdout)
      std::fclose(csv);
    throw;
  }
  if (csv != stdout && std::fclose(csv) != 0)
    throw std::runtime_error(fmt::format("cannot write '{}'", o.fidelity_csv));
  // The summary goes where the CSV does not.
  std::FILE *out = csv == stdout ? stderr : stdout;
  auto worst = std::min_element(cosine.begin(), cosine.end());
  double mean = 0.0;
  for (double c : cosine)
    mean += c / double(cosine.size());
  sbp_param_info pi{};
  pi.struct_size = sizeof(pi);
  sbp::detail::check(
      sbp_trainer_get_param_info(trainer.get(), int32_t(worst - cosine.begin()), &pi));
  fmt::print(out, "grad fidelity over {} batches, {} parameters: mean cosine {:.6f}, lowest "
                  "{:.6f} ({})\n",
             *o.grad_fidelity, cosine.size(), mean, *worst, pi.name);
  return 0;
}

// ------------------------------------------------------------ training --

struct EvalResult {
  double loss = 0.0, accuracy = 0.0;
};

// Mean cross-entropy and accuracy over the first `max_images` of a split (all
// when <= 0), from logits, so padded entries of the last batch are left out.
EvalResult evaluate(sbp::Trainer &trainer, sbp::Dataset &data, sbp_split split,
                    int64_t max_images) {
  sbp_trainer_info info = trainer.info();
  Batch batch(info);
  std::vector<float> logits(size_t(info.batch) * size_t(info.num_classes));
  int64_t batches = data.numEvalBatches(info.batch, split);
  if (max_images > 0)
    batches = std::min(batches, (max_images + info.batch - 1) / info.batch);
  double loss = 0.0;
  int64_t correct = 0, count = 0;
  for (int64_t b = 0; b < batches; ++b) {
    int64_t valid =
        data.evalBatch(info.batch, b, batch.images.data(), batch.labels.data(), split);
    trainer.eval(batch.images.data(), batch.labels.data(), logits.data());
    for (int64_t k = 0; k < valid; ++k) {
      const float *row = logits.data() + k * info.num_classes;
      const float *best = std::max_element(row, row + info.num_classes);
      double sum = 0.0;
      for (int32_t c = 0; c < info.num_classes; ++c)
        sum += std::exp(double(row[c]) - *best);
      loss += *best + std::log(sum) - row[batch.labels[size_t(k)]];
      correct += (best - row) == batch.labels[size_t(k)];
    }
    count += valid;
  }
  return {loss / double(std::max<int64_t>(count, 1)),
          100.0 * double(correct) / double(std::max<int64_t>(count, 1))};
}

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// One optimizer step; a non-finite loss ends the run with where it happened.
double trainStep(sbp::Trainer &trainer, Batch &batch, int64_t epoch, int64_t index) {
  try {
    return trainer.step(batch.images.data(), batch.labels.data());
  } catch (const sbp::Error &e) {
    if (e.status() != SBP_ERROR_NUMERIC)
      throw;
    throw std::runtime_error(fmt::format("training stopped in epoch {}, batch {}: {}; that step "
                                         "was not applied (a lower --lr may help)",
                                         epoch + 1, index + 1, e.what()));
  }
}

int train(sbp::Trainer &trainer, const Options &o) {
  sbp::Dataset data(o.data);
  sbp_trainer_info info = trainer.info();
  checkCompatible(info, data.info(), o.data);
  const int64_t per_epoch = data.numTrainBatches(info.batch);
  if (per_epoch < 1)
    throw std::runtime_error(fmt::format("dataset '{}' has {} training images, fewer than one "
                                         "batch of {}",
                                         o.data, data.info().train_count, info.batch));
  if (!o.steps && o.epochs.value_or(1) > std::numeric_limits<int64_t>::max() / per_epoch)
    throw UsageError(fmt::format("--epochs {} is too many: at {} steps per epoch the run would "
                                 "have more than 2^63-1 steps",
                                 *o.epochs, per_epoch));
  const int64_t total = o.steps ? *o.steps : o.epochs.value_or(1) * per_epoch;
  const int64_t epochs = (total + per_epoch - 1) / per_epoch;
  const uint64_t seed = info.seed; // after --resume: the checkpoint's
  LrSchedule schedule;
  schedule.kind = parseScheduleKind(o.schedule);
  schedule.base_lr = info.lr;
  schedule.total_steps = total;
  schedule.warmup_steps = o.warmup_steps.value_or(defaultWarmupSteps(schedule.kind, total));
  // Longer than the run, the warm-up would end it below the base rate and the
  // cosine decay would never start: a mistake, not a schedule.
  if (schedule.warmup_steps > total)
    throw UsageError(fmt::format("--warmup-steps {} is longer than the run's {} steps: the "
                                 "learning rate would never reach its base value (give at most {})",
                                 schedule.warmup_steps, total, total));

  int64_t step = info.step;
  if (step >= total) {
    fmt::print("nothing to do: the checkpoint is at step {}, the run has {} steps\n", step,
               total);
    return 0;
  }
  // Resuming: rows past the checkpoint's step are of work this run redoes.
  CsvLog log(o.log, o.resume.empty() ? std::nullopt : std::optional<int64_t>(step),
             o.log_grad_norms ? gradientNormColumns(trainer) : std::vector<std::string>{});
  Batch batch(info);
  const bool terminal = ::isatty(STDERR_FILENO) == 1;
  const auto run_start = Clock::now();
  while (step < total) {
    const int64_t epoch = step / per_epoch;
    const int64_t first = step % per_epoch;
    const int64_t last = std::min(per_epoch, first + (total - step)); // exclusive
    Progress progress(stderr, terminal, fmt::format("epoch {}/{}", epoch + 1, epochs),
                      last - first);
    double loss_sum = 0.0;
    const auto epoch_start = Clock::now();
    for (int64_t index = first; index < last; ++index, ++step) {
      data.trainBatch(info.batch, seed, epoch, index, batch.images.data(), batch.labels.data());
      trainer.setLearningRate(float(schedule.at(step)));
      loss_sum += trainStep(trainer, batch, epoch, index);
      int64_t done = index - first + 1;
      progress.update(done, loss_sum / double(done),
                      double(done * info.batch) / secondsSince(epoch_start));
    }
    progress.finish();
    const double train_seconds = secondsSince(epoch_start);
    const double train_loss = loss_sum / double(last - first);
    const double rate = double((last - first) * info.batch) / train_seconds;
    std::optional<EvalResult> test;
    std::string line = fmt::format("epoch {}/{}  loss {:.4f}", epoch + 1, epochs, train_loss);
    if (o.eval_every_epoch || step == total) {
      EvalResult train_acc = evaluate(trainer, data, SBP_SPLIT_TRAIN, kTrainAccImages);
      line += fmt::format("  train-acc {:.1f}%", train_acc.accuracy);
      // An empty split has no accuracy; 0.0% would read as a broken model.
      if (data.info().test_count > 0) {
        test = evaluate(trainer, data, SBP_SPLIT_TEST, 0);
        line += fmt::format("  test-loss {:.4f}  test-acc {:.1f}%", test->loss, test->accuracy);
      } else {
        line += "  (no test data)";
      }
    }
    fmt::print("{}  {:.0f} img/s\n", line, rate);
    std::fflush(stdout);
    log.row(epoch + 1, step, train_loss, test ? std::optional(test->loss) : std::nullopt,
            test ? std::optional(test->accuracy) : std::nullopt, secondsSince(run_start),
            o.log_grad_norms ? gradientNorms(trainer) : std::vector<double>{});
    if (!o.save.empty())
      trainer.saveCheckpoint(o.save);
  }
  return 0;
}

// Every file sbp-train is given is checked before any work: an unwritable
// --save used to fail only after the first epoch, a FIFO to block forever.
void checkPaths(const Options &o) {
  for (const auto &[option, path] :
       {std::pair<const char *, const std::string &>{"--keep-indices", o.keep_indices},
        {"--params", o.params}, {"--resume", o.resume}, {"--batch", o.batch}})
    if (!path.empty())
      checkInputFile(option, path);
  if (o.info)
    return; // writes nothing
  for (const auto &[option, path] :
       {std::pair<const char *, const std::string &>{"--save", o.save},
        {"--save-params", o.save_params}, {"--dump-grads", o.dump_grads},
        {"--fidelity-csv", o.fidelity_csv}})
    if (!path.empty())
      checkOutputPath(option, path);
  if (!o.log.empty() && o.dump_grads.empty())
    checkOutputPath("--log", o.log, /*in_place=*/true);
}

int run(const Options &o) {
  checkPaths(o);
  sbp::TrainerOptions options;
  options.seed = o.seed.value_or(0);
  options.num_threads = o.threads;
  options.device = o.device;
  if (o.lr)
    options.lr = *o.lr;
  if (o.weight_decay)
    options.weight_decay = *o.weight_decay;
  sbp::Trainer trainer(o.trainer, options);
  if (o.info) {
    printInfo(trainer);
    return 0;
  }
  if (!o.resume.empty()) {
    trainer.loadCheckpoint(o.resume);
    sbp_trainer_info info = trainer.info();
    if (o.seed && *o.seed != info.seed)
      fmt::print(stderr, "sbp-train: warning: --seed {} ignored: the checkpoint continues seed {}\n",
                 *o.seed, info.seed);
    fmt::print(stderr, "sbp-train: resumed '{}' at step {}\n", o.resume, info.step);
  }
  if (!o.params.empty())
    trainer.loadParams(o.params);
  if (!o.keep_indices.empty())
    applyKeepIndices(trainer, o.keep_indices);
  if (!o.dump_grads.empty())
    return dumpGradients(trainer, o);
  if (o.grad_fidelity)
    return gradFidelity(trainer, o);
  int status = train(trainer, o);
  if (status == 0 && !o.save_params.empty())
    trainer.saveParams(o.save_params);
  return status;
}

} // namespace

/// GNU OpenMP reads OMP_WAIT_POLICY once, when it is loaded: before main.
/// Its default lets idle threads spin, which on a shared or busy machine (and
/// beside OpenBLAS's own threads) starves the threads doing work, by up to 10x
/// here. Unless the user chose a policy, re-execute with a passive one.
static void preferPassiveOpenMPThreads(char **argv) {
  if (std::getenv("OMP_WAIT_POLICY"))
    return;
  setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
  execv("/proc/self/exe", argv); // returns only on failure: then run as we are
}

int main(int argc, char **argv) {
  preferPassiveOpenMPThreads(argv);
  try {
    std::optional<Options> options = parseCommandLine(argc, argv);
    return options ? run(*options) : 0;
  } catch (const UsageError &e) {
    fmt::print(stderr, "sbp-train: error: {}\nTry 'sbp-train --help'.\n", e.what());
    return 2;
  } catch (const sbp::Error &e) {
    fmt::print(stderr, "sbp-train: error: {}\n", e.what());
    return 1;
  } catch (const std::exception &e) {
    fmt::print(stderr, "sbp-train: error: {}\n", e.what());
    return 1;
  } catch (...) {
    fmt::print(stderr, "sbp-train: error: unknown failure\n");
    return 1;
  }
}
