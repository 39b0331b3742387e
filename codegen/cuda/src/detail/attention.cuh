//===- detail/attention.cuh - float32 attention (tiled and warp kernels) -*- CUDA -*-===//
//
// Internal to the CUDA kernel library (libsbp_cuda_kernels.a): kernel
// bodies and launch templates, included by the translation units in
// codegen/cuda/src, never by trainers (they include <sbp/cuda_kernels.h>).
//
//===----------------------------------------------------------------------===//
#ifndef SBP_CUDA_DETAIL_ATTENTION_CUH
#define SBP_CUDA_DETAIL_ATTENTION_CUH

#include "detail/pointwise.cuh"

namespace sbp {
namespace cuda {
namespace detail {

//===--- Attention --------------------------------------------------------===//
// fp32 FlashAttention on CUDA cores over timm's qkv layout, deterministic (no
// atomics anywhere).
//  - Dh <= 64: tiled kernels of 128 threads (4 warps), templated on the
//    padded head dim kDh (32 or 64). Every CTA owns one tile of one (batch,
//    head) and streams the other side in tiles of 32 rows through shared
//    memory. The inner loops are register-blocked outer products; operands
//    that a thread reads at several rows for one head dim are stored
//    transposed ([d][row], 16-byte rows) so those reads are float4
//    broadcasts. A warp whose rows are all padding skips the arithmetic (it
//    still helps load), so the last, mostly empty tile of T = 197 costs
//    little.
//  - 64 < Dh <= 128: one warp per query (key) row, a warp reduction per
//    score. Correct, slower; no ViT uses it.
// Forward: a CTA owns 64 queries and streams the keys with an online
// softmax. With a keep list a small one-block kernel first splits the
// tokens into the free ones (attend all T keys) and the kept ones (attend
// the kept keys), and the query tiles run over those two lists: a kept
// query's tile streams only the kept keys, so no score is computed to be
// masked away (at keep 0.5 about 3/4 of the plain forward's work).
// Backward: two passes over the score matrix, both recomputing P and dS
// with the same tile function (attn_bwd_probs): a query-stationary pass
// (dQ; it also computes D = rowsum(dO * O) of its queries into scratch),
// then a key-stationary pass (dK, dV) that reads D. No partial sum is
// shared between CTAs.
// Every tile product goes through attn_tile_dot (4 x 4 register tiles of a
// 64 x 32 product), the loop a tensor-core version would replace. The
// kernels are bound by shared-memory bandwidth, which is paid per thread
// and byte (a broadcast float4 read costs as much as a distinct one): a
// thread loads ~0.4 floats per FMA. Measured on an H200, 8 x 8 register
// tiles in 64-thread CTAs were slower (fewer warps to hide latency, and
// coarser skipping of padding rows).

constexpr int kAttnThreads = 128;
constexpr int kAttnWarps = kAttnThreads / 32;
constexpr int kAttnTiledMaxDh = 64;
constexpr int kAttnMaxDh = 128;
constexpr int kAttnRows = 64; // rows of a CTA's stationary tile
constexpr int kAttnN = 32;    // rows of a streamed tile
constexpr int kAttnS = kAttnRows + 4; // row stride of [d][64 rows] tiles

/// One attention call; every kernel takes it by value.
struct AttnParams {
  const float *qkv = nullptr; // [B, T, 3*H*Dh]
  // Forward.
  float *o = nullptr;         // [B, T, H*Dh]
  float *lse_out = nullptr;   // [B, T, H], nullable
  /// With a keep list: free tokens ascending at [0, nfree), kept tokens
  /// ascending at [T, T + nkept); nfree at [2T], nkept at [2T + 1].
  const int32_t *lists = nullptr;
  int free_tiles = 0; // forward CTAs per (b, h) over the free tokens
  // Backward: o_in, lse, dout hold one row per query index q < Tq.
  const float *o_in = nullptr, *lse = nullptr, *dout = nullptr;
  float *dqkv = nullptr;
  float *rowdot = nullptr;            // scratch [B, H, Tq]: D of each query
  const int32_t *row_keep = nullptr;  // attention_bwd: [T]
  const int32_t *head_keep = nullptr; // attention_bwd: [H]
  const int32_t *queries = nullptr;   // attention_bwd_queries: keep[0..Tq)
  bool query_list = false;            // attention_bwd_queries
  int B = 0, T = 0, H = 0, Dh = 0, Tq = 0;
  int tiles = 0; // CTAs per (b, h)
  float scale = 1.0f;
  bool vec = false; // Dh % 4 == 0 and every tensor 16-byte aligned
};

__device__ __forceinline__ int64_t attn_ld_qkv(const AttnParams &p) {
  return int64_t(3) * p.H * p.Dh;
}
__device__ __forceinline__ int64_t attn_ld_o(const AttnParams &p) {
  return int64_t(p.H) * p.Dh;
}

/// qkv row of backward query q (< Tq), or -1 if it does not take part.
__device__ __forceinline__ int attn_query_row(const AttnParams &p, int q) {
  if (q >= p.Tq)
    return -1;
  if (p.query_list) {
    const int r = __ldg(p.queries + q);
    return r >= 0 && r < p.T ? r : -1;
  }
  return !p.row_keep || __ldg(p.row_keep + q) >= 0 ? q : -1;
}
/// Backward: key row j takes part.
__device__ __forceinline__ bool attn_key_ok(const AttnParams &p, int j) {
  return j < p.T && (!p.row_keep || __ldg(p.row_keep + j) >= 0);
}
/// attention_bwd: head h gets a gradient.
__device__ __forceinline__ bool attn_head_kept(const AttnParams &p, int h) {
  if (!p.head_keep)
    return true;
  for (int i = 0; i < p.H; ++i)
    if (__ldg(p.head_keep + i) == h)
      return true;
  return false;
}
/// Bit r: token t0 + r is listed in keep[0..K). Whole warp, every lane gets
/// the word.
__device__ __forceinline__ uint32_t attn_warp_listed(const int32_t *keep,
                                                     int K, int t0) {
  uint32_t w = 0;
  for (int e = int(threadIdx.x & 31); e < K; e += 32) {
    const int t = __ldg(keep + e);
    if (t >= t0 && t - t0 < 32)
      w |= 1u << (t - t0);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    w |= __shfl_xor_sync(kFullMask, w, o);
  return w;
}

/// The probability and the scaled score gradient of one (query, key) pair
/// from s = q.k, dp = dO.v and the query's lse and D = rowsum(dO * O):
/// P = exp(scale s - lse), dS = scale P (dp - D), so dQ = dS K, dK = dS^T Q.
__device__ __forceinline__ void attn_prob_ds(float s, float dp, float lse,
                                             float rd, float scale, float &p,
                                             float &ds) {
  p = expf(scale * s - lse);
  ds = p * (dp - rd) * scale;
}

__device__ __forceinline__ float group8_max(float v) {
#pragma unroll
  for (int o = 4; o > 0; o >>= 1)
    v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}
__device__ __forceinline__ float group8_sum(float v) {
#pragma unroll
  for (int o = 4; o > 0; o >>= 1)
    v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

/// The 4 x 4 register tile of the thread (rg = t / 8, cl = t % 8) in a
/// 64 x 32 product of a transposed stationary tile sAT ([d][row], stride
/// kAttnS: rows rg*4 + i) and a row-major streamed one sX ([col][d], stride
/// kDh + 4: columns cl + 8*jj): out[i][jj] = sum_d A[row][d] X[col][d]. Per
/// 4 dims, 8 conflict-free float4 reads (32 floats a thread) feed 64 FMAs.
/// (The loop a tensor-core version would replace.)
template <int kDh>
__device__ __forceinline__ void attn_tile_dot(const float *sAT, const float *sX,
                                              int rg, int cl,
                                              float (&out)[4][4]) {
  constexpr int kS = kAttnS, kR = kDh + 4;
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int jj = 0; jj < 4; ++jj)
      out[i][jj] = 0.0f;
#pragma unroll 2
  for (int d = 0; d < kDh; d += 4) {
    float x[4][4];
#pragma unroll
    for (int jj = 0; jj < 4; ++jj) {
      const float4 v =
          *reinterpret_cast<const float4 *>(sX + (cl + 8 * jj) * kR + d);
      x[jj][0] = v.x;
      x[jj][1] = v.y;
      x[jj][2] = v.z;
      x[jj][3] = v.w;
    }
#pragma unroll
    for (int dd = 0; dd < 4; ++dd) {
      const float4 a =
          *reinterpret_cast<const float4 *>(sAT + (d + dd) * kS + rg * 4);
      const float av[4] = {a.x, a.y, a.z, a.w};
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int jj = 0; jj < 4; ++jj)
          out[i][jj] = fmaf(av[i], x[jj][dd], out[i][jj]);
    }
  }
}

/// Stores a thread's 4*kH values (dims 32*h + cl*4 + e) of one row to dst,
/// or zeros; dims >= Dh are dropped.
template <int kH>
__device__ __forceinline__ void attn_store_quads(float *dst,
                                                 const float (&a)[4 * kH],
                                                 int cl, int Dh, bool vec,
                                                 bool zero) {
#pragma unroll
  for (int hh = 0; hh < kH; ++hh) {
    const int d = 32 * hh + cl * 4;
    float v[4];
#pragma unroll
    for (int e = 0; e < 4; ++e)
      v[e] = zero ? 0.0f : a[4 * hh + e];
    if (vec) {
      if (d < Dh) // Dh % 4 == 0: all four or none
        *reinterpret_cast<float4 *>(dst + d) =
            make_float4(v[0], v[1], v[2], v[3]);
    } else {
#pragma unroll
      for (int e = 0; e < 4; ++e)
        if (d + e < Dh)
          dst[d + e] = v[e];
    }
  }
}

/// Loads rows 0..kRows-1 of a tile into shared memory: tile row r is source
/// row row_of(r) (-1: zeros) of `src` (row stride ld), columns >= Dh zero,
/// times scale. kTransposed: dst[d * kStride + r], else dst[r * kStride + d].
/// Float4 path (vec): a warp instruction reads 16 rows x 32 contiguous
/// bytes; transposed stores then hit 32 distinct banks (kStride % 32 == 4),
/// row-major ones are float4 (kStride % 4 == 0) or float2 (kStride % 32 ==
/// 2) and conflict-free too.
template <int kRows, int kDh, int kStride, bool kTransposed, class RowOf>
__device__ __forceinline__ void attn_load_tile(float *dst, const float *src,
                                               int64_t ld, int Dh, bool vec,
                                               float scale, RowOf row_of) {
  if (vec) {
    constexpr int kPairs = kDh / 8; // pairs of float4 columns
    constexpr int kItems = kRows / 16 * kPairs;
    static_assert(kItems % kAttnWarps == 0, "tile shape");
    constexpr int kPer = kItems / kAttnWarps;
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    float4 x[kPer];
#pragma unroll
    for (int u = 0; u < kPer; ++u) {
      const int it = w + u * kAttnWarps;
      const int r = it / kPairs * 16 + (lane & 15);
      const int c = ((it % kPairs) * 2 + (lane >> 4)) * 4;
      const int row = c < Dh ? row_of(r) : -1;
      x[u] = row >= 0 ? *reinterpret_cast<const float4 *>(
                            src + int64_t(row) * ld + c)
                      : make_float4(0.f, 0.f, 0.f, 0.f);
    }
#pragma unroll
    for (int u = 0; u < kPer; ++u) {
      const int it = w + u * kAttnWarps;
      const int r = it / kPairs * 16 + (lane & 15);
      const int c = ((it % kPairs) * 2 + (lane >> 4)) * 4;
      const float4 v = make_float4(x[u].x * scale, x[u].y * scale,
                                   x[u].z * scale, x[u].w * scale);
      if constexpr (kTransposed) {
        dst[(c + 0) * kStride + r] = v.x;
        dst[(c + 1) * kStride + r] = v.y;
        dst[(c + 2) * kStride + r] = v.z;
        dst[(c + 3) * kStride + r] = v.w;
      } else if constexpr (kStride % 4 == 0) {
        *reinterpret_cast<float4 *>(dst + r * kStride + c) = v;
      } else {
        static_assert(kStride % 2 == 0, "float2 rows");
        *reinterpret_cast<float2 *>(dst + r * kStride + c) =
            make_float2(v.x, v.y);
        *reinterpret_cast<float2 *>(dst + r * kStride + c + 2) =
            make_float2(v.z, v.w);
      }
    }
  } else {
    for (int e = threadIdx.x; e < kRows * kDh; e += kAttnThreads) {
      const int r = e / kDh, d = e % kDh;
      const int row = d < Dh ? row_of(r) : -1;
      const float val = row >= 0 ? src[int64_t(row) * ld + d] * scale : 0.0f;
      dst[kTransposed ? d * kStride + r : r * kStride + d] = val;
    }
  }
}

/// One-block kernel: splits the T tokens by membership in keep[0..K) into
/// the free and the kept list (both ascending) and their counts, as
/// AttnParams::lists describes; flags (T ints) is its working space.
template <int kUnused = 0>
__global__ void __launch_bounds__(1024)
    attention_keep_lists_kernel(const int32_t *keep, int K, int T,
                                int32_t *lists, int32_t *flags) {
  __shared__ int warp_kept[32];
  const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
  const int nthreads = blockDim.x, nwarps = nthreads / 32;
  for (int t = tid; t < T; t += nthreads)
    flags[t] = 0;
  __syncthreads();
  for (int e = tid; e < K; e += nthreads) {
    const int t = keep[e];
    if (t >= 0 && t < T)
      flags[t] = 1; // repeated entries write the same value
  }
  __syncthreads();
  int nkept = 0; // before this chunk, the same in every thread
  for (int c0 = 0; c0 < T; c0 += nthreads) {
    const int t = c0 + tid;
    const bool in = t < T, kept = in && flags[t] != 0;
    const unsigned ballot = __ballot_sync(kFullMask, kept);
    if (lane == 0)
      warp_kept[w] = __popc(ballot);
    __syncthreads();
    int before = nkept, total = nkept;
    for (int x = 0; x < nwarps; ++x) {
      before += x < w ? warp_kept[x] : 0;
      total += warp_kept[x];
    }
    before += __popc(ballot & ((1u << lane) - 1u));
    if (kept)
      lists[T + before] = t;
    else if (in)
      lists[t - before] = t; // free tokens before t: t - kept before t
    __syncthreads(); // warp_kept is rewritten by the next chunk
    nkept = total;
  }
  if (tid == 0) {
    lists[2 * T] = T - nkept;
    lists[2 * T + 1] = nkept;
  }
}

/// Forward, Dh <= kDh <= 64: a CTA owns 64 queries of one (batch, head)
/// (from the free or the kept list with a keep list) and streams their keys
/// in tiles of 32. Thread (rg = t / 8, cl = t % 8): query rows rg*4 + i
/// (i < 4), key columns cl + 8*jj (jj < 4), output dims 32*h + cl*4 + e.
/// Shared-memory reads are float4 and conflict-free: 8 FMAs per wavefront
/// in the scores, ~11 in P V.
template <int kDh>
__global__ void __launch_bounds__(kAttnThreads, 4)
    attention_fwd_tiled_kernel(const AttnParams p) {
  constexpr int kQ = kAttnRows, kK = kAttnN, kH = kDh / 32;
  constexpr int kQS = kAttnS, kRS = kDh + 4; // 16-byte rows, 4 banks apart
  __shared__ __align__(16) float sqT[kDh * kQS]; // [d][query], pre-scaled
  __shared__ __align__(16) float sk[kK * kRS];   // [key][d]
  __shared__ __align__(16) float sv[kK * kRS];   // [key][d]
  __shared__ __align__(16) float spT[kK * kQS];  // [key][query]
  const int t = threadIdx.x, warp = t >> 5, rg = t >> 3, cl = t & 7;
  const int bh = blockIdx.x / p.tiles, tile = blockIdx.x % p.tiles;
  const int b = bh / p.H, h = bh % p.H, T = p.T;
  // The queries (and their keys): all tokens, the free ones (all keys) or
  // the kept ones (kept keys).
  const int32_t *qlist = nullptr, *klist = nullptr;
  int nq = T, nk = T, i0 = tile * kQ;
  if (p.lists) {
    if (tile < p.free_tiles) {
      qlist = p.lists;
      nq = __ldg(p.lists + 2 * T);
    } else {
      qlist = klist = p.lists + T;
      nq = nk = __ldg(p.lists + 2 * T + 1);
      i0 = (tile - p.free_tiles) * kQ;
    }
  }
  if (i0 >= nq) // a tile of the upper bound the host launched: no query
    return;
  const int64_t ld = attn_ld_qkv(p), hd = int64_t(p.H) * p.Dh;
  const float *qb = p.qkv + int64_t(b) * T * ld + int64_t(h) * p.Dh;
  const float *kb = qb + hd, *vb = qb + 2 * hd;
  const auto qrow = [&](int r) {
    const int i = i0 + r;
    return i < nq ? (qlist ? __ldg(qlist + i) : i) : -1;
  };
  attn_load_tile<kQ, kDh, kQS, true>(sqT, qb, ld, p.Dh, p.vec, p.scale, qrow);
  const bool active = i0 + warp * 16 < nq; // the warp has a real query
  float m[4], l[4], acc[4][4 * kH];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.0f;
#pragma unroll
    for (int e = 0; e < 4 * kH; ++e)
      acc[i][e] = 0.0f;
  }
  for (int j0 = 0; j0 < nk; j0 += kK) {
    __syncthreads(); // the previous tile's reads are done
    const auto krow = [&](int r) {
      const int j = j0 + r;
      return j < nk ? (klist ? __ldg(klist + j) : j) : -1;
    };
    attn_load_tile<kK, kDh, kRS, false>(sk, kb, ld, p.Dh, p.vec, 1.0f, krow);
    attn_load_tile<kK, kDh, kRS, false>(sv, vb, ld, p.Dh, p.vec, 1.0f, krow);
    __syncthreads();
    if (!active)
      continue;
    float s[4][4];
    attn_tile_dot<kDh>(sqT, sk, rg, cl, s);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      float mx = -INFINITY;
#pragma unroll
      for (int jj = 0; jj < 4; ++jj) {
        if (j0 + cl + 8 * jj >= nk)
          s[i][jj] = -INFINITY;
        mx = fmaxf(mx, s[i][jj]);
      }
      // Finite: key j0 of every tile is a real key.
      const float mNew = fmaxf(m[i], group8_max(mx));
      const float rescale = expf(m[i] - mNew); // 0 on the first tile
      float sum = 0.0f;
#pragma unroll
      for (int jj = 0; jj < 4; ++jj)
        sum += (s[i][jj] = expf(s[i][jj] - mNew));
      l[i] = l[i] * rescale + group8_sum(sum);
      m[i] = mNew;
#pragma unroll
      for (int e = 0; e < 4 * kH; ++e)
        acc[i][e] *= rescale;
    }
#pragma unroll
    for (int jj = 0; jj < 4; ++jj)
      *reinterpret_cast<float4 *>(spT + (cl + 8 * jj) * kQS + rg * 4) =
          make_float4(s[0][jj], s[1][jj], s[2][jj], s[3][jj]);
    __syncwarp(); // a row group reads only the P rows its 8 lanes wrote
#pragma unroll 4
    for (int j = 0; j < kK; ++j) {
      const float4 p4 =
          *reinterpret_cast<const float4 *>(spT + j * kQS + rg * 4);
      const float pr[4] = {p4.x, p4.y, p4.z, p4.w};
#pragma unroll
      for (int hh = 0; hh < kH; ++hh) {
        const float4 v = *reinterpret_cast<const float4 *>(
            sv + j * kRS + 32 * hh + cl * 4);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          acc[i][4 * hh + 0] = fmaf(pr[i], v.x, acc[i][4 * hh + 0]);
          acc[i][4 * hh + 1] = fmaf(pr[i], v.y, acc[i][4 * hh + 1]);
          acc[i][4 * hh + 2] = fmaf(pr[i], v.z, acc[i][4 * hh + 2]);
          acc[i][4 * hh + 3] = fmaf(pr[i], v.w, acc[i][4 * hh + 3]);
        }
      }
    }
  }
  if (!active)
    return;
  const int64_t ldo = attn_ld_o(p);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int tok = qrow(rg * 4 + i);
    if (tok < 0)
      continue;
    const float inv = 1.0f / l[i]; // l >= 1: the maximum's own term
#pragma unroll
    for (int e = 0; e < 4 * kH; ++e)
      acc[i][e] *= inv;
    attn_store_quads<kH>(p.o + (int64_t(b) * T + tok) * ldo +
                             int64_t(h) * p.Dh,
                         acc[i], cl, p.Dh, p.vec, false);
    if (p.lse_out && cl == 0)
      p.lse_out[(int64_t(b) * T + tok) * p.H + h] = m[i] + logf(l[i]);
  }
}

