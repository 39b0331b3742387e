//===- detail/layer_norm.cuh - LayerNorm forward and backward -*- CUDA -*-===//
//
// Internal to the CUDA kernel library (libsbp_cuda_kernels.a): kernel
// bodies and launch templates, included by the translation units in
// codegen/cuda/src, never by trainers (they include <sbp/cuda_kernels.h>).
//
//===----------------------------------------------------------------------===//
#ifndef SBP_CUDA_DETAIL_LAYER_NORM_CUH
#define SBP_CUDA_DETAIL_LAYER_NORM_CUH

#include "detail/reductions.cuh"

namespace sbp {
namespace cuda {
namespace detail {

//===--- LayerNorm --------------------------------------------------------===//
// One warp per row. Fast path (n a multiple of the vector width kW, n <=
// 1024, 16-byte aligned; kW = 4 floats, or 8 elements when a tensor is
// bf16): the row lives in registers as kChunks vectors of kW per lane
// (kChunks * kW <= 32), read once. Statistics as on the CPU: the mean summed
// around the row's first element (rows like 300 +- 1 keep their digits),
// then the mean of squared deviations.

constexpr int kLnMaxChunks = 8;   // n <= 32 lanes * 4 floats * 8 = 1024
constexpr int kLnMaxPerLane = 32; // kChunks * kW: n <= 1024 at any width
constexpr int kLnRowsPerBlock = kThreads / 32;
constexpr int64_t kLnGradRowsPerWarp = 32; // float partial sums per warp

/// f(0) + ... + f(W-1), added in pairs: ((f0 + f1) + (f2 + f3)) + ...
template <int W, class F> __device__ __forceinline__ float pair_sum(F f) {
  static_assert(W == 4 || W == 8, "vector width");
  if constexpr (W == 4)
    return (f(0) + f(1)) + (f(2) + f(3));
  else
    return ((f(0) + f(1)) + (f(2) + f(3))) + ((f(4) + f(5)) + (f(6) + f(7)));
}

/// Calls f(std::integral_constant<int, C>{}) for the runtime c in [1, kMax].
template <int kMax, class F> inline void with_chunks(int c, F &&f) {
  if constexpr (kMax >= 1) {
    if (c == kMax)
      f(std::integral_constant<int, kMax>{});
    else
      with_chunks<kMax - 1>(c, f);
  }
}

template <int kChunks, int kW, class TX, class TY>
__global__ void __launch_bounds__(kThreads)
    layer_norm_warp_kernel(const TX *x, const float *gamma, const float *beta,
                           TY *y, int64_t rows, int n, float eps) {
  static_assert(kChunks * kW <= kLnMaxPerLane, "row too long for registers");
  const int lane = threadIdx.x & 31;
  const int nv = n / kW;
  const int64_t nwarps = int64_t(gridDim.x) * kLnRowsPerBlock;
  for (int64_t r = int64_t(blockIdx.x) * kLnRowsPerBlock + (threadIdx.x >> 5);
       r < rows; r += nwarps) {
    const TX *xr = x + r * n;
    float v[kChunks][kW];
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int j = c * 32 + lane;
      if (j < nv)
        ld_vec<kW>(xr, j, v[c]);
      else
#pragma unroll
        for (int i = 0; i < kW; ++i)
          v[c][i] = 0.0f;
    }
    const float pivot = __shfl_sync(kFullMask, v[0][0], 0);
    float s = 0.0f;
#pragma unroll
    for (int c = 0; c < kChunks; ++c)
      if (c * 32 + lane < nv)
        s += pair_sum<kW>([&](int i) { return v[c][i] - pivot; });
    const float mean = pivot + warp_sum(s) / float(n);
    float q = 0.0f;
#pragma unroll
    for (int c = 0; c < kChunks; ++c)
      if (c * 32 + lane < nv)
        q += pair_sum<kW>([&](int i) {
          const float d = v[c][i] - mean;
          return d * d;
        });
    const float rstd = 1.0f / sqrtf(warp_sum(q) / float(n) + eps);
    TY *yr = y + r * n;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int j = c * 32 + lane;
      if (j < nv) {
        float g[kW], b[kW], o[kW];
        ld_vec<kW>(gamma, j, g);
        ld_vec<kW>(beta, j, b);
#pragma unroll
        for (int i = 0; i < kW; ++i)
          o[i] = (v[c][i] - mean) * rstd * g[i] + b[i];
        st_vec<kW>(yr, j, o);
      }
    }
  }
}

/// Any n, any alignment: the same statistics from three strided passes over
/// the row (the later ones hit L1).
struct RowStats {
  float mean, rstd;
};
template <class TX>
__device__ __forceinline__ RowStats row_stats(const TX *xr, int64_t n,
                                              float eps, int lane) {
  const float pivot = to_f32(xr[0]);
  float s = 0.0f;
  for (int64_t j = lane; j < n; j += 32)
    s += to_f32(xr[j]) - pivot;
  const float mean = pivot + warp_sum(s) / float(n);
  float q = 0.0f;
  for (int64_t j = lane; j < n; j += 32) {
    const float d = to_f32(xr[j]) - mean;
    q += d * d;
  }
  return {mean, 1.0f / sqrtf(warp_sum(q) / float(n) + eps)};
}

template <class TX, class TY>
__global__ void __launch_bounds__(kThreads)
    layer_norm_generic_kernel(const TX *x, const float *gamma,
                              const float *beta, TY *y, int64_t rows, int64_t n,
                              float eps) {
  const int lane = threadIdx.x & 31;
  const int64_t nwarps = int64_t(gridDim.x) * kLnRowsPerBlock;
  for (int64_t r = int64_t(blockIdx.x) * kLnRowsPerBlock + (threadIdx.x >> 5);
       r < rows; r += nwarps) {
    const TX *xr = x + r * n;
    const RowStats st = row_stats(xr, n, eps, lane);
    for (int64_t j = lane; j < n; j += 32)
      y[r * n + j] = from_f32<TY>(
          (to_f32(xr[j]) - st.mean) * st.rstd * gamma[j] + beta[j]);
  }
}

/// Backward, fast path: dx per row, and this warp's share of dgamma/dbeta
/// in registers; the block adds its warps in order (shared memory, double)
/// and writes one partial row [2n] to scratch.
template <int kChunks, int kW, class TX, class TG, class TD>
__global__ void __launch_bounds__(kThreads)
    layer_norm_grad_warp_kernel(const TX *x, const float *gamma, const TG *dy,
                                TD *dx, int64_t rows, int n, float eps,
                                double *partial) {
  static_assert(kChunks * kW <= kLnMaxPerLane, "row too long for registers");
  __shared__ double sh[2 * kChunks * 32 * kW];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int nv = n / kW;
  const int64_t nwarps = int64_t(gridDim.x) * kLnRowsPerBlock;
  float ag[kChunks][kW], ab[kChunks][kW];
#pragma unroll
  for (int c = 0; c < kChunks; ++c)
#pragma unroll
    for (int i = 0; i < kW; ++i)
      ag[c][i] = ab[c][i] = 0.0f;
  const float invN = 1.0f / float(n);
  for (int64_t r = int64_t(blockIdx.x) * kLnRowsPerBlock + warp; r < rows;
       r += nwarps) {
    const TX *xr = x + r * n;
    const TG *dyr = dy + r * n;
    float v[kChunks][kW], d[kChunks][kW];
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int j = c * 32 + lane;
      if (j < nv) {
        ld_vec<kW>(xr, j, v[c]);
        ld_vec<kW>(dyr, j, d[c]);
      } else {
#pragma unroll
        for (int i = 0; i < kW; ++i)
          v[c][i] = d[c][i] = 0.0f;
      }
    }
    const float pivot = __shfl_sync(kFullMask, v[0][0], 0);
    float s = 0.0f;
#pragma unroll
    for (int c = 0; c < kChunks; ++c)
      if (c * 32 + lane < nv)
        s += pair_sum<kW>([&](int i) { return v[c][i] - pivot; });
    const float mean = pivot + warp_sum(s) / float(n);
    float q = 0.0f;
#pragma unroll
    for (int c = 0; c < kChunks; ++c)
      if (c * 32 + lane < nv)
        q += pair_sum<kW>([&](int i) {
          const float e = v[c][i] - mean;
          return e * e;
        });
    const float rstd = 1.0f / sqrtf(warp_sum(q) / float(n) + eps);
    // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * gamma.
    float sumG = 0.0f, sumGX = 0.0f;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int j = c * 32 + lane;
      if (j < nv) {
        float gm[kW], h[kW];
        ld_vec<kW>(gamma, j, gm);
#pragma unroll
        for (int i = 0; i < kW; ++i)
          h[i] = (v[c][i] - mean) * rstd;
#pragma unroll
        for (int i = 0; i < kW; ++i)
          ag[c][i] += d[c][i] * h[i];
#pragma unroll
        for (int i = 0; i < kW; ++i)
          ab[c][i] = ab[c][i] + d[c][i];
#pragma unroll
        for (int i = 0; i < kW; ++i) {
          // g rounded once (__fmul_rn: never fused into the subtraction
          // below), as on the CPU; see layer_norm_grad_dx_kernel.
          d[c][i] = __fmul_rn(d[c][i], gm[i]); // now g
        }
        sumG += pair_sum<kW>([&](int i) { return d[c][i]; });
        sumGX += pair_sum<kW>([&](int i) { return d[c][i] * h[i]; });
      }
    }
    const float meanG = warp_sum(sumG) * invN;
    const float meanGX = warp_sum(sumGX) * invN;
    TD *dxr = dx + r * n;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int j = c * 32 + lane;
      if (j < nv) {
        float o[kW];
#pragma unroll
        for (int i = 0; i < kW; ++i) {
          const float h = (v[c][i] - mean) * rstd;
          o[i] = rstd * (d[c][i] - meanG - h * meanGX);
        }
        st_vec<kW>(dxr, j, o);
      }
    }
  }
  // Block partial: warps add their registers in warp order.
  for (int j = threadIdx.x; j < 2 * n; j += kThreads)
    sh[j] = 0.0;
  __syncthreads();
  for (int w = 0; w < kLnRowsPerBlock; ++w) {
    if (warp == w) {
#pragma unroll
      for (int c = 0; c < kChunks; ++c) {
        const int j = c * 32 + lane;
        if (j < nv) {
          double *sg = sh + kW * j, *sb = sh + n + kW * j;
#pragma unroll
          for (int i = 0; i < kW; ++i) {
            sg[i] += double(ag[c][i]);
            sb[i] += double(ab[c][i]);
          }
        }
      }
    }
    __syncthreads();
  }
  double *out = partial + int64_t(blockIdx.x) * 2 * n;
  for (int j = threadIdx.x; j < 2 * n; j += kThreads)
    out[j] = sh[j];
}

