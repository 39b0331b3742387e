//===- AttentionTest.cpp - attention_fwd / attention_bwd(_queries) --------===//
//
// Every mode against a naive double-precision attention that materialises
// the softmax under an explicit T x T "query i may attend key j" mask (plain,
// drop_qkv forward, the restricted attention of the compact drop_qkv
// backward, drop_query), and the plain backward against central finite
// differences. The reference gradient itself is checked against finite
// differences on a masked problem, so it is not just the kernel's formulas
// again. Outputs are poisoned with NaN before every call: an element the
// kernel forgets to write fails the comparison.
//
//===----------------------------------------------------------------------===//

#include "TestSupport.h"
#include "sbp/cpu_kernels.h"

#include <limits>

namespace sbp::cpu::test {
namespace {

struct Problem {
  int64_t B, T, H, Dh;
  float scale() const { return 1.0f / std::sqrt(float(Dh)); }
  int64_t width() const { return H * Dh; }
  size_t qkvSize() const { return size_t(B * T * 3 * width()); }
  size_t oSize() const { return size_t(B * T * width()); }
  size_t lseSize() const { return size_t(B * T * H); }
};

::testing::Message describe(const Problem &p) {
  return ::testing::Message()
         << "B=" << p.B << " T=" << p.T << " H=" << p.H << " Dh=" << p.Dh;
}

const float kNaN = std::numeric_limits<float>::quiet_NaN();

Vec poisoned(size_t n) { return Vec(n, kNaN); }

/// mask[i * T + j]: query token i attends key token j (same for every batch
/// element and head).
using Mask = std::vector<char>;

std::vector<char> membership(const std::vector<int32_t> &keep, int64_t T) {
  std::vector<char> in(size_t(T), 0);
  for (int32_t t : keep)
    if (t >= 0)
      in[size_t(t)] = 1;
  return in;
}

template <class F> Mask makeMask(int64_t T, F allowed) {
  Mask m(size_t(T * T));
  for (int64_t i = 0; i < T; ++i)
    for (int64_t j = 0; j < T; ++j)
      m[size_t(i * T + j)] = allowed(i, j);
  return m;
}
Mask fullMask(int64_t T) {
  return makeMask(T, [](int64_t, int64_t) { return true; });
}
/// drop_qkv forward: kept queries attend kept keys, the others attend all.
Mask keepForwardMask(int64_t T, const std::vector<int32_t> &keep) {
  const auto in = membership(keep, T);
  return makeMask(T, [&](int64_t i, int64_t j) { return !in[i] || in[j]; });
}
/// The compact drop_qkv backward: only kept rows, among themselves.
Mask restrictedMask(int64_t T, const std::vector<int32_t> &keep) {
  const auto in = membership(keep, T);
  return makeMask(T, [&](int64_t i, int64_t j) { return in[i] && in[j]; });
}
/// drop_query: kept queries attend every key; other rows are no query.
Mask keptQueriesMask(int64_t T, const std::vector<int32_t> &keep) {
  const auto in = membership(keep, T);
  return makeMask(T, [&](int64_t i, int64_t) { return bool(in[i]); });
}

/// Offset of (part 0/1/2 = q/k/v, head h) of token t in qkv.
int64_t qkvAt(const Problem &p, int part, int64_t b, int64_t t, int64_t h) {
  return (b * p.T + t) * 3 * p.width() + (part * p.H + h) * p.Dh;
}

/// Softmax probabilities of query i of (b, h) under the mask, in double;
/// false when the query attends nothing.
bool refProbabilities(const Problem &p, const DVec &qkv, const Mask &mask,
                      int64_t b, int64_t h, int64_t i, DVec &prob,
                      double &lse) {
  prob.assign(size_t(p.T), 0.0);
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < p.T; ++j) {
    if (!mask[size_t(i * p.T + j)])
      continue;
    double s = 0.0;
    for (int64_t d = 0; d < p.Dh; ++d)
      s += qkv[qkvAt(p, 0, b, i, h) + d] * qkv[qkvAt(p, 1, b, j, h) + d];
    prob[j] = double(p.scale()) * s;
    m = std::max(m, prob[j]);
  }
  if (m == -std::numeric_limits<double>::infinity())
    return false;
  double sum = 0.0;
  for (int64_t j = 0; j < p.T; ++j)
    if (mask[size_t(i * p.T + j)])
      sum += (prob[j] = std::exp(prob[j] - m));
  for (double &x : prob)
    x /= sum;
  lse = m + std::log(sum);
  return true;
}

/// o [B,T,H*Dh] and lse [B,T,H]; a query that attends nothing gets o = 0
/// and lse = 0 (no kernel output is compared there).
void refForward(const Problem &p, const DVec &qkv, const Mask &mask, DVec &o,
                DVec &lse) {
  o.assign(p.oSize(), 0.0);
  lse.assign(p.lseSize(), 0.0);
  DVec prob;
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t h = 0; h < p.H; ++h)
      for (int64_t i = 0; i < p.T; ++i) {
        double l;
        if (!refProbabilities(p, qkv, mask, b, h, i, prob, l))
          continue;
        lse[(b * p.T + i) * p.H + h] = l;
        double *oi = &o[(b * p.T + i) * p.width() + h * p.Dh];
        for (int64_t j = 0; j < p.T; ++j)
          for (int64_t d = 0; d < p.Dh; ++d)
            oi[d] += prob[j] * qkv[qkvAt(p, 2, b, j, h) + d];
      }
}

