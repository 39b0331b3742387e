//===- detail/gemm.cuh - GEMM through cuBLASLt (plans, fallback kernel) -*- CUDA -*-===//
//
// Internal to the CUDA kernel library (libsbp_cuda_kernels.a): kernel
// bodies and launch templates, included by the translation units in
// codegen/cuda/src, never by trainers (they include <sbp/cuda_kernels.h>).
//
//===----------------------------------------------------------------------===//
#ifndef SBP_CUDA_DETAIL_GEMM_CUH
#define SBP_CUDA_DETAIL_GEMM_CUH

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include "detail/pointwise.cuh"

namespace sbp {
namespace cuda {
namespace detail {

//===--- GEMM through cuBLASLt --------------------------------------------===//
// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: cuBLASLt
// runs m' = N, n' = M with B in the A slot. A plan (descriptors, layouts and
// the heuristic's algorithm) is made once per shape, strides, transposes,
// pointer alignment, math mode and data types, and kept in the Context.
// bf16 operands (CUDA_R_16BF) run with CUBLAS_COMPUTE_32F, C and D bf16 or
// float.

struct GemmKey {
  int64_t m, n, k, lda, ldb, ldc;
  uint32_t flags;  // transA | transB << 1 | tf32 << 2
  uint32_t aligns; // log2 alignment of A | B << 8 | C << 16
  uint32_t types;  // cudaDataType of A and B | of C (and D) << 8
  // > 1: `batch` products of k rows each, strided (gemm_row_chunks).
  int64_t batch = 1;
  bool operator<(const GemmKey &o) const {
    return std::tie(m, n, k, lda, ldb, ldc, flags, aligns, types, batch) <
           std::tie(o.m, o.n, o.k, o.lda, o.ldb, o.ldc, o.flags, o.aligns,
                    o.types, o.batch);
  }
};

/// One algorithm the heuristic offers for a plan, with its workspace.
struct GemmAlgo {
  cublasLtMatmulAlgo_t algo{};
  size_t workspace = 0;
};

/// Algorithms a weight-gradient plan asks the heuristic for and times.
constexpr int kGemmTuneCandidates = 8;

struct GemmPlan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  size_t workspace = 0;
  bool fallback = false; // no cuBLASLt algorithm: gemm_fallback_kernel
  // The heuristic's other algorithms, best first (candidates[0] == algo),
  // timed on the first call when tuning applies; empty afterwards.
  std::vector<GemmAlgo> candidates;
};

inline void destroy_plan(GemmPlan &p) {
  if (p.op)
    cublasLtMatmulDescDestroy(p.op);
  if (p.a)
    cublasLtMatrixLayoutDestroy(p.a);
  if (p.b)
    cublasLtMatrixLayoutDestroy(p.b);
  if (p.c)
    cublasLtMatrixLayoutDestroy(p.c);
  p = GemmPlan{};
}

struct GemmPlanCache {
  std::mutex mu;
  std::map<GemmKey, GemmPlan> plans;
  int tuned = 0; // plans whose algorithm gemm_tune chose by timing
  ~GemmPlanCache() {
    for (auto &kv : plans)
      destroy_plan(kv.second);
  }
};

/// Largest power of two (`least`..256 bytes) dividing the address: 4 for
/// float operands, 2 for bf16 ones.
inline uint32_t alignment_of(const void *p, uint32_t least = 4) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t al = 256;
  while (al > least && (a & (al - 1)) != 0)
    al >>= 1;
  return al;
}
inline uint32_t log2u(uint32_t v) {
  uint32_t r = 0;
  while (v > 1) {
    v >>= 1;
    ++r;
  }
  return r;
}

/// The reduction schemes a weight-gradient GEMM (op(A) = A^T: dW = dy^T x,
/// K = the batch's rows, M x N = a weight) may use. For these shapes the
/// heuristic picks split-K; its default reductions add the partial products
/// in a second kernel (`splitKreduce`): one more launch per GEMM. INPLACE
/// split-K adds them in the output itself, in a fixed order (counters in the
/// workspace: deterministic), so it keeps split-K's parallelism without the
/// extra launch; NONE alone is far slower (a 192 x 192 weight is a handful of
/// tiles over K = 50k rows: 4x the step time on the H100). The other GEMMs
/// (K = a feature count) keep the heuristic's full choice.
/// SBP_GEMM_REDUCTION = none | inplace | any overrides it (for benchmarks).
inline uint32_t weight_grad_reduction_schemes() {
  static const uint32_t schemes = [] {
    const char *v = std::getenv("SBP_GEMM_REDUCTION");
    if (v && std::strcmp(v, "none") == 0)
      return uint32_t(CUBLASLT_REDUCTION_SCHEME_NONE);
    if (v && std::strcmp(v, "any") == 0)
      return uint32_t(CUBLASLT_REDUCTION_SCHEME_MASK);
    return uint32_t(CUBLASLT_REDUCTION_SCHEME_NONE | CUBLASLT_REDUCTION_SCHEME_INPLACE);
  }();
  return schemes;
}

/// Whether a weight-gradient GEMM's first call times the heuristic's
/// candidates (gemm_tune). SBP_GEMM_AUTOTUNE=0 keeps its first choice.
inline bool gemm_tuning_enabled() {
  static const bool on = [] {
    const char *v = std::getenv("SBP_GEMM_AUTOTUNE");
    return !(v && std::strcmp(v, "0") == 0);
  }();
  return on;
}

/// SBP_GEMM_LOG=1 prints each tuned shape's candidates and choice to stderr.
inline bool gemm_tune_logging() {
  static const bool on = [] {
    const char *v = std::getenv("SBP_GEMM_LOG");
    return v && std::strcmp(v, "1") == 0;
  }();
  return on;
}

/// The batch of a row-chunk plan (gemm_row_chunks: op(A) = A^T, op(B) = B):
/// product s reads rows [s k, (s + 1) k) of A and B and writes the s-th
/// packed m x n block of C.
inline bool set_row_chunk_strides(const GemmKey &key, GemmPlan &plan) {
  const int32_t count = int32_t(key.batch);
  const int64_t strides[3] = {key.k * key.ldb, key.k * key.lda, key.m * key.n};
  cublasLtMatrixLayout_t layouts[3] = {plan.a, plan.b, plan.c}; // B, A, C
  cublasStatus_t st = CUBLAS_STATUS_SUCCESS;
  for (int i = 0; i < 3 && st == CUBLAS_STATUS_SUCCESS; ++i) {
    st = cublasLtMatrixLayoutSetAttribute(layouts[i], CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &count, sizeof(count));
    if (st == CUBLAS_STATUS_SUCCESS)
      st = cublasLtMatrixLayoutSetAttribute(layouts[i], CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &strides[i],
                                            sizeof(strides[i]));
  }
  check_cublas(st, "gemm_row_chunks", "cublasLtMatrixLayoutSetAttribute");
  return st == CUBLAS_STATUS_SUCCESS;
}

/// Makes the plan of `key`; false (with the failure recorded) if cuBLASLt
/// refuses the shape or finds no algorithm.
inline bool make_plan(const Context &ctx, const GemmKey &key, GemmPlan &plan) {
  const bool ta = key.flags & 1u, tb = key.flags & 2u, tf32 = key.flags & 4u;
  const cudaDataType_t ab_type = cudaDataType_t(key.types & 0xffu);
  const cudaDataType_t c_type = cudaDataType_t((key.types >> 8) & 0xffu);
  const cublasComputeType_t compute =
      tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  cublasStatus_t st = cublasLtMatmulDescCreate(&plan.op, compute, CUDA_R_32F);
  check_cublas(st, "gemm", "cublasLtMatmulDescCreate");
  if (st != CUBLAS_STATUS_SUCCESS)
    return false;
  const cublasOperation_t opA = tb ? CUBLAS_OP_T : CUBLAS_OP_N; // B's slot
  const cublasOperation_t opB = ta ? CUBLAS_OP_T : CUBLAS_OP_N; // A's slot
  st = cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSA,
                                      &opA, sizeof(opA));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulDescSetAttribute(plan.op, CUBLASLT_MATMUL_DESC_TRANSB,
                                        &opB, sizeof(opB));
  check_cublas(st, "gemm", "cublasLtMatmulDescSetAttribute");
  if (st != CUBLAS_STATUS_SUCCESS)
    return false;
  // Column-major views: the "A" operand is B (N x K as op'd), "B" is A.
  st =
      cublasLtMatrixLayoutCreate(&plan.a, ab_type, uint64_t(tb ? key.k : key.n),
                                 uint64_t(tb ? key.n : key.k), key.ldb);
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatrixLayoutCreate(&plan.b, ab_type,
                                    uint64_t(ta ? key.m : key.k),
                                    uint64_t(ta ? key.k : key.m), key.lda);
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatrixLayoutCreate(&plan.c, c_type, uint64_t(key.n),
                                    uint64_t(key.m), key.ldc);
  check_cublas(st, "gemm", "cublasLtMatrixLayoutCreate");
  if (st != CUBLAS_STATUS_SUCCESS)
    return false;
  if (key.batch > 1 && !set_row_chunk_strides(key, plan))
    return false;
  cublasLtMatmulPreference_t pref = nullptr;
  st = cublasLtMatmulPreferenceCreate(&pref);
  check_cublas(st, "gemm", "cublasLtMatmulPreferenceCreate");
  if (st != CUBLAS_STATUS_SUCCESS)
    return false;
  const uint64_t ws = ctx.workspace ? uint64_t(ctx.workspace_bytes) : 0;
  // Alignments of the cuBLASLt operands: its A is our B, its B our A.
  const uint32_t slotA = 1u << ((key.aligns >> 8) & 0xffu);
  const uint32_t slotB = 1u << (key.aligns & 0xffu);
  const uint32_t alC = 1u << ((key.aligns >> 16) & 0xffu);
  st = cublasLtMatmulPreferenceSetAttribute(
      pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &slotA,
        sizeof(slotA));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &slotB,
        sizeof(slotB));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &alC, sizeof(alC));
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &alC, sizeof(alC));
  if (st == CUBLAS_STATUS_SUCCESS && ta) {
    // A batch of row chunks is parallel enough without split-K, and its
    // partial products are added by the caller (no second launch).
    const uint32_t scheme = key.batch > 1 ? uint32_t(CUBLASLT_REDUCTION_SCHEME_NONE)
                                          : weight_grad_reduction_schemes();
    st = cublasLtMatmulPreferenceSetAttribute(
        pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &scheme,
        sizeof(scheme));
  }
  check_cublas(st, "gemm", "cublasLtMatmulPreferenceSetAttribute");
  // Weight gradients keep the heuristic's next choices for gemm_tune.
  const int wanted = ta && gemm_tuning_enabled() ? kGemmTuneCandidates : 1;
  cublasLtMatmulHeuristicResult_t results[kGemmTuneCandidates]{};
  int found = 0;
  if (st == CUBLAS_STATUS_SUCCESS) {
    st = cublasLtMatmulAlgoGetHeuristic(ctx.lt, plan.op, plan.a, plan.b, plan.c,
                                        plan.c, pref, wanted, results, &found);
    if (st == CUBLAS_STATUS_NOT_SUPPORTED) {
      st = CUBLAS_STATUS_SUCCESS;
      found = 0;
    }
    check_cublas(st, "gemm", "cublasLtMatmulAlgoGetHeuristic");
  }
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS)
    return false;
  if (found < 1 || results[0].state != CUBLAS_STATUS_SUCCESS) {
    plan.fallback = true; // e.g. 4-byte aligned operands
    return true;
  }
  plan.algo = results[0].algo;
  plan.workspace = results[0].workspaceSize;
  for (int i = 0; i < found && found > 1; ++i)
    if (results[i].state == CUBLAS_STATUS_SUCCESS)
      plan.candidates.push_back({results[i].algo, results[i].workspaceSize});
  return true;
}