/// The backward's tile of probabilities P and scaled score gradients dS,
/// shared by both passes: rows r = rg*4 + i (i < 4) of the 64 stationary
/// rows, columns c = cl + 8*jj (jj < 4) of the 32 streamed ones. s = A_r .
/// X_c and dp = B_r . Y_c (attn_tile_dot), with A, B transposed ([d][row],
/// stride kAttnS) and X, Y row-major ([col][d], stride kDh + 4). The query
/// of a pair is the row (dQ pass: A = Q, B = dO, X = K, Y = V) or the
/// column (dK/dV pass: A = K, B = V, X = Q, Y = dO); slse and srd hold its
/// lse and D, +inf and 0 for a query that does not take part (whose rows
/// are zeros: P = 0). Bit k of key_bits: key k of the tile takes part.
template <int kDh, bool kRowIsQuery>
__device__ __forceinline__ void
attn_bwd_probs(const float *sAT, const float *sBT, const float *sX,
               const float *sY, const float *slse, const float *srd,
               uint64_t key_bits, float scale, int rg, int cl,
               float (&p)[4][4], float (&ds)[4][4]) {
  float s[4][4], dp[4][4];
  attn_tile_dot<kDh>(sAT, sX, rg, cl, s);
  attn_tile_dot<kDh>(sBT, sY, rg, cl, dp);
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int jj = 0; jj < 4; ++jj) {
      const int r = rg * 4 + i, c = cl + 8 * jj;
      const int qi = kRowIsQuery ? r : c, kj = kRowIsQuery ? c : r;
      float pv = 0.0f, dv = 0.0f;
      if ((key_bits >> kj) & 1u)
        attn_prob_ds(s[i][jj], dp[i][jj], slse[qi], srd[qi], scale, pv, dv);
      p[i][jj] = pv;
      ds[i][jj] = dv;
    }
}

