//===- GemmTest.cpp - sbp::cpu::gemm against a double reference -----------===//

#include "TestSupport.h"
#include "sbp/cpu_kernels.h"

#include <limits>
#include <tuple>

namespace sbp::cpu::test {
namespace {

struct GemmCase {
  bool transA, transB;
  int64_t M, N, K;
  int64_t padA, padB, padC; // extra columns in each stored row (strides)
  float alpha, beta;
};

/// Runs one case; checks C against a double reference with a bound scaled by
/// sum |alpha a b| + |beta c| (the natural error scale of a float GEMM), and
/// that the padding columns of C are untouched.
void runGemm(const GemmCase &g, uint32_t seed) {
  SCOPED_TRACE(::testing::Message()
               << "transA=" << g.transA << " transB=" << g.transB
               << " M=" << g.M << " N=" << g.N << " K=" << g.K);
  // Stored shapes (row-major): A is MxK or KxM, B is KxN or NxK.
  const int64_t aRows = g.transA ? g.K : g.M, aCols = g.transA ? g.M : g.K;
  const int64_t bRows = g.transB ? g.N : g.K, bCols = g.transB ? g.K : g.N;
  const int64_t lda = aCols + g.padA, ldb = bCols + g.padB, ldc = g.N + g.padC;
  Vec A = randomVec(size_t(aRows * lda), seed);
  Vec B = randomVec(size_t(bRows * ldb), seed + 1);
  Vec C = randomVec(size_t(g.M * ldc), seed + 2);
  const Vec C0 = C;
  auto a = [&](int64_t i, int64_t k) {
    return double(g.transA ? A[k * lda + i] : A[i * lda + k]);
  };
  auto b = [&](int64_t k, int64_t j) {
    return double(g.transB ? B[j * ldb + k] : B[k * ldb + j]);
  };
  gemm(g.transA, g.transB, g.M, g.N, g.K, g.alpha, A.data(), lda, B.data(), ldb,
       g.beta, C.data(), ldc);
  for (int64_t i = 0; i < g.M; ++i)
    for (int64_t j = 0; j < ldc; ++j) {
      const double c0 = C0[i * ldc + j];
      if (j >= g.N) {
        ASSERT_EQ(C[i * ldc + j], C0[i * ldc + j]) << "padding written";
        continue;
      }
      double ref = 0.0, scale = 0.0;
      for (int64_t k = 0; k < g.K; ++k) {
        ref += a(i, k) * b(k, j);
        scale += std::fabs(a(i, k) * b(k, j));
      }
      ref = g.alpha * ref + (g.beta == 0.0f ? 0.0 : g.beta * c0);
      scale = std::fabs(g.alpha) * scale + std::fabs(g.beta * c0);
      ASSERT_NEAR(C[i * ldc + j], ref, 2e-6 * scale + 1e-6)
          << "at (" << i << ", " << j << ")";
    }
}

TEST(Gemm, AllTransposeCombosWithStridesAndBeta) {
  uint32_t seed = 100;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      runGemm({ta, tb, 37, 19, 23, 3, 5, 2, 0.7f, -1.3f}, seed += 10);
}

TEST(Gemm, LargerThreadedShapes) {
  // Big enough that OpenBLAS splits the work among its threads.
  uint32_t seed = 200;
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      runGemm({ta, tb, 131, 97, 211, 1, 0, 4, 1.0f, 0.5f}, seed += 10);
}

TEST(Gemm, BetaZeroIgnoresGarbageInC) {
  const int64_t M = 5, N = 6, K = 7;
  Vec A = randomVec(M * K, 1), B = randomVec(K * N, 2);
  Vec C(M * N, std::numeric_limits<float>::quiet_NaN());
  gemm(false, false, M, N, K, 1.0f, A.data(), K, B.data(), N, 0.0f, C.data(),
       N);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      double ref = 0.0;
      for (int64_t k = 0; k < K; ++k)
        ref += double(A[i * K + k]) * B[k * N + j];
      ASSERT_NEAR(C[i * N + j], ref, 1e-5);
    }
}

TEST(Gemm, DegenerateProductsScaleC) {
  const int64_t M = 3, N = 4;
  Vec C = randomVec(M * N, 3);
  const Vec C0 = C;
  // K == 0: C = beta * C.
  gemm(false, false, M, N, 0, 1.0f, nullptr, 1, nullptr, N, 2.0f, C.data(), N);
  for (size_t i = 0; i < C.size(); ++i)
    ASSERT_FLOAT_EQ(C[i], 2.0f * C0[i]);
  // alpha == 0 and beta == 0: C = 0, even from NaN, A and B unread.
  std::fill(C.begin(), C.end(), std::numeric_limits<float>::quiet_NaN());
  Vec A = randomVec(M * 2, 4), B = randomVec(2 * N, 5);
  gemm(false, false, M, N, 2, 0.0f, A.data(), 2, B.data(), N, 0.0f, C.data(),
       N);
  for (float c : C)
    ASSERT_EQ(c, 0.0f);
  // M == 0: nothing happens, nothing is read.
  gemm(true, true, 0, N, 5, 1.0f, nullptr, 1, nullptr, 5, 0.0f, nullptr, N);
}

/// gemm_bias = the product, then + bias per column, then + residual: against a
/// double reference, for every transpose combination, with and without the
/// residual, and a NaN-filled C (it is written, never read).
TEST(Gemm, BiasAndResidualEpilogue) {
  const int64_t M = 37, N = 19, K = 23;
  for (int t = 0; t < 8; ++t) {
    const bool ta = t & 1, tb = t & 2, withResidual = t & 4;
    SCOPED_TRACE(::testing::Message() << "ta=" << ta << " tb=" << tb << " residual=" << withResidual);
    Vec A = randomVec(size_t(M * K), 10 + t), B = randomVec(size_t(K * N), 20 + t);
    Vec bias = randomVec(size_t(N), 30 + t), residual = randomVec(size_t(M * N), 40 + t);
    Vec C(size_t(M * N), std::numeric_limits<float>::quiet_NaN());
    gemm_bias(ta, tb, M, N, K, A.data(), ta ? M : K, B.data(), tb ? K : N, bias.data(),
              withResidual ? residual.data() : nullptr, C.data(), N);
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double ref = bias[j] + (withResidual ? residual[i * N + j] : 0.0), scale = std::fabs(ref);
        for (int64_t k = 0; k < K; ++k) {
          const double p = double(ta ? A[k * M + i] : A[i * K + k]) * double(tb ? B[j * K + k] : B[k * N + j]);
          ref += p;
          scale += std::fabs(p);
        }
        ASSERT_NEAR(C[i * N + j], ref, 2e-6 * scale + 1e-6) << "at (" << i << ", " << j << ")";
      }
  }
}

