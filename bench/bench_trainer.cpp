// sbp-bench - times whole training steps of a trainer library written by sbpc.
//
//   sbp-bench TRAINER.so [--steps N] [--warmup W] [--device D] [--seed S] [--threads T]
//             [--mode NAME] [--precision LABEL] [--host-inputs] [--require-target cpu|cuda]
//
// Loads the trainer through the C API (sbp/trainer.hpp), draws one batch of
// N(0, 1) images and uniform labels in [0, num_classes) on the memory the
// trainer runs on (device memory from cudaMalloc for a "cuda" trainer, so the
// runtime takes its device-pointer path; host memory for "cpu"), runs W warm-up
// steps, then N timed steps, and prints one JSON line on stdout (everything
// else goes to stderr). See bench/README.md for the fields.
//
// Timing: a host steady_clock around sbp_trainer_step. The step returns the
// loss, which the runtime copies back to the host, so it has synchronised; for
// a cuda trainer the bench also calls cudaDeviceSynchronize() inside the timed
// region, which costs microseconds and makes the number independent of which
// stream the runtime uses.
//
// Peak memory:
//  - cuda: cudaMemGetInfo, used = total - free. `base` is read after the CUDA
//    context exists and before sbp_trainer_create; `used` is read again after
//    creation and after every step (outside the timed region). peak_mem_bytes =
//    max(used) - base: everything the run added on the device (trainer
//    parameters/gradients/optimizer state, arena, staging, library workspaces,
//    loaded kernels, and this bench's own input batch, reported separately as
//    input_bytes). It is device-wide: another process on the same GPU would be
//    counted, so run alone. torch_patch_mlp.py measures the same way.
//  - cpu: VmHWM (peak resident set) of the process at the end minus VmRSS
//    before sbp_trainer_create.
//
// Exit status: 0 on success, 1 on an error, 2 for a bad command line, 3 when
// --require-target names another target than the trainer's (nothing timed).
#include "sbp/trainer.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#ifdef SBP_BENCH_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

namespace {

class UsageError : public std::runtime_error {
public:
  using std::runtime_error::runtime_error;
};

struct Options {
  std::string trainer;
  int64_t steps = 50;
  int64_t warmup = 10;
  int32_t device = 0;
  uint64_t seed = 0;
  int32_t threads = 0;
  std::string mode;           // label; default: from the file name <model>_<mode>.so
  std::string require_target; // empty: any
  std::string precision = "fp32"; // label only: what the trainer computes in
  bool host_inputs = false;   // pass host buffers even to a cuda trainer
};

const char *kUsage =
    "usage: sbp-bench TRAINER.so [--steps N] [--warmup W] [--device D] [--seed S]\n"
    "                 [--threads T] [--mode NAME] [--precision LABEL] [--host-inputs]\n"
    "                 [--require-target cpu|cuda]\n";

int64_t parseInt(const std::string &flag, const std::string &text, int64_t min) {
  size_t used = 0;
  int64_t value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception &) {
    used = 0;
  }
  if (used != text.size() || text.empty())
    throw UsageError(fmt::format("{} expects an integer, got '{}'", flag, text));
  if (value < min)
    throw UsageError(fmt::format("{} must be >= {}, got {}", flag, min, value));
  return value;
}

Options parseOptions(int argc, char **argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc)
        throw UsageError(fmt::format("{} needs a value", arg));
      return argv[++i];
    };
    if (arg == "-h" || arg == "--help") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (arg == "--steps") {
      o.steps = parseInt(arg, value(), 1);
    } else if (arg == "--warmup") {
      o.warmup = parseInt(arg, value(), 0);
    } else if (arg == "--device") {
      o.device = int32_t(parseInt(arg, value(), 0));
    } else if (arg == "--seed") {
      o.seed = uint64_t(parseInt(arg, value(), 0));
    } else if (arg == "--threads") {
      o.threads = int32_t(parseInt(arg, value(), 0));
    } else if (arg == "--mode") {
      o.mode = value();
    } else if (arg == "--precision") {
      o.precision = value();
    } else if (arg == "--require-target") {
      o.require_target = value();
    } else if (arg == "--host-inputs") {
      o.host_inputs = true;
    } else if (!arg.empty() && arg[0] == '-') {
      throw UsageError(fmt::format("unknown option {}", arg));
    } else if (o.trainer.empty()) {
      o.trainer = arg;
    } else {
      throw UsageError(fmt::format("unexpected argument {}", arg));
    }
  }
  if (o.trainer.empty())
    throw UsageError("no trainer library given");
  return o;
}

