//===- Attention.cpp - Scaled dot-product attention on a packed qkv -------===//
//
// qkv is the [B, T, 3*H*Dh] output of the qkv projection; every kernel works
// on lists of token indices (which queries, which keys), built once per call
// on the calling thread, so the SBP variants (drop_qkv, drop_query,
// drop_head) are the plain kernels run over other lists.
//
// Forward: one task per (batch, head, tile of kQTile queries), an online
// softmax over tiles of kKTile keys (running max m, running sum l, rescaled
// accumulator) as FlashAttention: at most one kQTile x kKTile tile of scores
// exists at a time. Keys of a tile are packed transposed ([Dh][kKTile],
// zero-padded) so that scores are computed as outer products over the head
// dimension, kChunk contiguous key columns at a time held in registers.
//
// Backward: one task per (batch, head); it owns every dq, dk, dv column of
// its head, so nothing is shared between tasks and the result does not
// depend on the team size. Key tiles are the outer loop (their dk, dv rows
// accumulate in the workspace and are stored once), query tiles the inner
// one; P = exp(scale * q.k - lse) is recomputed from the saved lse, and
// dS = P * (dO.v - rowsum(dO * O)).
//
//===----------------------------------------------------------------------===//

#include "KernelSupport.h"
#include "VecMath.h"
#include "sbp/cpu_kernels.h"

#include <cmath>
#include <cstring>
#include <initializer_list>
#include <limits>

namespace sbp {
namespace cpu {
namespace {

constexpr int64_t kQTile = 32; // queries per tile
constexpr int64_t kKTile = 64; // keys per tile (packed columns)
constexpr int kChunk = 16;     // floats kept in registers (4 SSE vectors)

enum Part { kQ = 0, kK = 1, kV = 2 }; // the thirds of a qkv row

/// Sizes of one attention call and the addressing of the qkv layout.
struct Dims {
  int64_t B, T, H, Dh;
  float scale;

