//===- AttentionTest.cpp - attention_fwd / attention_bwd ------------------===//

#include "TestSupport.h"
#include "sbp/cpu_kernels.h"

namespace sbp::cpu::test {
namespace {

struct Shape {
  int64_t B, H, Tq, Tk, Dh;
  float scale;
};

/// Naive double attention over [B,T,H,Dh]; lse [B,H,Tq].
void attentionRef(const Shape &s, const DVec &q, const DVec &k, const DVec &v,
                  DVec &o, DVec &lse) {
  const int64_t ld = s.H * s.Dh;
  o.assign(s.B * s.Tq * ld, 0.0);
  lse.assign(s.B * s.H * s.Tq, 0.0);
  DVec p(s.Tk);
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t h = 0; h < s.H; ++h)
      for (int64_t i = 0; i < s.Tq; ++i) {
        const double *qi = &q[(b * s.Tq + i) * ld + h * s.Dh];
        double m = -1e300;
        for (int64_t j = 0; j < s.Tk; ++j) {
          const double *kj = &k[(b * s.Tk + j) * ld + h * s.Dh];
          double dot = 0.0;
          for (int64_t d = 0; d < s.Dh; ++d)
            dot += qi[d] * kj[d];
          p[j] = s.scale * dot;
          m = std::max(m, p[j]);
        }
        double sum = 0.0;
        for (int64_t j = 0; j < s.Tk; ++j)
          sum += (p[j] = std::exp(p[j] - m));
        lse[(b * s.H + h) * s.Tq + i] = m + std::log(sum);
        double *oi = &o[(b * s.Tq + i) * ld + h * s.Dh];
        for (int64_t j = 0; j < s.Tk; ++j)
          for (int64_t d = 0; d < s.Dh; ++d)
            oi[d] += p[j] / sum * v[(b * s.Tk + j) * ld + h * s.Dh + d];
      }
}

struct AttnData {
  Shape s;
  Vec q, k, v, dout;
  AttnData(const Shape &s, uint32_t seed)
      : s(s), q(randomVec(s.B * s.Tq * s.H * s.Dh, seed)),
        k(randomVec(s.B * s.Tk * s.H * s.Dh, seed + 1)),
        v(randomVec(s.B * s.Tk * s.H * s.Dh, seed + 2)),
        dout(randomVec(s.B * s.Tq * s.H * s.Dh, seed + 3)) {}
};

void checkForward(const AttnData &d) {
  DVec ro, rlse;
  attentionRef(d.s, toDouble(d.q), toDouble(d.k), toDouble(d.v), ro, rlse);
  Vec o(ro.size(), 9.0f), lse(rlse.size(), 9.0f);
  attention_fwd(d.q.data(), d.k.data(), d.v.data(), o.data(), lse.data(), d.s.B,
                d.s.H, d.s.Tq, d.s.Tk, d.s.Dh, d.s.scale);
  EXPECT_TRUE(allClose(o, ro, 1e-4, 1e-5)) << "o";
  EXPECT_TRUE(allClose(lse, rlse, 1e-5, 1e-5)) << "lse";
  // lse is optional.
  Vec o2(ro.size());
  attention_fwd(d.q.data(), d.k.data(), d.v.data(), o2.data(), nullptr, d.s.B,
                d.s.H, d.s.Tq, d.s.Tk, d.s.Dh, d.s.scale);
  EXPECT_EQ(o, o2);
}

TEST(Attention, ForwardSmallAndMultiTile) {
  checkForward(AttnData({2, 3, 7, 5, 4, 0.5f}, 1));
  // Several query tiles (16) and key tiles (64), Tq != Tk, large scores that
  // exercise the online rescaling.
  checkForward(AttnData({2, 2, 37, 150, 8, 1.5f}, 2));
  // ViT-like head size, parallel path, under several team sizes.
  AttnData big({2, 3, 65, 65, 64, 0.125f}, 3);
  forEachTeamSize([&] { checkForward(big); });
}

/// Runs the kernels' backward; returns dq, dk, dv.
void kernelBackward(const AttnData &d, Vec &dq, Vec &dk, Vec &dv) {
  const Shape &s = d.s;
  Vec o(d.q.size()), lse(s.B * s.H * s.Tq);
  attention_fwd(d.q.data(), d.k.data(), d.v.data(), o.data(), lse.data(), s.B,
                s.H, s.Tq, s.Tk, s.Dh, s.scale);
  dq.assign(d.q.size(), 9.0f);
  dk.assign(d.k.size(), 9.0f);
  dv.assign(d.v.size(), 9.0f);
  attention_bwd(d.q.data(), d.k.data(), d.v.data(), o.data(), lse.data(),
                d.dout.data(), dq.data(), dk.data(), dv.data(), s.B, s.H, s.Tq,
                s.Tk, s.Dh, s.scale);
}

TEST(Attention, BackwardFiniteDifferences) {
  const AttnData d({1, 2, 5, 7, 3, 0.7f}, 10);
  Vec dq, dk, dv;
  kernelBackward(d, dq, dk, dv);
  const DVec w = toDouble(d.dout);
  DVec q = toDouble(d.q), k = toDouble(d.k), v = toDouble(d.v);
  auto loss = [&](const DVec &qq, const DVec &kk, const DVec &vv) {
    DVec o, lse;
    attentionRef(d.s, qq, kk, vv, o, lse);
    return dotD(w, o);
  };
  EXPECT_TRUE(gradClose(
      dq, numericGrad([&](const DVec &p) { return loss(p, k, v); }, q)))
      << "dq";
  EXPECT_TRUE(gradClose(
      dk, numericGrad([&](const DVec &p) { return loss(q, p, v); }, k)))
      << "dk";
  EXPECT_TRUE(gradClose(
      dv, numericGrad([&](const DVec &p) { return loss(q, k, p); }, v)))
      << "dv";
}

TEST(Attention, BackwardMultiTileParallel) {
  // Larger: finite differences on a sample of coordinates of each input.
  const AttnData d({2, 3, 37, 70, 16, 0.25f}, 20);
  Vec dq, dk, dv;
  forEachTeamSize([&] { kernelBackward(d, dq, dk, dv); });
  const DVec w = toDouble(d.dout);
  DVec in[3] = {toDouble(d.q), toDouble(d.k), toDouble(d.v)};
  const Vec *grads[3] = {&dq, &dk, &dv};
  std::mt19937 gen(7);
  for (int which = 0; which < 3; ++which) {
    SCOPED_TRACE(::testing::Message() << "input "
                                      << "qkv"[which]);
    Vec got;
    DVec want;
    for (int sample = 0; sample < 12; ++sample) {
      const size_t i = gen() % in[which].size();
      const double saved = in[which][i], h = 1e-5;
      DVec o, lse;
      in[which][i] = saved + h;
      attentionRef(d.s, in[0], in[1], in[2], o, lse);
      const double up = dotD(w, o);
      in[which][i] = saved - h;
      attentionRef(d.s, in[0], in[1], in[2], o, lse);
      const double down = dotD(w, o);
      in[which][i] = saved;
      got.push_back((*grads[which])[i]);
      want.push_back((up - down) / (2 * h));
    }
    EXPECT_TRUE(gradClose(got, want));
  }
}

} // namespace
} // namespace sbp::cpu::test