/// Gradient of sum(o * dout) with respect to qkv, through the materialised
/// softmax Jacobian: ds_ij = P_ij (dO_i.v_j - sum_k P_ik dO_i.v_k).
DVec refBackward(const Problem &p, const DVec &qkv, const Mask &mask,
                 const DVec &dout) {
  DVec dqkv(p.qkvSize(), 0.0), prob, dp(size_t(p.T));
  const double scale = p.scale();
  for (int64_t b = 0; b < p.B; ++b)
    for (int64_t h = 0; h < p.H; ++h)
      for (int64_t i = 0; i < p.T; ++i) {
        double l;
        if (!refProbabilities(p, qkv, mask, b, h, i, prob, l))
          continue;
        const double *doi = &dout[(b * p.T + i) * p.width() + h * p.Dh];
        double mean = 0.0;
        for (int64_t j = 0; j < p.T; ++j) {
          dp[j] = 0.0;
          for (int64_t d = 0; d < p.Dh; ++d)
            dp[j] += doi[d] * qkv[qkvAt(p, 2, b, j, h) + d];
          mean += prob[j] * dp[j];
        }
        for (int64_t j = 0; j < p.T; ++j) {
          const double ds = scale * prob[j] * (dp[j] - mean);
          for (int64_t d = 0; d < p.Dh; ++d) {
            dqkv[qkvAt(p, 2, b, j, h) + d] += prob[j] * doi[d];
            dqkv[qkvAt(p, 0, b, i, h) + d] +=
                ds * qkv[qkvAt(p, 1, b, j, h) + d];
            dqkv[qkvAt(p, 1, b, j, h) + d] +=
                ds * qkv[qkvAt(p, 0, b, i, h) + d];
          }
        }
      }
  return dqkv;
}

/// Where the reference is structurally zero (no query, no key, dropped
/// head) the kernel must write an exact zero.
::testing::AssertionResult exactZeros(const Vec &got, const DVec &want) {
  for (size_t i = 0; i < got.size(); ++i)
    if (want[i] == 0.0 && got[i] != 0.0f)
      return ::testing::AssertionFailure()
             << "element " << i << ": got " << got[i] << ", want exact 0";
  return ::testing::AssertionSuccess();
}

/// The float32-vs-double criterion of these tests.
constexpr double kTol = 1e-5;

::testing::AssertionResult matches(const Vec &got, const DVec &want) {
  auto close = gradClose(got, want, kTol);
  return close ? exactZeros(got, want) : close;
}

std::vector<int32_t> noKeep() { return {}; }

/// Kernel forward (keep empty: plain) into fresh NaN-poisoned outputs.
void kernelForward(const Problem &p, const Vec &qkv,
                   const std::vector<int32_t> &keep, Vec &o, Vec &lse) {
  o = poisoned(p.oSize());
  lse = poisoned(p.lseSize());
  attention_fwd(qkv.data(), o.data(), lse.data(), p.B, p.T, p.H, p.Dh,
                p.scale(), keep.empty() ? nullptr : keep.data(),
                int64_t(keep.size()));
}

