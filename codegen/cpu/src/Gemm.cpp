//===- Gemm.cpp - Row-major SGEMM through CBLAS ---------------------------===//

#include "sbp/cpu_kernels.h"

#include <cblas.h>

#include <algorithm>

namespace sbp {
namespace cpu {

void gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K,
          float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
          float beta, float *C, int64_t ldc) {
  if (M <= 0 || N <= 0)
    return;
  // BLAS implementations differ on K == 0 and on alpha == 0 (some skip the
  // beta scaling, some reject lda < 1): handle the degenerate product here.
  if (K <= 0 || alpha == 0.0f) {
    for (int64_t i = 0; i < M; ++i) {
      float *c = C + i * ldc;
      if (beta == 0.0f)
        for (int64_t j = 0; j < N; ++j)
          c[j] = 0.0f;
      else if (beta != 1.0f)
        for (int64_t j = 0; j < N; ++j)
          c[j] *= beta;
    }
    return;
  }
  // CBLAS takes int sizes; one GEMM operand of a trainer is far below 2^31.
  cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans,
              transB ? CblasTrans : CblasNoTrans, static_cast<int>(M),
              static_cast<int>(N), static_cast<int>(K), alpha, A,
              static_cast<int>(lda), B, static_cast<int>(ldb), beta, C,
              static_cast<int>(ldc));
}

void gemm_bias(bool transA, bool transB, int64_t M, int64_t N, int64_t K,
               const float *A, int64_t lda, const float *B, int64_t ldb,
               const float *bias, const float *residual, float *C,
               int64_t ldc) {
  gemm(transA, transB, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
#pragma omp parallel for schedule(static) if (M * N >= (int64_t(1) << 16))
  for (int64_t i = 0; i < M; ++i) {
    float *c = C + i * ldc;
    const float *r = residual ? residual + i * ldc : nullptr;
#pragma omp simd
    for (int64_t j = 0; j < N; ++j)
      c[j] = r ? r[j] + (c[j] + bias[j]) : c[j] + bias[j];
  }
}

/// dbias[i] = sum_j op(A)[i, j] over the K columns of op(A), in double,
/// rounded once; a fixed summation order per element (deterministic).
static void sumOpARows(bool transA, int64_t M, int64_t K, const float *A,
                       int64_t lda, float *dbias) {
  if (!transA) { // op(A) = A [M, K]: contiguous rows
#pragma omp parallel for schedule(static) if (M * K >= (int64_t(1) << 16))
    for (int64_t i = 0; i < M; ++i) {
      double s = 0.0;
      for (int64_t j = 0; j < K; ++j)
        s += double(A[i * lda + j]);
      dbias[i] = float(s);
    }
    return;
  }
  // op(A) = A^T, A stored [K, M]: column sums, a block of columns per task
  // so that each row is read contiguously.
  constexpr int64_t kBlock = 64;
  const int64_t blocks = (M + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (M * K >= (int64_t(1) << 16))
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t i0 = blk * kBlock, width = std::min(kBlock, M - i0);
    double acc[kBlock] = {};
    for (int64_t j = 0; j < K; ++j) {
      const float *row = A + j * lda + i0;
      for (int64_t c = 0; c < width; ++c)
        acc[c] += double(row[c]);
    }
    for (int64_t c = 0; c < width; ++c)
      dbias[i0 + c] = float(acc[c]);
  }
}

void gemm_bgrad(bool transA, bool transB, int64_t M, int64_t N, int64_t K,
                const float *A, int64_t lda, const float *B, int64_t ldb,
                float *C, int64_t ldc, float *dbias) {
  gemm(transA, transB, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
  if (M <= 0)
    return;
  sumOpARows(transA, M, K, A, lda, dbias);
}

} // namespace cpu
} // namespace sbp
