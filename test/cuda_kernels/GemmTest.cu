//===- GemmTest.cu - gemm through cuBLASLt against the CPU's cblas_sgemm --===//

#include "CudaTestSupport.h"

#include <limits>

namespace sbp::cuda::test {
namespace {

struct GemmCase {
  bool ta, tb;
  int64_t M, N, K;
  int64_t padA = 0, padB = 0, padC = 0; // row stride = minimal + pad
  float alpha = 1.0f, beta = 0.0f;
};

enum class Path { Lt, Fallback };

/// One product on the GPU and through sbp::cpu::gemm. With beta == 0 the
/// GPU's C starts as NaN: it must not be read. `rtol` is relative to the
/// dot product's error bound (see below).
void checkGemm(const Context &ctx, const GemmCase &c, double rtol,
               size_t offset = 0, Path path = Path::Lt) {
  SCOPED_TRACE(::testing::Message()
               << "ta=" << c.ta << " tb=" << c.tb << " M=" << c.M
               << " N=" << c.N << " K=" << c.K << " alpha=" << c.alpha
               << " beta=" << c.beta << " offset=" << offset);
  const int64_t aRows = c.ta ? c.K : c.M, aCols = c.ta ? c.M : c.K;
  const int64_t bRows = c.tb ? c.N : c.K, bCols = c.tb ? c.K : c.N;
  const int64_t lda = aCols + c.padA, ldb = bCols + c.padB, ldc = c.N + c.padC;
  const Vec A = randomVec(size_t(aRows * lda), 11, -1.0f, 1.0f);
  const Vec B = randomVec(size_t(bRows * ldb), 12, -1.0f, 1.0f);
  Vec C = randomVec(size_t(c.M * ldc), 13, -1.0f, 1.0f);
  Vec want = C;
  cpu::gemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), lda, B.data(), ldb,
            c.beta, want.data(), ldc);
  if (c.beta == 0.0f)
    std::fill(C.begin(), C.end(), std::numeric_limits<float>::quiet_NaN());
  DFloat dA(A, offset), dB(B, offset), dC(C, offset);
  if (path == Path::Lt)
    gemm(ctx, c.ta, c.tb, c.M, c.N, c.K, c.alpha, dA, lda, dB, ldb, c.beta, dC,
         ldc);
  else
    detail::gemm_fallback(ctx, c.ta, c.tb, c.M, c.N, c.K, c.alpha, dA, lda, dB,
                          ldb, c.beta, dC, ldc);
  ASSERT_EQ(cudaStreamSynchronize(ctx.stream), cudaSuccess);
  char err[512] = {};
  ASSERT_EQ(last_error(err, sizeof(err)), 0) << err;
  const Vec got = dC.download();
  // Judge each entry against the error bound of a float dot product,
  // |alpha| sum_k |a_ik b_kj| + |beta c_ij|: two correct fp32 GEMMs that
  // sum in different orders differ by up to ~K eps of it, not of |c_ij|.
  double worst = 0.0;
  int64_t wi = 0, wj = 0;
  for (int64_t i = 0; i < c.M; ++i)
    for (int64_t j = 0; j < c.N; ++j) {
      double bound = c.beta == 0.0f
                         ? 0.0
                         : std::fabs(double(c.beta) * C[size_t(i * ldc + j)]);
      for (int64_t k = 0; k < c.K; ++k) {
        const float a = c.ta ? A[size_t(k * lda + i)] : A[size_t(i * lda + k)];
        const float b = c.tb ? B[size_t(j * ldb + k)] : B[size_t(k * ldb + j)];
        bound += std::fabs(double(c.alpha) * a * b);
      }
      const double g = got[size_t(i * ldc + j)], w = want[size_t(i * ldc + j)];
      const double err =
          bound > 0.0 ? std::fabs(g - w) / bound : (g == w ? 0.0 : INFINITY);
      if (!(err <= worst)) {
        worst = err;
        wi = i;
        wj = j;
      }
    }
  EXPECT_LE(worst, rtol) << "at (" << wi << ", " << wj << "): got "
                         << got[size_t(wi * ldc + wj)] << ", want "
                         << want[size_t(wi * ldc + wj)];
  // Padding columns of C (ldc > N) are never written.
  if (c.beta != 0.0f)
    for (int64_t i = 0; i < c.M; ++i)
      for (int64_t j = c.N; j < ldc; ++j)
        ASSERT_EQ(got[size_t(i * ldc + j)], C[size_t(i * ldc + j)]);
}