void checkForward(const Problem &p, const std::vector<int32_t> &keep,
                  uint32_t seed) {
  SCOPED_TRACE(describe(p) << " K=" << keep.size());
  const Vec qkv = randomVec(p.qkvSize(), seed);
  const Mask mask = keep.empty() ? fullMask(p.T) : keepForwardMask(p.T, keep);
  DVec ro, rlse;
  refForward(p, toDouble(qkv), mask, ro, rlse);
  Vec o, lse;
  kernelForward(p, qkv, keep, o, lse);
  EXPECT_TRUE(gradClose(o, ro, kTol)) << "o";
  EXPECT_TRUE(gradClose(lse, rlse, kTol)) << "lse";
  // lse is optional (inference): o unchanged without it.
  Vec o2 = poisoned(p.oSize());
  attention_fwd(qkv.data(), o2.data(), nullptr, p.B, p.T, p.H, p.Dh, p.scale(),
                keep.empty() ? nullptr : keep.data(), int64_t(keep.size()));
  EXPECT_EQ(o2, o);
}

/// A keep list as the SBP sampler makes it: the class token 0, every
/// `stride`-th other token from `first`, ascending, then `pad` entries -1.
std::vector<int32_t> keepList(int64_t T, int64_t first, int64_t stride,
                              int pad) {
  std::vector<int32_t> keep{0};
  for (int64_t t = first; t < T; t += stride)
    keep.push_back(int32_t(t));
  keep.insert(keep.end(), size_t(pad), -1);
  return keep;
}

TEST(Attention, ReferenceGradientMatchesFiniteDifferences) {
  // The reference backward, on a masked problem, against central
  // differences of the reference forward: it is independent of the
  // kernels' formulas.
  const Problem p{1, 6, 2, 3};
  const std::vector<int32_t> keep{0, 2, 5, -1};
  for (const Mask &mask :
       {keepForwardMask(p.T, keep), keptQueriesMask(p.T, keep)}) {
    const DVec qkv = toDouble(randomVec(p.qkvSize(), 5));
    const DVec r = toDouble(randomVec(p.oSize(), 6));
    const DVec fd = numericGrad(
        [&](const DVec &x) {
          DVec o, lse;
          refForward(p, x, mask, o, lse);
          return dotD(o, r);
        },
        qkv);
    const DVec an = refBackward(p, qkv, mask, r);
    double err = 0.0, ref = 0.0;
    for (size_t i = 0; i < fd.size(); ++i) {
      err = std::max(err, std::fabs(an[i] - fd[i]));
      ref = std::max(ref, std::fabs(fd[i]));
    }
    EXPECT_LT(err / ref, 1e-8);
  }
}

TEST(Attention, ForwardPlain) {
  checkForward({2, 17, 3, 8}, noKeep(), 1);
  checkForward({1, 1, 1, 8}, noKeep(), 2);
  checkForward({2, 70, 1, 64}, noKeep(), 3); // two key tiles, uneven
  // ViT-Tiny-like, parallel path, under several team sizes.
  forEachTeamSize([] { checkForward({2, 197, 3, 64}, noKeep(), 4); });
}

TEST(Attention, ForwardKeep) {
  // Kept queries (class token included) see kept keys only; -1 padding at
  // the end of keep is ignored.
  checkForward({2, 17, 3, 8}, {0, 3, 4, 9, 16, -1, -1}, 11);
  checkForward({1, 17, 1, 64}, keepList(17, 1, 2, 0), 12);
  forEachTeamSize([] {
    checkForward({2, 197, 3, 64}, keepList(197, 1, 2, 5), 13);
  });
  checkForward({1, 197, 1, 8}, keepList(197, 5, 3, 30), 14);
  // Every token kept: the plain attention again.
  std::vector<int32_t> all(17);
  for (int32_t t = 0; t < 17; ++t)
    all[size_t(t)] = t;
  checkForward({1, 17, 3, 8}, all, 15);
}

/// Plain kernel forward then backward of sum(o * dout); dqkv poisoned.
Vec kernelBackwardPlain(const Problem &p, const Vec &qkv, const Vec &dout,
                        const int32_t *head_keep = nullptr) {
  Vec o, lse;
  kernelForward(p, qkv, noKeep(), o, lse);
  Vec dqkv = poisoned(p.qkvSize());
  attention_bwd(qkv.data(), o.data(), lse.data(), dout.data(), dqkv.data(), p.B,
                p.T, p.H, p.Dh, p.scale(), nullptr, head_keep, nullptr, 0);
  return dqkv;
}

TEST(Attention, BackwardPlainFiniteDifferences) {
  for (const Problem &p : {Problem{1, 5, 2, 4}, Problem{2, 17, 1, 8}}) {
    SCOPED_TRACE(describe(p));
    const Vec qkv = randomVec(p.qkvSize(), 21), r = randomVec(p.oSize(), 22);
    const Mask mask = fullMask(p.T);
    const DVec rd = toDouble(r);
    const DVec fd = numericGrad(
        [&](const DVec &x) {
          DVec o, lse;
          refForward(p, x, mask, o, lse);
          return dotD(o, rd);
        },
        toDouble(qkv));
    EXPECT_TRUE(gradClose(kernelBackwardPlain(p, qkv, r), fd, kTol));
  }
}