/// Zeros rows [r0, r0 + n) ∩ [0, rows) of a Dh-wide column block (row
/// stride ld) with the whole CTA.
__device__ __forceinline__ void attn_zero_rows(float *base, int64_t ld,
                                               int r0, int n, int rows,
                                               int Dh) {
  for (int e = threadIdx.x; e < n * Dh; e += kAttnThreads) {
    const int r = r0 + e / Dh;
    if (r < rows)
      base[int64_t(r) * ld + e % Dh] = 0.0f;
  }
}

/// Dynamic shared memory of the backward kernels, in floats.
template <int kDh> constexpr int attn_bwd_dq_smem_floats() {
  return 2 * kDh * kAttnS + 2 * kAttnN * (kDh + 4) + kAttnN * kAttnS +
         3 * kAttnRows;
}
template <int kDh> constexpr int attn_bwd_dkdv_smem_floats() {
  return 2 * kDh * kAttnS + 2 * kAttnN * (kDh + 4) + 2 * kAttnN * kAttnS +
         2 * kAttnN;
}

/// Backward pass 1, dQ, Dh <= kDh <= 64: a CTA owns 64 queries of one
/// (batch, head), computes their D = rowsum(dO * O) (to p.rowdot for pass
/// 2) and streams the keys in tiles of 32. Thread (rg = t / 8, cl = t % 8):
/// query rows rg*4 + i, key columns cl + 8*jj, head dims 32*h + cl*4 + e.
template <int kDh>
__global__ void __launch_bounds__(kAttnThreads, 3)
    attention_bwd_dq_tiled_kernel(const AttnParams p) {
  constexpr int kN = kAttnN, kM = kAttnRows, kS = kAttnS, kR = kDh + 4,
                kH = kDh / 32;
  extern __shared__ __align__(16) float attn_smem[];
  float *sqT = attn_smem;       // [d][query]
  float *sgT = sqT + kDh * kS;  // dO, [d][query]
  float *sk = sgT + kDh * kS;   // [key][d]; O ([query][d]) at the start
  float *sv = sk + kN * kR;     // [key][d]
  float *sdS = sv + kN * kR;    // [key][query]
  float *slse = sdS + kN * kS;  // [query]
  float *srd = slse + kM;       // [query]
  int *srow = reinterpret_cast<int *>(srd + kM); // qkv row, -1: none
  const int t = threadIdx.x, warp = t >> 5, lane = t & 31, rg = t >> 3,
            cl = t & 7;
  const int bh = blockIdx.x / p.tiles, i0 = (blockIdx.x % p.tiles) * kM;
  const int b = bh / p.H, h = bh % p.H;
  const int64_t ld = attn_ld_qkv(p), ldo = attn_ld_o(p),
                hd = int64_t(p.H) * p.Dh;
  const float *qb = p.qkv + int64_t(b) * p.T * ld + int64_t(h) * p.Dh;
  float *dqb = p.dqkv + int64_t(b) * p.T * ld + int64_t(h) * p.Dh;
  if (!attn_head_kept(p, h)) { // (attention_bwd only: Tq == T)
    attn_zero_rows(dqb, ld, i0, kM, p.T, p.Dh);
    return;
  }
  if (t < kM) {
    const int row = attn_query_row(p, i0 + t);
    srow[t] = row;
    slse[t] = row >= 0 ? p.lse[(int64_t(b) * p.Tq + i0 + t) * p.H + h]
                       : INFINITY; // P = 0
  }
  __syncthreads();
  const float *gb = p.dout + int64_t(b) * p.Tq * ldo + int64_t(h) * p.Dh;
  const float *ob = p.o_in + int64_t(b) * p.Tq * ldo + int64_t(h) * p.Dh;
  const auto qrow = [&](int r) { return srow[r]; };
  const auto grow = [&](int r) { return srow[r] >= 0 ? i0 + r : -1; };
  attn_load_tile<kM, kDh, kS, true>(sqT, qb, ld, p.Dh, p.vec, 1.0f, qrow);
  attn_load_tile<kM, kDh, kS, true>(sgT, gb, ldo, p.Dh, p.vec, 1.0f, grow);
  attn_load_tile<kM, kDh, kR, false>(sk, ob, ldo, p.Dh, p.vec, 1.0f, grow);
  __syncthreads();
  { // D of query r: 2 threads, dims half + 2*k
    const int r = t >> 1, half = t & 1;
    float s = 0.0f;
#pragma unroll 4
    for (int d = half; d < kDh; d += 2)
      s = fmaf(sgT[d * kS + r], sk[r * kR + d], s);
    s += __shfl_xor_sync(kFullMask, s, 1);
    if (half == 0) {
      srd[r] = srow[r] >= 0 ? s : 0.0f;
      if (i0 + r < p.Tq)
        p.rowdot[int64_t(bh) * p.Tq + i0 + r] = srow[r] >= 0 ? s : 0.0f;
    }
  }
  const bool active =
      __any_sync(kFullMask, lane < 16 && srow[warp * 16 + lane] >= 0);
  const float *kb = qb + hd, *vb = qb + 2 * hd;
  float adq[4][4 * kH];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int e = 0; e < 4 * kH; ++e)
      adq[i][e] = 0.0f;
  for (int j0 = 0; j0 < p.T; j0 += kN) {
    __syncthreads(); // the previous tile's (and O's) reads are done
    const auto krow = [&](int r) {
      return attn_key_ok(p, j0 + r) ? j0 + r : -1;
    };
    attn_load_tile<kN, kDh, kR, false>(sk, kb, ld, p.Dh, p.vec, 1.0f, krow);
    attn_load_tile<kN, kDh, kR, false>(sv, vb, ld, p.Dh, p.vec, 1.0f, krow);
    const uint32_t key_bits =
        __ballot_sync(kFullMask, attn_key_ok(p, j0 + lane));
    __syncthreads();
    if (!active)
      continue;
    float pr[4][4], ds[4][4];
    attn_bwd_probs<kDh, true>(sqT, sgT, sk, sv, slse, srd, key_bits, p.scale,
                              rg, cl, pr, ds);
#pragma unroll
    for (int jj = 0; jj < 4; ++jj)
      *reinterpret_cast<float4 *>(sdS + (cl + 8 * jj) * kS + rg * 4) =
          make_float4(ds[0][jj], ds[1][jj], ds[2][jj], ds[3][jj]);
    __syncwarp(); // a row group reads only the dS columns its lanes wrote
#pragma unroll 4
    for (int j = 0; j < kN; ++j) {
      const float4 d4 =
          *reinterpret_cast<const float4 *>(sdS + j * kS + rg * 4);
      const float dr[4] = {d4.x, d4.y, d4.z, d4.w};
#pragma unroll
      for (int hh = 0; hh < kH; ++hh) {
        const float4 k4 = *reinterpret_cast<const float4 *>(
            sk + j * kR + 32 * hh + cl * 4);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          adq[i][4 * hh + 0] = fmaf(dr[i], k4.x, adq[i][4 * hh + 0]);
          adq[i][4 * hh + 1] = fmaf(dr[i], k4.y, adq[i][4 * hh + 1]);
          adq[i][4 * hh + 2] = fmaf(dr[i], k4.z, adq[i][4 * hh + 2]);
          adq[i][4 * hh + 3] = fmaf(dr[i], k4.w, adq[i][4 * hh + 3]);
        }
      }
    }
    __syncwarp(); // sdS is rewritten by the next tile
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int r = rg * 4 + i;
    int row = srow[r];
    const bool zero = row < 0;
    if (zero) // a row that does not take part: zero dq (attention_bwd)
      row = !p.query_list && i0 + r < p.Tq ? i0 + r : -1;
    if (row >= 0)
      attn_store_quads<kH>(dqb + int64_t(row) * ld, adq[i], cl, p.Dh, p.vec,
                           zero);
  }
}