std::vector<GemmCase> awkwardCases() {
  std::vector<GemmCase> cases;
  const int64_t shapes[][3] = {{1, 1, 1},      {7, 13, 5},     {33, 65, 17},
                               {128, 10, 64},  {257, 129, 63}, {2048, 64, 49},
                               {64, 49, 2048}, {3, 1000, 999}};
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
    }
  return cases;
}

using Gemm = CudaKernelTest;

TEST_F(Gemm, AllTransposesAwkwardShapesAndStrides) {
  for (const GemmCase &c : awkwardCases())
    checkGemm(ctx, c, 1e-4);
}

TEST_F(Gemm, TrainerShapes) {
  // The patch-MLP sample: forward, dX and dW products.
  checkGemm(ctx, {false, true, 2048, 128, 64}, 1e-4);
  checkGemm(ctx, {false, false, 1024, 64, 128}, 1e-4);
  checkGemm(ctx, {true, false, 128, 64, 1024}, 1e-4);
  checkGemm(ctx, {true, false, 10, 64, 128}, 1e-4);
  // ViT-Tiny sized: qkv projection and its weight gradient.
  checkGemm(ctx, {false, true, 197 * 16, 576, 192}, 1e-4);
  checkGemm(ctx, {true, false, 576, 192, 197 * 16}, 1e-4);
}

TEST_F(Gemm, MisalignedOperands) {
  // 4-byte aligned pointers: a plan of its own (or the fallback kernel).
  checkGemm(ctx, {false, true, 65, 33, 17}, 1e-4, 1);
  checkGemm(ctx, {true, false, 64, 32, 16, 0, 0, 0, 1.0f, 1.0f}, 1e-4, 3);
}

TEST_F(Gemm, FallbackKernel) {
  for (const GemmCase &c : awkwardCases())
    checkGemm(ctx, c, 1e-4, 0, Path::Fallback);
}

TEST_F(Gemm, DegenerateProducts) {
  // K == 0 and alpha == 0: C = beta * C, A and B never read.
  checkGemm(ctx, {false, false, 5, 7, 0, 0, 0, 0, 1.0f, 0.0f}, 0.0);
  checkGemm(ctx, {false, false, 5, 7, 0, 0, 0, 2, 1.0f, 3.0f}, 0.0);
  checkGemm(ctx, {true, true, 9, 4, 6, 0, 0, 1, 0.0f, 0.5f}, 0.0);
  checkGemm(ctx, {true, true, 9, 4, 6, 0, 0, 1, 0.0f, 1.0f}, 0.0);
  // M == 0 or N == 0: nothing happens.
  gemm(ctx, false, false, 0, 5, 5, 1.0f, nullptr, 5, nullptr, 5, 0.0f, nullptr,
       5);
  sync();
}

TEST_F(Gemm, PlansAreCachedPerShape) {
  DFloat A(64 * 32), B(32 * 16), C(64 * 16), C2(64 * 16);
  fill(ctx, A, 1.0f, 64 * 32);
  fill(ctx, B, 2.0f, 32 * 16);
  gemm(ctx, false, false, 64, 16, 32, 1.0f, A, 32, B, 16, 0.0f, C, 16);
  const size_t plans = ctx.gemm_plans->plans.size();
  gemm(ctx, false, false, 64, 16, 32, 1.0f, A, 32, B, 16, 0.0f, C2, 16);
  EXPECT_EQ(ctx.gemm_plans->plans.size(), plans);
  gemm(ctx, false, true, 64, 32, 16, 1.0f, C, 16, B, 16, 0.0f, A, 32);
  EXPECT_EQ(ctx.gemm_plans->plans.size(), plans + 1);
  sync();
  for (float v : C2.download())
    ASSERT_EQ(v, 64.0f);
}

class GemmTf32 : public CudaKernelTest {
  void configure(Context &c) override { c.allow_tf32 = true; }
};

TEST_F(GemmTf32, CloseToFp32) {
  // TF32 rounds the inputs to 10 mantissa bits: ~1e-3 relative products.
  checkGemm(ctx, {false, true, 2048, 128, 64}, 1e-2);
  checkGemm(ctx, {true, false, 128, 64, 1024}, 1e-2);
  checkGemm(ctx, {false, false, 257, 129, 63, 3, 1, 5, 0.5f, 2.0f}, 1e-2);
}

} // namespace
} // namespace sbp::cuda::test
