//===- RowOpsTest.cpp - patchify and the SBP row gather/scatter -----------===//

#include "TestSupport.h"
#include "sbp/cpu_kernels.h"

#include <set>

namespace sbp::cpu::test {
namespace {

TEST(Patchify, LayoutAndConvEquivalence) {
  const int64_t B = 2, C = 3, H = 10, W = 15, p = 5, D = 4;
  const int64_t gh = H / p, gw = W / p, T = gh * gw, F = C * p * p;
  Vec img = randomVec(B * C * H * W, 1), tokens(B * T * F, -7.0f);
  patchify(img.data(), tokens.data(), B, C, H, W, p);
  // Direct index check.
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      for (int64_t f = 0; f < F; ++f) {
        const int64_t i = t / gw, j = t % gw;
        const int64_t c = f / (p * p), py = (f / p) % p, px = f % p;
        ASSERT_EQ(tokens[(b * T + t) * F + f],
                  img[((b * C + c) * H + i * p + py) * W + j * p + px])
            << "b=" << b << " t=" << t << " f=" << f;
      }
  // tokens @ weight.reshape(D, -1)^T == Conv2d(weight, stride p) flattened
  // over the patch grid: the feature order matches PyTorch's weight layout.
  Vec weight = randomVec(D * F, 2); // [D, C, p, p]
  Vec out(B * T * D);
  gemm(false, true, B * T, D, F, 1.0f, tokens.data(), F, weight.data(), F, 0.0f,
       out.data(), D);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t d = 0; d < D; ++d)
      for (int64_t i = 0; i < gh; ++i)
        for (int64_t j = 0; j < gw; ++j) {
          double conv = 0.0;
          for (int64_t c = 0; c < C; ++c)
            for (int64_t py = 0; py < p; ++py)
              for (int64_t px = 0; px < p; ++px)
                conv += double(weight[((d * C + c) * p + py) * p + px]) *
                        img[((b * C + c) * H + i * p + py) * W + j * p + px];
          ASSERT_NEAR(out[(b * T + i * gw + j) * D + d], conv, 1e-4);
        }
}

TEST(Patchify, ParallelSize) {
  const int64_t B = 4, C = 3, H = 64, W = 48, p = 16;
  const int64_t gw = W / p, T = (H / p) * gw, F = C * p * p;
  Vec img = randomVec(B * C * H * W, 3), tokens(B * T * F);
  forEachTeamSize([&] {
    std::fill(tokens.begin(), tokens.end(), -7.0f);
    patchify(img.data(), tokens.data(), B, C, H, W, p);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t)
        for (int64_t f = 0; f < F; ++f) {
          const int64_t c = f / (p * p), py = (f / p) % p, px = f % p;
          ASSERT_EQ(tokens[(b * T + t) * F + f],
                    img[((b * C + c) * H + (t / gw) * p + py) * W +
                        (t % gw) * p + px]);
        }
  });
}

/// Double references of the four row kernels.
struct RowRef {
  int64_t B, T, K, D;
  std::vector<int32_t> idx;
  bool valid(int64_t k) const { return idx[k] >= 0 && idx[k] < T; }
  DVec gather(const Vec &x) const {
    DVec out(B * K * D, 0.0);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t k = 0; k < K; ++k)
        if (valid(k))
          for (int64_t d = 0; d < D; ++d)
            out[(b * K + k) * D + d] = x[(b * T + idx[k]) * D + d];
    return out;
  }
  DVec scatterAcc(const Vec &xk, DVec out) const {
    for (int64_t b = 0; b < B; ++b)
      for (int64_t k = 0; k < K; ++k)
        if (valid(k))
          for (int64_t d = 0; d < D; ++d)
            out[(b * T + idx[k]) * D + d] += xk[(b * K + k) * D + d];
    return out;
  }
  DVec scatter(const Vec &xk) const {
    DVec out(B * T * D, 0.0);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t k = 0; k < K; ++k)
        if (valid(k))
          for (int64_t d = 0; d < D; ++d)
            out[(b * T + idx[k]) * D + d] = xk[(b * K + k) * D + d];
    return out;
  }
  DVec mask(const Vec &x) const {
    std::set<int64_t> keep;
    for (int64_t k = 0; k < K; ++k)
      if (valid(k))
        keep.insert(idx[k]);
    DVec out(B * T * D, 0.0);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t t = 0; t < T; ++t)
        if (keep.count(t))
          for (int64_t d = 0; d < D; ++d)
            out[(b * T + t) * D + d] = x[(b * T + t) * D + d];
    return out;
  }
};

