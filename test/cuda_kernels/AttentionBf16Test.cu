//===- AttentionBf16Test.cu - bf16 tensor-core attention vs double --------===//
//
// The bf16 overloads of attention_fwd / attention_bwd / attention_bwd_queries
// (codegen/cuda/src/attention_bf16.cu) against a naive double-precision reference
// computed here from the same bf16 inputs: the softmax of every query is
// materialised under an explicit "query i may attend key j" rule, and the
// gradient of sum(o * dout) goes through the softmax Jacobian (never through
// lse, o or D). Every output is NaN-poisoned before the call, so an element
// the kernels miss fails; inputs the kernels must not read (rows that do not
// take part, dropped heads, padding) are NaN as well.
//
// Tolerances (bf16 storage of o and dqkv, bf16 P and dS in the products):
// max|got - want| / max|want| < 2e-2 per tensor (o; dq, dk, dv separately),
// lse within 1e-3 absolute, exact zeros where the gradient is zero by
// construction.
//
//===----------------------------------------------------------------------===//

#include "CudaTestSupport.h"
#include "sbp/kernel_scratch.h"

#include <cuda_bf16.h>

#include <functional>
#include <limits>
#include <string>

namespace sbp::cuda::test {
namespace {

using bf16 = __nv_bfloat16;
using BVec = std::vector<bf16>;
using DVec = std::vector<double>;
using DBf16 = DeviceArray<bf16>;

constexpr double kRelTol = 2e-2;
constexpr double kLseTol = 1e-3;

//===--- bf16 on the host -------------------------------------------------===//

uint16_t bitsOf(bf16 x) { return __nv_bfloat16_raw(x).x; }
bf16 fromBits(uint16_t u) {
  __nv_bfloat16_raw r;
  r.x = u;
  return bf16(r);
}
bf16 nanBf16() { return fromBits(0x7fc0); }
/// Round to nearest even.
bf16 toBf16(double v) {
  const float f = float(v);
  if (std::isnan(f))
    return nanBf16();
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  u += 0x7fffu + ((u >> 16) & 1u);
  return fromBits(uint16_t(u >> 16));
}
double toDouble(bf16 x) {
  const uint32_t u = uint32_t(bitsOf(x)) << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}
BVec randomBf16(size_t n, uint32_t seed, float lo, float hi) {
  const Vec v = randomVec(n, seed, lo, hi);
  BVec out(n);
  for (size_t i = 0; i < n; ++i)
    out[i] = toBf16(v[i]);
  return out;
}
DVec widen(const BVec &v) {
  DVec out(v.size());
  for (size_t i = 0; i < v.size(); ++i)
    out[i] = toDouble(v[i]);
  return out;
}

//===--- The double reference ---------------------------------------------===//

struct Dims {
  int64_t B, T, H, Dh;
  int64_t width() const { return H * Dh; }
  size_t qkvSize() const { return size_t(B * T * 3 * width()); }
  size_t oSize() const { return size_t(B * T * width()); }
  size_t lseSize() const { return size_t(B * T * H); }
  /// Offset of (part 0/1/2 = q/k/v, head h) of token t of batch b in qkv.
  int64_t qkvAt(int part, int64_t b, int64_t t, int64_t h) const {
    return (b * T + t) * 3 * width() + (part * H + h) * Dh;
  }
  int64_t oAt(int64_t b, int64_t t, int64_t h) const {
    return (b * T + t) * width() + h * Dh;
  }
  /// Part (q/k/v), batch, token and head of qkv element e.
  void qkvCoords(size_t e, int &part, int64_t &b, int64_t &t,
                 int64_t &h) const {
    const int64_t row = int64_t(e) / (3 * width()),
                  col = int64_t(e) % (3 * width());
    b = row / T;
    t = row % T;
    part = int(col / width());
    h = (col % width()) / Dh;
  }
};

/// allowed(i, j): query token i attends key token j.
using Rule = std::function<bool(int64_t, int64_t)>;

/// Softmax row of query i in (b, h); false if it attends no key.
bool softmaxRow(const Dims &d, const DVec &qkv, const Rule &allowed,
                double scale, int64_t b, int64_t h, int64_t i, DVec &prob,
                double &lse) {
  prob.assign(size_t(d.T), 0.0);
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < d.T; ++j) {
    if (!allowed(i, j))
      continue;
    double s = 0.0;
    for (int64_t e = 0; e < d.Dh; ++e)
      s += qkv[size_t(d.qkvAt(0, b, i, h) + e)] *
           qkv[size_t(d.qkvAt(1, b, j, h) + e)];
    prob[size_t(j)] = scale * s;
    m = std::max(m, prob[size_t(j)]);
  }
  if (m == -std::numeric_limits<double>::infinity())
    return false;
  double sum = 0.0;
  for (int64_t j = 0; j < d.T; ++j)
    prob[size_t(j)] = allowed(i, j) ? std::exp(prob[size_t(j)] - m) : 0.0;
  for (double x : prob)
    sum += x;
  for (double &x : prob)
    x /= sum;
  lse = m + std::log(sum);
  return true;
}

/// o [B,T,H*Dh], lse [B,T,H]; rows attending nothing stay 0.
void refForward(const Dims &d, const DVec &qkv, const Rule &allowed,
                double scale, DVec &o, DVec &lse) {
  o.assign(d.oSize(), 0.0);
  lse.assign(d.lseSize(), 0.0);
  DVec prob;
  for (int64_t b = 0; b < d.B; ++b)
    for (int64_t h = 0; h < d.H; ++h)
      for (int64_t i = 0; i < d.T; ++i) {
        double l;
        if (!softmaxRow(d, qkv, allowed, scale, b, h, i, prob, l))
          continue;
        lse[size_t((b * d.T + i) * d.H + h)] = l;
        for (int64_t j = 0; j < d.T; ++j)
          for (int64_t e = 0; e < d.Dh; ++e)
            o[size_t(d.oAt(b, i, h) + e)] +=
                prob[size_t(j)] * qkv[size_t(d.qkvAt(2, b, j, h) + e)];
      }
}

/// d sum(o * dout) / d qkv for the heads with headKept(h) (others: 0);
/// dout rows of queries that attend nothing are not read.
DVec refBackward(const Dims &d, const DVec &qkv, const Rule &allowed,
                 double scale, const DVec &dout,
                 const std::function<bool(int64_t)> &headKept = nullptr) {
  DVec dqkv(d.qkvSize(), 0.0), prob, dp(size_t(d.T));
  for (int64_t b = 0; b < d.B; ++b)
    for (int64_t h = 0; h < d.H; ++h) {
      if (headKept && !headKept(h))
        continue;
      for (int64_t i = 0; i < d.T; ++i) {
        double l;
        if (!softmaxRow(d, qkv, allowed, scale, b, h, i, prob, l))
          continue;
        const double *doi = &dout[size_t(d.oAt(b, i, h))];
        double mean = 0.0; // sum_j P_ij dp_ij
        for (int64_t j = 0; j < d.T; ++j) {
          dp[size_t(j)] = 0.0;
          if (!allowed(i, j))
            continue;
          for (int64_t e = 0; e < d.Dh; ++e)
            dp[size_t(j)] += doi[e] * qkv[size_t(d.qkvAt(2, b, j, h) + e)];
          mean += prob[size_t(j)] * dp[size_t(j)];
        }
        for (int64_t j = 0; j < d.T; ++j) {
          if (!allowed(i, j))
            continue;
          const double pj = prob[size_t(j)];
          const double ds = scale * pj * (dp[size_t(j)] - mean);
          for (int64_t e = 0; e < d.Dh; ++e) {
            dqkv[size_t(d.qkvAt(2, b, j, h) + e)] += pj * doi[e];
            dqkv[size_t(d.qkvAt(0, b, i, h) + e)] +=
                ds * qkv[size_t(d.qkvAt(1, b, j, h) + e)];
            dqkv[size_t(d.qkvAt(1, b, j, h) + e)] +=
                ds * qkv[size_t(d.qkvAt(0, b, i, h) + e)];
          }
        }
      }
    }
  return dqkv;
}

std::vector<char> membership(const IVec &list, int64_t T) {
  std::vector<char> in(size_t(T), 0);
  for (int32_t t : list)
    if (t >= 0 && t < T)
      in[size_t(t)] = 1;
  return in;
}
Rule plainRule() {
  return [](int64_t, int64_t) { return true; };
}
/// drop_qkv forward: kept queries attend kept keys, the others all keys.
Rule keepForwardRule(std::vector<char> in) {
  return [in](int64_t i, int64_t j) { return !in[size_t(i)] || in[size_t(j)]; };
}
/// row_keep backward: the rows that take part, among themselves.
Rule restrictedRule(std::vector<char> in) {
  return [in](int64_t i, int64_t j) { return in[size_t(i)] && in[size_t(j)]; };
}
/// drop_query backward: kept queries attend every key.
Rule keptQueriesRule(std::vector<char> in) {
  return [in](int64_t i, int64_t) { return bool(in[size_t(i)]); };
}

//===--- Inputs -----------------------------------------------------------===//

/// Ascending kept tokens: the class token 0 and about half of the others
/// (at least one more), then `pad` entries of -1.
IVec keepList(int64_t T, uint32_t seed, int pad = 2) {
  std::mt19937 gen(seed);
  IVec keep{0};
  for (int64_t t = 1; t < T; ++t)
    if (gen() % 2 == 0)
      keep.push_back(int32_t(t));
  if (keep.size() == 1 && T > 1)
    keep.push_back(int32_t(T - 1));
  for (int i = 0; i < pad; ++i)
    keep.push_back(-1);
  return keep;
}

struct Problem {
  Dims d;
  float scale;
  BVec qkv, dout;
  DVec qkvD, doutD;
};

Problem makeProblem(const Dims &d, uint32_t seed) {
  Problem p{d, 1.0f / std::sqrt(float(d.Dh)), {}, {}, {}, {}};
  p.qkv = randomBf16(d.qkvSize(), seed, -2.0f, 2.0f);
  p.dout = randomBf16(d.oSize(), seed + 7, -1.0f, 1.0f);
  p.qkvD = widen(p.qkv);
  p.doutD = widen(p.dout);
  return p;
}

BVec roundAll(const DVec &v) {
  BVec out(v.size());
  for (size_t i = 0; i < v.size(); ++i)
    out[i] = toBf16(v[i]);
  return out;
}
Vec toFloat(const DVec &v) { return Vec(v.begin(), v.end()); }

//===--- Calls (outputs NaN-poisoned first) -------------------------------===//

/// Waits and asserts that no error was recorded.
void finish(const Context &ctx) {
  ASSERT_EQ(cudaStreamSynchronize(ctx.stream), cudaSuccess);
  char err[512] = {};
  ASSERT_EQ(last_error(err, sizeof(err)), 0) << err;
}

void runForward(const Context &ctx, const Dims &d, float scale, const BVec &qkv,
                const IVec &keep, BVec &o, Vec &lse, size_t misalign = 0,
                bool withLse = true) {
  DBf16 dQkv(qkv, misalign);
  DBf16 dO(BVec(d.oSize(), nanBf16()), misalign);
  DFloat dLse(Vec(d.lseSize(), NAN));
  DInt dKeep(keep.empty() ? IVec{-1} : keep);
  attention_fwd(ctx, dQkv.get(), dO.get(), withLse ? dLse.get() : nullptr, d.B,
                d.T, d.H, d.Dh, scale, keep.empty() ? nullptr : dKeep.get(),
                int64_t(keep.size()));
  finish(ctx);
  o = dO.download();
  lse = dLse.download();
}

/// Whether runBackward gives attention_bwd its dS^T scratch (what the
/// compiled bf16 trainers do): set for a test's scope by WithDsScratch.
bool gDsScratch = false;
struct WithDsScratch {
  WithDsScratch() { gDsScratch = true; }
  ~WithDsScratch() { gDsScratch = false; }
};

BVec runBackward(const Context &ctx, const Dims &d, float scale,
                 const BVec &qkv, const BVec &o, const Vec &lse,
                 const BVec &dout, const IVec &rowKeep, const IVec &headKeep,
                 size_t misalign = 0) {
  DBf16 dQkv(qkv, misalign), dO(o, misalign), dG(dout, misalign);
  DFloat dLse(lse);
  DBf16 dDqkv(BVec(d.qkvSize(), nanBf16()), misalign);
  DInt dRow(rowKeep.empty() ? IVec{-1} : rowKeep);
  DInt dHead(headKeep.empty() ? IVec{-1} : headKeep);
  // NaN-poisoned: an element the dQ pass reads but the dK/dV pass did not
  // write shows up in dq.
  const int64_t dsBytes = sbp_attention_ds_bytes(d.B, d.T, d.H);
  DBf16 dDs(BVec(gDsScratch ? size_t(dsBytes / 2) : 1, nanBf16()));
  attention_bwd(ctx, dQkv.get(), dO.get(), dLse.get(), dG.get(), dDqkv.get(),
                d.B, d.T, d.H, d.Dh, scale,
                rowKeep.empty() ? nullptr : dRow.get(),
                headKeep.empty() ? nullptr : dHead.get(),
                gDsScratch ? dDs.get() : nullptr, gDsScratch ? dsBytes : 0);
  finish(ctx);
  return dDqkv.download();
}

BVec runQueries(const Context &ctx, const Dims &d, float scale, const BVec &qkv,
                const IVec &keep, const BVec &oK, const Vec &lseK,
                const BVec &doutK) {
  DBf16 dQkv(qkv), dO(oK.empty() ? BVec{nanBf16()} : oK),
      dG(doutK.empty() ? BVec{nanBf16()} : doutK);
  DFloat dLse(lseK.empty() ? Vec{NAN} : lseK);
  DBf16 dDqkv(BVec(d.qkvSize(), nanBf16()));
  DInt dKeep(keep.empty() ? IVec{-1} : keep);
  attention_bwd_queries(ctx, dQkv.get(), keep.empty() ? nullptr : dKeep.get(),
                        int64_t(keep.size()), dO.get(), dLse.get(), dG.get(),
                        dDqkv.get(), d.B, d.T, d.H, d.Dh, scale);
  finish(ctx);
  return dDqkv.download();
}

//===--- Checks -----------------------------------------------------------===//

/// A part whose reference is exactly zero everywhere is compared against
/// this scale instead of max|want| = 0: with a single key (T = 1) softmax
/// has no gradient with respect to its score, so dq = dk = 0 exactly, and
/// the kernels' dP - D cancels to ~1e-7 of the O(1) inputs, not to 0.
constexpr double kZeroReferenceScale = 1e-4;

/// max|got - want| / max(max|want|, kZeroReferenceScale) over the elements
/// with select(i) < tol; every selected element finite.
::testing::AssertionResult
relMaxClose(const BVec &got, const DVec &want, double tol,
            const std::function<bool(size_t)> &select = nullptr) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure()
           << "size " << got.size() << " vs " << want.size();
  double maxWant = 0.0, maxDiff = 0.0;
  size_t at = 0, count = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (select && !select(i))
      continue;
    ++count;
    const double g = toDouble(got[i]);
    if (!std::isfinite(g))
      return ::testing::AssertionFailure()
             << "element " << i << " is " << g << " (not written?)";
    maxWant = std::max(maxWant, std::fabs(want[i]));
    const double diff = std::fabs(g - want[i]);
    if (diff > maxDiff) {
      maxDiff = diff;
      at = i;
    }
  }
  if (count == 0)
    return ::testing::AssertionSuccess();
  const double err = maxDiff / std::max(maxWant, kZeroReferenceScale);
  if (!(err < tol))
    return ::testing::AssertionFailure()
           << "max|got - want| / max|want| = " << err << " >= " << tol
           << " (worst element " << at << ": got " << toDouble(got[at])
           << ", want " << want[at] << ", max|want| " << maxWant << ")";
  return ::testing::AssertionSuccess();
}

