//===- GemmBf16Test.cu - bf16 gemm overloads against a double reference ---===//
//
// gemm with __nv_bfloat16 A and B (CUDA_R_16BF, CUBLAS_COMPUTE_32F) and a
// bf16 or float C, against a double-precision product of the same bf16
// values: max|got - want| / max|want| < 1e-2. With beta == 0 the C buffer
// starts as NaN (it must not be read); padding columns of C (ldc > N) must
// stay untouched.
//
//===----------------------------------------------------------------------===//

#include "Bf16TestSupport.h"

#include <functional>

namespace sbp::cuda::test {
namespace {

using bf = __nv_bfloat16;

struct GemmCase {
  bool ta, tb;
  int64_t M, N, K;
  int64_t padA = 0, padB = 0, padC = 0; // row stride = minimal + pad
  float alpha = 1.0f, beta = 0.0f;
};

enum class Path { Lt, Fallback };

constexpr double kGemmTol = 1e-2;

template <class TC>
void checkGemm(const Context &ctx, const GemmCase &c, size_t offset = 0,
               Path path = Path::Lt) {
  SCOPED_TRACE(::testing::Message()
               << "C " << typeName((TC *)nullptr) << " ta=" << c.ta
               << " tb=" << c.tb << " M=" << c.M << " N=" << c.N
               << " K=" << c.K << " pads=" << c.padA << "," << c.padB << ","
               << c.padC << " alpha=" << c.alpha << " beta=" << c.beta
               << " offset=" << offset
               << (path == Path::Fallback ? " fallback" : ""));
  const int64_t aRows = c.ta ? c.K : c.M, aCols = c.ta ? c.M : c.K;
  const int64_t bRows = c.tb ? c.N : c.K, bCols = c.tb ? c.K : c.N;
  const int64_t lda = aCols + c.padA, ldb = bCols + c.padB, ldc = c.N + c.padC;
  const Vec A = randomBf16Vec(static_cast<size_t>(aRows * lda), 11, -1.0f, 1.0f);
  const Vec B = randomBf16Vec(static_cast<size_t>(bRows * ldb), 12, -1.0f, 1.0f);
  const Vec C = asStored<TC>(randomVec(static_cast<size_t>(c.M * ldc), 13, -1.0f, 1.0f));
  Vec want = C; // padding columns keep C
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = 0; j < c.N; ++j) {
      double s = 0.0;
      for (int64_t k = 0; k < c.K; ++k) {
        const double a =
            c.ta ? A[static_cast<size_t>(k * lda + i)] : A[static_cast<size_t>(i * lda + k)];
        const double b =
            c.tb ? B[static_cast<size_t>(j * ldb + k)] : B[static_cast<size_t>(k * ldb + j)];
        s += a * b;
      }
      double v = double(c.alpha) * s;
      if (c.beta != 0.0f)
        v += double(c.beta) * C[static_cast<size_t>(i * ldc + j)];
      want[static_cast<size_t>(i * ldc + j)] = float(v);
    }
  Tensor<bf> dA(A, offset), dB(B, offset);
  Tensor<TC> dC(C, offset);
  if (c.beta == 0.0f)
    dC.poison();
  if (path == Path::Lt)
    gemm(ctx, c.ta, c.tb, c.M, c.N, c.K, c.alpha, dA.get(), lda, dB.get(),
         ldb, c.beta, dC.get(), ldc);
  else
    detail::gemm_fallback(ctx, c.ta, c.tb, c.M, c.N, c.K, c.alpha, dA.get(),
                          lda, dB.get(), ldb, c.beta, dC.get(), ldc);
  ASSERT_EQ(cudaStreamSynchronize(ctx.stream), cudaSuccess);
  char err[512] = {};
  ASSERT_EQ(last_error(err, sizeof(err)), 0) << err;
  const Vec got = dC.download();
  // The product entries, against the double reference.
  Vec g, w;
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = 0; j < c.N; ++j) {
      g.push_back(got[static_cast<size_t>(i * ldc + j)]);
      w.push_back(want[static_cast<size_t>(i * ldc + j)]);
    }
  EXPECT_TRUE(maxRelBelow(g, w, kGemmTol));
  // Padding columns of C (ldc > N) are never written.
  if (c.beta != 0.0f)
    for (int64_t i = 0; i < c.M; ++i)
      for (int64_t j = c.N; j < ldc; ++j)
        ASSERT_EQ(got[static_cast<size_t>(i * ldc + j)], C[static_cast<size_t>(i * ldc + j)]);
}

