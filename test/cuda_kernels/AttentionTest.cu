//===- AttentionTest.cu - The attention kernels vs the CPU and double -----===//
//
// Every mode of attention_fwd / attention_bwd / attention_bwd_queries (plain,
// the drop_qkv forward with a keep list, the compact drop_qkv backward with
// row_keep, drop_head with head_keep, the drop_query backward) against the
// CPU library (sbp::cpu has the same API) on the ViT sizes (T 17/50/197,
// Dh 32/64, H 1/3, B 2/5), and against a naive double-precision reference
// (AttentionReference.h) that shares no formula with either. Outputs are
// NaN-poisoned before every call, so an element a kernel forgets to write
// fails; inputs the kernels must not read (padding rows) are NaN too.
// Criterion: max|got - want| / max|want| < 1e-4.
//
//===----------------------------------------------------------------------===//

#include "AttentionReference.h"
#include "CudaTestSupport.h"

#include <functional>
#include <limits>
#include <string>

namespace sbp::cuda::test {
namespace {

using Attention = CudaKernelTest;

const float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr double kTol = 1e-4;

struct Problem {
  int64_t B, T, H, Dh;
  float scale() const { return 1.0f / std::sqrt(float(Dh)); }
  int64_t width() const { return H * Dh; }
  size_t qkvSize() const { return size_t(B * T * 3 * width()); }
  size_t oSize() const { return size_t(B * T * width()); }
  size_t lseSize() const { return size_t(B * T * H); }
  ref::Dims dims() const { return {B, T, H, Dh}; }
};

::testing::Message describe(const Problem &p) {
  return ::testing::Message() << "B=" << p.B << " T=" << p.T << " H=" << p.H
                              << " Dh=" << p.Dh;
}

/// The sizes of the ViT-Tiny / small-ViT attention, both head dims of the
/// fast paths, one and several heads, an odd and an even batch.
std::vector<Problem> vitSizes() {
  std::vector<Problem> sizes;
  for (int64_t T : {17, 50, 197})
    for (int64_t Dh : {32, 64})
      for (int64_t H : {1, 3})
        for (int64_t B : {2, 5})
          sizes.push_back({B, T, H, Dh});
  return sizes;
}

/// max|got - want| / max|want| < tol. A NaN in got fails (an unwritten or
/// poisoned element), as does any mismatch when want is all zero.
template <class W>
::testing::AssertionResult maxRelClose(const Vec &got, const std::vector<W> &want,
                                       double tol = kTol) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure()
           << "size " << got.size() << " vs " << want.size();
  double scale = 0.0, err = 0.0;
  size_t at = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i]))
      return ::testing::AssertionFailure()
             << "element " << i << ": got " << got[i] << ", want " << want[i];
    scale = std::max(scale, std::fabs(double(want[i])));
    const double d = std::fabs(double(got[i]) - double(want[i]));
    if (d > err) {
      err = d;
      at = i;
    }
  }
  const double rel = scale > 0.0 ? err / scale : (err == 0.0 ? 0.0 : INFINITY);
  if (!(rel < tol))
    return ::testing::AssertionFailure()
           << "max|got - want| / max|want| = " << rel << " >= " << tol
           << ", worst at element " << at << ": got " << got[at] << ", want "
           << want[at];
  return ::testing::AssertionSuccess();
}

/// The mask sampler's keep list: the class token 0, every `stride`-th token
/// from `first`, ascending, then `pad` entries -1.
IVec keepList(int64_t T, int64_t first, int64_t stride, int pad) {
  IVec keep{0};
  for (int64_t t = first; t < T; t += stride)
    keep.push_back(int32_t(t));
  keep.insert(keep.end(), size_t(pad), -1);
  return keep;
}

/// Rows keep[k] of x ([B, T, n]) into [B, K, n]; padding rows NaN (no
/// kernel may read them).
Vec gatherRows(const Vec &x, const IVec &keep, int64_t B, int64_t T,
               int64_t n) {
  const int64_t K = int64_t(keep.size());
  Vec out(size_t(B * K * n), kNaN);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = 0; k < K; ++k)
      if (keep[size_t(k)] >= 0)
        std::copy_n(&x[size_t((b * T + keep[size_t(k)]) * n)], n,
                    &out[size_t((b * K + k) * n)]);
  return out;
}

