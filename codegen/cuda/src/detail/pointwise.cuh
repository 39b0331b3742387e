//===- detail/pointwise.cuh - Pointwise and broadcast kernels (add, bias_add, gelu, relu, fill, copy, cast) -*- CUDA -*-===//
//
// Internal to the CUDA kernel library (libsbp_cuda_kernels.a): kernel
// bodies and launch templates, included by the translation units in
// codegen/cuda/src, never by trainers (they include <sbp/cuda_kernels.h>).
//
//===----------------------------------------------------------------------===//
#ifndef SBP_CUDA_DETAIL_POINTWISE_CUH
#define SBP_CUDA_DETAIL_POINTWISE_CUH

#include "detail/common.cuh"
#include "sbp/fused_support.cuh"

namespace sbp {
namespace cuda {
namespace detail {

//===--- Pointwise --------------------------------------------------------===//

struct AddOp {
  __device__ float operator()(float a, float b) const { return a + b; }
};
struct FillOp {
  float value;
  __device__ float operator()(float, float) const { return value; }
};
struct CopyOp { // cast: the conversion is in the loads and stores
  __device__ float operator()(float x, float) const { return x; }
};
struct ReluOp {
  __device__ float operator()(float x, float) const {
    return x > 0.0f ? x : 0.0f;
  }
};
struct ReluGradOp {
  __device__ float operator()(float x, float dy) const {
    return x > 0.0f ? dy : 0.0f;
  }
};
// GELU(x) = x Phi(x); normcdff keeps its relative accuracy far into the
// negative tail, where 0.5 (1 + erf(x / sqrt 2)) cancels: the float overloads.
struct GeluOp {
  __device__ float operator()(float x, float) const { return x * normcdff(x); }
};
struct GeluGradOp {
  __device__ float operator()(float x, float dy) const {
    const float pdf = 0.39894228040143267794f * expf(-0.5f * x * x);
    return dy * (normcdff(x) + x * pdf);
  }
};
// The bf16 overloads: PyTorch's formula (sbp::fused::gelu_erf), as the
// generated groups of bf16 results, so that a GELU recomputed in a group
// matches the library's forward bit for bit.
struct GeluErfOp {
  __device__ float operator()(float x, float) const { return sbp::fused::gelu_erf(x); }
};
struct GeluErfGradOp {
  __device__ float operator()(float x, float dy) const {
    return sbp::fused::gelu_erf_grad(x, dy);
  }
};

/// y[i] = op(a[i], b[i]) with kIn inputs (0: neither read, 1: a only), in
/// vectors of kVec elements and a scalar tail.
template <int kIn, int kVec, class Op, class I, class TA, class TB, class TY>
__global__ void __launch_bounds__(kThreads)
    pointwise_kernel(const TA *a, const TB *b, TY *y, I n, Op op) {
  const I nv = n / kVec;
  const I stride = I(gridDim.x) * kThreads;
  const I first = I(blockIdx.x) * kThreads + threadIdx.x;
  for (I i = first; i < nv; i += stride) {
    float x0[kVec], x1[kVec], r[kVec];
#pragma unroll
    for (int j = 0; j < kVec; ++j)
      x0[j] = x1[j] = 0.0f;
    if constexpr (kIn >= 1)
      ld_vec<kVec>(a, i, x0);
    if constexpr (kIn >= 2)
      ld_vec<kVec>(b, i, x1);
#pragma unroll
    for (int j = 0; j < kVec; ++j)
      r[j] = op(x0[j], x1[j]);
    st_vec<kVec>(y, i, r);
  }
  if constexpr (kVec > 1) // the < kVec leftover elements
    for (I i = nv * kVec + first; i < n; i += stride) {
      float x0 = 0.0f, x1 = 0.0f;
      if constexpr (kIn >= 1)
        x0 = to_f32(a[i]);
      if constexpr (kIn >= 2)
        x1 = to_f32(b[i]);
      y[i] = from_f32<TY>(op(x0, x1));
    }
}

/// Vectors of 4 (float only) or 8 (any bf16) elements when every pointer is
/// 16-byte aligned.
template <int kIn, class Op, class TA, class TB, class TY>
inline void launch_pointwise(const Context &ctx, const char *name, const TA *a,
                             const TB *b, TY *y, int64_t n, Op op) {
  if (n <= 0)
    return;
  constexpr bool kWide = kIsBf16<TA> || kIsBf16<TB> || kIsBf16<TY>;
  constexpr int kW = kWide ? 8 : 4;
  const bool vec = aligned16(y) && (kIn < 1 || aligned16(a)) &&
                   (kIn < 2 || aligned16(b)) && n >= kW;
  const unsigned grid = grid_for(ctx, vec ? n / kW : n);
  if (n < kMaxIndex32) {
    if (vec)
      pointwise_kernel<kIn, kW, Op, uint32_t>
          <<<grid, kThreads, 0, ctx.stream>>>(a, b, y, uint32_t(n), op);
    else
      pointwise_kernel<kIn, 1, Op, uint32_t>
          <<<grid, kThreads, 0, ctx.stream>>>(a, b, y, uint32_t(n), op);
  } else {
    if (vec)
      pointwise_kernel<kIn, kW, Op, int64_t>
          <<<grid, kThreads, 0, ctx.stream>>>(a, b, y, n, op);
    else
      pointwise_kernel<kIn, 1, Op, int64_t>
          <<<grid, kThreads, 0, ctx.stream>>>(a, b, y, n, op);
  }
  check_launch(name);
}

/// y[i] = x[i] + v[i % n] over `total` elements (bias_add, pos_add); in
/// units of kVec elements. v is float (a parameter).
template <int kVec, class I, class TX, class TY>
__global__ void __launch_bounds__(kThreads)
    broadcast_add_kernel(const TX *x, const float *v, TY *y, I total, I n) {
  const I stride = I(gridDim.x) * kThreads;
  for (I i = I(blockIdx.x) * kThreads + threadIdx.x; i < total; i += stride) {
    float a[kVec], c[kVec];
    ld_vec<kVec>(x, i, a);
    ld_vec<kVec>(v, i % n, c);
#pragma unroll
    for (int j = 0; j < kVec; ++j)
      a[j] = a[j] + c[j];
    st_vec<kVec>(y, i, a);
  }
}

/// The vector width of a row kernel: 8 (any bf16) or 4 when the row length
/// is a multiple and every pointer aligned for it, else 1.
template <bool kWide>
inline int row_width(int64_t n, std::initializer_list<bool> aligned8,
                     std::initializer_list<bool> aligned4) {
  auto all = [](std::initializer_list<bool> l) {
    for (bool b : l)
      if (!b)
        return false;
    return true;
  };
  if (kWide && n % 8 == 0 && all(aligned8))
    return 8;
  if (n % 4 == 0 && all(aligned4))
    return 4;
  return 1;
}

template <class TX, class TY>
inline void launch_broadcast_add(const Context &ctx, const char *name,
                                 const TX *x, const float *v, TY *y,
                                 int64_t rows, int64_t n) {
  if (rows <= 0 || n <= 0)
    return;
  constexpr bool kWide = kIsBf16<TX> || kIsBf16<TY>;
  const int64_t total = rows * n;
  const int w = row_width<kWide>(
      n, {vec_aligned(x, 8), vec_aligned(v, 8), vec_aligned(y, 8)},
      {vec_aligned(x, 4), vec_aligned(v, 4), vec_aligned(y, 4)});
  const int64_t tv = total / w, nv = n / w;
  const unsigned grid = grid_for(ctx, tv);
  with_width<kWide>(w, [&](auto wc) {
    constexpr int W = decltype(wc)::value;
    if (total < kMaxIndex32)
      broadcast_add_kernel<W, uint32_t><<<grid, kThreads, 0, ctx.stream>>>(
          x, v, y, uint32_t(tv), uint32_t(nv));
    else
      broadcast_add_kernel<W, int64_t>
          <<<grid, kThreads, 0, ctx.stream>>>(x, v, y, tv, nv);
  });
  check_launch(name);
}

/// dx[b,t,:] = dy[b,:] / T, in units of kVec elements (D % kVec == 0).
template <int kVec, class I, class TX, class TY>
__global__ void __launch_bounds__(kThreads)
    mean_tokens_grad_kernel(const TX *dy, TY *dx, I total, I TD, I D, float t) {
  const I stride = I(gridDim.x) * kThreads;
  for (I i = I(blockIdx.x) * kThreads + threadIdx.x; i < total; i += stride) {
    float g[kVec];
    ld_vec<kVec>(dy, (i / TD) * D + i % D, g);
#pragma unroll
    for (int j = 0; j < kVec; ++j)
      g[j] = g[j] / t;
    st_vec<kVec>(dx, i, g);
  }
}

template <class X, class Y>
inline void copy_impl(const Context &ctx, const X *x, Y *y, int64_t n) {
  if constexpr (std::is_same_v<X, Y>) {
    if (x == y || n <= 0)
      return;
    const cudaError_t e = cudaMemcpyAsync(y, x, size_t(n) * sizeof(X),
                                          cudaMemcpyDeviceToDevice, ctx.stream);
    if (e != cudaSuccess)
      fail(int(e), "copy", cudaGetErrorString(e));
  } else {
    launch_pointwise<1>(ctx, "copy", x, static_cast<const float *>(nullptr), y,
                        n, CopyOp{});
  }
}


} // namespace detail
} // namespace cuda
} // namespace sbp

#endif // SBP_CUDA_DETAIL_POINTWISE_CUH
