//===- detail/attention_bf16.cuh - bfloat16 tensor-core attention (mma.sync, cp.async) -*- CUDA -*-===//
//
// Internal to the CUDA kernel library (libsbp_cuda_kernels.a).
//
//===----------------------------------------------------------------------===//
#ifndef SBP_CUDA_DETAIL_ATTENTION_BF16_CUH
#define SBP_CUDA_DETAIL_ATTENTION_BF16_CUH

#include "detail/attention_bf16_common.cuh"
#include "detail/attention_bf16_resident.cuh"
#include "sbp/kernel_scratch.h"

#include <cmath>
#include <cstdint>

namespace sbp {
namespace cuda {

namespace detail {
namespace abf16 {

//===--- Forward ----------------------------------------------------------===//

/// A CTA owns 64 queries of one (b, h): Q fragments in registers, keys and
/// values streamed in tiles of 64 (two stages), online softmax in fp32.
/// With a keep list every CTA first builds the keep bitmask of the T tokens
/// in shared memory; a kept query masks the keys that are not kept.
template <int kDh, bool kVec>
__global__ void __launch_bounds__(kCtaThreads, kVec ? 4 : 3)
    attn_bf16_fwd_kernel(const FwdParams p) {
  constexpr int kS = Geo<kDh>::kStride, kTE = Geo<kDh>::kElems;
  constexpr int kKS = kDh / 16, kNT = kTile / 8, kDT = kDh / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  // stage s: K tile at (2s)*kTE, V tile at (2s+1)*kTE. The Q tile is
  // loaded into stage 1's K slot (free once Q is in registers).
  bf16 *const sm = reinterpret_cast<bf16 *>(smem_raw);
  uint32_t *const keep_bits = reinterpret_cast<uint32_t *>(sm + 4 * kTE);

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, t4 = lane & 3;
  const int tile = int(blockIdx.x % unsigned(p.tiles));
  const int bh = int(blockIdx.x / unsigned(p.tiles));
  const int b = bh / p.H, h = bh - b * p.H, T = p.T, q0 = tile * kTile;
  const int hd = p.H * p.Dh, ld = 3 * hd; // < 2^31 (host check)
  const bf16 *gq = p.qkv + int64_t(b) * T * ld + int64_t(h) * p.Dh;
  const bf16 *gk = gq + hd, *gv = gk + hd;
  const bool has_keep = p.keep != nullptr;
  const int nkt = (T + kTile - 1) / kTile;

  load_tile<kDh>(sm + 2 * kTE, gq, ld, p.Dh, kVec, [&](int r) {
    const int t = q0 + r;
    return t < T ? t : -1;
  });
  const auto load_kv = [&](int it, int st) {
    const int j0 = it * kTile;
    const auto row_of = [&](int r) {
      const int j = j0 + r;
      return j < T ? j : -1;
    };
    load_tile<kDh>(sm + (2 * st) * kTE, gk, ld, p.Dh, kVec, row_of);
    load_tile<kDh>(sm + (2 * st + 1) * kTE, gv, ld, p.Dh, kVec, row_of);
  };
  load_kv(0, 0);
  cp_async_commit();
  if (has_keep) { // words [0, 2 nkt): bit t = token t is listed
    for (int i = tid; i < 2 * nkt; i += kCtaThreads)
      keep_bits[i] = 0u;
    __syncthreads();
    for (int e = tid; e < p.K; e += kCtaThreads) {
      const int t = __ldg(p.keep + e);
      if (t >= 0 && t < T)
        atomicOr(&keep_bits[t >> 5], 1u << (t & 31));
    }
  }
  cp_async_wait<0>();
  __syncthreads();

  const int row0 = q0 + warp * 16; // the warp's first query
  const bool active = row0 < T;    // it has a real query
  const int r0 = row0 + g, r1 = r0 + 8;
  uint32_t qf[kKS][4];
  if (active) {
#pragma unroll
    for (int kk = 0; kk < kKS; ++kk)
      ldsm_a(qf[kk], sm + 2 * kTE, kS, warp * 16, kk * 16);
  }
  const bool kept0 =
      has_keep && r0 < T && ((keep_bits[r0 >> 5] >> (r0 & 31)) & 1u);
  const bool kept1 =
      has_keep && r1 < T && ((keep_bits[r1 >> 5] >> (r1 & 31)) & 1u);
  __syncthreads(); // stage 1 is free

  float acc[kDT][4];
#pragma unroll
  for (int dt = 0; dt < kDT; ++dt)
    acc[dt][0] = acc[dt][1] = acc[dt][2] = acc[dt][3] = 0.0f;
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;

  for (int it = 0; it < nkt; ++it) {
    const int st = it & 1;
    if (it + 1 < nkt)
      load_kv(it + 1, st ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    if (active) {
      const bf16 *sk = sm + (2 * st) * kTE, *sv = sk + kTE;
      const int j0 = it * kTile, nvalid = T - j0; // > 0
      float s[kNT][4];
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt)
        s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.0f;
#pragma unroll
      for (int kk = 0; kk < kKS; ++kk)
#pragma unroll
        for (int np = 0; np < kNT / 2; ++np)
          if (np * 16 < nvalid) { // key blocks of T's tail tile: skipped
            uint32_t bb[4];
            ldsm_b_rows(bb, sk, kS, np * 16, kk * 16);
            mma16816(s[2 * np], qf[kk], bb[0], bb[1]);
            mma16816(s[2 * np + 1], qf[kk], bb[2], bb[3]);
          }
      // Allowed keys of rows r0, r1, shifted to this thread's columns.
      const uint64_t valid = tile_valid_bits(j0, T);
      uint64_t mk0 = valid, mk1 = valid;
      if (has_keep) {
        const uint64_t kb =
            (uint64_t(keep_bits[2 * it + 1]) << 32 | keep_bits[2 * it]) & valid;
        mk0 = kept0 ? kb : valid;
        mk1 = kept1 ? kb : valid;
      }
      mk0 >>= 2 * t4;
      mk1 >>= 2 * t4;
      float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int bit = nt * 8 + e;
          s[nt][e] = ((mk0 >> bit) & 1u) ? s[nt][e] * p.scale_log2 : -INFINITY;
          s[nt][2 + e] =
              ((mk1 >> bit) & 1u) ? s[nt][2 + e] * p.scale_log2 : -INFINITY;
          mx0 = fmaxf(mx0, s[nt][e]);
          mx1 = fmaxf(mx1, s[nt][2 + e]);
        }
      mx0 = fmaxf(mx0, __shfl_xor_sync(kFullMask, mx0, 1));
      mx0 = fmaxf(mx0, __shfl_xor_sync(kFullMask, mx0, 2));
      mx1 = fmaxf(mx1, __shfl_xor_sync(kFullMask, mx1, 1));
      mx1 = fmaxf(mx1, __shfl_xor_sync(kFullMask, mx1, 2));
      const float mn0 = fmaxf(m0, mx0), mn1 = fmaxf(m1, mx1);
      // A row with no allowed key yet keeps m = -inf: exp2 of 0 offsets.
      const float mu0 = mn0 == -INFINITY ? 0.0f : mn0;
      const float mu1 = mn1 == -INFINITY ? 0.0f : mn1;
      const float al0 = fast_exp2(m0 - mu0), al1 = fast_exp2(m1 - mu1);
      m0 = mn0;
      m1 = mn1;
      float ls0 = 0.0f, ls1 = 0.0f;
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          s[nt][e] = fast_exp2(s[nt][e] - mu0);
          s[nt][2 + e] = fast_exp2(s[nt][2 + e] - mu1);
          ls0 += s[nt][e];
          ls1 += s[nt][2 + e];
        }
      l0 = l0 * al0 + ls0; // per-thread partial row sums
      l1 = l1 * al1 + ls1;
#pragma unroll
      for (int dt = 0; dt < kDT; ++dt) {
        acc[dt][0] *= al0;
        acc[dt][1] *= al0;
        acc[dt][2] *= al1;
        acc[dt][3] *= al1;
      }
      mma_c_by_tile<kNT, kDh, kS>(acc, s, sv, nvalid);
    }
    __syncthreads(); // this stage is refilled next iteration
  }
  if (!active)
    return;
  l0 += __shfl_xor_sync(kFullMask, l0, 1);
  l0 += __shfl_xor_sync(kFullMask, l0, 2);
  l1 += __shfl_xor_sync(kFullMask, l1, 1);
  l1 += __shfl_xor_sync(kFullMask, l1, 2);
  // Stage the warp's 16 output rows (bf16) in its own rows of stage 0's K
  // slot (every read of the stages is done), then 16-byte stores.
  bf16 *so = sm + warp * 16 * kS;
  const float inv0 = 1.0f / l0, inv1 = 1.0f / l1; // l >= 1 for real rows
#pragma unroll
  for (int dt = 0; dt < kDT; ++dt) {
    acc[dt][0] *= inv0;
    acc[dt][1] *= inv0;
    acc[dt][2] *= inv1;
    acc[dt][3] *= inv1;
  }
  stage_c<kDh>(so, acc, 1.0f, true, true);
  __syncwarp();
  store_rows16<kDh>(so, p.o + int64_t(b) * T * hd + int64_t(h) * p.Dh, hd, p.Dh,
                    kVec, [&](int r) {
                      const int t = row0 + r;
                      return t < T ? t : -1;
                    });
  if (p.lse && t4 == 0) {
    if (r0 < T)
      p.lse[(int64_t(b) * T + r0) * p.H + h] = (m0 + log2f(l0)) * kLn2;
    if (r1 < T)
      p.lse[(int64_t(b) * T + r1) * p.H + h] = (m1 + log2f(l1)) * kLn2;
  }
}

//===--- Backward ---------------------------------------------------------===//


/// Scratch rows of every (b, h): lse2[q] = lse * log2(e) and D[q] = sum_d
/// float(dO) * float(O) for the queries that take part (in a head that is
/// kept), +inf and 0 for the others and for the padding q in [Tq, Tqp).
/// 8 lanes per (b, h, q), a fixed shuffle tree: deterministic.
template <int kUnused = 0>
__global__ void __launch_bounds__(256)
    attn_bf16_bwd_prep_kernel(const BwdParams p) {
  const int lane = threadIdx.x & 31, sub = lane & 7;
  const int64_t items = int64_t(p.B) * p.H * p.Tqp;
  const int64_t warps = int64_t(gridDim.x) * 8;
  const int64_t hd = int64_t(p.H) * p.Dh;
  for (int64_t i0 = (int64_t(blockIdx.x) * 8 + (threadIdx.x >> 5)) * 4;
       i0 < items; i0 += warps * 4) { // uniform trip count per warp
    const int64_t i = i0 + (lane >> 3);
    float acc = 0.0f, l2 = INFINITY;
    if (i < items) {
      const int bh = int(i / p.Tqp), q = int(i % p.Tqp);
      const int b = bh / p.H, h = bh - b * p.H;
      if (q < p.Tq && bwd_head_kept(p, h) && bwd_query_row(p, q) >= 0) {
        const int64_t off = (int64_t(b) * p.Tq + q) * hd + int64_t(h) * p.Dh;
        const bf16 *po = p.o + off, *pd = p.dout + off;
        if (p.vec) {
          for (int c = sub * 8; c < p.Dh; c += 64) {
            const uint4 ov = *reinterpret_cast<const uint4 *>(po + c);
            const uint4 dv = *reinterpret_cast<const uint4 *>(pd + c);
            const __nv_bfloat162 *o2 =
                reinterpret_cast<const __nv_bfloat162 *>(&ov);
            const __nv_bfloat162 *d2 =
                reinterpret_cast<const __nv_bfloat162 *>(&dv);
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              const float2 of = __bfloat1622float2(o2[e]);
              const float2 df = __bfloat1622float2(d2[e]);
              acc = fmaf(of.x, df.x, acc);
              acc = fmaf(of.y, df.y, acc);
            }
          }
        } else {
          for (int c = sub; c < p.Dh; c += 8)
            acc = fmaf(__bfloat162float(po[c]), __bfloat162float(pd[c]), acc);
        }
        l2 = __ldg(p.lse + (int64_t(b) * p.Tq + q) * p.H + h) * kLog2e;
      }
    }
    acc += __shfl_xor_sync(kFullMask, acc, 4);
    acc += __shfl_xor_sync(kFullMask, acc, 2);
    acc += __shfl_xor_sync(kFullMask, acc, 1);
    if (i < items && sub == 0) {
      p.dvec[i] = acc;
      p.lse2[i] = l2;
    }
  }
}

/// dK, dV: a CTA owns 64 keys of one (b, h), K and V tiles in shared
/// memory (their A fragments are re-read per chunk: registers go to the dK,
/// dV accumulators), and streams the query tiles (Q, dO, lse2, D) through
/// two stages. Per warp and tile: S^T = K Q^T and dP^T = V dO^T (16 keys x 64
/// queries), P^T = exp2(scale_log2 S^T - lse2), dS^T = P^T (dP^T - D), then
/// dV += P^T dO, dK += dS^T Q with P^T, dS^T as bf16 A fragments straight
/// from the accumulators. dK = scale * that. With a query list it also
/// zeros dq of the tile's tokens that are not queries. kDs: also writes
/// each dS^T value, as the bf16 its dK product reads, to p.ds (rows of keys
/// < T, columns of queries < ds_ld) for attn_bf16_bwd_dq_ds_kernel.
template <int kDh, bool kVec, bool kDs = false>
__global__ void __launch_bounds__(kCtaThreads, kDh <= 32 ? 4 : 3)
    attn_bf16_bwd_dkdv_kernel(const BwdParams p) {
  constexpr int kS = Geo<kDh>::kStride, kTE = Geo<kDh>::kElems;
  constexpr int kKS = kDh / 16, kDT = kDh / 8;
  constexpr int kC = 32, kCT = kC / 8; // query chunk, its n8 tiles
  // K tile, V tile, then stage s: Q tile, dO tile (bf16), lse2[64], D[64]
  // (float).
  constexpr int kStageBytes = 2 * Geo<kDh>::kBytes + 2 * kTile * 4;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ uint32_t listed[2];
  bf16 *const sk = reinterpret_cast<bf16 *>(smem_raw), *const sv = sk + kTE;
  const auto sq = [&](int st) {
    return reinterpret_cast<bf16 *>(smem_raw + 2 * Geo<kDh>::kBytes +
                                    st * kStageBytes);
  };
  const auto sdo = [&](int st) { return sq(st) + kTE; };
  const auto sl = [&](int st) {
    return reinterpret_cast<float *>(smem_raw + 4 * Geo<kDh>::kBytes +
                                     st * kStageBytes);
  };
  const auto sd = [&](int st) { return sl(st) + kTile; };

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, t4 = lane & 3;
  const int tile = int(blockIdx.x % unsigned(p.k_tiles));
  const int bh = int(blockIdx.x / unsigned(p.k_tiles));
  const int b = bh / p.H, h = bh - b * p.H, T = p.T, j0 = tile * kTile;
  const int hd = p.H * p.Dh, ld = 3 * hd; // < 2^31 (host check)
  const bf16 *gq = p.qkv + int64_t(b) * T * ld + int64_t(h) * p.Dh;
  const bf16 *gk = gq + hd, *gv = gk + hd;
  const bf16 *gdo = p.dout + int64_t(b) * p.Tq * hd + int64_t(h) * p.Dh;
  bf16 *gdq = p.dqkv + int64_t(b) * T * ld + int64_t(h) * p.Dh;
  bf16 *gdk = gdq + hd, *gdv = gdk + hd;
  const auto tile_row = [&](int r) {
    const int j = j0 + r;
    return j < T ? j : -1;
  };

  if (!bwd_head_kept(p, h)) { // dq of these rows: the dQ kernel
    zero_rows(gdk, ld, p.Dh, kVec, tile_row);
    zero_rows(gdv, ld, p.Dh, kVec, tile_row);
    return;
  }
  if (p.query_list) { // zero dq of the tile's tokens that are no query
    if (tid < 2)
      listed[tid] = 0u;
    __syncthreads();
    for (int e = tid; e < p.Tq; e += kCtaThreads) {
      const int t = __ldg(p.queries + e);
      if (t >= j0 && t < j0 + kTile && t < T)
        atomicOr(&listed[(t - j0) >> 5], 1u << ((t - j0) & 31));
    }
    __syncthreads();
    zero_rows(gdq, ld, p.Dh, kVec, [&](int r) {
      const int j = j0 + r;
      return j < T && !((listed[r >> 5] >> (r & 31)) & 1u) ? j : -1;
    });
  }

  // K, V and query tile 0.
  const auto key_row = [&](int r) {
    const int j = j0 + r;
    return bwd_key_ok(p, j) ? j : -1;
  };
  load_tile<kDh>(sk, gk, ld, p.Dh, kVec, key_row);
  load_tile<kDh>(sv, gv, ld, p.Dh, kVec, key_row);
  const auto load_q = [&](int it, int st) {
    const int qq = it * kTile;
    load_tile<kDh>(sq(st), gq, ld, p.Dh, kVec,
                   [&](int r) { return bwd_query_row(p, qq + r); });
    load_tile<kDh>(sdo(st), gdo, hd, p.Dh, kVec, [&](int r) {
      const int q = qq + r;
      return bwd_query_row(p, q) >= 0 ? q : -1;
    });
    if (tid < 32) { // 2 x 64 floats in 16-byte chunks (rows of Tqp floats)
      const int c = (tid & 15) * 4;
      const float *src =
          (tid < 16 ? p.lse2 : p.dvec) + int64_t(bh) * p.Tqp + qq + c;
      cp_async16(smem_u32((tid < 16 ? sl(st) : sd(st)) + c), src, true);
    }
  };
  if (p.q_tiles > 0)
    load_q(0, 0);
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();

  const int kr = warp * 16; // the warp's keys j0 + kr ..
  const bool active = j0 + kr < T;
  const bool ok0 = bwd_key_ok(p, j0 + kr + g);
  const bool ok1 = bwd_key_ok(p, j0 + kr + g + 8);
  // kDs: this thread's dS^T rows (keys j0 + kr + g, + 8; unused past T).
  bf16 *const ds0 =
      kDs ? p.ds + (int64_t(bh) * T + j0 + kr + g) * p.ds_ld : nullptr;
  const bool ds_row0 = j0 + kr + g < T, ds_row1 = j0 + kr + g + 8 < T;

  float dk[kDT][4], dv[kDT][4];
#pragma unroll
  for (int dt = 0; dt < kDT; ++dt)
#pragma unroll
    for (int e = 0; e < 4; ++e)
      dk[dt][e] = dv[dt][e] = 0.0f;

  for (int it = 0; it < p.q_tiles; ++it) {
    const int st = it & 1;
    if (it + 1 < p.q_tiles)
      load_q(it + 1, st ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    if (active) {
      const bf16 *tq = sq(st), *tdo = sdo(st);
      const float *tl = sl(st), *td = sd(st);
      const int nvalid = p.Tq - it * kTile; // > 0
      // The tile in chunks of kC queries (fewer live accumulators).
#pragma unroll 1
      for (int c0 = 0; c0 < kTile; c0 += kC) {
        if (c0 >= nvalid)
          break;
        float s[kCT][4], dp[kCT][4];
#pragma unroll
        for (int nt = 0; nt < kCT; ++nt)
#pragma unroll
          for (int e = 0; e < 4; ++e)
            s[nt][e] = dp[nt][e] = 0.0f;
#pragma unroll
        for (int kk = 0; kk < kKS; ++kk) {
          uint32_t kf[4], vf[4];
          ldsm_a(kf, sk, kS, kr, kk * 16);
          ldsm_a(vf, sv, kS, kr, kk * 16);
#pragma unroll
          for (int np = 0; np < kCT / 2; ++np)
            if (c0 + np * 16 < nvalid) {
              uint32_t bb[4];
              ldsm_b_rows(bb, tq, kS, c0 + np * 16, kk * 16);
              mma16816(s[2 * np], kf, bb[0], bb[1]);
              mma16816(s[2 * np + 1], kf, bb[2], bb[3]);
              ldsm_b_rows(bb, tdo, kS, c0 + np * 16, kk * 16);
              mma16816(dp[2 * np], vf, bb[0], bb[1]);
              mma16816(dp[2 * np + 1], vf, bb[2], bb[3]);
            }
        }
        // Columns are queries: lse2 = +inf (P = 0) for the padding and the
        // queries that do not take part, whose Q and dO rows are zeros.
#pragma unroll
        for (int nt = 0; nt < kCT; ++nt) {
          const int col = c0 + nt * 8 + 2 * t4;
          const float2 L = *reinterpret_cast<const float2 *>(tl + col);
          const float2 D = *reinterpret_cast<const float2 *>(td + col);
          const float p00 =
              ok0 ? fast_exp2(fmaf(s[nt][0], p.scale_log2, -L.x)) : 0.f;
          const float p01 =
              ok0 ? fast_exp2(fmaf(s[nt][1], p.scale_log2, -L.y)) : 0.f;
          const float p10 =
              ok1 ? fast_exp2(fmaf(s[nt][2], p.scale_log2, -L.x)) : 0.f;
          const float p11 =
              ok1 ? fast_exp2(fmaf(s[nt][3], p.scale_log2, -L.y)) : 0.f;
          s[nt][0] = p00;
          s[nt][1] = p01;
          s[nt][2] = p10;
          s[nt][3] = p11;
          dp[nt][0] = p00 * (dp[nt][0] - D.x);
          dp[nt][1] = p01 * (dp[nt][1] - D.y);
          dp[nt][2] = p10 * (dp[nt][2] - D.x);
          dp[nt][3] = p11 * (dp[nt][3] - D.y);
          if constexpr (kDs) { // ds_ld is a multiple of 8: whole pairs
            const int q = it * kTile + col;
            if (q < p.ds_ld) {
              if (ds_row0)
                *reinterpret_cast<uint32_t *>(ds0 + q) =
                    pack_bf16(dp[nt][0], dp[nt][1]);
              if (ds_row1)
                *reinterpret_cast<uint32_t *>(ds0 + 8 * p.ds_ld + q) =
                    pack_bf16(dp[nt][2], dp[nt][3]);
            }
          }
        }
#pragma unroll
        for (int kk = 0; kk < kCT / 2; ++kk)
          if (c0 + kk * 16 < nvalid) {
            uint32_t ap[4], ads[4];
            c_to_a<kCT>(ap, s, kk);
            c_to_a<kCT>(ads, dp, kk);
#pragma unroll
            for (int dd = 0; dd < kDh / 16; ++dd) {
              uint32_t bb[4];
              ldsm_b_cols(bb, tdo, kS, c0 + kk * 16, dd * 16);
              mma16816(dv[2 * dd], ap, bb[0], bb[1]);
              mma16816(dv[2 * dd + 1], ap, bb[2], bb[3]);
              ldsm_b_cols(bb, tq, kS, c0 + kk * 16, dd * 16);
              mma16816(dk[2 * dd], ads, bb[0], bb[1]);
              mma16816(dk[2 * dd + 1], ads, bb[2], bb[3]);
            }
          }
      }
    }
    __syncthreads(); // this stage is refilled next iteration
  }
  if (!active)
    return;
  // Stage in the warp's own rows of the K and V tiles (only this warp reads
  // them); keys that do not take part get zeros.
  bf16 *sk_out = sk + kr * kS, *sv_out = sv + kr * kS;
  stage_c<kDh>(sk_out, dk, p.scale, ok0, ok1);
  stage_c<kDh>(sv_out, dv, 1.0f, ok0, ok1);
  __syncwarp();
  const auto out_row = [&](int r) {
    const int j = j0 + kr + r;
    return j < T ? j : -1;
  };
  store_rows16<kDh>(sk_out, gdk, ld, p.Dh, kVec, out_row);
  store_rows16<kDh>(sv_out, gdv, ld, p.Dh, kVec, out_row);
}

/// dQ: a CTA owns 64 query indices of one (b, h), Q and dO fragments, lse2
/// and D in registers, and streams the key tiles (K, V) through two stages.
/// Per warp and tile: S = Q K^T, dP = dO V^T, P = exp2(scale_log2 S - lse2)
/// (masked keys: 0), dS = P (dP - D), dQ += dS K. dQ = scale * that.
/// Writes dq of its queries' rows (attention_bwd: zeros for the rows that
/// do not take part, and for a head that is not kept).
template <int kDh, bool kVec>
__global__ void __launch_bounds__(kCtaThreads, kDh <= 32 ? 4 : 3)
    attn_bf16_bwd_dq_kernel(const BwdParams p) {
  constexpr int kS = Geo<kDh>::kStride, kTE = Geo<kDh>::kElems;
  constexpr int kKS = kDh / 16, kNT = kTile / 8, kDT = kDh / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  // stage s: K tile at (2s)*kTE, V tile at (2s+1)*kTE; Q and dO are loaded
  // into stage 1.
  bf16 *const sm = reinterpret_cast<bf16 *>(smem_raw);

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, t4 = lane & 3;
  const int tile = int(blockIdx.x % unsigned(p.q_tiles));
  const int bh = int(blockIdx.x / unsigned(p.q_tiles));
  const int b = bh / p.H, h = bh - b * p.H, T = p.T, q0 = tile * kTile;
  const int hd = p.H * p.Dh, ld = 3 * hd; // < 2^31 (host check)
  const bf16 *gq = p.qkv + int64_t(b) * T * ld + int64_t(h) * p.Dh;
  const bf16 *gk = gq + hd, *gv = gk + hd;
  const bf16 *gdo = p.dout + int64_t(b) * p.Tq * hd + int64_t(h) * p.Dh;
  bf16 *gdq = p.dqkv + int64_t(b) * T * ld + int64_t(h) * p.Dh;
  // Where dq of query index q goes: its row; attention_bwd also zeros the
  // rows that do not take part (row q < T).
  const auto out_row = [&](int q) {
    if (p.query_list)
      return bwd_query_row(p, q);
    return q < T ? q : -1;
  };

  if (!bwd_head_kept(p, h)) {
    zero_rows(gdq, ld, p.Dh, kVec, [&](int r) { return out_row(q0 + r); });
    return;
  }
  load_tile<kDh>(sm + 2 * kTE, gq, ld, p.Dh, kVec,
                 [&](int r) { return bwd_query_row(p, q0 + r); });
  load_tile<kDh>(sm + 3 * kTE, gdo, hd, p.Dh, kVec, [&](int r) {
    const int q = q0 + r;
    return bwd_query_row(p, q) >= 0 ? q : -1;
  });
  const bool masked_keys = p.row_keep != nullptr;
  const auto load_kv = [&](int it, int st) {
    const int j0 = it * kTile;
    const auto row_of = [&](int r) {
      const int j = j0 + r;
      return bwd_key_ok(p, j) ? j : -1;
    };
    load_tile<kDh>(sm + (2 * st) * kTE, gk, ld, p.Dh, kVec, row_of);
    load_tile<kDh>(sm + (2 * st + 1) * kTE, gv, ld, p.Dh, kVec, row_of);
  };
  load_kv(0, 0);
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();

  const int qr = warp * 16;
  const bool active = q0 + qr < p.Tq;
  uint32_t qf[kKS][4], dof[kKS][4];
  if (active) {
#pragma unroll
    for (int kk = 0; kk < kKS; ++kk) {
      ldsm_a(qf[kk], sm + 2 * kTE, kS, qr, kk * 16);
      ldsm_a(dof[kk], sm + 3 * kTE, kS, qr, kk * 16);
    }
  }
  // Rows q0 + qr + g (+ 8) < Tqp: lse2 = +inf, D = 0 for non-queries.
  const int64_t srow = int64_t(bh) * p.Tqp + q0 + qr + g;
  const float L0 = active ? __ldg(p.lse2 + srow) : INFINITY;
  const float L1 = active ? __ldg(p.lse2 + srow + 8) : INFINITY;
  const float D0 = active ? __ldg(p.dvec + srow) : 0.0f;
  const float D1 = active ? __ldg(p.dvec + srow + 8) : 0.0f;
  __syncthreads(); // stage 1 is free

  float dq[kDT][4];
#pragma unroll
  for (int dt = 0; dt < kDT; ++dt)
    dq[dt][0] = dq[dt][1] = dq[dt][2] = dq[dt][3] = 0.0f;

  for (int it = 0; it < p.k_tiles; ++it) {
    const int st = it & 1;
    if (it + 1 < p.k_tiles)
      load_kv(it + 1, st ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    if (active) {
      const bf16 *sk = sm + (2 * st) * kTE, *sv = sk + kTE;
      const int j0 = it * kTile, nvalid = T - j0; // > 0
      uint64_t mk = tile_valid_bits(j0, T);
      if (masked_keys) {
        const uint32_t lo = __ballot_sync(kFullMask, bwd_key_ok(p, j0 + lane));
        const uint32_t hi =
            __ballot_sync(kFullMask, bwd_key_ok(p, j0 + 32 + lane));
        mk &= uint64_t(hi) << 32 | lo;
      }
      mk >>= 2 * t4;
      float s[kNT][4], dp[kNT][4];
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          s[nt][e] = dp[nt][e] = 0.0f;
#pragma unroll
      for (int kk = 0; kk < kKS; ++kk)
#pragma unroll
        for (int np = 0; np < kNT / 2; ++np)
          if (np * 16 < nvalid) {
            uint32_t bb[4];
            ldsm_b_rows(bb, sk, kS, np * 16, kk * 16);
            mma16816(s[2 * np], qf[kk], bb[0], bb[1]);
            mma16816(s[2 * np + 1], qf[kk], bb[2], bb[3]);
            ldsm_b_rows(bb, sv, kS, np * 16, kk * 16);
            mma16816(dp[2 * np], dof[kk], bb[0], bb[1]);
            mma16816(dp[2 * np + 1], dof[kk], bb[2], bb[3]);
          }
#pragma unroll
      for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const bool on = (mk >> (nt * 8 + e)) & 1u;
          const float pa =
              on ? fast_exp2(fmaf(s[nt][e], p.scale_log2, -L0)) : 0.f;
          const float pb =
              on ? fast_exp2(fmaf(s[nt][2 + e], p.scale_log2, -L1)) : 0.f;
          s[nt][e] = pa * (dp[nt][e] - D0); // dS
          s[nt][2 + e] = pb * (dp[nt][2 + e] - D1);
        }
      mma_c_by_tile<kNT, kDh, kS>(dq, s, sk, nvalid);
    }
    __syncthreads(); // this stage is refilled next iteration
  }
  if (!active)
    return;
  bf16 *so = sm + qr * kS; // the warp's rows of stage 0's K slot
  // A non-query row has Q = dO = 0 and lse2 = +inf, so dQ = 0 already.
  stage_c<kDh>(so, dq, p.scale, true, true);
  __syncwarp();
  store_rows16<kDh>(so, gdq, ld, p.Dh, kVec,
                    [&](int r) { return out_row(q0 + qr + r); });
}

/// dQ from the stored dS^T (attention_bwd with ds scratch, after the dK/dV
/// kernel with kDs): a CTA owns 64 queries of one (b, h) and streams, per
/// tile of 64 keys, the dS^T block (keys x its queries) and the K tile
/// through two stages; dQ += dS K with dS's A fragments from ldmatrix.trans
/// of the stored block, as the resident backward's phase 2. dQ = scale *
/// that; zero rows for the queries that do not take part (their dS is 0)
/// and for a head that is not kept. dS^T rows of keys >= T are not read
/// (zeros), nor columns >= ds_ld.
template <int kDh>
__global__ void __launch_bounds__(kCtaThreads, 4)
    attn_bf16_bwd_dq_ds_kernel(const BwdParams p) {
  constexpr int kS = Geo<kDh>::kStride, kTE = Geo<kDh>::kElems;
  constexpr int kDsS = Geo<kTile>::kStride, kDsE = Geo<kTile>::kElems;
  constexpr int kDT = kDh / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  // stage s: the dS^T block at s * (kDsE + kTE), the K tile after it.
  bf16 *const sm = reinterpret_cast<bf16 *>(smem_raw);
  const auto sds = [&](int st) { return sm + st * (kDsE + kTE); };
  const auto sk = [&](int st) { return sds(st) + kDsE; };

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int tile = int(blockIdx.x % unsigned(p.q_tiles));
  const int bh = int(blockIdx.x / unsigned(p.q_tiles));
  const int b = bh / p.H, h = bh - b * p.H, T = p.T, q0 = tile * kTile;
  const int hd = p.H * p.Dh, ld = 3 * hd; // < 2^31 (host check)
  const bf16 *gk = p.qkv + int64_t(b) * T * ld + hd + int64_t(h) * p.Dh;
  bf16 *gdq = p.dqkv + int64_t(b) * T * ld + int64_t(h) * p.Dh;
  const auto out_row = [&](int r) {
    const int q = q0 + r;
    return q < T ? q : -1;
  };
  if (!bwd_head_kept(p, h)) {
    zero_rows(gdq, ld, p.Dh, true, out_row);
    return;
  }
  const bf16 *gds = p.ds + int64_t(bh) * T * p.ds_ld + q0;
  const int ds_cols = min(kTile, p.ds_ld - q0); // a multiple of 8
  const auto load = [&](int it, int st) {
    const int j0 = it * kTile;
    load_tile<kTile>(sds(st), gds, p.ds_ld, ds_cols, true, [&](int r) {
      const int j = j0 + r;
      return j < T ? j : -1;
    });
    load_tile<kDh>(sk(st), gk, ld, p.Dh, true, [&](int r) {
      const int j = j0 + r;
      return bwd_key_ok(p, j) ? j : -1;
    });
  };
  load(0, 0);
  cp_async_commit(); // its own group: the loop waits for it alone first
  const int qr = warp * 16;
  float dq[kDT][4];
#pragma unroll
  for (int dt = 0; dt < kDT; ++dt)
    dq[dt][0] = dq[dt][1] = dq[dt][2] = dq[dt][3] = 0.0f;
  for (int it = 0; it < p.k_tiles; ++it) {
    const int st = it & 1;
    if (it + 1 < p.k_tiles)
      load(it + 1, st ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const bf16 *tds = sds(st), *tk = sk(st);
    const int nvalid = T - it * kTile; // > 0
#pragma unroll
    for (int kk = 0; kk < kTile / 16; ++kk)
      if (kk * 16 < nvalid) {
        // A = dS[qr.., 16 kk..]: the transpose of the stored block.
        uint32_t a[4];
        const int r = kk * 16 + (lane & 7) + (lane >> 4) * 8;
        const int c = qr + ((lane >> 3) & 1) * 8;
        ldsm_x4_trans(smem_u32(tds + r * kDsS + c), a);
#pragma unroll
        for (int dd = 0; dd < kDh / 16; ++dd) {
          uint32_t bb[4];
          ldsm_b_cols(bb, tk, kS, kk * 16, dd * 16);
          mma16816(dq[2 * dd], a, bb[0], bb[1]);
          mma16816(dq[2 * dd + 1], a, bb[2], bb[3]);
        }
      }
    __syncthreads(); // this stage is refilled next iteration
  }
  if (q0 + qr >= T)
    return;
  bf16 *so = sk(0) + qr * kS; // the warp's rows of stage 0's K tile
  stage_c<kDh>(so, dq, p.scale, true, true);
  __syncwarp();
  store_rows16<kDh>(so, gdq, ld, p.Dh, true,
                    [&](int r) { return out_row(qr + r); });
}

//===--- Launchers --------------------------------------------------------===//

/// Raises a kernel's dynamic shared-memory limit above 48 KiB if needed.
template <class Kernel>
inline bool smem_limit(Kernel *kernel, size_t bytes, const char *where) {
  if (bytes <= 48 * 1024)
    return true;
  const cudaError_t e = cudaFuncSetAttribute(
      kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
  if (e != cudaSuccess) {
    fail(int(e), where, cudaGetErrorString(e));
    return false;
  }
  return true;
}

template <int kDh, bool kVec>
inline void launch_fwd(const Context &ctx, const FwdParams &p, int64_t grid) {
  const int nkt = (p.T + kTile - 1) / kTile;
  const size_t smem = 4 * size_t(Geo<kDh>::kBytes) +
                      (p.keep ? size_t(2 * nkt) * sizeof(uint32_t) : 0);
  if (!smem_limit(attn_bf16_fwd_kernel<kDh, kVec>, smem, "attention_fwd"))
    return;
  attn_bf16_fwd_kernel<kDh, kVec>
      <<<unsigned(grid), kCtaThreads, smem, ctx.stream>>>(p);
}

template <int kDh>
inline void launch_fwd_dh(const Context &ctx, const FwdParams &p,
                          int64_t grid, Kernels which) {
  if (use_resident<kDh>(ctx, which, p.B, p.T, p.H, p.vec, false)) {
    launch_resident(ctx, attn_bf16_fwd_resident_kernel<kDh>, p,
                    ResidentSmem<kDh>(p.T).fwd_bytes(p.keep != nullptr));
    return;
  }
  if (p.vec)
    launch_fwd<kDh, true>(ctx, p, grid);
  else
    launch_fwd<kDh, false>(ctx, p, grid);
}

/// The tiled backward's dK/dV and dQ kernels. kDs (16-byte path only): the
/// dK/dV kernel also stores dS^T to p.ds and the dQ kernel is dQ = dS K
/// from it (attn_bf16_bwd_dq_ds_kernel) instead of recomputing dS.
template <int kDh, bool kVec, bool kDs>
inline void launch_bwd_kernels(const Context &ctx, const BwdParams &p,
                               const char *where) {
  static_assert(kVec || !kDs, "the dS^T path takes the 16-byte path");
  const size_t dkdv_smem = 6 * size_t(Geo<kDh>::kBytes) + 4 * kTile * 4;
  const size_t dq_smem =
      kDs ? 2 * (size_t(Geo<kTile>::kBytes) + size_t(Geo<kDh>::kBytes))
          : 4 * size_t(Geo<kDh>::kBytes);
  void (*const dq_kernel)(const BwdParams) =
      kDs ? attn_bf16_bwd_dq_ds_kernel<kDh> : attn_bf16_bwd_dq_kernel<kDh, kVec>;
  if (!smem_limit(attn_bf16_bwd_dkdv_kernel<kDh, kVec, kDs>, dkdv_smem, where) ||
      !smem_limit(dq_kernel, dq_smem, where))
    return;
  const int64_t bh = int64_t(p.B) * p.H;
  attn_bf16_bwd_dkdv_kernel<kDh, kVec, kDs>
      <<<unsigned(bh * p.k_tiles), kCtaThreads, dkdv_smem, ctx.stream>>>(p);
  check_launch(where);
  if (p.q_tiles > 0)
    dq_kernel<<<unsigned(bh * p.q_tiles), kCtaThreads, dq_smem, ctx.stream>>>(p);
}

template <int kDh>
inline void launch_bwd_dh(const Context &ctx, const BwdParams &p,
                          const char *where) {
  if (p.ds)
    launch_bwd_kernels<kDh, true, true>(ctx, p, where);
  else if (p.vec)
    launch_bwd_kernels<kDh, true, false>(ctx, p, where);
  else
    launch_bwd_kernels<kDh, false, false>(ctx, p, where);
}

/// The resident backward of attention_bwd, if `which` and the problem
/// allow it and it launched.
template <int kDh>
inline bool launch_bwd_resident(const Context &ctx, const BwdParams &p,
                                Kernels which) {
  if (p.query_list || !use_resident<kDh>(ctx, which, p.B, p.T, p.H, p.vec, true))
    return false;
  launch_resident(ctx, attn_bf16_bwd_resident_kernel<kDh>, p,
                  ResidentSmem<kDh>(p.T).bwd_bytes());
  return true;
}

/// Both backward entry points: checks (the scratch too, whichever kernels
/// run: the contract does not depend on the device), then the resident
/// kernel, or the three tiled kernels.
inline void launch_bwd(const Context &ctx, const char *where, BwdParams p,
                       int64_t B, int64_t T, int64_t H, int64_t Dh, int64_t Tq,
                       float scale, Kernels which) {
  if (Dh > kMaxDh) {
    fail_arg(where, "bf16: head dim above 64 (the bf16 tensor-core kernels "
                    "take Dh <= 64; use the fp32 overload)");
    return;
  }
  const int64_t k_tiles = ceil_div(T, kTile), q_tiles = ceil_div(Tq, kTile);
  // Offsets within one batch element are 32-bit in the kernels.
  if (T * 3 * H * Dh > 0x7fffffff || Tq * H * Dh > 0x7fffffff ||
      B * H * k_tiles > 0x7fffffff || B * H * q_tiles > 0x7fffffff) {
    fail_arg(where, "bf16: a batch element above 2^31 elements, or too many "
                    "(batch, head, tile)s");
    return;
  }
  p.B = int(B);
  p.T = int(T);
  p.H = int(H);
  p.Dh = int(Dh);
  p.Tq = int(Tq);
  p.Tqp = int(q_tiles * kTile);
  p.k_tiles = int(k_tiles);
  p.q_tiles = int(q_tiles);
  p.scale = scale;
  p.scale_log2 = scale * kLog2e;
  ScratchCursor scratch(ctx);
  const size_t n = size_t(B * H) * size_t(p.Tqp);
  p.lse2 = scratch.take<float>(n);
  p.dvec = scratch.take<float>(n);
  if (n > 0 && (!p.lse2 || !p.dvec)) {
    char what[200];
    std::snprintf(what, sizeof(what),
                  "bf16: scratch too small: %zu bytes needed for lse and "
                  "rowsum(dO * O) (8 B H ceil64(Tq)); raise "
                  "Context::scratch_bytes",
                  2 * ((n * sizeof(float) + 255) & ~size_t(255)));
    fail_arg(where, what);
    return;
  }
  // The dS^T path: 16-byte rows, every row a query, a (b, h)'s dS^T
  // within 32-bit offsets.
  if (p.ds && (!p.vec || p.query_list || !aligned16(p.ds) ||
               T * int64_t(p.ds_ld) > 0x7fffffff))
    p.ds = nullptr;
  if (Dh <= 32 ? launch_bwd_resident<32>(ctx, p, which)
               : launch_bwd_resident<64>(ctx, p, which)) {
    check_launch(where);
    return;
  }
  if (n > 0) {
    attn_bf16_bwd_prep_kernel<>
        <<<grid_for(ctx, int64_t(n) * 8, 32, 256), 256, 0, ctx.stream>>>(p);
    check_launch(where);
  }
  if (Dh <= 32)
    launch_bwd_dh<32>(ctx, p, where);
  else
    launch_bwd_dh<64>(ctx, p, where);
  check_launch(where);
}

//===--- Entry points -----------------------------------------------------===//

/// attention_fwd (cuda_kernels.h): checks, parameters, the launch.
inline void run_fwd(const Context &ctx, const bf16 *qkv, bf16 *o, float *lse,
                    int64_t B, int64_t T, int64_t H, int64_t Dh, float scale,
                    const int32_t *keep, int64_t K,
                    Kernels which = default_kernels()) {
  if (B <= 0 || T <= 0 || H <= 0 || Dh <= 0)
    return;
  if (Dh > kMaxDh) {
    fail_arg("attention_fwd", "bf16: head dim above 64 (the bf16 tensor-core "
                              "kernels take Dh <= 64; use the fp32 overload)");
    return;
  }
  if (!keep || K <= 0) {
    keep = nullptr;
    K = 0;
  }
  if (keep && T > kMaxKeepT) {
    fail_arg("attention_fwd", "bf16: a keep list with more than 8192 tokens");
    return;
  }
  const int64_t tiles = ceil_div(T, kTile);
  if (T * 3 * H * Dh > 0x7fffffff || K > 0x7fffffff ||
      B * H * tiles > 0x7fffffff) {
    fail_arg("attention_fwd", "bf16: a batch element above 2^31 elements, or "
                              "too many (batch, head, query tile)s");
    return;
  }
  FwdParams p;
  p.qkv = qkv;
  p.o = o;
  p.lse = lse;
  p.keep = keep;
  p.K = int(K);
  p.B = int(B);
  p.T = int(T);
  p.H = int(H);
  p.Dh = int(Dh);
  p.tiles = int(tiles);
  p.scale_log2 = scale * kLog2e;
  p.vec = Dh % 8 == 0 && aligned16(qkv) && aligned16(o);
  if (Dh <= 32)
    launch_fwd_dh<32>(ctx, p, B * H * tiles, which);
  else
    launch_fwd_dh<64>(ctx, p, B * H * tiles, which);
  check_launch("attention_fwd");
}

/// attention_bwd (cuda_kernels.h): parameters, then launch_bwd.
inline void run_bwd(const Context &ctx, const bf16 *qkv, const bf16 *o,
                    const float *lse, const bf16 *dout, bf16 *dqkv, int64_t B,
                    int64_t T, int64_t H, int64_t Dh, float scale,
                    const int32_t *row_keep, const int32_t *head_keep,
                    void *ds_scratch, int64_t ds_scratch_bytes,
                    Kernels which = default_kernels()) {
  if (B <= 0 || T <= 0 || H <= 0 || Dh <= 0)
    return;
  if (ds_scratch && ds_scratch_bytes < sbp_attention_ds_bytes(B, T, H)) {
    char what[200];
    std::snprintf(what, sizeof(what),
                  "bf16: ds_scratch of %lld bytes where dS^T needs %lld "
                  "(sbp_attention_ds_bytes)",
                  (long long)ds_scratch_bytes,
                  (long long)sbp_attention_ds_bytes(B, T, H));
    fail_arg("attention_bwd", what);
    return;
  }
  BwdParams p;
  p.ds = static_cast<bf16 *>(ds_scratch);
  p.ds_ld = int(sbp_attention_ds_stride(T));
  p.qkv = qkv;
  p.o = o;
  p.lse = lse;
  p.dout = dout;
  p.dqkv = dqkv;
  p.row_keep = row_keep;
  p.head_keep = head_keep;
  p.vec = Dh % 8 == 0 && aligned16(qkv) && aligned16(o) && aligned16(dout) &&
          aligned16(dqkv);
  launch_bwd(ctx, "attention_bwd", p, B, T, H, Dh, T, scale, which);
}

} // namespace abf16
} // namespace detail

} // namespace cuda
} // namespace sbp

#endif // SBP_CUDA_DETAIL_ATTENTION_BF16_CUH
