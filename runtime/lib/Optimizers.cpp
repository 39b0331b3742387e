// Optimizers.cpp - the update rules, written to match torch.optim.SGD and
// torch.optim.AdamW (single-tensor, non-capturable paths) operation by operation.
#include "Optimizers.h"

#include "Error.h"

#include <cmath>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace sbp::rt {

OptimizerConfig OptimizerConfig::from(const sbp_optimizer_desc &desc) {
  OptimizerConfig config;
  config.kind = desc.kind;
  config.lr = desc.lr;
  config.weight_decay = desc.weight_decay;
  config.momentum = desc.momentum;
  config.nesterov = desc.nesterov;
  config.beta1 = desc.beta1;
  config.beta2 = desc.beta2;
  config.eps = desc.eps;
  return config;
}

void OptimizerConfig::validate() const {
  auto finite_nonneg = [](float v) { return std::isfinite(v) && v >= 0.0f; };
  if (kind != SBP_OPT_SGD && kind != SBP_OPT_ADAMW)
    fail(SBP_ERROR_INVALID_ARGUMENT, "unknown optimizer kind {}", kind);
  if (!finite_nonneg(lr))
    fail(SBP_ERROR_INVALID_ARGUMENT, "learning rate {} must be finite and >= 0", lr);
  if (!finite_nonneg(weight_decay))
    fail(SBP_ERROR_INVALID_ARGUMENT, "weight decay {} must be finite and >= 0", weight_decay);
  if (kind == SBP_OPT_SGD) {
    if (!finite_nonneg(momentum))
      fail(SBP_ERROR_INVALID_ARGUMENT, "momentum {} must be finite and >= 0", momentum);
    if (nesterov != 0 && nesterov != 1)
      fail(SBP_ERROR_INVALID_ARGUMENT, "nesterov must be 0 or 1, not {}", nesterov);
    if (nesterov && momentum <= 0.0f)
      fail(SBP_ERROR_INVALID_ARGUMENT, "Nesterov momentum requires momentum > 0");
    return;
  }
  if (!(beta1 >= 0.0f && beta1 < 1.0f) || !(beta2 >= 0.0f && beta2 < 1.0f))
    fail(SBP_ERROR_INVALID_ARGUMENT, "AdamW betas ({}, {}) must lie in [0, 1)", beta1, beta2);
  if (!(eps > 0.0f && std::isfinite(eps)))
    fail(SBP_ERROR_INVALID_ARGUMENT, "AdamW eps {} must be finite and > 0", eps);
}

std::vector<std::string> OptimizerConfig::stateNames() const {
  if (kind == SBP_OPT_ADAMW)
    return {"exp_avg", "exp_avg_sq"};
  return {"momentum_buffer"};
}

namespace {

// buf = momentum * buf + g, g = grad + wd * p (coupled); p -= lr * (nesterov ?
// g + momentum * buf : buf). A zero buffer makes the first step buf = g, as in
// PyTorch (dampening 0).
void sgdSpan(const OptimizerConfig &c, const ParamSpan &span, float *params, const float *grads,
             float *buf, int32_t threads) {
  const float wd = span.decay ? c.weight_decay : 0.0f;
  const float mom = c.momentum, lr = c.lr;
  const bool nesterov = c.nesterov != 0;
  float *p = params + span.offset;
  const float *g = grads + span.offset;
  float *b = buf + span.offset;
#pragma omp parallel for num_threads(threads) if (span.numel > 65536) schedule(static)
  for (int64_t k = 0; k < span.numel; ++k) {
    float d = g[k];
    if (wd != 0.0f)
      d += wd * p[k];
    if (mom != 0.0f) {
      b[k] = mom * b[k] + d;
      d = nesterov ? d + mom * b[k] : b[k];
    }
    p[k] -= lr * d;
  }
}

// p *= 1 - lr * wd; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
// p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps).
void adamwSpan(const OptimizerConfig &c, const ParamSpan &span, float *params, const float *grads,
               float *exp_avg, float *exp_avg_sq, int64_t step, int32_t threads) {
  const float decay = span.decay ? 1.0f - c.lr * c.weight_decay : 1.0f;
  const float b1 = c.beta1, b2 = c.beta2, eps = c.eps;
  const double bias1 = 1.0 - std::pow(double(b1), double(step));
  const double bias2 = 1.0 - std::pow(double(b2), double(step));
  const float step_size = float(double(c.lr) / bias1);
  const float bias2_sqrt = float(std::sqrt(bias2));
  float *p = params + span.offset;
  const float *g = grads + span.offset;
  float *m = exp_avg + span.offset;
  float *v = exp_avg_sq + span.offset;
#pragma omp parallel for num_threads(threads) if (span.numel > 65536) schedule(static)
  for (int64_t k = 0; k < span.numel; ++k) {
    p[k] *= decay;
    m[k] += (g[k] - m[k]) * (1.0f - b1);
    v[k] = v[k] * b2 + (1.0f - b2) * g[k] * g[k];
    float denom = std::sqrt(v[k]) / bias2_sqrt + eps;
    p[k] -= step_size * (m[k] / denom);
  }
}

} // namespace

void applyOptimizer(const OptimizerConfig &config, const std::vector<ParamSpan> &spans,
                    float *params, const float *grads, const std::vector<float *> &state,
                    int64_t step, int32_t num_threads) {
  if (state.size() != config.stateNames().size())
    fail(SBP_ERROR_INTERNAL, "optimizer {} needs {} state buffers, got {}", config.name(),
         config.stateNames().size(), state.size());
  int32_t threads = num_threads > 0 ? num_threads : 1;
#ifdef _OPENMP
  if (num_threads <= 0)
    threads = omp_get_max_threads();
#endif
  for (const ParamSpan &span : spans) {
    if (config.kind == SBP_OPT_ADAMW)
      adamwSpan(config, span, params, grads, state[0], state[1], step, threads);
    else
      sgdSpan(config, span, params, grads, state[0], threads);
  }
}

} // namespace sbp::rt