/// Every element with select(i) is exactly zero (+0 or -0).
::testing::AssertionResult
exactZeros(const BVec &got, const std::function<bool(size_t)> &select) {
  for (size_t i = 0; i < got.size(); ++i)
    if (select(i) && (bitsOf(got[i]) & 0x7fffu) != 0)
      return ::testing::AssertionFailure()
             << "element " << i << " is " << toDouble(got[i])
             << ", want exactly 0";
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult
lseClose(const Vec &got, const DVec &want,
         const std::function<bool(size_t)> &select = nullptr) {
  for (size_t i = 0; i < got.size(); ++i) {
    if (select && !select(i))
      continue;
    if (!std::isfinite(got[i]) || std::fabs(double(got[i]) - want[i]) > kLseTol)
      return ::testing::AssertionFailure() << "lse element " << i << ": got "
                                           << got[i] << ", want " << want[i];
  }
  return ::testing::AssertionSuccess();
}

/// dq, dk, dv each within kRelTol of the reference where zeroAt is false,
/// exactly zero where it is true (zeroAt(part, b, t, h)).
void checkGrad(
    const Dims &d, const BVec &got, const DVec &want,
    const std::function<bool(int, int64_t, int64_t, int64_t)> &zeroAt) {
  static const char *const kNames[3] = {"dq", "dk", "dv"};
  const auto isZero = [&](size_t e) {
    int part;
    int64_t b, t, h;
    d.qkvCoords(e, part, b, t, h);
    return zeroAt && zeroAt(part, b, t, h);
  };
  for (int part = 0; part < 3; ++part)
    EXPECT_TRUE(relMaxClose(got, want, kRelTol, [&](size_t e) {
      int pe;
      int64_t b, t, h;
      d.qkvCoords(e, pe, b, t, h);
      return pe == part && !isZero(e);
    })) << kNames[part];
  EXPECT_TRUE(exactZeros(got, isZero)) << "structural zeros";
}

std::vector<Dims> requiredShapes() {
  std::vector<Dims> shapes;
  for (int64_t T : {17, 50, 197})
    for (int64_t Dh : {32, 64})
      for (int64_t H : {1, 3})
        for (int64_t B : {2, 3})
          shapes.push_back({B, T, H, Dh});
  return shapes;
}

#define SHAPE_TRACE(d)                                                         \
  SCOPED_TRACE(::testing::Message() << "B=" << (d).B << " T=" << (d).T         \
                                    << " H=" << (d).H << " Dh=" << (d).Dh)

//===--- The modes --------------------------------------------------------===//

/// Plain forward (o, lse), then the plain backward from the reference's o
/// (rounded to bf16) and lse, so each pass is judged alone.
void checkPlain(const Context &ctx, const Dims &d, uint32_t seed,
                size_t misalign = 0) {
  SHAPE_TRACE(d);
  const Problem p = makeProblem(d, seed);
  DVec oRef, lseRef;
  refForward(d, p.qkvD, plainRule(), p.scale, oRef, lseRef);
  BVec o;
  Vec lse;
  runForward(ctx, d, p.scale, p.qkv, {}, o, lse, misalign);
  EXPECT_TRUE(relMaxClose(o, oRef, kRelTol)) << "o";
  EXPECT_TRUE(lseClose(lse, lseRef)) << "lse";
  const DVec gRef = refBackward(d, p.qkvD, plainRule(), p.scale, p.doutD);
  const BVec g = runBackward(ctx, d, p.scale, p.qkv, roundAll(oRef),
                             toFloat(lseRef), p.dout, {}, {}, misalign);
  checkGrad(d, g, gRef, nullptr);
}

/// drop_qkv forward: kept queries over kept keys, the others over all.
void checkKeepForward(const Context &ctx, const Dims &d, uint32_t seed,
                      bool withLse = true) {
  SHAPE_TRACE(d);
  const Problem p = makeProblem(d, seed);
  const IVec keep = keepList(d.T, seed + 1);
  DVec oRef, lseRef;
  refForward(d, p.qkvD, keepForwardRule(membership(keep, d.T)), p.scale, oRef,
             lseRef);
  BVec o;
  Vec lse;
  runForward(ctx, d, p.scale, p.qkv, keep, o, lse, 0, withLse);
  EXPECT_TRUE(relMaxClose(o, oRef, kRelTol)) << "o";
  if (withLse)
    EXPECT_TRUE(lseClose(lse, lseRef)) << "lse";
}

/// Compact drop_qkv backward: rows with row_keep[t] >= 0 take part among
/// themselves; everything of the other rows is NaN and their gradient must
/// be exactly 0. compact: the kept rows first, then -1 (the emitted
/// pattern); otherwise -1 rows interspersed.
void checkRowKeep(const Context &ctx, const Dims &d, uint32_t seed,
                  bool compact, const IVec &headKeep = {}) {
  SHAPE_TRACE(d);
  Problem p = makeProblem(d, seed);
  IVec rowKeep(size_t(d.T), -1);
  std::mt19937 gen(seed + 3);
  if (compact) {
    const int64_t kept = std::max<int64_t>(1, d.T * 3 / 5);
    for (int64_t t = 0; t < kept; ++t)
      rowKeep[size_t(t)] = int32_t(2 * t); // token ids of the kept rows
  } else {
    for (int64_t t = 0; t < d.T; ++t)
      rowKeep[size_t(t)] = t == 0 || gen() % 3 != 0 ? int32_t(t) : -1;
  }
  std::vector<char> in(size_t(d.T));
  for (int64_t t = 0; t < d.T; ++t)
    in[size_t(t)] = rowKeep[size_t(t)] >= 0;
  const std::vector<char> heads = headKeep.empty()
                                      ? std::vector<char>(size_t(d.H), 1)
                                      : membership(headKeep, d.H);
  const Rule rule = restrictedRule(in);
  DVec oRef, lseRef;
  refForward(d, p.qkvD, rule, p.scale, oRef, lseRef);
  const DVec gRef =
      refBackward(d, p.qkvD, rule, p.scale, p.doutD,
                  [&](int64_t h) { return bool(heads[size_t(h)]); });
  BVec o = roundAll(oRef);
  Vec lse = toFloat(lseRef);
  // Poison what must not be read.
  for (int64_t b = 0; b < d.B; ++b)
    for (int64_t t = 0; t < d.T; ++t)
      for (int64_t h = 0; h < d.H; ++h) {
        if (in[size_t(t)] && heads[size_t(h)])
          continue;
        for (int part = 0; part < 3; ++part)
          for (int64_t e = 0; e < d.Dh; ++e)
            p.qkv[size_t(d.qkvAt(part, b, t, h) + e)] = nanBf16();
        for (int64_t e = 0; e < d.Dh; ++e) {
          o[size_t(d.oAt(b, t, h) + e)] = nanBf16();
          p.dout[size_t(d.oAt(b, t, h) + e)] = nanBf16();
        }
        lse[size_t((b * d.T + t) * d.H + h)] = NAN;
      }
  const BVec g =
      runBackward(ctx, d, p.scale, p.qkv, o, lse, p.dout, rowKeep, headKeep);
  checkGrad(d, g, gRef, [&](int, int64_t, int64_t t, int64_t h) {
    return !in[size_t(t)] || !heads[size_t(h)];
  });
}

/// drop_head backward: heads not in head_keep get exact zeros and their
/// inputs are NaN.
void checkHeadKeep(const Context &ctx, const Dims &d, uint32_t seed,
                   const IVec &headKeep) {
  SHAPE_TRACE(d);
  Problem p = makeProblem(d, seed);
  const std::vector<char> heads = membership(headKeep, d.H);
  DVec oRef, lseRef;
  refForward(d, p.qkvD, plainRule(), p.scale, oRef, lseRef);
  const DVec gRef =
      refBackward(d, p.qkvD, plainRule(), p.scale, p.doutD,
                  [&](int64_t h) { return bool(heads[size_t(h)]); });
  BVec o = roundAll(oRef);
  Vec lse = toFloat(lseRef);
  for (int64_t b = 0; b < d.B; ++b)
    for (int64_t t = 0; t < d.T; ++t)
      for (int64_t h = 0; h < d.H; ++h) {
        if (heads[size_t(h)])
          continue;
        for (int part = 0; part < 3; ++part)
          for (int64_t e = 0; e < d.Dh; ++e)
            p.qkv[size_t(d.qkvAt(part, b, t, h) + e)] = nanBf16();
        for (int64_t e = 0; e < d.Dh; ++e) {
          o[size_t(d.oAt(b, t, h) + e)] = nanBf16();
          p.dout[size_t(d.oAt(b, t, h) + e)] = nanBf16();
        }
        lse[size_t((b * d.T + t) * d.H + h)] = NAN;
      }
  const BVec g =
      runBackward(ctx, d, p.scale, p.qkv, o, lse, p.dout, {}, headKeep);
  checkGrad(d, g, gRef, [&](int, int64_t, int64_t, int64_t h) {
    return !heads[size_t(h)];
  });
}

/// drop_query backward: the K = |keep| queries keep[k] (trailing -1) over
/// all keys; o_k, lse_k, dout_k padding rows NaN; dq exactly 0 at the rows
/// that are no query.
void checkQueries(const Context &ctx, const Dims &d, uint32_t seed,
                  const IVec *keepIn = nullptr) {
  SHAPE_TRACE(d);
  const Problem p = makeProblem(d, seed);
  const IVec keep = keepIn ? *keepIn : keepList(d.T, seed + 5);
  const int64_t K = int64_t(keep.size());
  const std::vector<char> in = membership(keep, d.T);
  const Rule rule = keptQueriesRule(in);
  DVec oRef, lseRef;
  refForward(d, p.qkvD, rule, p.scale, oRef, lseRef);
  // Gathered query rows; the reference's dout holds them at their tokens.
  const int64_t w = d.width();
  BVec oK(size_t(d.B * K * w), nanBf16()), doutK(oK.size(), nanBf16());
  Vec lseK(size_t(d.B * K * d.H), NAN);
  DVec doutFull(d.oSize(), 0.0);
  for (int64_t b = 0; b < d.B; ++b)
    for (int64_t k = 0; k < K; ++k) {
      const int32_t t = keep[size_t(k)];
      if (t < 0 || t >= d.T)
        continue;
      for (int64_t c = 0; c < w; ++c) {
        oK[size_t((b * K + k) * w + c)] =
            toBf16(oRef[size_t((b * d.T + t) * w + c)]);
        doutK[size_t((b * K + k) * w + c)] =
            p.dout[size_t((b * d.T + t) * w + c)];
        doutFull[size_t((b * d.T + t) * w + c)] =
            p.doutD[size_t((b * d.T + t) * w + c)];
      }
      for (int64_t h = 0; h < d.H; ++h)
        lseK[size_t((b * K + k) * d.H + h)] =
            float(lseRef[size_t((b * d.T + t) * d.H + h)]);
    }
  const DVec gRef = refBackward(d, p.qkvD, rule, p.scale, doutFull);
  const BVec g = runQueries(ctx, d, p.scale, p.qkv, keep, oK, lseK, doutK);
  checkGrad(d, g, gRef, [&](int part, int64_t, int64_t t, int64_t) {
    return part == 0 && !in[size_t(t)];
  });
}

using AttentionBf16 = CudaKernelTest;

//===--- Tests ------------------------------------------------------------===//

TEST_F(AttentionBf16, PlainForwardBackward) {
  uint32_t seed = 100;
  for (const Dims &d : requiredShapes())
    checkPlain(ctx, d, seed += 10);
}

TEST_F(AttentionBf16, KeepForward) {
  uint32_t seed = 200;
  for (const Dims &d : requiredShapes())
    checkKeepForward(ctx, d, seed += 10);
}

TEST_F(AttentionBf16, KeepForwardWithoutLse) {
  checkKeepForward(ctx, {2, 50, 3, 64}, 7, /*withLse=*/false);
}

TEST_F(AttentionBf16, CompactRowKeepBackward) {
  uint32_t seed = 300;
  for (const Dims &d : requiredShapes())
    checkRowKeep(ctx, d, seed += 10, /*compact=*/true);
}

TEST_F(AttentionBf16, ScatteredRowKeepBackward) {
  uint32_t seed = 400;
  for (const Dims &d : requiredShapes())
    checkRowKeep(ctx, d, seed += 10, /*compact=*/false);
}

TEST_F(AttentionBf16, HeadKeepBackward) {
  uint32_t seed = 500;
  for (const Dims &d : requiredShapes())
    checkHeadKeep(ctx, d, seed += 10, d.H == 3 ? IVec{0, 2, -1} : IVec{0});
}

TEST_F(AttentionBf16, NoHeadKeptGivesZeros) {
  checkHeadKeep(ctx, {2, 50, 1, 64}, 11, IVec{-1});
  checkHeadKeep(ctx, {2, 17, 3, 32}, 12, IVec{-1, -1, -1});
}

TEST_F(AttentionBf16, RowKeepWithHeadKeepBackward) {
  checkRowKeep(ctx, {2, 50, 3, 64}, 13, true, IVec{1, -1, -1});
  checkRowKeep(ctx, {3, 197, 3, 32}, 14, false, IVec{0, 2, -1});
}

TEST_F(AttentionBf16, QueriesBackward) {
  uint32_t seed = 600;
  for (const Dims &d : requiredShapes())
    checkQueries(ctx, d, seed += 10);
}

TEST_F(AttentionBf16, QueriesBackwardWithoutQueries) {
  // No query at all: dq = dk = dv = 0 everywhere.
  const IVec none{-1, -1, -1};
  checkQueries(ctx, {2, 50, 3, 64}, 15, &none);
  const Dims d{2, 17, 1, 32};
  const Problem p = makeProblem(d, 16);
  const BVec g = runQueries(ctx, d, p.scale, p.qkv, {}, {}, {}, {});
  EXPECT_TRUE(exactZeros(g, [](size_t) { return true; }));
}

TEST_F(AttentionBf16, OtherHeadDims) {
  // 16 and 48 run zero-padded on the 32 / 64 kernels, 8 too; 20 and 36 are
  // not multiples of 8 (no 16-byte rows): the scalar load path.
  uint32_t seed = 700;
  for (int64_t Dh : {8, 16, 20, 36, 48}) {
    const Dims d{2, 50, 3, Dh};
    checkPlain(ctx, d, seed += 10);
    checkKeepForward(ctx, d, seed += 10);
    checkRowKeep(ctx, d, seed += 10, false, d.H == 3 ? IVec{0, 2, -1} : IVec{});
    checkQueries(ctx, d, seed += 10);
  }
}

TEST_F(AttentionBf16, MisalignedPointersTakeTheScalarPath) {
  // Every tensor 2 bytes off 16-byte alignment.
  checkPlain(ctx, {2, 50, 3, 64}, 17, /*misalign=*/1);
  checkPlain(ctx, {3, 197, 1, 32}, 18, /*misalign=*/1);
}

TEST_F(AttentionBf16, LongerSequences) {
  // 5 and 9 key tiles: odd tile counts for the two shared-memory stages.
  uint32_t seed = 800;
  for (const Dims &d : {Dims{1, 300, 2, 64}, Dims{1, 513, 1, 32}}) {
    checkPlain(ctx, d, seed += 10);
    checkKeepForward(ctx, d, seed += 10);
    checkRowKeep(ctx, d, seed += 10, true);
    checkQueries(ctx, d, seed += 10);
  }
}

TEST_F(AttentionBf16, ResidentKernelBoundaries) {
  // The resident kernels (a CTA per (batch, head)) take up to 224 rows where
  // shared memory and registers hold them (H100): 224 with Dh 32 (14 warps)
  // and the forward; the Dh 64 backward (143 registers) only up to 192 rows,
  // so at 208 and 224 rows it runs tiled, as everything at 225 rows does.
  // The library's default (auto) does not take these small batches (fewer
  // sequences than multiprocessors), so they run tiled here:
  // test/gpu/run-gpu-tests.sh runs this suite again under
  // SBP_ATTN_KERNELS=resident. T = 1: one key, so dq = dk = 0 exactly (the
  // kernels' rounding leaves ~1e-7; see kZeroReferenceScale).
  uint32_t seed = 900;
  for (const Dims &d : {Dims{1, 208, 2, 64}, Dims{1, 224, 2, 32},
                        Dims{2, 224, 1, 64}, Dims{1, 225, 2, 32},
                        Dims{3, 16, 3, 64}, Dims{2, 1, 1, 64}}) {
    SHAPE_TRACE(d);
    checkPlain(ctx, d, seed += 10);
    checkKeepForward(ctx, d, seed += 10);
    checkRowKeep(ctx, d, seed += 10, true, d.H == 2 ? IVec{1, -1} : IVec{});
    checkRowKeep(ctx, d, seed += 10, false);
  }
}

TEST_F(AttentionBf16, Deterministic) {
  // Each call twice on the same inputs, outputs NaN-poisoned in between:
  // the same bits.
  const Dims d{2, 197, 3, 64};
  const Problem p = makeProblem(d, 19);
  const IVec keep = keepList(d.T, 20);
  for (const IVec &k : {IVec{}, keep}) {
    BVec o1, o2;
    Vec l1, l2;
    runForward(ctx, d, p.scale, p.qkv, k, o1, l1);
    runForward(ctx, d, p.scale, p.qkv, k, o2, l2);
    EXPECT_EQ(std::memcmp(o1.data(), o2.data(), o1.size() * sizeof(bf16)), 0)
        << "o, keep " << k.size();
    EXPECT_TRUE(sameBits(l1, l2)) << "lse, keep " << k.size();
  }
  BVec o;
  Vec lse;
  runForward(ctx, d, p.scale, p.qkv, {}, o, lse);
  IVec rowKeep(size_t(d.T));
  for (int64_t t = 0; t < d.T; ++t)
    rowKeep[size_t(t)] = t % 4 == 3 ? -1 : int32_t(t);
  const IVec headKeep{0, 2, -1};
  for (int mode = 0; mode < 2; ++mode) {
    const IVec rk = mode ? rowKeep : IVec{}, hk = mode ? headKeep : IVec{};
    const BVec g1 = runBackward(ctx, d, p.scale, p.qkv, o, lse, p.dout, rk, hk);
    const BVec g2 = runBackward(ctx, d, p.scale, p.qkv, o, lse, p.dout, rk, hk);
    EXPECT_EQ(std::memcmp(g1.data(), g2.data(), g1.size() * sizeof(bf16)), 0)
        << "attention_bwd, mode " << mode;
  }
  const int64_t K = int64_t(keep.size()), w = d.width();
  BVec oK(size_t(d.B * K * w)), doutK(oK.size());
  Vec lseK(size_t(d.B * K * d.H));
  for (int64_t b = 0; b < d.B; ++b)
    for (int64_t k = 0; k < K; ++k) {
      const int32_t t = std::max(keep[size_t(k)], 0);
      for (int64_t c = 0; c < w; ++c) {
        oK[size_t((b * K + k) * w + c)] = o[size_t((b * d.T + t) * w + c)];
        doutK[size_t((b * K + k) * w + c)] =
            p.dout[size_t((b * d.T + t) * w + c)];
      }
      for (int64_t h = 0; h < d.H; ++h)
        lseK[size_t((b * K + k) * d.H + h)] =
            lse[size_t((b * d.T + t) * d.H + h)];
    }
  const BVec q1 = runQueries(ctx, d, p.scale, p.qkv, keep, oK, lseK, doutK);
  const BVec q2 = runQueries(ctx, d, p.scale, p.qkv, keep, oK, lseK, doutK);
  EXPECT_EQ(std::memcmp(q1.data(), q2.data(), q1.size() * sizeof(bf16)), 0)
      << "attention_bwd_queries";
}

TEST_F(AttentionBf16, DsScratchBackward) {
  // attention_bwd with its dS^T scratch: the dK/dV kernel stores dS^T, the
  // dQ kernel reads dQ = dS K back (attn_bf16_bwd_dq_ds_kernel). Every
  // backward mode and shape class of the tests above; odd key-tile counts;
  // misaligned tensors (the scalar path ignores the scratch).
  WithDsScratch on;
  uint32_t seed = 1000;
  for (const Dims &d : requiredShapes()) {
    checkPlain(ctx, d, seed += 10);
    checkRowKeep(ctx, d, seed += 10, /*compact=*/true);
    checkRowKeep(ctx, d, seed += 10, /*compact=*/false);
    checkHeadKeep(ctx, d, seed += 10, d.H == 3 ? IVec{0, 2, -1} : IVec{0});
  }
  checkHeadKeep(ctx, {2, 50, 1, 64}, seed += 10, IVec{-1});
  checkRowKeep(ctx, {3, 197, 3, 32}, seed += 10, false, IVec{0, 2, -1});
  for (int64_t Dh : {8, 16, 20, 48})
    checkPlain(ctx, {2, 50, 3, Dh}, seed += 10);
  for (const Dims &d : {Dims{1, 300, 2, 64}, Dims{1, 513, 1, 32},
                        Dims{2, 1, 1, 64}, Dims{3, 16, 3, 64}})
    checkPlain(ctx, d, seed += 10);
  checkPlain(ctx, {2, 50, 3, 64}, seed += 10, /*misalign=*/1);
}

TEST_F(AttentionBf16, DsScratchBackwardIsDeterministic) {
  WithDsScratch on;
  const Dims d{2, 197, 3, 64};
  const Problem p = makeProblem(d, 21);
  BVec o;
  Vec lse;
  runForward(ctx, d, p.scale, p.qkv, {}, o, lse);
  const BVec g1 = runBackward(ctx, d, p.scale, p.qkv, o, lse, p.dout, {}, {});
  const BVec g2 = runBackward(ctx, d, p.scale, p.qkv, o, lse, p.dout, {}, {});
  EXPECT_EQ(std::memcmp(g1.data(), g2.data(), g1.size() * sizeof(bf16)), 0);
}

TEST_F(AttentionBf16, RejectsDsScratchTooSmall) {
  const Dims d{2, 50, 3, 64};
  DBf16 qkv(d.qkvSize()), o(d.oSize()), dqkv(d.qkvSize());
  DFloat lse(d.lseSize());
  const int64_t need = sbp_attention_ds_bytes(d.B, d.T, d.H);
  DBf16 ds(size_t(need / 2));
  attention_bwd(ctx, qkv.get(), o.get(), lse.get(), o.get(), dqkv.get(), d.B,
                d.T, d.H, d.Dh, 0.125f, nullptr, nullptr, ds.get(), need - 2);
  char err[512] = {};
  EXPECT_NE(last_error(err, sizeof(err)), 0);
  EXPECT_NE(std::string(err).find("ds_scratch"), std::string::npos) << err;
}

TEST_F(AttentionBf16, RejectsHeadDimAbove64) {
  const Dims d{1, 4, 1, 96};
  DBf16 qkv(d.qkvSize()), o(d.oSize()), dqkv(d.qkvSize());
  DFloat lse(d.lseSize());
  char err[512] = {};
  attention_fwd(ctx, qkv.get(), o.get(), lse.get(), d.B, d.T, d.H, d.Dh, 0.1f,
                nullptr, 0);
  EXPECT_NE(last_error(err, sizeof(err)), 0);
  EXPECT_NE(std::string(err).find("attention_fwd"), std::string::npos) << err;
  EXPECT_NE(std::string(err).find("head dim"), std::string::npos) << err;
  attention_bwd(ctx, qkv.get(), o.get(), lse.get(), o.get(), dqkv.get(), d.B,
                d.T, d.H, d.Dh, 0.1f, nullptr, nullptr, nullptr, 0);
  EXPECT_NE(last_error(err, sizeof(err)), 0);
  EXPECT_NE(std::string(err).find("attention_bwd"), std::string::npos) << err;
  DInt keep(IVec{0, 1});
  attention_bwd_queries(ctx, qkv.get(), keep.get(), 2, o.get(), lse.get(),
                        o.get(), dqkv.get(), d.B, d.T, d.H, d.Dh, 0.1f);
  EXPECT_NE(last_error(err, sizeof(err)), 0);
  EXPECT_NE(std::string(err).find("attention_bwd_queries"), std::string::npos)
      << err;
}

TEST_F(AttentionBf16, RejectsKeepListBeyond8192Tokens) {
  const Dims d{1, 8193, 1, 8};
  DBf16 qkv(d.qkvSize()), o(d.oSize());
  DInt keep(IVec{0, 5, -1});
  attention_fwd(ctx, qkv.get(), o.get(), nullptr, d.B, d.T, d.H, d.Dh, 0.1f,
                keep.get(), 3);
  char err[512] = {};
  EXPECT_NE(last_error(err, sizeof(err)), 0);
  EXPECT_NE(std::string(err).find("8192"), std::string::npos) << err;
}

class AttentionBf16SmallScratch : public CudaKernelTest {
  void configure(Context &c) override { c.scratch_bytes = 4096; }
};

TEST_F(AttentionBf16SmallScratch, BackwardReportsScratchTooSmall) {
  // 8 B H ceil64(T) = 8 * 2 * 3 * 256 bytes > 4096, whichever kernels run.
  const Dims d{2, 197, 3, 64};
  DBf16 qkv(d.qkvSize()), o(d.oSize()), dqkv(d.qkvSize());
  DFloat lse(d.lseSize());
  attention_bwd(ctx, qkv.get(), o.get(), lse.get(), o.get(), dqkv.get(), d.B,
                d.T, d.H, d.Dh, 0.125f, nullptr, nullptr, nullptr, 0);
  char err[512] = {};
  EXPECT_NE(last_error(err, sizeof(err)), 0);
  EXPECT_NE(std::string(err).find("scratch"), std::string::npos) << err;
  // A small problem fits: 8 * 1 * 1 * 64 bytes.
  checkPlain(ctx, {1, 17, 1, 32}, 21);
}

} // namespace
} // namespace sbp::cuda::test