TEST(Attention, BackwardPlain) {
  for (const Problem &p : {Problem{2, 17, 3, 8}, Problem{1, 70, 1, 64},
                           Problem{2, 197, 3, 64}, Problem{1, 197, 1, 8}}) {
    SCOPED_TRACE(describe(p));
    const Vec qkv = randomVec(p.qkvSize(), 31), dout = randomVec(p.oSize(), 32);
    const DVec want =
        refBackward(p, toDouble(qkv), fullMask(p.T), toDouble(dout));
    forEachTeamSize(
        [&] { EXPECT_TRUE(matches(kernelBackwardPlain(p, qkv, dout), want)); });
  }
}

TEST(Attention, BackwardHeadKeep) {
  const Problem p{2, 17, 3, 8};
  const Vec qkv = randomVec(p.qkvSize(), 41), dout = randomVec(p.oSize(), 42);
  DVec full = refBackward(p, toDouble(qkv), fullMask(p.T), toDouble(dout));
  for (const std::vector<int32_t> &heads :
       {std::vector<int32_t>{0, 2, -1}, std::vector<int32_t>{1, -1, -1}}) {
    const auto kept = membership(heads, p.H);
    DVec want = full;
    for (size_t e = 0; e < want.size(); ++e)
      if (!kept[(e % size_t(p.width())) / size_t(p.Dh)]) // column's head
        want[e] = 0.0;
    EXPECT_TRUE(matches(kernelBackwardPlain(p, qkv, dout, heads.data()), want));
  }
}

/// rows keep[k] of x ([B, T, n]) into [B, K, n]; padding rows NaN, so a
/// kernel that reads them fails.
Vec gatherRows(const Vec &x, const std::vector<int32_t> &keep, int64_t B,
               int64_t T, int64_t n) {
  const int64_t K = int64_t(keep.size());
  Vec out(size_t(B * K * n), kNaN);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = 0; k < K; ++k)
      if (keep[k] >= 0)
        std::copy_n(&x[(b * T + keep[k]) * n], n, &out[(b * K + k) * n]);
  return out;
}
DVec gatherRows(const DVec &x, const std::vector<int32_t> &keep, int64_t B,
                int64_t T, int64_t n) {
  const int64_t K = int64_t(keep.size());
  DVec out(size_t(B * K * n), 0.0); // padding rows: zero gradient
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = 0; k < K; ++k)
      if (keep[k] >= 0)
        std::copy_n(&x[(b * T + keep[k]) * n], n, &out[(b * K + k) * n]);
  return out;
}
/// The inverse: [B, K, n] rows into zero [B, T, n] (padding rows dropped).
DVec scatterRows(const Vec &xk, const std::vector<int32_t> &keep, int64_t B,
                 int64_t T, int64_t n) {
  const int64_t K = int64_t(keep.size());
  DVec out(size_t(B * T * n), 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = 0; k < K; ++k)
      if (keep[k] >= 0)
        std::copy_n(&xk[(b * K + k) * n], n, &out[(b * T + keep[k]) * n]);
  return out;
}

/// Compact drop_qkv backward: forward with keep on the full problem, the
/// kept rows gathered into K-row tensors, the backward on those with
/// row_keep = keep; against the restricted attention's gradient on the full
/// problem, gathered.
void checkCompactBackward(const Problem &full, const std::vector<int32_t> &keep,
                          const std::vector<int32_t> &heads, uint32_t seed) {
  SCOPED_TRACE(describe(full) << " K=" << keep.size());
  const int64_t K = int64_t(keep.size()), W = full.width();
  const Problem compact{full.B, K, full.H, full.Dh};
  const Vec qkv = randomVec(full.qkvSize(), seed);
  Vec o, lse;
  kernelForward(full, qkv, keep, o, lse);
  const Vec qkvK = gatherRows(qkv, keep, full.B, full.T, 3 * W);
  const Vec oK = gatherRows(o, keep, full.B, full.T, W);
  const Vec lseK = gatherRows(lse, keep, full.B, full.T, full.H);
  Vec doutK = randomVec(compact.oSize(), seed + 1);
  for (size_t e = 0; e < doutK.size(); ++e)
    if (keep[(e / size_t(W)) % size_t(K)] < 0)
      doutK[e] = kNaN;
  Vec dqkvK = poisoned(compact.qkvSize());
  attention_bwd(qkvK.data(), oK.data(), lseK.data(), doutK.data(), dqkvK.data(),
                compact.B, K, compact.H, compact.Dh, compact.scale(),
                keep.data(), heads.empty() ? nullptr : heads.data(), nullptr, 0);

  DVec want =
      gatherRows(refBackward(full, toDouble(qkv), restrictedMask(full.T, keep),
                             scatterRows(doutK, keep, full.B, full.T, W)),
                 keep, full.B, full.T, 3 * W);
  if (!heads.empty()) {
    const auto kept = membership(heads, full.H);
    for (size_t e = 0; e < want.size(); ++e)
      if (!kept[(e % size_t(W)) / size_t(full.Dh)])
        want[e] = 0.0;
  }
  EXPECT_TRUE(matches(dqkvK, want));
}