/// Random rows [B, K, n] with NaN at the padding entries of keep.
Vec randomRows(const IVec &keep, int64_t B, int64_t n, uint32_t seed) {
  const int64_t K = int64_t(keep.size());
  Vec x = randomVec(size_t(B * K * n), seed);
  for (size_t e = 0; e < x.size(); ++e)
    if (keep[(e / size_t(n)) % size_t(K)] < 0)
      x[e] = kNaN;
  return x;
}

const int32_t *orNull(const IVec &v) { return v.empty() ? nullptr : v.data(); }

//===--- The kernels, into NaN-poisoned outputs ---------------------------===//

struct Forward {
  Vec o, lse;
};

Forward cpuForward(const Problem &p, const Vec &qkv, const IVec &keep) {
  Forward f{Vec(p.oSize(), kNaN), Vec(p.lseSize(), kNaN)};
  cpu::attention_fwd(qkv.data(), f.o.data(), f.lse.data(), p.B, p.T, p.H, p.Dh,
                     p.scale(), orNull(keep), int64_t(keep.size()));
  return f;
}

Forward gpuForward(const Context &ctx, const Problem &p, const Vec &qkv,
                   const IVec &keep, size_t offset = 0) {
  DFloat dqkv(qkv, offset), dO(Vec(p.oSize(), kNaN), offset),
      dLse(Vec(p.lseSize(), kNaN));
  DInt dKeep(keep.empty() ? IVec{-1} : keep);
  attention_fwd(ctx, dqkv, dO, dLse, p.B, p.T, p.H, p.Dh, p.scale(),
                keep.empty() ? nullptr : dKeep.get(), int64_t(keep.size()));
  return {dO.download(), dLse.download()};
}

Vec cpuBackward(const Problem &p, const Vec &qkv, const Vec &o, const Vec &lse,
                const Vec &dout, const IVec &row_keep, const IVec &head_keep) {
  Vec dqkv(p.qkvSize(), kNaN);
  cpu::attention_bwd(qkv.data(), o.data(), lse.data(), dout.data(),
                     dqkv.data(), p.B, p.T, p.H, p.Dh, p.scale(),
                     orNull(row_keep), orNull(head_keep), nullptr, 0);
  return dqkv;
}

Vec gpuBackward(const Context &ctx, const Problem &p, const Vec &qkv,
                const Vec &o, const Vec &lse, const Vec &dout,
                const IVec &row_keep, const IVec &head_keep,
                size_t offset = 0) {
  DFloat dqkv(qkv, offset), dO(o, offset), dLse(lse), dG(dout, offset);
  DFloat dGrad(Vec(p.qkvSize(), kNaN), offset);
  DInt dRows(row_keep.empty() ? IVec{-1} : row_keep);
  DInt dHeads(head_keep.empty() ? IVec{-1} : head_keep);
  attention_bwd(ctx, dqkv, dO, dLse, dG, dGrad, p.B, p.T, p.H, p.Dh,
                p.scale(), row_keep.empty() ? nullptr : dRows.get(),
                head_keep.empty() ? nullptr : dHeads.get(), nullptr, 0);
  return dGrad.download();
}

Vec cpuBackwardQueries(const Problem &p, const Vec &qkv, const IVec &keep,
                       const Vec &oK, const Vec &lseK, const Vec &doutK) {
  Vec dqkv(p.qkvSize(), kNaN);
  cpu::attention_bwd_queries(qkv.data(), keep.data(), int64_t(keep.size()),
                             oK.data(), lseK.data(), doutK.data(), dqkv.data(),
                             p.B, p.T, p.H, p.Dh, p.scale());
  return dqkv;
}

Vec gpuBackwardQueries(const Context &ctx, const Problem &p, const Vec &qkv,
                       const IVec &keep, const Vec &oK, const Vec &lseK,
                       const Vec &doutK, size_t offset = 0) {
  DFloat dqkv(qkv, offset), dO(oK, offset), dLse(lseK), dG(doutK, offset);
  DFloat dGrad(Vec(p.qkvSize(), kNaN), offset);
  DInt dKeep(keep);
  attention_bwd_queries(ctx, dqkv, dKeep, int64_t(keep.size()), dO, dLse, dG,
                        dGrad, p.B, p.T, p.H, p.Dh, p.scale());
  return dGrad.download();
}

