//===- detail/patchify.cuh - patchify -*- CUDA -*-===//
//
// Internal to the CUDA kernel library (libsbp_cuda_kernels.a): kernel
// bodies and launch templates, included by the translation units in
// codegen/cuda/src, never by trainers (they include <sbp/cuda_kernels.h>).
//
//===----------------------------------------------------------------------===//
#ifndef SBP_CUDA_DETAIL_PATCHIFY_CUH
#define SBP_CUDA_DETAIL_PATCHIFY_CUH

#include "detail/pointwise.cuh"

namespace sbp {
namespace cuda {
namespace detail {

//===--- patchify ---------------------------------------------------------===//

/// One thread per kVec output elements (kVec divides p and W).
template <int kVec, class I, class TX, class TY>
__global__ void __launch_bounds__(kThreads)
    patchify_kernel(const TX *img, TY *tokens, I total, I C, I H, I W, I p,
                    I gh, I gw) {
  const I pv = p / kVec;
  const I stride = I(gridDim.x) * kThreads;
  for (I e = I(blockIdx.x) * kThreads + threadIdx.x; e < total; e += stride) {
    I r = e;
    const I px = r % pv;
    r /= pv;
    const I py = r % p;
    r /= p;
    const I c = r % C;
    r /= C;
    const I j = r % gw;
    r /= gw;
    const I i = r % gh;
    const I b = r / gh;
    mv_vec<kVec>(img + ((b * C + c) * H + i * p + py) * W + j * p + px * kVec,
                 I(0), tokens, e);
  }
}

template <class X, class Y>
inline void patchify_impl(const Context &ctx, const X *img, Y *tokens,
                          int64_t B, int64_t C, int64_t H, int64_t W,
                          int64_t p) {
  if (B <= 0 || C <= 0 || p <= 0 || H < p || W < p)
    return;
  if (H % p != 0 || W % p != 0) {
    fail_arg("patchify", "H and W must be multiples of p");
    return;
  }
  const int64_t gh = H / p, gw = W / p, total = B * gh * gw * C * p * p;
  constexpr bool kWide = kIsBf16<X> || kIsBf16<Y>;
  int w = 1;
  if (kWide && p % 8 == 0 && W % 8 == 0 && vec_aligned(img, 8) &&
      vec_aligned(tokens, 8))
    w = 8;
  else if (p % 4 == 0 && W % 4 == 0 && vec_aligned(img, 4) &&
           vec_aligned(tokens, 4))
    w = 4;
  const int64_t tv = total / w;
  const unsigned grid = grid_for(ctx, tv);
  with_width<kWide>(w, [&](auto wc) {
    constexpr int V = decltype(wc)::value;
    if (total < kMaxIndex32) {
      using I = uint32_t;
      patchify_kernel<V, I><<<grid, kThreads, 0, ctx.stream>>>(
          img, tokens, I(tv), I(C), I(H), I(W), I(p), I(gh), I(gw));
    } else {
      patchify_kernel<V, int64_t><<<grid, kThreads, 0, ctx.stream>>>(
          img, tokens, tv, C, H, W, p, gh, gw);
    }
  });
  check_launch("patchify");
}


} // namespace detail
} // namespace cuda
} // namespace sbp

#endif // SBP_CUDA_DETAIL_PATCHIFY_CUH
