//===- fused_support.cuh - building blocks of generated fused kernels -*- CUDA -*-===//
//
// The kernels that sbpc generates for fusion groups (`sbpk.fused`, see
// compiler/Transforms/FuseKernels.cpp) are specialised on their sizes and
// written out in the trainer's .cu; what they share lives here: vector loads
// and stores that convert float32/bf16 to float registers, a warp sum, and
// the scalar functions of the fusible ops. Header-only and small, so that a
// trainer's build stays fast.
//
//===----------------------------------------------------------------------===//
#ifndef SBP_FUSED_SUPPORT_CUH
#define SBP_FUSED_SUPPORT_CUH

#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace sbp {
namespace fused {

//===--- conversions ------------------------------------------------------===//

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
template <class T> __device__ __forceinline__ T from_float(float x);
template <> __device__ __forceinline__ float from_float<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

//===--- V consecutive elements (p aligned to V elements) -----------------===//

template <int V> __device__ __forceinline__ void load(const float *__restrict__ p, float (&v)[V]) {
  if constexpr (V % 4 == 0) {
#pragma unroll
    for (int q = 0; q < V / 4; ++q) {
      const float4 f = __ldg(reinterpret_cast<const float4 *>(p) + q);
      v[4 * q] = f.x, v[4 * q + 1] = f.y, v[4 * q + 2] = f.z, v[4 * q + 3] = f.w;
    }
  } else {
#pragma unroll
    for (int q = 0; q < V; ++q)
      v[q] = __ldg(p + q);
  }
}

template <int V> __device__ __forceinline__ void load(const __nv_bfloat16 *__restrict__ p, float (&v)[V]) {
  if constexpr (V % 8 == 0) {
#pragma unroll
    for (int q = 0; q < V / 8; ++q) {
      const uint4 u = __ldg(reinterpret_cast<const uint4 *>(p) + q);
      const __nv_bfloat162 *h = reinterpret_cast<const __nv_bfloat162 *>(&u);
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float2 f = __bfloat1622float2(h[e]);
        v[8 * q + 2 * e] = f.x, v[8 * q + 2 * e + 1] = f.y;
      }
    }
  } else {
#pragma unroll
    for (int q = 0; q < V; ++q)
      v[q] = __bfloat162float(p[q]);
  }
}

template <int V> __device__ __forceinline__ void store(float *__restrict__ p, const float (&v)[V]) {
  if constexpr (V % 4 == 0) {
#pragma unroll
    for (int q = 0; q < V / 4; ++q)
      reinterpret_cast<float4 *>(p)[q] = make_float4(v[4 * q], v[4 * q + 1], v[4 * q + 2], v[4 * q + 3]);
  } else {
#pragma unroll
    for (int q = 0; q < V; ++q)
      p[q] = v[q];
  }
}

template <int V> __device__ __forceinline__ void store(__nv_bfloat16 *__restrict__ p, const float (&v)[V]) {
  if constexpr (V % 8 == 0) {
#pragma unroll
    for (int q = 0; q < V / 8; ++q) {
      uint4 u;
      __nv_bfloat162 *h = reinterpret_cast<__nv_bfloat162 *>(&u);
#pragma unroll
      for (int e = 0; e < 4; ++e)
        h[e] = __floats2bfloat162_rn(v[8 * q + 2 * e], v[8 * q + 2 * e + 1]);
      reinterpret_cast<uint4 *>(p)[q] = u;
    }
  } else {
#pragma unroll
    for (int q = 0; q < V; ++q)
      p[q] = __float2bfloat16_rn(v[q]);
  }
}

/// load<V>, or zeros where `when` is false (a kept row of a dropped token).
template <int V, class T>
__device__ __forceinline__ void load_if(bool when, const T *__restrict__ p, float (&v)[V]) {
  if (when) {
    load<V>(p, v);
  } else {
#pragma unroll
    for (int q = 0; q < V; ++q)
      v[q] = 0.0f;
  }
}

//===--- rows of kept tokens (gather_rows / scatter_add_rows in a group) --===//

/// The block's inverse of an index list, in shared memory: inv[t] = k where
/// idx[k] == t, -1 for dropped tokens. The runtime's lists are ascending and
/// unique, -1-padded at the end; returns the number of valid entries (the
/// kept rows past it are padding). Every thread of the block must call it.
__device__ __forceinline__ int keep_map(const int32_t *__restrict__ idx, int K, int T, int *inv) {
  __shared__ int valid;
  if (threadIdx.x == 0)
    valid = 0;
  for (int t = threadIdx.x; t < T; t += blockDim.x)
    inv[t] = -1;
  __syncthreads();
  int mine = 0;
  for (int k = threadIdx.x; k < K; k += blockDim.x) {
    const int t = idx[k];
    if (t >= 0 && t < T) {
      inv[t] = k;
      ++mine;
    }
  }
  if (mine)
    atomicAdd(&valid, mine); // integer: the same sum in any order
  __syncthreads();
  return valid;
}

//===--- one row of n elements held by a warp: column j = lane + 32 c -----===//

template <int C, class T>
__device__ __forceinline__ void load_row(const T *__restrict__ row, int lane, int n, float (&v)[C]) {
#pragma unroll
  for (int c = 0; c < C; ++c) {
    const int j = lane + 32 * c;
    v[c] = j < n ? to_float(row[j]) : 0.0f;
  }
}