/// Backward, any n: dx per row (warp per row), and the row statistics to
/// scratch for the column pass below.
template <class TX, class TG, class TD>
__global__ void __launch_bounds__(kThreads)
    layer_norm_grad_dx_kernel(const TX *x, const float *gamma, const TG *dy,
                              TD *dx, int64_t rows, int64_t n, float eps,
                              float2 *stats) {
  const int lane = threadIdx.x & 31;
  const int64_t nwarps = int64_t(gridDim.x) * kLnRowsPerBlock;
  const float invN = 1.0f / float(n);
  for (int64_t r = int64_t(blockIdx.x) * kLnRowsPerBlock + (threadIdx.x >> 5);
       r < rows; r += nwarps) {
    const TX *xr = x + r * n;
    const TG *dyr = dy + r * n;
    const RowStats st = row_stats(xr, n, eps, lane);
    // g = dy * gamma is rounded once with __fmul_rn, which the compiler may
    // not contract: a plain `dy * gamma - meanG` becomes fma(dy, gamma,
    // -meanG), subtracting the rounded mean from the unrounded product. For
    // n == 1 (mean == x exactly, xhat == 0, meanG == g) the CPU's dx is
    // exactly 0, but the fused form left g's rounding error times rstd =
    // 1/sqrt(eps) (~1e-5). With g rounded as on the CPU the terms cancel
    // exactly, and in general dx follows the CPU's expression.
    float sumG = 0.0f, sumGX = 0.0f;
    for (int64_t j = lane; j < n; j += 32) {
      const float g = __fmul_rn(to_f32(dyr[j]), gamma[j]);
      sumG += g;
      sumGX += g * ((to_f32(xr[j]) - st.mean) * st.rstd);
    }
    const float meanG = warp_sum(sumG) * invN;
    const float meanGX = warp_sum(sumGX) * invN;
    for (int64_t j = lane; j < n; j += 32) {
      const float xhat = (to_f32(xr[j]) - st.mean) * st.rstd;
      const float g = __fmul_rn(to_f32(dyr[j]), gamma[j]);
      dx[r * n + j] = from_f32<TD>(st.rstd * (g - meanG - xhat * meanGX));
    }
    if (lane == 0)
      stats[r] = make_float2(st.mean, st.rstd);
  }
}

