//===- gemm_epilogue.cu - GEMMs with a cuBLASLt epilogue: gemm_bias, gemm_bgrad
//-===//
#include "detail/gemm_epilogue.cuh"
#include "detail/reductions.cuh"

#include <cstdio>

namespace sbp {
namespace cuda {
namespace detail {

/// dbias[i] = sum_k A[i * lda + k], one warp per row, in double, lanes then
/// a fixed shuffle tree: deterministic. gemm_bgrad's fallback for op(A) = A.
template <class TA>
__global__ void __launch_bounds__(kThreads)
    row_sum_kernel(const TA *A, int64_t M, int64_t K, int64_t lda,
                   float *dbias) {
  const int lane = threadIdx.x % 32;
  const int64_t warps = int64_t(gridDim.x) * (kThreads / 32);
  for (int64_t i = int64_t(blockIdx.x) * (kThreads / 32) + threadIdx.x / 32;
       i < M; i += warps) {
    double s = 0.0;
    for (int64_t k = lane; k < K; k += 32)
      s += double(float(A[i * lda + k]));
#pragma unroll
    for (int off = 16; off > 0; off /= 2)
      s += __shfl_down_sync(kFullMask, s, off);
    if (lane == 0)
      dbias[i] = float(s);
  }
}

/// The bias gradient without the epilogue: the sums over the K columns of
/// op(A), rows of A or (transA) columns of A stored [K, M].
template <class TA>
void op_a_row_sums(const Context &ctx, bool transA, int64_t M, int64_t K,
                   const TA *A, int64_t lda, float *dbias) {
  if (transA) {
    column_sum(ctx, "gemm_bgrad", A, 1, K, M, dbias, 1.0, lda);
    return;
  }
  const int64_t blocks = std::min<int64_t>(ceil_div(M, kThreads / 32), 65535);
  row_sum_kernel<TA>
      <<<unsigned(blocks), kThreads, 0, ctx.stream>>>(A, M, K, lda, dbias);
  check_launch("gemm_bgrad");
}

} // namespace detail

template <class TA, class TB, class TC>
void gemm_bias(const Context &ctx, bool transA, bool transB, int64_t M,
               int64_t N, int64_t K, const TA *A, int64_t lda, const TB *B,
               int64_t ldb, const typename Identity<TC>::type *bias,
               const typename Identity<TC>::type *residual, TC *C,
               int64_t ldc) {
  if (M <= 0 || N <= 0)
    return;
  if (!A || !B || !bias || !C || K <= 0) {
    detail::fail_arg("gemm_bias", "null operand or K <= 0");
    return;
  }
  using detail::epilogue_alignment;
  const detail::EpilogueKey key{ctx.lt,
                                transA,
                                transB,
                                M,
                                N,
                                K,
                                lda,
                                ldb,
                                ldc,
                                int(detail::cuda_type<TA>()),
                                int(detail::cuda_type<TB>()),
                                int(detail::cuda_type<TC>()),
                                residual != nullptr,
                                epilogue_alignment(A),
                                epilogue_alignment(B),
                                epilogue_alignment(C),
                                epilogue_alignment(bias),
                                int(CUBLASLT_EPILOGUE_BIAS)};
  const detail::EpiloguePlan plan = detail::find_epilogue_plan(ctx, key);
  // cuBLASLt reads the bias pointer from the descriptor: set per call, in
  // stream order with this call (the descriptor is host memory).
  if (plan.usable && epilogue_alignment(bias) >= 16 &&
      cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                     &bias,
                                     sizeof(bias)) == CUBLAS_STATUS_SUCCESS) {
    const float alpha = 1.0f, beta = residual ? 1.0f : 0.0f;
    const void *c = residual ? static_cast<const void *>(residual)
                             : static_cast<const void *>(C);
    const cublasStatus_t st = cublasLtMatmul(
        ctx.lt, plan.op, &alpha, B, plan.a, A, plan.b, &beta, c, plan.c, C,
        plan.c, &plan.algo, plan.workspace ? ctx.workspace : nullptr,
        plan.workspace, ctx.stream);
    detail::check_cublas(st, "gemm_bias", "cublasLtMatmul");
    return;
  }
  gemm(ctx, transA, transB, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
  const int64_t blocks = std::min<int64_t>(
      (M * N + detail::kThreads - 1) / detail::kThreads, 65535);
  detail::bias_residual_kernel<TC>
      <<<int(blocks), detail::kThreads, 0, ctx.stream>>>(C, ldc, bias, residual,
                                                         M, N);
  detail::check_launch("gemm_bias");
}

template <class TA, class TB, class TC>
void gemm_bgrad(const Context &ctx, bool transA, bool transB, int64_t M,
                int64_t N, int64_t K, const TA *A, int64_t lda, const TB *B,
                int64_t ldb, TC *C, int64_t ldc, float *dbias) {
  if (M <= 0 || N <= 0)
    return;
  if (!A || !B || !C || !dbias) {
    detail::fail_arg("gemm_bgrad", "null operand");
    return;
  }
  if (K <= 0) { // no reduction: C and dbias are zero
    gemm(ctx, transA, transB, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
    fill(ctx, dbias, 0.0f, M);
    return;
  }
  using detail::epilogue_alignment;
  const detail::EpilogueKey key{ctx.lt,
                                transA,
                                transB,
                                M,
                                N,
                                K,
                                lda,
                                ldb,
                                ldc,
                                int(detail::cuda_type<TA>()),
                                int(detail::cuda_type<TB>()),
                                int(detail::cuda_type<TC>()),
                                false,
                                epilogue_alignment(A),
                                epilogue_alignment(B),
                                epilogue_alignment(C),
                                epilogue_alignment(dbias),
                                int(CUBLASLT_EPILOGUE_BGRADB)};
  const detail::EpiloguePlan plan = detail::find_epilogue_plan(ctx, key);
  if (plan.usable && epilogue_alignment(dbias) >= 16 &&
      cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                     &dbias,
                                     sizeof(dbias)) == CUBLAS_STATUS_SUCCESS) {
    const float alpha = 1.0f, beta = 0.0f;
    const cublasStatus_t st = cublasLtMatmul(
        ctx.lt, plan.op, &alpha, B, plan.a, A, plan.b, &beta, C, plan.c, C,
        plan.c, &plan.algo, plan.workspace ? ctx.workspace : nullptr,
        plan.workspace, ctx.stream);
    detail::check_cublas(st, "gemm_bgrad", "cublasLtMatmul");
    return;
  }
#ifndef NDEBUG
  static bool told = false;
  if (!told) {
    told = true;
    std::fprintf(stderr, "sbp::cuda::gemm_bgrad: cuBLASLt has no BGRADB "
                         "algorithm for this shape and alignment; "
                         "using the GEMM and a row-sum kernel\n");
  }
#endif
  gemm(ctx, transA, transB, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
  detail::op_a_row_sums(ctx, transA, M, K, A, lda, dbias);
}

// The float32 overloads the kernel table declares.
void gemm_bias(const Context &ctx, bool trans_a, bool trans_b, int64_t m,
               int64_t n, int64_t k, const float *a, int64_t lda,
               const float *b, int64_t ldb, const float *bias,
               const float *residual, float *c, int64_t ldc) {
  gemm_bias<float, float, float>(ctx, trans_a, trans_b, m, n, k, a, lda, b, ldb,
                                 bias, residual, c, ldc);
}

void gemm_bgrad(const Context &ctx, bool trans_a, bool trans_b, int64_t m,
                int64_t n, int64_t k, const float *a, int64_t lda,
                const float *b, int64_t ldb, float *c, int64_t ldc,
                float *dbias) {
  gemm_bgrad<float, float, float>(ctx, trans_a, trans_b, m, n, k, a, lda, b,
                                  ldb, c, ldc, dbias);
}

// The combinations the GEMMs take: A and B both float, or both bf16 (C
// float or bf16).
#define SBP_INSTANTIATE_EPILOGUES(TA, TB, TC)                                  \
  template void gemm_bias<TA, TB, TC>(                                         \
      const Context &, bool, bool, int64_t, int64_t, int64_t, const TA *,      \
      int64_t, const TB *, int64_t, const TC *, const TC *, TC *, int64_t);    \
  template void gemm_bgrad<TA, TB, TC>(                                        \
      const Context &, bool, bool, int64_t, int64_t, int64_t, const TA *,      \
      int64_t, const TB *, int64_t, TC *, int64_t, float *);
SBP_INSTANTIATE_EPILOGUES(float, float, float)
SBP_INSTANTIATE_EPILOGUES(__nv_bfloat16, __nv_bfloat16, float)
SBP_INSTANTIATE_EPILOGUES(__nv_bfloat16, __nv_bfloat16, __nv_bfloat16)
#undef SBP_INSTANTIATE_EPILOGUES

} // namespace cuda
} // namespace sbp
