// TrainerApiTest.cpp - the C API of libsbprt end to end, with hand-written
// trainer libraries (fake_trainer.c) in place of sbpc output.
#include "FakeTrainerAccess.h"
#include "TestFiles.h"

#include "sbp/trainer.h"
#include "sbp/trainer.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <dlfcn.h>
#include <elf.h>
#include <numeric>
#include <string>
#include <tuple>
#include <sys/stat.h>
#include <vector>

using sbp::test::fakeTrainer;
using sbp::test::TempDir;

using sbp::test::allGradients;
using sbp::test::allParams;
using sbp::test::stepOf;

namespace {

constexpr int B = 64, D = sbp::test::kFakeFeatures, K = sbp::test::kFakeClasses;

bool contains(const std::string &text, const std::string &needle) {
  return text.find(needle) != std::string::npos;
}

// A trainer handle released at scope exit.
struct Handle {
  sbp_trainer *t = nullptr;
  Handle() = default;
  explicit Handle(const std::string &path, uint64_t seed = 0) {
    sbp_trainer_options o;
    sbp_trainer_options_init(&o);
    o.seed = seed;
    EXPECT_EQ(sbp_trainer_create(path.c_str(), &o, &t), SBP_OK) << sbp_last_error();
  }
  ~Handle() { sbp_trainer_release(t); }
  Handle(const Handle &) = delete;
  Handle &operator=(const Handle &) = delete;
  operator sbp_trainer *() const { return t; }
};


// A deterministic batch that needs no dataset: smooth images, labels cycling.
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

// Training batches from the real Fashion-MNIST, or skips the test.
class FashionMnist {
public:
  FashionMnist() {
    std::string dir = sbp::test::fashionMnistDir();
    if (!dir.empty())
      EXPECT_EQ(sbp_dataset_open(dir.c_str(), &ds_), SBP_OK) << sbp_last_error();
  }
  ~FashionMnist() { sbp_dataset_release(ds_); }
  bool present() const { return ds_ != nullptr; }
  void batch(int64_t index, Batch &out) {
    ASSERT_EQ(sbp_dataset_get_train_batch(ds_, SBP_SPLIT_TRAIN, B, 0, 0, index, out.images.data(),
                                          out.labels.data()),
              SBP_OK)
        << sbp_last_error();
  }

private:
  sbp_dataset *ds_ = nullptr;
};

// Symbols of the fake trainer the runtime loaded (dlopen of the same path
// returns the same handle).
template <typename Fn> Fn fakeSymbol(const std::string &path, const char *name) {
  void *handle = dlopen(path.c_str(), RTLD_NOW | RTLD_NOLOAD);
  EXPECT_NE(handle, nullptr);
  auto fn = reinterpret_cast<Fn>(dlsym(handle, name));
  dlclose(handle);
  return fn;
}

} // namespace

TEST(TrainerApi, StatusStringsAndAbiVersion) {
  EXPECT_STREQ(sbp_status_string(SBP_OK), "SBP_OK");
  EXPECT_STREQ(sbp_status_string(SBP_ERROR_NUMERIC), "SBP_ERROR_NUMERIC");
  EXPECT_STREQ(sbp_status_string(sbp_status(999)), "SBP_ERROR_UNKNOWN");
  EXPECT_GE(sbp_runtime_abi_version(), 1u);
}

TEST(TrainerApi, CreateReportsTheModel) {
  Handle t(fakeTrainer());
  sbp_trainer_info info{};
  info.struct_size = sizeof(info);
  ASSERT_EQ(sbp_trainer_get_info(t, &info), SBP_OK);
  EXPECT_STREQ(info.model_name, "fake_softmax");
  EXPECT_STREQ(info.target, "cpu");
  EXPECT_EQ(info.batch, B);
  EXPECT_EQ(info.in_channels * info.in_height * info.in_width, D);
  EXPECT_EQ(info.num_classes, K);
  EXPECT_EQ(info.num_params, 2);
  EXPECT_EQ(info.param_elements, 7856 + K);
  EXPECT_EQ(info.num_mask_groups, 3);
  EXPECT_FLOAT_EQ(info.keep_ratios[1], 0.25f);
  EXPECT_STREQ(info.optimizer, "adamw");
  EXPECT_FLOAT_EQ(info.lr, 0.01f);
  EXPECT_EQ(info.train_arena_bytes, B * K * 4);
  EXPECT_GE(info.arena_bytes, B * K * 4);
  EXPECT_EQ(info.state_bytes, 4 * (7856 + K) * 4);
  EXPECT_EQ(info.step, 0);

  sbp_param_info p{};
  p.struct_size = sizeof(p);
  ASSERT_EQ(sbp_trainer_get_param_info(t, 0, &p), SBP_OK);
  EXPECT_STREQ(p.name, "head.weight");
  EXPECT_EQ(p.rank, 2);
  EXPECT_EQ(p.shape[0], K);
  EXPECT_EQ(p.shape[1], D);
  EXPECT_EQ(p.weight_decay, 1);
  int32_t index = -1;
  EXPECT_EQ(sbp_trainer_find_param(t, "head.bias", &index), SBP_OK);
  EXPECT_EQ(index, 1);
  EXPECT_EQ(sbp_trainer_find_param(t, "head.nope", &index), SBP_ERROR_NOT_FOUND);
  EXPECT_EQ(sbp_trainer_get_param_info(t, 2, &p), SBP_ERROR_INVALID_ARGUMENT);

  sbp_mask_group_info m{};
  m.struct_size = sizeof(m);
  ASSERT_EQ(sbp_trainer_get_mask_group_info(t, 1, &m), SBP_OK);
  EXPECT_STREQ(m.name, "m1");
  EXPECT_STREQ(m.kind, "random");
  EXPECT_EQ(m.capacity, 13);
  EXPECT_EQ(m.fixed, 0);
  EXPECT_EQ(m.cell, 1); // drawn on its own grid
}

TEST(TrainerApi, OlderCallersGetTheFieldsTheyKnow) {
  Handle t(fakeTrainer());
  sbp_trainer_info info;
  std::memset(&info, 0xAB, sizeof(info));
  info.struct_size = offsetof(sbp_trainer_info, batch); // knows the strings only
  ASSERT_EQ(sbp_trainer_get_info(t, &info), SBP_OK);
  EXPECT_STREQ(info.model_name, "fake_softmax");
  int64_t untouched;
  std::memset(&untouched, 0xAB, sizeof(untouched));
  EXPECT_EQ(info.batch, untouched);
  info.struct_size = 0;
  EXPECT_EQ(sbp_trainer_get_info(t, &info), SBP_ERROR_INVALID_ARGUMENT);
}