/// Plain shared-memory SGEMM (16 x 16 tiles, fp32 FMA) for what cuBLASLt
/// declines. Row-major, both transposes, strides; beta == 0: C not read.
/// A and B of type TAB, C of type TC (float or bf16), fp32 arithmetic.
template <class TAB, class TC>
__global__ void __launch_bounds__(kThreads)
    gemm_fallback_kernel(bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                         float alpha, const TAB *A, int64_t lda, const TAB *B,
                         int64_t ldb, float beta, TC *C, int64_t ldc) {
  __shared__ float As[16][17], Bs[16][17];
  const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;
  const int64_t col = int64_t(blockIdx.x) * 16 + tx;
  const int64_t row_tiles = (M + 15) / 16;
  for (int64_t rt = blockIdx.y; rt < row_tiles; rt += gridDim.y) {
    const int64_t row = rt * 16 + ty;
    float acc = 0.0f;
    for (int64_t k0 = 0; k0 < K; k0 += 16) {
      const int64_t ak = k0 + tx, bk = k0 + ty;
      As[ty][tx] = row < M && ak < K
                       ? to_f32(ta ? A[ak * lda + row] : A[row * lda + ak])
                       : 0.0f;
      Bs[ty][tx] = bk < K && col < N
                       ? to_f32(tb ? B[col * ldb + bk] : B[bk * ldb + col])
                       : 0.0f;
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < 16; ++kk)
        acc = fmaf(As[ty][kk], Bs[kk][tx], acc);
      __syncthreads();
    }
    if (row < M && col < N) {
      TC *c = C + row * ldc + col;
      *c = from_f32<TC>(beta == 0.0f ? alpha * acc
                                     : alpha * acc + beta * to_f32(*c));
    }
  }
}