void expectNoError(const Context &ctx) {
  ASSERT_EQ(cudaStreamSynchronize(ctx.stream), cudaSuccess);
  char err[512] = {};
  EXPECT_EQ(last_error(err, sizeof(err)), 0) << err;
}

//===--- The modes, GPU against CPU ----------------------------------------===//

void checkForward(const Context &ctx, const Problem &p, const IVec &keep,
                  uint32_t seed, size_t offset = 0) {
  SCOPED_TRACE(describe(p) << " K=" << keep.size() << " offset=" << offset);
  const Vec qkv = randomVec(p.qkvSize(), seed);
  const Forward want = cpuForward(p, qkv, keep);
  const Forward got = gpuForward(ctx, p, qkv, keep, offset);
  expectNoError(ctx);
  EXPECT_TRUE(maxRelClose(got.o, want.o)) << "o";
  EXPECT_TRUE(maxRelClose(got.lse, want.lse)) << "lse";
}

/// Plain backward (optionally drop_head) from the CPU's o and lse.
void checkBackward(const Context &ctx, const Problem &p, const IVec &head_keep,
                   uint32_t seed, size_t offset = 0) {
  SCOPED_TRACE(describe(p) << " heads=" << head_keep.size()
                           << " offset=" << offset);
  const Vec qkv = randomVec(p.qkvSize(), seed);
  const Vec dout = randomVec(p.oSize(), seed + 1);
  const Forward f = cpuForward(p, qkv, {});
  const Vec want = cpuBackward(p, qkv, f.o, f.lse, dout, {}, head_keep);
  const Vec got =
      gpuBackward(ctx, p, qkv, f.o, f.lse, dout, {}, head_keep, offset);
  expectNoError(ctx);
  EXPECT_TRUE(maxRelClose(got, want));
}

/// Compact drop_qkv backward: the forward with keep on the full problem, its
/// kept rows gathered into K-row tensors (padding rows NaN), the backward on
/// those with row_keep = keep.
void checkCompactBackward(const Context &ctx, const Problem &full,
                          const IVec &keep, const IVec &head_keep,
                          uint32_t seed, size_t offset = 0) {
  SCOPED_TRACE(describe(full) << " K=" << keep.size()
                              << " heads=" << head_keep.size());
  const int64_t K = int64_t(keep.size()), W = full.width();
  const Problem compact{full.B, K, full.H, full.Dh};
  const Vec qkv = randomVec(full.qkvSize(), seed);
  const Forward f = cpuForward(full, qkv, keep);
  const Vec qkvK = gatherRows(qkv, keep, full.B, full.T, 3 * W);
  const Vec oK = gatherRows(f.o, keep, full.B, full.T, W);
  const Vec lseK = gatherRows(f.lse, keep, full.B, full.T, full.H);
  const Vec doutK = randomRows(keep, full.B, W, seed + 1);
  const Vec want =
      cpuBackward(compact, qkvK, oK, lseK, doutK, keep, head_keep);
  const Vec got = gpuBackward(ctx, compact, qkvK, oK, lseK, doutK, keep,
                              head_keep, offset);
  expectNoError(ctx);
  EXPECT_TRUE(maxRelClose(got, want));
}

/// drop_query backward: the plain forward, its kept query rows gathered
/// (padding rows NaN).
void checkQueryBackward(const Context &ctx, const Problem &p, const IVec &keep,
                        uint32_t seed, size_t offset = 0) {
  SCOPED_TRACE(describe(p) << " K=" << keep.size());
  const int64_t W = p.width();
  const Vec qkv = randomVec(p.qkvSize(), seed);
  const Forward f = cpuForward(p, qkv, {});
  const Vec oK = gatherRows(f.o, keep, p.B, p.T, W);
  const Vec lseK = gatherRows(f.lse, keep, p.B, p.T, p.H);
  const Vec doutK = randomRows(keep, p.B, W, seed + 1);
  const Vec want = cpuBackwardQueries(p, qkv, keep, oK, lseK, doutK);
  const Vec got = gpuBackwardQueries(ctx, p, qkv, keep, oK, lseK, doutK, offset);
  expectNoError(ctx);
  EXPECT_TRUE(maxRelClose(got, want));
}

