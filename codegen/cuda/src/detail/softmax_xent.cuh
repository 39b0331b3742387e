//===- detail/softmax_xent.cuh - Softmax cross-entropy -*- CUDA -*-===//
//
// Internal to the CUDA kernel library (libsbp_cuda_kernels.a): kernel
// bodies and launch templates, included by the translation units in
// codegen/cuda/src, never by trainers (they include <sbp/cuda_kernels.h>).
//
//===----------------------------------------------------------------------===//
#ifndef SBP_CUDA_DETAIL_SOFTMAX_XENT_CUH
#define SBP_CUDA_DETAIL_SOFTMAX_XENT_CUH

#include "detail/layer_norm.cuh" // kLnRowsPerBlock: one row per warp, as LayerNorm

namespace sbp {
namespace cuda {
namespace detail {

//===--- Softmax cross-entropy --------------------------------------------===//
// One warp per row: first maximum, sum of shifted exponentials, the row's
// loss (double), gradient and hit; the block adds its warps in order and a
// one-block kernel adds the blocks in a fixed tree. Deterministic.

template <class TL, class TG>
__global__ void __launch_bounds__(kThreads)
    softmax_xent_rows_kernel(const TL *logits, const int32_t *labels,
                             TG *dlogits, int64_t B, int64_t C,
                             float grad_scale, double *block_loss,
                             long long *block_correct) {
  __shared__ double sh_loss[kLnRowsPerBlock];
  __shared__ long long sh_correct[kLnRowsPerBlock];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t nwarps = int64_t(gridDim.x) * kLnRowsPerBlock;
  double loss = 0.0;
  long long correct = 0;
  for (int64_t r = int64_t(blockIdx.x) * kLnRowsPerBlock + warp; r < B;
       r += nwarps) {
    const TL *z = logits + r * C;
    // First maximum among the non-NaN logits (ties: lowest index).
    float m = -INFINITY;
    int64_t best = C;
    for (int64_t j = lane; j < C; j += 32) {
      const float zj = to_f32(z[j]);
      if (zj > m) {
        m = zj;
        best = j;
      }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float om = __shfl_xor_sync(kFullMask, m, o);
      const long long ob = __shfl_xor_sync(kFullMask, (long long)best, o);
      if (om > m || (om == m && ob < best)) {
        m = om;
        best = ob;
      }
    }
    // The CPU scan starts at z[0]: a NaN there, or no logit above -inf,
    // leaves (0, z[0]).
    const float z0 = to_f32(z[0]);
    if (z0 != z0 || best == C) {
      best = 0;
      m = z0;
    }
    float s = 0.0f;
    for (int64_t j = lane; j < C; j += 32)
      s += expf(to_f32(z[j]) - m);
    s = warp_sum(s);
    const int64_t label = labels[r];
    const bool valid = label >= 0 && label < C;
    if (valid && lane == 0) {
      loss += double(logf(s)) - (double(to_f32(z[label])) - double(m));
      correct += best == label ? 1 : 0;
    }
    if (dlogits) {
      TG *g = dlogits + r * C;
      const float invS = 1.0f / s;
      for (int64_t j = lane; j < C; j += 32) {
        float v = 0.0f;
        if (valid) {
          v = expf(to_f32(z[j]) - m) * invS * grad_scale;
          if (j == label)
            v -= grad_scale;
        }
        g[j] = from_f32<TG>(v);
      }
    }
  }
  if (lane == 0) {
    sh_loss[warp] = loss;
    sh_correct[warp] = correct;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double l = 0.0;
    long long c = 0;
    for (int w = 0; w < kLnRowsPerBlock; ++w) {
      l += sh_loss[w];
      c += sh_correct[w];
    }
    block_loss[blockIdx.x] = l;
    block_correct[blockIdx.x] = c;
  }
}

template <int kUnused = 0>
__global__ void __launch_bounds__(kThreads)
    softmax_xent_finalize_kernel(const double *block_loss,
                                 const long long *block_correct, int blocks,
                                 int64_t B, float *loss, int64_t *correct) {
  __shared__ double sl[kThreads];
  __shared__ long long sc[kThreads];
  double l = 0.0;
  long long c = 0;
  for (int i = threadIdx.x; i < blocks; i += kThreads) {
    l += block_loss[i];
    c += block_correct[i];
  }
  sl[threadIdx.x] = l;
  sc[threadIdx.x] = c;
  __syncthreads();
  for (int h = kThreads / 2; h > 0; h >>= 1) {
    if (int(threadIdx.x) < h) {
      sl[threadIdx.x] += sl[threadIdx.x + h];
      sc[threadIdx.x] += sc[threadIdx.x + h];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    if (loss)
      *loss = B > 0 ? float(sl[0] / double(B)) : 0.0f;
    if (correct)
      *correct = int64_t(sc[0]);
  }
}

template <class L, class G>
inline void softmax_xent_impl(const Context &ctx, const L *logits,
                              const int32_t *labels, float *loss, G *dlogits,
                              int64_t B, int64_t C, float dloss_scale,
                              int64_t *correct) {
  if (B <= 0 || C <= 0) {
    if (loss || correct) {
      softmax_xent_finalize_kernel<><<<1, kThreads, 0, ctx.stream>>>(
          nullptr, nullptr, 0, 0, loss, correct);
      check_launch("softmax_xent");
    }
    return;
  }
  int64_t blocks = ceil_div(B, kLnRowsPerBlock);
  const int64_t cap = int64_t(sm_count(ctx)) * 4;
  if (blocks > cap)
    blocks = cap;
  ScratchCursor scratch(ctx);
  double *block_loss = scratch.take<double>(size_t(blocks));
  long long *block_correct = scratch.take<long long>(size_t(blocks));
  if (!block_loss || !block_correct) {
    fail_arg("softmax_xent", "scratch too small");
    return;
  }
  const float grad_scale = float(double(dloss_scale) / double(B));
  softmax_xent_rows_kernel<<<unsigned(blocks), kThreads, 0, ctx.stream>>>(
      logits, labels, dlogits, B, C, grad_scale, block_loss, block_correct);
  check_launch("softmax_xent");
  softmax_xent_finalize_kernel<><<<1, kThreads, 0, ctx.stream>>>(
      block_loss, block_correct, int(blocks), B, loss, correct);
  check_launch("softmax_xent");
}


} // namespace detail
} // namespace cuda
} // namespace sbp

#endif // SBP_CUDA_DETAIL_SOFTMAX_XENT_CUH