std::vector<GemmCase> awkwardCases() {
  std::vector<GemmCase> cases;
  const int64_t shapes[][3] = {{1, 1, 1},     {7, 13, 5},     {33, 65, 17},
                               {128, 10, 64}, {257, 129, 63}, {512, 64, 49},
                               {64, 49, 512}, {3, 1000, 999}};
  for (int t = 0; t < 4; ++t)
    for (const auto &s : shapes) {
      GemmCase c{bool(t & 1), bool(t & 2), s[0], s[1], s[2]};
      cases.push_back(c);
      c.padA = 3; // strided views, as a column slice of a fused projection
      c.padB = 1;
      c.padC = 5;
      c.alpha = 0.5f;
      c.beta = 2.0f;
      cases.push_back(c);
      c.padA = 8; // strides keeping 16-byte rows
      c.padB = 8;
      c.padC = 8;
      c.beta = -1.0f;
      cases.push_back(c);
    }
  return cases;
}

using GemmBf16 = CudaKernelTest;

TEST_F(GemmBf16, AllTransposesAwkwardShapesAndStrides) {
  for (const GemmCase &c : awkwardCases()) {
    checkGemm<bf>(ctx, c);
    checkGemm<float>(ctx, c);
  }
}

TEST_F(GemmBf16, TrainerShapes) {
  // The patch-MLP sample: forward, dX and dW (float: a parameter gradient).
  checkGemm<bf>(ctx, {false, true, 2048, 128, 64});
  checkGemm<bf>(ctx, {false, false, 1024, 64, 128});
  checkGemm<float>(ctx, {true, false, 128, 64, 1024});
  checkGemm<float>(ctx, {true, false, 10, 64, 128});
  // ViT-Tiny sized, 4 images: qkv projection, its input and weight
  // gradients.
  checkGemm<bf>(ctx, {false, true, 197 * 4, 576, 192});
  checkGemm<bf>(ctx, {false, false, 197 * 4, 192, 576});
  checkGemm<float>(ctx, {true, false, 576, 192, 197 * 4});
  // A column slice of the fused qkv output as an operand (ld = 576).
  checkGemm<bf>(ctx, {false, true, 197, 197, 64, 512, 512, 0});
}

TEST_F(GemmBf16, MisalignedOperands) {
  // 2-byte aligned bf16 pointers: a plan of their own, or the fallback.
  checkGemm<bf>(ctx, {false, true, 65, 33, 17}, 1);
  checkGemm<float>(ctx, {false, true, 65, 33, 17}, 1);
  checkGemm<bf>(ctx, {true, false, 64, 32, 16, 0, 0, 0, 1.0f, 1.0f}, 3);
  checkGemm<bf>(ctx, {false, false, 64, 64, 64}, 4); // 8-byte aligned
}

TEST_F(GemmBf16, FallbackKernel) {
  for (const GemmCase &c : awkwardCases()) {
    checkGemm<bf>(ctx, c, 0, Path::Fallback);
    checkGemm<float>(ctx, c, 0, Path::Fallback);
  }
  checkGemm<bf>(ctx, {true, true, 33, 17, 9}, 1, Path::Fallback);
}