  int64_t width() const { return H * Dh; } // o, dout row; one qkv third
  /// Offset of (part, head h) of token t of batch element b in qkv or dqkv.
  int64_t qkvAt(Part part, int64_t b, int64_t t, int64_t h) const {
    return (b * T + t) * 3 * width() + (int64_t(part) * H + h) * Dh;
  }
};

/// The queries of a backward call: query i is qkv token tok[i] and row
/// row[i] of the o, lse, dout tensors, which hold `rows` rows per batch
/// element.
struct Queries {
  const int32_t *tok, *row;
  int64_t n, rows;
};

inline bool worthParallel(int64_t work) {
  return work >= detail::kParallelMinElems * 4;
}

inline float dot(const float *a, const float *b, int64_t n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t d = 0; d < n; ++d)
    s += a[d] * b[d];
  return s;
}

inline void axpy(float alpha, const float *x, float *y, int64_t n) {
#pragma omp simd
  for (int64_t d = 0; d < n; ++d)
    y[d] += alpha * x[d];
}

inline int64_t tilesOf(int64_t n, int64_t tile) {
  return (n + tile - 1) / tile;
}
inline int64_t tileSize(int64_t n, int64_t begin, int64_t tile) {
  return n - begin < tile ? n - begin : tile;
}

/// Token index lists live in a grow-only workspace of the calling thread;
/// the parallel regions only read them.
int32_t *indexWorkspace(int64_t count) {
  return detail::threadWorkspace<int32_t>(size_t(count > 0 ? count : 1));
}

void iota(int32_t *list, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    list[i] = int32_t(i);
}

bool headKept(const int32_t *head_keep, int64_t H, int64_t h) {
  if (!head_keep)
    return true;
  for (int64_t i = 0; i < H; ++i)
    if (head_keep[i] == h)
      return true;
  return false;
}

/// Packs part `part` of head h of the nk tokens tok[0..nk) transposed:
/// dst[d * kKTile + j] = row j, feature d. Columns nk..kKTile are zeroed:
/// scoreTile reads whole chunks (their scores are never used).
void packTransposed(const float *qkv, const Dims &dims, Part part, int64_t b,
                    int64_t h, const int32_t *tok, int64_t nk, float *dst) {
  for (int64_t j = 0; j < nk; ++j) {
    const float *src = qkv + dims.qkvAt(part, b, tok[j], h);
    for (int64_t d = 0; d < dims.Dh; ++d)
      dst[d * kKTile + j] = src[d];
  }
  for (int64_t d = 0; d < dims.Dh; ++d)
    for (int64_t j = nk; j < kKTile; ++j)
      dst[d * kKTile + j] = 0.0f;
}

/// Four floats in one SSE register (a GCC/Clang vector extension, any
/// target). The register-blocked products below use it explicitly: written
/// as `omp simd` loops, GCC's unroll-and-jam turned them back into scalar
/// code.
typedef float F4 __attribute__((vector_size(16)));
inline F4 load4(const float *p) {
  F4 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store4(float *p, F4 v) { std::memcpy(p, &v, sizeof v); }

/// s[i][j] = alpha * rows[i] . (column j of the packed tile) for the n
/// rows and the first nk columns, rounded up to whole chunks of kChunk (the
/// packed tile is zero there): an outer product over the head dimension,
/// vectorised over key columns, a chunk of scores held in registers.
void scoreTile(const float *const *rows, int64_t n, const float *packedT,
               int64_t nk, int64_t Dh, float alpha, float *s) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j0 = 0; j0 < nk; j0 += kChunk) {
      F4 acc[kChunk / 4] = {};
      for (int64_t d = 0; d < Dh; ++d) {
        const float a = alpha * rows[i][d];
        const float *col = packedT + d * kKTile + j0;
        for (int c = 0; c < kChunk / 4; ++c)
          acc[c] += a * load4(col + 4 * c);
      }
      for (int c = 0; c < kChunk / 4; ++c)
        store4(s + i * kKTile + j0 + 4 * c, acc[c]);
    }
}

/// y[d0 .. d0 + 4N) += sum_r w[r * wStride] * rows[r][d0 .. d0 + 4N), the
/// N vectors of y held in registers across the rows.
template <int N>
void addWeightedBlock(const float *w, int64_t wStride, const float *const *rows,
                      int64_t nr, float *y, int64_t d0) {
  F4 acc[N];
  for (int c = 0; c < N; ++c)
    acc[c] = load4(y + d0 + 4 * c);
  for (int64_t r = 0; r < nr; ++r) {
    const float wr = w[r * wStride], *x = rows[r] + d0;
    for (int c = 0; c < N; ++c)
      acc[c] += wr * load4(x + 4 * c);
  }
  for (int c = 0; c < N; ++c)
    store4(y + d0 + 4 * c, acc[c]);
}

/// y[0..n) += sum_r w[r * wStride] * rows[r][0..n), in row order: every
/// P.V, dS.K, P^T.dO and dS^T.Q product of the kernels.
void addWeightedRows(const float *w, int64_t wStride, const float *const *rows,
                     int64_t nr, float *y, int64_t n) {
  int64_t d0 = 0;
  for (; d0 + kChunk <= n; d0 += kChunk)
    addWeightedBlock<kChunk / 4>(w, wStride, rows, nr, y, d0);
  for (; d0 + 4 <= n; d0 += 4)
    addWeightedBlock<1>(w, wStride, rows, nr, y, d0);
  if (d0 < n)
    for (int64_t r = 0; r < nr; ++r)
      axpy(w[r * wStride], rows[r] + d0, y + d0, n - d0);
}

//===--- Forward ----------------------------------------------------------===//

/// Running state of one query's online softmax.
struct SoftmaxRow {
  float m, l; // running max and sum of exp(score - m)
};

/// Folds the nk scores s (overwritten with their exponentials) of one query
/// into its running softmax and its accumulator acc += p * v rows.
void onlineSoftmaxStep(float *s, int64_t nk, const float *const *vRows,
                       int64_t Dh, SoftmaxRow &row, float *acc) {
  float tileMax = -std::numeric_limits<float>::infinity();
  for (int64_t j = 0; j < nk; ++j)
    tileMax = s[j] > tileMax ? s[j] : tileMax;
  const float mNew = row.m > tileMax ? row.m : tileMax;
  const float rescale = std::exp(row.m - mNew); // 0 on the first tile
  if (rescale != 1.0f) {
    row.l *= rescale;
    for (int64_t d = 0; d < Dh; ++d)
      acc[d] *= rescale;
  }
  float tileSum = 0.0f;
#pragma omp simd reduction(+ : tileSum)
  for (int64_t j = 0; j < nk; ++j) {
    s[j] = detail::expApprox(s[j] - mNew);
    tileSum += s[j];
  }
  row.l += tileSum;
  row.m = mNew;
  addWeightedRows(s, 1, vRows, nk, acc, Dh);
}

/// Attention of the nq (<= kQTile) query tokens qTok of head h, batch
/// element b, over the nk key tokens kTok: writes their o and lse rows.
void forwardTile(const float *qkv, float *o, float *lse, const Dims &dims,
                 int64_t b, int64_t h, const int32_t *qTok, int64_t nq,
                 const int32_t *kTok, int64_t nk) {
  const int64_t Dh = dims.Dh;
  float *acc = detail::threadWorkspace<float>(
      size_t(kQTile * Dh + Dh * kKTile + kQTile * kKTile));
  float *kT = acc + kQTile * Dh;
  float *s = kT + Dh * kKTile;
  const float *qRows[kQTile], *vRows[kKTile];
  SoftmaxRow rows[kQTile];
  for (int64_t i = 0; i < nq; ++i) {
    qRows[i] = qkv + dims.qkvAt(kQ, b, qTok[i], h);
    rows[i] = {-std::numeric_limits<float>::infinity(), 0.0f};
  }
  std::memset(acc, 0, sizeof(float) * size_t(nq * Dh));
  for (int64_t j0 = 0; j0 < nk; j0 += kKTile) {
    const int64_t nkt = tileSize(nk, j0, kKTile);
    packTransposed(qkv, dims, kK, b, h, kTok + j0, nkt, kT);
    for (int64_t j = 0; j < nkt; ++j)
      vRows[j] = qkv + dims.qkvAt(kV, b, kTok[j0 + j], h);
    scoreTile(qRows, nq, kT, nkt, Dh, dims.scale, s);
    for (int64_t i = 0; i < nq; ++i)
      onlineSoftmaxStep(s + i * kKTile, nkt, vRows, Dh, rows[i], acc + i * Dh);
  }
  for (int64_t i = 0; i < nq; ++i) {
    const int64_t r = b * dims.T + qTok[i];
    const float l = rows[i].l;
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    float *oi = o + r * dims.width() + h * Dh;
    for (int64_t d = 0; d < Dh; ++d)
      oi[d] = acc[i * Dh + d] * inv;
    if (lse)
      lse[r * dims.H + h] = l > 0.0f ? rows[i].m + std::log(l)
                                     : -std::numeric_limits<float>::infinity();
  }
}

//===--- Backward ---------------------------------------------------------===//

/// Zeroes the dq, dk, dv columns of head h at every row of batch element b.
void zeroHead(float *dqkv, const Dims &dims, int64_t b, int64_t h) {
  for (int64_t t = 0; t < dims.T; ++t)
    for (Part part : {kQ, kK, kV})
      std::memset(dqkv + dims.qkvAt(part, b, t, h), 0,
                  sizeof(float) * size_t(dims.Dh));
}

/// Pointers to the rows of one query tile.
struct QueryTile {
  int64_t n;
  const float *q[kQTile], *dout[kQTile];
  float *dq[kQTile];
  const float *lse, *rowDot; // n entries each
};

/// The shared recomputation of every backward variant, for one query tile
/// against one packed key tile (nk keys): p[i][j] = P_ij =
/// exp(scale q_i.k_j - lse_i) and ds[i][j] = scale * P_ij (dO_i.v_j - D_i),
/// the latter with the scale of dQ = scale dS K and dK = scale dS^T Q folded
/// in.
void probabilities(const QueryTile &qt, const float *kT, const float *vT,
                   int64_t nk, int64_t Dh, float scale, float *p, float *ds) {
  scoreTile(qt.q, qt.n, kT, nk, Dh, scale, p);
  scoreTile(qt.dout, qt.n, vT, nk, Dh, 1.0f, ds);
  for (int64_t i = 0; i < qt.n; ++i) {
    float *pi = p + i * kKTile, *dsi = ds + i * kKTile;
    const float lse = qt.lse[i], rowDot = qt.rowDot[i];
#pragma omp simd
    for (int64_t j = 0; j < nk; ++j) {
      pi[j] = detail::expApprox(pi[j] - lse);
      dsi[j] = scale * pi[j] * (dsi[j] - rowDot);
    }
  }
}

/// Gradient of head h, batch element b, for the queries qs over the nk key
/// tokens kTok; dq, dk, dv of that head must be zero on entry.
void backwardHead(const float *qkv, const float *o, const float *lse,
                  const float *dout, float *dqkv, const Dims &dims,
                  const Queries &qs, const int32_t *kTok, int64_t nk, int64_t b,
                  int64_t h) {
  const int64_t Dh = dims.Dh, W = dims.width();
  float *lseQ = detail::threadWorkspace<float>(
      size_t(2 * qs.n + 4 * kKTile * Dh + 2 * kQTile * kKTile));
  float *rowDot = lseQ + qs.n; // D_i = rowsum(dO_i * O_i)
  float *kT = rowDot + qs.n, *vT = kT + kKTile * Dh;
  float *dk = vT + kKTile * Dh, *dv = dk + kKTile * Dh;
  float *p = dv + kKTile * Dh, *ds = p + kQTile * kKTile;
  for (int64_t i = 0; i < qs.n; ++i) {
    const int64_t r = b * qs.rows + qs.row[i];
    lseQ[i] = lse[r * dims.H + h];
    rowDot[i] = dot(dout + r * W + h * Dh, o + r * W + h * Dh, Dh);
  }
  const float *kRows[kKTile];
  QueryTile qt;
  for (int64_t j0 = 0; j0 < nk; j0 += kKTile) {
    const int64_t nkt = tileSize(nk, j0, kKTile);
    packTransposed(qkv, dims, kK, b, h, kTok + j0, nkt, kT);
    packTransposed(qkv, dims, kV, b, h, kTok + j0, nkt, vT);
    for (int64_t j = 0; j < nkt; ++j)
      kRows[j] = qkv + dims.qkvAt(kK, b, kTok[j0 + j], h);
    std::memset(dk, 0, sizeof(float) * size_t(2 * kKTile * Dh)); // dk, dv
    for (int64_t i0 = 0; i0 < qs.n; i0 += kQTile) {
      qt.n = tileSize(qs.n, i0, kQTile);
      qt.lse = lseQ + i0;
      qt.rowDot = rowDot + i0;
      for (int64_t i = 0; i < qt.n; ++i) {
        const int64_t r = b * qs.rows + qs.row[i0 + i];
        qt.q[i] = qkv + dims.qkvAt(kQ, b, qs.tok[i0 + i], h);
        qt.dq[i] = dqkv + dims.qkvAt(kQ, b, qs.tok[i0 + i], h);
        qt.dout[i] = dout + r * W + h * Dh;
      }
      probabilities(qt, kT, vT, nkt, Dh, dims.scale, p, ds);
      // dV += P^T dO, dK += dS^T Q (columns of p, ds as weights).
      for (int64_t j = 0; j < nkt; ++j) {
        addWeightedRows(p + j, kKTile, qt.dout, qt.n, dv + j * Dh, Dh);
        addWeightedRows(ds + j, kKTile, qt.q, qt.n, dk + j * Dh, Dh);
      }
      // dQ += dS K, straight into dqkv (this task owns the head's rows).
      for (int64_t i = 0; i < qt.n; ++i)
        addWeightedRows(ds + i * kKTile, 1, kRows, nkt, qt.dq[i], Dh);
    }
    for (int64_t j = 0; j < nkt; ++j) {
      std::memcpy(dqkv + dims.qkvAt(kK, b, kTok[j0 + j], h), dk + j * Dh,
                  sizeof(float) * size_t(Dh));
      std::memcpy(dqkv + dims.qkvAt(kV, b, kTok[j0 + j], h), dv + j * Dh,
                  sizeof(float) * size_t(Dh));
    }
  }
}

/// Runs backwardHead over every (batch, head) in parallel; heads not in
/// head_keep (and rows no query or key reaches) keep a zero gradient.
void backwardAllHeads(const float *qkv, const float *o, const float *lse,
                      const float *dout, float *dqkv, const Dims &dims,
                      const Queries &qs, const int32_t *kTok, int64_t nk,
                      const int32_t *head_keep) {
#pragma omp parallel for collapse(2)                                           \
    schedule(static) if (worthParallel(dims.B * dims.H * qs.n * nk * dims.Dh))
  for (int64_t b = 0; b < dims.B; ++b)
    for (int64_t h = 0; h < dims.H; ++h) {
      zeroHead(dqkv, dims, b, h);
      if (headKept(head_keep, dims.H, h))
        backwardHead(qkv, o, lse, dout, dqkv, dims, qs, kTok, nk, b, h);
    }
}

} // namespace