/// gemm through gemm_fallback_kernel (M, N > 0, K > 0).
template <class TAB, class TC>
inline void gemm_fallback_impl(const Context &ctx, bool transA, bool transB,
                               int64_t M, int64_t N, int64_t K, float alpha,
                               const TAB *A, int64_t lda, const TAB *B,
                               int64_t ldb, float beta, TC *C, int64_t ldc) {
  const int64_t col_tiles = ceil_div(N, 16), row_tiles = ceil_div(M, 16);
  if (col_tiles > 0x7fffffff) {
    fail_arg("gemm", "N too large for the fallback kernel");
    return;
  }
  const dim3 grid{unsigned(col_tiles),
                  unsigned(row_tiles < 65535 ? row_tiles : 65535)};
  gemm_fallback_kernel<<<grid, kThreads, 0, ctx.stream>>>(
      transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  check_launch("gemm");
}

inline void gemm_fallback(const Context &ctx, bool transA, bool transB,
                          int64_t M, int64_t N, int64_t K, float alpha,
                          const float *A, int64_t lda, const float *B,
                          int64_t ldb, float beta, float *C, int64_t ldc) {
  gemm_fallback_impl(ctx, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta,
                     C, ldc);
}
inline void gemm_fallback(const Context &ctx, bool transA, bool transB,
                          int64_t M, int64_t N, int64_t K, float alpha,
                          const __nv_bfloat16 *A, int64_t lda,
                          const __nv_bfloat16 *B, int64_t ldb, float beta,
                          __nv_bfloat16 *C, int64_t ldc) {
  gemm_fallback_impl(ctx, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta,
                     C, ldc);
}
inline void gemm_fallback(const Context &ctx, bool transA, bool transB,
                          int64_t M, int64_t N, int64_t K, float alpha,
                          const __nv_bfloat16 *A, int64_t lda,
                          const __nv_bfloat16 *B, int64_t ldb, float beta,
                          float *C, int64_t ldc) {
  gemm_fallback_impl(ctx, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta,
                     C, ldc);
}

/// C[i,j] = beta * C[i,j] (beta == 0: 0, C not read): the K == 0 or
/// alpha == 0 product.
template <class I, class TC>
__global__ void __launch_bounds__(kThreads)
    gemm_scale_kernel(TC *C, I M, I N, I ldc, float beta) {
  const I total = M * N, stride = I(gridDim.x) * kThreads;
  for (I e = I(blockIdx.x) * kThreads + threadIdx.x; e < total; e += stride) {
    TC *c = C + (e / N) * ldc + e % N;
    *c = from_f32<TC>(beta == 0.0f ? 0.0f : to_f32(*c) * beta);
  }
}

/// An algorithm's cuBLASLt id, split-K count and reduction scheme, for the log.
inline void describe_algo(const cublasLtMatmulAlgo_t &algo, char (&out)[64]) {
  int32_t id = -1, splits = 1;
  uint32_t scheme = 0;
  size_t got = 0;
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_ID, &id,
                                       sizeof(id), &got);
  cublasLtMatmulAlgoConfigGetAttribute(&algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM,
                                       &splits, sizeof(splits), &got);
  cublasLtMatmulAlgoConfigGetAttribute(
      &algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME, &scheme, sizeof(scheme),
      &got);
  std::snprintf(out, sizeof(out), "algo %d split-K %d reduction %u", id,
                splits, scheme);
}

