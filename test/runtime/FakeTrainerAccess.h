// FakeTrainerAccess.h - reading the state of the hand-written test trainers
// (fake_trainer.c, fake_cuda_trainer.cu: softmax regression, weight [K, D] and
// bias [K]) through the C API; shared by the CPU and the CUDA API tests.
#ifndef SBP_TEST_FAKETRAINERACCESS_H
#define SBP_TEST_FAKETRAINERACCESS_H

#include "sbp/trainer.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

namespace sbp::test {

constexpr int kFakeFeatures = 784, kFakeClasses = 10; // D and K of the fake trainers

/// Weight then bias, as one vector.
inline std::vector<float> allParams(sbp_trainer *t) {
  std::vector<float> w(kFakeClasses * kFakeFeatures), b(kFakeClasses);
  EXPECT_EQ(sbp_trainer_read_param(t, 0, w.data(), int64_t(w.size())), SBP_OK) << sbp_last_error();
  EXPECT_EQ(sbp_trainer_read_param(t, 1, b.data(), int64_t(b.size())), SBP_OK) << sbp_last_error();
  w.insert(w.end(), b.begin(), b.end());
  return w;
}

/// Weight gradient then bias gradient, as one vector.
inline std::vector<float> allGradients(sbp_trainer *t) {
  std::vector<float> w(kFakeClasses * kFakeFeatures), b(kFakeClasses);
  EXPECT_EQ(sbp_trainer_read_gradient(t, 0, w.data(), int64_t(w.size())), SBP_OK);
  EXPECT_EQ(sbp_trainer_read_gradient(t, 1, b.data(), int64_t(b.size())), SBP_OK);
  w.insert(w.end(), b.begin(), b.end());
  return w;
}

inline int64_t stepOf(sbp_trainer *t) {
  sbp_trainer_info info{};
  info.struct_size = sizeof(info);
  EXPECT_EQ(sbp_trainer_get_info(t, &info), SBP_OK);
  return info.step;
}

} // namespace sbp::test

#endif
