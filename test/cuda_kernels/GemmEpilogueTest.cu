//===- GemmEpilogueTest.cu - gemm_bias (cuBLASLt bias epilogue) -----------===//
//
// gemm_bias against a double reference of op(A) op(B) + bias (+ residual):
// float and bf16 operands, float and bf16 outputs (the bias and the residual
// in the output's type), every transpose combination, shapes of the ViT's
// linear layers and awkward ones (the cuBLASLt path and, for odd strides,
// the fallback). C starts as NaN: it is written, never read. Also against
// the CPU twin, and captured in a CUDA graph.
//
//===----------------------------------------------------------------------===//

#include "Bf16TestSupport.h"
#include "sbp/cpu_kernels.h"

namespace sbp::cuda::test {
namespace {

using bf = __nv_bfloat16;

template <class TA, class TC>
void checkGemmBias(const Context &ctx, bool ta, bool tb, int64_t M, int64_t N, int64_t K, bool withResidual,
                   double tol, bool inPlace = false) {
  SCOPED_TRACE(::testing::Message() << "A " << typeName((TA *)nullptr) << " C " << typeName((TC *)nullptr)
                                    << " ta=" << ta << " tb=" << tb << " M=" << M << " N=" << N << " K=" << K
                                    << " residual=" << withResidual << " in place=" << inPlace);
  const Vec A = asStored<TA>(randomVec(size_t(M * K), 21, -1.0f, 1.0f));
  const Vec B = asStored<TA>(randomVec(size_t(K * N), 22, -1.0f, 1.0f));
  const Vec bias = asStored<TC>(randomVec(size_t(N), 23, -1.0f, 1.0f));
  const Vec residual = asStored<TC>(randomVec(size_t(M * N), 24, -1.0f, 1.0f));
  Vec want(size_t(M * N));
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double s = double(bias[size_t(j)]) + (withResidual ? double(residual[size_t(i * N + j)]) : 0.0);
      for (int64_t k = 0; k < K; ++k)
        s += double(ta ? A[size_t(k * M + i)] : A[size_t(i * K + k)]) *
             double(tb ? B[size_t(j * K + k)] : B[size_t(k * N + j)]);
      want[size_t(i * N + j)] = float(s);
    }
  Tensor<TA> dA(A), dB(B);
  Tensor<TC> dBias(bias), dRes(residual), dC(size_t(M * N));
  // In place: C holds the residual and is overwritten with the result.
  TC *res = withResidual ? dRes.get() : nullptr;
  TC *out = inPlace ? dRes.get() : dC.get();
  gemm_bias(ctx, ta, tb, M, N, K, dA.get(), ta ? M : K, dB.get(), tb ? K : N, dBias.get(), res, out, N);
  ASSERT_EQ(cudaStreamSynchronize(ctx.stream), cudaSuccess);
  char err[512] = {};
  ASSERT_EQ(last_error(err, sizeof(err)), 0) << err;
  EXPECT_TRUE(maxRelBelow(inPlace ? dRes.download() : dC.download(), want, tol));
}

class GemmEpilogue : public CudaKernelTest {};

TEST_F(GemmEpilogue, FloatMatchesDoubleReference) {
  const int64_t shapes[][3] = {{50432 / 64, 576, 192}, {197, 192, 192}, {64, 10, 49}, {37, 19, 23}};
  for (int t = 0; t < 8; ++t)
    for (const auto &s : shapes)
      checkGemmBias<float, float>(ctx, t & 1, t & 2, s[0], s[1], s[2], t & 4, 1e-5);
}

TEST_F(GemmEpilogue, Bf16OperandsWithBf16AndFloatOutputs) {
  const int64_t shapes[][3] = {{788, 768, 192}, {788, 192, 768}, {197, 576, 192}, {37, 19, 23}, {8, 10, 192}};
  for (int t = 0; t < 8; ++t)
    for (const auto &s : shapes) {
      checkGemmBias<bf, bf>(ctx, t & 1, t & 2, s[0], s[1], s[2], t & 4, 2e-2);
      checkGemmBias<bf, float>(ctx, t & 1, t & 2, s[0], s[1], s[2], t & 4, 1e-2);
    }
}

TEST_F(GemmEpilogue, ResidualAddedInPlace) {
  // C is its own residual (x += f(x), cuBLASLt's C and D the same buffer):
  // the product and the bias are added once.
  checkGemmBias<bf, bf>(ctx, false, true, 3001, 192, 192, true, 2e-2, true);
  checkGemmBias<float, float>(ctx, false, true, 3001, 192, 192, true, 1e-5, true);
}

/// The same inputs through the CPU twin (float): the same function.
TEST_F(GemmEpilogue, MatchesCpuTwin) {
  const int64_t M = 197, N = 192, K = 64;
  const Vec A = randomVec(size_t(M * K), 31), B = randomVec(size_t(N * K), 32);
  const Vec bias = randomVec(size_t(N), 33), residual = randomVec(size_t(M * N), 34);
  Vec want(size_t(M * N));
  sbp::cpu::gemm_bias(false, true, M, N, K, A.data(), K, B.data(), K, bias.data(), residual.data(), want.data(), N);
  FTensor dA(A), dB(B), dBias(bias), dRes(residual), dC(size_t(M * N));
  gemm_bias(ctx, false, true, M, N, K, dA.get(), K, dB.get(), K, dBias.get(), dRes.get(), dC.get(), N);
  ASSERT_EQ(cudaStreamSynchronize(ctx.stream), cudaSuccess);
  char err[512] = {};
  ASSERT_EQ(last_error(err, sizeof(err)), 0) << err;
  EXPECT_TRUE(maxRelBelow(dC.download(), want, 1e-5));
}

/// A plan made before capture replays inside a CUDA graph with the bias
/// pointer of each call (two calls of one shape, two biases).
TEST_F(GemmEpilogue, CapturesIntoAGraph) {
  const int64_t M = 128, N = 64, K = 32;
  const Vec A = randomVec(size_t(M * K), 41), B = randomVec(size_t(N * K), 42);
  const Vec b1 = randomVec(size_t(N), 43), b2 = randomVec(size_t(N), 44);
  FTensor dA(A), dB(B), dB1(b1), dB2(b2), dC1(size_t(M * N)), dC2(size_t(M * N)), ref1(size_t(M * N)),
      ref2(size_t(M * N));
  gemm_bias(ctx, false, true, M, N, K, dA.get(), K, dB.get(), K, dB1.get(), nullptr, ref1.get(), N);
  gemm_bias(ctx, false, true, M, N, K, dA.get(), K, dB.get(), K, dB2.get(), nullptr, ref2.get(), N);
  ASSERT_EQ(cudaStreamSynchronize(ctx.stream), cudaSuccess);
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(ctx.stream, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  gemm_bias(ctx, false, true, M, N, K, dA.get(), K, dB.get(), K, dB1.get(), nullptr, dC1.get(), N);
  gemm_bias(ctx, false, true, M, N, K, dA.get(), K, dB.get(), K, dB2.get(), nullptr, dC2.get(), N);
  ASSERT_EQ(cudaStreamEndCapture(ctx.stream, &graph), cudaSuccess);
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, ctx.stream), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(ctx.stream), cudaSuccess);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  char err[512] = {};
  ASSERT_EQ(last_error(err, sizeof(err)), 0) << err;
  EXPECT_TRUE(sameBits(dC1.download(), ref1.download()));
  EXPECT_TRUE(sameBits(dC2.download(), ref2.download()));
}


