//===- detail/attention_bf16_resident.cuh - bf16 attention, a sequence per CTA -*- CUDA -*-===//
//
// Internal to the CUDA kernel library (libsbp_cuda_kernels.a).
//
// Short sequences (a ViT's 197 tokens, SBP's ~99 kept rows): one CTA per
// (batch, head) holds the whole sequence in shared memory, one warp per 16
// rows. Against the tiled kernels (attention_bf16.cuh: a CTA per 64 rows,
// the other side streamed) this loads every row once instead of once per
// tile, and the backward is one kernel: the key-stationary pass writes each
// dS^T tile (bf16) to shared memory as it makes it, so that dQ = dS K is one
// more product instead of a second pass that recomputes P and dS, and
// lse2 and D = rowsum(dO * O) are made in the CTA (no prep kernel; the
// scratch attention_bwd asks for goes unused).
// Used (when chosen: default_kernels) where the rows fit (kResidentMaxRows,
// the device's shared memory and registers), the rows are 16-byte aligned
// and, in the backward, every row is a query (attention_bwd; attention_bwd_queries
// stays tiled).
//
//===----------------------------------------------------------------------===//
#ifndef SBP_CUDA_DETAIL_ATTENTION_BF16_RESIDENT_CUH
#define SBP_CUDA_DETAIL_ATTENTION_BF16_RESIDENT_CUH

#include "detail/attention_bf16_common.cuh"