/// Kept-head lists: every other head, the last head only, -1 padded.
std::vector<IVec> headLists(int64_t H) {
  IVec alternate, last{int32_t(H - 1)};
  for (int64_t h = 0; h < H; h += 2)
    alternate.push_back(int32_t(h));
  alternate.resize(size_t(H), -1);
  last.resize(size_t(H), -1);
  IVec none(size_t(H), -1); // every head dropped: all zeros
  return {alternate, last, none};
}

TEST_F(Attention, ForwardPlainMatchesCpu) {
  uint32_t seed = 1;
  for (const Problem &p : vitSizes())
    checkForward(ctx, p, {}, seed++);
}

TEST_F(Attention, ForwardKeepMatchesCpu) {
  // Kept queries (the class token 0 among them) see the kept keys only; the
  // trailing -1 is ignored. Two densities: every other token, every fourth.
  uint32_t seed = 100;
  for (const Problem &p : vitSizes()) {
    checkForward(ctx, p, keepList(p.T, 1, 2, 1), seed++);
    checkForward(ctx, p, keepList(p.T, 3, 4, 2), seed++);
  }
  // Every token kept (the plain attention again), and only the class token.
  IVec all(50);
  for (int32_t t = 0; t < 50; ++t)
    all[size_t(t)] = t;
  checkForward(ctx, {2, 50, 3, 64}, all, 7);
  checkForward(ctx, {2, 50, 3, 64}, {0, -1}, 8);
}

TEST_F(Attention, BackwardPlainMatchesCpu) {
  uint32_t seed = 200;
  for (const Problem &p : vitSizes())
    checkBackward(ctx, p, {}, seed++);
}

TEST_F(Attention, BackwardHeadKeepMatchesCpu) {
  uint32_t seed = 300;
  for (const Problem &p : vitSizes())
    for (const IVec &heads : headLists(p.H))
      checkBackward(ctx, p, heads, seed++);
}

TEST_F(Attention, BackwardCompactRowKeepMatchesCpu) {
  uint32_t seed = 400;
  for (const Problem &p : vitSizes()) {
    checkCompactBackward(ctx, p, keepList(p.T, 1, 2, 1), {}, seed++);
    checkCompactBackward(ctx, p, keepList(p.T, 2, 3, 3), {}, seed++);
  }
  // With drop_head on top.
  checkCompactBackward(ctx, {2, 197, 3, 64}, keepList(197, 1, 2, 1),
                       {0, 2, -1}, 9);
  checkCompactBackward(ctx, {5, 50, 3, 32}, keepList(50, 1, 2, 2), {1, -1, -1},
                       10);
}

TEST_F(Attention, BackwardQueriesMatchesCpu) {
  uint32_t seed = 500;
  for (const Problem &p : vitSizes()) {
    checkQueryBackward(ctx, p, keepList(p.T, 1, 2, 1), seed++);
    checkQueryBackward(ctx, p, keepList(p.T, 5, 3, 4), seed++);
  }
  checkQueryBackward(ctx, {2, 50, 3, 64}, {-1, -1}, 11); // no query at all
}

TEST_F(Attention, OtherHeadDimsAndAlignments) {
  // Dh up to 128 (the warp-per-row kernels above 64), odd head dims and
  // 4-byte aligned tensors (the scalar tile loads), tiny T.
  uint32_t seed = 600;
  for (int64_t Dh : {1, 16, 33, 48, 80, 128})
    for (size_t offset : {size_t(0), size_t(1)}) {
      const Problem p{2, 50, 3, Dh};
      checkForward(ctx, p, {}, seed++, offset);
      checkForward(ctx, p, keepList(50, 1, 2, 1), seed++, offset);
      checkBackward(ctx, p, {}, seed++, offset);
      checkBackward(ctx, p, {2, 0, -1}, seed++, offset);
      checkCompactBackward(ctx, p, keepList(50, 1, 2, 1), {}, seed++, offset);
      checkQueryBackward(ctx, p, keepList(50, 1, 2, 1), seed++, offset);
    }
  for (const Problem &p : {Problem{3, 1, 2, 64}, Problem{1, 2, 1, 32},
                           Problem{2, 65, 2, 64}, Problem{1, 300, 1, 64}}) {
    checkForward(ctx, p, {}, seed++);
    checkForward(ctx, p, keepList(p.T, 1, 2, 1), seed++);
    checkBackward(ctx, p, {}, seed++);
    checkCompactBackward(ctx, p, keepList(p.T, 1, 2, 1), {}, seed++);
    checkQueryBackward(ctx, p, keepList(p.T, 1, 2, 1), seed++);
  }
}

