// CudaTrainerTest.cpp - "cuda" trainers through the C API of libsbprt.so, with
// the hand-written fake_cuda_trainer.cu in place of sbpc output. Every test
// but the first needs a GPU and skips itself without one (ctest label "cuda").
#include "FakeTrainerAccess.h"
#include "TestFiles.h"

#include "sbp/trainer.h"

#include <gtest/gtest.h>

#include <cuda_runtime.h> // the typed cudaMalloc templates

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <dlfcn.h>
#include <numeric>
#include <set>
#include <string>
#include <sys/wait.h>
#include <vector>

using sbp::test::fakeTrainer;
using sbp::test::TempDir;

using sbp::test::allGradients;
using sbp::test::allParams;
using sbp::test::stepOf;

namespace {

constexpr int B = 64, D = sbp::test::kFakeFeatures, K = sbp::test::kFakeClasses;

int deviceCount() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
}

#define SKIP_WITHOUT_GPU()                                                                         \
  do {                                                                                             \
    if (deviceCount() == 0)                                                                        \
      GTEST_SKIP() << "no CUDA device";                                                            \
  } while (0)

bool contains(const std::string &text, const std::string &needle) {
  return text.find(needle) != std::string::npos;
}

// Whether the environment turns CUDA graphs off for every trainer.
bool graphsOffByEnvironment() {
  const char *value = std::getenv("SBP_NO_CUDA_GRAPH");
  return value && *value && std::strcmp(value, "0") != 0;
}

// A trainer handle released at scope exit. graphs = false creates it with
// SBP_NO_CUDA_GRAPH=1; otherwise the environment decides.
struct Handle {
  sbp_trainer *t = nullptr;
  explicit Handle(const std::string &path, uint64_t seed = 0, bool graphs = true) {
    sbp_trainer_options o;
    sbp_trainer_options_init(&o);
    o.seed = seed;
    const char *old = std::getenv("SBP_NO_CUDA_GRAPH");
    std::string saved = old ? old : "";
    if (!graphs)
      setenv("SBP_NO_CUDA_GRAPH", "1", 1);
    EXPECT_EQ(sbp_trainer_create(path.c_str(), &o, &t), SBP_OK) << sbp_last_error();
    if (!graphs) {
      if (old)
        setenv("SBP_NO_CUDA_GRAPH", saved.c_str(), 1);
      else
        unsetenv("SBP_NO_CUDA_GRAPH");
    }
  }
  ~Handle() { sbp_trainer_release(t); }
  Handle(const Handle &) = delete;
  Handle &operator=(const Handle &) = delete;
  operator sbp_trainer *() const { return t; }
};


double maxDifference(const std::vector<float> &a, const std::vector<float> &b) {
  EXPECT_EQ(a.size(), b.size());
  double most = 0.0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i)
    most = std::max(most, std::fabs(double(a[i]) - double(b[i])));
  return most;
}

// The deterministic batches of TrainerApiTest.cpp: smooth images, labels cycling.
struct Batch {
  std::vector<float> images = std::vector<float>(B * D);
  std::vector<int32_t> labels = std::vector<int32_t>(B);
  explicit Batch(int salt = 0) {
    for (int b = 0; b < B; ++b) {
      labels[size_t(b)] = (b + salt) % K;
      for (int d = 0; d < D; ++d)
        images[size_t(b * D + d)] = std::sin(0.01f * float(d * (labels[size_t(b)] + 1) + salt));
    }
  }
};

// The same batch in device memory (cudaMalloc) or pinned host memory.
struct CudaBatch {
  float *images = nullptr;
  int32_t *labels = nullptr;
  bool pinned;
  CudaBatch(const Batch &batch, bool pinned_host = false) : pinned(pinned_host) {
    if (pinned) {
      EXPECT_EQ(cudaMallocHost(&images, batch.images.size() * 4), cudaSuccess);
      EXPECT_EQ(cudaMallocHost(&labels, batch.labels.size() * 4), cudaSuccess);
      std::memcpy(images, batch.images.data(), batch.images.size() * 4);
      std::memcpy(labels, batch.labels.data(), batch.labels.size() * 4);
      return;
    }
    EXPECT_EQ(cudaMalloc(&images, batch.images.size() * 4), cudaSuccess);
    EXPECT_EQ(cudaMalloc(&labels, batch.labels.size() * 4), cudaSuccess);
    EXPECT_EQ(
        cudaMemcpy(images, batch.images.data(), batch.images.size() * 4, cudaMemcpyHostToDevice),
        cudaSuccess);
    EXPECT_EQ(
        cudaMemcpy(labels, batch.labels.data(), batch.labels.size() * 4, cudaMemcpyHostToDevice),
        cudaSuccess);
  }
  ~CudaBatch() {
    if (pinned) {
      cudaFreeHost(images);
      cudaFreeHost(labels);
    } else {
      cudaFree(images);
      cudaFree(labels);
    }
  }
  CudaBatch(const CudaBatch &) = delete;
  CudaBatch &operator=(const CudaBatch &) = delete;
};

