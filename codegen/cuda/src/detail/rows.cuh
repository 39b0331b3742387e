//===- detail/rows.cuh - SBP row gather / scatter -*- CUDA -*-===//
//
// Internal to the CUDA kernel library (libsbp_cuda_kernels.a): kernel
// bodies and launch templates, included by the translation units in
// codegen/cuda/src, never by trainers (they include <sbp/cuda_kernels.h>).
//
//===----------------------------------------------------------------------===//
#ifndef SBP_CUDA_DETAIL_ROWS_CUH
#define SBP_CUDA_DETAIL_ROWS_CUH

#include "detail/pointwise.cuh"

namespace sbp {
namespace cuda {
namespace detail {

//===--- SBP rows ---------------------------------------------------------===//
// A keep map inv[t] = the last k with idx[k] == t (-1: dropped token) turns
// every scatter into a gather over output rows: each output element is
// written once, by one thread, with no atomics. Each block builds the map in
// shared memory (T ints) from idx; for T > kMaxSmemTokens one block builds
// it in scratch first. inv[T] (global) / the return value flags repeated
// indices, which take a slower path that adds them in k order.

constexpr int kMaxSmemTokens = 12 * 1024; // 48 KiB of ints

__device__ inline bool build_keep_map(const int32_t *idx, int K, int T,
                                      int *inv) {
  for (int t = threadIdx.x; t < T; t += blockDim.x)
    inv[t] = -1;
  __syncthreads();
  int dup = 0;
  for (int k = threadIdx.x; k < K; k += blockDim.x) {
    const int t = idx[k];
    if (t >= 0 && t < T && atomicMax(&inv[t], k) != -1)
      dup = 1;
  }
  return __syncthreads_or(dup) != 0;
}

template <int kUnused = 0>
__global__ void __launch_bounds__(1024)
    build_keep_map_kernel(const int32_t *idx, int K, int T, int *map) {
  const bool dup = build_keep_map(idx, K, T, map);
  if (threadIdx.x == 0)
    map[T] = dup ? 1 : 0;
}

enum class RowOp { Scatter, Mask, ScatterAdd, ScatterAcc };
/// Scatter:    out[b,t] = xk[b, inv[t]] or 0            (src = xk)
/// Mask:       out[b,t] = inv[t] >= 0 ? x[b,t] : 0       (src = x)
/// ScatterAdd: out[b,t] = base[b,t] + sum_{idx[k]==t} xk[b,k]
/// ScatterAcc: over kept rows, out[b,idx[k]] += xk[b,k]
/// Sizes in units of kVec elements (Dv = D / kVec).
template <RowOp kOp, int kVec, class I, class TS, class TB, class TO>
__global__ void __launch_bounds__(kThreads)
    row_map_kernel(const TS *src, const TB *base, const int32_t *idx, TO *out,
                   I B, I T, I K, I Dv, const int *global_map) {
  extern __shared__ int smem_map[];
  const int *inv;
  bool dup;
  if (global_map) {
    inv = global_map;
    dup = global_map[T] != 0;
  } else {
    dup = build_keep_map(idx, int(K), int(T), smem_map);
    inv = smem_map;
  }
  const I stride = I(gridDim.x) * kThreads;
  const I first = I(blockIdx.x) * kThreads + threadIdx.x;
  if (kOp == RowOp::ScatterAcc) {
    const I total = B * K * Dv;
    for (I e = first; e < total; e += stride) {
      const I c = e % Dv, row = e / Dv, k = row % K, b = row / K;
      const int t = idx[k];
      if (t < 0 || I(t) >= T)
        continue;
      const I o = (b * T + I(t)) * Dv + c;
      float acc[kVec], x[kVec];
      if (!dup) {
        ld_vec<kVec>(out, o, acc);
        ld_vec<kVec>(src, e, x);
#pragma unroll
        for (int j = 0; j < kVec; ++j)
          acc[j] = acc[j] + x[j];
        st_vec<kVec>(out, o, acc);
      } else if (inv[t] == int(k)) { // the last occurrence adds them all
        ld_vec<kVec>(out, o, acc);
        for (I kk = 0; kk < K; ++kk)
          if (idx[kk] == t) {
            ld_vec<kVec>(src, (b * K + kk) * Dv + c, x);
#pragma unroll
            for (int j = 0; j < kVec; ++j)
              acc[j] = acc[j] + x[j];
          }
        st_vec<kVec>(out, o, acc);
      }
    }
  } else {
    const I total = B * T * Dv;
    for (I e = first; e < total; e += stride) {
      const I c = e % Dv, row = e / Dv, t = row % T, b = row / T;
      const int k = inv[t];
      if constexpr (kOp == RowOp::Scatter || kOp == RowOp::Mask) {
        if (k >= 0)
          mv_vec<kVec>(src, kOp == RowOp::Scatter ? (b * K + I(k)) * Dv + c : e,
                       out, e);
        else
          zero_vec<kVec>(out, e);
      } else { // ScatterAdd
        float val[kVec], x[kVec];
        ld_vec<kVec>(base, e, val);
        if (k >= 0) {
          if (!dup) {
            ld_vec<kVec>(src, (b * K + I(k)) * Dv + c, x);
#pragma unroll
            for (int j = 0; j < kVec; ++j)
              val[j] = val[j] + x[j];
          } else {
            for (I kk = 0; kk < K; ++kk)
              if (idx[kk] == int(t)) {
                ld_vec<kVec>(src, (b * K + kk) * Dv + c, x);
#pragma unroll
                for (int j = 0; j < kVec; ++j)
                  val[j] = val[j] + x[j];
              }
          }
        }
        st_vec<kVec>(out, e, val);
      }
    }
  }
}

template <RowOp kOp, class TS, class TB, class TO>
inline void launch_row_map(const Context &ctx, const char *name, const TS *src,
                           const TB *base, const int32_t *idx, TO *out,
                           int64_t B, int64_t T, int64_t K, int64_t D) {
  if (B <= 0 || T <= 0 || D <= 0)
    return;
  if (K < 0)
    K = 0;
  if (T >= (int64_t(1) << 31) || K >= (int64_t(1) << 31)) {
    fail_arg(name, "T or K does not fit in 32 bits");
    return;
  }
  constexpr bool kAdd = kOp == RowOp::ScatterAdd;
  constexpr bool kWide = kIsBf16<TS> || kIsBf16<TO> || (kAdd && kIsBf16<TB>);
  const int w = row_width<kWide>(
      D,
      {vec_aligned(src, 8), vec_aligned(out, 8), !kAdd || vec_aligned(base, 8)},
      {vec_aligned(src, 4), vec_aligned(out, 4),
       !kAdd || vec_aligned(base, 4)});
  const int64_t Dv = D / w;
  const int64_t rows = kOp == RowOp::ScatterAcc ? B * K : B * T;
  const int64_t span = B * (T > K ? T : K) * Dv; // largest offset touched
  const unsigned grid = grid_for(ctx, rows * Dv);
  int *global_map = nullptr;
  size_t smem = size_t(T) * sizeof(int);
  if (T > kMaxSmemTokens) {
    global_map = ScratchCursor(ctx).take<int>(size_t(T) + 1);
    if (!global_map) {
      fail_arg(name, "scratch too small for the keep map (T ints)");
      return;
    }
    smem = 0;
    build_keep_map_kernel<>
        <<<1, 1024, 0, ctx.stream>>>(idx, int(K), int(T), global_map);
    check_launch(name);
  }
  if (rows == 0)
    return;
  with_width<kWide>(w, [&](auto wc) {
    constexpr int W = decltype(wc)::value;
    if (span < kMaxIndex32) {
      using I = uint32_t;
      row_map_kernel<kOp, W, I><<<grid, kThreads, smem, ctx.stream>>>(
          src, base, idx, out, I(B), I(T), I(K), I(Dv), global_map);
    } else {
      row_map_kernel<kOp, W, int64_t><<<grid, kThreads, smem, ctx.stream>>>(
          src, base, idx, out, B, T, K, Dv, global_map);
    }
  });
  check_launch(name);
}

/// out[b,k] = x[b, idx[k]] or 0, in units of kVec elements.
template <int kVec, class I, class TX, class TY>
__global__ void __launch_bounds__(kThreads)
    gather_rows_kernel(const TX *x, const int32_t *idx, TY *out, I B, I T, I K,
                       I Dv) {
  const I total = B * K * Dv;
  const I stride = I(gridDim.x) * kThreads;
  for (I e = I(blockIdx.x) * kThreads + threadIdx.x; e < total; e += stride) {
    const I c = e % Dv, row = e / Dv, k = row % K, b = row / K;
    const int t = __ldg(idx + k);
    if (t >= 0 && I(t) < T)
      mv_vec<kVec>(x, (b * T + I(t)) * Dv + c, out, e);
    else
      zero_vec<kVec>(out, e);
  }
}

template <class X, class Y>
inline void gather_rows_impl(const Context &ctx, const X *x, const int32_t *idx,
                             Y *out, int64_t B, int64_t T, int64_t K,
                             int64_t D) {
  if (B <= 0 || K <= 0 || D <= 0)
    return;
  if (T < 0)
    T = 0;
  constexpr bool kWide = kIsBf16<X> || kIsBf16<Y>;
  const int w = row_width<kWide>(D, {vec_aligned(x, 8), vec_aligned(out, 8)},
                                 {vec_aligned(x, 4), vec_aligned(out, 4)});
  const int64_t Dv = D / w;
  const int64_t total = B * K * Dv;
  const unsigned grid = grid_for(ctx, total);
  with_width<kWide>(w, [&](auto wc) {
    constexpr int V = decltype(wc)::value;
    if (B * (T > K ? T : K) * Dv < kMaxIndex32) {
      using I = uint32_t;
      gather_rows_kernel<V, I><<<grid, kThreads, 0, ctx.stream>>>(
          x, idx, out, I(B), I(T), I(K), I(Dv));
    } else {
      gather_rows_kernel<V, int64_t>
          <<<grid, kThreads, 0, ctx.stream>>>(x, idx, out, B, T, K, Dv);
    }
  });
  check_launch("gather_rows");
}


} // namespace detail
} // namespace cuda
} // namespace sbp

#endif // SBP_CUDA_DETAIL_ROWS_CUH