#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace sbp {
namespace cuda {

namespace detail {
namespace abf16 {

/// Rows one CTA holds: 14 warps of 16.
constexpr int kResidentMaxRows = 224;
constexpr int kResidentMaxThreads = kResidentMaxRows / 16 * 32;
/// The backward's register cap (`__launch_bounds__(448, 1)` caps it at 128,
/// which spills). The register file is handed out to warps in groups of
/// four, so at 144 registers a CTA of 13 or 14 warps (193..224 rows) asks
/// for 16 x 32 x 144 > 64 K and cannot launch (H100, 2026-12-07: "too many
/// resources requested"); use_resident asks the occupancy API first and
/// leaves those sizes to the tiled kernels. The Dh = 32 backward, at 107
/// registers, launches up to 224 rows.
constexpr int kResidentBwdRegisters = 144;

/// T rounded up to whole warps' rows.
__host__ __device__ inline int resident_rows(int T) { return (T + 15) & ~15; }

/// Shared memory of the resident kernels for T rows: `tiles` row tiles of
/// Tp x kStride bf16, then (backward) lse2 and D (Tp floats each) and the
/// dS^T tile (Tp x (Tp + 8) bf16: rows 16-byte aligned, the 8 rows of a
/// quad group's stores in distinct banks), or (forward) the keep bitmask.
template <int kDh> struct ResidentSmem {
  int Tp;
  __host__ __device__ explicit ResidentSmem(int T) : Tp(resident_rows(T)) {}
  __host__ __device__ size_t tile() const { return size_t(Tp) * Geo<kDh>::kStride; }
  __host__ __device__ int ds_stride() const { return Tp + 8; }
  __host__ __device__ size_t bwd_bytes() const {
    return 4 * tile() * sizeof(bf16) + 2 * size_t(Tp) * sizeof(float) +
           size_t(Tp) * ds_stride() * sizeof(bf16);
  }
  __host__ __device__ size_t fwd_bytes(bool keep) const {
    return 3 * tile() * sizeof(bf16) + (keep ? size_t(Tp / 32 + 1) * 4 : 0);
  }
};

/// cp.async copy of rows [r0, r1) of a row tile (stride kStride) from
/// src row row_of(r) (row stride ld; -1: zeros), columns >= Dh zeros, by
/// the whole CTA; complete after cp_async_wait + __syncthreads.
template <int kDh, class RowOf>
__device__ __forceinline__ void load_rows_async(bf16 *dst, const bf16 *src,
                                                int ld, int Dh, int r0, int r1,
                                                RowOf row_of) {
  constexpr int kS = Geo<kDh>::kStride, kChunks = kDh / 8;
  for (int e = int(threadIdx.x) + r0 * kChunks; e < r1 * kChunks;
       e += int(blockDim.x)) {
    const int r = e / kChunks, c = (e % kChunks) * 8;
    const int row = c < Dh ? row_of(r) : -1;
    const bool ok = row >= 0;
    const uint32_t off = ok ? uint32_t(row) * uint32_t(ld) + uint32_t(c) : 0u;
    cp_async16(smem_u32(dst + r * kS + c), src + off, ok);
  }
}

/// cp_async_wait with a run-time count of pending groups (0..3).
__device__ __forceinline__ void cp_async_wait_pending(int n) {
  switch (n) {
  case 0:
    cp_async_wait<0>();
    break;
  case 1:
    cp_async_wait<1>();
    break;
  case 2:
    cp_async_wait<2>();
    break;
  default:
    cp_async_wait<3>();
    break;
  }
}

//===--- Forward ----------------------------------------------------------===//

/// A CTA owns one (b, h): Q, K, V of its T rows in shared memory; warp w
/// owns queries 16w.. (Q fragments in registers) and walks the keys in
/// tiles of 64 with an online softmax in fp32, as the tiled kernel does.
/// With a keep list the CTA first builds the keep bitmask of the T tokens;
/// a kept query masks the keys that are not kept.
template <int kDh>
__global__ void __launch_bounds__(kResidentMaxThreads, 1)
    attn_bf16_fwd_resident_kernel(const FwdParams p) {
  constexpr int kS = Geo<kDh>::kStride;
  constexpr int kKS = kDh / 16;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int T = p.T;
  const ResidentSmem<kDh> lay(T);
  bf16 *const sq = reinterpret_cast<bf16 *>(smem_raw);
  bf16 *const sk = sq + lay.tile(), *const sv = sk + lay.tile();
  uint32_t *const keep_bits = reinterpret_cast<uint32_t *>(sv + lay.tile());

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2;
  const int bh = int(blockIdx.x), b = bh / p.H, h = bh - b * p.H;
  const int hd = p.H * p.Dh, ld = 3 * hd; // < 2^31 (host check)
  const bf16 *gq = p.qkv + int64_t(b) * T * ld + int64_t(h) * p.Dh;
  const bf16 *gk = gq + hd, *gv = gk + hd;
  const auto row_of = [&](int r) { return r < T ? r : -1; };
  // Copy group i: K and V rows [64 i, 64 i + 64), group 0 also Q, so that
  // the first key tile is worked on while the others arrive.
  const int groups = (lay.Tp + 63) / 64; // <= 4
  load_rows_async<kDh>(sq, gq, ld, p.Dh, 0, lay.Tp, row_of);
  for (int i = 0; i < groups; ++i) {
    const int r0 = 64 * i, r1 = min(lay.Tp, r0 + 64);
    load_rows_async<kDh>(sk, gk, ld, p.Dh, r0, r1, row_of);
    load_rows_async<kDh>(sv, gv, ld, p.Dh, r0, r1, row_of);
    cp_async_commit();
  }
  const bool has_keep = p.keep != nullptr;
  if (has_keep) { // bit t = token t is listed
    for (int i = tid; i <= lay.Tp / 32; i += int(blockDim.x))
      keep_bits[i] = 0u;
    __syncthreads();
    for (int e = tid; e < p.K; e += int(blockDim.x)) {
      const int t = __ldg(p.keep + e);
      if (t >= 0 && t < T)
        atomicOr(&keep_bits[t >> 5], 1u << (t & 31));
    }
  }
  cp_async_wait_pending(groups - 1); // Q and the first key tile
  __syncthreads();

  const int row0 = warp * 16; // < T: the block has Tp / 16 warps
  const int r0 = row0 + g, r1 = r0 + 8;
  uint32_t qf[kKS][4];
#pragma unroll
  for (int kk = 0; kk < kKS; ++kk)
    ldsm_a(qf[kk], sq, kS, row0, kk * 16);
  const auto bit = [&](int t) {
    return t < T && ((keep_bits[t >> 5] >> (t & 31)) & 1u);
  };
  const bool kept0 = has_keep && bit(r0), kept1 = has_keep && bit(r1);

  FwdRows<kDh> rows;
  for (int j0 = 0; j0 < T; j0 += kTile) {
    if (j0 > 0) { // copy group j0 / 64 is in
      cp_async_wait_pending(groups - 1 - j0 / kTile);
      __syncthreads();
    }
    const auto masks = [&](uint64_t &mk0, uint64_t &mk1) {
      const uint64_t valid = tile_valid_bits(j0, T);
      mk0 = mk1 = valid;
      if (has_keep) { // the 64 keep bits from j0 (j0 is a multiple of 64)
        const int w = j0 >> 5;
        const uint64_t kb =
            (uint64_t(w + 1 <= lay.Tp / 32 ? keep_bits[w + 1] : 0u) << 32 |
             keep_bits[w]) &
            valid;
        mk0 = kept0 ? kb : valid;
        mk1 = kept1 ? kb : valid;
      }
    };
    // Rows past Tp are never read: 16-key blocks from T on are skipped.
    fwd_key_tile<kDh>(rows, qf, sk + j0 * kS, sv + j0 * kS, T - j0, masks,
                      p.scale_log2);
  }
  // The warp's own Q rows (their fragments are in registers) stage the
  // output for 16-byte stores.
  fwd_finish<kDh>(rows, sq + row0 * kS, p, b, h, row0, true);
}

//===--- Backward ---------------------------------------------------------===//

/// Zeros dq, dk, dv of one (b, h) (a head that is not kept): T rows.
__device__ __forceinline__ void zero_dqkv_rows(bf16 *gdq, int ld, int hd,
                                               int T, int Dh) {
  const int chunks = Dh / 8; // Dh % 8 == 0 here
  for (int e = int(threadIdx.x); e < T * 3 * chunks; e += int(blockDim.x)) {
    const int row = e / (3 * chunks), rest = e - row * 3 * chunks;
    const int part = rest / chunks, c = (rest - part * chunks) * 8;
    *reinterpret_cast<uint4 *>(gdq + int64_t(row) * ld + part * hd + c) =
        make_uint4(0, 0, 0, 0);
  }
}

/// lse2[q] = lse * log2(e) (+inf for a row that does not take part: P = 0)
/// and D[q] = sum_d float(dO) * float(O) (0 there) into shared memory, for
/// q < Tp. kChunks lanes per row, a fixed shuffle tree: deterministic.
template <int kDh>
__device__ __forceinline__ void resident_lse_d(const BwdParams &p, int b,
                                               int h, int Tp, float *sl,
                                               float *sd) {
  constexpr int kChunks = kDh / 8; // Tp * kChunks is a multiple of 32
  const int lane = threadIdx.x & 31, hd = p.H * p.Dh;
  for (int e0 = int(threadIdx.x) - lane; e0 < Tp * kChunks;
       e0 += int(blockDim.x)) {
    const int e = e0 + lane, q = e / kChunks, c = (e % kChunks) * 8;
    const bool part = bwd_query_row(p, q) >= 0;
    float acc = 0.0f;
    if (part && c < p.Dh) {
      const int64_t off = (int64_t(b) * p.T + q) * hd + int64_t(h) * p.Dh + c;
      acc = dot8_bf16(p.o + off, p.dout + off, acc);
    }
#pragma unroll
    for (int off = kChunks / 2; off > 0; off >>= 1)
      acc += __shfl_xor_sync(kFullMask, acc, off);
    if (c == 0) {
      sd[q] = acc;
      sl[q] = part ? __ldg(p.lse + (int64_t(b) * p.T + q) * p.H + h) * kLog2e
                   : INFINITY;
    }
  }
}

/// dQ, dK, dV of one (b, h) (attention_bwd: every row a query, Tq == T).
/// Phase 1, warp w owns keys 16w..: per chunk of 32 queries S^T = K Q^T,
/// dP^T = V dO^T, P^T = exp2(scale_log2 S^T - lse2), dS^T = P^T (dP^T - D),
/// dV += P^T dO, dK += dS^T Q, and dS^T (bf16) to shared memory. Phase 2,
/// warp w owns queries 16w..: dQ = dS K from the stored dS^T (ldmatrix
/// .trans gives dS's A fragments). dK, dQ = scale * those. Rows that do
/// not take part have Q = dO = 0 and lse2 = +inf (P = 0), and masked keys
/// P = 0, so their dq, dk, dv come out zero.
template <int kDh>
__global__ void __maxnreg__(kResidentBwdRegisters)
    attn_bf16_bwd_resident_kernel(const BwdParams p) {
  constexpr int kS = Geo<kDh>::kStride;
  constexpr int kDT = kDh / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int T = p.T;
  const ResidentSmem<kDh> lay(T);
  const int Tp = lay.Tp, dsS = lay.ds_stride();
  bf16 *const sq = reinterpret_cast<bf16 *>(smem_raw);
  bf16 *const sk = sq + lay.tile(), *const sv = sk + lay.tile();
  bf16 *const sdo = sv + lay.tile();
  float *const sl = reinterpret_cast<float *>(sdo + lay.tile());
  float *const sd = sl + Tp;
  bf16 *const sds = reinterpret_cast<bf16 *>(sd + Tp); // [key][query]

  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2;
  const int bh = int(blockIdx.x), b = bh / p.H, h = bh - b * p.H;
  const int hd = p.H * p.Dh, ld = 3 * hd; // < 2^31 (host check)
  const bf16 *gq = p.qkv + int64_t(b) * T * ld + int64_t(h) * p.Dh;
  const bf16 *gk = gq + hd, *gv = gk + hd;
  const bf16 *gdo = p.dout + int64_t(b) * T * hd + int64_t(h) * p.Dh;
  bf16 *gdq = p.dqkv + int64_t(b) * T * ld + int64_t(h) * p.Dh;
  bf16 *gdk = gdq + hd, *gdv = gdk + hd;

  if (!bwd_head_kept(p, h)) {
    zero_dqkv_rows(gdq, ld, hd, T, p.Dh);
    return;
  }
  const auto key_row = [&](int r) { return bwd_key_ok(p, r) ? r : -1; };
  const auto query_row = [&](int r) { return bwd_query_row(p, r); };
  // Copy group i: Q and dO rows [64 i, 64 i + 64), group 0 also K and V,
  // so that phase 1 starts on the first queries while the rest arrive.
  const int groups = (Tp + 63) / 64; // <= 4
  load_rows_async<kDh>(sk, gk, ld, p.Dh, 0, Tp, key_row);
  load_rows_async<kDh>(sv, gv, ld, p.Dh, 0, Tp, key_row);
  for (int i = 0; i < groups; ++i) {
    const int r0 = 64 * i, r1 = min(Tp, r0 + 64);
    load_rows_async<kDh>(sq, gq, ld, p.Dh, r0, r1, query_row);
    load_rows_async<kDh>(sdo, gdo, hd, p.Dh, r0, r1, query_row);
    cp_async_commit();
  }
  resident_lse_d<kDh>(p, b, h, Tp, sl, sd); // while the copies fly

  // Phase 1: the warp's 16 keys against every query.
  const int kr = warp * 16;
  const bool ok0 = bwd_key_ok(p, kr + g), ok1 = bwd_key_ok(p, kr + g + 8);
  bf16 *const ds_row = sds + (kr + g) * dsS;
  float dk[kDT][4], dv[kDT][4];
#pragma unroll
  for (int dt = 0; dt < kDT; ++dt)
#pragma unroll
    for (int e = 0; e < 4; ++e)
      dk[dt][e] = dv[dt][e] = 0.0f;
#pragma unroll 1
  for (int c0 = 0; c0 < T; c0 += kBwdChunk) {
    if (c0 % 64 == 0) { // copy group c0 / 64 (and the older ones) is in
      cp_async_wait_pending(groups - 1 - c0 / 64);
      __syncthreads();
    }
    bwd_kv_chunk<kDh, true>(dk, dv, sk, sv, kr, sq + c0 * kS, sdo + c0 * kS,
                      sl + c0, sd + c0, T - c0, ok0, ok1, p.scale_log2,
                      [&](int col, uint32_t lo, uint32_t hi) {
                        bf16 *at = ds_row + c0 + col; // dS^T row kr + g
                        *reinterpret_cast<uint32_t *>(at) = lo;
                        *reinterpret_cast<uint32_t *>(at + 8 * dsS) = hi;
                      });
  }
  // dV, then dK, out through the warp's own V rows (only this warp reads
  // them); keys that do not take part get zeros.
  const auto key_out = [&](int r) {
    const int j = kr + r;
    return j < T ? j : -1;
  };
  bf16 *st = sv + kr * kS;
  stage_c<kDh>(st, dv, 1.0f, ok0, ok1);
  __syncwarp();
  store_rows16<kDh>(st, gdv, ld, p.Dh, true, key_out);
  __syncwarp();
  stage_c<kDh>(st, dk, p.scale, ok0, ok1);
  __syncwarp();
  store_rows16<kDh>(st, gdk, ld, p.Dh, true, key_out);
  __syncthreads(); // every dS^T tile is stored

  // Phase 2: the warp's 16 queries, dQ = dS K over the Tp keys.
  const int q0 = warp * 16;
  float dq[kDT][4];
#pragma unroll
  for (int dt = 0; dt < kDT; ++dt)
    dq[dt][0] = dq[dt][1] = dq[dt][2] = dq[dt][3] = 0.0f;
  for (int k0 = 0; k0 < Tp; k0 += 16) {
    // A = dS[q0.., k0..]: the transpose of dS^T's block at (k0, q0).
    uint32_t a[4];
    {
      const int r = k0 + (lane & 7) + (lane >> 4) * 8;
      const int c = q0 + ((lane >> 3) & 1) * 8;
      ldsm_x4_trans(smem_u32(sds + r * dsS + c), a);
    }
#pragma unroll
    for (int dd = 0; dd < kDh / 16; ++dd) {
      uint32_t bb[4];
      ldsm_b_cols(bb, sk, kS, k0, dd * 16);
      mma16816(dq[2 * dd], a, bb[0], bb[1]);
      mma16816(dq[2 * dd + 1], a, bb[2], bb[3]);
    }
  }
  // Staged in the warp's own Q rows (phase 1's reads of Q are done).
  bf16 *so = sq + q0 * kS;
  stage_c<kDh>(so, dq, p.scale, true, true);
  __syncwarp();
  store_rows16<kDh>(so, gdq, ld, p.Dh, true, [&](int r) {
    const int q = q0 + r;
    return q < T ? q : -1;
  });
}

//===--- Launchers --------------------------------------------------------===//

/// The current device's opt-in shared memory per block (cached per device;
/// 48 KiB if the query fails).
inline size_t resident_smem_limit(const Context &ctx) {
  static std::atomic<int> cached[64] = {};
  int dev = ctx.device;
  if (dev < 0 && cudaGetDevice(&dev) != cudaSuccess) {
    cudaGetLastError(); // not this call's error
    dev = 0;
  }
  dev = dev < 64 ? dev : 0;
  int v = cached[dev].load(std::memory_order_relaxed);
  if (v == 0) {
    if (cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin,
                               dev) != cudaSuccess) {
      cudaGetLastError();
      v = 48 * 1024;
    }
    cached[dev].store(v, std::memory_order_relaxed);
  }
  return size_t(v);
}

/// Which attention kernels run. kAuto: the resident backward where it fits
/// and the batch has at least a CTA per multiprocessor (a CTA per (b, h)
/// leaves a GPU idle on a handful of sequences), else the tiled kernels;
/// kResident: the resident ones wherever they fit; kTiled: never.
enum class Kernels { kAuto, kResident, kTiled };

/// The library calls' choice: kAuto. On the H100 (2026-12-07, bench/
/// attn_bench.sh) the resident backward takes SBP's compact kept rows
/// (T = 99) in 88.6 us against the tiled 110.7 (cuDNN 121.7), and the ViT-Tiny
/// SBP step 13.09 ms against 13.26; it does not fit ViT-Tiny's dense 197
/// rows (registers, see kResidentBwdRegisters), where the tiled kernels run,
/// and the resident forward is correct but slower than the tiled one.
constexpr Kernels kDefaultKernels = Kernels::kAuto;

/// kDefaultKernels, or SBP_ATTN_KERNELS = auto | resident | tiled (any
/// other value: kDefaultKernels). The two families round dq differently in
/// the last bits (S and dP from K Q^T against Q K^T), within the tests'
/// tolerance.
inline Kernels default_kernels() {
  static const Kernels k = [] {
    const char *v = std::getenv("SBP_ATTN_KERNELS");
    if (v && std::strcmp(v, "auto") == 0)
      return Kernels::kAuto;
    if (v && std::strcmp(v, "resident") == 0)
      return Kernels::kResident;
    if (v && std::strcmp(v, "tiled") == 0)
      return Kernels::kTiled;
    return kDefaultKernels;
  }();
  return k;
}

/// Threads of a resident CTA for T rows: a warp per 16 rows.
inline unsigned resident_threads(int T) {
  return unsigned(resident_rows(T) / 16 * 32);
}

/// Whether `kernel` can run a CTA for T rows with `smem` bytes of shared
/// memory here: raises its shared-memory cap to the device's opt-in limit
/// (never lowers it: a graph captured with a larger T must keep running),
/// then asks the occupancy API, which also counts registers (see
/// kResidentBwdRegisters). Errors are cleared.
template <class Kernel>
inline bool resident_launchable(const Context &ctx, Kernel *kernel, int T,
                                size_t smem) {
  const size_t limit = resident_smem_limit(ctx);
  if (smem > limit)
    return false;
  int ctas = 0;
  if ((smem > 48 * 1024 &&
       cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                            int(limit)) != cudaSuccess) ||
      cudaOccupancyMaxActiveBlocksPerMultiprocessor(
          &ctas, kernel, int(resident_threads(T)), smem) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return ctas > 0;
}

/// Whether the resident kernels take this problem (T rows of head dim kDh,
/// B * H sequences, 16-byte rows) under `which` and can launch it.
template <int kDh>
inline bool use_resident(const Context &ctx, Kernels which, int64_t B,
                         int64_t T, int64_t H, bool vec, bool bwd) {
  if (which == Kernels::kTiled || !vec || T > kResidentMaxRows)
    return false;
  // kAuto: the backward only. The resident forward is slower than the
  // tiled one at ViT-Tiny's T = 197 (H100, bench/attn_bench.sh: 90.9 against
  // 78.6 us; registers leave it one CTA per multiprocessor).
  if (which == Kernels::kAuto && (!bwd || B * H < int64_t(ctx.sm_count)))
    return false;
  const ResidentSmem<kDh> lay{int(T)};
  return bwd ? resident_launchable(ctx, attn_bf16_bwd_resident_kernel<kDh>,
                                   int(T), lay.bwd_bytes())
             : resident_launchable(ctx, attn_bf16_fwd_resident_kernel<kDh>,
                                   int(T), lay.fwd_bytes(true));
}

/// Launches a resident kernel, one CTA per (b, h), where use_resident said
/// yes (it raised the shared-memory cap).
template <class Kernel, class Params>
inline void launch_resident(const Context &ctx, Kernel *kernel,
                            const Params &p, size_t smem) {
  kernel<<<unsigned(int64_t(p.B) * p.H), resident_threads(p.T), smem,
           ctx.stream>>>(p);
}

} // namespace abf16
} // namespace detail

} // namespace cuda
} // namespace sbp

#endif // SBP_CUDA_DETAIL_ATTENTION_BF16_RESIDENT_CUH