/// One cublasLtMatmul of `plan` with `algo` (and its workspace): row-major
/// C = alpha op(A) op(B) + beta C, so B goes in cuBLASLt's A slot and A in
/// its B slot (see the top of this file); C is read only where beta != 0.
inline cublasStatus_t run_plan(const Context &ctx, const GemmPlan &plan,
                               const GemmAlgo &algo, float alpha,
                               const void *A, const void *B, float beta,
                               void *C) {
  return cublasLtMatmul(ctx.lt, plan.op, &alpha, B, plan.a, A, plan.b, &beta,
                        C, plan.c, C, plan.c, &algo.algo,
                        algo.workspace ? ctx.workspace : nullptr,
                        algo.workspace, ctx.stream);
}

/// Times a weight-gradient plan's candidates on the first call's own operands
/// (beta == 0: each run overwrites C, and the real call follows) and keeps the
/// fastest if it beats the heuristic's first choice by 5%: a margin, and a
/// median of 5 runs each, so that the same GPU model usually makes the same
/// choice (SBP_GEMM_AUTOTUNE=0 fixes it, and so the bits, across processes).
/// Only on a stream that is not being captured (the trainer's first step runs
/// uncaptured), and not while an earlier launch error waits to be reported
/// (it is left for the caller's check); a failure keeps the heuristic's
/// choice. True if it timed the candidates. For the shapes of SBP's kept rows
/// (K = half the batch's rows) the heuristic's first choice can be a serial
/// in-place split-K that takes 0.75x the dense shape's time.
template <class TAB, class TC>
inline bool gemm_tune(const Context &ctx, const GemmKey &key, GemmPlan &plan,
                      float alpha, const TAB *A, const TAB *B, TC *C) {
  std::vector<GemmAlgo> candidates;
  candidates.swap(plan.candidates);
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  if (cudaPeekAtLastError() != cudaSuccess ||
      cudaStreamIsCapturing(ctx.stream, &capture) != cudaSuccess ||
      capture != cudaStreamCaptureStatusNone)
    return false;
  // This thread's synchronising calls must not invalidate a global-mode
  // capture that another thread runs meanwhile.
  cudaStreamCaptureMode mode = cudaStreamCaptureModeThreadLocal;
  cudaThreadExchangeStreamCaptureMode(&mode);
  if (cudaStreamSynchronize(ctx.stream) != cudaSuccess) { // the step's own error
    cudaThreadExchangeStreamCaptureMode(&mode);
    return false;
  }
  constexpr int kRuns = 5;
  cudaEvent_t marks[kRuns + 1] = {};
  bool ready = true;
  for (cudaEvent_t &e : marks)
    ready = ready && cudaEventCreate(&e) == cudaSuccess;
  const float beta = 0.0f;
  const auto run = [&](const GemmAlgo &g) {
    return run_plan(ctx, plan, g, alpha, A, B, beta, C) == CUBLAS_STATUS_SUCCESS;
  };
  std::vector<float> ms(candidates.size(), INFINITY);
  for (size_t i = 0; ready && i < candidates.size(); ++i) {
    if (!run(candidates[i])) // also the warm-up
      continue;
    bool ok = cudaEventRecord(marks[0], ctx.stream) == cudaSuccess;
    for (int r = 0; r < kRuns && ok; ++r)
      ok = run(candidates[i]) &&
           cudaEventRecord(marks[r + 1], ctx.stream) == cudaSuccess;
    ok = ok && cudaEventSynchronize(marks[kRuns]) == cudaSuccess;
    float each[kRuns];
    for (int r = 0; r < kRuns && ok; ++r)
      ok = cudaEventElapsedTime(&each[r], marks[r], marks[r + 1]) == cudaSuccess;
    if (ok) {
      std::sort(each, each + kRuns);
      ms[i] = each[kRuns / 2];
    }
  }
  for (cudaEvent_t e : marks)
    if (e)
      cudaEventDestroy(e);
  (void)cudaGetLastError(); // only the timing's own errors: none waited before
  cudaThreadExchangeStreamCaptureMode(&mode);
  size_t best = 0;
  for (size_t i = 1; i < ms.size(); ++i)
    if (ms[i] < ms[best])
      best = i;
  if (best != 0 && !(ms[best] < 0.95f * ms[0]))
    best = 0;
  if (std::isfinite(ms[best])) {
    plan.algo = candidates[best].algo;
    plan.workspace = candidates[best].workspace;
  }
  if (gemm_tune_logging()) {
    std::fprintf(stderr, "sbp gemm tune: M %lld N %lld K %lld (dW = dy^T x)\n",
                 (long long)key.m, (long long)key.n, (long long)key.k);
    for (size_t i = 0; i < ms.size(); ++i) {
      char what[64];
      describe_algo(candidates[i].algo, what);
      std::fprintf(stderr, "  %c [%zu] %8.1f us  %s\n", i == best ? '*' : ' ',
                   i, double(ms[i]) * 1e3, what);
    }
  }
  return ready;
}

