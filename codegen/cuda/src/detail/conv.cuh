//===- detail/conv.cuh - Depth-wise convolution, space-to-depth, layer scale -*- CUDA -*-===//
//
// The ConvNeXt kernels (kernel_table.def: dwconv*, space_to_depth*,
// layer_scale*), shared by conv_f32.cu and conv_bf16.cu. Tensors are
// channels-last [B, H*W, C]; the depth-wise weight is [C, 1, K, K] float.
//
// dwconv and dwconv_grad_input are one tiled kernel: the gradient of a
// depth-wise cross-correlation is the same cross-correlation of dy with the
// kernel flipped in both directions (w[K-1-ky][K-1-kx] = w[KK-1-t] on the
// flat tap index). A block owns a spatial tile of one image (16x7 when 7
// divides the width, else 8x8: dwconv_tile_for) and 32 channels: it stages
// the tile's halo of the input in shared memory as float (16-byte loads when
// C allows), the 32 channels' taps beside it, and each thread computes 7 (4)
// consecutive outputs of one channel pair, sliding a register window over
// each tap row. The weight gradient is two-stage: a
// fixed grid of blocks per 32-channel group walks a fixed contiguous range
// of tiles, summing the K*K taps and the bias of its channels in float
// (each thread one tap row of one channel pair), and writes its partial sums
// to scratch; a second kernel adds the partials in block order in double.
// K = 3, 5, 7 take these paths; any other odd K a direct (slow) kernel.
//
// The `_rows` gradients read dy as its SBP kept rows dyk [B, kept, C] at the
// token indices idx (the rest of dy is zero): the input gradient's blocks
// map their halo window's positions to kept rows once (a scan of idx) and
// stage zeros for the dropped ones; the weight gradient walks its tiles
// position-major, so one window map serves every image, and skips the FMAs
// of tile rows (halves) without a kept position. The full zero-filled dy is
// never written. The direct kernels read a keep map built in scratch.
//
//===----------------------------------------------------------------------===//
#ifndef SBP_CUDA_DETAIL_CONV_CUH
#define SBP_CUDA_DETAIL_CONV_CUH

#include "detail/common.cuh"
#include "detail/reductions.cuh" // colsum_finalize_kernel
#include "detail/rows.cuh"       // build_keep_map_kernel

#include <cstdlib>
#include <cstring>

