//===- ConvTest.cpp - ConvNeXt kernels against independent references -----===//
//
// The depth-wise conv is checked against a direct 2-D loop over an NCHW copy
// of the image (PyTorch's Conv2d definition with groups = C), its gradients
// against central differences of that reference; space-to-depth against the
// Conv2d weight flatten order written out per element; layer scale's
// gradients against central differences. The `_rows` gradients (dy as its
// SBP kept rows) against the dense ones on the scattered dy.
//
//===----------------------------------------------------------------------===//

#include "TestSupport.h"

#include <algorithm>
#include "sbp/cpu_kernels.h"

using namespace sbp::cpu;
using namespace sbp::cpu::test;

namespace {

struct Dims {
  int64_t B, H, W, C, K;
  size_t numel() const { return size_t(B * H * W * C); }
};

/// y = conv2d(x, w, b, padding K/2, groups C) in double, x given channels-last
/// [B, H*W, C] and converted to NCHW here; the result back in channels-last.
DVec referenceDwconv(const Dims &d, const DVec &xTok, const DVec &w, const DVec &bias) {
  const int64_t p = d.K / 2;
  DVec nchw(d.numel()), y(d.numel());
  for (int64_t b = 0; b < d.B; ++b)
    for (int64_t c = 0; c < d.C; ++c)
      for (int64_t h = 0; h < d.H; ++h)
        for (int64_t x = 0; x < d.W; ++x)
          nchw[((b * d.C + c) * d.H + h) * d.W + x] = xTok[((b * d.H + h) * d.W + x) * d.C + c];
  for (int64_t b = 0; b < d.B; ++b)
    for (int64_t c = 0; c < d.C; ++c)
      for (int64_t oh = 0; oh < d.H; ++oh)
        for (int64_t ow = 0; ow < d.W; ++ow) {
          double s = bias[size_t(c)];
          for (int64_t i = 0; i < d.K; ++i)
            for (int64_t j = 0; j < d.K; ++j) {
              int64_t ih = oh - p + i, iw = ow - p + j;
              if (ih >= 0 && ih < d.H && iw >= 0 && iw < d.W)
                s += nchw[((b * d.C + c) * d.H + ih) * d.W + iw] * w[size_t((c * d.K + i) * d.K + j)];
            }
          y[((b * d.H + oh) * d.W + ow) * d.C + c] = s;
        }
  return y;
}

class DwConvTest : public ::testing::TestWithParam<Dims> {};

TEST_P(DwConvTest, ForwardMatchesDirectNchwLoop) {
  Dims d = GetParam();
  Vec x = randomVec(d.numel(), 1), w = randomVec(size_t(d.C * d.K * d.K), 2), b = randomVec(size_t(d.C), 3);
  DVec ref = referenceDwconv(d, toDouble(x), toDouble(w), toDouble(b));
  forEachTeamSize([&] {
    Vec y(d.numel(), NAN);
    dwconv(x.data(), w.data(), b.data(), y.data(), d.B, d.H, d.W, d.C, d.K);
    EXPECT_TRUE(allClose(y, ref, 1e-5, 1e-5));
  });
}

TEST_P(DwConvTest, GradientsMatchFiniteDifferences) {
  Dims d = GetParam();
  if (d.numel() > 2000)
    GTEST_SKIP() << "finite differences cost O(numel^2): small shapes only";
  Vec x = randomVec(d.numel(), 4), w = randomVec(size_t(d.C * d.K * d.K), 5), b = randomVec(size_t(d.C), 6);
  Vec r = randomVec(d.numel(), 7); // L = sum(y * r), so dy = r
  DVec xd = toDouble(x), wd = toDouble(w), bd = toDouble(b), rd = toDouble(r);
  DVec gx = numericGrad([&](const DVec &v) { return dotD(referenceDwconv(d, v, wd, bd), rd); }, xd);
  DVec gw = numericGrad([&](const DVec &v) { return dotD(referenceDwconv(d, xd, v, bd), rd); }, wd);
  DVec gb = numericGrad([&](const DVec &v) { return dotD(referenceDwconv(d, xd, wd, v), rd); }, bd);
  forEachTeamSize([&] {
    Vec dx(d.numel(), NAN), dw(w.size(), NAN), db(b.size(), NAN);
    dwconv_grad_input(r.data(), w.data(), dx.data(), d.B, d.H, d.W, d.C, d.K);
    dwconv_grad_weight(r.data(), x.data(), dw.data(), db.data(), d.B, d.H, d.W, d.C, d.K);
    EXPECT_TRUE(gradClose(dx, gx, 1e-5));
    EXPECT_TRUE(gradClose(dw, gw, 1e-5));
    EXPECT_TRUE(gradClose(db, gb, 1e-5));
  });
}

/// The SBP form of a gradient: dy is zero except at the kept positions idx,
/// whose rows dyk holds. Returns the full dy (a repeated index: its last row).
Vec scatterKept(const Dims &d, const Vec &dyk, const std::vector<int32_t> &idx) {
  const int64_t T = d.H * d.W, K = int64_t(idx.size());
  Vec dy(d.numel(), 0.0f);
  for (int64_t b = 0; b < d.B; ++b)
    for (int64_t k = 0; k < K; ++k)
      if (idx[size_t(k)] >= 0 && idx[size_t(k)] < T)
        std::copy_n(dyk.begin() + (b * K + k) * d.C, d.C, dy.begin() + (b * T + idx[size_t(k)]) * d.C);
  return dy;
}

TEST_P(DwConvTest, KeptRowsGiveTheGradientsOfTheScatteredDy) {
  Dims d = GetParam();
  const int64_t T = d.H * d.W;
  // Every other position, a padding entry, and (when there is room) a
  // repeated index whose later row wins.
  std::vector<int32_t> idx;
  for (int32_t t = 1; t < T; t += 2)
    idx.push_back(t);
  idx.push_back(-1);
  if (T > 2)
    idx.push_back(1);
  const int64_t kept = int64_t(idx.size());
  Vec x = randomVec(d.numel(), 8), w = randomVec(size_t(d.C * d.K * d.K), 9);
  Vec dyk = randomVec(size_t(d.B * kept * d.C), 10);
  Vec dy = scatterKept(d, dyk, idx);
  forEachTeamSize([&] {
    Vec dx(d.numel(), NAN), dw(w.size(), NAN), db(size_t(d.C), NAN);
    dwconv_grad_input(dy.data(), w.data(), dx.data(), d.B, d.H, d.W, d.C, d.K);
    dwconv_grad_weight(dy.data(), x.data(), dw.data(), db.data(), d.B, d.H, d.W, d.C, d.K);
    Vec dxk(d.numel(), NAN), dwk(w.size(), NAN), dbk(size_t(d.C), NAN);
    dwconv_grad_input_rows(dyk.data(), idx.data(), kept, w.data(), dxk.data(), d.B, d.H, d.W, d.C, d.K);
    dwconv_grad_weight_rows(dyk.data(), idx.data(), kept, x.data(), dwk.data(), dbk.data(), d.B, d.H, d.W, d.C,
                            d.K);
    // Skipping a zero row adds nothing: the same sums, the same bits.
    EXPECT_EQ(dxk, dx);
    EXPECT_EQ(dwk, dw);
    EXPECT_EQ(dbk, db);
  });
  // No kept row: zero gradients.
  Vec dx(d.numel(), NAN), dw(w.size(), NAN), db(size_t(d.C), NAN);
  dwconv_grad_input_rows(dyk.data(), idx.data(), 0, w.data(), dx.data(), d.B, d.H, d.W, d.C, d.K);
  dwconv_grad_weight_rows(dyk.data(), idx.data(), 0, x.data(), dw.data(), db.data(), d.B, d.H, d.W, d.C, d.K);
  EXPECT_EQ(dx, Vec(d.numel(), 0.0f));
  EXPECT_EQ(dw, Vec(w.size(), 0.0f));
  EXPECT_EQ(db, Vec(size_t(d.C), 0.0f));
}

// Grids smaller than the kernel (every tap clipped), non-square grids,
// channel counts that are not a multiple of the 16-channel chunk, K = 3, 7.
INSTANTIATE_TEST_SUITE_P(Shapes, DwConvTest,
                         ::testing::Values(Dims{2, 5, 4, 3, 3}, Dims{1, 3, 3, 5, 7}, Dims{2, 8, 6, 18, 7},
                                           Dims{3, 9, 9, 33, 7}));

TEST(SpaceToDepthTest, ConvWeightFlattenOrderAndInverse) {
  const int64_t B = 2, H = 4, W = 6, C = 3, s = 2, Ho = H / s, Wo = W / s;
  Vec x = randomVec(size_t(B * H * W * C), 8);
  forEachTeamSize([&] {
    Vec y(x.size(), NAN), back(x.size(), NAN);
    space_to_depth(x.data(), y.data(), B, H, W, C, s);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t i = 0; i < Ho; ++i)
        for (int64_t j = 0; j < Wo; ++j)
          for (int64_t c = 0; c < C; ++c)
            for (int64_t dy = 0; dy < s; ++dy)
              for (int64_t dx = 0; dx < s; ++dx)
                ASSERT_EQ(y[size_t(((b * Ho + i) * Wo + j) * C * 4 + c * 4 + dy * 2 + dx)],
                          x[size_t(((b * H + 2 * i + dy) * W + 2 * j + dx) * C + c)]);
    space_to_depth_grad(y.data(), back.data(), B, H, W, C, s);
    EXPECT_EQ(back, x); // a permutation: its gradient is the inverse one
  });
}

