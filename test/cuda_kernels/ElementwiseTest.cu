//===- ElementwiseTest.cu - Pointwise and broadcast kernels vs the CPU ----===//

#include "CudaTestSupport.h"

namespace sbp::cuda::test {
namespace {

// Sizes around the float4 width and the grid-stride wrap; offset 1 makes the
// pointers 4-byte aligned only (the scalar path).
const int64_t kSizes[] = {1, 3, 4, 5, 1023, 4097, (int64_t(1) << 20) + 3};
const size_t kOffsets[] = {0, 1};

using Elementwise = CudaKernelTest;

TEST_F(Elementwise, AddAndAddAcc) {
  for (int64_t n : kSizes)
    for (size_t off : kOffsets) {
      SCOPED_TRACE(::testing::Message() << "n=" << n << " offset=" << off);
      const Vec a = randomVec(size_t(n), 1), b = randomVec(size_t(n), 2);
      Vec want(static_cast<size_t>(n)), acc = a;
      cpu::add(a.data(), b.data(), want.data(), n);
      cpu::add_acc(acc.data(), b.data(), n);
      DFloat da(a, off), db(b, off), dout(size_t(n), off), dacc(a, off);
      add(ctx, da, db, dout, n);
      add_acc(ctx, dacc, db, n);
      add(ctx, da, db, da, n); // in place
      sync();
      EXPECT_TRUE(sameBits(dout.download(), want));
      EXPECT_TRUE(sameBits(dacc.download(), acc));
      EXPECT_TRUE(sameBits(da.download(), want));
    }
}

TEST_F(Elementwise, ReluAndGrad) {
  for (int64_t n : kSizes)
    for (size_t off : kOffsets) {
      SCOPED_TRACE(::testing::Message() << "n=" << n << " offset=" << off);
      Vec x = randomVec(size_t(n), 3), dy = randomVec(size_t(n), 4);
      x[0] = 0.0f; // relu'(0) = 0
      Vec y(static_cast<size_t>(n)), dx(static_cast<size_t>(n));
      cpu::relu(x.data(), y.data(), n);
      cpu::relu_grad(x.data(), dy.data(), dx.data(), n);
      DFloat dX(x, off), dDy(dy, off), dY(size_t(n), off), dDx(size_t(n), off);
      relu(ctx, dX, dY, n);
      relu_grad(ctx, dX, dDy, dDx, n);
      sync();
      EXPECT_TRUE(sameBits(dY.download(), y));
      EXPECT_TRUE(sameBits(dDx.download(), dx));
    }
}

TEST_F(Elementwise, GeluAndGrad) {
  for (int64_t n : kSizes)
    for (size_t off : kOffsets) {
      SCOPED_TRACE(::testing::Message() << "n=" << n << " offset=" << off);
      const Vec x = randomVec(size_t(n), 5, -6.0f, 6.0f);
      const Vec dy = randomVec(size_t(n), 6);
      Vec y(static_cast<size_t>(n)), dx(static_cast<size_t>(n));
      cpu::gelu(x.data(), y.data(), n);
      cpu::gelu_grad(x.data(), dy.data(), dx.data(), n);
      DFloat dX(x, off), dDy(dy, off), dY(size_t(n), off), dDx(size_t(n), off);
      gelu(ctx, dX, dY, n);
      gelu_grad(ctx, dX, dDy, dDx, n);
      sync();
      EXPECT_TRUE(relClose(dY.download(), y, 1e-5));
      EXPECT_TRUE(relClose(dDx.download(), dx, 1e-5));
    }
}

TEST_F(Elementwise, GeluTailKeepsRelativeAccuracy) {
  // Far negative inputs, where 1 + erf(x / sqrt 2) would cancel: compare
  // each value with the double-precision exact GELU.
  Vec x;
  for (float v = -13.0f; v <= 13.0f; v += 0.125f)
    x.push_back(v);
  const int64_t n = int64_t(x.size());
  Vec want(x.size());
  for (size_t i = 0; i < x.size(); ++i)
    want[i] =
        float(double(x[i]) * 0.5 * std::erfc(-double(x[i]) / std::sqrt(2.0)));
  DFloat dX(x), dY(x.size());
  gelu(ctx, dX, dY, n);
  sync();
  const Vec got = dY.download();
  for (size_t i = 0; i < x.size(); ++i)
    EXPECT_NEAR(got[i], want[i], 2e-5 * std::fabs(want[i]) + 1e-37)
        << "x=" << x[i];
}

TEST_F(Elementwise, FillAndCopy) {
  for (int64_t n : kSizes)
    for (size_t off : kOffsets) {
      SCOPED_TRACE(::testing::Message() << "n=" << n << " offset=" << off);
      const Vec x = randomVec(size_t(n), 7);
      DFloat dX(x, off), dY(size_t(n), off), dF(size_t(n), off);
      copy(ctx, dX, dY, n);
      copy(ctx, dX, dX, n); // no-op
      fill(ctx, dF, -1.5f, n);
      sync();
      EXPECT_TRUE(sameBits(dY.download(), x));
      EXPECT_TRUE(sameBits(dX.download(), x));
      EXPECT_TRUE(sameBits(dF.download(), Vec(size_t(n), -1.5f)));
    }
}

TEST_F(Elementwise, BiasAdd) {
  const int64_t shapes[][2] = {{1, 1},     {5, 3},     {7, 4},   {2048, 64},
                               {1000, 10}, {33, 1001}, {3, 4096}};
  for (const auto &s : shapes)
    for (size_t off : kOffsets) {
      const int64_t rows = s[0], n = s[1];
      SCOPED_TRACE(::testing::Message()
                   << "rows=" << rows << " n=" << n << " offset=" << off);
      const Vec x = randomVec(size_t(rows * n), 8), b = randomVec(size_t(n), 9);
      Vec want(x.size());
      cpu::bias_add(x.data(), b.data(), want.data(), rows, n);
      DFloat dX(x, off), dB(b, off), dY(x.size(), off);
      bias_add(ctx, dX, dB, dY, rows, n);
      bias_add(ctx, dX, dB, dX, rows, n); // in place
      sync();
      EXPECT_TRUE(sameBits(dY.download(), want));
      EXPECT_TRUE(sameBits(dX.download(), want));
    }
}

TEST_F(Elementwise, PosAdd) {
  const int64_t shapes[][3] = {
      {1, 1, 1}, {128, 16, 64}, {3, 197, 192}, {5, 7, 3}};
  for (const auto &s : shapes)
    for (size_t off : kOffsets) {
      const int64_t B = s[0], T = s[1], D = s[2];
      SCOPED_TRACE(::testing::Message() << "B=" << B << " T=" << T << " D=" << D
                                        << " offset=" << off);
      const Vec x = randomVec(size_t(B * T * D), 10),
                pos = randomVec(size_t(T * D), 11);
      Vec want(x.size());
      cpu::pos_add(x.data(), pos.data(), want.data(), B, T, D);
      DFloat dX(x, off), dP(pos, off), dY(x.size(), off);
      pos_add(ctx, dX, dP, dY, B, T, D);
      sync();
      EXPECT_TRUE(sameBits(dY.download(), want));
    }
}

TEST_F(Elementwise, MeanTokensGrad) {
  const int64_t shapes[][3] = {
      {1, 1, 1}, {128, 16, 64}, {3, 197, 192}, {5, 7, 3}};
  for (const auto &s : shapes)
    for (size_t off : kOffsets) {
      const int64_t B = s[0], T = s[1], D = s[2];
      SCOPED_TRACE(::testing::Message() << "B=" << B << " T=" << T << " D=" << D
                                        << " offset=" << off);
      const Vec dy = randomVec(size_t(B * D), 12);
      Vec want(size_t(B * T * D));
      cpu::mean_tokens_grad(dy.data(), want.data(), B, T, D);
      DFloat dDy(dy, off), dDx(want.size(), off);
      mean_tokens_grad(ctx, dDy, dDx, B, T, D);
      sync();
      EXPECT_TRUE(sameBits(dDx.download(), want));
    }
}

TEST_F(Elementwise, EmptySizesDoNothing) {
  DFloat x(4);
  fill(ctx, x, 3.0f, 4);
  add(ctx, x, x, x, 0);
  gelu(ctx, x, x, -1);
  bias_add(ctx, x, x, x, 0, 4);
  copy(ctx, x, x + 1, 0);
  sync();
  EXPECT_TRUE(sameBits(x.download(), Vec(4, 3.0f)));
}

} // namespace
} // namespace sbp::cuda::test
