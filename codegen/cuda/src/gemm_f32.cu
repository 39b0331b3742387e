//===- gemm_f32.cu - the gemm kernels, float32 -===//
#include "detail/gemm.cuh"

namespace sbp {
namespace cuda {

void gemm(const Context &ctx, bool transA, bool transB, int64_t M, int64_t N,
          int64_t K, float alpha, const float *A, int64_t lda, const float *B,
          int64_t ldb, float beta, float *C, int64_t ldc) {
  detail::gemm_impl(ctx, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta,
                    C, ldc);
}

void gemm_row_chunks(const Context &ctx, int64_t M, int64_t N, int64_t K,
                     int64_t chunks, float alpha, const float *A, int64_t lda,
                     const float *B, int64_t ldb, float *partial) {
  detail::gemm_row_chunks_impl(ctx, M, N, K, chunks, alpha, A, lda, B, ldb,
                               partial);
}

} // namespace cuda
} // namespace sbp