TEST(SpaceToDepthTest, KeptRowsGiveTheGradientOfTheScatteredDy) {
  // 3 x 2 output tokens of 3 * 4 features; tokens 4, 1 kept (unordered), a
  // padding entry, token 4 again (its later row wins).
  const int64_t B = 2, H = 6, W = 4, C = 3, s = 2, T = 6, D = C * s * s;
  const std::vector<int32_t> idx = {4, 1, -1, 4};
  const int64_t kept = int64_t(idx.size());
  Vec dyk = randomVec(size_t(B * kept * D), 11), dy(size_t(B * T * D), 0.0f);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = 0; k < kept; ++k)
      if (idx[size_t(k)] >= 0)
        std::copy_n(dyk.begin() + (b * kept + k) * D, D, dy.begin() + (b * T + idx[size_t(k)]) * D);
  forEachTeamSize([&] {
    Vec want(size_t(B * H * W * C), NAN), got(want.size(), NAN);
    space_to_depth_grad(dy.data(), want.data(), B, H, W, C, s);
    space_to_depth_grad_rows(dyk.data(), idx.data(), kept, got.data(), B, H, W, C, s);
    EXPECT_EQ(got, want);
  });
}

TEST(LayerScaleTest, ForwardAndGradients) {
  const int64_t rows = 37, n = 300; // more columns than one 256-column chunk
  Vec x = randomVec(size_t(rows * n), 9), g = randomVec(size_t(n), 10), r = randomVec(size_t(rows * n), 11);
  auto ref = [&](const DVec &xv, const DVec &gv) {
    DVec y(xv.size());
    for (size_t i = 0; i < y.size(); ++i)
      y[i] = xv[i] * gv[i % size_t(n)];
    return y;
  };
  DVec xd = toDouble(x), gd = toDouble(g), rd = toDouble(r);
  DVec gx = numericGrad([&](const DVec &v) { return dotD(ref(v, gd), rd); }, xd);
  DVec gg = numericGrad([&](const DVec &v) { return dotD(ref(xd, v), rd); }, gd);
  forEachTeamSize([&] {
    Vec y(x.size(), NAN), dx(x.size(), NAN), dg(g.size(), NAN);
    layer_scale(x.data(), g.data(), y.data(), rows, n);
    EXPECT_TRUE(allClose(y, ref(xd, gd), 1e-6, 0));
    layer_scale_grad(r.data(), x.data(), g.data(), dx.data(), dg.data(), rows, n);
    EXPECT_TRUE(gradClose(dx, gx, 1e-6));
    EXPECT_TRUE(gradClose(dg, gg, 1e-5));
  });
}

