//===- detail/gemm_epilogue.cuh - GEMM + bias, GEMM + bias gradient in one cuBLASLt call -*- CUDA -*-===//
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
//
// Internal to the CUDA kernel library (libsbp_cuda_kernels.a).
//
//===----------------------------------------------------------------------===//
#ifndef SBP_CUDA_DETAIL_GEMM_EPILOGUE_CUH
#define SBP_CUDA_DETAIL_GEMM_EPILOGUE_CUH

#include "detail/gemm.cuh"

#include <cuda_bf16.h>

#include <map>
#include <mutex>
#include <tuple>

namespace sbp {
namespace cuda {

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

// (handle, transposes, m, n, k, lda, ldb, ldc, types A/B/C, residual, alignments A/B/C/bias,
//  the epilogue: CUBLASLT_EPILOGUE_BIAS, or BGRADB with a float32 bias)
using EpilogueKey = std::tuple<const void *, bool, bool, int64_t, int64_t, int64_t, int64_t, int64_t, int64_t,
                               int, int, int, bool, uint32_t, uint32_t, uint32_t, uint32_t, int>;

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

/// The library function an epilogue serves, for messages.
inline const char *epilogue_name(cublasLtEpilogue_t e) {
  return e == CUBLASLT_EPILOGUE_BIAS ? "gemm_bias" : "gemm_bgrad";
}

/// The plan of `key`, made on first use and kept; thread-safe.
inline EpiloguePlan find_epilogue_plan(const Context &ctx, const EpilogueKey &key);

/// Builds the plan; a cuBLASLt error is recorded and leaves it unusable.
inline EpiloguePlan make_epilogue_plan(const Context &ctx, const EpilogueKey &key) {
  auto [lt, ta, tb, m, n, k, lda, ldb, ldc, typeA, typeB, typeC, residual, alA, alB, alC, alBias, kind] = key;
  (void)lt;
  (void)residual;
  (void)alBias;
  EpiloguePlan plan;
  cublasStatus_t st = cublasLtMatmulDescCreate(&plan.op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
  const cublasOperation_t opA = tb ? CUBLAS_OP_T : CUBLAS_OP_N; // cuBLASLt's A is our B
  const cublasOperation_t opB = ta ? CUBLAS_OP_T : CUBLAS_OP_N;
  // BIAS adds a bias in C's type; BGRADB writes the bias gradient, float32
  // (cuBLASLt computes C^T = op(B)^T op(A)^T: its B is our A, and BGRADB sums
  // its B over the reduction dimension, one value per column of its D, i.e.
  // per row of our C).
  const cublasLtEpilogue_t epilogue = cublasLtEpilogue_t(kind);
  const int32_t biasType = epilogue == CUBLASLT_EPILOGUE_BIAS ? typeC : int32_t(CUDA_R_32F);
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
  check_cublas(st, epilogue_name(epilogue), "creating the matmul descriptor and layouts");
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
  // A bias gradient's GEMM is a weight gradient (long K): no split-K and its
  // extra reduction kernel, as sbp::cuda::gemm's weight gradients.
  if (st == CUBLAS_STATUS_SUCCESS && epilogue != CUBLASLT_EPILOGUE_BIAS) {
    const uint32_t scheme = weight_grad_reduction_schemes();
    st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &scheme, sizeof(scheme));
  }
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
  check_cublas(st, epilogue_name(epilogue), "cublasLtMatmulAlgoGetHeuristic");
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


inline EpiloguePlan find_epilogue_plan(const Context &ctx, const EpilogueKey &key) {
  std::lock_guard<std::mutex> lock(epilogue_mutex());
  auto &plans = epilogue_plans();
  auto it = plans.find(key);
  if (it == plans.end())
    it = plans.emplace(key, make_epilogue_plan(ctx, key)).first;
  return it->second;
}

} // namespace detail

} // namespace cuda
} // namespace sbp

#endif // SBP_CUDA_DETAIL_GEMM_EPILOGUE_CUH
