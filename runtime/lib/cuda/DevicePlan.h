// DevicePlan.h - the host-side arithmetic of the CUDA backend, free of CUDA
// calls so that it is unit-tested on machines without a GPU: the layout of the
// one device allocation, the tables the kernels read, the per-step scalars.
#ifndef SBP_RUNTIME_CUDA_DEVICEPLAN_H
#define SBP_RUNTIME_CUDA_DEVICEPLAN_H

#include "DeviceTypes.h"
#include "Masks.h"
#include "Optimizers.h"

#include <cstddef>
#include <cstdint>
#include <vector>

namespace sbp::rt::cuda {

// Sub-allocation of one block: every region starts at a multiple of
// `alignment` bytes (kBufferAlignment, 256) from the block's start.
class DeviceLayout {
public:
  explicit DeviceLayout(size_t alignment = 256) : alignment_(alignment) {}
  // Reserves `bytes` (at least one byte, so every region has its own address)
  // and returns the region's offset.
  size_t add(size_t bytes);
  size_t total() const { return total_; }

private:
  size_t alignment_;
  size_t total_ = 0;
};

// The mask groups' table for the sampling kernel, without the device pointers
// (keep, order, dropped), which the caller fills in.
std::vector<DeviceMaskGroup> maskGroupTable(const MaskSampler &sampler);

// Elements per optimizer chunk: 16 per thread of a 256-thread block.
constexpr int32_t kOptimizerChunkElements = 4096;

// The parameter spans cut into chunks of at most `chunk_elements` elements.
std::vector<OptimizerChunk> optimizerChunks(const std::vector<ParamSpan> &spans,
                                            int32_t chunk_elements = kOptimizerChunkElements);

// The scalars of step `step` (0-based; its update is number step + 1), with
// AdamW's factors computed exactly as Optimizers.cpp computes them.
StepScalars stepScalars(const OptimizerConfig &config, uint64_t seed, int64_t step, bool update);

} // namespace sbp::rt::cuda

#endif // SBP_RUNTIME_CUDA_DEVICEPLAN_H