/// dgamma/dbeta partials over a split of the rows: block (32 columns x 8
/// row lanes), lanes added in order; one partial row [2n] per split.
template <class TX, class TG>
__global__ void __launch_bounds__(kThreads)
    layer_norm_grad_cols_kernel(const TX *x, const TG *dy, const float2 *stats,
                                int64_t rows, int64_t n, int64_t rows_per_split,
                                double *partial) {
  __shared__ double shg[kThreads], shb[kThreads];
  const int cl = threadIdx.x & 31, lane = threadIdx.x >> 5;
  const int64_t col = int64_t(blockIdx.x) * 32 + cl;
  const int64_t r0 = int64_t(blockIdx.y) * rows_per_split;
  const int64_t r1 = r0 + rows_per_split < rows ? r0 + rows_per_split : rows;
  double ag = 0.0, ab = 0.0;
  if (col < n)
    for (int64_t r = r0 + lane; r < r1; r += kThreads / 32) {
      const float2 st = stats[r];
      const float g = to_f32(dy[r * n + col]);
      ag += double(g) * double((to_f32(x[r * n + col]) - st.x) * st.y);
      ab += double(g);
    }
  shg[threadIdx.x] = ag;
  shb[threadIdx.x] = ab;
  __syncthreads();
  if (lane == 0 && col < n) {
    double sg = 0.0, sb = 0.0;
    for (int l = 0; l < kThreads / 32; ++l) {
      sg += shg[l * 32 + cl];
      sb += shb[l * 32 + cl];
    }
    double *out = partial + int64_t(blockIdx.y) * 2 * n;
    out[col] = sg;
    out[n + col] = sb;
  }
}