// drop_path: sample b scaled by `scale` when listed in keep (ascending, -1
// padded), zeroed otherwise; the same call in place; lists keeping none or all.
TEST(DropPathTest, ScalesKeptSamplesAndZeroesTheOthers) {
  const int64_t B = 5, n = 3 * 7 * 4; // a [5, 21, 4] tensor: 84 elements per sample
  const float scale = 1.0f / 0.7f;
  Vec x = randomVec(size_t(B * n), 12);
  for (const std::vector<int32_t> &keep :
       {std::vector<int32_t>{0, 2, 3, -1, -1}, {4, -1, -1, -1, -1}, {-1, -1, -1, -1, -1}, {0, 1, 2, 3, 4}}) {
    DVec want(x.size());
    for (int64_t b = 0; b < B; ++b) {
      bool kept = std::find(keep.begin(), keep.end(), int32_t(b)) != keep.end();
      for (int64_t j = 0; j < n; ++j)
        want[size_t(b * n + j)] = kept ? double(x[size_t(b * n + j)] * scale) : 0.0;
    }
    forEachTeamSize([&] {
      Vec y(x.size(), NAN), inPlace = x;
      drop_path(x.data(), keep.data(), y.data(), B, B, n, scale);
      EXPECT_TRUE(allClose(y, want, 0.0, 0.0)) << "keep " << keep[0] << " " << keep[1];
      drop_path(inPlace.data(), keep.data(), inPlace.data(), B, B, n, scale);
      EXPECT_TRUE(allClose(inPlace, want, 0.0, 0.0)) << "in place";
    });
  }
}

} // namespace