// A symbol of the fake trainer library the runtime loaded.
template <typename Fn> Fn fakeSymbol(const std::string &path, const char *name) {
  void *handle = dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD);
  EXPECT_NE(handle, nullptr) << path;
  if (!handle)
    return nullptr;
  auto fn = reinterpret_cast<Fn>(dlsym(handle, name));
  dlclose(handle);
  return fn;
}

std::string cudaFake(const char *variant = "fake_cuda_trainer") { return fakeTrainer(variant); }

} // namespace

TEST(CudaTrainer, NeedsADevice) {
  sbp_trainer *t = nullptr;
  sbp_trainer_options o;
  sbp_trainer_options_init(&o);
  if (deviceCount() == 0) {
    EXPECT_EQ(sbp_trainer_create(cudaFake().c_str(), &o, &t), SBP_ERROR_UNSUPPORTED);
    EXPECT_TRUE(contains(sbp_last_error(), "no CUDA device")) << sbp_last_error();
    EXPECT_EQ(t, nullptr);
    // CPU trainers are unaffected.
    EXPECT_EQ(sbp_trainer_create(fakeTrainer().c_str(), &o, &t), SBP_OK) << sbp_last_error();
    sbp_trainer_release(t);
    return;
  }
  o.device = deviceCount();
  EXPECT_EQ(sbp_trainer_create(cudaFake().c_str(), &o, &t), SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(
      contains(sbp_last_error(), "CUDA device " + std::to_string(o.device) + " does not exist"))
      << sbp_last_error();
  o.device = -1;
  EXPECT_EQ(sbp_trainer_create(cudaFake().c_str(), &o, &t), SBP_ERROR_INVALID_ARGUMENT);
}

TEST(CudaTrainer, ReportsTheDevice) {
  SKIP_WITHOUT_GPU();
  Handle t(cudaFake());
  sbp_trainer_info info{};
  info.struct_size = sizeof(info);
  ASSERT_EQ(sbp_trainer_get_info(t, &info), SBP_OK);
  EXPECT_STREQ(info.target, "cuda");
  EXPECT_EQ(info.device, 0);
  cudaDeviceProp prop{};
  ASSERT_EQ(cudaGetDeviceProperties(&prop, 0), cudaSuccess);
  EXPECT_STREQ(info.device_name, prop.name);
  EXPECT_EQ(info.state_bytes, 4 * (7856 + K) * 4);
  EXPECT_GE(info.arena_bytes, B * K * 4);
  Handle cpu(fakeTrainer());
  ASSERT_EQ(sbp_trainer_get_info(cpu, &info), SBP_OK);
  EXPECT_EQ(info.device, -1);
  EXPECT_STREQ(info.device_name, "host");
}

TEST(CudaTrainer, LossFalls) {
  SKIP_WITHOUT_GPU();
  Handle t(cudaFake());
  std::vector<Batch> batches;
  for (int salt = 0; salt < 4; ++salt)
    batches.emplace_back(salt);
  std::vector<float> losses;
  for (int s = 0; s < 40; ++s) {
    const Batch &batch = batches[size_t(s % 4)];
    float loss = 0;
    ASSERT_EQ(sbp_trainer_step(t, batch.images.data(), batch.labels.data(), &loss), SBP_OK)
        << sbp_trainer_last_error(t);
    losses.push_back(loss);
  }
  EXPECT_NEAR(losses[0], std::log(10.0), 0.3);
  double first = std::accumulate(losses.begin(), losses.begin() + 4, 0.0) / 4;
  double last = std::accumulate(losses.end() - 4, losses.end(), 0.0) / 4;
  EXPECT_LT(last, 0.6 * first);
  EXPECT_EQ(stepOf(t), 40);

  std::vector<float> logits(B * K);
  float loss = 0;
  ASSERT_EQ(
      sbp_trainer_eval(t, batches[1].images.data(), batches[1].labels.data(), &loss, logits.data()),
      SBP_OK)
      << sbp_trainer_last_error(t);
  double ce = 0;
  int correct = 0;
  for (int b = 0; b < B; ++b) {
    const float *row = logits.data() + b * K;
    correct += int(std::max_element(row, row + K) - row) == batches[1].labels[size_t(b)];
    double sum = 0;
    for (int k = 0; k < K; ++k)
      sum += std::exp(double(row[k]));
    ce += std::log(sum) - row[batches[1].labels[size_t(b)]];
  }
  EXPECT_NEAR(loss, ce / B, 1e-4);
  EXPECT_GT(correct, B / 2);
  EXPECT_EQ(stepOf(t), 40);
}

// The CUDA fake does fake_trainer.c's arithmetic: same seed, same batch, the
// same gradients and (SGD) the same parameters after a few steps.
TEST(CudaTrainer, FollowsTheCpuTrainer) {
  SKIP_WITHOUT_GPU();
  Batch batch(3);
  {
    Handle gpu(cudaFake(), 9), cpu(fakeTrainer(), 9);
    EXPECT_EQ(allParams(gpu), allParams(cpu)); // initialised on the host from the seed
    float lg = 0, lc = 0;
    ASSERT_EQ(sbp_trainer_compute_gradients(gpu, batch.images.data(), batch.labels.data(), &lg),
              SBP_OK)
        << sbp_trainer_last_error(gpu);
    ASSERT_EQ(sbp_trainer_compute_gradients(cpu, batch.images.data(), batch.labels.data(), &lc),
              SBP_OK);
    EXPECT_NEAR(lg, lc, 1e-6);
    EXPECT_LT(maxDifference(allGradients(gpu), allGradients(cpu)), 1e-6);
    EXPECT_EQ(stepOf(gpu), 0);
  }
  Handle gpu(cudaFake("fake_cuda_trainer_sgd"), 9), cpu(fakeTrainer("fake_trainer_sgd"), 9);
  for (int s = 0; s < 5; ++s) {
    Batch b(s);
    ASSERT_EQ(sbp_trainer_step(gpu, b.images.data(), b.labels.data(), nullptr), SBP_OK)
        << sbp_trainer_last_error(gpu);
    ASSERT_EQ(sbp_trainer_step(cpu, b.images.data(), b.labels.data(), nullptr), SBP_OK);
  }
  EXPECT_LT(maxDifference(allParams(gpu), allParams(cpu)), 1e-5);
}

TEST(CudaTrainer, TheTrainerGetsTheStepsMasks) {
  SKIP_WITHOUT_GPU();
  std::string path = cudaFake();
  Handle t(path, 5);
  auto last_keep = fakeSymbol<int (*)(int, int32_t *)>(path, "fake_cuda_last_keep");
  auto keep_errors = fakeSymbol<int (*)()>(path, "fake_cuda_keep_errors");
  ASSERT_NE(last_keep, nullptr);
  ASSERT_NE(keep_errors, nullptr);
  const int before = keep_errors();
  Batch batch;
  const int capacity[3] = {99, 13, 99};
  std::vector<std::vector<int32_t>> seen;
  for (int64_t s = 0; s < 6; ++s) { // step 0 direct, 1 captured, then replays
    ASSERT_EQ(sbp_trainer_step(t, batch.images.data(), batch.labels.data(), nullptr), SBP_OK)
        << sbp_trainer_last_error(t);
    for (int g = 0; g < 3; ++g) {
      std::vector<int32_t> expected(size_t(capacity[g])), got(size_t(capacity[g]));
      ASSERT_EQ(sbp_trainer_get_keep_indices(t, g, s, expected.data(), capacity[g], nullptr),
                SBP_OK);
      ASSERT_EQ(last_keep(g, got.data()), capacity[g]);
      EXPECT_EQ(got, expected) << "step " << s << " group " << g;
      if (g == 1)
        seen.push_back(got);
    }
  }
  EXPECT_NE(seen[1], seen[2]); // the replayed graph draws each step anew
  EXPECT_EQ(keep_errors(), before);
}

// A heads group (no scratch in the trainer's allocation, one thread per head)
// sampled inside the captured step, then fixed to no head at all.
TEST(CudaTrainer, HeadsGroupsAreSampledOnTheDeviceAndCanKeepNone) {
  SKIP_WITHOUT_GPU();
  std::string path = cudaFake("fake_cuda_trainer_heads");
  Handle t(path, 5);
  auto last_keep = fakeSymbol<int (*)(int, int32_t *)>(path, "fake_cuda_last_keep");
  auto keep_errors = fakeSymbol<int (*)()>(path, "fake_cuda_keep_errors");
  ASSERT_NE(last_keep, nullptr);
  ASSERT_NE(keep_errors, nullptr);
  const int before = keep_errors();
  Batch batch;
  const int capacity[4] = {99, 13, 99, 12};
  std::set<std::vector<int32_t>> heads_seen;
  for (int64_t s = 0; s < 8; ++s) { // step 0 direct, 1 captured, then replays
    ASSERT_EQ(sbp_trainer_step(t, batch.images.data(), batch.labels.data(), nullptr), SBP_OK)
        << sbp_trainer_last_error(t);
    for (int g = 0; g < 4; ++g) {
      std::vector<int32_t> expected(size_t(capacity[g])), got(size_t(capacity[g]));
      ASSERT_EQ(sbp_trainer_get_keep_indices(t, g, s, expected.data(), capacity[g], nullptr),
                SBP_OK);
      ASSERT_EQ(last_keep(g, got.data()), capacity[g]);
      EXPECT_EQ(got, expected) << "step " << s << " group " << g;
      if (g == 3)
        heads_seen.insert(got);
    }
  }
  EXPECT_GE(heads_seen.size(), 6u); // the replayed graph draws the heads anew
  const int32_t none = 0;
  ASSERT_EQ(sbp_trainer_set_keep_indices(t, 3, &none, 0), SBP_OK) << sbp_trainer_last_error(t);
  ASSERT_EQ(sbp_trainer_step(t, batch.images.data(), batch.labels.data(), nullptr), SBP_OK);
  std::vector<int32_t> got(12);
  last_keep(3, got.data());
  EXPECT_EQ(got, std::vector<int32_t>(12, -1));
  EXPECT_EQ(keep_errors(), before);
}

TEST(CudaTrainer, FixedKeepIndices) {
  SKIP_WITHOUT_GPU();
  std::string path = cudaFake();
  Handle t(path);
  auto last_keep = fakeSymbol<int (*)(int, int32_t *)>(path, "fake_cuda_last_keep");
  ASSERT_NE(last_keep, nullptr);
  Batch batch;
  for (int s = 0; s < 2; ++s) // past the warm-up and the capture
    ASSERT_EQ(sbp_trainer_step(t, batch.images.data(), batch.labels.data(), nullptr), SBP_OK);
  const int32_t idx[] = {0, 3, 7, 12};
  ASSERT_EQ(sbp_trainer_set_keep_indices(t, -1, idx, 4), SBP_OK) << sbp_trainer_last_error(t);
  ASSERT_EQ(sbp_trainer_step(t, batch.images.data(), batch.labels.data(), nullptr), SBP_OK);
  std::vector<int32_t> got(99);
  for (int g = 0; g < 3; ++g) {
    last_keep(g, got.data());
    EXPECT_EQ(std::vector<int32_t>(got.begin(), got.begin() + 5),
              (std::vector<int32_t>{0, 3, 7, 12, -1}))
        << "group " << g;
  }
  ASSERT_EQ(sbp_trainer_set_keep_indices(t, 0, nullptr, 0), SBP_OK);
  ASSERT_EQ(sbp_trainer_step(t, batch.images.data(), batch.labels.data(), nullptr), SBP_OK);
  std::vector<int32_t> expected(99);
  ASSERT_EQ(sbp_trainer_get_keep_indices(t, 0, 3, expected.data(), 99, nullptr), SBP_OK);
  last_keep(0, got.data());
  EXPECT_EQ(got, expected);
  last_keep(2, got.data());
  EXPECT_EQ(got[3], 12); // still fixed
}

// SBP_NO_CUDA_GRAPH=1 runs every step directly; by default steps after the
// first replay one graph. Same seed, same batches, same schedule: the same
// parameters. The graph calls train_step on the host twice (warm-up, capture).
TEST(CudaTrainer, GraphReplayEqualsUncapturedSteps) {
  SKIP_WITHOUT_GPU();
  if (graphsOffByEnvironment())
    GTEST_SKIP() << "SBP_NO_CUDA_GRAPH is set";
  std::string path = cudaFake();
  auto run = [&](bool graphs, int *host_calls) {
    Handle t(path, 11, graphs);
    auto calls = fakeSymbol<int (*)()>(path, "fake_cuda_train_calls");
    const int before = calls ? calls() : 0;
    for (int s = 0; s < 12; ++s) {
      Batch b(s % 3);
      EXPECT_EQ(sbp_trainer_set_learning_rate(t, 0.01f / float(1 + s)), SBP_OK);
      if (s == 6) // gradients only, in the middle: no update, no step
        EXPECT_EQ(sbp_trainer_compute_gradients(t, b.images.data(), b.labels.data(), nullptr),
                  SBP_OK)
            << sbp_trainer_last_error(t);
      EXPECT_EQ(sbp_trainer_step(t, b.images.data(), b.labels.data(), nullptr), SBP_OK)
          << sbp_trainer_last_error(t);
    }
    *host_calls = (calls ? calls() : 0) - before;
    EXPECT_EQ(stepOf(t), 12);
    return std::make_pair(allParams(t), allGradients(t));
  };
  int direct_calls = 0, graph_calls = 0;
  auto direct = run(false, &direct_calls);
  auto graph = run(true, &graph_calls);
  EXPECT_LT(maxDifference(direct.first, graph.first), 1e-5);
  EXPECT_EQ(direct.first, graph.first); // the same kernels: bit for bit
  EXPECT_EQ(direct.second, graph.second);
  EXPECT_EQ(direct_calls, 13);
  EXPECT_EQ(graph_calls, 2);
}

// A train_step that synchronises cannot be captured: the step that tries is
// refused (nothing applied) with the reason, and the trainer carries on
// without a graph.
TEST(CudaTrainer, AStepThatCannotBeCapturedFallsBackAfterAnError) {
  SKIP_WITHOUT_GPU();
  if (graphsOffByEnvironment())
    GTEST_SKIP() << "SBP_NO_CUDA_GRAPH is set";
  Handle t(cudaFake("fake_cuda_trainer_sync"), 3);
  Handle reference(cudaFake(), 3, false);
  Batch batch;
  ASSERT_EQ(sbp_trainer_step(t, batch.images.data(), batch.labels.data(), nullptr), SBP_OK)
      << sbp_trainer_last_error(t);
  std::vector<float> after_one = allParams(t);
  EXPECT_EQ(sbp_trainer_step(t, batch.images.data(), batch.labels.data(), nullptr),
            SBP_ERROR_INTERNAL);
  std::string message = sbp_trainer_last_error(t);
  EXPECT_TRUE(contains(message, "capturing the step in a CUDA graph")) << message;
  EXPECT_TRUE(contains(message, "SBP_NO_CUDA_GRAPH=1")) << message;
  EXPECT_EQ(allParams(t), after_one);
  EXPECT_EQ(stepOf(t), 1);
  for (int s = 0; s < 3; ++s)
    ASSERT_EQ(sbp_trainer_step(t, batch.images.data(), batch.labels.data(), nullptr), SBP_OK)
        << sbp_trainer_last_error(t);
  for (int s = 0; s < 4; ++s)
    ASSERT_EQ(sbp_trainer_step(reference, batch.images.data(), batch.labels.data(), nullptr),
              SBP_OK);
  EXPECT_EQ(allParams(t), allParams(reference));
}

TEST(CudaTrainer, LearningRateReachesTheGraph) {
  SKIP_WITHOUT_GPU();
  Handle t(cudaFake(), 2);
  Batch batch;
  for (int s = 0; s < 3; ++s)
    ASSERT_EQ(sbp_trainer_step(t, batch.images.data(), batch.labels.data(), nullptr), SBP_OK);
  std::vector<float> before = allParams(t);
  ASSERT_EQ(sbp_trainer_set_learning_rate(t, 0.0f), SBP_OK);
  ASSERT_EQ(sbp_trainer_step(t, batch.images.data(), batch.labels.data(), nullptr), SBP_OK);
  EXPECT_EQ(allParams(t), before); // AdamW with lr 0 changes nothing
  EXPECT_EQ(stepOf(t), 4);
  ASSERT_EQ(sbp_trainer_set_learning_rate(t, 0.01f), SBP_OK);
  ASSERT_EQ(sbp_trainer_step(t, batch.images.data(), batch.labels.data(), nullptr), SBP_OK);
  EXPECT_NE(allParams(t), before);
}

TEST(CudaTrainer, CheckpointRoundTrip) {
  SKIP_WITHOUT_GPU();
  TempDir dir;
  Handle a(cudaFake(), 4), b(cudaFake(), 99);
  for (int s = 0; s < 3; ++s) {
    Batch batch(s);
    ASSERT_EQ(sbp_trainer_step(a, batch.images.data(), batch.labels.data(), nullptr), SBP_OK);
  }
  ASSERT_EQ(sbp_trainer_save_checkpoint(a, dir.file("c.safetensors").c_str()), SBP_OK)
      << sbp_trainer_last_error(a);
  ASSERT_EQ(sbp_trainer_load_checkpoint(b, dir.file("c.safetensors").c_str()), SBP_OK)
      << sbp_trainer_last_error(b);
  EXPECT_EQ(allParams(a), allParams(b));
  EXPECT_EQ(stepOf(b), 3);
  for (int s = 3; s < 7; ++s) {
    Batch batch(s);
    ASSERT_EQ(sbp_trainer_step(a, batch.images.data(), batch.labels.data(), nullptr), SBP_OK);
    ASSERT_EQ(sbp_trainer_step(b, batch.images.data(), batch.labels.data(), nullptr), SBP_OK);
  }
  EXPECT_EQ(allParams(a), allParams(b)); // optimizer state, step and seed came along

  // Parameters and gradients files of a GPU trainer.
  ASSERT_EQ(sbp_trainer_save_params(a, dir.file("p.safetensors").c_str()), SBP_OK);
  Handle c(cudaFake(), 123);
  ASSERT_EQ(sbp_trainer_load_params(c, dir.file("p.safetensors").c_str()), SBP_OK)
      << sbp_trainer_last_error(c);
  EXPECT_EQ(allParams(c), allParams(a));
  ASSERT_EQ(sbp_trainer_save_gradients(a, dir.file("g.safetensors").c_str()), SBP_OK);
  EXPECT_TRUE(sbp::test::fileExists(dir.file("g.safetensors")));

  // write_param reaches the device.
  std::vector<float> bias(K, 0.5f);
  ASSERT_EQ(sbp_trainer_write_param(c, 1, bias.data(), K), SBP_OK);
  std::vector<float> back(K);
  ASSERT_EQ(sbp_trainer_read_param(c, 1, back.data(), K), SBP_OK);
  EXPECT_EQ(back, bias);
}

TEST(CudaTrainer, NanLossLeavesTheParametersAsTheyWere) {
  SKIP_WITHOUT_GPU();
  Handle t(cudaFake("fake_cuda_trainer_nan"));
  Batch batch;
  std::vector<float> before = allParams(t);
  for (int call = 0; call < 3; ++call) { // direct, captured, replayed
    float loss = 1.0f;
    EXPECT_EQ(sbp_trainer_step(t, batch.images.data(), batch.labels.data(), &loss),
              SBP_ERROR_NUMERIC)
        << "call " << call;
    EXPECT_STREQ(sbp_trainer_last_error(t), "loss is NaN at step 0");
    EXPECT_EQ(allParams(t), before) << "call " << call;
    EXPECT_EQ(stepOf(t), 0);
  }
  EXPECT_EQ(sbp_trainer_compute_gradients(t, batch.images.data(), batch.labels.data(), nullptr),
            SBP_ERROR_NUMERIC);
}

TEST(CudaTrainer, DeviceAndHostInputsGiveTheSameResults) {
  SKIP_WITHOUT_GPU();
  Handle host(cudaFake(), 6), device(cudaFake(), 6), pinned(cudaFake(), 6);
  for (int s = 0; s < 5; ++s) {
    Batch batch(s);
    CudaBatch on_device(batch), on_pinned(batch, true);
    float lh = 0, ld = 0, lp = 0;
    ASSERT_EQ(sbp_trainer_step(host, batch.images.data(), batch.labels.data(), &lh), SBP_OK);
    ASSERT_EQ(sbp_trainer_step(device, on_device.images, on_device.labels, &ld), SBP_OK)
        << sbp_trainer_last_error(device);
    ASSERT_EQ(sbp_trainer_step(pinned, on_pinned.images, on_pinned.labels, &lp), SBP_OK);
    EXPECT_EQ(lh, ld);
    EXPECT_EQ(lh, lp);
  }
  EXPECT_EQ(allParams(host), allParams(device));
  EXPECT_EQ(allParams(host), allParams(pinned));

  // Eval, with logits into host or device memory.
  Batch batch(7);
  CudaBatch on_device(batch);
  std::vector<float> logits_host(B * K), logits_back(B * K);
  float *logits_device = nullptr;
  ASSERT_EQ(cudaMalloc(&logits_device, B * K * 4), cudaSuccess);
  float lh = 0, ld = 0;
  ASSERT_EQ(
      sbp_trainer_eval(host, batch.images.data(), batch.labels.data(), &lh, logits_host.data()),
      SBP_OK);
  ASSERT_EQ(sbp_trainer_eval(device, on_device.images, on_device.labels, &ld, logits_device),
            SBP_OK)
      << sbp_trainer_last_error(device);
  ASSERT_EQ(cudaMemcpy(logits_back.data(), logits_device, B * K * 4, cudaMemcpyDeviceToHost),
            cudaSuccess);
  cudaFree(logits_device);
  EXPECT_EQ(lh, ld);
  EXPECT_EQ(logits_host, logits_back);
}

TEST(CudaTrainer, LabelsOutOfRangeAreRefusedOnTheDeviceToo) {
  SKIP_WITHOUT_GPU();
  Handle t(cudaFake());
  Batch good;
  for (int s = 0; s < 2; ++s) // past the warm-up and the capture
    ASSERT_EQ(sbp_trainer_step(t, good.images.data(), good.labels.data(), nullptr), SBP_OK);
  std::vector<float> before = allParams(t);
  Batch bad;
  bad.labels[5] = K;
  bad.labels[9] = -3;
  CudaBatch on_device(bad);
  EXPECT_EQ(sbp_trainer_step(t, on_device.images, on_device.labels, nullptr),
            SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_STREQ(sbp_trainer_last_error(t), "label 10 at batch index 5 is outside [0, 10)");
  EXPECT_EQ(sbp_trainer_step(t, bad.images.data(), bad.labels.data(), nullptr),
            SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_STREQ(sbp_trainer_last_error(t), "label 10 at batch index 5 is outside [0, 10)");
  EXPECT_EQ(sbp_trainer_eval(t, on_device.images, on_device.labels, nullptr, nullptr),
            SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(allParams(t), before);
  EXPECT_EQ(stepOf(t), 2);
  ASSERT_EQ(sbp_trainer_step(t, good.images.data(), good.labels.data(), nullptr), SBP_OK)
      << sbp_trainer_last_error(t);
  EXPECT_EQ(stepOf(t), 3);
}

// sbp-train on a GPU trainer: --info names the device, --dump-grads works.
TEST(CudaTrainer, SbpTrainRunsGpuTrainers) {
  SKIP_WITHOUT_GPU();
  TempDir dir;
  auto tool = [](const std::string &args) {
    std::string command = std::string(SBP_TRAIN_EXE) + " " + args + " 2>&1 < /dev/null";
    std::string output;
    std::FILE *pipe = ::popen(command.c_str(), "r");
    char buffer[4096];
    size_t got = 0;
    while (pipe && (got = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0)
      output.append(buffer, got);
    int raw = pipe ? ::pclose(pipe) : -1;
    return std::make_pair(WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, output);
  };
  cudaDeviceProp prop{};
  ASSERT_EQ(cudaGetDeviceProperties(&prop, 0), cudaSuccess);
  auto info = tool(cudaFake() + " --info --device 0");
  EXPECT_EQ(info.first, 0) << info.second;
  EXPECT_TRUE(contains(info.second, prop.name)) << info.second;
  auto bad = tool(cudaFake() + " --info --device " + std::to_string(deviceCount()));
  EXPECT_EQ(bad.first, 1) << bad.second;
  EXPECT_TRUE(contains(bad.second, "does not exist")) << bad.second;

  Batch batch;
  sbp::test::writeBatchFile(dir.file("b.safetensors"), {B, 1, 28, 28}, batch.images, batch.labels);
  auto dump = tool(cudaFake() + " --batch " + dir.file("b.safetensors") + " --dump-grads " +
                   dir.file("g.safetensors") + " --save-params " + dir.file("p.safetensors"));
  EXPECT_EQ(dump.first, 0) << dump.second;
  EXPECT_TRUE(sbp::test::fileExists(dir.file("g.safetensors")));
  EXPECT_TRUE(sbp::test::fileExists(dir.file("p.safetensors")));
}