template <class T> constexpr cudaDataType_t gemm_data_type() {
  return kIsBf16<T> ? CUDA_R_16BF : CUDA_R_32F;
}

/// The plan of `key` from the context's cache, made (and, for a weight
/// gradient with beta == 0, tuned on these operands) on its first use; false
/// if cuBLASLt refused it (the failure is recorded).
template <class TAB, class TC>
inline bool find_plan(const Context &ctx, const GemmKey &key, float alpha,
                      const TAB *A, const TAB *B, float beta, TC *C,
                      GemmPlan &plan) {
  bool cached = false;
  {
    std::lock_guard<std::mutex> lock(ctx.gemm_plans->mu);
    auto it = ctx.gemm_plans->plans.find(key);
    if ((cached = it != ctx.gemm_plans->plans.end()))
      plan = it->second;
  }
  if (cached)
    return true;
  // Made and tuned outside the lock: tuning synchronises.
  GemmPlan fresh;
  if (!make_plan(ctx, key, fresh)) {
    destroy_plan(fresh);
    return false;
  }
  const bool tuned = !fresh.candidates.empty() && beta == 0.0f &&
                     gemm_tune(ctx, key, fresh, alpha, A, B, C);
  fresh.candidates.clear();
  std::lock_guard<std::mutex> lock(ctx.gemm_plans->mu);
  const auto [it, inserted] = ctx.gemm_plans->plans.emplace(key, fresh);
  if (!inserted)
    destroy_plan(fresh); // another thread made this plan meanwhile
  else if (tuned)
    ++ctx.gemm_plans->tuned;
  plan = it->second;
  return true;
}