TEST(TrainerApi, OptionsOverrideTheModelsOptimizer) {
  sbp_trainer_options o;
  sbp_trainer_options_init(&o);
  o.lr = 0.5f;
  o.weight_decay = 0.0f;
  o.num_threads = 1;
  sbp_trainer *t = nullptr;
  ASSERT_EQ(sbp_trainer_create(fakeTrainer().c_str(), &o, &t), SBP_OK) << sbp_last_error();
  sbp_trainer_info info{};
  info.struct_size = sizeof(info);
  sbp_trainer_get_info(t, &info);
  EXPECT_FLOAT_EQ(info.lr, 0.5f);
  EXPECT_FLOAT_EQ(info.weight_decay, 0.0f);
  EXPECT_FLOAT_EQ(info.beta2, 0.999f); // the model's
  EXPECT_EQ(info.num_threads, 1);
  EXPECT_EQ(sbp_trainer_set_learning_rate(t, 0.25f), SBP_OK);
  sbp_trainer_get_info(t, &info);
  EXPECT_FLOAT_EQ(info.lr, 0.25f);
  EXPECT_EQ(sbp_trainer_set_learning_rate(t, NAN), SBP_ERROR_INVALID_ARGUMENT);
  sbp_trainer_release(t);

  o.beta1 = 1.5f;
  EXPECT_EQ(sbp_trainer_create(fakeTrainer().c_str(), &o, &t), SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(contains(sbp_last_error(), "betas")) << sbp_last_error();
  EXPECT_EQ(t, nullptr);
}

// Only -1 means "the model's value": other negative values were silently
// replaced by the model's, so a typo trained with another learning rate.
TEST(TrainerApi, NegativeOptionsAreRefusedNotReplaced) {
  auto create = [](void (*edit)(sbp_trainer_options &)) {
    sbp_trainer_options o;
    sbp_trainer_options_init(&o);
    edit(o);
    sbp_trainer *t = nullptr;
    sbp_status s = sbp_trainer_create(fakeTrainer().c_str(), &o, &t);
    sbp_trainer_release(t);
    return s;
  };
  EXPECT_EQ(create([](sbp_trainer_options &o) { o.lr = -0.5f; }), SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(contains(sbp_last_error(), "learning rate -0.5")) << sbp_last_error();
  EXPECT_EQ(create([](sbp_trainer_options &o) { o.weight_decay = -2.0f; }),
            SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(contains(sbp_last_error(), "weight decay -2")) << sbp_last_error();
  EXPECT_EQ(create([](sbp_trainer_options &o) { o.eps = -1e-8f; }), SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(create([](sbp_trainer_options &o) { o.beta2 = -0.1f; }), SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(create([](sbp_trainer_options &o) { o.lr = INFINITY; }), SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(create([](sbp_trainer_options &o) { o.num_threads = 10000; }),
            SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(contains(sbp_last_error(), "num_threads 10000 must be in [0, 1024]"))
      << sbp_last_error();
  EXPECT_EQ(create([](sbp_trainer_options &o) { o.lr = -1.0f; }), SBP_OK) << sbp_last_error();
}

TEST(TrainerApi, InitialisationFollowsTheSeed) {
  Handle a(fakeTrainer(), 1), b(fakeTrainer(), 1), c(fakeTrainer(), 2);
  std::vector<float> pa = allParams(a);
  EXPECT_EQ(pa, allParams(b));
  EXPECT_NE(pa, allParams(c));
  double sq = 0;
  for (int k = 0; k < K * D; ++k) {
    ASSERT_LE(std::fabs(pa[size_t(k)]), 0.02f); // trunc_normal(0.01) stays in 2 scales
    sq += double(pa[size_t(k)]) * pa[size_t(k)];
  }
  EXPECT_NEAR(std::sqrt(sq / (K * D)), 0.01 * 0.88, 0.001);
  for (int k = 0; k < K; ++k)
    EXPECT_EQ(pa[size_t(K * D + k)], 0.0f); // bias: zeros
}

TEST(TrainerApi, LossFallsOnFashionMnist) {
  FashionMnist data;
  if (!data.present())
    GTEST_SKIP() << "Fashion-MNIST is not installed";
  Handle t(fakeTrainer());
  Batch batch;
  std::vector<float> losses;
  for (int64_t s = 0; s < 30; ++s) {
    data.batch(s, batch);
    float loss = 0;
    ASSERT_EQ(sbp_trainer_step(t, batch.images.data(), batch.labels.data(), &loss), SBP_OK)
        << sbp_trainer_last_error(t);
    losses.push_back(loss);
  }
  double first = std::accumulate(losses.begin(), losses.begin() + 5, 0.0) / 5;
  double last = std::accumulate(losses.end() - 5, losses.end(), 0.0) / 5;
  EXPECT_NEAR(losses[0], std::log(10.0), 0.3); // chance level at the start
  EXPECT_LT(last, 0.6 * first);
  EXPECT_EQ(stepOf(t), 30);

  // Eval on an unseen batch: accuracy from the logits well above chance.
  data.batch(100, batch);
  std::vector<float> logits(B * K);
  float loss = 0;
  ASSERT_EQ(sbp_trainer_eval(t, batch.images.data(), batch.labels.data(), &loss, logits.data()),
            SBP_OK);
  int correct = 0;
  double ce = 0;
  for (int b = 0; b < B; ++b) {
    const float *row = logits.data() + b * K;
    int best = int(std::max_element(row, row + K) - row);
    correct += best == batch.labels[size_t(b)];
    double sum = 0;
    for (int k = 0; k < K; ++k)
      sum += std::exp(double(row[k]));
    ce += std::log(sum) - row[batch.labels[size_t(b)]];
  }
  EXPECT_GT(correct, B / 2);
  EXPECT_NEAR(loss, ce / B, 1e-4); // the loss is the logits' mean cross-entropy
  EXPECT_EQ(stepOf(t), 30);        // eval does not step
}

TEST(TrainerApi, StepAppliesAdamWToTheGradients) {
  Handle t(fakeTrainer(), 3);
  Batch batch;
  std::vector<float> p0 = allParams(t);
  float loss_grad = 0, loss_step = 0;
  ASSERT_EQ(sbp_trainer_compute_gradients(t, batch.images.data(), batch.labels.data(), &loss_grad),
            SBP_OK);
  EXPECT_EQ(allParams(t), p0); // no update
  EXPECT_EQ(stepOf(t), 0);
  std::vector<float> g = allGradients(t);
  ASSERT_EQ(sbp_trainer_step(t, batch.images.data(), batch.labels.data(), &loss_step), SBP_OK);
  EXPECT_EQ(loss_grad, loss_step);
  std::vector<float> p1 = allParams(t);
  // First AdamW step: p = p (1 - lr wd [weight only]) - lr g / (|g| + eps).
  const double lr = 0.01, wd = 0.05, eps = 1e-8;
  for (size_t k = 0; k < p0.size(); ++k) {
    double decay = k < size_t(K * D) ? 1.0 - lr * wd : 1.0;
    double expected = p0[k] * decay - lr * g[k] / (std::fabs(g[k]) + eps);
    ASSERT_NEAR(p1[k], expected, 1e-6) << "element " << k;
  }
}

TEST(TrainerApi, TheTrainerGetsTheStepsMasks) {
  std::string path = fakeTrainer();
  Handle t(path, 5);
  auto last_keep = fakeSymbol<int (*)(int, int32_t *)>(path, "fake_trainer_last_keep");
  ASSERT_NE(last_keep, nullptr);
  Batch batch;
  std::vector<std::vector<int32_t>> seen;
  for (int64_t s = 0; s < 4; ++s) {
    std::vector<int32_t> expected(99), got(99);
    int32_t kept = 0;
    ASSERT_EQ(sbp_trainer_get_keep_indices(t, 0, s, expected.data(), 99, &kept), SBP_OK);
    EXPECT_EQ(kept, 1 + 98);
    ASSERT_EQ(sbp_trainer_step(t, batch.images.data(), batch.labels.data(), nullptr), SBP_OK)
        << sbp_trainer_last_error(t);
    last_keep(0, got.data());
    EXPECT_EQ(got, expected) << "step " << s;
    std::vector<int32_t> m2(99);
    last_keep(2, m2.data());
    EXPECT_EQ(m2, got); // same settings, same indices
    std::vector<int32_t> m1(13), m1_expected(13);
    last_keep(1, m1.data());
    sbp_trainer_get_keep_indices(t, 1, s, m1_expected.data(), 13, &kept);
    EXPECT_EQ(m1, m1_expected);
    EXPECT_EQ(kept, 49 - 36);
    seen.push_back(m1);
  }
  EXPECT_NE(seen[0], seen[1]);
  std::vector<int32_t> small(5);
  EXPECT_EQ(sbp_trainer_get_keep_indices(t, 0, 0, small.data(), 5, nullptr),
            SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(sbp_trainer_get_keep_indices(t, 3, 0, small.data(), 5, nullptr),
            SBP_ERROR_INVALID_ARGUMENT);
}

TEST(TrainerApi, FixedKeepIndices) {
  std::string path = fakeTrainer();
  Handle t(path);
  auto last_keep = fakeSymbol<int (*)(int, int32_t *)>(path, "fake_trainer_last_keep");
  Batch batch;
  const int32_t idx[] = {0, 3, 7, 12};
  ASSERT_EQ(sbp_trainer_set_keep_indices(t, -1, idx, 4), SBP_OK) << sbp_trainer_last_error(t);
  ASSERT_EQ(sbp_trainer_step(t, batch.images.data(), batch.labels.data(), nullptr), SBP_OK);
  std::vector<int32_t> got(99);
  last_keep(0, got.data());
  EXPECT_EQ(std::vector<int32_t>(got.begin(), got.begin() + 5),
            (std::vector<int32_t>{0, 3, 7, 12, -1}));
  last_keep(1, got.data());
  EXPECT_EQ(std::vector<int32_t>(got.begin(), got.begin() + 5),
            (std::vector<int32_t>{0, 3, 7, 12, -1}));
  sbp_mask_group_info m{};
  m.struct_size = sizeof(m);
  sbp_trainer_get_mask_group_info(t, 0, &m);
  EXPECT_EQ(m.fixed, 1);

  // One group back to random sampling, the others stay fixed.
  ASSERT_EQ(sbp_trainer_set_keep_indices(t, 0, nullptr, 0), SBP_OK);
  ASSERT_EQ(sbp_trainer_step(t, batch.images.data(), batch.labels.data(), nullptr), SBP_OK);
  last_keep(0, got.data());
  EXPECT_EQ(std::count_if(got.begin(), got.end(), [](int32_t i) { return i >= 0; }), 99);
  last_keep(2, got.data());
  EXPECT_EQ(got[3], 12);

  // Invalid sets are refused and change nothing.
  const int32_t descending[] = {3, 1}, out_of_range[] = {0, 197}, past_m1[] = {0, 60};
  EXPECT_EQ(sbp_trainer_set_keep_indices(t, 0, descending, 2), SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(sbp_trainer_set_keep_indices(t, 0, out_of_range, 2), SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(contains(sbp_trainer_last_error(t), "outside [0, 197)")) << sbp_trainer_last_error(t);
  EXPECT_EQ(sbp_trainer_set_keep_indices(t, -1, past_m1, 2), SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(contains(sbp_trainer_last_error(t), "'m1'")) << sbp_trainer_last_error(t);
  std::vector<int32_t> too_many(14);
  std::iota(too_many.begin(), too_many.end(), 0);
  EXPECT_EQ(sbp_trainer_set_keep_indices(t, 1, too_many.data(), 14), SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(sbp_trainer_set_keep_indices(t, 3, idx, 4), SBP_ERROR_INVALID_ARGUMENT);
  sbp_trainer_get_mask_group_info(t, 0, &m);
  EXPECT_EQ(m.fixed, 0);
}

TEST(TrainerApi, ParamsRoundTrip) {
  TempDir dir;
  Handle a(fakeTrainer(), 1), b(fakeTrainer(), 2);
  Batch batch;
  ASSERT_EQ(sbp_trainer_step(a, batch.images.data(), batch.labels.data(), nullptr), SBP_OK);
  ASSERT_EQ(sbp_trainer_save_params(a, dir.file("p.safetensors").c_str()), SBP_OK);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"p.safetensors"});
  ASSERT_EQ(sbp_trainer_load_params(b, dir.file("p.safetensors").c_str()), SBP_OK)
      << sbp_trainer_last_error(b);
  EXPECT_EQ(allParams(a), allParams(b));
  EXPECT_EQ(stepOf(b), 0); // parameters only
}

TEST(TrainerApi, LoadParamsRequiresExactlyTheModelsTensors) {
  TempDir dir;
  Handle t(fakeTrainer());
  std::vector<float> before = allParams(t);
  std::vector<float> w(K * D, 1.0f), bias(K, 2.0f), extra(3, 0.0f);
  auto write = [&](const std::string &header, const std::vector<std::vector<float>> &data) {
    std::string bytes(8, '\0');
    for (int k = 0; k < 8; ++k)
      bytes[size_t(k)] = char((uint64_t(header.size()) >> (8 * k)) & 0xFF);
    bytes += header;
    for (const auto &d : data)
      bytes.append(reinterpret_cast<const char *>(d.data()), d.size() * 4);
    sbp::test::writeFile(dir.file("p.safetensors"), bytes);
  };
  auto load = [&] { return sbp_trainer_load_params(t, dir.file("p.safetensors").c_str()); };
  const std::string w_entry = R"("head.weight":{"dtype":"F32","shape":[10,784],"data_offsets":[0,31360]})";
  const std::string b_entry = R"("head.bias":{"dtype":"F32","shape":[10],"data_offsets":[31360,31400]})";

  write("{" + w_entry + "}", {w});
  EXPECT_EQ(load(), SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(contains(sbp_trainer_last_error(t), "lacks 1 tensor of model 'fake_softmax': head.bias"))
      << sbp_trainer_last_error(t);

  write("{" + w_entry + "," + b_entry +
            R"(,"head.extra":{"dtype":"F32","shape":[3],"data_offsets":[31400,31412]}})",
        {w, bias, extra});
  EXPECT_EQ(load(), SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(contains(sbp_trainer_last_error(t), "does not have: head.extra"))
      << sbp_trainer_last_error(t);

  write("{" + w_entry + "," + b_entry +
            R"(,"optimizer.exp_avg.head.bias":{"dtype":"F32","shape":[3],"data_offsets":[31400,31412]}})",
        {w, bias, extra});
  EXPECT_EQ(load(), SBP_OK) << sbp_trainer_last_error(t); // optimizer state is ignored
  EXPECT_EQ(allParams(t)[K * D], 2.0f);

  write(R"({"head.weight":{"dtype":"F32","shape":[784,10],"data_offsets":[0,31360]},)" + b_entry +
            "}",
        {w, bias});
  sbp_trainer_write_param(t, 0, before.data(), K * D);
  EXPECT_EQ(load(), SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(contains(sbp_trainer_last_error(t), "shape [784, 10], expected [10, 784]"))
      << sbp_trainer_last_error(t);
  EXPECT_EQ(allParams(t)[0], before[0]); // a failed load changes nothing

  EXPECT_EQ(sbp_trainer_load_params(t, dir.file("absent.safetensors").c_str()),
            SBP_ERROR_NOT_FOUND);
}

TEST(TrainerApi, CheckpointResumesBitExactly) {
  TempDir dir;
  std::string ckpt = dir.file("c.safetensors");
  Handle a(fakeTrainer(), 7);
  for (int s = 0; s < 3; ++s) {
    Batch batch(s);
    ASSERT_EQ(sbp_trainer_step(a, batch.images.data(), batch.labels.data(), nullptr), SBP_OK);
  }
  ASSERT_EQ(sbp_trainer_save_checkpoint(a, ckpt.c_str()), SBP_OK) << sbp_trainer_last_error(a);
  Handle b(fakeTrainer(), 99); // another seed: the checkpoint restores 7
  ASSERT_EQ(sbp_trainer_load_checkpoint(b, ckpt.c_str()), SBP_OK) << sbp_trainer_last_error(b);
  EXPECT_EQ(stepOf(b), 3);
  sbp_trainer_info info{};
  info.struct_size = sizeof(info);
  sbp_trainer_get_info(b, &info);
  EXPECT_EQ(info.seed, 7u);
  for (int s = 3; s < 5; ++s) {
    Batch batch(s);
    ASSERT_EQ(sbp_trainer_step(a, batch.images.data(), batch.labels.data(), nullptr), SBP_OK);
    ASSERT_EQ(sbp_trainer_step(b, batch.images.data(), batch.labels.data(), nullptr), SBP_OK);
  }
  EXPECT_EQ(allParams(a), allParams(b)); // same params, moments, step and masks
  std::vector<int32_t> ka(99), kb(99);
  sbp_trainer_get_keep_indices(a, 0, 17, ka.data(), 99, nullptr);
  sbp_trainer_get_keep_indices(b, 0, 17, kb.data(), 99, nullptr);
  EXPECT_EQ(ka, kb);
  EXPECT_EQ(dir.entries(), std::vector<std::string>{"c.safetensors"});
}

TEST(TrainerApi, CheckpointOfAnotherModelOrOptimizerIsRefused) {
  TempDir dir;
  std::string ckpt = dir.file("c.safetensors");
  Handle adamw(fakeTrainer()), sgd(fakeTrainer("fake_trainer_sgd"));
  ASSERT_EQ(sbp_trainer_save_checkpoint(adamw, ckpt.c_str()), SBP_OK);
  EXPECT_EQ(sbp_trainer_load_checkpoint(sgd, ckpt.c_str()), SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(contains(sbp_trainer_last_error(sgd),
                       "is for model 'fake_softmax', this trainer is 'fake_softmax_sgd'"))
      << sbp_trainer_last_error(sgd);
  // The same file still loads as parameters (optimizer state is skipped).
  EXPECT_EQ(sbp_trainer_load_params(sgd, ckpt.c_str()), SBP_OK) << sbp_trainer_last_error(sgd);
  EXPECT_EQ(allParams(sgd), allParams(adamw));
  // A parameters file is not a checkpoint.
  ASSERT_EQ(sbp_trainer_save_params(adamw, dir.file("p.safetensors").c_str()), SBP_OK);
  EXPECT_EQ(sbp_trainer_load_checkpoint(adamw, dir.file("p.safetensors").c_str()),
            SBP_ERROR_INVALID_ARGUMENT);
  // An SGD checkpoint round-trips its momentum buffer.
  Batch batch;
  ASSERT_EQ(sbp_trainer_step(sgd, batch.images.data(), batch.labels.data(), nullptr), SBP_OK);
  ASSERT_EQ(sbp_trainer_save_checkpoint(sgd, ckpt.c_str()), SBP_OK);
  Handle sgd2(fakeTrainer("fake_trainer_sgd"));
  ASSERT_EQ(sbp_trainer_load_checkpoint(sgd2, ckpt.c_str()), SBP_OK)
      << sbp_trainer_last_error(sgd2);
  sbp_trainer_step(sgd, batch.images.data(), batch.labels.data(), nullptr);
  sbp_trainer_step(sgd2, batch.images.data(), batch.labels.data(), nullptr);
  EXPECT_EQ(allParams(sgd), allParams(sgd2));
}

// The checkpoint's "abi" metadata is checked: a file of another ABI version may
// hold state whose meaning changed (mask kinds, layouts).
TEST(TrainerApi, FilesOfAnotherAbiVersionAreRefused) {
  TempDir dir;
  std::string ckpt = dir.file("c.safetensors");
  Handle t(fakeTrainer());
  ASSERT_EQ(sbp_trainer_save_checkpoint(t, ckpt.c_str()), SBP_OK);
  const std::string bytes = sbp::test::readFile(ckpt);
  const std::string current = "\"abi\":\"" + std::to_string(sbp_runtime_abi_version()) + "\"";
  size_t at = bytes.find(current);
  ASSERT_NE(at, std::string::npos);
  auto edited = [&](const std::string &abi) { // same length: the header length stays right
    std::string b = bytes;
    b.replace(at, current.size(), abi);
    return b;
  };
  sbp::test::writeFile(ckpt, edited("\"abi\":\"1\""));
  EXPECT_EQ(sbp_trainer_load_checkpoint(t, ckpt.c_str()), SBP_ERROR_ABI_MISMATCH);
  EXPECT_TRUE(contains(sbp_trainer_last_error(t),
                       "c.safetensors' was written for ABI version 1, this runtime implements "
                       "ABI version " + std::to_string(sbp_runtime_abi_version())))
      << sbp_trainer_last_error(t);
  EXPECT_EQ(sbp_trainer_load_params(t, ckpt.c_str()), SBP_ERROR_ABI_MISMATCH);
  sbp::test::writeFile(ckpt, edited("\"abi\":\"x\""));
  EXPECT_EQ(sbp_trainer_load_checkpoint(t, ckpt.c_str()), SBP_ERROR_ABI_MISMATCH);
  // Without "abi": not one of our checkpoints, but parameters from another tool load.
  sbp::test::writeFile(ckpt, edited("\"abx\":\"" + std::to_string(sbp_runtime_abi_version()) + "\""));
  EXPECT_EQ(sbp_trainer_load_checkpoint(t, ckpt.c_str()), SBP_ERROR_CORRUPT_FILE);
  EXPECT_TRUE(contains(sbp_trainer_last_error(t), "no \"abi\"")) << sbp_trainer_last_error(t);
  EXPECT_EQ(sbp_trainer_load_params(t, ckpt.c_str()), SBP_OK) << sbp_trainer_last_error(t);
}

// The checkpoint `bytes` with metadata `key` set to `value`: the JSON header is
// edited, padded to 8 bytes as the writer pads it, and its length rewritten.
static std::string withMetadata(const std::string &bytes, const std::string &key,
                                const std::string &value) {
  uint64_t length = 0;
  std::memcpy(&length, bytes.data(), 8);
  std::string header = bytes.substr(8, size_t(length));
  const std::string data = bytes.substr(8 + size_t(length));
  while (!header.empty() && header.back() == ' ')
    header.pop_back();
  const std::string field = "\"" + key + "\":\"";
  size_t at = header.find(field);
  EXPECT_NE(at, std::string::npos) << header;
  at += field.size();
  header.replace(at, header.find('"', at) - at, value);
  header.append((8 - header.size() % 8) % 8, ' ');
  length = header.size();
  std::string out(8, '\0');
  std::memcpy(out.data(), &length, 8);
  return out + header + data;
}

// The step counter stops at INT64_MAX with an error instead of overflowing: a
// checkpoint (its "step" is text anyone can edit) can put it anywhere.
TEST(TrainerApi, TheStepCounterCannotOverflow) {
  TempDir dir;
  std::string ckpt = dir.file("c.safetensors");
  Handle t(fakeTrainer());
  ASSERT_EQ(sbp_trainer_save_checkpoint(t, ckpt.c_str()), SBP_OK);
  const std::string bytes = sbp::test::readFile(ckpt);
  Batch batch;
  sbp::test::writeFile(ckpt, withMetadata(bytes, "step", "9223372036854775806"));
  ASSERT_EQ(sbp_trainer_load_checkpoint(t, ckpt.c_str()), SBP_OK) << sbp_trainer_last_error(t);
  EXPECT_EQ(stepOf(t), INT64_MAX - 1);
  ASSERT_EQ(sbp_trainer_step(t, batch.images.data(), batch.labels.data(), nullptr), SBP_OK)
      << sbp_trainer_last_error(t);
  EXPECT_EQ(stepOf(t), INT64_MAX);
  const std::vector<float> before = allParams(t);
  EXPECT_EQ(sbp_trainer_step(t, batch.images.data(), batch.labels.data(), nullptr),
            SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(contains(sbp_trainer_last_error(t),
                       "the trainer is at step 9223372036854775807, the largest its step counter "
                       "holds: it cannot take another step"))
      << sbp_trainer_last_error(t);
  EXPECT_EQ(stepOf(t), INT64_MAX);
  EXPECT_EQ(allParams(t), before);
  // Gradients and evaluation do not advance the counter: they still work.
  EXPECT_EQ(sbp_trainer_compute_gradients(t, batch.images.data(), batch.labels.data(), nullptr),
            SBP_OK) << sbp_trainer_last_error(t);
  // A step past INT64_MAX in the file is not a number of this type.
  sbp::test::writeFile(ckpt, withMetadata(bytes, "step", "9223372036854775808"));
  EXPECT_EQ(sbp_trainer_load_checkpoint(t, ckpt.c_str()), SBP_ERROR_CORRUPT_FILE);
  EXPECT_TRUE(contains(sbp_trainer_last_error(t), "bad or missing \"step\""))
      << sbp_trainer_last_error(t);
  sbp::test::writeFile(ckpt, withMetadata(bytes, "step", "-1"));
  EXPECT_EQ(sbp_trainer_load_checkpoint(t, ckpt.c_str()), SBP_ERROR_CORRUPT_FILE);
}

TEST(TrainerApi, CorruptCheckpointLeavesTheTrainerAsItWas) {
  TempDir dir;
  std::string ckpt = dir.file("c.safetensors");
  Handle t(fakeTrainer());
  Batch batch;
  ASSERT_EQ(sbp_trainer_step(t, batch.images.data(), batch.labels.data(), nullptr), SBP_OK);
  ASSERT_EQ(sbp_trainer_save_checkpoint(t, ckpt.c_str()), SBP_OK);
  std::string bytes = sbp::test::readFile(ckpt);
  ASSERT_EQ(sbp_trainer_step(t, batch.images.data(), batch.labels.data(), nullptr), SBP_OK);
  std::vector<float> before = allParams(t);

  sbp::test::writeFile(ckpt, bytes.substr(0, bytes.size() - 100)); // truncated
  EXPECT_EQ(sbp_trainer_load_checkpoint(t, ckpt.c_str()), SBP_ERROR_CORRUPT_FILE);
  EXPECT_TRUE(contains(sbp_trainer_last_error(t), "c.safetensors")) << sbp_trainer_last_error(t);
  std::string garbled = bytes;
  garbled[12] = '#'; // inside the JSON header
  sbp::test::writeFile(ckpt, garbled);
  EXPECT_EQ(sbp_trainer_load_checkpoint(t, ckpt.c_str()), SBP_ERROR_CORRUPT_FILE);
  sbp::test::writeFile(ckpt, "not a checkpoint");
  EXPECT_EQ(sbp_trainer_load_checkpoint(t, ckpt.c_str()), SBP_ERROR_CORRUPT_FILE);
  EXPECT_EQ(allParams(t), before);
  EXPECT_EQ(stepOf(t), 2);
}

TEST(TrainerApi, SavesLeaveNoTemporaryFiles) {
  TempDir dir;
  Handle t(fakeTrainer());
  Batch batch;
  ASSERT_EQ(sbp_trainer_compute_gradients(t, batch.images.data(), batch.labels.data(), nullptr),
            SBP_OK);
  ASSERT_EQ(sbp_trainer_save_params(t, dir.file("p").c_str()), SBP_OK);
  ASSERT_EQ(sbp_trainer_save_params(t, dir.file("p").c_str()), SBP_OK); // over an existing file
  ASSERT_EQ(sbp_trainer_save_checkpoint(t, dir.file("c").c_str()), SBP_OK);
  ASSERT_EQ(sbp_trainer_save_gradients(t, dir.file("g").c_str()), SBP_OK);
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"c", "g", "p"}));
  EXPECT_EQ(sbp_trainer_save_params(t, dir.file("no/such/dir/p").c_str()), SBP_ERROR_NOT_FOUND);
  EXPECT_EQ(dir.entries(), (std::vector<std::string>{"c", "g", "p"}));
}

TEST(TrainerApi, GradientsFileHoldsTheGradients) {
  TempDir dir;
  Handle t(fakeTrainer()), probe(fakeTrainer());
  Batch batch;
  ASSERT_EQ(sbp_trainer_compute_gradients(t, batch.images.data(), batch.labels.data(), nullptr),
            SBP_OK);
  ASSERT_EQ(sbp_trainer_save_gradients(t, dir.file("g.safetensors").c_str()), SBP_OK);
  // Same names and shapes as the parameters: it loads as a parameter file.
  ASSERT_EQ(sbp_trainer_load_params(probe, dir.file("g.safetensors").c_str()), SBP_OK);
  EXPECT_EQ(allParams(probe), allGradients(t));
}

TEST(TrainerApi, BatchFile) {
  TempDir dir;
  Handle t(fakeTrainer());
  Batch batch(3);
  sbp::test::writeBatchFile(dir.file("b.safetensors"), {B, 1, 28, 28}, batch.images,
                            batch.labels);
  Batch read;
  ASSERT_EQ(sbp_trainer_read_batch_file(t, dir.file("b.safetensors").c_str(), read.images.data(),
                                        read.labels.data()),
            SBP_OK)
      << sbp_trainer_last_error(t);
  EXPECT_EQ(read.images, batch.images);
  EXPECT_EQ(read.labels, batch.labels);
  sbp::test::writeBatchFile(dir.file("b.safetensors"), {B, 28, 28, 1}, batch.images,
                            batch.labels);
  EXPECT_EQ(sbp_trainer_read_batch_file(t, dir.file("b.safetensors").c_str(), read.images.data(),
                                        read.labels.data()),
            SBP_ERROR_INVALID_ARGUMENT);
}

TEST(TrainerApi, AbiMismatchNamesBothVersions) {
  sbp_trainer *t = nullptr;
  const std::string next = std::to_string(sbp_runtime_abi_version() + 1);
  const std::string mine = std::to_string(sbp_runtime_abi_version());
  // The trainer refuses the runtime...
  EXPECT_EQ(sbp_trainer_create(fakeTrainer("fake_trainer_abi_next").c_str(), nullptr, &t),
            SBP_ERROR_ABI_MISMATCH);
  EXPECT_EQ(t, nullptr);
  std::string message = sbp_last_error();
  EXPECT_TRUE(contains(message, "ABI version " + next)) << message;
  EXPECT_TRUE(contains(message, "ABI version " + mine)) << message;
  // ...and the runtime checks the description itself when a trainer does not.
  EXPECT_EQ(sbp_trainer_create(fakeTrainer("fake_trainer_abi_unchecked").c_str(), nullptr, &t),
            SBP_ERROR_ABI_MISMATCH);
  message = sbp_last_error();
  EXPECT_TRUE(contains(message, "generated for ABI version " + next)) << message;
  EXPECT_TRUE(contains(message, "implements ABI version " + mine)) << message;
}

TEST(TrainerApi, CudaTrainerIsUnsupportedWithoutCuda) {
#ifdef SBP_HAVE_CUDA_RUNTIME
  GTEST_SKIP() << "this runtime has the CUDA backend: CudaTrainer.NeedsADevice covers it";
#endif
  sbp_trainer *t = nullptr;
  EXPECT_EQ(sbp_trainer_create(fakeTrainer("fake_trainer_cuda").c_str(), nullptr, &t),
            SBP_ERROR_UNSUPPORTED);
  EXPECT_TRUE(contains(sbp_last_error(), "this runtime was built without CUDA"))
      << sbp_last_error();
}

TEST(TrainerApi, NanLossIsANumericErrorAndDoesNotUpdate) {
  Handle t(fakeTrainer("fake_trainer_nan"));
  Batch batch;
  std::vector<float> before = allParams(t);
  float loss = 1.0f;
  EXPECT_EQ(sbp_trainer_step(t, batch.images.data(), batch.labels.data(), &loss),
            SBP_ERROR_NUMERIC);
  EXPECT_STREQ(sbp_trainer_last_error(t), "loss is NaN at step 0");
  EXPECT_EQ(allParams(t), before);
  EXPECT_EQ(stepOf(t), 0);
  EXPECT_EQ(sbp_trainer_compute_gradients(t, batch.images.data(), batch.labels.data(), &loss),
            SBP_ERROR_NUMERIC);
}

TEST(TrainerApi, LabelsOutOfRangeAreRefused) {
  Handle t(fakeTrainer());
  Batch batch;
  std::vector<float> before = allParams(t);
  batch.labels[5] = K;
  EXPECT_EQ(sbp_trainer_step(t, batch.images.data(), batch.labels.data(), nullptr),
            SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_STREQ(sbp_trainer_last_error(t), "label 10 at batch index 5 is outside [0, 10)");
  batch.labels[5] = -1;
  EXPECT_EQ(sbp_trainer_eval(t, batch.images.data(), batch.labels.data(), nullptr, nullptr),
            SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(allParams(t), before);
  EXPECT_EQ(stepOf(t), 0);
}

TEST(TrainerApi, MissingOrInvalidTrainerFiles) {
  TempDir dir;
  sbp_trainer *t = nullptr;
  EXPECT_EQ(sbp_trainer_create(dir.file("absent.so").c_str(), nullptr, &t), SBP_ERROR_NOT_FOUND);
  EXPECT_TRUE(contains(sbp_last_error(), "absent.so")) << sbp_last_error();
  sbp::test::writeFile(dir.file("text.so"), "not an ELF file");
  EXPECT_EQ(sbp_trainer_create(dir.file("text.so").c_str(), nullptr, &t),
            SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(contains(sbp_last_error(), "text.so' is not a trainer library: not an ELF file"))
      << sbp_last_error();
  // A real shared library that is not a trainer.
  Dl_info self{};
  ASSERT_NE(dladdr(reinterpret_cast<void *>(&sbp_trainer_create), &self), 0);
  EXPECT_EQ(sbp_trainer_create(self.dli_fname, nullptr, &t), SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(contains(sbp_last_error(), "exports no sbp_trainer_model")) << sbp_last_error();
  EXPECT_EQ(t, nullptr);
}

// dlopen trusts the ELF headers: a segment past the end of a truncated file
// faults (SIGBUS) when touched. Every truncation must be refused before that.
TEST(TrainerApi, TruncatedTrainerLibrariesAreRefusedBeforeDlopen) {
  TempDir dir;
  const std::string whole = sbp::test::readFile(fakeTrainer());
  ASSERT_GT(whole.size(), 4096u);
  std::vector<size_t> lengths = {0, 3, 4, 63, 64, 200, whole.size() - 1};
  for (size_t k = 1; k < 32; ++k)
    lengths.push_back(whole.size() * k / 32);
  for (size_t length : lengths) {
    // A fresh name each time: the runtime keeps loaded trainers mapped.
    std::string path = dir.file("cut" + std::to_string(length) + ".so");
    sbp::test::writeFile(path, whole.substr(0, length));
    sbp_trainer *t = nullptr;
    sbp_status status = sbp_trainer_create(path.c_str(), nullptr, &t);
    EXPECT_TRUE(status == SBP_ERROR_CORRUPT_FILE || status == SBP_ERROR_INVALID_ARGUMENT)
        << length << ": " << sbp_status_string(status) << " " << sbp_last_error();
    EXPECT_TRUE(contains(sbp_last_error(), path)) << sbp_last_error();
    EXPECT_EQ(t, nullptr);
  }
  std::string cut = dir.file("cut" + std::to_string(whole.size() / 2) + ".so");
  sbp_trainer *t = nullptr;
  EXPECT_EQ(sbp_trainer_create(cut.c_str(), nullptr, &t), SBP_ERROR_CORRUPT_FILE);
  EXPECT_TRUE(contains(sbp_last_error(), "is truncated or corrupt")) << sbp_last_error();
}

TEST(TrainerApi, ElfHeadersThatContradictTheFileAreRefused) {
  TempDir dir;
  const std::string whole = sbp::test::readFile(fakeTrainer());
  auto status = [&](const std::string &name, size_t at, const std::string &bytes) {
    std::string edited = whole;
    edited.replace(at, bytes.size(), bytes);
    sbp::test::writeFile(dir.file(name), edited);
    sbp_trainer *t = nullptr;
    return sbp_trainer_create(dir.file(name).c_str(), nullptr, &t);
  };
  const std::string far(8, '\x7f'); // an offset far past the end of the file
  EXPECT_EQ(status("phoff.so", offsetof(Elf64_Ehdr, e_phoff), far), SBP_ERROR_CORRUPT_FILE);
  EXPECT_TRUE(contains(sbp_last_error(), "program header table")) << sbp_last_error();
  EXPECT_EQ(status("shoff.so", offsetof(Elf64_Ehdr, e_shoff), far), SBP_ERROR_CORRUPT_FILE);
  EXPECT_TRUE(contains(sbp_last_error(), "section header table")) << sbp_last_error();
  EXPECT_EQ(status("class.so", EI_CLASS, std::string(1, char(ELFCLASS32))),
            SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(contains(sbp_last_error(), "not a 64-bit")) << sbp_last_error();
  EXPECT_EQ(status("machine.so", offsetof(Elf64_Ehdr, e_machine), std::string("\x02\x00", 2)),
            SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(contains(sbp_last_error(), "built for ELF machine 2")) << sbp_last_error();
  // The first PT_LOAD segment claims more file bytes than there are.
  Elf64_Ehdr h{};
  std::memcpy(&h, whole.data(), sizeof(h));
  size_t load = 0;
  for (size_t k = 0; k < h.e_phnum; ++k) {
    Elf64_Phdr p{};
    std::memcpy(&p, whole.data() + h.e_phoff + k * sizeof(p), sizeof(p));
    if (p.p_type == PT_LOAD) {
      load = h.e_phoff + k * sizeof(p);
      break;
    }
  }
  ASSERT_NE(load, 0u);
  EXPECT_EQ(status("load.so", load + offsetof(Elf64_Phdr, p_filesz), far),
            SBP_ERROR_CORRUPT_FILE);
  EXPECT_TRUE(contains(sbp_last_error(), "PT_LOAD")) << sbp_last_error();
}

// dlopen of a FIFO blocks until a writer appears; of a directory it says little.
TEST(TrainerApi, TrainerThatIsNotARegularFileIsRefused) {
  TempDir dir;
  ASSERT_EQ(::mkfifo(dir.file("fifo.so").c_str(), 0600), 0);
  ASSERT_EQ(::mkdir(dir.file("dir.so").c_str(), 0700), 0);
  for (const char *name : {"fifo.so", "dir.so"}) {
    sbp_trainer *t = nullptr;
    EXPECT_EQ(sbp_trainer_create(dir.file(name).c_str(), nullptr, &t), SBP_ERROR_INVALID_ARGUMENT);
    EXPECT_TRUE(contains(sbp_last_error(), "is not a regular file")) << sbp_last_error();
  }
  EXPECT_EQ(::rmdir(dir.file("dir.so").c_str()), 0);
}

TEST(TrainerApi, NullArgumentsAreErrorsNotCrashes) {
  sbp_trainer *t = nullptr;
  EXPECT_EQ(sbp_trainer_create(nullptr, nullptr, &t), SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(sbp_trainer_create(fakeTrainer().c_str(), nullptr, nullptr),
            SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(sbp_trainer_step(nullptr, nullptr, nullptr, nullptr), SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_STREQ(sbp_last_error(), "trainer is NULL");
  sbp_trainer_options zero{};
  EXPECT_EQ(sbp_trainer_create(fakeTrainer().c_str(), &zero, &t), SBP_ERROR_INVALID_ARGUMENT);
  Handle h(fakeTrainer());
  EXPECT_EQ(sbp_trainer_step(h, nullptr, nullptr, nullptr), SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(sbp_trainer_save_params(h, nullptr), SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(sbp_trainer_read_param(h, 0, nullptr, K * D), SBP_ERROR_INVALID_ARGUMENT);
  std::vector<float> w(5);
  EXPECT_EQ(sbp_trainer_read_param(h, 0, w.data(), 5), SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(sbp_trainer_get_info(h, nullptr), SBP_ERROR_INVALID_ARGUMENT);
  sbp_trainer_release(nullptr);
  sbp_dataset_release(nullptr);
  EXPECT_EQ(sbp_dataset_num_train_batches(nullptr, SBP_SPLIT_TRAIN, 4), 0);
}

TEST(TrainerApi, DatasetApi) {
  sbp_dataset *ds = nullptr;
  EXPECT_EQ(sbp_dataset_open("/nonexistent/data", &ds), SBP_ERROR_NOT_FOUND);
  EXPECT_EQ(ds, nullptr);
  std::string dir = sbp::test::fashionMnistDir();
  if (dir.empty())
    GTEST_SKIP() << "Fashion-MNIST is not installed";
  ASSERT_EQ(sbp_dataset_open(dir.c_str(), &ds), SBP_OK) << sbp_last_error();
  sbp_dataset_info info{};
  info.struct_size = sizeof(info);
  ASSERT_EQ(sbp_dataset_get_info(ds, &info), SBP_OK);
  EXPECT_STREQ(info.format, "idx");
  EXPECT_EQ(info.train_count, 60000);
  EXPECT_EQ(info.test_count, 10000);
  EXPECT_EQ(sbp_dataset_num_train_batches(ds, SBP_SPLIT_TEST, 64), 156);
  EXPECT_EQ(sbp_dataset_num_eval_batches(ds, SBP_SPLIT_TEST, 64), 157);
  Batch batch;
  int64_t valid = 0;
  ASSERT_EQ(sbp_dataset_get_eval_batch(ds, SBP_SPLIT_TEST, 64, 156, batch.images.data(),
                                       batch.labels.data(), &valid),
            SBP_OK);
  EXPECT_EQ(valid, 10000 - 156 * 64);
  EXPECT_EQ(sbp_dataset_get_eval_batch(ds, SBP_SPLIT_TEST, 64, 157, batch.images.data(),
                                       batch.labels.data(), &valid),
            SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(sbp_dataset_get_train_batch(ds, sbp_split(7), 64, 0, 0, 0, batch.images.data(),
                                        batch.labels.data()),
            SBP_ERROR_INVALID_ARGUMENT);
  sbp_dataset_release(ds);
}

TEST(TrainerApi, CppWrapperThrowsStatusAndMessage) {
  try {
    sbp::Trainer missing("/nonexistent/train.so");
    FAIL() << "no exception";
  } catch (const sbp::Error &e) {
    EXPECT_EQ(e.status(), SBP_ERROR_NOT_FOUND);
    EXPECT_TRUE(contains(e.what(), "/nonexistent/train.so")) << e.what();
  }
  sbp::Trainer trainer(fakeTrainer(), sbp::TrainerOptions().withSeed(4).withThreads(1));
  sbp::Trainer moved = std::move(trainer);
  EXPECT_EQ(trainer.get(), nullptr);
  EXPECT_EQ(moved.info().seed, 4u);
  Batch batch;
  float loss = moved.step(batch.images.data(), batch.labels.data());
  EXPECT_TRUE(std::isfinite(loss));
  batch.labels[0] = 42;
  try {
    moved.step(batch.images.data(), batch.labels.data());
    FAIL() << "no exception";
  } catch (const sbp::Error &e) {
    EXPECT_EQ(e.status(), SBP_ERROR_INVALID_ARGUMENT);
    EXPECT_TRUE(contains(e.what(), "label 42")) << e.what();
  }
  sbp::Trainer nan(fakeTrainer("fake_trainer_nan"));
  batch.labels[0] = 0;
  try {
    nan.step(batch.images.data(), batch.labels.data());
    FAIL() << "no exception";
  } catch (const sbp::Error &e) {
    EXPECT_EQ(e.status(), SBP_ERROR_NUMERIC);
  }
}

// ---- heads mask groups (SBP_MASK_HEADS), through fake_trainer_heads: m0-m2 as
// in fake_trainer, plus "h0", keep 0.5 over 12 heads.

TEST(TrainerApi, HeadsGroupIsDescribedAndDrawnEachStep) {
  std::string path = fakeTrainer("fake_trainer_heads");
  Handle t(path, 9);
  ASSERT_NE(t.t, nullptr);
  sbp_mask_group_info m{};
  m.struct_size = sizeof(m);
  ASSERT_EQ(sbp_trainer_get_mask_group_info(t, 3, &m), SBP_OK);
  EXPECT_STREQ(m.name, "h0");
  EXPECT_STREQ(m.kind, "heads");
  EXPECT_EQ(m.grid_h, 1);
  EXPECT_EQ(m.grid_w, 12);
  EXPECT_EQ(m.prefix_tokens, 0);
  EXPECT_EQ(m.capacity, 12);
  ASSERT_EQ(sbp_trainer_get_mask_group_info(t, 1, &m), SBP_OK);
  EXPECT_STREQ(m.kind, "random");

  auto last_keep = fakeSymbol<int (*)(int, int32_t *)>(path, "fake_trainer_last_keep");
  ASSERT_NE(last_keep, nullptr);
  Batch batch;
  std::vector<std::vector<int32_t>> seen;
  std::vector<int32_t> counts;
  for (int64_t s = 0; s < 6; ++s) {
    std::vector<int32_t> expected(12), got(12);
    int32_t kept = -1;
    ASSERT_EQ(sbp_trainer_get_keep_indices(t, 3, s, expected.data(), 12, &kept), SBP_OK);
    ASSERT_EQ(sbp_trainer_step(t, batch.images.data(), batch.labels.data(), nullptr), SBP_OK)
        << sbp_trainer_last_error(t);
    ASSERT_EQ(last_keep(3, got.data()), 12);
    EXPECT_EQ(got, expected) << "step " << s;
    for (int32_t k = 0; k < 12; ++k)
      EXPECT_EQ(got[size_t(k)] >= 0, k < kept) << "step " << s << " entry " << k;
    seen.push_back(got);
    counts.push_back(kept);
  }
  EXPECT_NE(seen[0], seen[1]);
  // The grid groups are untouched by the extra group: same draws as fake_trainer.
  Handle plain(fakeTrainer(), 9);
  std::vector<int32_t> a(99), b(99);
  for (int32_t g : {0, 1})
    for (int64_t s : {int64_t(0), int64_t(5)}) {
      ASSERT_EQ(sbp_trainer_get_keep_indices(t, g, s, a.data(), 99, nullptr), SBP_OK);
      ASSERT_EQ(sbp_trainer_get_keep_indices(plain, g, s, b.data(), 99, nullptr), SBP_OK);
      EXPECT_EQ(a, b) << "group " << g << " step " << s;
    }
}

TEST(TrainerApi, FixedHeadIndicesIncludingNone) {
  std::string path = fakeTrainer("fake_trainer_heads");
  Handle t(path);
  auto last_keep = fakeSymbol<int (*)(int, int32_t *)>(path, "fake_trainer_last_keep");
  Batch batch;
  std::vector<int32_t> got(12);
  const int32_t heads[] = {1, 4, 11};
  ASSERT_EQ(sbp_trainer_set_keep_indices(t, 3, heads, 3), SBP_OK) << sbp_trainer_last_error(t);
  ASSERT_EQ(sbp_trainer_step(t, batch.images.data(), batch.labels.data(), nullptr), SBP_OK);
  last_keep(3, got.data());
  EXPECT_EQ(got, (std::vector<int32_t>{1, 4, 11, -1, -1, -1, -1, -1, -1, -1, -1, -1}));
  // No head kept: a non-NULL array with count 0 (NULL would mean "sample").
  ASSERT_EQ(sbp_trainer_set_keep_indices(t, 3, heads, 0), SBP_OK) << sbp_trainer_last_error(t);
  ASSERT_EQ(sbp_trainer_step(t, batch.images.data(), batch.labels.data(), nullptr), SBP_OK);
  last_keep(3, got.data());
  EXPECT_EQ(got, std::vector<int32_t>(12, -1));
  int32_t kept = -1;
  ASSERT_EQ(sbp_trainer_get_keep_indices(t, 3, 7, got.data(), 12, &kept), SBP_OK);
  EXPECT_EQ(kept, 0);
  // The C++ wrapper: an empty vector is "none", not "sample".
  sbp::Trainer wrapped(path);
  wrapped.setKeepIndices(3, {});
  ASSERT_EQ(sbp_trainer_get_keep_indices(wrapped.get(), 3, 0, got.data(), 12, &kept), SBP_OK);
  EXPECT_EQ(kept, 0);

  // Invalid head sets name the group and change nothing.
  const int32_t beyond[] = {0, 12}, descending[] = {5, 2}, repeated[] = {3, 3};
  std::vector<int32_t> all13(13);
  std::iota(all13.begin(), all13.end(), 0);
  for (auto [idx, count, needle] :
       {std::tuple{beyond, 2, "head index 12 (entry 1) is outside [0, 12)"},
        std::tuple{descending, 2, "ascending"}, std::tuple{repeated, 2, "ascending"},
        std::tuple{static_cast<const int32_t *>(all13.data()), 13, "13 head indices given"}}) {
    EXPECT_EQ(sbp_trainer_set_keep_indices(t, 3, idx, count), SBP_ERROR_INVALID_ARGUMENT);
    std::string message = sbp_trainer_last_error(t);
    EXPECT_TRUE(contains(message, "mask group 'h0'")) << message;
    EXPECT_TRUE(contains(message, needle)) << message;
  }
  ASSERT_EQ(sbp_trainer_get_keep_indices(t, 3, 0, got.data(), 12, &kept), SBP_OK);
  EXPECT_EQ(kept, 0); // still the last valid fixed set
  // Back to sampling.
  ASSERT_EQ(sbp_trainer_set_keep_indices(t, 3, nullptr, 0), SBP_OK);
  sbp_mask_group_info m{};
  m.struct_size = sizeof(m);
  sbp_trainer_get_mask_group_info(t, 3, &m);
  EXPECT_EQ(m.fixed, 0);
}

TEST(TrainerApi, UnknownMaskKindIsRefusedAtCreation) {
  sbp_trainer *t = nullptr;
  EXPECT_EQ(sbp_trainer_create(fakeTrainer("fake_trainer_unknown_mask").c_str(), nullptr, &t),
            SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(t, nullptr);
  std::string message = sbp_last_error();
  EXPECT_TRUE(contains(message, "mask group 'm1' has unknown kind 4")) << message;
  EXPECT_TRUE(contains(message, "fake_trainer_unknown_mask")) << message;
}
