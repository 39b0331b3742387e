//===- detail/attention_bf16_common.cuh - shared pieces of the bf16 attention kernels -*- CUDA -*-===//
//
// Internal to the CUDA kernel library (libsbp_cuda_kernels.a). PTX wrappers
// (cp.async, ldmatrix, mma.sync m16n8k16), fragment loads, global <-> shared
// copies and the kernels' parameter blocks, used by the tiled kernels
// (attention_bf16.cuh) and the resident ones (attention_bf16_resident.cuh).
//
//===----------------------------------------------------------------------===//
#ifndef SBP_CUDA_DETAIL_ATTENTION_BF16_COMMON_CUH
#define SBP_CUDA_DETAIL_ATTENTION_BF16_COMMON_CUH

#include "detail/pointwise.cuh"

#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>

namespace sbp {
namespace cuda {

namespace detail {
namespace abf16 {

using bf16 = __nv_bfloat16;

// The tiled kernels: 4 warps; a warp owns 16 rows of the CTA's 64
// stationary rows (queries in the forward and the dQ pass, keys in the
// dK/dV pass) and streams the other side in tiles of 64 rows,
// double-buffered by cp.async. (The resident kernels: a warp per 16 rows of
// the whole sequence.)
constexpr int kCtaThreads = 128;
constexpr int kTile = 64;
constexpr int kMaxDh = 64;
constexpr int kMaxKeepT = 8192; // forward keep bitmask in shared memory
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

/// Shared-memory tile: kTile rows of kDh bf16, rows padded by 16 bytes so
/// that the 8 row addresses of an ldmatrix 8x8 (and the 8 rows a quad
/// group writes when staging outputs) fall in distinct bank groups.
template <int kDh> struct Geo {
  static constexpr int kStride = kDh + 8; // bf16 per row
  static constexpr int kElems = kTile * kStride;
  static constexpr int kBytes = kElems * int(sizeof(bf16));
  static_assert(kDh % 16 == 0 && kDh <= 128, "head dim tile");
  static_assert((kStride * 2) % 16 == 0, "16-byte rows");
};

//===--- PTX wrappers -----------------------------------------------------===//

__device__ __forceinline__ uint32_t smem_u32(const void *p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

/// 16 bytes global -> shared, asynchronous; !pred writes 16 zero bytes and
/// reads nothing.
__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src,
                                           bool pred) {
  const int n = pred ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst),
               "l"(src), "r"(n)
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
template <int kPending> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

__device__ __forceinline__ void ldsm_x4(uint32_t addr, uint32_t (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, "
               "[%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_trans(uint32_t addr, uint32_t (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, "
               "%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

/// c += a * b, one m16n8k16 bf16 tensor-core product, fp32 accumulators.
/// Fragments (g = lane / 4, t = lane % 4): a = {A[g][2t..], A[g+8][2t..],
/// A[g][2t+8..], A[g+8][2t+8..]}, b = {B[2t..][g], B[2t+8..][g]}, c =
/// {C[g][2t], C[g][2t+1], C[g+8][2t], C[g+8][2t+1]} (pairs: low half first).
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4],
                                         uint32_t b0, uint32_t b1) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
      "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

/// 2^x by the SFU (ex2.approx.ftz: relative error ~2^-22, -inf -> +0, results
/// below 2^-126 flush to 0). exp2f would add a denormal-range fix-up around
/// each MUFU.EX2: ~1.3x slower kernels for no accuracy a bf16 P can keep.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

/// Two floats -> packed bf16 pair (round to nearest even), lo in the low half.
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  uint32_t u;
  memcpy(&u, &v, sizeof(u));
  return u;
}

//===--- Fragments from shared-memory tiles (row stride kS bf16) ----------===//

/// A fragment (16 x 16) of a row-major tile at rows r0.., columns c0...
__device__ __forceinline__ void ldsm_a(uint32_t (&a)[4], const bf16 *tile,
                                       int kS, int r0, int c0) {
  const int lane = threadIdx.x & 31;
  const int r = r0 + (lane & 7) + ((lane >> 3) & 1) * 8;
  const int c = c0 + (lane >> 4) * 8;
  ldsm_x4(smem_u32(tile + r * kS + c), a);
}
/// B fragments of two n8 tiles (n0, n0 + 8) x k16 (k0..) where B(k, n) =
/// X[n][k] (X row-major, e.g. K[key][d] for Q K^T): b[0..1] for n-tile n0,
/// b[2..3] for n0 + 8.
__device__ __forceinline__ void ldsm_b_rows(uint32_t (&b)[4], const bf16 *tile,
                                            int kS, int n0, int k0) {
  const int lane = threadIdx.x & 31;
  const int r = n0 + (lane & 7) + (lane >> 4) * 8;
  const int c = k0 + ((lane >> 3) & 1) * 8;
  ldsm_x4(smem_u32(tile + r * kS + c), b);
}
/// The same where B(k, n) = X[k][n] (e.g. V[key][d] for P V), through
/// ldmatrix.trans.
__device__ __forceinline__ void ldsm_b_cols(uint32_t (&b)[4], const bf16 *tile,
                                            int kS, int k0, int n0) {
  const int lane = threadIdx.x & 31;
  const int r = k0 + (lane & 7) + ((lane >> 3) & 1) * 8;
  const int c = n0 + (lane >> 4) * 8;
  ldsm_x4_trans(smem_u32(tile + r * kS + c), b);
}

/// The A fragment of k-step kk (columns 16kk..16kk+15) of a 16-row tile held
/// as C fragments c[n-tile][4] (FlashAttention-2's register reuse of P).
template <int kN>
__device__ __forceinline__ void c_to_a(uint32_t (&a)[4],
                                       const float (&c)[kN][4], int kk) {
  a[0] = pack_bf16(c[2 * kk][0], c[2 * kk][1]);
  a[1] = pack_bf16(c[2 * kk][2], c[2 * kk][3]);
  a[2] = pack_bf16(c[2 * kk + 1][0], c[2 * kk + 1][1]);
  a[3] = pack_bf16(c[2 * kk + 1][2], c[2 * kk + 1][3]);
}

/// acc (16 rows x kDh, C fragments) += C(16 x 16 kNT/2, as C fragments c)
/// times the tile's rows 0.. of columns 0..kDh (row stride kS): P V in the
/// forwards, dS K in the dQ pass. k-steps from `nvalid` on are skipped.
template <int kNT, int kDh, int kS>
__device__ __forceinline__ void mma_c_by_tile(float (&acc)[kDh / 8][4],
                                              const float (&c)[kNT][4],
                                              const bf16 *tile, int nvalid) {
#pragma unroll
  for (int kk = 0; kk < kNT / 2; ++kk)
    if (kk * 16 < nvalid) {
      uint32_t a[4];
      c_to_a<kNT>(a, c, kk);
#pragma unroll
      for (int dp = 0; dp < kDh / 16; ++dp) {
        uint32_t bb[4];
        ldsm_b_cols(bb, tile, kS, kk * 16, dp * 16);
        mma16816(acc[2 * dp], a, bb[0], bb[1]);
        mma16816(acc[2 * dp + 1], a, bb[2], bb[3]);
      }
    }
}

//===--- Global <-> shared ------------------------------------------------===//

/// Loads a kTile-row tile: tile row r is row row_of(r) of src (row stride
/// ld; -1: zeros), columns >= Dh zeros. vec (16-byte aligned rows, Dh % 8
/// == 0): cp.async in 16-byte chunks, 8 threads per 128 contiguous bytes;
/// complete after cp_async_wait + __syncthreads. Otherwise plain 2-byte
/// loads and stores (complete after __syncthreads).
template <int kDh, class RowOf>
__device__ __forceinline__ void load_tile(bf16 *dst, const bf16 *src, int ld,
                                          int Dh, bool vec, RowOf row_of) {
  constexpr int kS = Geo<kDh>::kStride;
  if (vec) {
    constexpr int kChunks = kDh / 8;
    constexpr int kPer = kTile * kChunks / kCtaThreads;
    static_assert(kTile * kChunks % kCtaThreads == 0, "tile shape");
#pragma unroll
    for (int u = 0; u < kPer; ++u) {
      const int e = int(threadIdx.x) + u * kCtaThreads;
      const int r = e / kChunks, c = (e % kChunks) * 8;
      const int row = c < Dh ? row_of(r) : -1;
      const bool ok = row >= 0;
      // 32-bit offsets (the host checks that a batch element's rows fit):
      // fewer registers for the addresses the compiler hoists.
      const uint32_t off = ok ? uint32_t(row) * uint32_t(ld) + uint32_t(c) : 0u;
      cp_async16(smem_u32(dst + r * kS + c), src + off, ok);
    }
  } else {
    for (int e = int(threadIdx.x); e < kTile * kDh; e += kCtaThreads) {
      const int r = e / kDh, c = e % kDh;
      const int row = c < Dh ? row_of(r) : -1;
      dst[r * kS + c] = row >= 0 ? src[uint32_t(row) * uint32_t(ld) + c]
                                 : __ushort_as_bfloat16(0);
    }
  }
}

/// One warp writes the 16 staged rows src[r * kS + c] (shared) to global
/// row row_of(r) (-1: skipped), columns < Dh; 16-byte stores when vec.
template <int kDh, class RowOf>
__device__ __forceinline__ void store_rows16(const bf16 *src, bf16 *dst,
                                             int64_t ld, int Dh, bool vec,
                                             RowOf row_of) {
  constexpr int kS = Geo<kDh>::kStride;
  const int lane = threadIdx.x & 31;
  if (vec) {
    constexpr int kChunks = kDh / 8;
#pragma unroll
    for (int e = lane; e < 16 * kChunks; e += 32) {
      const int r = e / kChunks, c = (e % kChunks) * 8;
      const int row = row_of(r);
      if (row >= 0 && c < Dh)
        *reinterpret_cast<uint4 *>(dst + int64_t(row) * ld + c) =
            *reinterpret_cast<const uint4 *>(src + r * kS + c);
    }
  } else {
    for (int e = lane; e < 16 * kDh; e += 32) {
      const int r = e / kDh, c = e % kDh;
      const int row = row_of(r);
      if (row >= 0 && c < Dh)
        dst[int64_t(row) * ld + c] = src[r * kS + c];
    }
  }
}

/// Zeros columns [0, Dh) of rows row_of(r), r < kTile (-1: skipped), by
/// the whole CTA.
template <class RowOf>
__device__ __forceinline__ void zero_rows(bf16 *dst, int64_t ld, int Dh,
                                          bool vec, RowOf row_of) {
  if (vec) {
    const int chunks = Dh / 8;
    for (int e = int(threadIdx.x); e < kTile * chunks; e += kCtaThreads) {
      const int row = row_of(e / chunks);
      if (row >= 0)
        *reinterpret_cast<uint4 *>(dst + int64_t(row) * ld + (e % chunks) * 8) =
            make_uint4(0, 0, 0, 0);
    }
  } else {
    for (int e = int(threadIdx.x); e < kTile * Dh; e += kCtaThreads) {
      const int row = row_of(e / Dh);
      if (row >= 0)
        dst[int64_t(row) * ld + e % Dh] = __ushort_as_bfloat16(0);
    }
  }
}

/// Writes a warp's 16 x kDh fp32 C fragments, times mul, as bf16 into the
/// 16 staged rows st (row stride kS); rows g / g + 8 of a thread are zeros
/// when !keep0 / !keep1.
template <int kDh>
__device__ __forceinline__ void stage_c(bf16 *st, const float (&c)[kDh / 8][4],
                                        float mul, bool keep0, bool keep1) {
  constexpr int kS = Geo<kDh>::kStride;
  const int lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3;
#pragma unroll
  for (int dt = 0; dt < kDh / 8; ++dt) {
    const int col = dt * 8 + 2 * t4;
    *reinterpret_cast<uint32_t *>(st + g * kS + col) =
        keep0 ? pack_bf16(c[dt][0] * mul, c[dt][1] * mul) : 0u;
    *reinterpret_cast<uint32_t *>(st + (g + 8) * kS + col) =
        keep1 ? pack_bf16(c[dt][2] * mul, c[dt][3] * mul) : 0u;
  }
}

/// acc + sum of the 8 products of two 16-byte rows of bf16 (o and dO for
/// D = rowsum(dO * O)), in element order, fp32.
__device__ __forceinline__ float dot8_bf16(const bf16 *a, const bf16 *b,
                                           float acc) {
  const uint4 av = *reinterpret_cast<const uint4 *>(a);
  const uint4 bv = *reinterpret_cast<const uint4 *>(b);
  const __nv_bfloat162 *a2 = reinterpret_cast<const __nv_bfloat162 *>(&av);
  const __nv_bfloat162 *b2 = reinterpret_cast<const __nv_bfloat162 *>(&bv);
#pragma unroll
  for (int e = 0; e < 4; ++e) {
    const float2 af = __bfloat1622float2(a2[e]);
    const float2 bf = __bfloat1622float2(b2[e]);
    acc = fmaf(af.x, bf.x, acc);
    acc = fmaf(af.y, bf.y, acc);
  }
  return acc;
}

/// Bits 0..63: keys j0..j0+63 below T.
__device__ __forceinline__ uint64_t tile_valid_bits(int j0, int T) {
  const int n = T - j0;
  return n >= 64 ? ~uint64_t(0) : (uint64_t(1) << n) - 1;
}

//===--- Parameter blocks -------------------------------------------------===//

struct FwdParams {
  const bf16 *qkv = nullptr;
  bf16 *o = nullptr;
  float *lse = nullptr;
  const int32_t *keep = nullptr; // nullptr: no keep list
  int K = 0, B = 0, T = 0, H = 0, Dh = 0;
  int tiles = 0;          // query tiles per (b, h)
  float scale_log2 = 0.f; // scale * log2(e): scores in the exp2 domain
  bool vec = false;
};


struct BwdParams {
  const bf16 *qkv = nullptr;
  const bf16 *o = nullptr, *dout = nullptr; // [B, Tq, H*Dh]
  const float *lse = nullptr;               // [B, Tq, H]
  bf16 *dqkv = nullptr;
  // Scratch [B*H][Tqp], written by the prep kernel (tiled kernels only: the
  // resident backward makes them in shared memory): lse * log2(e), or +inf
  // for a query that does not take part (P = 0), and D = rowsum(dO * O).
  float *lse2 = nullptr, *dvec = nullptr;
  const int32_t *row_keep = nullptr;  // attention_bwd: [T]
  const int32_t *head_keep = nullptr; // attention_bwd: [H]
  const int32_t *queries = nullptr;   // attention_bwd_queries: [Tq]
  bool query_list = false;            // attention_bwd_queries
  // dS^T [B*H][T][ds_ld] (bf16; attention_bwd's ds_scratch, tiled kernels
  // only): written by the dK/dV kernel, read by the dQ kernel
  // (attn_bf16_bwd_dq_ds_kernel). nullptr: the dQ kernel recomputes dS.
  bf16 *ds = nullptr;
  int ds_ld = 0; // sbp_attention_ds_stride(T)
  int B = 0, T = 0, H = 0, Dh = 0;
  int Tq = 0;  // query indices: T, or K with a query list
  int Tqp = 0; // Tq rounded up to kTile
  int q_tiles = 0, k_tiles = 0;
  float scale = 0.f, scale_log2 = 0.f;
  bool vec = false;
};

/// qkv row of query index q (its o / dout / lse row is q), or -1 if it is
/// no query (padding, or a row that does not take part).
__device__ __forceinline__ int bwd_query_row(const BwdParams &p, int q) {
  if (q >= p.Tq)
    return -1;
  if (p.query_list) {
    const int r = __ldg(p.queries + q);
    return r >= 0 && r < p.T ? r : -1;
  }
  return !p.row_keep || __ldg(p.row_keep + q) >= 0 ? q : -1;
}
__device__ __forceinline__ bool bwd_key_ok(const BwdParams &p, int j) {
  return j < p.T && (!p.row_keep || __ldg(p.row_keep + j) >= 0);
}
__device__ __forceinline__ bool bwd_head_kept(const BwdParams &p, int h) {
  if (!p.head_keep)
    return true;
  for (int i = 0; i < p.H; ++i)
    if (__ldg(p.head_keep + i) == h)
      return true;
  return false;
}


//===--- Forward: one warp's 16 query rows --------------------------------===//
// The steps below are the resident kernels'. The tiled kernels inline the
// same steps (their GPU-verified bodies: moved onto these helpers the
// forward timed 7% slower, docs/cuda-target.md).

/// The online-softmax state of a warp's 16 query rows: this thread's rows
/// g and g + 8 (0 and 1), the output accumulators in C fragments.
template <int kDh> struct FwdRows {
  float acc[kDh / 8][4];
  float m0 = -INFINITY, m1 = -INFINITY, l0 = 0.0f, l1 = 0.0f;
  __device__ __forceinline__ FwdRows() {
#pragma unroll
    for (int dt = 0; dt < kDh / 8; ++dt)
      acc[dt][0] = acc[dt][1] = acc[dt][2] = acc[dt][3] = 0.0f;
  }
};

/// One key tile of up to 64 keys (K rows tk, V rows tv in shared memory,
/// nvalid > 0 of them before T; 16-key blocks past that are skipped):
/// S = Q K^T, keys outside the masks masked (masks(mk0, mk1) sets bit i =
/// key i of the tile allowed for row 0 / 1), the online softmax in the exp2
/// domain, acc += P V with P rounded to bf16 straight from the accumulators.
template <int kDh, class Masks>
__device__ __forceinline__ void fwd_key_tile(FwdRows<kDh> &r,
                                             const uint32_t (&qf)[kDh / 16][4],
                                             const bf16 *tk, const bf16 *tv,
                                             int nvalid, Masks masks,
                                             float scale_log2) {
  constexpr int kS = Geo<kDh>::kStride;
  constexpr int kKS = kDh / 16, kNT = kTile / 8, kDT = kDh / 8;
  const int t4 = threadIdx.x & 3;
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
        ldsm_b_rows(bb, tk, kS, np * 16, kk * 16);
        mma16816(s[2 * np], qf[kk], bb[0], bb[1]);
        mma16816(s[2 * np + 1], qf[kk], bb[2], bb[3]);
      }
  uint64_t mk0, mk1;
  masks(mk0, mk1);
  mk0 >>= 2 * t4; // to this thread's columns
  mk1 >>= 2 * t4;
  float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
  for (int nt = 0; nt < kNT; ++nt)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int bit = nt * 8 + e;
      s[nt][e] = ((mk0 >> bit) & 1u) ? s[nt][e] * scale_log2 : -INFINITY;
      s[nt][2 + e] = ((mk1 >> bit) & 1u) ? s[nt][2 + e] * scale_log2 : -INFINITY;
      mx0 = fmaxf(mx0, s[nt][e]);
      mx1 = fmaxf(mx1, s[nt][2 + e]);
    }
  mx0 = fmaxf(mx0, __shfl_xor_sync(kFullMask, mx0, 1));
  mx0 = fmaxf(mx0, __shfl_xor_sync(kFullMask, mx0, 2));
  mx1 = fmaxf(mx1, __shfl_xor_sync(kFullMask, mx1, 1));
  mx1 = fmaxf(mx1, __shfl_xor_sync(kFullMask, mx1, 2));
  const float mn0 = fmaxf(r.m0, mx0), mn1 = fmaxf(r.m1, mx1);
  // A row with no allowed key yet keeps m = -inf: exp2 of 0 offsets.
  const float mu0 = mn0 == -INFINITY ? 0.0f : mn0;
  const float mu1 = mn1 == -INFINITY ? 0.0f : mn1;
  const float al0 = fast_exp2(r.m0 - mu0), al1 = fast_exp2(r.m1 - mu1);
  r.m0 = mn0;
  r.m1 = mn1;
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
  // Per-thread partial row sums, rounded as a product then a sum (not one
  // FMA): the bits the tiled forward has always given.
  r.l0 = __fadd_rn(__fmul_rn(r.l0, al0), ls0);
  r.l1 = __fadd_rn(__fmul_rn(r.l1, al1), ls1);
#pragma unroll
  for (int dt = 0; dt < kDT; ++dt) {
    r.acc[dt][0] *= al0;
    r.acc[dt][1] *= al0;
    r.acc[dt][2] *= al1;
    r.acc[dt][3] *= al1;
  }
  mma_c_by_tile<kNT, kDh, kS>(r.acc, s, tv, nvalid);
}

/// The warp's rows done: o = acc / l as bf16, staged in 16 rows `so` of
/// shared memory (the warp's own) and stored to rows row0.. < T of o
/// (row stride hd), and lse = (m + log2 l) ln 2 when lse is set.
template <int kDh>
__device__ __forceinline__ void fwd_finish(FwdRows<kDh> &r, bf16 *so,
                                           const FwdParams &p, int b, int h,
                                           int row0, bool vec) {
  constexpr int kDT = kDh / 8;
  const int lane = threadIdx.x & 31, g = lane >> 2, t4 = lane & 3, T = p.T;
  const int hd = p.H * p.Dh;
  r.l0 += __shfl_xor_sync(kFullMask, r.l0, 1);
  r.l0 += __shfl_xor_sync(kFullMask, r.l0, 2);
  r.l1 += __shfl_xor_sync(kFullMask, r.l1, 1);
  r.l1 += __shfl_xor_sync(kFullMask, r.l1, 2);
  const float inv0 = 1.0f / r.l0, inv1 = 1.0f / r.l1; // l >= 1 for real rows
#pragma unroll
  for (int dt = 0; dt < kDT; ++dt) {
    r.acc[dt][0] *= inv0;
    r.acc[dt][1] *= inv0;
    r.acc[dt][2] *= inv1;
    r.acc[dt][3] *= inv1;
  }
  stage_c<kDh>(so, r.acc, 1.0f, true, true);
  __syncwarp();
  store_rows16<kDh>(so, p.o + int64_t(b) * T * hd + int64_t(h) * p.Dh, hd,
                    p.Dh, vec, [&](int i) {
                      const int t = row0 + i;
                      return t < T ? t : -1;
                    });
  const int r0 = row0 + g, r1 = r0 + 8;
  if (p.lse && t4 == 0) {
    if (r0 < T)
      p.lse[(int64_t(b) * T + r0) * p.H + h] = (r.m0 + log2f(r.l0)) * kLn2;
    if (r1 < T)
      p.lse[(int64_t(b) * T + r1) * p.H + h] = (r.m1 + log2f(r.l1)) * kLn2;
  }
}


//===--- Backward: one warp's 16 keys against a chunk of queries ----------===//

/// Queries per chunk of the key-stationary pass (fewer live accumulators
/// than a whole tile).
constexpr int kBwdChunk = 32;

/// The warp's keys kr..kr+15 (rows of the K and V tiles sk, sv; ok0 / ok1:
/// this thread's keys g and g + 8 take part) against kBwdChunk queries: tq,
/// tdo their Q and dO rows, tl, td their lse2 and D; 16-query blocks from
/// `limit` on are skipped. S^T = K Q^T, dP^T = V dO^T, P^T = exp2(scale_log2
/// S^T - lse2) (0 for keys that do not take part), dS^T = P^T (dP^T - D),
/// then dV += P^T dO and dK += dS^T Q with P^T and dS^T rounded to bf16.
/// A query that does not take part has zero Q and dO rows and lse2 = +inf,
/// so P = 0 without a branch. kSkipTail: the probabilities of skipped
/// blocks are not formed either (their lse2 / D may lie past the buffer).
/// store_ds(col, row g pair, row g + 8 pair) gets
/// each n8 tile's dS^T as the bf16 pairs the dK product reads (col: the
/// thread's first query of the pair within the chunk).
template <int kDh, bool kSkipTail, class StoreDs>
__device__ __forceinline__ void
bwd_kv_chunk(float (&dk)[kDh / 8][4], float (&dv)[kDh / 8][4], const bf16 *sk,
             const bf16 *sv, int kr, const bf16 *tq, const bf16 *tdo,
             const float *tl, const float *td, int limit, bool ok0, bool ok1,
             float scale_log2, StoreDs store_ds) {
  constexpr int kS = Geo<kDh>::kStride, kKS = kDh / 16;
  constexpr int kCT = kBwdChunk / 8; // n8 tiles of the chunk
  const int t4 = threadIdx.x & 3;
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
      if (np * 16 < limit) {
        uint32_t bb[4];
        ldsm_b_rows(bb, tq, kS, np * 16, kk * 16);
        mma16816(s[2 * np], kf, bb[0], bb[1]);
        mma16816(s[2 * np + 1], kf, bb[2], bb[3]);
        ldsm_b_rows(bb, tdo, kS, np * 16, kk * 16);
        mma16816(dp[2 * np], vf, bb[0], bb[1]);
        mma16816(dp[2 * np + 1], vf, bb[2], bb[3]);
      }
  }
#pragma unroll
  for (int nt = 0; nt < kCT; ++nt) {
    if (kSkipTail && (nt / 2) * 16 >= limit) // not computed, not read
      continue;
    const int col = nt * 8 + 2 * t4;
    const float2 L = *reinterpret_cast<const float2 *>(tl + col);
    const float2 D = *reinterpret_cast<const float2 *>(td + col);
    const float p00 = ok0 ? fast_exp2(fmaf(s[nt][0], scale_log2, -L.x)) : 0.f;
    const float p01 = ok0 ? fast_exp2(fmaf(s[nt][1], scale_log2, -L.y)) : 0.f;
    const float p10 = ok1 ? fast_exp2(fmaf(s[nt][2], scale_log2, -L.x)) : 0.f;
    const float p11 = ok1 ? fast_exp2(fmaf(s[nt][3], scale_log2, -L.y)) : 0.f;
    s[nt][0] = p00;
    s[nt][1] = p01;
    s[nt][2] = p10;
    s[nt][3] = p11;
    dp[nt][0] = p00 * (dp[nt][0] - D.x);
    dp[nt][1] = p01 * (dp[nt][1] - D.y);
    dp[nt][2] = p10 * (dp[nt][2] - D.x);
    dp[nt][3] = p11 * (dp[nt][3] - D.y);
    store_ds(col, pack_bf16(dp[nt][0], dp[nt][1]),
             pack_bf16(dp[nt][2], dp[nt][3]));
  }
#pragma unroll
  for (int kk = 0; kk < kCT / 2; ++kk)
    if (kk * 16 < limit) {
      uint32_t ap[4], ads[4];
      c_to_a<kCT>(ap, s, kk);
      c_to_a<kCT>(ads, dp, kk);
#pragma unroll
      for (int dd = 0; dd < kDh / 16; ++dd) {
        uint32_t bb[4];
        ldsm_b_cols(bb, tdo, kS, kk * 16, dd * 16);
        mma16816(dv[2 * dd], ap, bb[0], bb[1]);
        mma16816(dv[2 * dd + 1], ap, bb[2], bb[3]);
        ldsm_b_cols(bb, tq, kS, kk * 16, dd * 16);
        mma16816(dk[2 * dd], ads, bb[0], bb[1]);
        mma16816(dk[2 * dd + 1], ads, bb[2], bb[3]);
      }
    }
}

} // namespace abf16
} // namespace detail

} // namespace cuda
} // namespace sbp

#endif // SBP_CUDA_DETAIL_ATTENTION_BF16_COMMON_CUH
