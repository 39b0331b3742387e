//===- AttentionReference.h - Double attention for the CUDA tests -*- C++ -*-===//
//
// A host reference of every attention mode that does not share the kernels'
// formulas: the softmax of each query is materialised in double under an
// explicit "query token i may attend key token j" rule, and the gradient of
// sum(o * dout) goes through the softmax Jacobian (ds_ij = P_ij (dO_i.v_j -
// sum_k P_ik dO_i.v_k)), never through lse or o. Plain C++ (no gtest, no
// CUDA), so a stand-alone checker can use it too.
//
//===----------------------------------------------------------------------===//
#ifndef SBP_TEST_CUDA_KERNELS_ATTENTION_REFERENCE_H
#define SBP_TEST_CUDA_KERNELS_ATTENTION_REFERENCE_H

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

namespace sbp::cuda::test::ref {

using DVec = std::vector<double>;
/// allowed(i, j): query token i attends key token j (every batch element
/// and head alike).
using Allowed = std::function<bool(int64_t, int64_t)>;

struct Dims {
  int64_t B, T, H, Dh;
  int64_t width() const { return H * Dh; }
  size_t qkvSize() const { return size_t(B * T * 3 * width()); }
  size_t oSize() const { return size_t(B * T * width()); }
  size_t lseSize() const { return size_t(B * T * H); }
  /// Offset of (part 0/1/2 = q/k/v, head h) of token t in qkv.
  int64_t qkvAt(int part, int64_t b, int64_t t, int64_t h) const {
    return (b * T + t) * 3 * width() + (part * H + h) * Dh;
  }
  int64_t oAt(int64_t b, int64_t t, int64_t h) const {
    return (b * T + t) * width() + h * Dh;
  }
};

/// membership[t]: t is an entry of keep (entries outside [0, T) ignored).
inline std::vector<char> membership(const std::vector<int32_t> &keep,
                                    int64_t T) {
  std::vector<char> in(size_t(T), 0);
  for (int32_t t : keep)
    if (t >= 0 && t < T)
      in[size_t(t)] = 1;
  return in;
}

/// Probabilities of query i of (b, h); false if it attends nothing.
template <class X>
bool probabilities(const Dims &d, const X *qkv, const Allowed &allowed,
                   double scale, int64_t b, int64_t h, int64_t i, DVec &prob,
                   double &lse) {
  prob.assign(size_t(d.T), 0.0);
  double m = -std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < d.T; ++j) {
    if (!allowed(i, j))
      continue;
    double s = 0.0;
    for (int64_t e = 0; e < d.Dh; ++e)
      s += double(qkv[d.qkvAt(0, b, i, h) + e]) *
           double(qkv[d.qkvAt(1, b, j, h) + e]);
    prob[size_t(j)] = scale * s;
    m = std::max(m, prob[size_t(j)]);
  }
  if (m == -std::numeric_limits<double>::infinity())
    return false;
  double sum = 0.0;
  for (int64_t j = 0; j < d.T; ++j)
    if (allowed(i, j))
      sum += (prob[size_t(j)] = std::exp(prob[size_t(j)] - m));
    else
      prob[size_t(j)] = 0.0;
  for (double &x : prob)
    x /= sum;
  lse = m + std::log(sum);
  return true;
}

/// o [B,T,H*Dh] and lse [B,T,H]; a query that attends nothing keeps 0.
template <class X>
void forward(const Dims &d, const X *qkv, const Allowed &allowed, double scale,
             DVec &o, DVec &lse) {
  o.assign(d.oSize(), 0.0);
  lse.assign(d.lseSize(), 0.0);
  DVec prob;
  for (int64_t b = 0; b < d.B; ++b)
    for (int64_t h = 0; h < d.H; ++h)
      for (int64_t i = 0; i < d.T; ++i) {
        double l;
        if (!probabilities(d, qkv, allowed, scale, b, h, i, prob, l))
          continue;
        lse[size_t((b * d.T + i) * d.H + h)] = l;
        double *oi = &o[size_t(d.oAt(b, i, h))];
        for (int64_t j = 0; j < d.T; ++j)
          for (int64_t e = 0; e < d.Dh; ++e)
            oi[e] += prob[size_t(j)] * double(qkv[d.qkvAt(2, b, j, h) + e]);
      }
}

/// Gradient of sum(o * dout) with respect to qkv, for the heads with
/// head_kept(h) (the others: zero). dout rows of queries that attend
/// nothing are not read.
template <class X, class G>
DVec backward(const Dims &d, const X *qkv, const Allowed &allowed,
              double scale, const G *dout,
              const std::function<bool(int64_t)> &head_kept = nullptr) {
  DVec dqkv(d.qkvSize(), 0.0), prob, dp(size_t(d.T));
  for (int64_t b = 0; b < d.B; ++b)
    for (int64_t h = 0; h < d.H; ++h) {
      if (head_kept && !head_kept(h))
        continue;
      for (int64_t i = 0; i < d.T; ++i) {
        double l;
        if (!probabilities(d, qkv, allowed, scale, b, h, i, prob, l))
          continue;
        const G *doi = &dout[d.oAt(b, i, h)];
        double mean = 0.0;
        for (int64_t j = 0; j < d.T; ++j) {
          dp[size_t(j)] = 0.0;
          if (!allowed(i, j))
            continue;
          for (int64_t e = 0; e < d.Dh; ++e)
            dp[size_t(j)] +=
                double(doi[e]) * double(qkv[d.qkvAt(2, b, j, h) + e]);
          mean += prob[size_t(j)] * dp[size_t(j)];
        }
        for (int64_t j = 0; j < d.T; ++j) {
          if (!allowed(i, j))
            continue;
          const double pj = prob[size_t(j)];
          const double ds = scale * pj * (dp[size_t(j)] - mean);
          for (int64_t e = 0; e < d.Dh; ++e) {
            dqkv[size_t(d.qkvAt(2, b, j, h) + e)] += pj * double(doi[e]);
            dqkv[size_t(d.qkvAt(0, b, i, h) + e)] +=
                ds * double(qkv[d.qkvAt(1, b, j, h) + e]);
            dqkv[size_t(d.qkvAt(1, b, j, h) + e)] +=
                ds * double(qkv[d.qkvAt(0, b, i, h) + e]);
          }
        }
      }
    }
  return dqkv;
}

/// The masks of the modes.
inline Allowed plainRule() {
  return [](int64_t, int64_t) { return true; };
}
/// drop_qkv forward: kept queries attend kept keys, the others attend all.
inline Allowed keepForwardRule(std::vector<char> in) {
  return [in](int64_t i, int64_t j) { return !in[size_t(i)] || in[size_t(j)]; };
}
/// Compact drop_qkv backward / row_keep: participating rows among themselves.
inline Allowed restrictedRule(std::vector<char> in) {
  return [in](int64_t i, int64_t j) { return in[size_t(i)] && in[size_t(j)]; };
}
/// drop_query: kept queries attend every key; other rows are no query.
inline Allowed keptQueriesRule(std::vector<char> in) {
  return [in](int64_t i, int64_t) { return bool(in[size_t(i)]); };
}

} // namespace sbp::cuda::test::ref

#endif // SBP_TEST_CUDA_KERNELS_ATTENTION_REFERENCE_H
