//===- detail/drop_path.cuh - stochastic depth (drop_path) -*- CUDA -*-===//
//
// y[b] = x[b] * scale for samples b in the kept list, 0 for the others,
// shared by drop_path_f32.cu and drop_path_bf16.cu. blockIdx.y walks the
// samples, so each thread decides its sample's factor once (a binary search
// of the short, ascending, -1-padded list) and then streams its elements.
//
//===----------------------------------------------------------------------===//
#ifndef SBP_CUDA_DETAIL_DROP_PATH_CUH
#define SBP_CUDA_DETAIL_DROP_PATH_CUH

#include "detail/common.cuh"

namespace sbp {
namespace cuda {
namespace detail {

/// Whether b is among keep[0..kept): ascending indices, then -1 padding
/// (ordered after every index).
__device__ __forceinline__ bool sample_kept(const int32_t *keep, int64_t kept,
                                            int64_t b) {
  int64_t lo = 0, hi = kept;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    const int32_t v = keep[mid];
    if (v < 0 || v > b)
      hi = mid;
    else if (v < b)
      lo = mid + 1;
    else
      return true;
  }
  return false;
}

/// V elements per thread; nv = n / V vectors per sample.
template <int V, class TX, class TY>
__global__ void __launch_bounds__(kThreads)
    drop_path_kernel(const TX *x, const int32_t *keep, TY *y, int64_t batch,
                     int64_t kept, int64_t nv, float scale) {
  for (int64_t b = blockIdx.y; b < batch; b += gridDim.y) {
    const float f = sample_kept(keep, kept, b) ? scale : 0.0f;
    const int64_t base = b * nv;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < nv;
         i += int64_t(gridDim.x) * blockDim.x) {
      float v[V];
      ld_vec<V>(x, base + i, v);
#pragma unroll
      for (int k = 0; k < V; ++k)
        v[k] *= f;
      st_vec<V>(y, base + i, v);
    }
  }
}

template <class TX, class TY>
inline void drop_path_impl(const Context &ctx, const TX *x,
                           const int32_t *keep, TY *y, int64_t batch,
                           int64_t kept, int64_t n, float scale) {
  if (batch < 0 || kept < 0 || n < 0) {
    fail_arg("drop_path", "negative size");
    return;
  }
  if (batch == 0 || n == 0)
    return;
  constexpr bool kWide = kIsBf16<TX> || kIsBf16<TY>;
  const int v = row_vector_width<kWide>(n, x, y);
  with_width<kWide>(v, [&](auto wc) {
    constexpr int kV = decltype(wc)::value;
    const int64_t nv = n / kV;
    const unsigned gy = unsigned(batch < 65535 ? batch : 65535);
    // About grid_for's total over all samples, at least one block each.
    int64_t gx = int64_t(grid_for(ctx, batch * nv)) / gy;
    const int64_t need = ceil_div(nv, kThreads);
    gx = gx < 1 ? 1 : gx > need ? need : gx;
    drop_path_kernel<kV><<<dim3(unsigned(gx), gy), kThreads, 0, ctx.stream>>>(
        x, keep, y, batch, kept, nv, scale);
  });
  check_launch("drop_path");
}

} // namespace detail
} // namespace cuda
} // namespace sbp

#endif // SBP_CUDA_DETAIL_DROP_PATH_CUH