/// gemm for A, B of type TAB and C of type TC (float or bf16).
template <class TAB, class TC>
inline void gemm_impl(const Context &ctx, bool transA, bool transB, int64_t M,
                      int64_t N, int64_t K, float alpha, const TAB *A,
                      int64_t lda, const TAB *B, int64_t ldb, float beta, TC *C,
                      int64_t ldc) {
  if (M <= 0 || N <= 0)
    return;
  if (K <= 0 || alpha == 0.0f) { // C = beta * C, A and B not read
    if (beta == 1.0f)
      return;
    const unsigned grid = grid_for(ctx, M * N);
    if (M * N < kMaxIndex32 && (M - 1) * ldc + N < kMaxIndex32)
      gemm_scale_kernel<uint32_t><<<grid, kThreads, 0, ctx.stream>>>(
          C, uint32_t(M), uint32_t(N), uint32_t(ldc), beta);
    else
      gemm_scale_kernel<int64_t>
          <<<grid, kThreads, 0, ctx.stream>>>(C, M, N, ldc, beta);
    check_launch("gemm");
    return;
  }
  if (!ctx.lt || !ctx.gemm_plans) {
    fail_arg("gemm", "context not initialised (call context_init)");
    return;
  }
  // bf16 operands always run CUBLAS_COMPUTE_32F (allow_tf32 is for float).
  constexpr bool kBf16 = kIsBf16<TAB>;
  constexpr uint32_t kLeast = kBf16 ? 2u : 4u;
  const bool tf32 = !kBf16 && ctx.allow_tf32;
  GemmKey key{
      M,
      N,
      K,
      lda,
      ldb,
      ldc,
      uint32_t(transA) | uint32_t(transB) << 1 | uint32_t(tf32) << 2,
      log2u(alignment_of(A, kLeast)) | log2u(alignment_of(B, kLeast)) << 8 |
          log2u(alignment_of(C, kIsBf16<TC> ? 2u : 4u)) << 16,
      uint32_t(gemm_data_type<TAB>()) | uint32_t(gemm_data_type<TC>()) << 8};
  GemmPlan plan;
  if (!find_plan(ctx, key, alpha, A, B, beta, C, plan))
    return;
  if (plan.fallback) {
    gemm_fallback_impl(ctx, transA, transB, M, N, K, alpha, A, lda, B, ldb,
                       beta, C, ldc);
    return;
  }
  check_cublas(run_plan(ctx, plan, {plan.algo, plan.workspace}, alpha, A, B,
                        beta, C),
               "gemm", "cublasLtMatmul");
}