TEST_F(GemmBf16, DegenerateProducts) {
  // K == 0 and alpha == 0: C = beta * C, A and B never read.
  checkGemm<bf>(ctx, {false, false, 5, 7, 0, 0, 0, 0, 1.0f, 0.0f});
  checkGemm<bf>(ctx, {false, false, 5, 7, 0, 0, 0, 2, 1.0f, 3.0f});
  checkGemm<bf>(ctx, {true, true, 9, 4, 6, 0, 0, 1, 0.0f, 0.5f});
  checkGemm<float>(ctx, {true, true, 9, 4, 6, 0, 0, 1, 0.0f, 0.5f});
  checkGemm<bf>(ctx, {true, true, 9, 4, 6, 0, 0, 1, 0.0f, 1.0f});
  // M == 0 or N == 0: nothing happens.
  gemm(ctx, false, false, 0, 5, 5, 1.0f, static_cast<const bf *>(nullptr), 5,
       static_cast<const bf *>(nullptr), 5, 0.0f, static_cast<bf *>(nullptr),
       5);
  gemm(ctx, false, false, 5, 0, 5, 1.0f, static_cast<const bf *>(nullptr), 5,
       static_cast<const bf *>(nullptr), 5, 0.0f,
       static_cast<float *>(nullptr), 5);
  EXPECT_EQ(cudaStreamSynchronize(ctx.stream), cudaSuccess);
  char err[512] = {};
  EXPECT_EQ(last_error(err, sizeof(err)), 0) << err;
}

TEST_F(GemmBf16, PlansKeyOnTheDataTypes) {
  // One shape, strides and alignment in float, bf16 -> bf16 and bf16 ->
  // float: three plans, each product right (a plan made for other data
  // types would misread the operands).
  const size_t before = ctx.gemm_plans->plans.size();
  const int64_t M = 96, N = 80, K = 64;
  const Vec A = randomBf16Vec(static_cast<size_t>(M * K), 21), B = randomBf16Vec(static_cast<size_t>(K * N), 22);
  Vec want(static_cast<size_t>(M * N));
  cpu::gemm(false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f,
            want.data(), N);
  FTensor fA(A), fB(B), fC(want.size());
  BTensor bA(A), bB(B), bC(want.size());
  FTensor bfC(want.size());
  for (int rep = 0; rep < 2; ++rep) {
    gemm(ctx, false, false, M, N, K, 1.0f, fA.get(), K, fB.get(), N, 0.0f,
         fC.get(), N);
    gemm(ctx, false, false, M, N, K, 1.0f, bA.get(), K, bB.get(), N, 0.0f,
         bC.get(), N);
    gemm(ctx, false, false, M, N, K, 1.0f, bA.get(), K, bB.get(), N, 0.0f,
         bfC.get(), N);
  }
  sync();
  EXPECT_EQ(ctx.gemm_plans->plans.size(), before + 3);
  EXPECT_TRUE(maxRelBelow(fC.download(), want, 1e-4)) << "float";
  EXPECT_TRUE(maxRelBelow(bC.download(), want, kGemmTol)) << "bf16 -> bf16";
  EXPECT_TRUE(maxRelBelow(bfC.download(), want, 1e-4)) << "bf16 -> float";
}

TEST_F(GemmBf16, AllowTf32DoesNotChangeBf16) {
  const int64_t M = 64, N = 48, K = 32;
  const Vec A = randomBf16Vec(static_cast<size_t>(M * K), 31), B = randomBf16Vec(static_cast<size_t>(N * K), 32);
  BTensor dA(A), dB(B);
  FTensor c1(static_cast<size_t>(M * N)), c2(static_cast<size_t>(M * N));
  gemm(ctx, false, true, M, N, K, 1.0f, dA.get(), K, dB.get(), K, 0.0f,
       c1.get(), N);
  Context tf32 = ctx;
  tf32.allow_tf32 = true;
  gemm(tf32, false, true, M, N, K, 1.0f, dA.get(), K, dB.get(), K, 0.0f,
       c2.get(), N);
  sync();
  EXPECT_EQ(c1.bits(), c2.bits());
}

