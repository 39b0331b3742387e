//===- GraphCaptureTest.cu - A trainer-like step inside a CUDA graph ------===//
//
// The generated step will be captured once into a CUDA graph and replayed.
// The kernels must therefore neither allocate nor synchronise, and cuBLASLt
// planning must happen on the warm-up call. A forward + backward chain of
// an SBP MLP block is run eagerly, then captured (global capture mode: any
// illegal call during capture fails it), replayed twice over scribbled
// buffers, and must give the eager results bit for bit.
//
//===----------------------------------------------------------------------===//

#include "CudaTestSupport.h"

namespace sbp::cuda::test {
namespace {

/// The step's tensors (allocated only once a device is known to exist).
struct StepBuffers {
  static constexpr int64_t B = 32, T = 16, K = 8, D = 64, F = 128, C = 10;
  static constexpr int64_t R = B * T, RK = B * K;

  StepBuffers()
      : x(randomVec(R * D, 1)), w1(randomVec(F * D, 2, -0.1f, 0.1f)),
        b1(randomVec(F, 3)), w2(randomVec(C * F, 4, -0.1f, 0.1f)),
        g(randomVec(D, 5, 0.5f, 1.5f)), beta(randomVec(D, 6)),
        labels(size_t(B)), idx(IVec{0, 2, 5, 7, 8, 10, 13, 15}), ln(R * D),
        xk(RK * D), h(RK * F), a(RK * F), logits(B * C), pooled(B * F),
        dlogits(B * C), dpooled(B * F), dh(RK * F), da(RK * F), dxk(RK * D),
        dx(R * D), dln(R * D), dw1(F * D), db1(F), dw2(C * F), dg(D), dbeta(D),
        loss(1), correct(1) {
    IVec lab(B);
    for (int64_t i = 0; i < B; ++i)
      lab[size_t(i)] = int32_t((i * 7) % C);
    labels.upload(lab);
  }

  /// Forward and backward of LayerNorm -> gather kept rows -> fc1 + bias ->
  /// GELU -> mean over the kept tokens -> head -> loss, and back.
  void step(const Context &ctx) {
    layer_norm(ctx, x, g, beta, ln, R, D, 1e-6f);
    gather_rows(ctx, ln, idx, xk, B, T, K, D);
    gemm(ctx, false, true, RK, F, D, 1.0f, xk, D, w1, D, 0.0f, h, F);
    bias_add(ctx, h, b1, h, RK, F);
    gelu(ctx, h, a, RK * F);
    mean_tokens(ctx, a, pooled, B, K, F);
    gemm(ctx, false, true, B, C, F, 1.0f, pooled, F, w2, F, 0.0f, logits, C);
    softmax_xent(ctx, logits, labels, loss, dlogits, B, C, 1.0f, correct);
    gemm(ctx, true, false, C, F, B, 1.0f, dlogits, C, pooled, F, 0.0f, dw2, F);
    gemm(ctx, false, false, B, F, C, 1.0f, dlogits, C, w2, F, 0.0f, dpooled, F);
    mean_tokens_grad(ctx, dpooled, da, B, K, F);
    gelu_grad(ctx, h, da, dh, RK * F);
    bias_grad(ctx, dh, db1, RK, F);
    gemm(ctx, true, false, F, D, RK, 1.0f, dh, F, xk, D, 0.0f, dw1, D);
    gemm(ctx, false, false, RK, D, F, 1.0f, dh, F, w1, D, 0.0f, dxk, D);
    scatter_rows(ctx, dxk, idx, dln, B, T, K, D);
    layer_norm_grad(ctx, x, g, dln, dx, dg, dbeta, R, D, 1e-6f);
    scatter_add_rows(ctx, dx, dxk, idx, dx, B, T, K, D);
  }

  std::vector<Vec> outputs() const {
    return {ln.download(),     xk.download(),      a.download(),
            logits.download(), dlogits.download(), dw2.download(),
            db1.download(),    dw1.download(),     dx.download(),
            dg.download(),     dbeta.download(),   loss.download()};
  }
  /// NaN into every intermediate and output: a replay must rewrite them.
  void scribble(const Context &ctx) {
    for (DFloat *buf :
         {&ln, &xk, &h, &a, &logits, &pooled, &dlogits, &dpooled, &dh, &da,
          &dxk, &dx, &dln, &dw1, &db1, &dw2, &dg, &dbeta, &loss})
      fill(ctx, *buf, std::nanf(""), int64_t(buf->size()));
  }

  DFloat x, w1, b1, w2, g, beta;
  DInt labels, idx;
  DFloat ln, xk, h, a, logits, pooled, dlogits, dpooled, dh, da, dxk, dx, dln,
      dw1, db1, dw2, dg, dbeta, loss;
  DeviceArray<int64_t> correct;
};

using GraphCapture = CudaKernelTest;

TEST_F(GraphCapture, ReplayMatchesEagerBitForBit) {
  StepBuffers buf;
  buf.step(ctx); // warm-up: plans every GEMM shape
  sync();
  const std::vector<Vec> eager = buf.outputs();
  const int64_t eagerCorrect = buf.correct.download()[0];
  for (const Vec &out : eager)
    for (float v : out)
      ASSERT_FALSE(std::isnan(v));

  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(ctx.stream, cudaStreamCaptureModeGlobal),
            cudaSuccess);
  buf.step(ctx);
  ASSERT_EQ(cudaStreamEndCapture(ctx.stream, &graph), cudaSuccess);
  char err[512] = {};
  ASSERT_EQ(last_error(err, sizeof(err)), 0) << err;
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);

  for (int replay = 0; replay < 2; ++replay) {
    SCOPED_TRACE(::testing::Message() << "replay " << replay);
    buf.scribble(ctx);
    ASSERT_EQ(cudaGraphLaunch(exec, ctx.stream), cudaSuccess);
    sync();
    const std::vector<Vec> replayed = buf.outputs();
    for (size_t i = 0; i < eager.size(); ++i)
      EXPECT_TRUE(sameBits(replayed[i], eager[i])) << "output " << i;
    EXPECT_EQ(buf.correct.download()[0], eagerCorrect);
  }
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

} // namespace
} // namespace sbp::cuda::test
