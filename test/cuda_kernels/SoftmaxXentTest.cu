//===- SoftmaxXentTest.cu - Fused loss, gradient and accuracy vs the CPU --===//

#include "CudaTestSupport.h"

#include <limits>

namespace sbp::cuda::test {
namespace {

using SoftmaxXent = CudaKernelTest;

struct XentResult {
  float loss;
  int64_t correct;
  Vec dlogits;
};

XentResult runGpu(const Context &ctx, const Vec &logits, const IVec &labels,
                  int64_t B, int64_t C, float scale, bool withGrad) {
  DFloat dz(logits), dg(logits.size()), dloss(1);
  DInt dl(labels);
  DeviceArray<int64_t> dcorrect(1);
  softmax_xent(ctx, dz, dl, dloss, withGrad ? dg.get() : nullptr, B, C, scale,
               dcorrect);
  EXPECT_EQ(cudaStreamSynchronize(ctx.stream), cudaSuccess);
  char err[512] = {};
  EXPECT_EQ(last_error(err, sizeof(err)), 0) << err;
  return {dloss.download()[0], dcorrect.download()[0],
          withGrad ? dg.download() : Vec()};
}

void check(const Context &ctx, int64_t B, int64_t C, float scale,
           bool badLabels) {
  SCOPED_TRACE(::testing::Message()
               << "B=" << B << " C=" << C << " scale=" << scale);
  Vec logits = randomVec(size_t(B * C), uint32_t(B + C), -4.0f, 4.0f);
  IVec labels(static_cast<size_t>(B));
  std::mt19937 gen(uint32_t(B * C));
  for (int64_t r = 0; r < B; ++r)
    labels[size_t(r)] = int32_t(gen() % uint32_t(C));
  // Make some rows right (argmax == label), some ties (first max wins).
  for (int64_t r = 0; r < B; r += 3)
    logits[size_t(r * C + labels[size_t(r)])] = 9.0f;
  if (C > 2)
    for (int64_t r = 1; r < B; r += 5) {
      logits[size_t(r * C + 1)] = 9.5f;
      logits[size_t(r * C + 2)] = 9.5f;
    }
  if (badLabels && B > 2) {
    labels[0] = -1;
    labels[size_t(B - 1)] = int32_t(C);
  }
  Vec want(logits.size());
  float wantLoss = 0.0f;
  const int64_t wantCorrect = cpu::softmax_xent(
      logits.data(), labels.data(), &wantLoss, want.data(), B, C, scale);
  const XentResult got = runGpu(ctx, logits, labels, B, C, scale, true);
  EXPECT_NEAR(got.loss, wantLoss, 1e-5 * std::fabs(wantLoss) + 1e-7);
  EXPECT_EQ(got.correct, wantCorrect);
  // The label entry p - 1 cancels when p -> 1: 1e-4 at the 1% floor.
  EXPECT_TRUE(relClose(got.dlogits, want, 1e-4));
  const XentResult noGrad = runGpu(ctx, logits, labels, B, C, scale, false);
  EXPECT_EQ(noGrad.loss, got.loss);
  EXPECT_EQ(noGrad.correct, got.correct);
}

TEST_F(SoftmaxXent, MatchesCpu) {
  const int64_t shapes[][2] = {{1, 1},    {1, 10},    {7, 3},     {128, 10},
                               {256, 33}, {64, 1000}, {1000, 10}, {3, 4097}};
  for (const auto &s : shapes) {
    check(ctx, s[0], s[1], 1.0f, false);
    check(ctx, s[0], s[1], 0.5f, true);
  }
}

TEST_F(SoftmaxXent, NanLogitMakesTheLossNan) {
  Vec logits = randomVec(4 * 10, 1);
  logits[13] = std::numeric_limits<float>::quiet_NaN();
  const IVec labels = {1, 2, 3, 4};
  const XentResult got = runGpu(ctx, logits, labels, 4, 10, 1.0f, true);
  EXPECT_TRUE(std::isnan(got.loss));
  Vec want(logits.size());
  float wantLoss = 0.0f;
  const int64_t wantCorrect = cpu::softmax_xent(
      logits.data(), labels.data(), &wantLoss, want.data(), 4, 10, 1.0f);
  EXPECT_EQ(got.correct, wantCorrect);
  EXPECT_TRUE(relClose(got.dlogits, want, 1e-4));
}

TEST_F(SoftmaxXent, EmptyBatchWritesZero) {
  DFloat dloss(Vec{5.0f});
  DeviceArray<int64_t> dcorrect(std::vector<int64_t>{7});
  softmax_xent(ctx, nullptr, nullptr, dloss, nullptr, 0, 10, 1.0f, dcorrect);
  sync();
  EXPECT_EQ(dloss.download()[0], 0.0f);
  EXPECT_EQ(dcorrect.download()[0], 0);
}

TEST_F(SoftmaxXent, Deterministic) {
  const int64_t B = 4096, C = 1000;
  const Vec logits = randomVec(size_t(B * C), 3);
  IVec labels(static_cast<size_t>(B));
  for (int64_t r = 0; r < B; ++r)
    labels[size_t(r)] = int32_t((r * 7919) % C);
  const XentResult a = runGpu(ctx, logits, labels, B, C, 1.0f, true);
  const XentResult b = runGpu(ctx, logits, labels, B, C, 1.0f, true);
  EXPECT_EQ(std::memcmp(&a.loss, &b.loss, sizeof(float)), 0);
  EXPECT_EQ(a.correct, b.correct);
  EXPECT_TRUE(sameBits(a.dlogits, b.dlogits));
}

} // namespace
} // namespace sbp::cuda::test