void checkRowKernels(const RowRef &ref, uint32_t seed) {
  const int64_t B = ref.B, T = ref.T, K = ref.K, D = ref.D;
  const int32_t *idx = ref.idx.data();
  Vec x = randomVec(B * T * D, seed), xk = randomVec(B * K * D, seed + 1);
  Vec base = randomVec(B * T * D, seed + 2);
  forEachTeamSize([&] {
    Vec gathered(B * K * D, 9.0f);
    gather_rows(x.data(), idx, gathered.data(), B, T, K, D);
    EXPECT_TRUE(allClose(gathered, ref.gather(x), 0.0, 0.0)) << "gather";

    Vec acc = base;
    scatter_rows_acc(xk.data(), idx, acc.data(), B, T, K, D);
    EXPECT_TRUE(allClose(acc, ref.scatterAcc(xk, toDouble(base)), 1e-7, 0.0))
        << "scatter_rows_acc";
    Vec sum(B * T * D, 9.0f);
    scatter_add_rows(base.data(), xk.data(), idx, sum.data(), B, T, K, D);
    EXPECT_TRUE(allClose(sum, ref.scatterAcc(xk, toDouble(base)), 1e-7, 0.0))
        << "scatter_add_rows";

    Vec scattered(B * T * D, 9.0f);
    scatter_rows(xk.data(), idx, scattered.data(), B, T, K, D);
    EXPECT_TRUE(allClose(scattered, ref.scatter(xk), 0.0, 0.0))
        << "scatter_rows";

    Vec masked(B * T * D, 9.0f);
    mask_rows(x.data(), idx, masked.data(), B, T, K, D);
    const DVec wantMask = ref.mask(x);
    EXPECT_TRUE(allClose(masked, wantMask, 0.0, 0.0)) << "mask_rows";
    Vec inPlace = x;
    mask_rows(inPlace.data(), idx, inPlace.data(), B, T, K, D);
    EXPECT_TRUE(allClose(inPlace, wantMask, 0.0, 0.0)) << "mask_rows in place";
  });
  // gather and scatter_acc are adjoint: <gather(x), y> == <x, scatter(y)>,
  // i.e. scatter_rows_acc is gather_rows' gradient.
  Vec g(B * K * D), s(B * T * D, 0.0f);
  gather_rows(x.data(), idx, g.data(), B, T, K, D);
  scatter_rows_acc(xk.data(), idx, s.data(), B, T, K, D);
  EXPECT_NEAR(dotD(toDouble(g), toDouble(xk)), dotD(toDouble(x), toDouble(s)),
              1e-6 * double(B * T * D));
}

TEST(RowOps, PaddedAscendingIndices) {
  // T = 7, K = 5 with -1 padding at the end (the sampler's shape).
  checkRowKernels({3, 7, 5, 19, {0, 2, 3, 6, -1}}, 10);
  checkRowKernels({3, 7, 5, 19, {1, 4, -1, -1, -1}}, 20);
  checkRowKernels({2, 7, 4, 3, {-1, -1, -1, -1}}, 30); // nothing kept
}

TEST(RowOps, ParallelSizes) {
  // ViT-Tiny-like: 197 tokens, keep half plus the class token, D = 192.
  std::vector<int32_t> idx;
  for (int32_t t = 0; t < 197; t += 2)
    idx.push_back(t);
  idx.push_back(-1);
  idx.push_back(-1);
  checkRowKernels({8, 197, int64_t(idx.size()), 192, idx}, 40);
}

TEST(RowOps, OffShapeIndicesStayCorrect) {
  // Unsorted, repeated, out-of-range and interleaved padding: the slow paths.
  // Repeats accumulate in scatter_rows_acc; in scatter_rows the last wins.
  checkRowKernels({3, 7, 6, 5, {5, -1, 2, 5, 9, 0}}, 50);
  checkRowKernels({2, 300, 6, 64, {299, -1, 0, 7, -1, 150}}, 60);
}

} // namespace
} // namespace sbp::cpu::test
