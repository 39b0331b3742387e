//===- TokenOpsTest.cu - cls_concat(_grad), take_token(_grad) vs the CPU --===//
//
// Pure row moves: bit for bit against the CPU library, outputs NaN-poisoned
// first, on the float4 and the scalar paths (4-byte aligned tensors, odd
// widths), out-of-range pooling indices included. The class-token gradient's
// batch sum: against the CPU's double sum (rounded once), and exactly where
// a float sum would lose it.
//
//===----------------------------------------------------------------------===//

#include "CudaTestSupport.h"

#include <limits>

namespace sbp::cuda::test {
namespace {

using TokenOps = CudaKernelTest;

const float kNaN = std::numeric_limits<float>::quiet_NaN();

struct Sizes {
  int64_t B, T, D;
};

// Tiny, odd widths (scalar path), ViT-Tiny's tokens at a small and at the
// training batch (several row splits in the batch sum), T = 0.
const Sizes kSizes[] = {{1, 1, 1},    {3, 4, 5},     {2, 7, 3},
                        {4, 196, 192}, {256, 196, 192}, {3, 0, 8}};

::testing::Message describe(const Sizes &s, size_t offset) {
  return ::testing::Message() << "B=" << s.B << " T=" << s.T << " D=" << s.D
                              << " offset=" << offset;
}

TEST_F(TokenOps, ClsConcatMatchesCpu) {
  for (const Sizes &s : kSizes)
    for (size_t off : {size_t(0), size_t(1)}) {
      SCOPED_TRACE(describe(s, off));
      const Vec x = randomVec(size_t(s.B * s.T * s.D), 1);
      const Vec cls = randomVec(size_t(s.D), 2);
      Vec want(size_t(s.B * (s.T + 1) * s.D), kNaN);
      cpu::cls_concat(x.data(), cls.data(), want.data(), s.B, s.T, s.D);
      DFloat dx(x, off), dcls(cls, off), dy(Vec(want.size(), kNaN), off);
      cls_concat(ctx, dx, dcls, dy, s.B, s.T, s.D);
      sync();
      EXPECT_TRUE(sameBits(dy.download(), want));
    }
}

TEST_F(TokenOps, ClsConcatGradMatchesCpu) {
  for (const Sizes &s : kSizes)
    for (size_t off : {size_t(0), size_t(1)}) {
      SCOPED_TRACE(describe(s, off));
      const Vec dy = randomVec(size_t(s.B * (s.T + 1) * s.D), 3);
      Vec wantDx(size_t(s.B * s.T * s.D), kNaN), wantCls(size_t(s.D), kNaN);
      cpu::cls_concat_grad(dy.data(), wantDx.data(), wantCls.data(), s.B, s.T,
                           s.D);
      DFloat ddy(dy, off), ddx(Vec(wantDx.size(), kNaN), off),
          dcls(Vec(wantCls.size(), kNaN), off);
      cls_concat_grad(ctx, ddy, ddx, dcls, s.B, s.T, s.D);
      sync();
      EXPECT_TRUE(sameBits(ddx.download(), wantDx)) << "dx";
      // Both sum in double and round once; only the order of the double
      // additions differs.
      EXPECT_TRUE(relClose(dcls.download(), wantCls, 1e-6)) << "dcls";
    }
}

TEST_F(TokenOps, ClsBatchSumIsDoubleAccumulated) {
  // 1 + 4096 * 2^-24: a float running sum stays at 1 (each addend is half
  // an ulp and rounds away); the double sum does not. Deterministic too.
  const int64_t B = 4097, T = 1, D = 3;
  Vec dy(size_t(B * (T + 1) * D), 0.0f);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t d = 0; d < D; ++d)
      dy[size_t(b * (T + 1) * D + d)] = b == 0 ? 1.0f : std::ldexp(1.0f, -24);
  DFloat ddy(dy), ddx(size_t(B * T * D)), dcls(Vec(size_t(D), kNaN));
  cls_concat_grad(ctx, ddy, ddx, dcls, B, T, D);
  sync();
  const Vec first = dcls.download();
  for (int64_t d = 0; d < D; ++d)
    EXPECT_EQ(first[size_t(d)], float(1.0 + 4096.0 * std::ldexp(1.0, -24)));
  cls_concat_grad(ctx, ddy, ddx, dcls, B, T, D);
  sync();
  EXPECT_TRUE(sameBits(dcls.download(), first));
}

TEST_F(TokenOps, TakeTokenMatchesCpu) {
  for (const Sizes &s : kSizes)
    for (int64_t index : {int64_t(0), s.T - 1, s.T, int64_t(-1)})
      for (size_t off : {size_t(0), size_t(1)}) {
        SCOPED_TRACE(describe(s, off) << " index=" << index);
        const Vec x = randomVec(size_t(s.B * s.T * s.D), 4);
        Vec want(size_t(s.B * s.D), kNaN);
        cpu::take_token(x.data(), want.data(), s.B, s.T, s.D, index);
        DFloat dx(x, off), dy(Vec(want.size(), kNaN), off);
        take_token(ctx, dx, dy, s.B, s.T, s.D, index);
        sync();
        EXPECT_TRUE(sameBits(dy.download(), want));
      }
}

TEST_F(TokenOps, TakeTokenGradMatchesCpu) {
  for (const Sizes &s : kSizes)
    for (int64_t index : {int64_t(0), s.T - 1, s.T, int64_t(-1)})
      for (size_t off : {size_t(0), size_t(1)}) {
        SCOPED_TRACE(describe(s, off) << " index=" << index);
        const Vec dy = randomVec(size_t(s.B * s.D), 5);
        Vec want(size_t(s.B * s.T * s.D), kNaN);
        cpu::take_token_grad(dy.data(), want.data(), s.B, s.T, s.D, index);
        DFloat ddy(dy, off), ddx(Vec(want.size(), kNaN), off);
        take_token_grad(ctx, ddy, ddx, s.B, s.T, s.D, index);
        sync();
        EXPECT_TRUE(sameBits(ddx.download(), want));
      }
}

} // namespace
} // namespace sbp::cuda::test
