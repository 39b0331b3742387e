// MaskDraw.h - the random part of a mask draw, written once for the host and
// the device: Philox4x32-10 (the same as Philox.cpp), the grid start, the
// partial Fisher-Yates shuffle of a random mask and the per-head test of a
// heads mask. The kernel (MaskKernels.cu) adds the parallel part (marking,
// compaction); host-compiled unit tests check these functions against
// Philox.cpp and Masks.cpp on machines without a GPU.
#ifndef SBP_RUNTIME_CUDA_MASKDRAW_H
#define SBP_RUNTIME_CUDA_MASKDRAW_H

#include <cstdint>

#ifdef __CUDACC__
#define SBP_HD __host__ __device__ __forceinline__
#else
#define SBP_HD inline
#endif

namespace sbp::rt::cuda {

// Purpose::Mask of Philox.h: the mask streams' tag in the counter's top byte.
constexpr uint32_t kPhiloxPurposeMask = 2;

struct PhiloxDraws {
  uint32_t key[2];
  uint32_t counter[4];
  uint32_t block[4];
  int used;
};

// Ten rounds of Philox4x32 on (counter, key), as philox4x32_10 in Philox.cpp.
SBP_HD void philoxBlock(const uint32_t in[4], const uint32_t key_in[2], uint32_t out[4]) {
  uint32_t c0 = in[0], c1 = in[1], c2 = in[2], c3 = in[3];
  uint32_t k0 = key_in[0], k1 = key_in[1];
  for (int r = 0; r < 10; ++r) {
    if (r > 0) {
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    uint64_t p0 = uint64_t(0xD2511F53u) * c0;
    uint64_t p1 = uint64_t(0xCD9E8D57u) * c2;
    uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0);
    uint32_t hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

// PhiloxStream(seed, purpose, a, b) of Philox.h.
SBP_HD PhiloxDraws philoxStream(uint64_t seed, uint32_t purpose, uint64_t a, uint32_t b) {
  PhiloxDraws s;
  s.key[0] = uint32_t(seed);
  s.key[1] = uint32_t(seed >> 32);
  s.counter[0] = 0;
  s.counter[1] = uint32_t(a);
  s.counter[2] = uint32_t(a >> 32);
  s.counter[3] = (purpose << 24) | (b & 0xFFFFFFu);
  s.block[0] = s.block[1] = s.block[2] = s.block[3] = 0;
  s.used = 4;
  return s;
}

SBP_HD uint32_t philoxNext(PhiloxDraws &s) {
  if (s.used == 4) {
    philoxBlock(s.counter, s.key, s.block);
    ++s.counter[0];
    s.used = 0;
  }
  return s.block[s.used++];
}

// PhiloxStream::below: uniform in [0, n) by multiply-shift.
SBP_HD uint32_t philoxBelow(PhiloxDraws &s, uint32_t n) {
  return uint32_t((uint64_t(philoxNext(s)) * n) >> 32);
}

// The mask stream of (seed, step, draw), as sampleKeptPositions opens it.
SBP_HD PhiloxDraws maskStream(uint64_t seed, int64_t step, uint32_t draw) {
  return philoxStream(seed, kPhiloxPurposeMask, uint64_t(step), draw);
}

// Grid masks: the start drawn for the step (0 when nothing is dropped).
SBP_HD int32_t gridStart(int32_t stride, uint64_t seed, int64_t step, uint32_t draw) {
  if (stride <= 0)
    return 0;
  PhiloxDraws s = maskStream(seed, step, draw);
  return int32_t(philoxBelow(s, uint32_t(stride)));
}

// Whether grid position p is kept by a grid mask with this stride and start.
SBP_HD bool gridKeeps(int32_t p, int32_t grid_w, int32_t stride, int32_t keep_matching,
                      int32_t start) {
  if (stride <= 0)
    return true;
  int32_t i = p / grid_w, j = p % grid_w;
  bool matches = (i + j) % stride == start;
  return matches == (keep_matching != 0);
}

// The position of the drawn grid whose cell covers position p of a grid
// grid_w wide (derived groups, Masks.h): (i, j) -> (i / cell, j / cell).
SBP_HD int32_t drawnPosition(int32_t p, int32_t grid_w, int32_t cell) {
  if (cell == 1)
    return p;
  return (p / grid_w / cell) * (grid_w / cell) + (p % grid_w) / cell;
}

// Random masks: the partial Fisher-Yates shuffle of randomKeptPositions.
// `order` holds 0..n-1 on entry; afterwards its first `drop` entries are the
// dropped positions.
SBP_HD void randomDropOrder(int32_t *order, int32_t n, int32_t drop, uint64_t seed, int64_t step,
                            uint32_t draw) {
  PhiloxDraws s = maskStream(seed, step, draw);
  for (int32_t k = 0; k < drop; ++k) {
    int32_t j = k + int32_t(philoxBelow(s, uint32_t(n - k)));
    int32_t t = order[k];
    order[k] = order[j];
    order[j] = t;
  }
}

// Word k of the mask stream of (seed, step, draw) -- what the (k + 1)-th
// philoxNext of maskStream returns -- computed without drawing the words
// before it: block k / 4 (a fresh stream's counter[0] is 0, and
// PhiloxStream::nextU32 increments only that word), element k % 4.
SBP_HD uint32_t maskWordAt(uint64_t seed, int64_t step, uint32_t draw, uint32_t k) {
  PhiloxDraws s = maskStream(seed, step, draw);
  s.counter[0] += k / 4u;
  uint32_t block[4];
  philoxBlock(s.counter, s.key, block);
  return block[k % 4u];
}

// Heads masks: whether head h is kept. Masks.cpp keeps head h when the h-th
// uniform of the stream, (word >> 8) * 2^-24, is below the keep ratio r; this
// is the same test on the integer, against threshold = sbp_heads_keep_threshold(r)
// (sbp/mask_rules.h). A pure function of h, so each head gets its own thread.
SBP_HD bool headKeeps(int32_t h, uint32_t threshold, uint64_t seed, int64_t step, uint32_t draw) {
  return (maskWordAt(seed, step, draw, uint32_t(h)) >> 8) < threshold;
}

} // namespace sbp::rt::cuda

#endif // SBP_RUNTIME_CUDA_MASKDRAW_H
