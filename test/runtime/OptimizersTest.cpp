// OptimizersTest.cpp - SGD and AdamW against a few steps computed by hand from
// the PyTorch update formulas.
#include "Error.h"
#include "Optimizers.h"

#include <gtest/gtest.h>

#include <cmath>

using namespace sbp::rt;

namespace {

OptimizerConfig sgd(float lr, float momentum, int nesterov, float wd) {
  OptimizerConfig c;
  c.kind = SBP_OPT_SGD;
  c.lr = lr;
  c.momentum = momentum;
  c.nesterov = nesterov;
  c.weight_decay = wd;
  return c;
}

OptimizerConfig adamw(float lr, float b1, float b2, float eps, float wd) {
  OptimizerConfig c;
  c.kind = SBP_OPT_ADAMW;
  c.lr = lr;
  c.beta1 = b1;
  c.beta2 = b2;
  c.eps = eps;
  c.weight_decay = wd;
  return c;
}

// Two parameters: p[0] decays, p[1] does not.
const std::vector<ParamSpan> kSpans = {{0, 1, true}, {1, 1, false}};

} // namespace

TEST(Optimizers, PlainSgd) {
  float p[2] = {1.0f, -2.0f}, g[2] = {0.5f, 0.25f}, buf[2] = {0, 0};
  applyOptimizer(sgd(0.1f, 0.0f, 0, 0.0f), kSpans, p, g, {buf}, 1, 1);
  EXPECT_NEAR(p[0], 1.0 - 0.1 * 0.5, 1e-6);
  EXPECT_NEAR(p[1], -2.0 - 0.1 * 0.25, 1e-6);
}

TEST(Optimizers, SgdMomentumWithCoupledWeightDecayOnDecayingParamsOnly) {
  // d = g + wd p (p[0] only); buf = m buf + d; p -= lr buf.
  const double lr = 0.1, m = 0.9, wd = 0.01;
  float p[2] = {1.0f, 2.0f}, buf[2] = {0, 0};
  double e0 = 1.0, e1 = 2.0, b0 = 0.0, b1 = 0.0;
  const float grads[3][2] = {{0.5f, -1.0f}, {0.25f, 0.5f}, {-0.75f, 0.125f}};
  for (int t = 0; t < 3; ++t) {
    applyOptimizer(sgd(float(lr), float(m), 0, float(wd)), kSpans, p, grads[t], {buf}, t + 1, 1);
    b0 = m * b0 + (grads[t][0] + wd * e0);
    b1 = m * b1 + grads[t][1];
    e0 -= lr * b0;
    e1 -= lr * b1;
    EXPECT_NEAR(p[0], e0, 1e-6) << "step " << t + 1;
    EXPECT_NEAR(p[1], e1, 1e-6) << "step " << t + 1;
    EXPECT_NEAR(buf[0], b0, 1e-6);
  }
}

TEST(Optimizers, SgdNesterov) {
  // buf = m buf + g; p -= lr (g + m buf).
  const double lr = 0.05, m = 0.9;
  float p[2] = {0.0f, 1.0f}, buf[2] = {0, 0};
  double e = 1.0, b = 0.0;
  const float grads[3] = {1.0f, -0.5f, 2.0f};
  for (int t = 0; t < 3; ++t) {
    float g[2] = {0.0f, grads[t]};
    applyOptimizer(sgd(float(lr), float(m), 1, 0.0f), kSpans, p, g, {buf}, t + 1, 1);
    b = m * b + grads[t];
    e -= lr * (grads[t] + m * b);
    EXPECT_NEAR(p[1], e, 1e-6) << "step " << t + 1;
  }
}

