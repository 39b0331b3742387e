//===- cuda_gemm_epilogue.cuh - GEMM + bias (+ residual) in one cuBLASLt call -*- CUDA -*-===//
//
// The CUDA twin of sbp::cpu::gemm_bias, for the `gemm_bias` and
// `gemm_bias_residual` kernels of `sbp-fuse-epilogues`:
//
//   C[M,N] = op(A) op(B) + bias[N]  (+ residual[M,N])
//
// one cublasLtMatmul with CUBLASLT_EPILOGUE_BIAS, and for the residual
// beta = 1 with the residual as cuBLASLt's C operand (D = C separately). A and
// B may be float or bf16; C, bias and residual share one type (cuBLASLt takes
// the bias in the output's type), float or bf16; accumulation in float32.
// Row-major as sbp::cuda::gemm: cuBLASLt (column-major) computes C^T, so the
// bias runs along its rows. When cuBLASLt finds no algorithm (odd alignments)
// the call falls back to sbp::cuda::gemm and a bias kernel: same result, two
// passes. Plans are made on first use (host work; warm up before capturing a
// CUDA graph, as the trainers' first step does) and kept for the process.
//
//===----------------------------------------------------------------------===//
#ifndef SBP_CUDA_GEMM_EPILOGUE_CUH
#define SBP_CUDA_GEMM_EPILOGUE_CUH

#include "sbp/cuda_kernels.cuh"

#include <cuda_bf16.h>

#include <map>
#include <mutex>
#include <tuple>

namespace sbp {
namespace cuda {

template <class T> struct Identity { using type = T; };

/// C = op(A) op(B) + bias (+ residual, when not null). residual may not alias C.
template <class TA, class TB, class TC>
void gemm_bias(const Context &ctx, bool transA, bool transB, int64_t M, int64_t N, int64_t K, const TA *A,
               int64_t lda, const TB *B, int64_t ldb, const typename Identity<TC>::type *bias,
               const typename Identity<TC>::type *residual, TC *C, int64_t ldc);

namespace detail {

template <class T> constexpr cudaDataType_t cuda_type();
template <> constexpr cudaDataType_t cuda_type<float>() { return CUDA_R_32F; }
template <> constexpr cudaDataType_t cuda_type<__nv_bfloat16>() { return CUDA_R_16BF; }

/// Largest power of two up to 16 bytes dividing the address.
inline uint32_t epilogue_alignment(const void *p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t al = 16;
  while (al > 1 && (a & (al - 1)) != 0)
    al >>= 1;
  return al;
}

// (handle, transposes, m, n, k, lda, ldb, ldc, types A/B/C, residual, alignments A/B/C/bias)
using EpilogueKey = std::tuple<const void *, bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                               int, int, int, bool, uint32_t, uint32_t, uint32_t, uint32_t>;

struct EpiloguePlan {
  bool usable = false; // false: cuBLASLt has no algorithm, use the fallback
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  size_t workspace = 0;
};

inline std::mutex &epilogue_mutex() {
  static std::mutex mu;
  return mu;
}
/// Never destroyed: trainers stay loaded (RTLD_NODELETE) until the process ends.
inline std::map<EpilogueKey, EpiloguePlan> &epilogue_plans() {
  static auto *plans = new std::map<EpilogueKey, EpiloguePlan>;
  return *plans;
}

/// Builds the plan; a cuBLASLt error is recorded and leaves it unusable.
inline EpiloguePlan make_epilogue_plan(const Context &ctx, const EpilogueKey &key) {
  auto [lt, ta, tb, m, n, k, lda, ldb, ldc, typeA, typeB, typeC, residual, alA, alB, alC, alBias] = key;
  (void)lt;
  (void)residual;
  (void)alBias;
  EpiloguePlan plan;
  cublasStatus_t st = cublasLtMatmulDescCreate(&plan.op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
  const cublasOperation_t opA = tb ? CUBLAS_OP_T : CUBLAS_OP_N; // cuBLASLt's A is our B
  const cublasOperation_t opB = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
  const int32_t biasType = typeC;
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSA, &opA, sizeof(opA));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSB, &opB, sizeof(opB));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epilogue, sizeof(epilogue));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &biasType, sizeof(biasType));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatrixLayoutCreate(&plan.a, cudaDataType_t(typeB), uint64_t(tb ? k : n), uint64_t(tb ? n : k), ldb);
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatrixLayoutCreate(&plan.b, cudaDataType_t(typeA), uint64_t(ta ? m : k), uint64_t(ta ? k : m), lda);
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatrixLayoutCreate(&plan.c, cudaDataType_t(typeC), uint64_t(n), uint64_t(m), ldc);
  check_cublas(st, "gemm_bias", "creating the matmul descriptor and layouts");
  if (st != CUBLAS_STATUS_SUCCESS)
    return plan;
  cublasLtMatmulPreference_t pref = nullptr;
  st = cublasLtMatmulPreferenceCreate(&pref);
  const uint64_t ws = ctx.workspace ? uint64_t(ctx.workspace_bytes) : 0;
  const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> aligns[] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, alB},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, alA},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, alC},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, alC}};
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
  for (auto [attr, value] : aligns)
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatmulPreferenceSetAttribute(pref, attr, &value, sizeof(value));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  if (st == CUBLAS_STATUS_SUCCESS) {
    st = cublasLtMatmulAlgoGetHeuristic(ctx.lt, plan.op, plan.a, plan.b, plan.c, plan.c, pref, 1, &result, &found);
    if (st == CUBLAS_STATUS_NOT_SUPPORTED) { // no algorithm: the fallback serves
      st = CUBLAS_STATUS_SUCCESS;
      found = 0;
    }
  }
  if (pref)
    cublasLtMatmulPreferenceDestroy(pref);
  check_cublas(st, "gemm_bias", "cublasLtMatmulAlgoGetHeuristic");
  if (st == CUBLAS_STATUS_SUCCESS && found > 0 && result.state == CUBLAS_STATUS_SUCCESS) {
    plan.usable = true;
    plan.algo = result.algo;
    plan.workspace = result.workspaceSize;
  }
  return plan;
}