/// Backward pass 2, dK and dV, Dh <= kDh <= 64: a CTA owns 64 keys of one
/// (batch, head) and streams the queries in tiles of 32, reading their D
/// from pass 1. Thread (rg = t / 8, cl = t % 8): key rows rg*4 + i, query
/// columns cl + 8*jj, head dims 32*h + cl*4 + e. With a query list it also
/// writes the zero dq of its rows that are no query.
template <int kDh>
__global__ void __launch_bounds__(kAttnThreads, 3)
    attention_bwd_dkdv_tiled_kernel(const AttnParams p) {
  constexpr int kN = kAttnN, kM = kAttnRows, kS = kAttnS, kR = kDh + 4,
                kH = kDh / 32;
  extern __shared__ __align__(16) float attn_smem[];
  float *skT = attn_smem;      // [d][key]
  float *svT = skT + kDh * kS; // [d][key]
  float *sq = svT + kDh * kS;  // [query][d]
  float *sg = sq + kN * kR;    // dO, [query][d]
  float *sP = sg + kN * kR;    // [query][key]
  float *sdS = sP + kN * kS;   // [query][key]
  float *slse = sdS + kN * kS; // [query]
  float *srd = slse + kN;      // [query]
  const int t = threadIdx.x, warp = t >> 5, lane = t & 31, rg = t >> 3,
            cl = t & 7;
  const int bh = blockIdx.x / p.tiles, j0 = (blockIdx.x % p.tiles) * kM;
  const int b = bh / p.H, h = bh % p.H;
  const int64_t ld = attn_ld_qkv(p), ldo = attn_ld_o(p),
                hd = int64_t(p.H) * p.Dh;
  const float *qb = p.qkv + int64_t(b) * p.T * ld + int64_t(h) * p.Dh;
  float *dqb = p.dqkv + int64_t(b) * p.T * ld + int64_t(h) * p.Dh;
  float *dkb = dqb + hd, *dvb = dqb + 2 * hd;
  if (p.query_list) { // dq = 0 at the rows that are no query
    const uint64_t listed =
        attn_warp_listed(p.queries, p.Tq, j0) |
        uint64_t(attn_warp_listed(p.queries, p.Tq, j0 + 32)) << 32;
    for (int e = t; e < kM * p.Dh; e += kAttnThreads) {
      const int r = e / p.Dh;
      if (j0 + r < p.T && !((listed >> r) & 1u))
        dqb[int64_t(j0 + r) * ld + e % p.Dh] = 0.0f;
    }
  }
  const uint64_t key_bits =
      __ballot_sync(kFullMask, attn_key_ok(p, j0 + lane)) |
      uint64_t(__ballot_sync(kFullMask, attn_key_ok(p, j0 + 32 + lane)))
          << 32;
  if (!attn_head_kept(p, h) || key_bits == 0) {
    attn_zero_rows(dkb, ld, j0, kM, p.T, p.Dh);
    attn_zero_rows(dvb, ld, j0, kM, p.T, p.Dh);
    return;
  }
  const auto krow = [&](int r) { return (key_bits >> r) & 1u ? j0 + r : -1; };
  attn_load_tile<kM, kDh, kS, true>(skT, qb + hd, ld, p.Dh, p.vec, 1.0f, krow);
  attn_load_tile<kM, kDh, kS, true>(svT, qb + 2 * hd, ld, p.Dh, p.vec, 1.0f,
                                    krow);
  const bool active = ((key_bits >> (warp * 16)) & 0xffffu) != 0;
  const float *gb = p.dout + int64_t(b) * p.Tq * ldo + int64_t(h) * p.Dh;
  float adk[4][4 * kH], adv[4][4 * kH];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int e = 0; e < 4 * kH; ++e)
      adk[i][e] = adv[i][e] = 0.0f;
  for (int i0 = 0; i0 < p.Tq; i0 += kN) {
    __syncthreads(); // the previous tile's reads are done
    const auto qrow = [&](int r) { return attn_query_row(p, i0 + r); };
    const auto grow = [&](int r) {
      return attn_query_row(p, i0 + r) >= 0 ? i0 + r : -1;
    };
    attn_load_tile<kN, kDh, kR, false>(sq, qb, ld, p.Dh, p.vec, 1.0f, qrow);
    attn_load_tile<kN, kDh, kR, false>(sg, gb, ldo, p.Dh, p.vec, 1.0f, grow);
    if (t < kN) {
      const bool in = attn_query_row(p, i0 + t) >= 0;
      slse[t] = in ? p.lse[(int64_t(b) * p.Tq + i0 + t) * p.H + h] : INFINITY;
      srd[t] = in ? p.rowdot[int64_t(bh) * p.Tq + i0 + t] : 0.0f;
    }
    __syncthreads();
    if (!active)
      continue;
    float pr[4][4], ds[4][4];
    attn_bwd_probs<kDh, false>(skT, svT, sq, sg, slse, srd, key_bits, p.scale,
                               rg, cl, pr, ds);
#pragma unroll
    for (int jj = 0; jj < 4; ++jj) {
      *reinterpret_cast<float4 *>(sP + (cl + 8 * jj) * kS + rg * 4) =
          make_float4(pr[0][jj], pr[1][jj], pr[2][jj], pr[3][jj]);
      *reinterpret_cast<float4 *>(sdS + (cl + 8 * jj) * kS + rg * 4) =
          make_float4(ds[0][jj], ds[1][jj], ds[2][jj], ds[3][jj]);
    }
    __syncwarp(); // a row group reads only the key rows its lanes wrote
#pragma unroll 2
    for (int j = 0; j < kN; ++j) {
      const float4 p4 = *reinterpret_cast<const float4 *>(sP + j * kS + rg * 4);
      const float4 d4 =
          *reinterpret_cast<const float4 *>(sdS + j * kS + rg * 4);
      const float pv[4] = {p4.x, p4.y, p4.z, p4.w};
      const float dv[4] = {d4.x, d4.y, d4.z, d4.w};
#pragma unroll
      for (int hh = 0; hh < kH; ++hh) {
        const float4 g = *reinterpret_cast<const float4 *>(
            sg + j * kR + 32 * hh + cl * 4);
        const float4 q = *reinterpret_cast<const float4 *>(
            sq + j * kR + 32 * hh + cl * 4);
        const float gv[4] = {g.x, g.y, g.z, g.w};
        const float qv[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            adv[i][4 * hh + e] = fmaf(pv[i], gv[e], adv[i][4 * hh + e]);
            adk[i][4 * hh + e] = fmaf(dv[i], qv[e], adk[i][4 * hh + e]);
          }
      }
    }
    __syncwarp(); // sP, sdS are rewritten by the next tile
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int r = rg * 4 + i;
    if (j0 + r >= p.T)
      continue;
    const bool zero = !((key_bits >> r) & 1u);
    attn_store_quads<kH>(dkb + int64_t(j0 + r) * ld, adk[i], cl, p.Dh, p.vec,
                         zero);
    attn_store_quads<kH>(dvb + int64_t(j0 + r) * ld, adv[i], cl, p.Dh, p.vec,
                         zero);
  }
}