template <int C, class T>
__device__ __forceinline__ void store_row(T *__restrict__ row, int lane, int n, const float (&v)[C]) {
#pragma unroll
  for (int c = 0; c < C; ++c) {
    const int j = lane + 32 * c;
    if (j < n)
      row[j] = from_float<T>(v[c]);
  }
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

//===--- column sums of rowwise and elementwise groups --------------------===//

/// Block `block` of the final column sums of a group: `partial` holds
/// `chunks` rows of `cols` = sums * n doubles (one row per block of the
/// group's kernel); 32 columns a block, 8 slices of the chunks added in order,
/// then the slices in order: deterministic. Column c goes to outs[c / n][c % n].
template <int S>
__device__ __forceinline__ void column_sums_block(const double *__restrict__ partial, int chunks, int cols, int n,
                                                  float *const (&outs)[S], int block) {
  __shared__ double sh[8][32];
  const int col = block * 32 + (threadIdx.x & 31), slice = threadIdx.x >> 5;
  double s = 0.0;
  if (col < cols)
    for (int p = slice; p < chunks; p += 8)
      s += partial[int64_t(p) * cols + col];
  sh[slice][threadIdx.x & 31] = s;
  __syncthreads();
  if (slice != 0 || col >= cols)
    return;
  double t = 0.0;
#pragma unroll
  for (int k = 0; k < 8; ++k)
    t += sh[k][threadIdx.x & 31];
  outs[col / n][col % n] = float(t);
}

/// One weight gradient of the deferred launch (a generated `__constant__`
/// table): its row-chunk partials at arena byte offset `partial`, written
/// at float offset `grad` of the gradient buffer; `count` elements.
struct RowChunkSum {
  int64_t partial, grad, count;
  int chunks;
};

/// out[i] = sum over s of partial[s * count + i], s = 0 .. chunks - 1 in
/// order: the row-chunk products of a weight-gradient GEMM
/// (sbp::cuda::gemm_row_chunks). The `blocks` blocks of one grid row stride
/// over the elements, four at a time where count and alignment allow it.
__device__ __forceinline__ void row_chunk_sums(const float *__restrict__ partial, int chunks, int64_t count,
                                               float *__restrict__ out, int block, int blocks) {
  const int64_t stride = int64_t(blocks) * blockDim.x;
  if (count % 4 == 0 && (reinterpret_cast<uintptr_t>(partial) | reinterpret_cast<uintptr_t>(out)) % 16 == 0) {
    const float4 *p4 = reinterpret_cast<const float4 *>(partial);
    float4 *o4 = reinterpret_cast<float4 *>(out);
    for (int64_t i = int64_t(block) * blockDim.x + threadIdx.x; i < count / 4; i += stride) {
      float4 t = p4[i];
      for (int s = 1; s < chunks; ++s) {
        const float4 v = p4[int64_t(s) * (count / 4) + i];
        t.x += v.x, t.y += v.y, t.z += v.z, t.w += v.w;
      }
      o4[i] = t;
    }
    return;
  }
  for (int64_t i = int64_t(block) * blockDim.x + threadIdx.x; i < count; i += stride) {
    float t = partial[i];
    for (int s = 1; s < chunks; ++s)
      t += partial[int64_t(s) * count + i];
    out[i] = t;
  }
}

//===--- the scalar functions of the fusible ops --------------------------===//

/// Exact (erf) GELU, as timm's nn.GELU: x Phi(x).
__device__ __forceinline__ float gelu(float x) { return x * normcdff(x); }
/// d/dx [x Phi(x)] dy = (Phi(x) + x phi(x)) dy.
__device__ __forceinline__ float gelu_grad(float x, float dy) {
  return dy * (normcdff(x) + x * 0.398942280401432678f * __expf(-0.5f * x * x));
}
/// GELU as PyTorch's CUDA kernel computes it, 0.5 x (1 + erf(x / sqrt 2)) in
/// float: the bf16 groups (autocast's float math, bf16 results). A third of
/// normcdff's instructions, which made the GELU kernels instruction-bound
/// (H100, 2026-12-07: 1.7 TB/s); in the far negative tail 1 + erf cancels,
/// an absolute error of ~1e-7 |x| on values below 1e-3 there.
__device__ __forceinline__ float gelu_erf(float x) {
  return 0.5f * x * (1.0f + erff(x * 0.707106781186547524f));
}
/// d/dx gelu_erf(x) dy = (0.5 (1 + erf(x / sqrt 2)) + x phi(x)) dy, as PyTorch.
__device__ __forceinline__ float gelu_erf_grad(float x, float dy) {
  const float cdf = 0.5f * (1.0f + erff(x * 0.707106781186547524f));
  return dy * (cdf + x * 0.398942280401432678f * __expf(-0.5f * x * x));
}
__device__ __forceinline__ float relu(float x) { return x > 0.0f ? x : 0.0f; }
__device__ __forceinline__ float relu_grad(float x, float dy) { return x > 0.0f ? dy : 0.0f; }

} // namespace fused
} // namespace sbp

#endif // SBP_FUSED_SUPPORT_CUH
