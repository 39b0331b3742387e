// Optimizers.h - SGD (momentum, Nesterov) and AdamW with PyTorch semantics.
//
// The update runs over the whole parameter buffer, one parameter tensor at a
// time, because weight decay is per tensor (sbp_param_desc.weight_decay).
#ifndef SBP_RUNTIME_OPTIMIZERS_H
#define SBP_RUNTIME_OPTIMIZERS_H

#include "sbp/model_abi.h"

#include <cstdint>
#include <string>
#include <vector>

namespace sbp::rt {

struct OptimizerConfig {
  int32_t kind = SBP_OPT_SGD; // sbp_optimizer_kind
  float lr = 0.0f;
  float weight_decay = 0.0f;
  float momentum = 0.0f;
  int32_t nesterov = 0;
  float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;

  static OptimizerConfig from(const sbp_optimizer_desc &desc);
  // Throws SBP_ERROR_INVALID_ARGUMENT for a value outside its domain.
  void validate() const;
  // Optimizer state tensors per parameter, by their PyTorch names:
  // SGD {"momentum_buffer"}, AdamW {"exp_avg", "exp_avg_sq"}.
  std::vector<std::string> stateNames() const;
  const char *name() const { return kind == SBP_OPT_ADAMW ? "adamw" : "sgd"; }
};

// One contiguous span of the parameter buffer that shares a weight-decay flag.
struct ParamSpan {
  int64_t offset;
  int64_t numel;
  bool decay;
};

// state holds stateNames().size() buffers of the parameter buffer's layout.
// `step` is the 1-based number of this update (AdamW bias correction).
void applyOptimizer(const OptimizerConfig &config, const std::vector<ParamSpan> &spans,
                    float *params, const float *grads, const std::vector<float *> &state,
                    int64_t step, int32_t num_threads);

} // namespace sbp::rt

#endif // SBP_RUNTIME_OPTIMIZERS_H
