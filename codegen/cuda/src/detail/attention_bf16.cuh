//===- detail/attention_bf16.cuh - bfloat16 tensor-core attention (mma.sync, cp.async) -*- CUDA -*-===//
//
// Internal to the CUDA kernel library (libsbp_cuda_kernels.a).
//
//===----------------------------------------------------------------------===//
#ifndef SBP_CUDA_DETAIL_ATTENTION_BF16_CUH
#define SBP_CUDA_DETAIL_ATTENTION_BF16_CUH

#include "detail/pointwise.cuh"

#include <cuda_bf16.h>

#include <cmath>
#include <cstdint>

namespace sbp {
namespace cuda {

namespace detail {
namespace abf16 {

using bf16 = __nv_bfloat16;

// Every kernel: 4 warps; a warp owns 16 rows of the CTA's 64 stationary
// rows (queries in the forward and the dQ pass, keys in the dK/dV pass) and
// streams the other side in tiles of 64 rows, double-buffered by cp.async.
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

/// Bits 0..63: keys j0..j0+63 below T.
__device__ __forceinline__ uint64_t tile_valid_bits(int j0, int T) {
  const int n = T - j0;
  return n >= 64 ? ~uint64_t(0) : (uint64_t(1) << n) - 1;
}

//===--- Forward ----------------------------------------------------------===//

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
#pragma unroll
      for (int kk = 0; kk < kNT / 2; ++kk)
        if (kk * 16 < nvalid) {
          uint32_t a[4];
          c_to_a<kNT>(a, s, kk);
#pragma unroll
          for (int dp = 0; dp < kDh / 16; ++dp) {
            uint32_t bb[4];
            ldsm_b_cols(bb, sv, kS, kk * 16, dp * 16);
            mma16816(acc[2 * dp], a, bb[0], bb[1]);
            mma16816(acc[2 * dp + 1], a, bb[2], bb[3]);
          }
        }
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

struct BwdParams {
  const bf16 *qkv = nullptr;
  const bf16 *o = nullptr, *dout = nullptr; // [B, Tq, H*Dh]
  const float *lse = nullptr;               // [B, Tq, H]
  bf16 *dqkv = nullptr;
  // Scratch [B*H][Tqp], written by the prep kernel: lse * log2(e), or +inf
  // for a query that does not take part (P = 0), and D = rowsum(dO * O).
  float *lse2 = nullptr, *dvec = nullptr;
  const int32_t *row_keep = nullptr;  // attention_bwd: [T]
  const int32_t *head_keep = nullptr; // attention_bwd: [H]
  const int32_t *queries = nullptr;   // attention_bwd_queries: [Tq]
  bool query_list = false;            // attention_bwd_queries
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
/// zeros dq of the tile's tokens that are not queries.
template <int kDh, bool kVec>
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
#pragma unroll
      for (int kk = 0; kk < kNT / 2; ++kk)
        if (kk * 16 < nvalid) {
          uint32_t a[4];
          c_to_a<kNT>(a, s, kk);
#pragma unroll
          for (int dd = 0; dd < kDh / 16; ++dd) {
            uint32_t bb[4];
            ldsm_b_cols(bb, sk, kS, kk * 16, dd * 16);
            mma16816(dq[2 * dd], a, bb[0], bb[1]);
            mma16816(dq[2 * dd + 1], a, bb[2], bb[3]);
          }
        }
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
                          int64_t grid) {
  if (p.vec)
    launch_fwd<kDh, true>(ctx, p, grid);
  else
    launch_fwd<kDh, false>(ctx, p, grid);
}

template <int kDh, bool kVec>
inline void launch_bwd_kernels(const Context &ctx, const BwdParams &p,
                               const char *where) {
  const size_t dkdv_smem = 6 * size_t(Geo<kDh>::kBytes) + 4 * kTile * 4;
  const size_t dq_smem = 4 * size_t(Geo<kDh>::kBytes);
  if (!smem_limit(attn_bf16_bwd_dkdv_kernel<kDh, kVec>, dkdv_smem, where) ||
      !smem_limit(attn_bf16_bwd_dq_kernel<kDh, kVec>, dq_smem, where))
    return;
  const int64_t bh = int64_t(p.B) * p.H;
  attn_bf16_bwd_dkdv_kernel<kDh, kVec>
      <<<unsigned(bh * p.k_tiles), kCtaThreads, dkdv_smem, ctx.stream>>>(p);
  check_launch(where);
  if (p.q_tiles > 0)
    attn_bf16_bwd_dq_kernel<kDh, kVec>
        <<<unsigned(bh * p.q_tiles), kCtaThreads, dq_smem, ctx.stream>>>(p);
}

template <int kDh>
inline void launch_bwd_dh(const Context &ctx, const BwdParams &p,
                          const char *where) {
  if (p.vec)
    launch_bwd_kernels<kDh, true>(ctx, p, where);
  else
    launch_bwd_kernels<kDh, false>(ctx, p, where);
}

/// Both backward entry points: checks, scratch, the three kernels.
inline void launch_bwd(const Context &ctx, const char *where, BwdParams p,
                       int64_t B, int64_t T, int64_t H, int64_t Dh, int64_t Tq,
                       float scale) {
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

} // namespace abf16
} // namespace detail

} // namespace cuda
} // namespace sbp

#endif // SBP_CUDA_DETAIL_ATTENTION_BF16_CUH