//===--- Against the double reference --------------------------------------===//

/// dqkv elements that are zero by construction: columns of dropped heads,
/// dq of rows that attend nothing, dk and dv of rows nobody attends.
std::vector<char> structuralZeros(const Problem &p, const ref::Allowed &allowed,
                                  const std::function<bool(int64_t)> &head) {
  std::vector<char> asks(size_t(p.T), 0), asked(size_t(p.T), 0);
  for (int64_t i = 0; i < p.T; ++i)
    for (int64_t j = 0; j < p.T; ++j)
      if (allowed(i, j))
        asks[size_t(i)] = asked[size_t(j)] = 1;
  std::vector<char> zero(p.qkvSize(), 0);
  const int64_t W = p.width();
  for (size_t e = 0; e < zero.size(); ++e) {
    const int64_t col = int64_t(e % size_t(3 * W)), t =
        int64_t(e / size_t(3 * W)) % p.T;
    const int64_t part = col / W, h = (col % W) / p.Dh;
    zero[e] = (head && !head(h)) || (part == 0 ? !asks[size_t(t)]
                                               : !asked[size_t(t)]);
  }
  return zero;
}

::testing::AssertionResult exactZeros(const Vec &got,
                                      const std::vector<char> &zero) {
  for (size_t e = 0; e < got.size(); ++e)
    if (zero[e] && got[e] != 0.0f)
      return ::testing::AssertionFailure()
             << "element " << e << ": got " << got[e] << ", want exact 0";
  return ::testing::AssertionSuccess();
}