/// gemm_bgrad against the CPU kernel (double-accumulated row sums): C and
/// dbias, every transpose combination, float and bf16 operands, the ViT
/// weight-gradient shapes (dW = dY^T X: trans_a, K = rows) and odd ones.
template <class TA>
void checkGemmBgrad(const Context &ctx, bool ta, bool tb, int64_t M, int64_t N, int64_t K, double tol) {
  SCOPED_TRACE(::testing::Message() << "A " << typeName((TA *)nullptr) << " ta=" << ta << " tb=" << tb
                                    << " M=" << M << " N=" << N << " K=" << K);
  const Vec A = asStored<TA>(randomVec(size_t(M * K), 31, -1.0f, 1.0f));
  const Vec B = asStored<TA>(randomVec(size_t(K * N), 32, -1.0f, 1.0f));
  Vec wantC(static_cast<size_t>(M * N)), wantBias(static_cast<size_t>(M));
  sbp::cpu::gemm_bgrad(ta, tb, M, N, K, A.data(), ta ? M : K, B.data(), tb ? K : N, wantC.data(), N,
                       wantBias.data());
  Tensor<TA> dA(A), dB(B);
  Tensor<float> dC(static_cast<size_t>(M * N)), dBias(static_cast<size_t>(M));
  gemm_bgrad(ctx, ta, tb, M, N, K, dA.get(), ta ? M : K, dB.get(), tb ? K : N, dC.get(), N, dBias.get());
  ASSERT_EQ(cudaStreamSynchronize(ctx.stream), cudaSuccess);
  char err[512] = {};
  ASSERT_EQ(last_error(err, sizeof(err)), 0) << err;
  EXPECT_TRUE(maxRelBelow(dC.download(), wantC, tol)) << "C";
  EXPECT_TRUE(maxRelBelow(dBias.download(), wantBias, 1e-5)) << "dbias";
}

TEST_F(GemmEpilogue, BiasGradientMatchesCpu) {
  const int64_t shapes[][3] = {{192, 192, 50432 / 64}, {768, 192, 788}, {576, 192, 197}, {37, 19, 23}};
  for (int t = 0; t < 4; ++t)
    for (const auto &s : shapes) {
      checkGemmBgrad<float>(ctx, t & 1, t & 2, s[0], s[1], s[2], 1e-5);
      checkGemmBgrad<bf>(ctx, t & 1, t & 2, s[0], s[1], s[2], 1e-2);
    }
}

} // namespace
} // namespace sbp::cuda::test