TEST(Attention, BackwardCompactRowKeep) {
  checkCompactBackward({2, 17, 3, 8}, {0, 3, 4, 9, 16, -1, -1}, {}, 51);
  checkCompactBackward({1, 17, 1, 64}, keepList(17, 2, 3, 1), {}, 52);
  forEachTeamSize([] {
    checkCompactBackward({2, 197, 3, 64}, keepList(197, 1, 2, 3), {}, 53);
  });
  checkCompactBackward({1, 197, 3, 8}, keepList(197, 4, 5, 20), {}, 54);
  // With drop_head on top.
  checkCompactBackward({2, 17, 3, 8}, {0, 1, 5, 6, 12, -1}, {2, -1, -1}, 55);
}

/// drop_query backward: the plain forward, its kept query rows gathered;
/// against the gradient of "the kept queries attend every key".
void checkQueryBackward(const Problem &p, const std::vector<int32_t> &keep,
                        uint32_t seed) {
  SCOPED_TRACE(describe(p) << " K=" << keep.size());
  const int64_t K = int64_t(keep.size()), W = p.width();
  const Vec qkv = randomVec(p.qkvSize(), seed);
  Vec o, lse;
  kernelForward(p, qkv, noKeep(), o, lse);
  const Vec oK = gatherRows(o, keep, p.B, p.T, W);
  const Vec lseK = gatherRows(lse, keep, p.B, p.T, p.H);
  Vec doutK = randomVec(size_t(p.B * K * W), seed + 1);
  for (size_t e = 0; e < doutK.size(); ++e)
    if (keep[(e / size_t(W)) % size_t(K)] < 0)
      doutK[e] = kNaN;
  Vec dqkv = poisoned(p.qkvSize());
  attention_bwd_queries(qkv.data(), keep.data(), K, oK.data(), lseK.data(),
                        doutK.data(), dqkv.data(), p.B, p.T, p.H, p.Dh,
                        p.scale());
  const DVec want = refBackward(p, toDouble(qkv), keptQueriesMask(p.T, keep),
                                scatterRows(doutK, keep, p.B, p.T, W));
  EXPECT_TRUE(matches(dqkv, want));
}

TEST(Attention, BackwardQueries) {
  checkQueryBackward({2, 17, 3, 8}, {0, 3, 4, 9, 16, -1, -1}, 61);
  checkQueryBackward({1, 17, 1, 64}, keepList(17, 1, 4, 0), 62);
  forEachTeamSize([] {
    checkQueryBackward({2, 197, 3, 64}, keepList(197, 1, 2, 4), 63);
  });
  checkQueryBackward({1, 197, 1, 8}, keepList(197, 3, 7, 9), 64);
}

TEST(Attention, BitwiseDeterministicAcrossTeamSizes) {
  const Problem p{2, 197, 3, 64};
  const Vec qkv = randomVec(p.qkvSize(), 71), dout = randomVec(p.oSize(), 72);
  const std::vector<int32_t> keep = keepList(p.T, 1, 2, 3);
  Vec o1, lse1, dqkv1;
  bool first = true;
  forEachTeamSize([&] {
    Vec o, lse;
    kernelForward(p, qkv, keep, o, lse);
    const Vec dqkv = kernelBackwardPlain(p, qkv, dout);
    if (first) {
      o1 = o, lse1 = lse, dqkv1 = dqkv, first = false;
      return;
    }
    EXPECT_TRUE(o == o1 && lse == lse1 && dqkv == dqkv1);
  });
}

} // namespace
} // namespace sbp::cpu::test