/// gemm_row_chunks for A, B of type TAB: one strided-batched cuBLASLt call
/// (no split-K: the chunks are its parallelism), or the fallback kernel once
/// per chunk where cuBLASLt declines the shape.
template <class TAB>
inline void gemm_row_chunks_impl(const Context &ctx, int64_t M, int64_t N,
                                 int64_t K, int64_t chunks, float alpha,
                                 const TAB *A, int64_t lda, const TAB *B,
                                 int64_t ldb, float *partial) {
  if (M <= 0 || N <= 0)
    return;
  if (chunks < 1 || K < chunks || K % chunks != 0 || chunks > 0x7fffffff) {
    fail_arg("gemm_row_chunks", "the rows K must split into `chunks` equal chunks");
    return;
  }
  if (!ctx.lt || !ctx.gemm_plans) {
    fail_arg("gemm_row_chunks", "context not initialised (call context_init)");
    return;
  }
  constexpr bool kBf16 = kIsBf16<TAB>;
  constexpr uint32_t kLeast = kBf16 ? 2u : 4u;
  const bool tf32 = !kBf16 && ctx.allow_tf32;
  const int64_t rows = K / chunks;
  // Every chunk's operands are aligned as the first chunk's only if the
  // chunk strides keep the alignment: key the plan on the weaker of both.
  const uint32_t alignA = std::min(alignment_of(A, kLeast),
                                   alignment_of(A + rows * lda, kLeast));
  const uint32_t alignB = std::min(alignment_of(B, kLeast),
                                   alignment_of(B + rows * ldb, kLeast));
  const uint32_t alignC = std::min(alignment_of(partial, 4u),
                                   alignment_of(partial + M * N, 4u));
  GemmKey key{M,
              N,
              rows,
              lda,
              ldb,
              N,
              1u | uint32_t(tf32) << 2,
              log2u(alignA) | log2u(alignB) << 8 | log2u(alignC) << 16,
              uint32_t(gemm_data_type<TAB>()) | uint32_t(CUDA_R_32F) << 8,
              chunks};
  GemmPlan plan;
  if (!find_plan(ctx, key, alpha, A, B, 0.0f, partial, plan))
    return;
  if (plan.fallback) {
    for (int64_t s = 0; s < chunks; ++s)
      gemm_fallback_impl(ctx, true, false, M, N, rows, alpha,
                         A + s * rows * lda, lda, B + s * rows * ldb, ldb,
                         0.0f, partial + s * M * N, N);
    return;
  }
  check_cublas(run_plan(ctx, plan, {plan.algo, plan.workspace}, alpha, A, B,
                        0.0f, partial),
               "gemm_row_chunks", "cublasLtMatmul");
}

} // namespace detail
} // namespace cuda
} // namespace sbp

#endif // SBP_CUDA_DETAIL_GEMM_CUH