TEST(Optimizers, AdamWMatchesTheClosedForm) {
  // p *= 1 - lr wd (decaying params); m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
  // p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
  const double lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.1;
  float p[2] = {0.5f, -0.3f}, m[2] = {0, 0}, v[2] = {0, 0};
  double e[2] = {0.5, -0.3}, em[2] = {0, 0}, ev[2] = {0, 0};
  const float grads[3][2] = {{0.1f, -0.2f}, {-0.05f, 0.4f}, {0.3f, 0.01f}};
  for (int t = 1; t <= 3; ++t) {
    applyOptimizer(adamw(float(lr), float(b1), float(b2), float(eps), float(wd)), kSpans, p,
                   grads[t - 1], {m, v}, t, 1);
    for (int k = 0; k < 2; ++k) {
      double g = grads[t - 1][k];
      if (k == 0)
        e[k] *= 1.0 - lr * wd;
      em[k] = b1 * em[k] + (1 - b1) * g;
      ev[k] = b2 * ev[k] + (1 - b2) * g * g;
      double denom = std::sqrt(ev[k]) / std::sqrt(1 - std::pow(b2, t)) + eps;
      e[k] -= lr / (1 - std::pow(b1, t)) * em[k] / denom;
      EXPECT_NEAR(p[k], e[k], 1e-6) << "step " << t << " param " << k;
      EXPECT_NEAR(m[k], em[k], 1e-6);
      EXPECT_NEAR(v[k], ev[k], 1e-6);
    }
  }
}

TEST(Optimizers, AdamWFirstStepMovesByLearningRate) {
  // With bias correction the first step is lr * g / (|g| + eps) = lr * sign(g).
  float p[2] = {1.0f, 1.0f}, m[2] = {0, 0}, v[2] = {0, 0}, g[2] = {3.0f, -0.001f};
  applyOptimizer(adamw(0.01f, 0.9f, 0.999f, 1e-8f, 0.0f), kSpans, p, g, {m, v}, 1, 1);
  EXPECT_NEAR(p[0], 0.99, 1e-6);
  EXPECT_NEAR(p[1], 1.01, 1e-5);
}

TEST(Optimizers, ParallelUpdateOfALargeBufferMatchesSerial) {
  const int64_t n = 200000;
  std::vector<float> p1(n), p2, g(n), m1(n, 0.0f), v1(n, 0.0f), m2, v2;
  for (int64_t k = 0; k < n; ++k) {
    p1[size_t(k)] = std::sin(float(k));
    g[size_t(k)] = std::cos(float(k) * 0.5f);
  }
  p2 = p1;
  m2 = m1;
  v2 = v1;
  std::vector<ParamSpan> spans = {{0, n, true}};
  OptimizerConfig c = adamw(0.001f, 0.9f, 0.999f, 1e-8f, 0.05f);
  applyOptimizer(c, spans, p1.data(), g.data(), {m1.data(), v1.data()}, 1, 1);
  applyOptimizer(c, spans, p2.data(), g.data(), {m2.data(), v2.data()}, 1, 2);
  EXPECT_EQ(p1, p2);
}

TEST(Optimizers, ValidationRejectsOutOfDomainValues) {
  auto status = [](OptimizerConfig c) {
    try {
      c.validate();
      return SBP_OK;
    } catch (const Error &e) {
      return e.status();
    }
  };
  EXPECT_EQ(status(adamw(0.001f, 0.9f, 0.999f, 1e-8f, 0.05f)), SBP_OK);
  EXPECT_EQ(status(adamw(0.001f, 1.0f, 0.999f, 1e-8f, 0.0f)), SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(status(adamw(0.001f, 0.9f, 0.999f, 0.0f, 0.0f)), SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(status(adamw(NAN, 0.9f, 0.999f, 1e-8f, 0.0f)), SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(status(sgd(0.1f, -0.5f, 0, 0.0f)), SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(status(sgd(0.1f, 0.0f, 1, 0.0f)), SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_EQ(adamw(0.1f, 0.9f, 0.9f, 1e-8f, 0).stateNames(),
            (std::vector<std::string>{"exp_avg", "exp_avg_sq"}));
  EXPECT_EQ(sgd(0.1f, 0.9f, 0, 0).stateNames(), (std::vector<std::string>{"momentum_buffer"}));
}
