//===- AttentionTest.cu - attention_fwd / attention_bwd vs the CPU --------===//

#include "CudaTestSupport.h"

namespace sbp::cuda::test {
namespace {

using Attention = CudaKernelTest;

struct AttnCase {
  int64_t B, H, Tq, Tk, Dh;
};

void checkAttention(const Context &ctx, const AttnCase &c) {
  const int64_t B = c.B, H = c.H, Tq = c.Tq, Tk = c.Tk, Dh = c.Dh;
  SCOPED_TRACE(::testing::Message() << "B=" << B << " H=" << H << " Tq=" << Tq
                                    << " Tk=" << Tk << " Dh=" << Dh);
  const float scale = 1.0f / std::sqrt(float(Dh));
  const size_t nq = size_t(B * Tq * H * Dh), nk = size_t(B * Tk * H * Dh);
  const Vec q = randomVec(nq, 1), k = randomVec(nk, 2), v = randomVec(nk, 3);
  const Vec dout = randomVec(nq, 4);
  Vec o(nq), lse(size_t(B * H * Tq)), dq(nq), dk(nk), dv(nk);
  cpu::attention_fwd(q.data(), k.data(), v.data(), o.data(), lse.data(), B, H,
                     Tq, Tk, Dh, scale);
  cpu::attention_bwd(q.data(), k.data(), v.data(), o.data(), lse.data(),
                     dout.data(), dq.data(), dk.data(), dv.data(), B, H, Tq, Tk,
                     Dh, scale);
  DFloat dQ(q), dK(k), dV(v), dO(nq), dLse(lse.size()), dG(dout);
  DFloat dDq(Vec(nq, 9.0f)), dDk(Vec(nk, 9.0f)), dDv(Vec(nk, 9.0f));
  attention_fwd(ctx, dQ, dK, dV, dO, dLse, B, H, Tq, Tk, Dh, scale);
  ASSERT_EQ(cudaStreamSynchronize(ctx.stream), cudaSuccess);
  EXPECT_TRUE(relClose(dO.download(), o, 1e-4)) << "o";
  EXPECT_TRUE(relClose(dLse.download(), lse, 1e-5)) << "lse";
  // The backward from the CPU's o and lse, so each pass is judged alone.
  dO.upload(o);
  dLse.upload(lse);
  attention_bwd(ctx, dQ, dK, dV, dO, dLse, dG, dDq, dDk, dDv, B, H, Tq, Tk, Dh,
                scale);
  ASSERT_EQ(cudaStreamSynchronize(ctx.stream), cudaSuccess);
  char err[512] = {};
  ASSERT_EQ(last_error(err, sizeof(err)), 0) << err;
  EXPECT_TRUE(relClose(dDq.download(), dq, 1e-4)) << "dq";
  EXPECT_TRUE(relClose(dDk.download(), dk, 1e-4)) << "dk";
  EXPECT_TRUE(relClose(dDv.download(), dv, 1e-4)) << "dv";
}

TEST_F(Attention, TiledHeadDims) {
  const AttnCase cases[] = {{2, 3, 197, 197, 64}, // ViT-Tiny
                            {1, 2, 5, 7, 16},     {2, 1, 33, 65, 32},
                            {1, 2, 17, 9, 48},    {1, 1, 64, 64, 64},
                            {1, 1, 1, 1, 1},      {2, 2, 99, 197, 64}};
  for (const AttnCase &c : cases)
    checkAttention(ctx, c);
}

TEST_F(Attention, WideHeadDims) {
  const AttnCase cases[] = {
      {1, 1, 40, 50, 80}, {2, 2, 33, 17, 128}, {1, 1, 3, 70, 65}};
  for (const AttnCase &c : cases)
    checkAttention(ctx, c);
}

TEST_F(Attention, RejectsHeadDimAbove128) {
  DFloat x(4 * 129);
  attention_fwd(ctx, x, x, x, x, nullptr, 1, 1, 2, 2, 129, 1.0f);
  char err[512] = {};
  EXPECT_NE(last_error(err, sizeof(err)), 0);
  EXPECT_NE(std::string(err).find("attention_fwd"), std::string::npos) << err;
}

} // namespace
} // namespace sbp::cuda::test