/// A weight gradient dW = dy^T x over K rows (dy: K x M, x: K x N, bf16,
/// row-major) on the device, with its double-precision reference.
struct WeightGrad {
  int64_t M, N, K;
  Vec dy, x, want;
  BTensor ddy, dx;
  WeightGrad(int64_t m, int64_t n, int64_t k, uint32_t seed)
      : M(m), N(n), K(k), dy(randomBf16Vec(static_cast<size_t>(k * m), seed)),
        x(randomBf16Vec(static_cast<size_t>(k * n), seed + 1)), want(reference()), ddy(dy), dx(x) {}
  Vec reference() const {
    std::vector<double> acc(static_cast<size_t>(M * N), 0.0);
    for (int64_t k = 0; k < K; ++k)
      for (int64_t i = 0; i < M; ++i) {
        const double a = dy[static_cast<size_t>(k * M + i)];
        for (int64_t j = 0; j < N; ++j)
          acc[static_cast<size_t>(i * N + j)] += a * x[static_cast<size_t>(k * N + j)];
      }
    return Vec(acc.begin(), acc.end());
  }
  void run(const Context &ctx, FTensor &out) const {
    gemm(ctx, true, false, M, N, K, 1.0f, ddy.get(), M, dx.get(), N, 0.0f, out.get(), N);
  }
};

TEST_F(GemmBf16, TunedWeightGradientIsRightAndKeepsItsBits) {
  // A weight gradient over many rows (a ConvNeXt fc1 weight, K = kept rows):
  // its first call times the heuristic's algorithms on these operands (C is
  // overwritten by each, beta == 0) and keeps one; the product is right, and
  // the cached plan gives the same bits on later calls.
  const WeightGrad g(96, 384, 8192, 41);
  FTensor c1(g.want.size()), c2(g.want.size());
  const size_t before = ctx.gemm_plans->plans.size();
  const int tunedBefore = ctx.gemm_plans->tuned;
  g.run(ctx, c1);
  g.run(ctx, c2);
  sync();
  char err[512] = {};
  ASSERT_EQ(last_error(err, sizeof(err)), 0) << err;
  EXPECT_EQ(ctx.gemm_plans->plans.size(), before + 1);
  EXPECT_EQ(ctx.gemm_plans->tuned, tunedBefore + 1) << "the candidates were not timed";
  EXPECT_TRUE(maxRelBelow(c1.download(), g.want, 1e-4));
  EXPECT_EQ(c1.bits(), c2.bits());
}

/// Records `call` on ctx.stream in a stream capture (its first call of a
/// shape happens there, as in a trainer's captured step), replays the graph
/// once and waits for it.
void captureAndReplay(const Context &ctx, const std::function<void()> &call) {
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(ctx.stream, cudaStreamCaptureModeGlobal), cudaSuccess);
  call();
  ASSERT_EQ(cudaStreamEndCapture(ctx.stream, &graph), cudaSuccess);
  char err[512] = {};
  ASSERT_EQ(last_error(err, sizeof(err)), 0) << err;
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  EXPECT_EQ(cudaGraphLaunch(exec, ctx.stream), cudaSuccess);
  EXPECT_EQ(cudaStreamSynchronize(ctx.stream), cudaSuccess);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

TEST_F(GemmBf16, WeightGradientFirstCalledInACaptureIsNotTimed) {
  // The first call of a new weight-gradient shape is recorded by a stream
  // capture: timing would synchronise the stream, so the heuristic's plan is
  // recorded as it is, and the replay computes the product.
  const WeightGrad g(80, 192, 4096, 43);
  FTensor c(g.want.size());
  const int tunedBefore = ctx.gemm_plans->tuned;
  captureAndReplay(ctx, [&] { g.run(ctx, c); });
  EXPECT_TRUE(maxRelBelow(c.download(), g.want, 1e-4));
  EXPECT_EQ(ctx.gemm_plans->tuned, tunedBefore);
}