std::string jsonString(const std::string &s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
    case '"': out += "\\\""; break;
    case '\\': out += "\\\\"; break;
    case '\n': out += "\\n"; break;
    case '\t': out += "\\t"; break;
    default:
      if (c < 0x20)
        out += fmt::format("\\u{:04x}", unsigned(c));
      else
        out += char(c);
    }
  }
  return out + "\"";
}

// A finite double as JSON (NaN/inf have no JSON spelling: null).
std::string jsonNumber(double v) {
  return std::isfinite(v) ? fmt::format("{:.6g}", v) : std::string("null");
}

// Linear interpolation between closest ranks (numpy's default), q in [0, 1].
double percentile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  const double pos = q * double(v.size() - 1);
  const size_t lo = size_t(std::floor(pos)), hi = size_t(std::ceil(pos));
  return v[lo] + (v[hi] - v[lo]) * (pos - double(lo));
}

// "patch_mlp_bench_sbp.so" with model "patch_mlp_bench" -> "sbp".
std::string modeFromPath(const std::string &path, const std::string &model) {
  std::string stem = path.substr(path.find_last_of('/') + 1);
  if (auto dot = stem.find(".so"); dot != std::string::npos)
    stem = stem.substr(0, dot);
  if (stem.size() > model.size() + 1 && stem.compare(0, model.size() + 1, model + "_") == 0)
    return stem.substr(model.size() + 1);
  return stem;
}

// A field of /proc/self/status in bytes ("VmHWM", "VmRSS"); -1 if unavailable.
int64_t procStatusBytes(const std::string &field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.compare(0, field.size() + 1, field + ":") == 0) {
      std::istringstream rest(line.substr(field.size() + 1));
      int64_t kib = -1;
      rest >> kib;
      return kib < 0 ? -1 : kib * 1024;
    }
  }
  return -1;
}

// sbp_trainer_info.device_name, where this runtime's header has it (newer runtimes).
template <typename T, typename = void> struct HasDeviceName : std::false_type {};
template <typename T>
struct HasDeviceName<T, std::void_t<decltype(std::declval<const T &>().device_name)>>
    : std::true_type {};
template <typename T> std::string infoDeviceName(const T &info) {
  if constexpr (HasDeviceName<T>::value)
    return info.device_name ? std::string(info.device_name) : std::string();
  else
    return std::string();
}

#ifdef SBP_BENCH_WITH_CUDA
void checkCuda(cudaError_t rc, const char *what) {
  if (rc != cudaSuccess)
    throw std::runtime_error(fmt::format("{} failed: {} ({})", what, cudaGetErrorString(rc),
                                         cudaGetErrorName(rc)));
}

