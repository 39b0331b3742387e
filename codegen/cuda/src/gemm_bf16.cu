//===- gemm_bf16.cu - the gemm kernels, bfloat16 overloads -===//
#include "detail/gemm.cuh"

namespace sbp {
namespace cuda {

template <class T, class TC, detail::EnableBf16Gemm<T, TC>>
void gemm(const Context &ctx, bool transA, bool transB, int64_t M, int64_t N,
          int64_t K, float alpha, const T *A, int64_t lda, const T *B,
          int64_t ldb, float beta, TC *C, int64_t ldc) {
  detail::gemm_impl(ctx, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta,
                    C, ldc);
}

// Every element-type combination with a bf16 tensor: trainers link these.

// A and B bf16; C float or bf16.
template void gemm<__nv_bfloat16, float>(const Context &, bool, bool, int64_t,
                                         int64_t, int64_t, float,
                                         const __nv_bfloat16 *, int64_t,
                                         const __nv_bfloat16 *, int64_t, float,
                                         float *, int64_t);
template void gemm<__nv_bfloat16, __nv_bfloat16>(const Context &, bool, bool,
                                                 int64_t, int64_t, int64_t,
                                                 float, const __nv_bfloat16 *,
                                                 int64_t, const __nv_bfloat16 *,
                                                 int64_t, float,
                                                 __nv_bfloat16 *, int64_t);

void gemm_row_chunks(const Context &ctx, int64_t M, int64_t N, int64_t K,
                     int64_t chunks, float alpha, const __nv_bfloat16 *A, int64_t lda,
                     const __nv_bfloat16 *B, int64_t ldb, float *partial) {
  detail::gemm_row_chunks_impl(ctx, M, N, K, chunks, alpha, A, lda, B, ldb,
                               partial);
}

} // namespace cuda
} // namespace sbp