/// Warp-per-row kernels for 64 < Dh <= 128: lane holds dims lane + 32 c.
constexpr int kAttnLaneDims = kAttnMaxDh / 32;

__device__ __forceinline__ void attn_load_row(float (&r)[kAttnLaneDims],
                                              const float *src, int Dh,
                                              int lane, float scale = 1.0f) {
#pragma unroll
  for (int c = 0; c < kAttnLaneDims; ++c) {
    const int d = lane + 32 * c;
    r[c] = d < Dh ? src[d] * scale : 0.0f;
  }
}
__device__ __forceinline__ float attn_dot(const float (&a)[kAttnLaneDims],
                                          const float *src, int Dh, int lane) {
  float s = 0.0f;
#pragma unroll
  for (int c = 0; c < kAttnLaneDims; ++c) {
    const int d = lane + 32 * c;
    if (d < Dh)
      s = fmaf(a[c], src[d], s);
  }
  return warp_sum(s);
}
__device__ __forceinline__ float attn_dot(const float (&a)[kAttnLaneDims],
                                          const float (&b)[kAttnLaneDims]) {
  float s = 0.0f;
#pragma unroll
  for (int c = 0; c < kAttnLaneDims; ++c)
    s = fmaf(a[c], b[c], s);
  return warp_sum(s);
}
__device__ __forceinline__ void attn_store_row(const float (&r)[kAttnLaneDims],
                                               float *dst, int Dh, int lane,
                                               float scale = 1.0f) {
#pragma unroll
  for (int c = 0; c < kAttnLaneDims; ++c) {
    const int d = lane + 32 * c;
    if (d < Dh)
      dst[d] = r[c] * scale;
  }
}