void attention_fwd(const float *qkv, float *o, float *lse, int64_t B, int64_t T,
                   int64_t H, int64_t Dh, float scale, const int32_t *keep,
                   int64_t K) {
  const Dims dims{B, T, H, Dh, scale};
  // all = 0..T-1 (the keys of a free query); queries = the free tokens, then
  // the kept ones, each ascending; kept = the tail of queries.
  int32_t *all = indexWorkspace(3 * T), *queries = all + T,
          *isKept = all + 2 * T;
  iota(all, T);
  std::memset(isKept, 0, sizeof(int32_t) * size_t(T));
  for (int64_t k = 0; keep && k < K; ++k)
    if (keep[k] >= 0 && keep[k] < T)
      isKept[keep[k]] = 1;
  int64_t nFree = 0;
  for (int64_t t = 0; t < T; ++t)
    if (!isKept[t])
      queries[nFree++] = int32_t(t);
  for (int64_t t = 0, n = nFree; t < T; ++t)
    if (isKept[t])
      queries[n++] = int32_t(t);
  const int32_t *kept = queries + nFree;
  const int64_t nKept = T - nFree;
  const int64_t freeTiles = tilesOf(nFree, kQTile);
  const int64_t tiles = freeTiles + tilesOf(nKept, kQTile);
  const int64_t work = B * H * Dh * (nFree * T + nKept * nKept);
#pragma omp parallel for collapse(3) schedule(static) if (worthParallel(work))
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t tile = 0; tile < tiles; ++tile) {
        if (tile < freeTiles) {
          const int64_t i0 = tile * kQTile;
          forwardTile(qkv, o, lse, dims, b, h, queries + i0,
                      tileSize(nFree, i0, kQTile), all, T);
        } else {
          const int64_t i0 = (tile - freeTiles) * kQTile;
          forwardTile(qkv, o, lse, dims, b, h, kept + i0,
                      tileSize(nKept, i0, kQTile), kept, nKept);
        }
      }
}