void checkAgainstDouble(const Context &ctx, const Problem &p, uint32_t seed) {
  SCOPED_TRACE(describe(p));
  const ref::Dims d = p.dims();
  const double scale = p.scale();
  const int64_t W = p.width();
  const Vec qkv = randomVec(p.qkvSize(), seed);
  const Vec dout = randomVec(p.oSize(), seed + 1);
  const IVec keep = keepList(p.T, 1, 2, 1);
  const auto kept = ref::membership(keep, p.T);

  // Forward, plain and with keep.
  for (bool withKeep : {false, true}) {
    const ref::Allowed rule =
        withKeep ? ref::keepForwardRule(kept) : ref::plainRule();
    ref::DVec ro, rlse;
    ref::forward(d, qkv.data(), rule, scale, ro, rlse);
    const Forward got = gpuForward(ctx, p, qkv, withKeep ? keep : IVec{});
    expectNoError(ctx);
    EXPECT_TRUE(maxRelClose(got.o, ro)) << "o, keep=" << withKeep;
    EXPECT_TRUE(maxRelClose(got.lse, rlse)) << "lse, keep=" << withKeep;
  }

  // Plain backward, and with drop_head, from the GPU's own forward.
  const Forward f = gpuForward(ctx, p, qkv, {});
  for (const IVec &heads : {IVec{}, headLists(p.H)[0]}) {
    const auto in = ref::membership(heads, p.H);
    const std::function<bool(int64_t)> head =
        heads.empty() ? std::function<bool(int64_t)>()
                      : [in](int64_t h) { return bool(in[size_t(h)]); };
    const ref::DVec want =
        ref::backward(d, qkv.data(), ref::plainRule(), scale, dout.data(), head);
    const Vec got = gpuBackward(ctx, p, qkv, f.o, f.lse, dout, {}, heads);
    expectNoError(ctx);
    EXPECT_TRUE(maxRelClose(got, want)) << "heads=" << heads.size();
    EXPECT_TRUE(exactZeros(got, structuralZeros(p, ref::plainRule(), head)));
  }

  // Compact backward over the rows that take part (row_keep >= 0: every
  // row but each fifth and the last; the others' qkv, o, lse, dout NaN), from
  // the GPU's restricted forward.
  {
    IVec rows(static_cast<size_t>(p.T)), part;
    for (int64_t t = 0; t < p.T; ++t) {
      const bool in = t % 5 != 3 && t + 1 < p.T;
      rows[size_t(t)] = in ? int32_t(1000 + t) : -1;
      if (in)
        part.push_back(int32_t(t));
    }
    const auto in = ref::membership(part, p.T);
    const Forward fr = gpuForward(ctx, p, qkv, part);
    Vec q = qkv, o = fr.o, lse = fr.lse, g = dout;
    for (int64_t b = 0; b < p.B; ++b)
      for (int64_t t = 0; t < p.T; ++t)
        if (!in[size_t(t)]) {
          std::fill_n(&q[size_t((b * p.T + t) * 3 * W)], 3 * W, kNaN);
          std::fill_n(&o[size_t((b * p.T + t) * W)], W, kNaN);
          std::fill_n(&g[size_t((b * p.T + t) * W)], W, kNaN);
          std::fill_n(&lse[size_t((b * p.T + t) * p.H)], p.H, kNaN);
        }
    const ref::Allowed rule = ref::restrictedRule(in);
    const ref::DVec want = ref::backward(d, q.data(), rule, scale, g.data());
    const Vec got = gpuBackward(ctx, p, q, o, lse, g, rows, {});
    expectNoError(ctx);
    EXPECT_TRUE(maxRelClose(got, want)) << "row_keep";
    EXPECT_TRUE(exactZeros(got, structuralZeros(p, rule, nullptr)));
  }

  // drop_query backward.
  {
    const Vec oK = gatherRows(f.o, keep, p.B, p.T, W);
    const Vec lseK = gatherRows(f.lse, keep, p.B, p.T, p.H);
    const Vec doutK = randomRows(keep, p.B, W, seed + 2);
    Vec g(p.oSize(), 0.0f); // doutK scattered back to token rows
    const int64_t K = int64_t(keep.size());
    for (int64_t b = 0; b < p.B; ++b)
      for (int64_t k = 0; k < K; ++k)
        if (keep[size_t(k)] >= 0)
          std::copy_n(&doutK[size_t((b * K + k) * W)], W,
                      &g[size_t((b * p.T + keep[size_t(k)]) * W)]);
    const ref::Allowed rule = ref::keptQueriesRule(kept);
    const ref::DVec want = ref::backward(d, qkv.data(), rule, scale, g.data());
    const Vec got = gpuBackwardQueries(ctx, p, qkv, keep, oK, lseK, doutK);
    expectNoError(ctx);
    EXPECT_TRUE(maxRelClose(got, want)) << "queries";
    EXPECT_TRUE(exactZeros(got, structuralZeros(p, rule, nullptr)));
  }
}

TEST_F(Attention, AllModesMatchDoubleReference) {
  // ViT-Tiny's shape (batch cut to 2), the small ViT's, an odd head dim
  // (scalar loads), a wide one (warp kernels).
  const Problem problems[] = {
      {2, 197, 3, 64}, {2, 50, 3, 32}, {2, 17, 1, 64}, {2, 17, 3, 33},
      {1, 50, 2, 80}};
  uint32_t seed = 700;
  for (const Problem &p : problems) {
    checkAgainstDouble(ctx, p, seed);
    seed += 3;
  }
}

//===--- Properties ---------------------------------------------------------===//