/// dgamma[j] / dbeta[j] = sum over `parts` partial rows [2n], in order.
template <int kUnused = 0>
__global__ void __launch_bounds__(kThreads)
    layer_norm_grad_finalize_kernel(const double *partial, int parts, int64_t n,
                                    float *dgamma, float *dbeta) {
  const int64_t stride = int64_t(gridDim.x) * kThreads;
  for (int64_t j = int64_t(blockIdx.x) * kThreads + threadIdx.x; j < 2 * n;
       j += stride) {
    double s = 0.0;
    for (int p = 0; p < parts; ++p)
      s += partial[int64_t(p) * 2 * n + j];
    if (j < n)
      dgamma[j] = float(s);
    else
      dbeta[j - n] = float(s);
  }
}

template <class X, class Y>
inline void layer_norm_impl(const Context &ctx, const X *x, const float *gamma,
                            const float *beta, Y *y, int64_t rows, int64_t n,
                            float eps) {
  if (rows <= 0 || n <= 0)
    return;
  constexpr bool kWide = kIsBf16<X> || kIsBf16<Y>;
  const int w = row_width<kWide>(n,
                                 {vec_aligned(x, 8), vec_aligned(gamma, 8),
                                  vec_aligned(beta, 8), vec_aligned(y, 8)},
                                 {vec_aligned(x, 4), vec_aligned(gamma, 4),
                                  vec_aligned(beta, 4), vec_aligned(y, 4)});
  const int64_t chunks = ceil_div(n, int64_t(32) * w);
  const bool fast = w > 1 && chunks * w <= kLnMaxPerLane;
  const unsigned grid = grid_for(ctx, rows * 32);
  if (fast) {
    const int ni = int(n);
    with_width<kWide, false>(w, [&](auto wc) {
      constexpr int V = decltype(wc)::value;
      with_chunks<kLnMaxPerLane / V>(int(chunks), [&](auto cc) {
        layer_norm_warp_kernel<decltype(cc)::value, V>
            <<<grid, kThreads, 0, ctx.stream>>>(x, gamma, beta, y, rows, ni,
                                                eps);
      });
    });
  } else {
    layer_norm_generic_kernel<<<grid, kThreads, 0, ctx.stream>>>(
        x, gamma, beta, y, rows, n, eps);
  }
  check_launch("layer_norm");
}