void attention_bwd(const float *qkv, const float *o, const float *lse,
                   const float *dout, float *dqkv, int64_t B, int64_t T,
                   int64_t H, int64_t Dh, float scale, const int32_t *row_keep,
                   const int32_t *head_keep, void * /*ds_scratch*/,
                   int64_t /*ds_scratch_bytes*/) {
  // The rows that take part, ascending: each is a query and a key.
  int32_t *rows = indexWorkspace(T);
  int64_t n = 0;
  for (int64_t t = 0; t < T; ++t)
    if (!row_keep || row_keep[t] >= 0)
      rows[n++] = int32_t(t);
  const Queries qs{rows, rows, n, T};
  backwardAllHeads(qkv, o, lse, dout, dqkv, Dims{B, T, H, Dh, scale}, qs, rows,
                   n, head_keep);
}

void attention_bwd_queries(const float *qkv, const int32_t *keep, int64_t K,
                           const float *o_k, const float *lse_k,
                           const float *dout_k, float *dqkv, int64_t B,
                           int64_t T, int64_t H, int64_t Dh, float scale) {
  // Keys: all T tokens. Query i: token keep[k] of qkv, row k of o_k.
  int32_t *all = indexWorkspace(T + 2 * K), *tok = all + T, *row = tok + K;
  iota(all, T);
  int64_t n = 0;
  for (int64_t k = 0; k < K; ++k)
    if (keep[k] >= 0 && keep[k] < T) {
      tok[n] = keep[k];
      row[n++] = int32_t(k);
    }
  const Queries qs{tok, row, n, K};
  backwardAllHeads(qkv, o_k, lse_k, dout_k, dqkv, Dims{B, T, H, Dh, scale}, qs,
                   all, T, nullptr);
}

} // namespace cpu
} // namespace sbp
