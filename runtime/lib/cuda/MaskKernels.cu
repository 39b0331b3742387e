// MaskKernels.cu - keep masks sampled on the device, equal to Masks.cpp's to
// the bit: the sequential draw (grid start, Fisher-Yates) runs in one thread
// through MaskDraw.h; the heads test (MaskDraw.h's headKeeps, one Philox word
// per head), the marking and the ascending compaction run in parallel. A
// derived group (cell > 1) draws on its coarse grid; the compaction walks the
// group's own grid and asks each position's drawn position.
#include "Kernels.h"
#include "MaskDraw.h"
#include "sbp/model_abi.h"

#include <cub/block/block_scan.cuh>

namespace sbp::rt::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
    sampleMasksKernel(const DeviceMaskGroup *groups, const StepScalars *scalars,
                      StepStatus *status) {
  using Scan = cub::BlockScan<int, kThreads>;
  __shared__ typename Scan::TempStorage scan_storage;
  __shared__ int32_t start;

  const DeviceMaskGroup g = groups[blockIdx.x];
  if (g.fixed)
    return;
  const uint64_t seed = scalars->seed;
  const int64_t step = scalars->step;
  const int32_t n = g.grid_h * g.grid_w;
  const int32_t drawn_w = g.grid_w / g.cell, drawn_n = (g.grid_h / g.cell) * drawn_w;
  const bool random = g.kind == SBP_MASK_RANDOM;
  // Samples are drawn as heads are; the host validated the kind.
  const bool heads = g.kind == SBP_MASK_HEADS || g.kind == SBP_MASK_SAMPLES;

  if (random) {
    for (int32_t q = threadIdx.x; q < drawn_n; q += kThreads) {
      g.order[q] = q;
      g.dropped[q] = 0;
    }
    __syncthreads();
    if (threadIdx.x == 0)
      randomDropOrder(g.order, drawn_n, g.drop, seed, step, g.draw);
    __syncthreads();
    for (int32_t k = threadIdx.x; k < g.drop; k += kThreads)
      g.dropped[g.order[k]] = 1;
  } else if (!heads && threadIdx.x == 0) {
    start = gridStart(g.stride, seed, step, g.draw);
  }
  __syncthreads();

  // Prefix tokens, then prefix + p for each kept position p in ascending order.
  for (int32_t t = threadIdx.x; t < g.prefix_tokens && t < g.capacity; t += kThreads)
    g.keep[t] = t;
  int32_t kept_before = 0;
  for (int32_t tile = 0; tile < n; tile += kThreads) {
    const int32_t p = tile + int32_t(threadIdx.x);
    int keeps = 0;
    if (p < n) {
      const int32_t q = drawnPosition(p, g.grid_w, g.cell); // heads: cell 1, q = p
      keeps = random  ? !g.dropped[q]
              : heads ? headKeeps(q, g.head_threshold, seed, step, g.draw)
                      : gridKeeps(q, drawn_w, g.stride, g.keep_matching, start);
    }
    int rank = 0, tile_total = 0;
    Scan(scan_storage).ExclusiveSum(keeps, rank, tile_total);
    const int32_t slot = g.prefix_tokens + kept_before + rank;
    if (keeps && slot < g.capacity)
      g.keep[slot] = g.prefix_tokens + p;
    kept_before += tile_total;
    __syncthreads(); // scan_storage is reused by the next tile
  }
  const int32_t tokens = g.prefix_tokens + kept_before;
  for (int32_t s = tokens + int32_t(threadIdx.x); s < g.capacity; s += kThreads)
    g.keep[s] = -1;
  if (threadIdx.x == 0 && tokens > g.capacity && status) {
    status->mask_group = int32_t(blockIdx.x);
    status->mask_tokens = tokens;
  }
}

} // namespace

cudaError_t launchSampleMasks(const DeviceMaskGroup *groups, int32_t num_groups,
                              const StepScalars *scalars, StepStatus *status, cudaStream_t stream) {
  if (num_groups <= 0)
    return cudaSuccess;
  sampleMasksKernel<<<num_groups, kThreads, 0, stream>>>(groups, scalars, status);
  return cudaGetLastError();
}

} // namespace sbp::rt::cuda
