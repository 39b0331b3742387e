//===- detail/reductions.cuh - Column sums (bias_grad, pos_grad, mean_tokens) and mean_tokens_grad -*- CUDA -*-===//
//
// Internal to the CUDA kernel library (libsbp_cuda_kernels.a): kernel
// bodies and launch templates, included by the translation units in
// codegen/cuda/src, never by trainers (they include <sbp/cuda_kernels.h>).
//
//===----------------------------------------------------------------------===//
#ifndef SBP_CUDA_DETAIL_REDUCTIONS_CUH
#define SBP_CUDA_DETAIL_REDUCTIONS_CUH

#include "detail/pointwise.cuh"

namespace sbp {
namespace cuda {
namespace detail {

//===--- Column sums (bias_grad, pos_grad, mean_tokens) -------------------===//
// x [batches, rows, n] (row stride ld, default n) -> out [batches, n] =
// scale * sum over rows, in double. A block owns a tile of `tile` column
// vectors and a split of the rows; its 256 threads form (256 / tile) row lanes,
// so a warp always reads contiguous memory (a narrow matrix is read as a flat
// stream). With several splits the per-split sums go to scratch and a second
// kernel adds them in split order: the result does not depend on timing. Column
// vectors are kVec elements: 4 floats, or 8 (4 when n or ld is not a multiple
// of 8) bf16.

template <int kVec, class TX, class TY>
__global__ void __launch_bounds__(kThreads)
    colsum_kernel(const TX *x, int64_t batches, int64_t rows, int64_t n,
                  int64_t ld, int tile, int64_t rows_per_split, double *partial,
                  TY *out, double scale) {
  __shared__ double sh[kThreads * kVec];
  const int lanes = kThreads / tile;
  const int cl = threadIdx.x % tile, lane = threadIdx.x / tile;
  const int64_t nv = n / kVec;
  const int64_t col = int64_t(blockIdx.x) * tile + cl;
  const int splits = gridDim.y, split = blockIdx.y;
  const int64_t r0 = split * rows_per_split;
  const int64_t r1 = r0 + rows_per_split < rows ? r0 + rows_per_split : rows;
  const bool active = lane < lanes && col < nv;
  for (int64_t b = blockIdx.z; b < batches; b += gridDim.z) {
    double acc[kVec];
#pragma unroll
    for (int v = 0; v < kVec; ++v)
      acc[v] = 0.0;
    if (active) {
      const TX *xb = x + b * rows * ld + col * kVec;
#pragma unroll 4
      for (int64_t r = r0 + lane; r < r1; r += lanes) {
        float q[kVec];
        ld_vec<kVec>(xb + r * ld, 0, q);
#pragma unroll
        for (int v = 0; v < kVec; ++v)
          acc[v] += double(q[v]);
      }
    }
#pragma unroll
    for (int v = 0; v < kVec; ++v)
      sh[threadIdx.x * kVec + v] = acc[v];
    __syncthreads();
    if (lane == 0 && col < nv) {
#pragma unroll
      for (int v = 0; v < kVec; ++v) {
        double s = 0.0;
        for (int l = 0; l < lanes; ++l)
          s += sh[(l * tile + cl) * kVec + v];
        const int64_t j = col * kVec + v;
        if (splits == 1)
          out[b * n + j] = from_f64<TY>(s * scale);
        else
          partial[(b * splits + split) * n + j] = s;
      }
    }
    __syncthreads();
  }
}

/// out[b*n + j] = scale * sum_s partial[(b*splits + s)*n + j]. A block owns
/// kFinalizeCols columns; its kFinalizeLanes split lanes each add every
/// kFinalizeLanes-th split (a warp reads 32 consecutive columns), then a
/// fixed-shape tree in shared memory adds the lanes: the order depends only on
/// the sizes, never on timing. (One thread per column adding all splits
/// serially took ~260 us per call on an H100 at ~600 splits.)
constexpr int kFinalizeCols = 32;
constexpr int kFinalizeLanes = 32;

template <class TY>
__global__ void __launch_bounds__(kFinalizeCols *kFinalizeLanes)
    colsum_finalize_kernel(const double *partial, int64_t batches, int splits,
                           int64_t n, TY *out, double scale) {
  __shared__ double sh[kFinalizeLanes][kFinalizeCols + 1];
  const int c = threadIdx.x % kFinalizeCols, lane = threadIdx.x / kFinalizeCols;
  const int64_t j = int64_t(blockIdx.x) * kFinalizeCols + c;
  for (int64_t b = blockIdx.y; b < batches; b += gridDim.y) {
    double s = 0.0;
    if (j < n)
      for (int k = lane; k < splits; k += kFinalizeLanes)
        s += partial[(b * splits + k) * n + j];
    sh[lane][c] = s;
    __syncthreads();
#pragma unroll
    for (int half = kFinalizeLanes / 2; half > 0; half /= 2) {
      if (lane < half)
        sh[lane][c] += sh[lane + half][c];
      __syncthreads();
    }
    if (lane == 0 && j < n)
      out[b * n + j] = from_f64<TY>(sh[0][c] * scale);
    __syncthreads();
  }
}

template <class TX, class TY>
inline void column_sum(const Context &ctx, const char *name, const TX *x,
                       int64_t batches, int64_t rows, int64_t n, TY *out,
                       double scale, int64_t ld = 0) {
  if (batches <= 0 || n <= 0)
    return;
  if (rows < 0)
    rows = 0;
  if (ld <= 0)
    ld = n;
  // float: 4-wide; bf16: 8-wide (16 bytes), else 4-wide (8 bytes).
  constexpr bool kWide = kIsBf16<TX>;
  int kv = 1;
  if (kWide && n % 8 == 0 && ld % 8 == 0 && vec_aligned(x, 8))
    kv = 8;
  else if (n % 4 == 0 && ld % 4 == 0 && vec_aligned(x, 4))
    kv = 4;
  const int64_t nv = n / kv;
  const int tile = int(nv < 64 ? nv : 64);
  const int lanes = kThreads / tile;
  const int64_t tiles = ceil_div(nv, tile);
  const int64_t zb = batches < 65535 ? batches : 65535;
  if (tiles > 0x7fffffff) {
    fail_arg(name, "too many columns");
    return;
  }
  // Split the rows until the grid fills the machine, each lane keeping at
  // least 32 rows (fewer splits: less partial traffic for the finalize), the
  // partial sums fitting in scratch.
  const int64_t target = int64_t(sm_count(ctx)) * 8;
  int64_t splits = 1;
  if (tiles * zb < target)
    splits = ceil_div(target, tiles * zb);
  const int64_t max_by_rows = ceil_div(rows, int64_t(lanes) * 32);
  if (splits > max_by_rows)
    splits = max_by_rows;
  if (splits > 65535)
    splits = 65535;
  double *partial = nullptr;
  if (splits > 1) {
    const int64_t fit =
        int64_t(ctx.scratch ? ctx.scratch_bytes : 0) / (batches * n * 8);
    if (splits > fit)
      splits = fit;
    if (splits > 1)
      partial = ScratchCursor(ctx).take<double>(size_t(splits * batches * n));
    if (!partial)
      splits = 1;
  }
  if (splits < 1)
    splits = 1;
  const int64_t per_split = splits > 1 ? ceil_div(rows, splits) : rows;
  if (splits > 1)
    splits = ceil_div(rows, per_split); // no empty split
  const dim3 grid{unsigned(tiles), unsigned(splits), unsigned(zb)};
  with_width<kWide>(kv, [&](auto wc) {
    colsum_kernel<decltype(wc)::value><<<grid, kThreads, 0, ctx.stream>>>(
        x, batches, rows, n, ld, tile, per_split, partial, out, scale);
  });
  check_launch(name);
  if (splits > 1) {
    const dim3 fgrid{unsigned(ceil_div(n, kFinalizeCols)), unsigned(zb)};
    colsum_finalize_kernel<<<fgrid, kFinalizeCols * kFinalizeLanes, 0,
                             ctx.stream>>>(partial, batches, int(splits), n,
                                           out, scale);
    check_launch(name);
  }
}

template <class X, class Y>
inline void mean_tokens_grad_impl(const Context &ctx, const X *dy, Y *dx,
                                  int64_t B, int64_t T, int64_t D) {
  if (B <= 0 || T <= 0 || D <= 0)
    return;
  const int64_t total = B * T * D;
  constexpr bool kWide = kIsBf16<X> || kIsBf16<Y>;
  const int w = row_width<kWide>(D, {vec_aligned(dy, 8), vec_aligned(dx, 8)},
                                 {vec_aligned(dy, 4), vec_aligned(dx, 4)});
  const int64_t tv = total / w, TDv = T * D / w, Dv = D / w;
  const unsigned grid = grid_for(ctx, tv);
  const float t = float(T);
  with_width<kWide>(w, [&](auto wc) {
    constexpr int V = decltype(wc)::value;
    if (total < kMaxIndex32) {
      using I = uint32_t;
      mean_tokens_grad_kernel<V, I>
          <<<grid, kThreads, 0, ctx.stream>>>(dy, dx, I(tv), I(TDv), I(Dv), t);
    } else {
      mean_tokens_grad_kernel<V, int64_t>
          <<<grid, kThreads, 0, ctx.stream>>>(dy, dx, tv, TDv, Dv, t);
    }
  });
  check_launch("mean_tokens_grad");
}


} // namespace detail
} // namespace cuda
} // namespace sbp

#endif // SBP_CUDA_DETAIL_REDUCTIONS_CUH