TEST_F(Attention, BackwardIsDeterministic) {
  const Problem p{4, 197, 3, 64};
  const Vec qkv = randomVec(p.qkvSize(), 800), dout = randomVec(p.oSize(), 801);
  const IVec keep = keepList(p.T, 1, 2, 1);
  const Forward f = gpuForward(ctx, p, qkv, keep);
  const Vec a = gpuBackward(ctx, p, qkv, f.o, f.lse, dout, {}, {});
  const Vec b = gpuBackward(ctx, p, qkv, f.o, f.lse, dout, {}, {});
  EXPECT_TRUE(sameBits(a, b));
  const Forward g = gpuForward(ctx, p, qkv, keep);
  EXPECT_TRUE(sameBits(f.o, g.o));
  EXPECT_TRUE(sameBits(f.lse, g.lse));
  const Vec oK = gatherRows(f.o, keep, p.B, p.T, p.width());
  const Vec lseK = gatherRows(f.lse, keep, p.B, p.T, p.H);
  const Vec doutK = randomRows(keep, p.B, p.width(), 802);
  EXPECT_TRUE(sameBits(gpuBackwardQueries(ctx, p, qkv, keep, oK, lseK, doutK),
                       gpuBackwardQueries(ctx, p, qkv, keep, oK, lseK, doutK)));
}

TEST_F(Attention, CapturesIntoAGraph) {
  // The drop_qkv forward (keep lists built on the device) and a backward
  // with head_keep, captured and replayed over poisoned outputs: the eager
  // bits again.
  const Problem p{2, 197, 3, 64};
  const Vec qkv = randomVec(p.qkvSize(), 900), dout = randomVec(p.oSize(), 901);
  const IVec keep = keepList(p.T, 1, 2, 1), heads{0, 2, -1};
  DFloat dqkv(qkv), dO(p.oSize()), dLse(p.lseSize()), dG(dout),
      dGrad(p.qkvSize());
  DInt dKeep(keep), dHeads(heads);
  const auto step = [&] {
    attention_fwd(ctx, dqkv, dO, dLse, p.B, p.T, p.H, p.Dh, p.scale(), dKeep,
                  int64_t(keep.size()));
    attention_bwd(ctx, dqkv, dO, dLse, dG, dGrad, p.B, p.T, p.H, p.Dh,
                  p.scale(), nullptr, dHeads, nullptr, 0);
  };
  step();
  sync();
  const Vec o = dO.download(), grad = dGrad.download();
  dO.upload(Vec(p.oSize(), kNaN));
  dGrad.upload(Vec(p.qkvSize(), kNaN));
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(ctx.stream, cudaStreamCaptureModeGlobal),
            cudaSuccess);
  step();
  ASSERT_EQ(cudaStreamEndCapture(ctx.stream, &graph), cudaSuccess);
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, ctx.stream), cudaSuccess);
  sync();
  EXPECT_TRUE(sameBits(dO.download(), o));
  EXPECT_TRUE(sameBits(dGrad.download(), grad));
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

TEST_F(Attention, RejectsHeadDimAbove128) {
  DFloat x(3 * 2 * 129);
  attention_fwd(ctx, x, x, nullptr, 1, 2, 1, 129, 1.0f, nullptr, 0);
  char err[512] = {};
  EXPECT_NE(last_error(err, sizeof(err)), 0);
  EXPECT_NE(std::string(err).find("attention_fwd"), std::string::npos) << err;
  attention_bwd(ctx, x, x, x, x, x, 1, 2, 1, 129, 1.0f, nullptr, nullptr, nullptr,
                0);
  EXPECT_NE(last_error(err, sizeof(err)), 0);
  EXPECT_NE(std::string(err).find("attention_bwd"), std::string::npos) << err;
}

class AttentionSmallScratch : public CudaKernelTest {
  void configure(Context &c) override { c.scratch_bytes = 1024; }
};

TEST_F(AttentionSmallScratch, RecordsTheMissingScratch) {
  // The backward needs 4 B H T bytes for D = rowsum(dO * O); it reports,
  // and writes nothing.
  const Problem p{4, 197, 3, 64};
  DFloat qkv(p.qkvSize()), o(p.oSize()), lse(p.lseSize()), dout(p.oSize()),
      grad(p.qkvSize());
  attention_bwd(ctx, qkv, o, lse, dout, grad, p.B, p.T, p.H, p.Dh, p.scale(),
                nullptr, nullptr, nullptr, 0);
  char err[512] = {};
  EXPECT_NE(last_error(err, sizeof(err)), 0);
  EXPECT_NE(std::string(err).find("scratch"), std::string::npos) << err;
}

} // namespace
} // namespace sbp::cuda::test