namespace sbp {
namespace cuda {
namespace detail {

constexpr int kConvCG = 32; // channels per block: 16 channel pairs
constexpr int kConvTH = 8;  // weight-gradient tile rows
constexpr int kConvTW = 8;  // weight-gradient tile columns

/// The forward / input-gradient tile: TH x TW outputs of 32 channels per
/// block, each thread R consecutive outputs of one row and channel pair
/// (R + K - 1 inputs and K weights from shared memory per tap row for R * K
/// FMAs per channel: a longer R reads shared memory less per FMA, a tile
/// that divides the image wastes no threads on its edge).
template <int TH_, int TW_, int R_> struct ConvTile {
  static constexpr int TH = TH_, TW = TW_, R = R_;
  static constexpr int NT = (kConvCG / 2) * TH * (TW / R); // threads
  static_assert(TW % R == 0, "tile columns");
  static_assert(NT % 32 == 0 && NT <= 1024, "whole warps");
};

/// Elements of T per 16-byte load.
template <class T> constexpr int kConvVec = kIsBf16<T> ? 8 : 4;

/// Whether the 16-byte loads / pair stores of a [.., C] tensor are legal.
template <class T> inline bool conv_vec_ok(const T *p, int64_t C) {
  return C % kConvVec<T> == 0 && aligned16(p);
}
template <class T> inline bool conv_pair_ok(const T *p, int64_t C) {
  return C % 2 == 0 && (reinterpret_cast<uintptr_t>(p) % (2 * sizeof(T))) == 0;
}

/// The rows of an HH x WW window of one dense image at (h0, w0): window
/// position pos -> the element offset of its row, -1 outside the image.
template <int WW> struct DenseWindow {
  int H, W, C, h0, w0;
  __device__ __forceinline__ int64_t operator()(int pos) const {
    const int h = h0 + pos / WW, w = w0 + pos % WW;
    return (h >= 0 && h < H && w >= 0 && w < W) ? (int64_t(h) * W + w) * C : -1;
  }
};

/// The same window over one image's kept rows [kept, C]: map[pos] = the
/// position's row, -1 (dropped, or outside the image) a zero row.
struct KeptWindow {
  const int *map;
  int C;
  __device__ __forceinline__ int64_t operator()(int pos) const {
    const int k = map[pos];
    return k < 0 ? -1 : int64_t(k) * C;
  }
};

/// map[hh * WW + ww] = the last k with idx[k] == (h0 + hh) * W + (w0 + ww)
/// (scatter_rows' rule for a repeated index), -1 if none: one scan of idx.
/// Every thread of the block calls it; the map is complete on return.
template <int HH, int WW>
__device__ void build_window_map(const int32_t *idx, int kept, int H, int W,
                                 int h0, int w0, int *map) {
  for (int i = threadIdx.x; i < HH * WW; i += blockDim.x)
    map[i] = -1;
  __syncthreads();
  for (int k = threadIdx.x; k < kept; k += blockDim.x) {
    const int t = idx[k];
    if (t < 0 || t >= H * W)
      continue;
    const int hh = t / W - h0, ww = t % W - w0;
    if (hh >= 0 && hh < HH && ww >= 0 && ww < WW)
      atomicMax(&map[hh * WW + ww], k);
  }
  __syncthreads();
}

/// sm[pos * kConvCG + c] = src[row(pos) + c0 + c] for the HH x WW window
/// positions pos, 0 for a row < 0 or past C.
template <int HH, int WW, class T, class RowOf>
__device__ __forceinline__ void conv_stage(const T *src, int C, int c0,
                                           bool vec, float *sm, RowOf row) {
  constexpr int V = kConvVec<T>, NV = kConvCG / V;
  if (vec) {
    for (int i = threadIdx.x; i < HH * WW * NV; i += blockDim.x) {
      const int v = i % NV, pos = i / NV, c = c0 + v * V;
      const int64_t r = row(pos);
      float q[V];
      if (r >= 0 && c < C) {
        ld_vec<V>(src + r + c, 0, q);
      } else {
#pragma unroll
        for (int k = 0; k < V; ++k)
          q[k] = 0.0f;
      }
      float4 *d = reinterpret_cast<float4 *>(sm + pos * kConvCG + v * V);
#pragma unroll
      for (int k = 0; k < V / 4; ++k)
        d[k] = make_float4(q[4 * k], q[4 * k + 1], q[4 * k + 2], q[4 * k + 3]);
    }
  } else {
    for (int i = threadIdx.x; i < HH * WW * kConvCG; i += blockDim.x) {
      const int cc = i % kConvCG, pos = i / kConvCG, c = c0 + cc;
      const int64_t r = row(pos);
      sm[i] = (r >= 0 && c < C) ? to_f32(src[r + c]) : 0.0f;
    }
  }
}

//===--- Forward and input gradient ---------------------------------------===//

/// y = bias + sum_t wt[t] * x[shifted by t] (kFlip: the flipped taps, no
/// bias: dx from dy; kRows: x is the kept rows [B, kept, C] at idx).
/// grid (tiles, channel groups, images).
template <class Tile, int K, bool kFlip, bool kRows, class TX, class TY>
__global__ void __launch_bounds__(Tile::NT)
    dwconv_tile_kernel(const TX *x, const int32_t *idx, int kept,
                       const float *w, const float *bias, TY *y, int B, int H,
                       int W, int C, int tiles_w, bool vec, bool pair) {
  constexpr int TH = Tile::TH, TW = Tile::TW, R = Tile::R;
  constexpr int P = K / 2, KK = K * K;
  constexpr int HH = TH + K - 1, WW = TW + K - 1, NP = kConvCG / 2;
  __shared__ __align__(16) float sx[HH * WW * kConvCG];
  __shared__ __align__(16) float sw[KK * kConvCG];
  __shared__ float sb[kConvCG];
  __shared__ int smap[kRows ? HH * WW : 1];
  const int c0 = blockIdx.y * kConvCG;
  const int h0 = (blockIdx.x / tiles_w) * TH;
  const int w0 = (blockIdx.x % tiles_w) * TW;
  if constexpr (kRows)
    build_window_map<HH, WW>(idx, kept, H, W, h0 - P, w0 - P, smap);
  for (int i = threadIdx.x; i < KK * kConvCG; i += blockDim.x) {
    const int c = i / KK, t = i % KK;
    sw[(kFlip ? KK - 1 - t : t) * kConvCG + c] =
        c0 + c < C ? w[int64_t(c0 + c) * KK + t] : 0.0f;
  }
  if (threadIdx.x < kConvCG)
    sb[threadIdx.x] = (bias && c0 + int(threadIdx.x) < C)
                          ? bias[c0 + threadIdx.x]
                          : 0.0f;
  const int pr = threadIdx.x % NP, rest = threadIdx.x / NP;
  const int row = rest / (TW / R);
  const int col0 = (rest % (TW / R)) * R;
  const float2 *sx2 = reinterpret_cast<const float2 *>(sx);
  const float2 *sw2 = reinterpret_cast<const float2 *>(sw);
  const int64_t image = int64_t(H) * W * C;
  for (int b = blockIdx.z; b < B; b += gridDim.z) {
    __syncthreads(); // the previous image's reads of sx are done
    if constexpr (kRows)
      conv_stage<HH, WW>(x + b * int64_t(kept) * C, C, c0, vec, sx,
                         KeptWindow{smap, C});
    else
      conv_stage<HH, WW>(x + b * image, C, c0, vec, sx,
                         DenseWindow<WW>{H, W, C, h0 - P, w0 - P});
    __syncthreads();
    float2 acc[R];
#pragma unroll
    for (int i = 0; i < R; ++i)
      acc[i] = make_float2(sb[2 * pr], sb[2 * pr + 1]);
#pragma unroll
    for (int ky = 0; ky < K; ++ky) {
      float2 in[R + K - 1];
#pragma unroll
      for (int j = 0; j < R + K - 1; ++j)
        in[j] = sx2[((row + ky) * WW + col0 + j) * NP + pr];
#pragma unroll
      for (int kx = 0; kx < K; ++kx) {
        const float2 wv = sw2[(ky * K + kx) * NP + pr];
#pragma unroll
        for (int i = 0; i < R; ++i) {
          acc[i].x = fmaf(in[i + kx].x, wv.x, acc[i].x);
          acc[i].y = fmaf(in[i + kx].y, wv.y, acc[i].y);
        }
      }
    }
    const int h = h0 + row, c = c0 + 2 * pr;
    if (h < H && c < C) {
      TY *yrow = y + b * image + int64_t(h) * W * C;
#pragma unroll
      for (int i = 0; i < R; ++i) {
        const int ww = w0 + col0 + i;
        if (ww >= W)
          break;
        TY *p = yrow + int64_t(ww) * C + c;
        if (pair) {
          if constexpr (kIsBf16<TY>)
            *reinterpret_cast<uint32_t *>(p) = f32_to_bf16x2(acc[i].x, acc[i].y);
          else
            *reinterpret_cast<float2 *>(p) = acc[i];
        } else {
          p[0] = from_f32<TY>(acc[i].x);
          if (c + 1 < C)
            p[1] = from_f32<TY>(acc[i].y);
        }
      }
    }
  }
}

/// Any odd K: one thread per output element, straight from global memory
/// (keep: x is the kept rows [B, kept, C], keep[t] the row of token t).
template <bool kFlip, class TX, class TY>
__global__ void __launch_bounds__(kThreads)
    dwconv_direct_kernel(const TX *x, const int *keep, int kept,
                         const float *w, const float *bias, TY *y, int64_t B,
                         int H, int W, int C, int K) {
  const int P = K / 2, KK = K * K;
  const int64_t total = B * H * W * C;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int c = int(i % C);
    const int64_t pos = i / C;
    const int ww = int(pos % W), h = int((pos / W) % H);
    const int64_t b = pos / (int64_t(W) * H);
    float acc = bias ? bias[c] : 0.0f;
    for (int ky = 0; ky < K; ++ky) {
      const int hy = h + ky - P;
      if (hy < 0 || hy >= H)
        continue;
      for (int kx = 0; kx < K; ++kx) {
        const int wx = ww + kx - P;
        if (wx < 0 || wx >= W)
          continue;
        const int t = ky * K + kx;
        const float wt = w[int64_t(c) * KK + (kFlip ? KK - 1 - t : t)];
        const int64_t r = keep ? (keep[hy * W + wx] < 0
                                      ? -1
                                      : b * kept + keep[hy * W + wx])
                               : (b * H + hy) * W + wx;
        if (r >= 0)
          acc = fmaf(to_f32(x[r * C + c]), wt, acc);
      }
    }
    y[i] = from_f32<TY>(acc);
  }
}

inline bool conv_check(const char *name, int64_t B, int64_t H, int64_t W,
                       int64_t C, int64_t K) {
  if (B < 0 || H < 0 || W < 0 || C < 0) {
    fail_arg(name, "negative size");
    return false;
  }
  if (K < 1 || K % 2 == 0 || K > 63) {
    fail_arg(name, "kernel size must be odd, 1..63");
    return false;
  }
  if (H * W * C >= kMaxIndex32 || B > 0x7fffffff) {
    fail_arg(name, "image too large (H*W*C must fit int32)");
    return false;
  }
  return true;
}

/// A `_rows` kernel's kept count (the launchers read kept < 0 as dense).
inline bool kept_ok(const char *name, int64_t kept) {
  if (kept < 0)
    fail_arg(name, "negative kept");
  return kept >= 0;
}

/// Checks the kept rows of a `_rows` kernel (kept < 0: a dense call).
inline bool rows_check(const char *name, const int32_t *idx, int64_t kept) {
  if (kept > 0x7fffffff) {
    fail_arg(name, "kept does not fit in 32 bits");
    return false;
  }
  if (kept > 0 && !idx) {
    fail_arg(name, "null keep indices");
    return false;
  }
  return true;
}

/// keep[t] for t < H*W (keep[H*W]: the repeated-index flag) in scratch from
/// offset `used`, built by one block; null (after fail_arg) if it does not fit.
inline int *scratch_keep_map(const Context &ctx, const char *name,
                             ScratchCursor &scratch, const int32_t *idx,
                             int64_t kept, int64_t T) {
  int *keep = scratch.take<int>(size_t(T + 1));
  if (!keep) {
    fail_arg(name, "ctx.scratch too small for the keep map (needs 4 * (H*W + 1) bytes)");
    return nullptr;
  }
  build_keep_map_kernel<><<<1, 1024, 0, ctx.stream>>>(idx, int(kept), int(T),
                                                      keep);
  return keep;
}

/// f(std::integral_constant<int, K>) for the kernel sizes the tiled kernels
/// compile (K = 3, 5, 7; the caller sends other sizes to the direct ones).
template <class F> inline void with_tiled_kernel_size(int64_t K, F &&f) {
  if (K == 3)
    f(std::integral_constant<int, 3>{});
  else if (K == 5)
    f(std::integral_constant<int, 5>{});
  else
    f(std::integral_constant<int, 7>{});
}

/// The forward / input-gradient tiles the library launches (every tile sums
/// an output's taps in the same order: the same bits whichever runs).
/// 16 x 7 (7 outputs per thread: 13 shared-memory loads of inputs and 7 of
/// taps per 98 FMAs per channel pair, against 10 and 7 per 56 for 8 x 8) made
/// the ConvNeXt-T b128 step 0.9 ms shorter on the H100 (every stage on 16x7
/// against every stage on 8x8). It wastes no column when 7 divides the width
/// (every ConvNeXt stage at 224 px); its rows pad to 16 (87.5% of the
/// threads busy at 56, 28 and 14 rows, 44% at 7, where 8x8 keeps 77%: a
/// per-stage choice is not measured yet).
enum class DwconvTile { k8x8, k16x7 };

/// The tile for an image W positions wide. SBP_DWCONV_TILE = 8x8 | 16x7
/// overrides it (for benchmarks).
inline DwconvTile dwconv_tile_for(int64_t W) {
  static const int forced = [] {
    const char *v = std::getenv("SBP_DWCONV_TILE");
    if (v && std::strcmp(v, "8x8") == 0)
      return int(DwconvTile::k8x8);
    if (v && std::strcmp(v, "16x7") == 0)
      return int(DwconvTile::k16x7);
    return -1;
  }();
  if (forced >= 0)
    return DwconvTile(forced);
  return W % 7 == 0 ? DwconvTile::k16x7 : DwconvTile::k8x8;
}

/// The tiled dwconv (K = 3, 5, 7) with tile Tile. kept >= 0 (the input
/// gradient only, kFlip): x is the kept rows [B, kept, C] at idx. The sizes
/// and idx are checked by the caller (conv_check, rows_check).
template <class Tile, bool kFlip, class TX, class TY>
inline void dwconv_tiled(const Context &ctx, const char *name, const TX *x,
                         const float *w, const float *bias, TY *y, int64_t B,
                         int64_t H, int64_t W, int64_t C, int64_t K,
                         const int32_t *idx, int64_t kept) {
  if (!kFlip && kept >= 0) {
    fail_arg(name, "kept rows are an input-gradient operand only");
    return;
  }
  if (B * H * W * C == 0)
    return;
  const int64_t tiles_w = ceil_div(W, Tile::TW);
  const int64_t tiles = ceil_div(H, Tile::TH) * tiles_w;
  const int64_t groups = ceil_div(C, kConvCG);
  if (tiles > 0x7fffffff || groups > 65535) {
    fail_arg(name, "image too large");
    return;
  }
  // A block walks several images (its taps staged once) while the grid
  // still has >= 16 blocks of 256 threads per multiprocessor.
  int64_t images = std::max(
      ceil_div(B, 4), ceil_div(int64_t(sm_count(ctx)) * 16 * kThreads / Tile::NT,
                               tiles * groups));
  images = std::min<int64_t>(std::min(images, B), 65535);
  const dim3 grid{unsigned(tiles), unsigned(groups), unsigned(images)};
  const bool vec = conv_vec_ok(x, C), pair = conv_pair_ok(y, C);
  const auto go = [&](auto kc) {
    constexpr int kK = decltype(kc)::value;
    if constexpr (kFlip) { // only the input gradient reads kept rows
      if (kept >= 0) {
        dwconv_tile_kernel<Tile, kK, true, true>
            <<<grid, Tile::NT, 0, ctx.stream>>>(x, idx, int(kept), w, bias, y,
                                                int(B), int(H), int(W), int(C),
                                                int(tiles_w), vec, pair);
        return;
      }
    }
    dwconv_tile_kernel<Tile, kK, kFlip, false>
        <<<grid, Tile::NT, 0, ctx.stream>>>(x, nullptr, 0, w, bias, y, int(B),
                                            int(H), int(W), int(C),
                                            int(tiles_w), vec, pair);
  };
  with_tiled_kernel_size(K, go);
  check_launch(name);
}

/// y = dwconv(x) (kFlip: dx from dy). kept >= 0 (kFlip only): dy is the
/// kept rows [B, kept, C] at idx, the other positions zero.
template <bool kFlip, class TX, class TY>
inline void dwconv_launch(const Context &ctx, const char *name, const TX *x,
                          const float *w, const float *bias, TY *y, int64_t B,
                          int64_t H, int64_t W, int64_t C, int64_t K,
                          const int32_t *idx = nullptr, int64_t kept = -1) {
  if (!conv_check(name, B, H, W, C, K) || !rows_check(name, idx, kept) ||
      B * H * W * C == 0)
    return;
  if (K == 3 || K == 5 || K == 7) {
    if (dwconv_tile_for(W) == DwconvTile::k16x7)
      dwconv_tiled<ConvTile<16, 7, 7>, kFlip>(ctx, name, x, w, bias, y, B, H,
                                              W, C, K, idx, kept);
    else
      dwconv_tiled<ConvTile<8, 8, 4>, kFlip>(ctx, name, x, w, bias, y, B, H,
                                             W, C, K, idx, kept);
    return;
  }
  const int *keep = nullptr;
  if (kept >= 0) {
    ScratchCursor scratch(ctx);
    if (!(keep = scratch_keep_map(ctx, name, scratch, idx, kept, H * W)))
      return;
  }
  dwconv_direct_kernel<kFlip><<<grid_for(ctx, B * H * W * C), kThreads, 0,
                                ctx.stream>>>(x, keep, int(kept >= 0 ? kept : 0),
                                              w, bias, y, B, int(H), int(W),
                                              int(C), int(K));
  check_launch(name);
}

//===--- Weight and bias gradient -----------------------------------------===//

/// Threads per (channel pair, tap row) of the weight-gradient tile: row splits.
template <int K> constexpr int kWgradSplits = kThreads / ((kConvCG / 2) * K);

/// acc[kx] += in[j + kx] * d[j] (accb += d[j] if bias) for j in [J0, J0 + NJ).
template <int J0, int NJ, int K>
__device__ __forceinline__ void wgrad_row(const float2 (&in)[kConvTW + K - 1],
                                          const float2 (&d)[kConvTW],
                                          float2 (&acc)[K], float2 &accb,
                                          bool bias) {
#pragma unroll
  for (int kx = 0; kx < K; ++kx)
#pragma unroll
    for (int j = J0; j < J0 + NJ; ++j) {
      acc[kx].x = fmaf(in[j + kx].x, d[j].x, acc[kx].x);
      acc[kx].y = fmaf(in[j + kx].y, d[j].y, acc[kx].y);
    }
  if (bias)
#pragma unroll
    for (int j = J0; j < J0 + NJ; ++j) {
      accb.x += d[j].x;
      accb.y += d[j].y;
    }
}

/// Stage 1. grid (blocks per group, channel groups). Block p of group g sums,
/// over tiles [p * per, (p+1) * per) of the B * tiles_h * tiles_w tiles,
/// dy[pos] * x[pos + tap] for its 32 channels and all K*K taps, and dy for
/// the bias; writes partial[(p * (KK+1) + tap) * C + c], tap KK = bias.
/// Dense dy: tiles image-major. kRows (dy the kept rows [B, kept, C] at
/// idx): tiles position-major, one window map per position for B images;
/// tiles without a kept position are skipped, and so are the FMAs of the
/// tile-row halves without one (their dy is zero).
template <int K, bool kRows, class TG, class TX>
__global__ void __launch_bounds__(kThreads)
    dwconv_wgrad_partial_kernel(const TG *dy, const int32_t *idx, int kept,
                                const TX *x, int B, int H, int W, int C,
                                int tiles_h, int tiles_w, int64_t tiles,
                                int64_t per, bool vec_dy, bool vec_x,
                                float *partial) {
  constexpr int P = K / 2, KK = K * K, S = kWgradSplits<K>;
  constexpr int HH = kConvTH + K - 1, WW = kConvTW + K - 1, NP = kConvCG / 2;
  static_assert(S >= 1 && S * (KK + 1) * kConvCG <= HH * WW * kConvCG,
                "the reduction buffer reuses sx");
  __shared__ __align__(16) float sx[HH * WW * kConvCG];
  __shared__ __align__(16) float sd[kConvTH * kConvTW * kConvCG];
  __shared__ int smap[kRows ? kConvTH * kConvTW : 1];
  __shared__ unsigned shalves; // bit 2r + h: half h of tile row r has a kept position
  constexpr unsigned kAllHalves = (1u << (2 * kConvTH)) - 1;
  static_assert(2 * kConvTH <= 32 && kConvTW % 2 == 0, "half-row bits");
  const int c0 = blockIdx.y * kConvCG;
  const int pr = threadIdx.x % NP, rest = threadIdx.x / NP;
  const int ky = rest % K, s = rest / K;
  const bool active = s < S;
  const float2 *sx2 = reinterpret_cast<const float2 *>(sx);
  const float2 *sd2 = reinterpret_cast<const float2 *>(sd);
  float2 acc[K], accb = make_float2(0.0f, 0.0f);
#pragma unroll
  for (int kx = 0; kx < K; ++kx)
    acc[kx] = make_float2(0.0f, 0.0f);
  const int64_t image = int64_t(H) * W * C;
  const int64_t t0 = blockIdx.x * per;
  const int64_t t1 = t0 + per < tiles ? t0 + per : tiles;
  const int per_image = tiles_h * tiles_w;
  int mapped = -1; // the tile position whose window map smap holds
  for (int64_t t = t0; t < t1; ++t) {
    const int64_t b = kRows ? t % B : t / per_image;
    const int tt = int(kRows ? t / B : t % per_image);
    const int h0 = (tt / tiles_w) * kConvTH, w0 = (tt % tiles_w) * kConvTW;
    __syncthreads(); // the previous tile's reads of sx, sd, smap are done
    unsigned halves = kAllHalves;
    if constexpr (kRows) {
      if (tt != mapped) {
        if (threadIdx.x == 0)
          shalves = 0;
        build_window_map<kConvTH, kConvTW>(idx, kept, H, W, h0, w0, smap);
        if (threadIdx.x < 2 * kConvTH) {
          constexpr int kHalf = kConvTW / 2;
          const int r = threadIdx.x / 2, half = threadIdx.x % 2;
          bool any = false;
          for (int j = 0; j < kHalf; ++j)
            any |= smap[r * kConvTW + half * kHalf + j] >= 0;
          if (any)
            atomicOr(&shalves, 1u << threadIdx.x);
        }
        __syncthreads();
        mapped = tt;
      }
      halves = shalves;
      if (halves == 0)
        continue;
    }
    conv_stage<HH, WW>(x + b * image, C, c0, vec_x, sx,
                       DenseWindow<WW>{H, W, C, h0 - P, w0 - P});
    if constexpr (kRows)
      conv_stage<kConvTH, kConvTW>(dy + b * int64_t(kept) * C, C, c0, vec_dy,
                                   sd, KeptWindow{smap, C});
    else
      conv_stage<kConvTH, kConvTW>(dy + b * image, C, c0, vec_dy, sd,
                                   DenseWindow<kConvTW>{H, W, C, h0, w0});
    __syncthreads();
    if (!active)
      continue;
    for (int r = s; r < kConvTH; r += S) {
      const unsigned rh = (halves >> (2 * r)) & 3u;
      if (rh == 0)
        continue;
      float2 d[kConvTW], in[kConvTW + K - 1];
#pragma unroll
      for (int j = 0; j < kConvTW; ++j)
        d[j] = sd2[(r * kConvTW + j) * NP + pr];
#pragma unroll
      for (int j = 0; j < kConvTW + K - 1; ++j)
        in[j] = sx2[((r + ky) * WW + j) * NP + pr];
      constexpr int kHalf = kConvTW / 2;
      if (rh == 3)
        wgrad_row<0, kConvTW, K>(in, d, acc, accb, ky == 0);
      else if (rh == 1)
        wgrad_row<0, kHalf, K>(in, d, acc, accb, ky == 0);
      else
        wgrad_row<kHalf, kHalf, K>(in, d, acc, accb, ky == 0);
    }
  }
  // The S row splits of each (tap, channel), added in split order.
  __syncthreads();
  float *red = sx; // [S][KK + 1][kConvCG]
  if (active) {
#pragma unroll
    for (int kx = 0; kx < K; ++kx) {
      float *q = red + (s * (KK + 1) + ky * K + kx) * kConvCG + 2 * pr;
      q[0] = acc[kx].x;
      q[1] = acc[kx].y;
    }
    if (ky == 0) {
      float *q = red + (s * (KK + 1) + KK) * kConvCG + 2 * pr;
      q[0] = accb.x;
      q[1] = accb.y;
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < (KK + 1) * kConvCG; i += blockDim.x) {
    const int tap = i / kConvCG, c = i % kConvCG;
    float sum = 0.0f;
#pragma unroll
    for (int k = 0; k < S; ++k)
      sum += red[(k * (KK + 1) + tap) * kConvCG + c];
    if (c0 + c < C)
      partial[(int64_t(blockIdx.x) * (KK + 1) + tap) * C + c0 + c] = sum;
  }
}

/// Stage 2: dw[c, tap] / db[c] = sum over the blocks' partials in block
/// order, in double. (A template: headers hold no non-inline definitions.)
template <class TP>
__global__ void __launch_bounds__(kThreads)
    dwconv_wgrad_finish_kernel(const TP *partial, int parts, int C, int KK,
                               float *dw, float *db) {
  const int64_t n = int64_t(KK + 1) * C;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    double s = 0.0;
    for (int p = 0; p < parts; ++p)
      s += double(partial[int64_t(p) * n + i]);
    const int tap = int(i / C), c = int(i % C);
    if (tap < KK)
      dw[int64_t(c) * KK + tap] = float(s);
    else
      db[c] = float(s);
  }
}

/// Any odd K: one thread per (tap, channel) over every position, in double
/// (keep: dy is the kept rows [B, kept, C], keep[t] the row of token t).
template <class TG, class TX>
__global__ void __launch_bounds__(kThreads)
    dwconv_wgrad_direct_kernel(const TG *dy, const int *keep, int kept,
                               const TX *x, int64_t B, int H, int W, int C,
                               int K, float *dw, float *db) {
  const int P = K / 2, KK = K * K;
  const int64_t n = int64_t(KK + 1) * C;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const int tap = int(i / C), c = int(i % C);
    const int oy = tap < KK ? tap / K - P : 0, ox = tap < KK ? tap % K - P : 0;
    double s = 0.0;
    for (int64_t b = 0; b < B; ++b)
      for (int h = 0; h < H; ++h) {
        const int hy = h + oy;
        if (hy < 0 || hy >= H)
          continue;
        for (int ww = 0; ww < W; ++ww) {
          const int wx = ww + ox;
          if (wx < 0 || wx >= W)
            continue;
          const int64_t r = keep ? (keep[h * W + ww] < 0
                                        ? -1
                                        : b * kept + keep[h * W + ww])
                                 : (b * H + h) * W + ww;
          if (r < 0)
            continue;
          const double g = to_f32(dy[r * C + c]);
          s += tap < KK ? g * to_f32(x[((b * H + hy) * W + wx) * C + c]) : g;
        }
      }
    if (tap < KK)
      dw[int64_t(c) * KK + tap] = float(s);
    else
      db[c] = float(s);
  }
}

/// Weight-gradient partial blocks per multiprocessor (all channel groups
/// together): 8 fill the multiprocessors' block slots (6 fit at 33 KB of
/// shared memory each) where 4 left them half idle while blocks wait on their
/// staging loads (ConvNeXt-T b128 on the H100: -0.4 ms a step; 12 and 16 gain
/// nothing more). SBP_DWCONV_WGRAD_BLOCKS = n overrides it (for benchmarks).
inline int64_t dwconv_wgrad_blocks_per_sm() {
  static const int64_t n = [] {
    const char *v = std::getenv("SBP_DWCONV_WGRAD_BLOCKS");
    const long k = v ? std::strtol(v, nullptr, 10) : 0;
    return k >= 1 && k <= 64 ? int64_t(k) : int64_t(8);
  }();
  return n;
}

/// dw, db from dy and x. kept >= 0: dy is the kept rows [B, kept, C] at idx;
/// blocks_per_sm > 0: that many partial blocks per multiprocessor (the
/// bench's knob; 0: dwconv_wgrad_blocks_per_sm()).
template <class TG, class TX>
inline void dwconv_grad_weight_impl(const Context &ctx, const char *name,
                                    const TG *dy, const TX *x, float *dw,
                                    float *db, int64_t B, int64_t H, int64_t W,
                                    int64_t C, int64_t K,
                                    const int32_t *idx = nullptr,
                                    int64_t kept = -1,
                                    int64_t blocks_per_sm = 0) {
  if (!conv_check(name, B, H, W, C, K) || !rows_check(name, idx, kept) || C == 0)
    return;
  const bool rows = kept >= 0;
  const int64_t KK = K * K;
  if (B * H * W == 0) { // no positions: zero gradients
    cudaMemsetAsync(dw, 0, size_t(C * KK) * sizeof(float), ctx.stream);
    cudaMemsetAsync(db, 0, size_t(C) * sizeof(float), ctx.stream);
    check_launch(name);
    return;
  }
  if (K != 3 && K != 5 && K != 7) {
    const int *keep = nullptr;
    if (rows) {
      ScratchCursor scratch(ctx);
      if (!(keep = scratch_keep_map(ctx, name, scratch, idx, kept, H * W)))
        return;
    }
    dwconv_wgrad_direct_kernel<<<grid_for(ctx, (KK + 1) * C), kThreads, 0,
                                 ctx.stream>>>(dy, keep, int(rows ? kept : 0),
                                               x, B, int(H), int(W), int(C),
                                               int(K), dw, db);
    check_launch(name);
    return;
  }
  const int64_t tiles_h = ceil_div(H, kConvTH), tiles_w = ceil_div(W, kConvTW);
  const int64_t tiles = B * tiles_h * tiles_w;
  const int64_t groups = ceil_div(C, kConvCG);
  if (groups > 65535) {
    fail_arg(name, "too many channels");
    return;
  }
  // Blocks per channel group: blocks_per_sm per multiprocessor in all, each
  // walking at least 4 tiles, their partials fitting in scratch. The split
  // depends only on the sizes and the device: same inputs, same bits.
  const int64_t slice = C * (KK + 1) * int64_t(sizeof(float));
  if (blocks_per_sm <= 0)
    blocks_per_sm = dwconv_wgrad_blocks_per_sm();
  int64_t parts = ceil_div(int64_t(sm_count(ctx)) * blocks_per_sm, groups);
  parts = std::min(parts, ceil_div(tiles, 4));
  parts = std::min<int64_t>(parts, 65535);
  // (take() rounds each piece up to 256 bytes.)
  const int64_t fit =
      (int64_t(ctx.scratch ? ctx.scratch_bytes : 0) - 256) / slice;
  parts = std::min(parts, fit);
  if (parts < 1) {
    fail_arg(name, "ctx.scratch too small for the weight-gradient partials "
                   "(needs 4 * C * (K*K + 1) bytes)");
    return;
  }
  const int64_t per = ceil_div(tiles, parts);
  parts = ceil_div(tiles, per); // no empty block
  float *partial = ScratchCursor(ctx).take<float>(size_t(parts * C * (KK + 1)));
  if (!partial) {
    fail_arg(name, "ctx.scratch too small for the weight-gradient partials");
    return;
  }
  const bool vec_dy = conv_vec_ok(dy, C), vec_x = conv_vec_ok(x, C);
  const dim3 grid{unsigned(parts), unsigned(groups)};
  const auto go = [&](auto kc) {
    constexpr int kK = decltype(kc)::value;
    if (rows)
      dwconv_wgrad_partial_kernel<kK, true><<<grid, kThreads, 0, ctx.stream>>>(
          dy, idx, int(kept), x, int(B), int(H), int(W), int(C), int(tiles_h),
          int(tiles_w), tiles, per, vec_dy, vec_x, partial);
    else
      dwconv_wgrad_partial_kernel<kK, false><<<grid, kThreads, 0, ctx.stream>>>(
          dy, nullptr, 0, x, int(B), int(H), int(W), int(C), int(tiles_h),
          int(tiles_w), tiles, per, vec_dy, vec_x, partial);
  };
  with_tiled_kernel_size(K, go);
  check_launch(name);
  dwconv_wgrad_finish_kernel<<<grid_for(ctx, (KK + 1) * C), kThreads, 0,
                               ctx.stream>>>(partial, int(parts), int(C),
                                             int(KK), dw, db);
  check_launch(name);
}

//===--- Space to depth ---------------------------------------------------===//
// One thread per (output token, channel c): the s*s features c*s*s + dy*s + dx
// of that token, i.e. channel c of the s*s input tokens of its cell. A warp
// reads / writes consecutive channels of one token. The `_rows` gradient
// reads the output tokens' kept rows through a keep map built in scratch.

/// keep (kGrad only): src is the kept rows [B, kept, C*s*s] of the output
/// tokens, keep[t] the row of token t (-1: dropped, its gradient zero).
template <bool kGrad, class I, class TS, class TD>
__global__ void __launch_bounds__(kThreads)
    space_to_depth_kernel(const TS *src, TD *dst, I B, I H, I W, I C, I s,
                          const int *keep, I kept) {
  const I Ho = H / s, Wo = W / s, total = B * Ho * Wo * C;
  for (I i = blockIdx.x * I(blockDim.x) + threadIdx.x; i < total;
       i += I(gridDim.x) * blockDim.x) {
    const I c = i % C, tok = i / C;
    const I j = tok % Wo, io = (tok / Wo) % Ho, b = tok / (Wo * Ho);
    const int k = keep ? keep[tok % (Wo * Ho)] : 0;
    const I row = keep ? b * kept + I(k < 0 ? 0 : k) : tok;
    for (I dy = 0; dy < s; ++dy)
      for (I dx = 0; dx < s; ++dx) {
        const I in = ((b * H + io * s + dy) * W + j * s + dx) * C + c;
        const I out = (row * C + c) * s * s + dy * s + dx;
        if constexpr (kGrad)
          dst[in] = k < 0 ? from_f32<TD>(0.0f) : from_f32<TD>(to_f32(src[out]));
        else
          dst[out] = from_f32<TD>(to_f32(src[in]));
      }
  }
}

/// kept >= 0 (kGrad): src is the kept rows [B, kept, C*s*s] at idx.
template <bool kGrad, class TS, class TD>
inline void space_to_depth_impl(const Context &ctx, const char *name,
                                const TS *src, TD *dst, int64_t B, int64_t H,
                                int64_t W, int64_t C, int64_t s,
                                const int32_t *idx = nullptr,
                                int64_t kept = -1) {
  if (!rows_check(name, idx, kept))
    return;
  if (B < 0 || H < 0 || W < 0 || C < 0 || s < 1) {
    fail_arg(name, "negative size or block < 1");
    return;
  }
  if (H % s != 0 || W % s != 0) {
    fail_arg(name, "height and width must be multiples of the block");
    return;
  }
  const int64_t n = B * H * W * C;
  if (n == 0)
    return;
  const int *keep = nullptr;
  if (kept >= 0) {
    ScratchCursor scratch(ctx);
    if (!(keep = scratch_keep_map(ctx, name, scratch, idx, kept, (H / s) * (W / s))))
      return;
  }
  const unsigned grid = grid_for(ctx, n / (s * s));
  if (n < kMaxIndex32)
    space_to_depth_kernel<kGrad, uint32_t><<<grid, kThreads, 0, ctx.stream>>>(
        src, dst, uint32_t(B), uint32_t(H), uint32_t(W), uint32_t(C),
        uint32_t(s), keep, uint32_t(kept < 0 ? 0 : kept));
  else
    space_to_depth_kernel<kGrad, int64_t><<<grid, kThreads, 0, ctx.stream>>>(
        src, dst, B, H, W, C, s, keep, kept < 0 ? 0 : kept);
  check_launch(name);
}

//===--- The `_rows` entry points (both precisions) -----------------------===//
// dy given as its SBP kept rows [B, kept, C] at idx; kept < 0 is refused (the
// launchers read it as a dense call).

template <class TG, class TD>
inline void dwconv_grad_input_rows_impl(const Context &ctx, const TG *dyk,
                                        const int32_t *idx, int64_t kept,
                                        const float *w, TD *dx, int64_t B,
                                        int64_t H, int64_t W, int64_t C,
                                        int64_t K) {
  if (kept_ok("dwconv_grad_input_rows", kept))
    dwconv_launch<true>(ctx, "dwconv_grad_input_rows", dyk, w,
                        static_cast<const float *>(nullptr), dx, B, H, W, C, K,
                        idx, kept);
}

template <class TG, class TX>
inline void dwconv_grad_weight_rows_impl(const Context &ctx, const TG *dyk,
                                         const int32_t *idx, int64_t kept,
                                         const TX *x, float *dw, float *db,
                                         int64_t B, int64_t H, int64_t W,
                                         int64_t C, int64_t K) {
  if (kept_ok("dwconv_grad_weight_rows", kept))
    dwconv_grad_weight_impl(ctx, "dwconv_grad_weight_rows", dyk, x, dw, db, B,
                            H, W, C, K, idx, kept);
}

template <class TG, class TD>
inline void space_to_depth_grad_rows_impl(const Context &ctx, const TG *dyk,
                                          const int32_t *idx, int64_t kept,
                                          TD *dx, int64_t B, int64_t H,
                                          int64_t W, int64_t C, int64_t s) {
  if (kept_ok("space_to_depth_grad_rows", kept))
    space_to_depth_impl<true>(ctx, "space_to_depth_grad_rows", dyk, dx, B, H,
                              W, C, s, idx, kept);
}

//===--- Layer scale ------------------------------------------------------===//

/// y[r, j] = x[r, j] * gamma[j], V elements per thread (n % V == 0).
template <int V, class TX, class TY>
__global__ void __launch_bounds__(kThreads)
    layer_scale_kernel(const TX *x, const float *gamma, TY *y, int64_t nv,
                       int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < nv;
       i += int64_t(gridDim.x) * blockDim.x) {
    float v[V];
    ld_vec<V>(x, i, v);
    const int64_t j = (i * V) % n;
#pragma unroll
    for (int k = 0; k < V; ++k)
      v[k] *= gamma[j + k];
    st_vec<V>(y, i, v);
  }
}

