//===- ReductionTest.cu - Column sums: bias_grad, pos_grad, mean_tokens ---===//

#include "CudaTestSupport.h"

namespace sbp::cuda::test {
namespace {

using Reduction = CudaKernelTest;

// (rows, n): narrow and wide, vector and scalar widths, row splits.
const int64_t kShapes[][2] = {{1, 1},       {3, 10},      {2048, 64},
                              {1024, 128},  {7, 1001},    {100000, 3},
                              {50000, 192}, {256, 37824}, {0, 5}};

TEST_F(Reduction, BiasGrad) {
  for (const auto &s : kShapes)
    for (size_t off : {size_t(0), size_t(1)}) {
      const int64_t rows = s[0], n = s[1];
      SCOPED_TRACE(::testing::Message()
                   << "rows=" << rows << " n=" << n << " offset=" << off);
      const Vec dy = randomVec(size_t(rows * n), 1);
      Vec want(size_t(n), -1.0f);
      cpu::bias_grad(dy.data(), want.data(), rows, n);
      DFloat dDy(dy, off), dOut(Vec(size_t(n), 7.0f), off);
      bias_grad(ctx, dDy, dOut, rows, n);
      sync();
      EXPECT_TRUE(relClose(dOut.download(), want, 1e-4));
    }
}

TEST_F(Reduction, PosGrad) {
  const int64_t shapes[][3] = {
      {1, 1, 1}, {128, 16, 64}, {256, 197, 192}, {5, 7, 3}, {1000, 2, 2}};
  for (const auto &s : shapes) {
    const int64_t B = s[0], T = s[1], D = s[2];
    SCOPED_TRACE(::testing::Message() << "B=" << B << " T=" << T << " D=" << D);
    const Vec dy = randomVec(size_t(B * T * D), 2);
    Vec want(size_t(T * D));
    cpu::pos_grad(dy.data(), want.data(), B, T, D);
    DFloat dDy(dy), dOut(want.size());
    pos_grad(ctx, dDy, dOut, B, T, D);
    sync();
    EXPECT_TRUE(relClose(dOut.download(), want, 1e-4));
  }
}

TEST_F(Reduction, MeanTokens) {
  const int64_t shapes[][3] = {{1, 1, 1}, {128, 16, 64}, {256, 197, 192},
                               {5, 7, 3}, {2, 3136, 96}, {70000, 2, 4},
                               {3, 0, 8}};
  for (const auto &s : shapes)
    for (size_t off : {size_t(0), size_t(1)}) {
      const int64_t B = s[0], T = s[1], D = s[2];
      SCOPED_TRACE(::testing::Message() << "B=" << B << " T=" << T << " D=" << D
                                        << " offset=" << off);
      const Vec x = randomVec(size_t(B * T * D), 3);
      Vec want(size_t(B * D));
      cpu::mean_tokens(x.data(), want.data(), B, T, D);
      DFloat dX(x, off), dY(want.size(), off);
      mean_tokens(ctx, dX, dY, B, T, D);
      sync();
      EXPECT_TRUE(relClose(dY.download(), want, 1e-4));
    }
}

TEST_F(Reduction, LargeOffsetSumsKeepDigits) {
  // 10^5 rows of 1000 + noise: a float running sum would be off by ~1e-3
  // relative; the double accumulation is not.
  const int64_t rows = 100000, n = 8;
  Vec dy = randomVec(size_t(rows * n), 4, -1.0f, 1.0f);
  for (float &v : dy)
    v += 1000.0f;
  Vec want(static_cast<size_t>(n));
  cpu::bias_grad(dy.data(), want.data(), rows, n);
  DFloat dDy(dy), dOut(static_cast<size_t>(n));
  bias_grad(ctx, dDy, dOut, rows, n);
  sync();
  EXPECT_TRUE(relClose(dOut.download(), want, 1e-6));
}

TEST_F(Reduction, Deterministic) {
  const int64_t rows = 50000, n = 192;
  const Vec dy = randomVec(size_t(rows * n), 5);
  DFloat dDy(dy), a(static_cast<size_t>(n)), b(static_cast<size_t>(n));
  bias_grad(ctx, dDy, a, rows, n);
  bias_grad(ctx, dDy, b, rows, n);
  sync();
  EXPECT_TRUE(sameBits(a.download(), b.download()));
}

/// A scratch too small for any row split: one pass, same sums.
class ReductionTinyScratch : public CudaKernelTest {
  void configure(Context &c) override { c.scratch_bytes = 1024; }
};

TEST_F(ReductionTinyScratch, BiasGradWithoutSplits) {
  const int64_t rows = 20000, n = 64;
  const Vec dy = randomVec(size_t(rows * n), 6);
  Vec want(static_cast<size_t>(n));
  cpu::bias_grad(dy.data(), want.data(), rows, n);
  DFloat dDy(dy), dOut(static_cast<size_t>(n));
  bias_grad(ctx, dDy, dOut, rows, n);
  sync();
  EXPECT_TRUE(relClose(dOut.download(), want, 1e-4));
}

} // namespace
} // namespace sbp::cuda::test