/// C[r, :] += bias (+ residual[r, :]), in float: the fallback's second pass.
template <class TC>
__global__ void __launch_bounds__(kThreads)
    bias_residual_kernel(TC *C, int64_t ldc, const TC *bias, const TC *residual, int64_t M, int64_t N) {
  const int64_t total = M * N;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / N, c = i - r * N;
    float v = float(C[r * ldc + c]) + float(bias[c]);
    if (residual)
      v += float(residual[r * ldc + c]);
    C[r * ldc + c] = TC(v);
  }
}

} // namespace detail

template <class TA, class TB, class TC>
void gemm_bias(const Context &ctx, bool transA, bool transB, int64_t M, int64_t N, int64_t K, const TA *A,
               int64_t lda, const TB *B, int64_t ldb, const typename Identity<TC>::type *bias,
               const typename Identity<TC>::type *residual, TC *C, int64_t ldc) {
  if (M <= 0 || N <= 0)
    return;
  if (!A || !B || !bias || !C || K <= 0) {
    detail::fail_arg("gemm_bias", "null operand or K <= 0");
    return;
  }
  using detail::epilogue_alignment;
  const detail::EpilogueKey key{ctx.lt, transA, transB, M, N, K, lda, ldb, ldc,
                                int(detail::cuda_type<TA>()), int(detail::cuda_type<TB>()),
                                int(detail::cuda_type<TC>()), residual != nullptr, epilogue_alignment(A),
                                epilogue_alignment(B), epilogue_alignment(C), epilogue_alignment(bias)};
  detail::EpiloguePlan plan;
  {
    std::lock_guard<std::mutex> lock(detail::epilogue_mutex());
    auto &plans = detail::epilogue_plans();
    auto it = plans.find(key);
    if (it == plans.end())
      it = plans.emplace(key, detail::make_epilogue_plan(ctx, key)).first;
    plan = it->second;
  }
  // cuBLASLt reads the bias pointer from the descriptor: set per call, in
  // stream order with this call (the descriptor is host memory).
  if (plan.usable && epilogue_alignment(bias) >= 16 &&
      cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)) ==
          CUBLAS_STATUS_SUCCESS) {
    const float alpha = 1.0f, beta = residual ? 1.0f : 0.0f;
    const void *c = residual ? static_cast<const void *>(residual) : static_cast<const void *>(C);
    const cublasStatus_t st =
        cublasLtMatmul(ctx.lt, plan.op, &alpha, B, plan.a, A, plan.b, &beta, c, plan.c, C, plan.c, &plan.algo,
                       plan.workspace ? ctx.workspace : nullptr, plan.workspace, ctx.stream);
    detail::check_cublas(st, "gemm_bias", "cublasLtMatmul");
    return;
  }
  gemm(ctx, transA, transB, M, N, K, 1.0f, A, lda, B, ldb, 0.0f, C, ldc);
  const int64_t blocks = std::min<int64_t>((M * N + detail::kThreads - 1) / detail::kThreads, 65535);
  detail::bias_residual_kernel<TC><<<int(blocks), detail::kThreads, 0, ctx.stream>>>(C, ldc, bias, residual, M, N);
  detail::check_launch("gemm_bias");
}

} // namespace cuda
} // namespace sbp

#endif // SBP_CUDA_GEMM_EPILOGUE_CUH