template <class TX, class TY>
inline void layer_scale_impl(const Context &ctx, const TX *x,
                             const float *gamma, TY *y, int64_t rows,
                             int64_t n) {
  if (rows < 0 || n < 0) {
    fail_arg("layer_scale", "negative size");
    return;
  }
  const int64_t total = rows * n;
  if (total == 0)
    return;
  constexpr bool kWide = kIsBf16<TX> || kIsBf16<TY>;
  const int v = row_vector_width<kWide>(n, x, y);
  with_width<kWide>(v, [&](auto wc) {
    constexpr int kV = decltype(wc)::value;
    layer_scale_kernel<kV><<<grid_for(ctx, total / kV), kThreads, 0,
                             ctx.stream>>>(x, gamma, y, total / kV, n);
  });
  check_launch("layer_scale");
}

/// dx = dy * gamma and the per-split column sums of dy * x (double), one
/// block per (32 columns, row split), 8 row lanes; the lanes are added in
/// lane order. splits == 1: dgamma directly.
constexpr int kLsCols = 32, kLsLanes = kThreads / kLsCols;

template <class TG, class TX, class TD>
__global__ void __launch_bounds__(kThreads)
    layer_scale_grad_kernel(const TG *dy, const TX *x, const float *gamma,
                            TD *dx, int64_t rows, int64_t n,
                            int64_t rows_per_split, double *partial,
                            float *dgamma) {
  __shared__ double sh[kLsLanes][kLsCols];
  const int cl = threadIdx.x % kLsCols, lane = threadIdx.x / kLsCols;
  const int64_t j = int64_t(blockIdx.x) * kLsCols + cl;
  const int64_t r0 = blockIdx.y * rows_per_split;
  const int64_t r1 = r0 + rows_per_split < rows ? r0 + rows_per_split : rows;
  double acc = 0.0;
  if (j < n) {
    const float g = gamma[j];
    for (int64_t r = r0 + lane; r < r1; r += kLsLanes) {
      const float d = to_f32(dy[r * n + j]);
      dx[r * n + j] = from_f32<TD>(d * g);
      acc += double(d) * double(to_f32(x[r * n + j]));
    }
  }
  sh[lane][cl] = acc;
  __syncthreads();
  if (lane == 0 && j < n) {
    double s = 0.0;
    for (int l = 0; l < kLsLanes; ++l)
      s += sh[l][cl];
    if (gridDim.y == 1)
      dgamma[j] = float(s);
    else
      partial[int64_t(blockIdx.y) * n + j] = s;
  }
}

