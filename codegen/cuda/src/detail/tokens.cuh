//===- detail/tokens.cuh - ViT class token and token pooling -*- CUDA -*-===//
//
// Internal to the CUDA kernel library (libsbp_cuda_kernels.a): kernel
// bodies and launch templates, included by the translation units in
// codegen/cuda/src, never by trainers (they include <sbp/cuda_kernels.h>).
//
//===----------------------------------------------------------------------===//
#ifndef SBP_CUDA_DETAIL_TOKENS_CUH
#define SBP_CUDA_DETAIL_TOKENS_CUH

#include "detail/reductions.cuh"

namespace sbp {
namespace cuda {
namespace detail {

//===--- ViT class token and token pooling --------------------------------===//

enum class TokenOp { ClsConcat, ClsGrad, Take, TakeGrad };

/// ClsConcat: dst [B, T+1] <- cls, src [B, T]; ClsGrad: dst [B, T] <- src
/// [B, T+1] minus row 0; Take: dst [B] <- src[b, index] (index == T: zero);
/// TakeGrad: dst [B, T] <- src [B] at t == index, else 0. Rows of Dv units
/// of kVec elements; `total` output units. cls is float (a parameter).
template <TokenOp kOp, int kVec, class I, class TS, class TD>
__global__ void __launch_bounds__(kThreads)
    token_rows_kernel(const TS *src, const float *cls, TD *dst, I total, I T,
                      I Dv, I index) {
  const I stride = I(gridDim.x) * kThreads;
  for (I e = I(blockIdx.x) * kThreads + threadIdx.x; e < total; e += stride) {
    const I c = e % Dv, row = e / Dv;
    if constexpr (kOp == TokenOp::ClsConcat) {
      const I t = row % (T + 1), b = row / (T + 1);
      if (t == 0)
        mv_vec<kVec>(cls, c, dst, e);
      else
        mv_vec<kVec>(src, (b * T + t - 1) * Dv + c, dst, e);
    } else if constexpr (kOp == TokenOp::ClsGrad) {
      const I t = row % T, b = row / T;
      mv_vec<kVec>(src, (b * (T + 1) + t + 1) * Dv + c, dst, e);
    } else if constexpr (kOp == TokenOp::Take) {
      if (index < T)
        mv_vec<kVec>(src, (row * T + index) * Dv + c, dst, e);
      else
        zero_vec<kVec>(dst, e);
    } else {
      if (row % T == index)
        mv_vec<kVec>(src, (row / T) * Dv + c, dst, e);
      else
        zero_vec<kVec>(dst, e);
    }
  }
}

template <TokenOp kOp, class TS, class TD>
inline void launch_token_rows(const Context &ctx, const char *name,
                              const TS *src, const float *cls, TD *dst,
                              int64_t B, int64_t T, int64_t D, int64_t index) {
  int64_t out_rows = 0;
  switch (kOp) {
  case TokenOp::ClsConcat:
    out_rows = B * (T + 1);
    break;
  case TokenOp::Take:
    out_rows = B;
    break;
  default:
    out_rows = B * T;
  }
  if (out_rows <= 0 || D <= 0)
    return;
  if (index < 0 || index > T)
    index = T; // out of range: padding
  constexpr bool kCls = kOp == TokenOp::ClsConcat;
  constexpr bool kWide = kIsBf16<TS> || kIsBf16<TD>;
  const int w = row_width<kWide>(
      D,
      {vec_aligned(src, 8), vec_aligned(dst, 8), !kCls || vec_aligned(cls, 8)},
      {vec_aligned(src, 4), vec_aligned(dst, 4), !kCls || vec_aligned(cls, 4)});
  const int64_t Dv = D / w, total = out_rows * Dv;
  const int64_t span = B * (T + 1) * Dv; // largest offset touched
  const unsigned grid = grid_for(ctx, total);
  with_width<kWide>(w, [&](auto wc) {
    constexpr int W = decltype(wc)::value;
    if (span < kMaxIndex32) {
      using I = uint32_t;
      token_rows_kernel<kOp, W, I><<<grid, kThreads, 0, ctx.stream>>>(
          src, cls, dst, I(total), I(T), I(Dv), I(index));
    } else {
      token_rows_kernel<kOp, W, int64_t><<<grid, kThreads, 0, ctx.stream>>>(
          src, cls, dst, total, T, Dv, index);
    }
  });
  check_launch(name);
}

template <class X, class Y>
inline void cls_concat_grad_impl(const Context &ctx, const X *dy, Y *dx,
                                 float *dcls, int64_t B, int64_t T, int64_t D) {
  if (T < 0)
    T = 0;
  launch_token_rows<TokenOp::ClsGrad>(ctx, "cls_concat_grad", dy, nullptr, dx,
                                      B, T, D, 0);
  // dcls: the class rows, (T+1)*D apart, summed over the batch.
  column_sum(ctx, "cls_concat_grad", dy, 1, B, D, dcls, 1.0, (T + 1) * D);
}


} // namespace detail
} // namespace cuda
} // namespace sbp

#endif // SBP_CUDA_DETAIL_TOKENS_CUH
