// Checkpoint.h - a trainer's parameters, optimizer state and gradients as
// safetensors files, named as PyTorch / timm name them.
//
//   parameters:  <param name>                         F32, the parameter's shape
//   checkpoint:  + optimizer.<state>.<param name>     state: exp_avg, exp_avg_sq (AdamW)
//                                                     or momentum_buffer (SGD)
//   __metadata__: format (sbp-params | sbp-checkpoint | sbp-gradients), model,
//                 optimizer, step, seed, abi
#ifndef SBP_RUNTIME_CHECKPOINT_H
#define SBP_RUNTIME_CHECKPOINT_H

#include "Trainer.h"

#include <string>

namespace sbp::rt {

void saveParams(const Trainer &trainer, const std::string &path);
void loadParams(Trainer &trainer, const std::string &path);
void saveCheckpoint(const Trainer &trainer, const std::string &path);
void loadCheckpoint(Trainer &trainer, const std::string &path);
void saveGradients(const Trainer &trainer, const std::string &path);
void readBatchFile(const Trainer &trainer, const std::string &path, float *images,
                   int32_t *labels);

} // namespace sbp::rt

#endif // SBP_RUNTIME_CHECKPOINT_H
