// DevicePlan.cpp - layout, kernel tables and step scalars of the CUDA backend.
#include "DevicePlan.h"

#include "Error.h"
#include "sbp/mask_rules.h"

#include <algorithm>
#include <cmath>

namespace sbp::rt::cuda {

size_t DeviceLayout::add(size_t bytes) {
  size_t offset = (total_ + alignment_ - 1) / alignment_ * alignment_;
  size_t size = std::max<size_t>(bytes, 1);
  if (offset < total_ || offset + size < offset)
    fail(SBP_ERROR_INTERNAL, "device memory layout overflows");
  total_ = offset + size;
  return offset;
}

std::vector<DeviceMaskGroup> maskGroupTable(const MaskSampler &sampler) {
  std::vector<DeviceMaskGroup> table;
  for (int32_t g = 0; g < sampler.numGroups(); ++g) {
    const MaskSpec &spec = sampler.spec(g);
    DeviceMaskGroup d;
    d.kind = spec.kind;
    d.grid_h = spec.grid_h;
    d.grid_w = spec.grid_w;
    d.prefix_tokens = spec.prefix_tokens;
    d.capacity = spec.capacity;
    d.cell = spec.cell;
    d.stride = sbp_grid_stride(spec.keep_ratio);
    d.keep_matching = sbp_grid_keeps_matching(spec.keep_ratio);
    d.drop = sbp_random_drop_count(spec.keep_ratio, spec.drawnSpec().gridSize());
    d.head_threshold = sbp_heads_keep_threshold(spec.keep_ratio);
    d.draw = sampler.drawOf(g);
    table.push_back(d);
  }
  return table;
}

std::vector<OptimizerChunk> optimizerChunks(const std::vector<ParamSpan> &spans,
                                            int32_t chunk_elements) {
  if (chunk_elements < 1)
    fail(SBP_ERROR_INTERNAL, "optimizer chunks of {} elements", chunk_elements);
  std::vector<OptimizerChunk> chunks;
  for (const ParamSpan &span : spans)
    for (int64_t done = 0; done < span.numel; done += chunk_elements) {
      OptimizerChunk c;
      c.offset = span.offset + done;
      c.numel = int32_t(std::min<int64_t>(chunk_elements, span.numel - done));
      c.decay = span.decay ? 1 : 0;
      chunks.push_back(c);
    }
  return chunks;
}

StepScalars stepScalars(const OptimizerConfig &c, uint64_t seed, int64_t step, bool update) {
  StepScalars s;
  s.seed = seed;
  s.step = step;
  s.update = update ? 1 : 0;
  s.nesterov = c.nesterov;
  s.lr = c.lr;
  s.weight_decay = c.weight_decay;
  s.momentum = c.momentum;
  s.beta1 = c.beta1;
  s.beta2 = c.beta2;
  s.eps = c.eps;
  // As adamwSpan in Optimizers.cpp, for update number t = step + 1 (in double:
  // an evaluation or gradient-only call at step INT64_MAX must not overflow).
  const double t = double(step) + 1.0;
  const double bias1 = 1.0 - std::pow(double(c.beta1), t);
  const double bias2 = 1.0 - std::pow(double(c.beta2), t);
  s.adam_step_size = float(double(c.lr) / bias1);
  s.adam_bias2_sqrt = float(std::sqrt(bias2));
  s.adam_decay = 1.0f - c.lr * c.weight_decay;
  return s;
}

} // namespace sbp::rt::cuda