/// Row-chunk products of a weight gradient (gemm_row_chunks) against the
/// double reference of each chunk, and their sum in chunk order against the
/// whole product. T: the operands' type (float or bf16).
template <class T>
void checkRowChunks(const Context &ctx, int64_t M, int64_t N, int64_t K, int64_t chunks, uint32_t seed) {
  SCOPED_TRACE(::testing::Message() << typeName((T *)nullptr) << " M=" << M << " N=" << N << " K=" << K
                                    << " chunks=" << chunks);
  const Vec dy = randomBf16Vec(static_cast<size_t>(K * M), seed), x = randomBf16Vec(static_cast<size_t>(K * N), seed + 1);
  const int64_t rows = K / chunks;
  std::vector<double> want(static_cast<size_t>(chunks * M * N), 0.0);
  for (int64_t k = 0; k < K; ++k)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j)
        want[static_cast<size_t>((k / rows) * M * N + i * N + j)] +=
            double(dy[static_cast<size_t>(k * M + i)]) * x[static_cast<size_t>(k * N + j)];
  Tensor<T> ddy(dy), dx(x);
  FTensor partial(static_cast<size_t>(chunks * M * N)); // NaN-poisoned: every element must be written
  gemm_row_chunks(ctx, M, N, K, chunks, 1.0f, ddy.get(), M, dx.get(), N, partial.get());
  ASSERT_EQ(cudaStreamSynchronize(ctx.stream), cudaSuccess);
  char err[512] = {};
  ASSERT_EQ(last_error(err, sizeof(err)), 0) << err;
  const Vec got = partial.download();
  EXPECT_TRUE(maxRelBelow(got, Vec(want.begin(), want.end()), 1e-4)) << "a chunk's product";
  Vec sum(static_cast<size_t>(M * N), 0.0f), whole(static_cast<size_t>(M * N), 0.0f);
  for (size_t e = 0; e < sum.size(); ++e) {
    double w = 0.0;
    for (int64_t s = 0; s < chunks; ++s) {
      sum[e] += got[static_cast<size_t>(s) * sum.size() + e];
      w += want[static_cast<size_t>(s) * sum.size() + e];
    }
    whole[e] = float(w);
  }
  EXPECT_TRUE(maxRelBelow(sum, whole, 1e-4)) << "the chunks' sum";
}

TEST_F(GemmBf16, RowChunksOfWeightGradients) {
  // ViT-Tiny's fc2 weight over fewer rows, attn.proj's with many chunks, the
  // test ViT's 4 chunks of 17 rows, and shapes whose rows are not 16-byte
  // multiples (the chunks' operands then start unaligned).
  checkRowChunks<bf>(ctx, 192, 768, 2816, 22, 51);
  checkRowChunks<bf>(ctx, 192, 192, 4096, 64, 53);
  checkRowChunks<bf>(ctx, 24, 48, 68, 4, 55);
  checkRowChunks<bf>(ctx, 7, 13, 51, 3, 57);
  checkRowChunks<float>(ctx, 64, 96, 1024, 8, 59);
  checkRowChunks<float>(ctx, 5, 3, 34, 2, 61);
}

TEST_F(GemmBf16, RowChunksRejectUnequalChunks) {
  // 100 rows do not split into 3 equal chunks: a reported error, no launch.
  BTensor a(100 * 8), b(100 * 8);
  FTensor partial(3 * 8 * 8);
  gemm_row_chunks(ctx, 8, 8, 100, 3, 1.0f, a.get(), 8, b.get(), 8, partial.get());
  char err[512] = {};
  EXPECT_NE(last_error(err, sizeof(err)), 0);
  EXPECT_NE(std::string(err).find("gemm_row_chunks"), std::string::npos) << err;
}

TEST_F(GemmBf16, RowChunksFirstCalledInACapture) {
  // The trainer's step may be captured on its first call: the batched plan
  // is made without timing, and the replay computes the chunks.
  const int64_t M = 32, N = 64, K = 512, chunks = 8;
  const WeightGrad g(M, N, K, 63);
  FTensor partial(static_cast<size_t>(chunks * M * N));
  captureAndReplay(ctx, [&] {
    gemm_row_chunks(ctx, M, N, K, chunks, 1.0f, g.ddy.get(), M, g.dx.get(), N, partial.get());
  });
  const Vec got = partial.download();
  Vec sum(static_cast<size_t>(M * N), 0.0f);
  for (size_t e = 0; e < sum.size(); ++e)
    for (int64_t s = 0; s < chunks; ++s)
      sum[e] += got[static_cast<size_t>(s) * sum.size() + e];
  EXPECT_TRUE(maxRelBelow(sum, g.want, 1e-4));
}

} // namespace
} // namespace sbp::cuda::test