template <class X, class G, class D>
inline void layer_norm_grad_impl(const Context &ctx, const X *x,
                                 const float *gamma, const G *dy, D *dx,
                                 float *dgamma, float *dbeta, int64_t rows,
                                 int64_t n, float eps) {
  if (n <= 0)
    return;
  if (rows <= 0) { // empty sums
    launch_pointwise<0>(ctx, "fill", static_cast<const float *>(nullptr),
                        static_cast<const float *>(nullptr), dgamma, n,
                        FillOp{0.0f});
    launch_pointwise<0>(ctx, "fill", static_cast<const float *>(nullptr),
                        static_cast<const float *>(nullptr), dbeta, n,
                        FillOp{0.0f});
    return;
  }
  constexpr bool kWide = kIsBf16<X> || kIsBf16<G> || kIsBf16<D>;
  const int w = row_width<kWide>(n,
                                 {vec_aligned(x, 8), vec_aligned(gamma, 8),
                                  vec_aligned(dy, 8), vec_aligned(dx, 8)},
                                 {vec_aligned(x, 4), vec_aligned(gamma, 4),
                                  vec_aligned(dy, 4), vec_aligned(dx, 4)});
  const int64_t chunks = ceil_div(n, int64_t(32) * w);
  const bool fast = w > 1 && chunks * w <= kLnMaxPerLane;
  ScratchCursor scratch(ctx);
  if (fast) {
    // At least two blocks per SM (the kernel is register-heavy), and enough
    // that a warp sums at most kLnGradRowsPerWarp rows in float before its
    // block adds them in double; fewer if the partial rows [blocks, 2n] do
    // not fit in scratch.
    int64_t blocks = ceil_div(rows, kLnRowsPerBlock * kLnGradRowsPerWarp);
    const int64_t fill_sms =
        std::min(ceil_div(rows, kLnRowsPerBlock), int64_t(sm_count(ctx)) * 2);
    blocks = std::max(blocks, fill_sms);
    const int64_t fit = int64_t(scratch.size) / (2 * n * 8);
    if (blocks > fit)
      blocks = fit;
    double *partial =
        blocks > 0 ? scratch.take<double>(size_t(blocks * 2 * n)) : nullptr;
    if (!partial) {
      fail_arg("layer_norm_grad", "scratch too small for dgamma/dbeta");
      return;
    }
    const int ni = int(n);
    const unsigned grid = unsigned(blocks);
    with_width<kWide, false>(w, [&](auto wc) {
      constexpr int V = decltype(wc)::value;
      with_chunks<kLnMaxPerLane / V>(int(chunks), [&](auto cc) {
        layer_norm_grad_warp_kernel<decltype(cc)::value, V>
            <<<grid, kThreads, 0, ctx.stream>>>(x, gamma, dy, dx, rows, ni, eps,
                                                partial);
      });
    });
    check_launch("layer_norm_grad");
    layer_norm_grad_finalize_kernel<>
        <<<grid_for(ctx, 2 * n), kThreads, 0, ctx.stream>>>(
            partial, int(blocks), n, dgamma, dbeta);
    check_launch("layer_norm_grad");
    return;
  }
  // Any n: dx and the row statistics, then a column pass for dgamma/dbeta.
  float2 *stats = scratch.take<float2>(size_t(rows));
  if (!stats) {
    fail_arg("layer_norm_grad", "scratch too small for the row statistics");
    return;
  }
  layer_norm_grad_dx_kernel<<<grid_for(ctx, rows * 32), kThreads, 0,
                              ctx.stream>>>(x, gamma, dy, dx, rows, n, eps,
                                            stats);
  check_launch("layer_norm_grad");
  const int64_t tiles = ceil_div(n, 32);
  int64_t splits = ceil_div(int64_t(sm_count(ctx)) * 8, tiles);
  const int64_t by_rows = ceil_div(rows, 64);
  if (splits > by_rows)
    splits = by_rows;
  const int64_t fit = int64_t(scratch.size - scratch.used) / (2 * n * 8) - 1;
  if (splits > fit)
    splits = fit;
  if (splits > 65535)
    splits = 65535;
  if (splits < 1)
    splits = 1;
  const int64_t per_split = ceil_div(rows, splits);
  splits = ceil_div(rows, per_split);
  double *partial = scratch.take<double>(size_t(splits * 2 * n));
  if (!partial || tiles > 0x7fffffff) {
    fail_arg("layer_norm_grad", "scratch too small for dgamma/dbeta");
    return;
  }
  layer_norm_grad_cols_kernel<<<dim3(unsigned(tiles), unsigned(splits)),
                                kThreads, 0, ctx.stream>>>(
      x, dy, stats, rows, n, per_split, partial);
  check_launch("layer_norm_grad");
  layer_norm_grad_finalize_kernel<>
      <<<grid_for(ctx, 2 * n), kThreads, 0, ctx.stream>>>(partial, int(splits),
                                                          n, dgamma, dbeta);
  check_launch("layer_norm_grad");
}


} // namespace detail
} // namespace cuda
} // namespace sbp

#endif // SBP_CUDA_DETAIL_LAYER_NORM_CUH