/// gemm_bgrad = the product and dbias[i] = sum_k op(A)[i, k]: against a
/// double reference, for every transpose combination, at a size that takes
/// the parallel paths and one that does not, with a NaN-filled C and dbias.
TEST(Gemm, BiasGradientRowSums) {
  for (auto [M, N, K] : {std::tuple<int64_t, int64_t, int64_t>{37, 19, 23}, {192, 65, 1031}}) {
    for (int t = 0; t < 4; ++t) {
      const bool ta = t & 1, tb = t & 2;
      SCOPED_TRACE(::testing::Message() << "M=" << M << " ta=" << ta << " tb=" << tb);
      Vec A = randomVec(size_t(M * K), 50 + t), B = randomVec(size_t(K * N), 60 + t);
      Vec C(size_t(M * N), std::numeric_limits<float>::quiet_NaN());
      Vec dbias(size_t(M), std::numeric_limits<float>::quiet_NaN());
      gemm_bgrad(ta, tb, M, N, K, A.data(), ta ? M : K, B.data(), tb ? K : N, C.data(), N, dbias.data());
      auto a = [&](int64_t i, int64_t k) { return double(ta ? A[k * M + i] : A[i * K + k]); };
      for (int64_t i = 0; i < M; ++i) {
        double sum = 0.0, sumScale = 0.0;
        for (int64_t k = 0; k < K; ++k)
          sum += a(i, k), sumScale += std::fabs(a(i, k));
        ASSERT_NEAR(dbias[i], sum, 1e-6 * sumScale + 1e-6) << "dbias[" << i << "]";
        for (int64_t j = 0; j < N; ++j) {
          double ref = 0.0, scale = 0.0;
          for (int64_t k = 0; k < K; ++k) {
            const double p = a(i, k) * double(tb ? B[j * K + k] : B[k * N + j]);
            ref += p;
            scale += std::fabs(p);
          }
          ASSERT_NEAR(C[i * N + j], ref, 2e-6 * scale + 1e-6) << "at (" << i << ", " << j << ")";
        }
      }
    }
  }
}

} // namespace
} // namespace sbp::cpu::test