int64_t deviceUsedBytes() {
  size_t free_bytes = 0, total_bytes = 0;
  checkCuda(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
  return int64_t(total_bytes) - int64_t(free_bytes);
}

struct DeviceFree {
  void operator()(void *p) const { cudaFree(p); }
};
using DevicePtr = std::unique_ptr<void, DeviceFree>;
#endif

int run(const Options &o) {
  bool cuda_ready = false;
  int64_t mem_base = -1, mem_total = -1;
  std::string device_name;
#ifdef SBP_BENCH_WITH_CUDA
  int device_count = 0;
  if (cudaGetDeviceCount(&device_count) == cudaSuccess && device_count > o.device) {
    checkCuda(cudaSetDevice(o.device), "cudaSetDevice");
    checkCuda(cudaFree(nullptr), "CUDA context creation");
    checkCuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    cudaDeviceProp prop{};
    checkCuda(cudaGetDeviceProperties(&prop, o.device), "cudaGetDeviceProperties");
    device_name = prop.name;
    size_t free_bytes = 0, total_bytes = 0;
    checkCuda(cudaMemGetInfo(&free_bytes, &total_bytes), "cudaMemGetInfo");
    mem_total = int64_t(total_bytes);
    mem_base = int64_t(total_bytes) - int64_t(free_bytes);
    cuda_ready = true;
  } else {
    cudaGetLastError(); // clear "no device"
  }
#endif
  const int64_t rss_base = procStatusBytes("VmRSS");

  sbp::TrainerOptions topts;
  topts.withSeed(o.seed).withThreads(o.threads);
  topts.device = o.device;
  sbp::Trainer trainer(o.trainer, topts);
  const sbp_trainer_info info = trainer.info();
  const std::string target = info.target ? info.target : "";
  const std::string model = info.model_name ? info.model_name : "";
  if (target != "cuda")
    device_name = "cpu";
  else if (device_name.empty())
    device_name = infoDeviceName(info);
  if (!o.require_target.empty() && target != o.require_target) {
    std::fprintf(stderr, "sbp-bench: %s is a \"%s\" trainer, not \"%s\": skipped\n",
                 o.trainer.c_str(), target.c_str(), o.require_target.c_str());
    return 3;
  }

  const bool on_device = target == "cuda" && !o.host_inputs;
  if (on_device && !cuda_ready)
    throw std::runtime_error(
        "a cuda trainer needs device inputs, but this sbp-bench was built without CUDA "
        "(SBP_BENCH_CUDA=OFF) or sees no device; pass --host-inputs to let the runtime stage "
        "host buffers");

  const int64_t image_elems =
      info.batch * int64_t(info.in_channels) * info.in_height * info.in_width;
  std::vector<float> images(static_cast<size_t>(image_elems));
  std::vector<int32_t> labels(static_cast<size_t>(info.batch));
  {
    std::mt19937_64 rng(0x5bbe7c4ULL ^ o.seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_int_distribution<int32_t> label(0, info.num_classes - 1);
    for (float &x : images)
      x = normal(rng);
    for (int32_t &y : labels)
      y = label(rng);
  }
  const int64_t input_bytes = image_elems * 4 + info.batch * 4;
  const float *images_arg = images.data();
  const int32_t *labels_arg = labels.data();
#ifdef SBP_BENCH_WITH_CUDA
  DevicePtr d_images, d_labels;
  if (on_device) {
    void *p = nullptr;
    checkCuda(cudaMalloc(&p, size_t(image_elems) * 4), "cudaMalloc(images)");
    d_images.reset(p);
    checkCuda(cudaMalloc(&p, size_t(info.batch) * 4), "cudaMalloc(labels)");
    d_labels.reset(p);
    checkCuda(cudaMemcpy(d_images.get(), images.data(), size_t(image_elems) * 4,
                         cudaMemcpyHostToDevice),
              "cudaMemcpy(images)");
    checkCuda(cudaMemcpy(d_labels.get(), labels.data(), size_t(info.batch) * 4,
                         cudaMemcpyHostToDevice),
              "cudaMemcpy(labels)");
    checkCuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
    images_arg = static_cast<const float *>(d_images.get());
    labels_arg = static_cast<const int32_t *>(d_labels.get());
  }
#endif

  int64_t mem_peak = -1;
  auto sample_memory = [&]() {
#ifdef SBP_BENCH_WITH_CUDA
    if (cuda_ready)
      mem_peak = std::max(mem_peak, deviceUsedBytes());
#endif
  };
  auto sync = [&]() {
#ifdef SBP_BENCH_WITH_CUDA
    if (cuda_ready && target == "cuda")
      checkCuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize after a step");
#endif
  };
  sample_memory();

  using clock = std::chrono::steady_clock;
  std::vector<double> times_ms;
  float first_loss = NAN, last_loss = NAN;
  double warmup_ms = 0.0;
  for (int64_t i = 0; i < o.warmup + o.steps; ++i) {
    const auto t0 = clock::now();
    const float loss = trainer.step(images_arg, labels_arg);
    sync();
    const auto t1 = clock::now();
    const double ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
    if (i == 0)
      first_loss = loss;
    last_loss = loss;
    if (i < o.warmup)
      warmup_ms += ms;
    else
      times_ms.push_back(ms);
    sample_memory();
  }

  const double median = percentile(times_ms, 0.5);
  const double p10 = percentile(times_ms, 0.1), p90 = percentile(times_ms, 0.9);
  double mean = 0.0;
  for (double t : times_ms)
    mean += t;
  mean /= double(times_ms.size());
  const double flops = info.forward_flops + info.backward_flops;

  int64_t peak_bytes = -1;
  std::string method;
  if (target == "cuda" && cuda_ready) {
    peak_bytes = mem_peak - mem_base;
    method = "cudaMemGetInfo: max(total-free) after create and after every step, minus "
             "(total-free) before create with the CUDA context up; includes input_bytes";
  } else if (target == "cpu") {
    const int64_t hwm = procStatusBytes("VmHWM");
    if (hwm >= 0 && rss_base >= 0)
      peak_bytes = hwm - rss_base;
    method = "VmHWM at the end minus VmRSS before create; includes input_bytes";
  } else {
    method = "unavailable (no CUDA in this sbp-bench)";
  }

  std::string keep = "[";
  for (int32_t g = 0; g < info.num_mask_groups; ++g)
    keep += (g ? ", " : "") + jsonNumber(info.keep_ratios[g]);
  keep += "]";

  auto bytes = [](int64_t b) { return b < 0 ? std::string("null") : std::to_string(b); };
  std::string out = "{";
  auto field = [&](const char *key, const std::string &json) {
    if (out.size() > 1)
      out += ", ";
    out += fmt::format("\"{}\": {}", key, json);
  };
  field("tool", jsonString("sbp-bench"));
  field("framework", jsonString("sbpc"));
  field("model", jsonString(model));
  field("mode", jsonString(o.mode.empty() ? modeFromPath(o.trainer, model) : o.mode));
  field("target", jsonString(target));
  field("precision", jsonString(o.precision));
  field("device_name", jsonString(device_name.empty() ? target : device_name));
  field("trainer", jsonString(o.trainer));
  field("inputs", jsonString(on_device ? "device" : "host"));
  field("batch", std::to_string(info.batch));
  field("steps", std::to_string(o.steps));
  field("warmup", std::to_string(o.warmup));
  field("median_ms", jsonNumber(median));
  field("p10_ms", jsonNumber(p10));
  field("p90_ms", jsonNumber(p90));
  field("mean_ms", jsonNumber(mean));
  field("min_ms", jsonNumber(*std::min_element(times_ms.begin(), times_ms.end())));
  field("max_ms", jsonNumber(*std::max_element(times_ms.begin(), times_ms.end())));
  field("warmup_total_ms", jsonNumber(warmup_ms));
  field("img_per_s", jsonNumber(double(info.batch) * 1000.0 / median));
  field("img_per_s_p10", jsonNumber(double(info.batch) * 1000.0 / p90));
  field("img_per_s_p90", jsonNumber(double(info.batch) * 1000.0 / p10));
  field("flops_per_step", jsonNumber(flops));
  field("tflops", jsonNumber(flops / (median * 1e-3) / 1e12));
  field("peak_mem_bytes", bytes(peak_bytes));
  field("peak_mem_method", jsonString(method));
  field("device_used_base_bytes", bytes(mem_base));
  field("device_used_peak_bytes", bytes(mem_peak));
  field("device_total_bytes", bytes(mem_total));
  field("input_bytes", std::to_string(input_bytes));
  field("planned_arena_bytes", std::to_string(info.arena_bytes));
  field("train_arena_bytes", std::to_string(info.train_arena_bytes));
  field("saved_activation_bytes", std::to_string(info.saved_activation_bytes));
  field("state_bytes", std::to_string(info.state_bytes));
  field("planned_total_bytes", std::to_string(info.arena_bytes + info.state_bytes));
  field("param_elements", std::to_string(info.param_elements));
  field("keep_ratios", keep);
  field("optimizer", jsonString(info.optimizer ? info.optimizer : ""));
  field("num_threads", std::to_string(info.num_threads));
  field("first_loss", jsonNumber(first_loss));
  field("last_loss", jsonNumber(last_loss));
  field("sbpc_version", jsonString(info.sbpc_version ? info.sbpc_version : ""));
  out += "}";
  std::fprintf(stdout, "%s\n", out.c_str());
  std::fflush(stdout);
  std::fprintf(stderr,
               "sbp-bench: %s %s (%s): median %.3f ms, %.1f img/s, p10 %.3f p90 %.3f ms, "
               "peak %.1f MiB\n",
               model.c_str(), o.mode.empty() ? modeFromPath(o.trainer, model).c_str()
                                             : o.mode.c_str(),
               target.c_str(), median, double(info.batch) * 1000.0 / median, p10, p90,
               peak_bytes < 0 ? NAN : double(peak_bytes) / (1 << 20));
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  Options o;
  try {
    o = parseOptions(argc, argv);
  } catch (const UsageError &e) {
    std::fprintf(stderr, "sbp-bench: error: %s\n%s", e.what(), kUsage);
    return 2;
  }
  try {
    return run(o);
  } catch (const std::exception &e) {
    std::fprintf(stderr, "sbp-bench: error: %s\n", e.what());
    return 1;
  }
}
