// DeviceTypes.h - plain structs shared by the CUDA backend's host code (.cpp)
// and its kernels (.cu). They live in the trainer's one device allocation; no
// CUDA syntax here, so host code and host-compiled tests include this freely.
#ifndef SBP_RUNTIME_CUDA_DEVICETYPES_H
#define SBP_RUNTIME_CUDA_DEVICETYPES_H

#include <cstdint>

namespace sbp::rt::cuda {

// One mask group as the sampling kernel sees it. The arithmetic that needs
// floating point (stride, drop count, heads threshold) is done on the host with
// sbp/mask_rules.h, so the device only does Philox and integer work.
struct DeviceMaskGroup {
  int32_t *keep = nullptr;    // `capacity` entries: the keep-index array train_step reads
  int32_t *order = nullptr;   // random groups: drawnSize() entries of scratch
  uint8_t *dropped = nullptr; // random groups: drawnSize() flags of scratch
  int32_t kind = 0;           // sbp_mask_kind
  int32_t grid_h = 1, grid_w = 1;
  int32_t prefix_tokens = 0;
  int32_t capacity = 1;
  int32_t cell = 1;            // drawn on grid_h/cell x grid_w/cell, each position a cell x cell block
  int32_t stride = 0;          // grid: sbp_grid_stride(keep_ratio)
  int32_t keep_matching = 1;   // grid: sbp_grid_keeps_matching(keep_ratio)
  int32_t drop = 0;            // random: sbp_random_drop_count(keep_ratio, drawnSize())
  uint32_t head_threshold = 0; // heads: sbp_heads_keep_threshold(keep_ratio)
  uint32_t draw = 0;           // MaskSampler::drawOf(group)
  int32_t fixed = 0;           // 1: sbp_trainer_set_keep_indices fixed `keep`; not sampled

  // Positions of the grid the mask is drawn on (host code; the kernel computes
  // it itself, this header has no CUDA syntax).
  int32_t drawnSize() const { return (grid_h / cell) * (grid_w / cell); }
};

// A piece of one parameter tensor: the fused optimizer kernel runs one block
// per chunk, so a tensor of any size spreads over the whole GPU.
struct OptimizerChunk {
  int64_t offset = 0; // in elements, into the parameter buffer
  int32_t numel = 0;
  int32_t decay = 0; // sbp_param_desc.weight_decay
};

// What changes from step to step, written by the host into pinned memory and
// copied to the device inside the step (and so inside the CUDA graph).
struct StepScalars {
  uint64_t seed = 0;
  int64_t step = 0;   // 0-based step whose masks are drawn; the update is number step + 1
  int32_t update = 0; // 0: gradients only (compute_gradients), no optimizer update
  int32_t nesterov = 0;
  float lr = 0.0f, weight_decay = 0.0f, momentum = 0.0f;
  float beta1 = 0.0f, beta2 = 0.0f, eps = 0.0f;
  // AdamW's per-step factors, computed on the host exactly as Optimizers.cpp does.
  float adam_step_size = 0.0f;  // lr / (1 - beta1^t)
  float adam_bias2_sqrt = 1.0f; // sqrt(1 - beta2^t)
  float adam_decay = 1.0f;      // 1 - lr * weight_decay (decaying tensors)
};

// What a step reports back: copied to pinned memory at the end of the step,
// the one thing the host waits for.
struct StepStatus {
  float loss = 0.0f;            // written by train_step / eval_step (NaN until then)
  int32_t bad_label_index = -1; // first label outside [0, num_classes), -1: none
  int32_t bad_label_value = 0;
  int32_t mask_group = -1; // a group whose draw exceeded its capacity, -1: none
  int32_t mask_tokens = 0;
  int32_t applied = 0; // 1: the optimizer updated the parameters
};

} // namespace sbp::rt::cuda

#endif // SBP_RUNTIME_CUDA_DEVICETYPES_H