/// Forward: one warp per (b, h, query), the queries of the free list then
/// the kept list (or all tokens), as the tiled kernel.
template <int kUnused = 0>
__global__ void __launch_bounds__(kThreads)
    attention_fwd_warp_kernel(const AttnParams p) {
  const int lane = threadIdx.x & 31, T = p.T, Dh = p.Dh;
  const int64_t ld = attn_ld_qkv(p), ldo = attn_ld_o(p),
                hd = int64_t(p.H) * Dh;
  const int64_t rows = int64_t(p.B) * p.H * T;
  const int64_t nwarps = int64_t(gridDim.x) * (kThreads / 32);
  for (int64_t r = int64_t(blockIdx.x) * (kThreads / 32) + (threadIdx.x >> 5);
       r < rows; r += nwarps) {
    const int v = int(r % T);
    const int64_t bh = r / T, b = bh / p.H, h = bh % p.H;
    int tok = v, nk = T;
    const int32_t *klist = nullptr;
    if (p.lists) {
      const int nfree = __ldg(p.lists + 2 * T);
      if (v < nfree) {
        tok = __ldg(p.lists + v);
      } else {
        tok = __ldg(p.lists + T + v - nfree);
        klist = p.lists + T;
        nk = __ldg(p.lists + 2 * T + 1);
      }
    }
    const float *base = p.qkv + b * T * ld + h * Dh;
    float qr[kAttnLaneDims], acc[kAttnLaneDims] = {};
    attn_load_row(qr, base + int64_t(tok) * ld, Dh, lane, p.scale);
    float m = -INFINITY, l = 0.0f;
    for (int jj = 0; jj < nk; ++jj) {
      const int j = klist ? __ldg(klist + jj) : jj;
      const float *kj = base + int64_t(j) * ld + hd, *vj = kj + hd;
      const float s = attn_dot(qr, kj, Dh, lane);
      const float mNew = fmaxf(m, s);
      const float rescale = expf(m - mNew), pj = expf(s - mNew);
      l = l * rescale + pj;
      m = mNew;
#pragma unroll
      for (int c = 0; c < kAttnLaneDims; ++c) {
        const int d = lane + 32 * c;
        acc[c] = acc[c] * rescale + (d < Dh ? pj * vj[d] : 0.0f);
      }
    }
    attn_store_row(acc, p.o + (b * T + tok) * ldo + h * Dh, Dh, lane,
                   1.0f / l);
    if (p.lse_out && lane == 0)
      p.lse_out[(b * T + tok) * p.H + h] = m + logf(l);
  }
}