template <class TG, class TX, class TD>
inline void layer_scale_grad_impl(const Context &ctx, const TG *dy,
                                  const TX *x, const float *gamma, TD *dx,
                                  float *dgamma, int64_t rows, int64_t n) {
  const char *name = "layer_scale_grad";
  if (rows < 0 || n < 0) {
    fail_arg(name, "negative size");
    return;
  }
  if (n == 0)
    return;
  if (rows == 0) {
    cudaMemsetAsync(dgamma, 0, size_t(n) * sizeof(float), ctx.stream);
    check_launch(name);
    return;
  }
  const int64_t tiles = ceil_div(n, kLsCols);
  if (tiles > 0x7fffffff) {
    fail_arg(name, "too many columns");
    return;
  }
  // Split the rows until the grid fills the machine (each lane >= 32 rows),
  // the partials fitting in scratch; the split depends only on the sizes.
  int64_t splits = ceil_div(int64_t(sm_count(ctx)) * 8, tiles);
  splits = std::min(splits, ceil_div(rows, int64_t(kLsLanes) * 32));
  splits = std::min<int64_t>(splits, 65535);
  splits = std::min(splits,
                    int64_t(ctx.scratch ? ctx.scratch_bytes : 0) / (n * 8));
  double *partial = nullptr;
  if (splits > 1)
    partial = ScratchCursor(ctx).take<double>(size_t(splits * n));
  if (!partial)
    splits = 1;
  const int64_t per = ceil_div(rows, splits);
  splits = ceil_div(rows, per);
  const dim3 grid{unsigned(tiles), unsigned(splits)};
  layer_scale_grad_kernel<<<grid, kThreads, 0, ctx.stream>>>(
      dy, x, gamma, dx, rows, n, per, partial, dgamma);
  check_launch(name);
  if (splits > 1) {
    const dim3 fgrid{unsigned(ceil_div(n, kFinalizeCols)), 1u};
    colsum_finalize_kernel<<<fgrid, kFinalizeCols * kFinalizeLanes, 0,
                             ctx.stream>>>(partial, 1, int(splits), n, dgamma,
                                           1.0);
    check_launch(name);
  }
}

} // namespace detail
} // namespace cuda
} // namespace sbp

#endif // SBP_CUDA_DETAIL_CONV_CUH