/// Backward pass 1 (dQ and D), one warp per (b, h, query).
template <int kUnused = 0>
__global__ void __launch_bounds__(kThreads)
    attention_bwd_dq_warp_kernel(const AttnParams p) {
  const int lane = threadIdx.x & 31, T = p.T, Tq = p.Tq, Dh = p.Dh;
  const int64_t ld = attn_ld_qkv(p), ldo = attn_ld_o(p),
                hd = int64_t(p.H) * Dh;
  const int64_t rows = int64_t(p.B) * p.H * Tq;
  const int64_t nwarps = int64_t(gridDim.x) * (kThreads / 32);
  for (int64_t r = int64_t(blockIdx.x) * (kThreads / 32) + (threadIdx.x >> 5);
       r < rows; r += nwarps) {
    const int qi = int(r % Tq);
    const int64_t bh = r / Tq, b = bh / p.H, h = bh % p.H;
    const float *base = p.qkv + b * T * ld + h * Dh;
    float *dqb = p.dqkv + b * T * ld + h * Dh;
    const int row = attn_head_kept(p, int(h)) ? attn_query_row(p, qi) : -1;
    float acc[kAttnLaneDims] = {};
    if (row < 0) {
      if (!p.query_list) // attention_bwd: zero dq for this row
        attn_store_row(acc, dqb + int64_t(qi) * ld, Dh, lane);
      if (lane == 0)
        p.rowdot[bh * Tq + qi] = 0.0f;
      continue;
    }
    const int64_t qo = (b * Tq + qi) * ldo + h * Dh;
    float qr[kAttnLaneDims], gr[kAttnLaneDims], orow[kAttnLaneDims];
    attn_load_row(qr, base + int64_t(row) * ld, Dh, lane);
    attn_load_row(gr, p.dout + qo, Dh, lane);
    attn_load_row(orow, p.o_in + qo, Dh, lane);
    const float rd = attn_dot(gr, orow);
    if (lane == 0)
      p.rowdot[bh * Tq + qi] = rd;
    const float li = p.lse[(b * Tq + qi) * p.H + h];
    for (int j = 0; j < T; ++j) {
      if (!attn_key_ok(p, j))
        continue;
      const float *kj = base + int64_t(j) * ld + hd, *vj = kj + hd;
      float pj, ds;
      attn_prob_ds(attn_dot(qr, kj, Dh, lane), attn_dot(gr, vj, Dh, lane), li,
                   rd, p.scale, pj, ds);
#pragma unroll
      for (int c = 0; c < kAttnLaneDims; ++c) {
        const int d = lane + 32 * c;
        if (d < Dh)
          acc[c] = fmaf(ds, kj[d], acc[c]);
      }
    }
    attn_store_row(acc, dqb + int64_t(row) * ld, Dh, lane);
  }
}

/// Backward pass 2 (dK, dV), one warp per (b, h, key).
template <int kUnused = 0>
__global__ void __launch_bounds__(kThreads)
    attention_bwd_dkdv_warp_kernel(const AttnParams p) {
  const int lane = threadIdx.x & 31, T = p.T, Tq = p.Tq, Dh = p.Dh;
  const int64_t ld = attn_ld_qkv(p), ldo = attn_ld_o(p),
                hd = int64_t(p.H) * Dh;
  const int64_t rows = int64_t(p.B) * p.H * T;
  const int64_t nwarps = int64_t(gridDim.x) * (kThreads / 32);
  for (int64_t r = int64_t(blockIdx.x) * (kThreads / 32) + (threadIdx.x >> 5);
       r < rows; r += nwarps) {
    const int j = int(r % T);
    const int64_t bh = r / T, b = bh / p.H, h = bh % p.H;
    const float *base = p.qkv + b * T * ld + h * Dh;
    float *dqj = p.dqkv + (b * T + j) * ld + h * Dh;
    float ak[kAttnLaneDims] = {}, av[kAttnLaneDims] = {};
    if (p.query_list &&
        !((attn_warp_listed(p.queries, Tq, j & ~31) >> (j & 31)) & 1u))
      attn_store_row(ak, dqj, Dh, lane); // no query: zero dq
    if (attn_head_kept(p, int(h)) && attn_key_ok(p, j)) {
      float kr[kAttnLaneDims], vr[kAttnLaneDims];
      attn_load_row(kr, base + int64_t(j) * ld + hd, Dh, lane);
      attn_load_row(vr, base + int64_t(j) * ld + 2 * hd, Dh, lane);
      for (int qi = 0; qi < Tq; ++qi) {
        const int row = attn_query_row(p, qi);
        if (row < 0)
          continue;
        const float *q = base + int64_t(row) * ld;
        const float *g = p.dout + (b * Tq + qi) * ldo + h * Dh;
        float pj, ds;
        attn_prob_ds(attn_dot(kr, q, Dh, lane), attn_dot(vr, g, Dh, lane),
                     p.lse[(b * Tq + qi) * p.H + h], p.rowdot[bh * Tq + qi],
                     p.scale, pj, ds);
#pragma unroll
        for (int c = 0; c < kAttnLaneDims; ++c) {
          const int d = lane + 32 * c;
          if (d < Dh) {
            av[c] = fmaf(pj, g[d], av[c]);
            ak[c] = fmaf(ds, q[d], ak[c]);
          }
        }
      }
    }
    attn_store_row(ak, dqj + hd, Dh, lane);
    attn_store_row(av, dqj + 2 * hd, Dh, lane);
  }
}

/// Opts a kernel into `bytes` of dynamic shared memory (above the default
/// 48 KiB) and launches it; host-only, allowed during stream capture.
template <class Kernel>
inline void attn_launch_dynamic(const Context &ctx, const char *name,
                                Kernel kernel, unsigned grid, size_t bytes,
                                const AttnParams &p) {
  const cudaError_t e = cudaFuncSetAttribute(
      kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
  if (e != cudaSuccess) {
    fail(int(e), name, cudaGetErrorString(e));
    return;
  }
  kernel<<<grid, kAttnThreads, bytes, ctx.stream>>>(p);
  check_launch(name);
}

template <int kDh>
inline void launch_attention_bwd_tiled(const Context &ctx, const char *name,
                                       AttnParams p, unsigned gq, int qtiles,
                                       unsigned gk, int ktiles) {
  if (p.Tq > 0) { // pass 1 (dQ, D) before pass 2 (dK, dV), which reads D
    p.tiles = qtiles;
    attn_launch_dynamic(ctx, name, attention_bwd_dq_tiled_kernel<kDh>, gq,
                        attn_bwd_dq_smem_floats<kDh>() * sizeof(float), p);
  }
  p.tiles = ktiles;
  attn_launch_dynamic(ctx, name, attention_bwd_dkdv_tiled_kernel<kDh>, gk,
                      attn_bwd_dkdv_smem_floats<kDh>() * sizeof(float), p);
}

/// Both backward passes of attention_bwd / attention_bwd_queries (p holds
/// the pointers, the modes and the scale).
inline void launch_attention_bwd(const Context &ctx, const char *name,
                                 AttnParams p, int64_t B, int64_t T, int64_t H,
                                 int64_t Dh, int64_t Tq) {
  if (Dh > kAttnMaxDh) {
    fail_arg(name, "head dim above 128");
    return;
  }
  const int64_t qtiles = ceil_div(Tq, kAttnRows),
                ktiles = ceil_div(T, kAttnRows);
  if (T > 0x7fffffff || Tq > 0x7fffffff || 3 * H * Dh > 0x7fffffff ||
      B * H * (qtiles > ktiles ? qtiles : ktiles) > 0x7fffffff) {
    fail_arg(name, "too many (batch, head, tile)s");
    return;
  }
  p.B = int(B);
  p.T = int(T);
  p.H = int(H);
  p.Dh = int(Dh);
  p.Tq = int(Tq);
  if (Tq > 0) {
    p.rowdot = ScratchCursor(ctx).take<float>(size_t(B * H * Tq));
    if (!p.rowdot) {
      fail_arg(name, "scratch too small (needs 4*B*H*Tq bytes)");
      return;
    }
  }
  const unsigned gq = unsigned(B * H * qtiles), gk = unsigned(B * H * ktiles);
  if (Dh <= 32) {
    launch_attention_bwd_tiled<32>(ctx, name, p, gq, int(qtiles), gk,
                                   int(ktiles));
  } else if (Dh <= kAttnTiledMaxDh) {
    launch_attention_bwd_tiled<64>(ctx, name, p, gq, int(qtiles), gk,
                                   int(ktiles));
  } else {
    if (Tq > 0) { // pass 1 (dQ, D) before pass 2 (dK, dV), which reads D
      attention_bwd_dq_warp_kernel<>
          <<<grid_for(ctx, B * H * Tq * 32), kThreads, 0, ctx.stream>>>(p);
      check_launch(name);
    }
    attention_bwd_dkdv_warp_kernel<>
        <<<grid_for(ctx, B * H * T * 32), kThreads, 0, ctx.stream>>>(p);
    check_launch(name);
  }
}


} // namespace detail
} // namespace cuda
} // namespace sbp

#endif // SBP_CUDA_DETAIL_ATTENTION_CUH
