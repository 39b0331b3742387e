//===- cuda_kernels.cuh - The kernel library of CUDA trainers -*- CUDA -*-===//
//
// One function per kernel of the lowered kernel graph, the CUDA twin of
// <sbp/cpu_kernels.h>. The .cu that `sbpc` emits for the CUDA target calls
// these with device pointers into the trainer's arena, e.g.
//
//   sbp::cuda::layer_norm(ctx, x, g, b, y, rows, n, eps);
//
// Every function has exactly the signature of its sbp::cpu counterpart with a
// `const Context &` in front (the stream, the cuBLASLt handle, the scratch
// buffer). Two deliberate differences, both in softmax_xent: it returns void
// (the loss goes to a device float) and takes an optional device int64_t* for
// the correct-prediction count as its last argument.
//
// Conventions (docs/cuda-target.md has the long form):
//  - Tensors are float32, row-major, contiguous, in device memory; "rows" is
//    the product of the leading dimensions; every size is int64_t.
//  - bf16 (--precision=bf16 trainers): overloads taking __nv_bfloat16 for
//    activations, independently per tensor, computing in float32 (see
//    "Mixed precision" below), a cast kernel and bf16 GEMMs. The bf16
//    attention overloads come from <sbp/cuda_attention_bf16.cuh>, included
//    at the end of this header.
//  - Every kernel OVERWRITES its outputs, unless its name ends in `_acc`.
//  - Calls are asynchronous on ctx.stream, never allocate and never
//    synchronise: a whole step can be captured into a CUDA graph (after one
//    warm-up call per GEMM shape, which plans the cuBLASLt call).
//  - Errors (a failed launch, a cuBLASLt status, a bad argument) are
//    recorded, the first one per host thread; last_error() reports and
//    clears it. The generated step calls it once at its end.
//  - Aliasing as on the CPU: pointwise kernels, mask_rows and
//    scatter_add_rows (out == base) may run in place; gather/scatter,
//    patchify, layer_norm*, softmax_xent and attention may not.
//  - Reductions (bias_grad, pos_grad, mean_tokens, dgamma/dbeta, the loss)
//    accumulate in double and are deterministic: same inputs, same device,
//    same bits (no floating-point atomics anywhere).
//
// Compile the including .cu with nvcc -std=c++17 -arch=sm_90 (sm_80 or
// later: the bf16 attention included at the end uses cp.async and bf16 mma;
// the rest needs sm_70+) and link -lcublasLt (cudart comes with nvcc).
//
//===----------------------------------------------------------------------===//
#ifndef SBP_CUDA_KERNELS_CUH
#define SBP_CUDA_KERNELS_CUH

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>
#include <type_traits>

namespace sbp {
namespace cuda {

namespace detail {
struct GemmPlanCache;

template <class T>
constexpr bool kIsElement =
    std::is_same_v<T, float> || std::is_same_v<T, __nv_bfloat16>;
/// Enables the bf16 overloads: every type float or __nv_bfloat16, at least
/// one of them __nv_bfloat16 (all-float calls take the float functions).
template <class... T>
using EnableBf16 = std::enable_if_t<
    (kIsElement<T> && ...) && (std::is_same_v<T, __nv_bfloat16> || ...), int>;
/// Enables the bf16 gemm: A and B __nv_bfloat16, C float or __nv_bfloat16.
template <class T, class TC>
using EnableBf16Gemm =
    std::enable_if_t<std::is_same_v<T, __nv_bfloat16> && kIsElement<TC>, int>;
} // namespace detail

//===--- Context ----------------------------------------------------------===//

/// Per trainer instance and device. Set `stream` (and the optional fields)
/// before or after context_init; the kernels read them at every call.
struct Context {
  cublasLtHandle_t lt = nullptr;
  void *workspace = nullptr;  // cuBLASLt workspace
  size_t workspace_bytes = 0; // 0 before init: 32 MiB
  cudaStream_t stream = nullptr;
  /// GEMMs in CUBLAS_COMPUTE_32F_FAST_TF32 (tensor cores, 10-bit mantissa
  /// inputs) instead of exact fp32 CUBLAS_COMPUTE_32F.
  bool allow_tf32 = false;
  void *scratch = nullptr;  // partial sums of the reductions
  size_t scratch_bytes = 0; // 0 before init: 8 MiB
  int device = -1;
  int sm_count = 0; // multiprocessors, sizes the grid-stride grids
  detail::GemmPlanCache *gemm_plans = nullptr; // cuBLASLt plans by shape
};

constexpr size_t kDefaultWorkspaceBytes = size_t(32) << 20;
constexpr size_t kDefaultScratchBytes = size_t(8) << 20;

/// Binds the current device: creates the cuBLASLt handle, allocates the
/// workspace and scratch (workspace_bytes / scratch_bytes if set, else the
/// defaults) and reads the multiprocessor count. Keeps `stream` and
/// `allow_tf32`. Returns 0, or non-zero (the failing cudaError_t or
/// cublasStatus_t) with a message in err, having released what it made.
inline int context_init(Context &ctx, char *err, size_t err_len);
/// Releases what context_init made (not the stream). Synchronises.
inline void context_destroy(Context &ctx);
/// 0 if every call since the last last_error() on this host thread went
/// well; else non-zero with the first failure's message in err, and clears
/// it. Also collects a pending asynchronous CUDA error, if any.
inline int last_error(char *err, size_t err_len);

//===--- GEMM -------------------------------------------------------------===//

/// C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, op(X) = X^T when tX.
/// lda/ldb/ldc are the row strides of A, B, C as stored (row-major). With
/// beta == 0, C is not read. Through cuBLASLt; fp32, or TF32 when
/// ctx.allow_tf32. The first call of a shape plans it (host work, allowed
/// during capture but best done before).
inline void gemm(const Context &ctx, bool transA, bool transB, int64_t M,
                 int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C,
                 int64_t ldc);

//===--- Layout -----------------------------------------------------------===//

/// image [B,C,H,W] -> tokens [B, (H/p)*(W/p), C*p*p]; token t = i*(W/p)+j,
/// feature f = c*p*p + py*p + px (a flattened Conv2d weight [D,C,p,p]).
inline void patchify(const Context &ctx, const float *img, float *tokens,
                     int64_t B, int64_t C, int64_t H, int64_t W, int64_t p);

//===--- Elementwise ------------------------------------------------------===//

/// out = a + b
inline void add(const Context &ctx, const float *a, const float *b, float *out,
                int64_t n);
/// acc += b
inline void add_acc(const Context &ctx, float *acc, const float *b, int64_t n);
/// y[r,:] = x[r,:] + bias
inline void bias_add(const Context &ctx, const float *x, const float *bias,
                     float *y, int64_t rows, int64_t n);
/// dbias = sum_r dy[r,:]  (accumulated in double)
inline void bias_grad(const Context &ctx, const float *dy, float *dbias,
                      int64_t rows, int64_t n);
/// y[b,t,:] = x[b,t,:] + pos[t,:]
inline void pos_add(const Context &ctx, const float *x, const float *pos,
                    float *y, int64_t B, int64_t T, int64_t D);
/// dpos = sum_b dy[b]  (accumulated in double)
inline void pos_grad(const Context &ctx, const float *dy, float *dpos,
                     int64_t B, int64_t T, int64_t D);
/// Exact GELU, x * Phi(x) (normcdff), as torch.nn.GELU().
inline void gelu(const Context &ctx, const float *x, float *y, int64_t n);
/// dx = dy * gelu'(x)
inline void gelu_grad(const Context &ctx, const float *x, const float *dy,
                      float *dx, int64_t n);
inline void relu(const Context &ctx, const float *x, float *y, int64_t n);
/// dx = dy * (x > 0)
inline void relu_grad(const Context &ctx, const float *x, const float *dy,
                      float *dx, int64_t n);
inline void fill(const Context &ctx, float *x, float value, int64_t n);
/// y = x (x == y: nothing). Other overlaps are not supported.
inline void copy(const Context &ctx, const float *x, float *y, int64_t n);

//===--- Normalisation and reductions -------------------------------------===//

/// LayerNorm over the last dim n, biased variance (torch.nn.LayerNorm).
inline void layer_norm(const Context &ctx, const float *x, const float *gamma,
                       const float *beta, float *y, int64_t rows, int64_t n,
                       float eps);
/// Backward of layer_norm; recomputes mean and rstd from x. dx is
/// overwritten; dgamma and dbeta are OVERWRITTEN with their sums over rows.
inline void layer_norm_grad(const Context &ctx, const float *x,
                            const float *gamma, const float *dy, float *dx,
                            float *dgamma, float *dbeta, int64_t rows,
                            int64_t n, float eps);
/// y[b,:] = mean_t x[b,t,:]
inline void mean_tokens(const Context &ctx, const float *x, float *y, int64_t B,
                        int64_t T, int64_t D);
/// dx[b,t,:] = dy[b,:] / T
inline void mean_tokens_grad(const Context &ctx, const float *dy, float *dx,
                             int64_t B, int64_t T, int64_t D);

//===--- Loss -------------------------------------------------------------===//

/// Mean softmax cross-entropy over B rows of C logits, labels in [0, C).
/// *loss (device float, nullable) receives the mean loss. dlogits (nullable)
/// receives (softmax - onehot) / B * dloss_scale. *correct (device int64_t,
/// nullable) receives the number of rows whose argmax (first maximum)
/// equals the label. Out-of-range labels and NaNs as on the CPU.
inline void softmax_xent(const Context &ctx, const float *logits,
                         const int32_t *labels, float *loss, float *dlogits,
                         int64_t B, int64_t C, float dloss_scale,
                         int64_t *correct = nullptr);

//===--- SBP row gather / scatter -----------------------------------------===//
// idx (device) holds K token indices in [0, T), ascending, -1 = padding; the
// same idx serves every batch element. An index outside [0, T) is padding.
// Repeated indices are handled as on the CPU (accumulate in k order, or the
// last one wins), deterministically, on a slower path.

/// out[b,k,:] = x[b, idx[k], :], or 0 when idx[k] is padding.
inline void gather_rows(const Context &ctx, const float *x, const int32_t *idx,
                        float *out, int64_t B, int64_t T, int64_t K, int64_t D);
/// out[b, idx[k], :] += xk[b,k,:] for valid idx[k]. Other rows untouched.
inline void scatter_rows_acc(const Context &ctx, const float *xk,
                             const int32_t *idx, float *out, int64_t B,
                             int64_t T, int64_t K, int64_t D);
/// out = 0, then out[b, idx[k], :] = xk[b,k,:] for valid idx[k].
inline void scatter_rows(const Context &ctx, const float *xk,
                         const int32_t *idx, float *out, int64_t B, int64_t T,
                         int64_t K, int64_t D);
/// out[b,t,:] = x[b,t,:] if t is one of the idx entries, else 0. In place ok.
inline void mask_rows(const Context &ctx, const float *x, const int32_t *idx,
                      float *out, int64_t B, int64_t T, int64_t K, int64_t D);
/// out = base + scatter(xk): scatter_rows_acc(xk) on a copy of base, in one
/// pass. base [B,T,D], xk [B,K,D]. out == base allowed.
inline void scatter_add_rows(const Context &ctx, const float *base,
                             const float *xk, const int32_t *idx, float *out,
                             int64_t B, int64_t T, int64_t K, int64_t D);

//===--- Attention --------------------------------------------------------===//
// Layout (timm's): qkv [B, T, 3*H*Dh] is the qkv projection's output, q at
// columns [0, H*Dh), k at [H*Dh, 2*H*Dh), v at [2*H*Dh, 3*H*Dh), head h of
// each at columns h*Dh..h*Dh+Dh-1 within its third. o, dout: [B, T, H*Dh]
// (head h at columns h*Dh). lse: [B, T, H], the natural-log log-sum-exp of
// the scaled scores of query (b, t) in head h over the keys it attended to.
// scale is usually 1/sqrt(Dh). Dh <= 128 (fast tiles for Dh <= 64). Keep
// lists: ascending token indices, -1 padding (an entry outside [0, T) is
// padding). No T x T matrix is ever materialised; the backward recomputes
// the probabilities from lse, deterministically. No aliasing.

/// Forward. keep == nullptr (or K <= 0): plain softmax attention, every
/// query over all T keys. Otherwise (SBP drop_qkv forward) a query whose
/// token is listed in keep[0..K) attends only to the listed keys; every
/// other query attends to all T keys. lse (nullable) is written for every
/// (b, t, h). Scratch: 12 T + 8 bytes with keep.
inline void attention_fwd(const Context &ctx, const float *qkv, float *o,
                          float *lse, int64_t B, int64_t T, int64_t H,
                          int64_t Dh, float scale, const int32_t *keep,
                          int64_t K);
/// Backward over the same T rows; dqkv [B, T, 3*H*Dh] is overwritten (dq,
/// dk, dv in the qkv layout).
/// row_keep == nullptr: every row is a query and a key (the plain gradient).
/// row_keep != nullptr, row_keep[0..T): row t takes part (as query and as
///   key) iff row_keep[t] >= 0; rows that do not take part get zero dq, dk,
///   dv, are not attended to, and nothing of theirs (qkv, o, lse, dout) is
///   read (the compact SBP drop_qkv backward: the tensors hold the gathered
///   kept rows and row_keep is the keep list itself).
/// head_keep == nullptr: every head; else head_keep[0..H) lists the kept
///   heads, -1 padded: the other heads' dq, dk, dv columns are zero (SBP
///   drop_head). Scratch: 4 B H T bytes.
inline void attention_bwd(const Context &ctx, const float *qkv, const float *o,
                          const float *lse, const float *dout, float *dqkv,
                          int64_t B, int64_t T, int64_t H, int64_t Dh,
                          float scale, const int32_t *row_keep,
                          const int32_t *head_keep);
/// SBP drop_query backward. The queries are the K rows keep[k] (-1 =
/// padding: no query; entries distinct); keys and values are all T rows of
/// qkv. o_k, dout_k: [B, K, H*Dh] and lse_k: [B, K, H] hold the kept query
/// rows (gathered; padding rows are not read). dqkv [B, T, 3*H*Dh] is
/// overwritten: dk, dv at every row (contributions of the kept queries
/// only), dq at the kept rows, zero dq at every other row. Scratch:
/// 4 B H K bytes.
inline void attention_bwd_queries(const Context &ctx, const float *qkv,
                                  const int32_t *keep, int64_t K,
                                  const float *o_k, const float *lse_k,
                                  const float *dout_k, float *dqkv, int64_t B,
                                  int64_t T, int64_t H, int64_t Dh,
                                  float scale);

//===--- ViT class token and token pooling --------------------------------===//

/// x [B, T, D] -> y [B, T+1, D]: y[b,0,:] = cls[:], y[b,1+t,:] = x[b,t,:].
inline void cls_concat(const Context &ctx, const float *x, const float *cls,
                       float *y, int64_t B, int64_t T, int64_t D);
/// dx[b,t,:] = dy[b,1+t,:]; dcls[:] = sum_b dy[b,0,:] (double accumulation,
/// deterministic). dy [B, T+1, D].
inline void cls_concat_grad(const Context &ctx, const float *dy, float *dx,
                            float *dcls, int64_t B, int64_t T, int64_t D);
/// y[b,:] = x[b,index,:]; x [B, T, D], y [B, D]. An index outside [0, T)
/// is padding: y = 0.
inline void take_token(const Context &ctx, const float *x, float *y, int64_t B,
                       int64_t T, int64_t D, int64_t index);
/// dx = 0 except dx[b,index,:] = dy[b,:].
inline void take_token_grad(const Context &ctx, const float *dy, float *dx,
                            int64_t B, int64_t T, int64_t D, int64_t index);

//===--- Mixed precision: bfloat16 overloads ------------------------------===//
// For trainers compiled with --precision=bf16 (compiler pass
// sbp-assign-precision): activations and their gradients are __nv_bfloat16,
// the parameters, their gradients, the loss, the logits and the residual
// stream stay float. The generated code declares each buffer with the
// element type the compiler chose, and overload resolution picks one of
// these. Each tensor pointer below whose element type is a template
// parameter may independently be `float` or `__nv_bfloat16`, at least one of
// them bf16 (all-float calls take the functions above, unchanged). Pointers
// typed `float` here stay float: parameters (bias, pos, gamma/beta, cls),
// parameter gradients (dbias, dpos, dgamma/dbeta, dcls), the loss.
//
// Semantics, sizes, aliasing and determinism are those of the float
// functions. Every kernel computes in float32: bf16 inputs are widened
// exactly, results are rounded to bf16 once (round-to-nearest-even) when the
// output is bf16; reductions still accumulate in double. Pure data movement
// (gather_rows, scatter_rows, mask_rows, take_token*, copy, cls_concat*'s
// rows) between equal types moves the bits unchanged. 16-byte aligned
// tensors whose rows are multiples of 8 elements take 8-wide paths (8 bf16
// = 16 bytes); other cases run narrower (4-wide, then scalar) paths.
//
// The bf16 attention overloads are in <sbp/cuda_attention_bf16.cuh>, which
// this header includes at its end.

/// y = x rounded to bf16, round-to-nearest-even (NaN stays NaN, +-inf and
/// overflow to +-inf as IEEE), and the exact widening back.
inline void cast(const Context &ctx, const float *x, __nv_bfloat16 *y,
                 int64_t n);
inline void cast(const Context &ctx, const __nv_bfloat16 *x, float *y,
                 int64_t n);

/// gemm with A and B `const __nv_bfloat16 *` (T = __nv_bfloat16) through
/// cuBLASLt (CUDA_R_16BF operands, CUBLAS_COMPUTE_32F: fp32 accumulation on
/// the tensor cores), C (and D) `__nv_bfloat16 *` or `float *`, alpha and
/// beta float. ctx.allow_tf32 does not apply. Same layout, strides,
/// beta == 0, K == 0, fallback kernel and plan caching (keyed on the data
/// types too) as the float gemm. A template only so that a call with null
/// pointer literals still means the float gemm.
template <class T, class TC, detail::EnableBf16Gemm<T, TC> = 0>
inline void gemm(const Context &ctx, bool transA, bool transB, int64_t M,
                 int64_t N, int64_t K, float alpha, const T *A, int64_t lda,
                 const T *B, int64_t ldb, float beta, TC *C, int64_t ldc);

template <class X, class Y, detail::EnableBf16<X, Y> = 0>
inline void patchify(const Context &ctx, const X *img, Y *tokens, int64_t B,
                     int64_t C, int64_t H, int64_t W, int64_t p);
template <class A, class B, class O, detail::EnableBf16<A, B, O> = 0>
inline void add(const Context &ctx, const A *a, const B *b, O *out, int64_t n);
template <class O, class B, detail::EnableBf16<O, B> = 0>
inline void add_acc(const Context &ctx, O *acc, const B *b, int64_t n);
template <class X, class Y, detail::EnableBf16<X, Y> = 0>
inline void bias_add(const Context &ctx, const X *x, const float *bias, Y *y,
                     int64_t rows, int64_t n);
template <class X, detail::EnableBf16<X> = 0>
inline void bias_grad(const Context &ctx, const X *dy, float *dbias,
                      int64_t rows, int64_t n);
template <class X, class Y, detail::EnableBf16<X, Y> = 0>
inline void pos_add(const Context &ctx, const X *x, const float *pos, Y *y,
                    int64_t B, int64_t T, int64_t D);
template <class X, detail::EnableBf16<X> = 0>
inline void pos_grad(const Context &ctx, const X *dy, float *dpos, int64_t B,
                     int64_t T, int64_t D);
template <class X, class Y, detail::EnableBf16<X, Y> = 0>
inline void gelu(const Context &ctx, const X *x, Y *y, int64_t n);
template <class X, class G, class D, detail::EnableBf16<X, G, D> = 0>
inline void gelu_grad(const Context &ctx, const X *x, const G *dy, D *dx,
                      int64_t n);
template <class X, class Y, detail::EnableBf16<X, Y> = 0>
inline void relu(const Context &ctx, const X *x, Y *y, int64_t n);
template <class X, class G, class D, detail::EnableBf16<X, G, D> = 0>
inline void relu_grad(const Context &ctx, const X *x, const G *dy, D *dx,
                      int64_t n);
template <class T, detail::EnableBf16<T> = 0>
inline void fill(const Context &ctx, T *x, float value, int64_t n);
/// Equal types: a device copy (x == y: nothing); otherwise cast.
template <class X, class Y, detail::EnableBf16<X, Y> = 0>
inline void copy(const Context &ctx, const X *x, Y *y, int64_t n);

template <class X, class Y, detail::EnableBf16<X, Y> = 0>
inline void layer_norm(const Context &ctx, const X *x, const float *gamma,
                       const float *beta, Y *y, int64_t rows, int64_t n,
                       float eps);
template <class X, class G, class D, detail::EnableBf16<X, G, D> = 0>
inline void layer_norm_grad(const Context &ctx, const X *x, const float *gamma,
                            const G *dy, D *dx, float *dgamma, float *dbeta,
                            int64_t rows, int64_t n, float eps);
template <class X, class Y, detail::EnableBf16<X, Y> = 0>
inline void mean_tokens(const Context &ctx, const X *x, Y *y, int64_t B,
                        int64_t T, int64_t D);
template <class X, class Y, detail::EnableBf16<X, Y> = 0>
inline void mean_tokens_grad(const Context &ctx, const X *dy, Y *dx, int64_t B,
                             int64_t T, int64_t D);

/// loss and correct as in the float softmax_xent; dlogits bf16 or float, or
/// nullptr (the second overload).
template <class L, class G, detail::EnableBf16<L, G> = 0>
inline void softmax_xent(const Context &ctx, const L *logits,
                         const int32_t *labels, float *loss, G *dlogits,
                         int64_t B, int64_t C, float dloss_scale,
                         int64_t *correct = nullptr);
template <class L, detail::EnableBf16<L> = 0>
inline void softmax_xent(const Context &ctx, const L *logits,
                         const int32_t *labels, float *loss,
                         std::nullptr_t dlogits, int64_t B, int64_t C,
                         float dloss_scale, int64_t *correct = nullptr);

template <class X, class Y, detail::EnableBf16<X, Y> = 0>
inline void gather_rows(const Context &ctx, const X *x, const int32_t *idx,
                        Y *out, int64_t B, int64_t T, int64_t K, int64_t D);
template <class X, class O, detail::EnableBf16<X, O> = 0>
inline void scatter_rows_acc(const Context &ctx, const X *xk,
                             const int32_t *idx, O *out, int64_t B, int64_t T,
                             int64_t K, int64_t D);
template <class X, class Y, detail::EnableBf16<X, Y> = 0>
inline void scatter_rows(const Context &ctx, const X *xk, const int32_t *idx,
                         Y *out, int64_t B, int64_t T, int64_t K, int64_t D);
template <class X, class Y, detail::EnableBf16<X, Y> = 0>
inline void mask_rows(const Context &ctx, const X *x, const int32_t *idx,
                      Y *out, int64_t B, int64_t T, int64_t K, int64_t D);
template <class Bs, class X, class O, detail::EnableBf16<Bs, X, O> = 0>
inline void scatter_add_rows(const Context &ctx, const Bs *base, const X *xk,
                             const int32_t *idx, O *out, int64_t B, int64_t T,
                             int64_t K, int64_t D);

template <class X, class Y, detail::EnableBf16<X, Y> = 0>
inline void cls_concat(const Context &ctx, const X *x, const float *cls, Y *y,
                       int64_t B, int64_t T, int64_t D);
template <class X, class Y, detail::EnableBf16<X, Y> = 0>
inline void cls_concat_grad(const Context &ctx, const X *dy, Y *dx, float *dcls,
                            int64_t B, int64_t T, int64_t D);
template <class X, class Y, detail::EnableBf16<X, Y> = 0>
inline void take_token(const Context &ctx, const X *x, Y *y, int64_t B,
                       int64_t T, int64_t D, int64_t index);
template <class X, class Y, detail::EnableBf16<X, Y> = 0>
inline void take_token_grad(const Context &ctx, const X *dy, Y *dx, int64_t B,
                            int64_t T, int64_t D, int64_t index);

//===----------------------------------------------------------------------===//
// Implementation
//===----------------------------------------------------------------------===//

namespace detail {

constexpr int kThreads = 256; // block size of every grid-stride kernel
constexpr unsigned kFullMask = 0xffffffffu;
constexpr int64_t kMaxIndex32 = int64_t(1) << 31; // uint32 index fast path

//===--- Status -----------------------------------------------------------===//

struct Status {
  int code = 0; // first failure's cudaError_t / cublasStatus_t, 0 = none
  char message[512] = {};
};

inline Status &status() {
  static thread_local Status s;
  return s;
}

/// Copies src into dst[len], truncated, always terminated.
inline void copy_message(char *dst, size_t len, const char *src) {
  if (!dst || len == 0)
    return;
  size_t i = 0;
  for (; i + 1 < len && src[i] != '\0'; ++i)
    dst[i] = src[i];
  dst[i] = '\0';
}

/// Records a failure unless one is pending already (the first one explains
/// the rest).
inline void fail(int code, const char *where, const char *what) {
  Status &s = status();
  if (s.code != 0)
    return;
  s.code = code != 0 ? code : int(cudaErrorUnknown);
  std::snprintf(s.message, sizeof(s.message), "sbp::cuda::%s: %s", where, what);
}

inline void fail_arg(const char *where, const char *what) {
  fail(int(cudaErrorInvalidValue), where, what);
}

inline void check_launch(const char *where) {
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    fail(int(e), where, cudaGetErrorString(e));
}

inline void check_cublas(cublasStatus_t st, const char *where,
                         const char *call) {
  if (st == CUBLAS_STATUS_SUCCESS)
    return;
  char what[256];
  std::snprintf(what, sizeof(what), "%s: %s (%s)", call,
                cublasLtGetStatusName(st), cublasLtGetStatusString(st));
  fail(int(st), where, what);
}

//===--- Launch helpers ---------------------------------------------------===//

inline bool aligned16(const void *p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

inline int sm_count(const Context &ctx) {
  return ctx.sm_count > 0 ? ctx.sm_count : 132; // H100 SXM if not initialised
}

/// Blocks of a grid-stride kernel over `items` (one per thread): enough for
/// the work, at most `per_sm` resident blocks on every multiprocessor.
inline unsigned grid_for(const Context &ctx, int64_t items, int per_sm = 8,
                         int threads = kThreads) {
  int64_t blocks = ceil_div(items, threads);
  const int64_t cap = int64_t(sm_count(ctx)) * per_sm;
  if (blocks > cap)
    blocks = cap;
  return unsigned(blocks < 1 ? 1 : blocks);
}

/// ctx.scratch carved into 256-byte aligned pieces, from its start at every
/// call: calls on one Context are stream-ordered, so a kernel's scratch is
/// free again when the next call's kernels run. take() returns nullptr if
/// the piece does not fit.
struct ScratchCursor {
  char *base;
  size_t size, used = 0;
  explicit ScratchCursor(const Context &ctx)
      : base(static_cast<char *>(ctx.scratch)),
        size(ctx.scratch ? ctx.scratch_bytes : 0) {}
  template <class T> T *take(size_t count) {
    const size_t bytes = (count * sizeof(T) + 255) & ~size_t(255);
    if (!base || used + bytes > size)
      return nullptr;
    T *p = reinterpret_cast<T *>(base + used);
    used += bytes;
    return p;
  }
};

//===--- Device helpers ---------------------------------------------------===//

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

//===--- Element types: float and bf16 ------------------------------------===//
// Tensors are float or __nv_bfloat16; kernels compute in float. A "vector"
// is W consecutive elements at an address aligned to min(16, W * size)
// bytes, loaded into / stored from float[W] registers: float W = 4 or 8 is
// one or two float4, bf16 W = 8 one 16-byte uint4, W = 4 an 8-byte uint2.

template <class T> constexpr bool kIsBf16 = std::is_same_v<T, __nv_bfloat16>;

/// Bytes a W-vector of T must be aligned to.
template <class T> constexpr int vec_align(int W) {
  return W * int(sizeof(T)) < 16 ? W * int(sizeof(T)) : 16;
}
template <class T> inline bool vec_aligned(const T *p, int W) {
  return (reinterpret_cast<uintptr_t>(p) & uintptr_t(vec_align<T>(W) - 1)) == 0;
}

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) {
  return __bfloat162float(x);
}
/// float -> T, round-to-nearest-even for bf16.
template <class T> __device__ __forceinline__ T from_f32(float x) {
  if constexpr (kIsBf16<T>)
    return __float2bfloat16_rn(x);
  else
    return x;
}
/// double -> T, rounded once.
template <class T> __device__ __forceinline__ T from_f64(double x) {
  if constexpr (kIsBf16<T>)
    return __double2bfloat16(x);
  else
    return float(x);
}

/// The two bf16 of a 32-bit word (low half first), widened exactly.
__device__ __forceinline__ void bf16x2_to_f32(uint32_t u, float &lo,
                                              float &hi) {
  lo = __uint_as_float(u << 16);
  hi = __uint_as_float(u & 0xffff0000u);
}
__device__ __forceinline__ uint32_t f32_to_bf16x2(float lo, float hi) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi); // lo in .x
  uint32_t u;
  memcpy(&u, &h, sizeof(u));
  return u;
}

/// v[0..W) = vector i of p (elements i*W .. i*W+W-1) as float.
template <int W, class T, class I>
__device__ __forceinline__ void ld_vec(const T *p, I i, float (&v)[W]) {
  static_assert(W == 1 || W == 4 || W == 8, "vector width");
  if constexpr (W == 1) {
    v[0] = to_f32(p[i]);
  } else if constexpr (!kIsBf16<T>) {
#pragma unroll
    for (int k = 0; k < W / 4; ++k) {
      const float4 q = reinterpret_cast<const float4 *>(p)[i * (W / 4) + k];
      v[4 * k] = q.x;
      v[4 * k + 1] = q.y;
      v[4 * k + 2] = q.z;
      v[4 * k + 3] = q.w;
    }
  } else if constexpr (W == 4) {
    const uint2 q = reinterpret_cast<const uint2 *>(p)[i];
    bf16x2_to_f32(q.x, v[0], v[1]);
    bf16x2_to_f32(q.y, v[2], v[3]);
  } else {
    const uint4 q = reinterpret_cast<const uint4 *>(p)[i];
    bf16x2_to_f32(q.x, v[0], v[1]);
    bf16x2_to_f32(q.y, v[2], v[3]);
    bf16x2_to_f32(q.z, v[4], v[5]);
    bf16x2_to_f32(q.w, v[6], v[7]);
  }
}

/// Vector i of p = v[0..W), rounded to T.
template <int W, class T, class I>
__device__ __forceinline__ void st_vec(T *p, I i, const float (&v)[W]) {
  static_assert(W == 1 || W == 4 || W == 8, "vector width");
  if constexpr (W == 1) {
    p[i] = from_f32<T>(v[0]);
  } else if constexpr (!kIsBf16<T>) {
#pragma unroll
    for (int k = 0; k < W / 4; ++k)
      reinterpret_cast<float4 *>(p)[i * (W / 4) + k] =
          make_float4(v[4 * k], v[4 * k + 1], v[4 * k + 2], v[4 * k + 3]);
  } else if constexpr (W == 4) {
    reinterpret_cast<uint2 *>(p)[i] =
        make_uint2(f32_to_bf16x2(v[0], v[1]), f32_to_bf16x2(v[2], v[3]));
  } else {
    reinterpret_cast<uint4 *>(p)[i] =
        make_uint4(f32_to_bf16x2(v[0], v[1]), f32_to_bf16x2(v[2], v[3]),
                   f32_to_bf16x2(v[4], v[5]), f32_to_bf16x2(v[6], v[7]));
  }
}

/// The raw bits of a W-vector of T: kParts values of `type`.
template <int W, class T> struct RawVec {
  static constexpr int kBytes = W * int(sizeof(T));
  static constexpr int kParts = kBytes > 16 ? kBytes / 16 : 1;
  using type = std::conditional_t<
      kBytes == 2, unsigned short,
      std::conditional_t<kBytes == 4, float,
                         std::conditional_t<kBytes == 8, uint2, float4>>>;
};

/// Vector id of d = vector is of s: the bits when the types match, else
/// converted.
template <int W, class S, class D, class I>
__device__ __forceinline__ void mv_vec(const S *s, I is, D *d, I id) {
  if constexpr (std::is_same_v<S, D>) {
    using R = RawVec<W, S>;
    using Rt = typename R::type;
#pragma unroll
    for (int k = 0; k < R::kParts; ++k)
      reinterpret_cast<Rt *>(d)[id * R::kParts + k] =
          reinterpret_cast<const Rt *>(s)[is * R::kParts + k];
  } else {
    float v[W];
    ld_vec<W>(s, is, v);
    st_vec<W>(d, id, v);
  }
}

/// Vector i of d = 0.
template <int W, class D, class I>
__device__ __forceinline__ void zero_vec(D *d, I i) {
  float v[W];
#pragma unroll
  for (int k = 0; k < W; ++k)
    v[k] = 0.0f;
  st_vec<W>(d, i, v);
}

/// Calls f(std::integral_constant<int, W>{}) for W in {8, 4, 1}; 8 only when
/// kWide (the float-only instantiations keep their float4 paths), 1 only
/// when kScalar (otherwise w is 8 or 4).
template <bool kWide, bool kScalar = true, class F>
inline void with_width(int w, F &&f) {
  if constexpr (kWide)
    if (w == 8) {
      f(std::integral_constant<int, 8>{});
      return;
    }
  if constexpr (kScalar)
    if (w != 4) {
      f(std::integral_constant<int, 1>{});
      return;
    }
  f(std::integral_constant<int, 4>{});
}

//===--- Pointwise --------------------------------------------------------===//

struct AddOp {
  __device__ float operator()(float a, float b) const { return a + b; }
};
struct FillOp {
  float value;
  __device__ float operator()(float, float) const { return value; }
};
struct CopyOp { // cast: the conversion is in the loads and stores
  __device__ float operator()(float x, float) const { return x; }
};
struct ReluOp {
  __device__ float operator()(float x, float) const {
    return x > 0.0f ? x : 0.0f;
  }
};
struct ReluGradOp {
  __device__ float operator()(float x, float dy) const {
    return x > 0.0f ? dy : 0.0f;
  }
};
// GELU(x) = x Phi(x); normcdff keeps its relative accuracy far into the
// negative tail, where 0.5 (1 + erf(x / sqrt 2)) cancels.
struct GeluOp {
  __device__ float operator()(float x, float) const { return x * normcdff(x); }
};
struct GeluGradOp {
  __device__ float operator()(float x, float dy) const {
    const float pdf = 0.39894228040143267794f * expf(-0.5f * x * x);
    return dy * (normcdff(x) + x * pdf);
  }
};

/// y[i] = op(a[i], b[i]) with kIn inputs (0: neither read, 1: a only), in
/// vectors of kVec elements and a scalar tail.
template <int kIn, int kVec, class Op, class I, class TA, class TB, class TY>
__global__ void __launch_bounds__(kThreads)
    pointwise_kernel(const TA *a, const TB *b, TY *y, I n, Op op) {
  const I nv = n / kVec;
  const I stride = I(gridDim.x) * kThreads;
  const I first = I(blockIdx.x) * kThreads + threadIdx.x;
  for (I i = first; i < nv; i += stride) {
    float x0[kVec], x1[kVec], r[kVec];
#pragma unroll
    for (int j = 0; j < kVec; ++j)
      x0[j] = x1[j] = 0.0f;
    if constexpr (kIn >= 1)
      ld_vec<kVec>(a, i, x0);
    if constexpr (kIn >= 2)
      ld_vec<kVec>(b, i, x1);
#pragma unroll
    for (int j = 0; j < kVec; ++j)
      r[j] = op(x0[j], x1[j]);
    st_vec<kVec>(y, i, r);
  }
  if constexpr (kVec > 1) // the < kVec leftover elements
    for (I i = nv * kVec + first; i < n; i += stride) {
      float x0 = 0.0f, x1 = 0.0f;
      if constexpr (kIn >= 1)
        x0 = to_f32(a[i]);
      if constexpr (kIn >= 2)
        x1 = to_f32(b[i]);
      y[i] = from_f32<TY>(op(x0, x1));
    }
}

/// Vectors of 4 (float only) or 8 (any bf16) elements when every pointer is
/// 16-byte aligned.
template <int kIn, class Op, class TA, class TB, class TY>
inline void launch_pointwise(const Context &ctx, const char *name, const TA *a,
                             const TB *b, TY *y, int64_t n, Op op) {
  if (n <= 0)
    return;
  constexpr bool kWide = kIsBf16<TA> || kIsBf16<TB> || kIsBf16<TY>;
  constexpr int kW = kWide ? 8 : 4;
  const bool vec = aligned16(y) && (kIn < 1 || aligned16(a)) &&
                   (kIn < 2 || aligned16(b)) && n >= kW;
  const unsigned grid = grid_for(ctx, vec ? n / kW : n);
  if (n < kMaxIndex32) {
    if (vec)
      pointwise_kernel<kIn, kW, Op, uint32_t>
          <<<grid, kThreads, 0, ctx.stream>>>(a, b, y, uint32_t(n), op);
    else
      pointwise_kernel<kIn, 1, Op, uint32_t>
          <<<grid, kThreads, 0, ctx.stream>>>(a, b, y, uint32_t(n), op);
  } else {
    if (vec)
      pointwise_kernel<kIn, kW, Op, int64_t>
          <<<grid, kThreads, 0, ctx.stream>>>(a, b, y, n, op);
    else
      pointwise_kernel<kIn, 1, Op, int64_t>
          <<<grid, kThreads, 0, ctx.stream>>>(a, b, y, n, op);
  }
  check_launch(name);
}

/// y[i] = x[i] + v[i % n] over `total` elements (bias_add, pos_add); in
/// units of kVec elements. v is float (a parameter).
template <int kVec, class I, class TX, class TY>
__global__ void __launch_bounds__(kThreads)
    broadcast_add_kernel(const TX *x, const float *v, TY *y, I total, I n) {
  const I stride = I(gridDim.x) * kThreads;
  for (I i = I(blockIdx.x) * kThreads + threadIdx.x; i < total; i += stride) {
    float a[kVec], c[kVec];
    ld_vec<kVec>(x, i, a);
    ld_vec<kVec>(v, i % n, c);
#pragma unroll
    for (int j = 0; j < kVec; ++j)
      a[j] = a[j] + c[j];
    st_vec<kVec>(y, i, a);
  }
}

/// The vector width of a row kernel: 8 (any bf16) or 4 when the row length
/// is a multiple and every pointer aligned for it, else 1.
template <bool kWide>
inline int row_width(int64_t n, std::initializer_list<bool> aligned8,
                     std::initializer_list<bool> aligned4) {
  auto all = [](std::initializer_list<bool> l) {
    for (bool b : l)
      if (!b)
        return false;
    return true;
  };
  if (kWide && n % 8 == 0 && all(aligned8))
    return 8;
  if (n % 4 == 0 && all(aligned4))
    return 4;
  return 1;
}

template <class TX, class TY>
inline void launch_broadcast_add(const Context &ctx, const char *name,
                                 const TX *x, const float *v, TY *y,
                                 int64_t rows, int64_t n) {
  if (rows <= 0 || n <= 0)
    return;
  constexpr bool kWide = kIsBf16<TX> || kIsBf16<TY>;
  const int64_t total = rows * n;
  const int w = row_width<kWide>(
      n, {vec_aligned(x, 8), vec_aligned(v, 8), vec_aligned(y, 8)},
      {vec_aligned(x, 4), vec_aligned(v, 4), vec_aligned(y, 4)});
  const int64_t tv = total / w, nv = n / w;
  const unsigned grid = grid_for(ctx, tv);
  with_width<kWide>(w, [&](auto wc) {
    constexpr int W = decltype(wc)::value;
    if (total < kMaxIndex32)
      broadcast_add_kernel<W, uint32_t><<<grid, kThreads, 0, ctx.stream>>>(
          x, v, y, uint32_t(tv), uint32_t(nv));
    else
      broadcast_add_kernel<W, int64_t>
          <<<grid, kThreads, 0, ctx.stream>>>(x, v, y, tv, nv);
  });
  check_launch(name);
}

/// dx[b,t,:] = dy[b,:] / T, in units of kVec elements (D % kVec == 0).
template <int kVec, class I, class TX, class TY>
__global__ void __launch_bounds__(kThreads)
    mean_tokens_grad_kernel(const TX *dy, TY *dx, I total, I TD, I D, float t) {
  const I stride = I(gridDim.x) * kThreads;
  for (I i = I(blockIdx.x) * kThreads + threadIdx.x; i < total; i += stride) {
    float g[kVec];
    ld_vec<kVec>(dy, (i / TD) * D + i % D, g);
#pragma unroll
    for (int j = 0; j < kVec; ++j)
      g[j] = g[j] / t;
    st_vec<kVec>(dx, i, g);
  }
}

//===--- Column sums (bias_grad, pos_grad, mean_tokens) -------------------===//
// x [batches, rows, n] (row stride ld, default n) -> out [batches, n] =
// scale * sum over rows, in double. A block owns a tile of `tile` column
// vectors and a split of the rows; its 256 threads form (256 / tile) row lanes,
// so a warp always reads contiguous memory (a narrow matrix is read as a flat
// stream). With several splits the per-split sums go to scratch and a second
// kernel adds them in split order: the result does not depend on timing. Column
// vectors are kVec elements: 4 floats, or 8 (4 when n or ld is not a multiple
// of 8) bf16.

template <int kVec, class TX, class TY>
__global__ void __launch_bounds__(kThreads)
    colsum_kernel(const TX *x, int64_t batches, int64_t rows, int64_t n,
                  int64_t ld, int tile, int64_t rows_per_split, double *partial,
                  TY *out, double scale) {
  __shared__ double sh[kThreads * kVec];
  const int lanes = kThreads / tile;
  const int cl = threadIdx.x % tile, lane = threadIdx.x / tile;
  const int64_t nv = n / kVec;
  const int64_t col = int64_t(blockIdx.x) * tile + cl;
  const int splits = gridDim.y, split = blockIdx.y;
  const int64_t r0 = split * rows_per_split;
  const int64_t r1 = r0 + rows_per_split < rows ? r0 + rows_per_split : rows;
  const bool active = lane < lanes && col < nv;
  for (int64_t b = blockIdx.z; b < batches; b += gridDim.z) {
    double acc[kVec];
#pragma unroll
    for (int v = 0; v < kVec; ++v)
      acc[v] = 0.0;
    if (active) {
      const TX *xb = x + b * rows * ld + col * kVec;
#pragma unroll 4
      for (int64_t r = r0 + lane; r < r1; r += lanes) {
        float q[kVec];
        ld_vec<kVec>(xb + r * ld, 0, q);
#pragma unroll
        for (int v = 0; v < kVec; ++v)
          acc[v] += double(q[v]);
      }
    }
#pragma unroll
    for (int v = 0; v < kVec; ++v)
      sh[threadIdx.x * kVec + v] = acc[v];
    __syncthreads();
    if (lane == 0 && col < nv) {
#pragma unroll
      for (int v = 0; v < kVec; ++v) {
        double s = 0.0;
        for (int l = 0; l < lanes; ++l)
          s += sh[(l * tile + cl) * kVec + v];
        const int64_t j = col * kVec + v;
        if (splits == 1)
          out[b * n + j] = from_f64<TY>(s * scale);
        else
          partial[(b * splits + split) * n + j] = s;
      }
    }
    __syncthreads();
  }
}

/// out[b*n + j] = scale * sum_s partial[(b*splits + s)*n + j], s in order.
template <class TY>
__global__ void __launch_bounds__(kThreads)
    colsum_finalize_kernel(const double *partial, int64_t batches, int splits,
                           int64_t n, TY *out, double scale) {
  const int64_t total = batches * n;
  const int64_t stride = int64_t(gridDim.x) * kThreads;
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < total;
       i += stride) {
    const int64_t b = i / n, j = i % n;
    double s = 0.0;
    for (int k = 0; k < splits; ++k)
      s += partial[(b * splits + k) * n + j];
    out[i] = from_f64<TY>(s * scale);
  }
}

template <class TX, class TY>
inline void column_sum(const Context &ctx, const char *name, const TX *x,
                       int64_t batches, int64_t rows, int64_t n, TY *out,
                       double scale, int64_t ld = 0) {
  if (batches <= 0 || n <= 0)
    return;
  if (rows < 0)
    rows = 0;
  if (ld <= 0)
    ld = n;
  // float: 4-wide; bf16: 8-wide (16 bytes), else 4-wide (8 bytes).
  constexpr bool kWide = kIsBf16<TX>;
  int kv = 1;
  if (kWide && n % 8 == 0 && ld % 8 == 0 && vec_aligned(x, 8))
    kv = 8;
  else if (n % 4 == 0 && ld % 4 == 0 && vec_aligned(x, 4))
    kv = 4;
  const int64_t nv = n / kv;
  const int tile = int(nv < 64 ? nv : 64);
  const int lanes = kThreads / tile;
  const int64_t tiles = ceil_div(nv, tile);
  const int64_t zb = batches < 65535 ? batches : 65535;
  if (tiles > 0x7fffffff) {
    fail_arg(name, "too many columns");
    return;
  }
  // Split the rows until the grid fills the machine, each lane keeping at
  // least 8 rows, the partial sums fitting in scratch.
  const int64_t target = int64_t(sm_count(ctx)) * 8;
  int64_t splits = 1;
  if (tiles * zb < target)
    splits = ceil_div(target, tiles * zb);
  const int64_t max_by_rows = ceil_div(rows, int64_t(lanes) * 8);
  if (splits > max_by_rows)
    splits = max_by_rows;
  if (splits > 65535)
    splits = 65535;
  double *partial = nullptr;
  if (splits > 1) {
    const int64_t fit =
        int64_t(ctx.scratch ? ctx.scratch_bytes : 0) / (batches * n * 8);
    if (splits > fit)
      splits = fit;
    if (splits > 1)
      partial = ScratchCursor(ctx).take<double>(size_t(splits * batches * n));
    if (!partial)
      splits = 1;
  }
  if (splits < 1)
    splits = 1;
  const int64_t per_split = splits > 1 ? ceil_div(rows, splits) : rows;
  if (splits > 1)
    splits = ceil_div(rows, per_split); // no empty split
  const dim3 grid{unsigned(tiles), unsigned(splits), unsigned(zb)};
  with_width<kWide>(kv, [&](auto wc) {
    colsum_kernel<decltype(wc)::value><<<grid, kThreads, 0, ctx.stream>>>(
        x, batches, rows, n, ld, tile, per_split, partial, out, scale);
  });
  check_launch(name);
  if (splits > 1) {
    colsum_finalize_kernel<<<grid_for(ctx, batches * n), kThreads, 0,
                             ctx.stream>>>(partial, batches, int(splits), n,
                                           out, scale);
    check_launch(name);
  }
}

//===--- LayerNorm --------------------------------------------------------===//
// One warp per row. Fast path (n a multiple of the vector width kW, n <=
// 1024, 16-byte aligned; kW = 4 floats, or 8 elements when a tensor is
// bf16): the row lives in registers as kChunks vectors of kW per lane
// (kChunks * kW <= 32), read once. Statistics as on the CPU: the mean summed
// around the row's first element (rows like 300 +- 1 keep their digits),
// then the mean of squared deviations.

constexpr int kLnMaxChunks = 8;   // n <= 32 lanes * 4 floats * 8 = 1024
constexpr int kLnMaxPerLane = 32; // kChunks * kW: n <= 1024 at any width
constexpr int kLnRowsPerBlock = kThreads / 32;
constexpr int64_t kLnGradRowsPerWarp = 32; // float partial sums per warp

/// f(0) + ... + f(W-1), added in pairs: ((f0 + f1) + (f2 + f3)) + ...
template <int W, class F> __device__ __forceinline__ float pair_sum(F f) {
  static_assert(W == 4 || W == 8, "vector width");
  if constexpr (W == 4)
    return (f(0) + f(1)) + (f(2) + f(3));
  else
    return ((f(0) + f(1)) + (f(2) + f(3))) + ((f(4) + f(5)) + (f(6) + f(7)));
}

/// Calls f(std::integral_constant<int, C>{}) for the runtime c in [1, kMax].
template <int kMax, class F> inline void with_chunks(int c, F &&f) {
  if constexpr (kMax >= 1) {
    if (c == kMax)
      f(std::integral_constant<int, kMax>{});
    else
      with_chunks<kMax - 1>(c, f);
  }
}

template <int kChunks, int kW, class TX, class TY>
__global__ void __launch_bounds__(kThreads)
    layer_norm_warp_kernel(const TX *x, const float *gamma, const float *beta,
                           TY *y, int64_t rows, int n, float eps) {
  static_assert(kChunks * kW <= kLnMaxPerLane, "row too long for registers");
  const int lane = threadIdx.x & 31;
  const int nv = n / kW;
  const int64_t nwarps = int64_t(gridDim.x) * kLnRowsPerBlock;
  for (int64_t r = int64_t(blockIdx.x) * kLnRowsPerBlock + (threadIdx.x >> 5);
       r < rows; r += nwarps) {
    const TX *xr = x + r * n;
    float v[kChunks][kW];
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int j = c * 32 + lane;
      if (j < nv)
        ld_vec<kW>(xr, j, v[c]);
      else
#pragma unroll
        for (int i = 0; i < kW; ++i)
          v[c][i] = 0.0f;
    }
    const float pivot = __shfl_sync(kFullMask, v[0][0], 0);
    float s = 0.0f;
#pragma unroll
    for (int c = 0; c < kChunks; ++c)
      if (c * 32 + lane < nv)
        s += pair_sum<kW>([&](int i) { return v[c][i] - pivot; });
    const float mean = pivot + warp_sum(s) / float(n);
    float q = 0.0f;
#pragma unroll
    for (int c = 0; c < kChunks; ++c)
      if (c * 32 + lane < nv)
        q += pair_sum<kW>([&](int i) {
          const float d = v[c][i] - mean;
          return d * d;
        });
    const float rstd = 1.0f / sqrtf(warp_sum(q) / float(n) + eps);
    TY *yr = y + r * n;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int j = c * 32 + lane;
      if (j < nv) {
        float g[kW], b[kW], o[kW];
        ld_vec<kW>(gamma, j, g);
        ld_vec<kW>(beta, j, b);
#pragma unroll
        for (int i = 0; i < kW; ++i)
          o[i] = (v[c][i] - mean) * rstd * g[i] + b[i];
        st_vec<kW>(yr, j, o);
      }
    }
  }
}

/// Any n, any alignment: the same statistics from three strided passes over
/// the row (the later ones hit L1).
struct RowStats {
  float mean, rstd;
};
template <class TX>
__device__ __forceinline__ RowStats row_stats(const TX *xr, int64_t n,
                                              float eps, int lane) {
  const float pivot = to_f32(xr[0]);
  float s = 0.0f;
  for (int64_t j = lane; j < n; j += 32)
    s += to_f32(xr[j]) - pivot;
  const float mean = pivot + warp_sum(s) / float(n);
  float q = 0.0f;
  for (int64_t j = lane; j < n; j += 32) {
    const float d = to_f32(xr[j]) - mean;
    q += d * d;
  }
  return {mean, 1.0f / sqrtf(warp_sum(q) / float(n) + eps)};
}

template <class TX, class TY>
__global__ void __launch_bounds__(kThreads)
    layer_norm_generic_kernel(const TX *x, const float *gamma,
                              const float *beta, TY *y, int64_t rows, int64_t n,
                              float eps) {
  const int lane = threadIdx.x & 31;
  const int64_t nwarps = int64_t(gridDim.x) * kLnRowsPerBlock;
  for (int64_t r = int64_t(blockIdx.x) * kLnRowsPerBlock + (threadIdx.x >> 5);
       r < rows; r += nwarps) {
    const TX *xr = x + r * n;
    const RowStats st = row_stats(xr, n, eps, lane);
    for (int64_t j = lane; j < n; j += 32)
      y[r * n + j] = from_f32<TY>(
          (to_f32(xr[j]) - st.mean) * st.rstd * gamma[j] + beta[j]);
  }
}

/// Backward, fast path: dx per row, and this warp's share of dgamma/dbeta
/// in registers; the block adds its warps in order (shared memory, double)
/// and writes one partial row [2n] to scratch.
template <int kChunks, int kW, class TX, class TG, class TD>
__global__ void __launch_bounds__(kThreads)
    layer_norm_grad_warp_kernel(const TX *x, const float *gamma, const TG *dy,
                                TD *dx, int64_t rows, int n, float eps,
                                double *partial) {
  static_assert(kChunks * kW <= kLnMaxPerLane, "row too long for registers");
  __shared__ double sh[2 * kChunks * 32 * kW];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int nv = n / kW;
  const int64_t nwarps = int64_t(gridDim.x) * kLnRowsPerBlock;
  float ag[kChunks][kW], ab[kChunks][kW];
#pragma unroll
  for (int c = 0; c < kChunks; ++c)
#pragma unroll
    for (int i = 0; i < kW; ++i)
      ag[c][i] = ab[c][i] = 0.0f;
  const float invN = 1.0f / float(n);
  for (int64_t r = int64_t(blockIdx.x) * kLnRowsPerBlock + warp; r < rows;
       r += nwarps) {
    const TX *xr = x + r * n;
    const TG *dyr = dy + r * n;
    float v[kChunks][kW], d[kChunks][kW];
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int j = c * 32 + lane;
      if (j < nv) {
        ld_vec<kW>(xr, j, v[c]);
        ld_vec<kW>(dyr, j, d[c]);
      } else {
#pragma unroll
        for (int i = 0; i < kW; ++i)
          v[c][i] = d[c][i] = 0.0f;
      }
    }
    const float pivot = __shfl_sync(kFullMask, v[0][0], 0);
    float s = 0.0f;
#pragma unroll
    for (int c = 0; c < kChunks; ++c)
      if (c * 32 + lane < nv)
        s += pair_sum<kW>([&](int i) { return v[c][i] - pivot; });
    const float mean = pivot + warp_sum(s) / float(n);
    float q = 0.0f;
#pragma unroll
    for (int c = 0; c < kChunks; ++c)
      if (c * 32 + lane < nv)
        q += pair_sum<kW>([&](int i) {
          const float e = v[c][i] - mean;
          return e * e;
        });
    const float rstd = 1.0f / sqrtf(warp_sum(q) / float(n) + eps);
    // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * gamma.
    float sumG = 0.0f, sumGX = 0.0f;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int j = c * 32 + lane;
      if (j < nv) {
        float gm[kW], h[kW];
        ld_vec<kW>(gamma, j, gm);
#pragma unroll
        for (int i = 0; i < kW; ++i)
          h[i] = (v[c][i] - mean) * rstd;
#pragma unroll
        for (int i = 0; i < kW; ++i)
          ag[c][i] += d[c][i] * h[i];
#pragma unroll
        for (int i = 0; i < kW; ++i)
          ab[c][i] = ab[c][i] + d[c][i];
#pragma unroll
        for (int i = 0; i < kW; ++i) {
          // g rounded once (__fmul_rn: never fused into the subtraction
          // below), as on the CPU; see layer_norm_grad_dx_kernel.
          d[c][i] = __fmul_rn(d[c][i], gm[i]); // now g
        }
        sumG += pair_sum<kW>([&](int i) { return d[c][i]; });
        sumGX += pair_sum<kW>([&](int i) { return d[c][i] * h[i]; });
      }
    }
    const float meanG = warp_sum(sumG) * invN;
    const float meanGX = warp_sum(sumGX) * invN;
    TD *dxr = dx + r * n;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int j = c * 32 + lane;
      if (j < nv) {
        float o[kW];
#pragma unroll
        for (int i = 0; i < kW; ++i) {
          const float h = (v[c][i] - mean) * rstd;
          o[i] = rstd * (d[c][i] - meanG - h * meanGX);
        }
        st_vec<kW>(dxr, j, o);
      }
    }
  }
  // Block partial: warps add their registers in warp order.
  for (int j = threadIdx.x; j < 2 * n; j += kThreads)
    sh[j] = 0.0;
  __syncthreads();
  for (int w = 0; w < kLnRowsPerBlock; ++w) {
    if (warp == w) {
#pragma unroll
      for (int c = 0; c < kChunks; ++c) {
        const int j = c * 32 + lane;
        if (j < nv) {
          double *sg = sh + kW * j, *sb = sh + n + kW * j;
#pragma unroll
          for (int i = 0; i < kW; ++i) {
            sg[i] += double(ag[c][i]);
            sb[i] += double(ab[c][i]);
          }
        }
      }
    }
    __syncthreads();
  }
  double *out = partial + int64_t(blockIdx.x) * 2 * n;
  for (int j = threadIdx.x; j < 2 * n; j += kThreads)
    out[j] = sh[j];
}

/// Backward, any n: dx per row (warp per row), and the row statistics to
/// scratch for the column pass below.
template <class TX, class TG, class TD>
__global__ void __launch_bounds__(kThreads)
    layer_norm_grad_dx_kernel(const TX *x, const float *gamma, const TG *dy,
                              TD *dx, int64_t rows, int64_t n, float eps,
                              float2 *stats) {
  const int lane = threadIdx.x & 31;
  const int64_t nwarps = int64_t(gridDim.x) * kLnRowsPerBlock;
  const float invN = 1.0f / float(n);
  for (int64_t r = int64_t(blockIdx.x) * kLnRowsPerBlock + (threadIdx.x >> 5);
       r < rows; r += nwarps) {
    const TX *xr = x + r * n;
    const TG *dyr = dy + r * n;
    const RowStats st = row_stats(xr, n, eps, lane);
    // g = dy * gamma is rounded once with __fmul_rn, which the compiler may
    // not contract: a plain `dy * gamma - meanG` becomes fma(dy, gamma,
    // -meanG), subtracting the rounded mean from the unrounded product. For
    // n == 1 (mean == x exactly, xhat == 0, meanG == g) the CPU's dx is
    // exactly 0, but the fused form left g's rounding error times rstd =
    // 1/sqrt(eps) (~1e-5). With g rounded as on the CPU the terms cancel
    // exactly, and in general dx follows the CPU's expression.
    float sumG = 0.0f, sumGX = 0.0f;
    for (int64_t j = lane; j < n; j += 32) {
      const float g = __fmul_rn(to_f32(dyr[j]), gamma[j]);
      sumG += g;
      sumGX += g * ((to_f32(xr[j]) - st.mean) * st.rstd);
    }
    const float meanG = warp_sum(sumG) * invN;
    const float meanGX = warp_sum(sumGX) * invN;
    for (int64_t j = lane; j < n; j += 32) {
      const float xhat = (to_f32(xr[j]) - st.mean) * st.rstd;
      const float g = __fmul_rn(to_f32(dyr[j]), gamma[j]);
      dx[r * n + j] = from_f32<TD>(st.rstd * (g - meanG - xhat * meanGX));
    }
    if (lane == 0)
      stats[r] = make_float2(st.mean, st.rstd);
  }
}

/// dgamma/dbeta partials over a split of the rows: block (32 columns x 8
/// row lanes), lanes added in order; one partial row [2n] per split.
template <class TX, class TG>
__global__ void __launch_bounds__(kThreads)
    layer_norm_grad_cols_kernel(const TX *x, const TG *dy, const float2 *stats,
                                int64_t rows, int64_t n, int64_t rows_per_split,
                                double *partial) {
  __shared__ double shg[kThreads], shb[kThreads];
  const int cl = threadIdx.x & 31, lane = threadIdx.x >> 5;
  const int64_t col = int64_t(blockIdx.x) * 32 + cl;
  const int64_t r0 = int64_t(blockIdx.y) * rows_per_split;
  const int64_t r1 = r0 + rows_per_split < rows ? r0 + rows_per_split : rows;
  double ag = 0.0, ab = 0.0;
  if (col < n)
    for (int64_t r = r0 + lane; r < r1; r += kThreads / 32) {
      const float2 st = stats[r];
      const float g = to_f32(dy[r * n + col]);
      ag += double(g) * double((to_f32(x[r * n + col]) - st.x) * st.y);
      ab += double(g);
    }
  shg[threadIdx.x] = ag;
  shb[threadIdx.x] = ab;
  __syncthreads();
  if (lane == 0 && col < n) {
    double sg = 0.0, sb = 0.0;
    for (int l = 0; l < kThreads / 32; ++l) {
      sg += shg[l * 32 + cl];
      sb += shb[l * 32 + cl];
    }
    double *out = partial + int64_t(blockIdx.y) * 2 * n;
    out[col] = sg;
    out[n + col] = sb;
  }
}

/// dgamma[j] / dbeta[j] = sum over `parts` partial rows [2n], in order.
template <int kUnused = 0>
__global__ void __launch_bounds__(kThreads)
    layer_norm_grad_finalize_kernel(const double *partial, int parts, int64_t n,
                                    float *dgamma, float *dbeta) {
  const int64_t stride = int64_t(gridDim.x) * kThreads;
  for (int64_t j = int64_t(blockIdx.x) * kThreads + threadIdx.x; j < 2 * n;
       j += stride) {
    double s = 0.0;
    for (int p = 0; p < parts; ++p)
      s += partial[int64_t(p) * 2 * n + j];
    if (j < n)
      dgamma[j] = float(s);
    else
      dbeta[j - n] = float(s);
  }
}

//===--- Softmax cross-entropy --------------------------------------------===//
// One warp per row: first maximum, sum of shifted exponentials, the row's
// loss (double), gradient and hit; the block adds its warps in order and a
// one-block kernel adds the blocks in a fixed tree. Deterministic.

template <class TL, class TG>
__global__ void __launch_bounds__(kThreads)
    softmax_xent_rows_kernel(const TL *logits, const int32_t *labels,
                             TG *dlogits, int64_t B, int64_t C,
                             float grad_scale, double *block_loss,
                             long long *block_correct) {
  __shared__ double sh_loss[kLnRowsPerBlock];
  __shared__ long long sh_correct[kLnRowsPerBlock];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t nwarps = int64_t(gridDim.x) * kLnRowsPerBlock;
  double loss = 0.0;
  long long correct = 0;
  for (int64_t r = int64_t(blockIdx.x) * kLnRowsPerBlock + warp; r < B;
       r += nwarps) {
    const TL *z = logits + r * C;
    // First maximum among the non-NaN logits (ties: lowest index).
    float m = -INFINITY;
    int64_t best = C;
    for (int64_t j = lane; j < C; j += 32) {
      const float zj = to_f32(z[j]);
      if (zj > m) {
        m = zj;
        best = j;
      }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
      const float om = __shfl_xor_sync(kFullMask, m, o);
      const long long ob = __shfl_xor_sync(kFullMask, (long long)best, o);
      if (om > m || (om == m && ob < best)) {
        m = om;
        best = ob;
      }
    }
    // The CPU scan starts at z[0]: a NaN there, or no logit above -inf,
    // leaves (0, z[0]).
    const float z0 = to_f32(z[0]);
    if (z0 != z0 || best == C) {
      best = 0;
      m = z0;
    }
    float s = 0.0f;
    for (int64_t j = lane; j < C; j += 32)
      s += expf(to_f32(z[j]) - m);
    s = warp_sum(s);
    const int64_t label = labels[r];
    const bool valid = label >= 0 && label < C;
    if (valid && lane == 0) {
      loss += double(logf(s)) - (double(to_f32(z[label])) - double(m));
      correct += best == label ? 1 : 0;
    }
    if (dlogits) {
      TG *g = dlogits + r * C;
      const float invS = 1.0f / s;
      for (int64_t j = lane; j < C; j += 32) {
        float v = 0.0f;
        if (valid) {
          v = expf(to_f32(z[j]) - m) * invS * grad_scale;
          if (j == label)
            v -= grad_scale;
        }
        g[j] = from_f32<TG>(v);
      }
    }
  }
  if (lane == 0) {
    sh_loss[warp] = loss;
    sh_correct[warp] = correct;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    double l = 0.0;
    long long c = 0;
    for (int w = 0; w < kLnRowsPerBlock; ++w) {
      l += sh_loss[w];
      c += sh_correct[w];
    }
    block_loss[blockIdx.x] = l;
    block_correct[blockIdx.x] = c;
  }
}

template <int kUnused = 0>
__global__ void __launch_bounds__(kThreads)
    softmax_xent_finalize_kernel(const double *block_loss,
                                 const long long *block_correct, int blocks,
                                 int64_t B, float *loss, int64_t *correct) {
  __shared__ double sl[kThreads];
  __shared__ long long sc[kThreads];
  double l = 0.0;
  long long c = 0;
  for (int i = threadIdx.x; i < blocks; i += kThreads) {
    l += block_loss[i];
    c += block_correct[i];
  }
  sl[threadIdx.x] = l;
  sc[threadIdx.x] = c;
  __syncthreads();
  for (int h = kThreads / 2; h > 0; h >>= 1) {
    if (int(threadIdx.x) < h) {
      sl[threadIdx.x] += sl[threadIdx.x + h];
      sc[threadIdx.x] += sc[threadIdx.x + h];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    if (loss)
      *loss = B > 0 ? float(sl[0] / double(B)) : 0.0f;
    if (correct)
      *correct = int64_t(sc[0]);
  }
}

//===--- SBP rows ---------------------------------------------------------===//
// A keep map inv[t] = the last k with idx[k] == t (-1: dropped token) turns
// every scatter into a gather over output rows: each output element is
// written once, by one thread, with no atomics. Each block builds the map in
// shared memory (T ints) from idx; for T > kMaxSmemTokens one block builds
// it in scratch first. inv[T] (global) / the return value flags repeated
// indices, which take a slower path that adds them in k order.

constexpr int kMaxSmemTokens = 12 * 1024; // 48 KiB of ints

__device__ inline bool build_keep_map(const int32_t *idx, int K, int T,
                                      int *inv) {
  for (int t = threadIdx.x; t < T; t += blockDim.x)
    inv[t] = -1;
  __syncthreads();
  int dup = 0;
  for (int k = threadIdx.x; k < K; k += blockDim.x) {
    const int t = idx[k];
    if (t >= 0 && t < T && atomicMax(&inv[t], k) != -1)
      dup = 1;
  }
  return __syncthreads_or(dup) != 0;
}

template <int kUnused = 0>
__global__ void __launch_bounds__(1024)
    build_keep_map_kernel(const int32_t *idx, int K, int T, int *map) {
  const bool dup = build_keep_map(idx, K, T, map);
  if (threadIdx.x == 0)
    map[T] = dup ? 1 : 0;
}

enum class RowOp { Scatter, Mask, ScatterAdd, ScatterAcc };
/// Scatter:    out[b,t] = xk[b, inv[t]] or 0            (src = xk)
/// Mask:       out[b,t] = inv[t] >= 0 ? x[b,t] : 0       (src = x)
/// ScatterAdd: out[b,t] = base[b,t] + sum_{idx[k]==t} xk[b,k]
/// ScatterAcc: over kept rows, out[b,idx[k]] += xk[b,k]
/// Sizes in units of kVec elements (Dv = D / kVec).
template <RowOp kOp, int kVec, class I, class TS, class TB, class TO>
__global__ void __launch_bounds__(kThreads)
    row_map_kernel(const TS *src, const TB *base, const int32_t *idx, TO *out,
                   I B, I T, I K, I Dv, const int *global_map) {
  extern __shared__ int smem_map[];
  const int *inv;
  bool dup;
  if (global_map) {
    inv = global_map;
    dup = global_map[T] != 0;
  } else {
    dup = build_keep_map(idx, int(K), int(T), smem_map);
    inv = smem_map;
  }
  const I stride = I(gridDim.x) * kThreads;
  const I first = I(blockIdx.x) * kThreads + threadIdx.x;
  if (kOp == RowOp::ScatterAcc) {
    const I total = B * K * Dv;
    for (I e = first; e < total; e += stride) {
      const I c = e % Dv, row = e / Dv, k = row % K, b = row / K;
      const int t = idx[k];
      if (t < 0 || I(t) >= T)
        continue;
      const I o = (b * T + I(t)) * Dv + c;
      float acc[kVec], x[kVec];
      if (!dup) {
        ld_vec<kVec>(out, o, acc);
        ld_vec<kVec>(src, e, x);
#pragma unroll
        for (int j = 0; j < kVec; ++j)
          acc[j] = acc[j] + x[j];
        st_vec<kVec>(out, o, acc);
      } else if (inv[t] == int(k)) { // the last occurrence adds them all
        ld_vec<kVec>(out, o, acc);
        for (I kk = 0; kk < K; ++kk)
          if (idx[kk] == t) {
            ld_vec<kVec>(src, (b * K + kk) * Dv + c, x);
#pragma unroll
            for (int j = 0; j < kVec; ++j)
              acc[j] = acc[j] + x[j];
          }
        st_vec<kVec>(out, o, acc);
      }
    }
  } else {
    const I total = B * T * Dv;
    for (I e = first; e < total; e += stride) {
      const I c = e % Dv, row = e / Dv, t = row % T, b = row / T;
      const int k = inv[t];
      if constexpr (kOp == RowOp::Scatter || kOp == RowOp::Mask) {
        if (k >= 0)
          mv_vec<kVec>(src, kOp == RowOp::Scatter ? (b * K + I(k)) * Dv + c : e,
                       out, e);
        else
          zero_vec<kVec>(out, e);
      } else { // ScatterAdd
        float val[kVec], x[kVec];
        ld_vec<kVec>(base, e, val);
        if (k >= 0) {
          if (!dup) {
            ld_vec<kVec>(src, (b * K + I(k)) * Dv + c, x);
#pragma unroll
            for (int j = 0; j < kVec; ++j)
              val[j] = val[j] + x[j];
          } else {
            for (I kk = 0; kk < K; ++kk)
              if (idx[kk] == int(t)) {
                ld_vec<kVec>(src, (b * K + kk) * Dv + c, x);
#pragma unroll
                for (int j = 0; j < kVec; ++j)
                  val[j] = val[j] + x[j];
              }
          }
        }
        st_vec<kVec>(out, e, val);
      }
    }
  }
}

template <RowOp kOp, class TS, class TB, class TO>
inline void launch_row_map(const Context &ctx, const char *name, const TS *src,
                           const TB *base, const int32_t *idx, TO *out,
                           int64_t B, int64_t T, int64_t K, int64_t D) {
  if (B <= 0 || T <= 0 || D <= 0)
    return;
  if (K < 0)
    K = 0;
  if (T >= (int64_t(1) << 31) || K >= (int64_t(1) << 31)) {
    fail_arg(name, "T or K does not fit in 32 bits");
    return;
  }
  constexpr bool kAdd = kOp == RowOp::ScatterAdd;
  constexpr bool kWide = kIsBf16<TS> || kIsBf16<TO> || (kAdd && kIsBf16<TB>);
  const int w = row_width<kWide>(
      D,
      {vec_aligned(src, 8), vec_aligned(out, 8), !kAdd || vec_aligned(base, 8)},
      {vec_aligned(src, 4), vec_aligned(out, 4),
       !kAdd || vec_aligned(base, 4)});
  const int64_t Dv = D / w;
  const int64_t rows = kOp == RowOp::ScatterAcc ? B * K : B * T;
  const int64_t span = B * (T > K ? T : K) * Dv; // largest offset touched
  const unsigned grid = grid_for(ctx, rows * Dv);
  int *global_map = nullptr;
  size_t smem = size_t(T) * sizeof(int);
  if (T > kMaxSmemTokens) {
    global_map = ScratchCursor(ctx).take<int>(size_t(T) + 1);
    if (!global_map) {
      fail_arg(name, "scratch too small for the keep map (T ints)");
      return;
    }
    smem = 0;
    build_keep_map_kernel<>
        <<<1, 1024, 0, ctx.stream>>>(idx, int(K), int(T), global_map);
    check_launch(name);
  }
  if (rows == 0)
    return;
  with_width<kWide>(w, [&](auto wc) {
    constexpr int W = decltype(wc)::value;
    if (span < kMaxIndex32) {
      using I = uint32_t;
      row_map_kernel<kOp, W, I><<<grid, kThreads, smem, ctx.stream>>>(
          src, base, idx, out, I(B), I(T), I(K), I(Dv), global_map);
    } else {
      row_map_kernel<kOp, W, int64_t><<<grid, kThreads, smem, ctx.stream>>>(
          src, base, idx, out, B, T, K, Dv, global_map);
    }
  });
  check_launch(name);
}

/// out[b,k] = x[b, idx[k]] or 0, in units of kVec elements.
template <int kVec, class I, class TX, class TY>
__global__ void __launch_bounds__(kThreads)
    gather_rows_kernel(const TX *x, const int32_t *idx, TY *out, I B, I T, I K,
                       I Dv) {
  const I total = B * K * Dv;
  const I stride = I(gridDim.x) * kThreads;
  for (I e = I(blockIdx.x) * kThreads + threadIdx.x; e < total; e += stride) {
    const I c = e % Dv, row = e / Dv, k = row % K, b = row / K;
    const int t = __ldg(idx + k);
    if (t >= 0 && I(t) < T)
      mv_vec<kVec>(x, (b * T + I(t)) * Dv + c, out, e);
    else
      zero_vec<kVec>(out, e);
  }
}

//===--- patchify ---------------------------------------------------------===//

/// One thread per kVec output elements (kVec divides p and W).
template <int kVec, class I, class TX, class TY>
__global__ void __launch_bounds__(kThreads)
    patchify_kernel(const TX *img, TY *tokens, I total, I C, I H, I W, I p,
                    I gh, I gw) {
  const I pv = p / kVec;
  const I stride = I(gridDim.x) * kThreads;
  for (I e = I(blockIdx.x) * kThreads + threadIdx.x; e < total; e += stride) {
    I r = e;
    const I px = r % pv;
    r /= pv;
    const I py = r % p;
    r /= p;
    const I c = r % C;
    r /= C;
    const I j = r % gw;
    r /= gw;
    const I i = r % gh;
    const I b = r / gh;
    mv_vec<kVec>(img + ((b * C + c) * H + i * p + py) * W + j * p + px * kVec,
                 I(0), tokens, e);
  }
}

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
  bool operator<(const GemmKey &o) const {
    return std::tie(m, n, k, lda, ldb, ldc, flags, aligns, types) <
           std::tie(o.m, o.n, o.k, o.lda, o.ldb, o.ldc, o.flags, o.aligns,
                    o.types);
  }
};

struct GemmPlan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  size_t workspace = 0;
  bool fallback = false; // no cuBLASLt algorithm: gemm_fallback_kernel
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
  check_cublas(st, "gemm", "cublasLtMatmulPreferenceSetAttribute");
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  if (st == CUBLAS_STATUS_SUCCESS) {
    st = cublasLtMatmulAlgoGetHeuristic(ctx.lt, plan.op, plan.a, plan.b, plan.c,
                                        plan.c, pref, 1, &result, &found);
    if (st == CUBLAS_STATUS_NOT_SUPPORTED) {
      st = CUBLAS_STATUS_SUCCESS;
      found = 0;
    }
    check_cublas(st, "gemm", "cublasLtMatmulAlgoGetHeuristic");
  }
  cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS)
    return false;
  if (found < 1 || result.state != CUBLAS_STATUS_SUCCESS) {
    plan.fallback = true; // e.g. 4-byte aligned operands
    return true;
  }
  plan.algo = result.algo;
  plan.workspace = result.workspaceSize;
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

template <class T> constexpr cudaDataType_t gemm_data_type() {
  return kIsBf16<T> ? CUDA_R_16BF : CUDA_R_32F;
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
  {
    std::lock_guard<std::mutex> lock(ctx.gemm_plans->mu);
    auto it = ctx.gemm_plans->plans.find(key);
    if (it == ctx.gemm_plans->plans.end()) {
      GemmPlan fresh;
      if (!make_plan(ctx, key, fresh)) {
        destroy_plan(fresh);
        return;
      }
      it = ctx.gemm_plans->plans.emplace(key, fresh).first;
    }
    plan = it->second;
  }
  if (plan.fallback) {
    gemm_fallback_impl(ctx, transA, transB, M, N, K, alpha, A, lda, B, ldb,
                       beta, C, ldc);
    return;
  }
  const cublasStatus_t st = cublasLtMatmul(
      ctx.lt, plan.op, &alpha, B, plan.a, A, plan.b, &beta, C, plan.c, C,
      plan.c, &plan.algo, plan.workspace ? ctx.workspace : nullptr,
      plan.workspace, ctx.stream);
  check_cublas(st, "gemm", "cublasLtMatmul");
}

//===--- Attention --------------------------------------------------------===//
// fp32 FlashAttention on CUDA cores over timm's qkv layout, deterministic (no
// atomics anywhere).
//  - Dh <= 64: tiled kernels of 128 threads (4 warps), templated on the
//    padded head dim kDh (32 or 64). Every CTA owns one tile of one (batch,
//    head) and streams the other side in tiles of 32 rows through shared
//    memory. The inner loops are register-blocked outer products; operands
//    that a thread reads at several rows for one head dim are stored
//    transposed ([d][row], 16-byte rows) so those reads are float4
//    broadcasts. A warp whose rows are all padding skips the arithmetic (it
//    still helps load), so the last, mostly empty tile of T = 197 costs
//    little.
//  - 64 < Dh <= 128: one warp per query (key) row, a warp reduction per
//    score. Correct, slower; no ViT uses it.
// Forward: a CTA owns 64 queries and streams the keys with an online
// softmax. With a keep list a small one-block kernel first splits the
// tokens into the free ones (attend all T keys) and the kept ones (attend
// the kept keys), and the query tiles run over those two lists: a kept
// query's tile streams only the kept keys, so no score is computed to be
// masked away (at keep 0.5 about 3/4 of the plain forward's work).
// Backward: two passes over the score matrix, both recomputing P and dS
// with the same tile function (attn_bwd_probs): a query-stationary pass
// (dQ; it also computes D = rowsum(dO * O) of its queries into scratch),
// then a key-stationary pass (dK, dV) that reads D. No partial sum is
// shared between CTAs.
// Every tile product goes through attn_tile_dot (4 x 4 register tiles of a
// 64 x 32 product), the loop a tensor-core version would replace. The
// kernels are bound by shared-memory bandwidth, which is paid per thread
// and byte (a broadcast float4 read costs as much as a distinct one): a
// thread loads ~0.4 floats per FMA. Measured on an H200, 8 x 8 register
// tiles in 64-thread CTAs were slower (fewer warps to hide latency, and
// coarser skipping of padding rows).

constexpr int kAttnThreads = 128;
constexpr int kAttnWarps = kAttnThreads / 32;
constexpr int kAttnTiledMaxDh = 64;
constexpr int kAttnMaxDh = 128;
constexpr int kAttnRows = 64; // rows of a CTA's stationary tile
constexpr int kAttnN = 32;    // rows of a streamed tile
constexpr int kAttnS = kAttnRows + 4; // row stride of [d][64 rows] tiles

/// One attention call; every kernel takes it by value.
struct AttnParams {
  const float *qkv = nullptr; // [B, T, 3*H*Dh]
  // Forward.
  float *o = nullptr;         // [B, T, H*Dh]
  float *lse_out = nullptr;   // [B, T, H], nullable
  /// With a keep list: free tokens ascending at [0, nfree), kept tokens
  /// ascending at [T, T + nkept); nfree at [2T], nkept at [2T + 1].
  const int32_t *lists = nullptr;
  int free_tiles = 0; // forward CTAs per (b, h) over the free tokens
  // Backward: o_in, lse, dout hold one row per query index q < Tq.
  const float *o_in = nullptr, *lse = nullptr, *dout = nullptr;
  float *dqkv = nullptr;
  float *rowdot = nullptr;            // scratch [B, H, Tq]: D of each query
  const int32_t *row_keep = nullptr;  // attention_bwd: [T]
  const int32_t *head_keep = nullptr; // attention_bwd: [H]
  const int32_t *queries = nullptr;   // attention_bwd_queries: keep[0..Tq)
  bool query_list = false;            // attention_bwd_queries
  int B = 0, T = 0, H = 0, Dh = 0, Tq = 0;
  int tiles = 0; // CTAs per (b, h)
  float scale = 1.0f;
  bool vec = false; // Dh % 4 == 0 and every tensor 16-byte aligned
};

__device__ __forceinline__ int64_t attn_ld_qkv(const AttnParams &p) {
  return int64_t(3) * p.H * p.Dh;
}
__device__ __forceinline__ int64_t attn_ld_o(const AttnParams &p) {
  return int64_t(p.H) * p.Dh;
}

/// qkv row of backward query q (< Tq), or -1 if it does not take part.
__device__ __forceinline__ int attn_query_row(const AttnParams &p, int q) {
  if (q >= p.Tq)
    return -1;
  if (p.query_list) {
    const int r = __ldg(p.queries + q);
    return r >= 0 && r < p.T ? r : -1;
  }
  return !p.row_keep || __ldg(p.row_keep + q) >= 0 ? q : -1;
}
/// Backward: key row j takes part.
__device__ __forceinline__ bool attn_key_ok(const AttnParams &p, int j) {
  return j < p.T && (!p.row_keep || __ldg(p.row_keep + j) >= 0);
}
/// attention_bwd: head h gets a gradient.
__device__ __forceinline__ bool attn_head_kept(const AttnParams &p, int h) {
  if (!p.head_keep)
    return true;
  for (int i = 0; i < p.H; ++i)
    if (__ldg(p.head_keep + i) == h)
      return true;
  return false;
}
/// Bit r: token t0 + r is listed in keep[0..K). Whole warp, every lane gets
/// the word.
__device__ __forceinline__ uint32_t attn_warp_listed(const int32_t *keep,
                                                     int K, int t0) {
  uint32_t w = 0;
  for (int e = int(threadIdx.x & 31); e < K; e += 32) {
    const int t = __ldg(keep + e);
    if (t >= t0 && t - t0 < 32)
      w |= 1u << (t - t0);
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    w |= __shfl_xor_sync(kFullMask, w, o);
  return w;
}

/// The probability and the scaled score gradient of one (query, key) pair
/// from s = q.k, dp = dO.v and the query's lse and D = rowsum(dO * O):
/// P = exp(scale s - lse), dS = scale P (dp - D), so dQ = dS K, dK = dS^T Q.
__device__ __forceinline__ void attn_prob_ds(float s, float dp, float lse,
                                             float rd, float scale, float &p,
                                             float &ds) {
  p = expf(scale * s - lse);
  ds = p * (dp - rd) * scale;
}

__device__ __forceinline__ float group8_max(float v) {
#pragma unroll
  for (int o = 4; o > 0; o >>= 1)
    v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}
__device__ __forceinline__ float group8_sum(float v) {
#pragma unroll
  for (int o = 4; o > 0; o >>= 1)
    v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

/// The 4 x 4 register tile of the thread (rg = t / 8, cl = t % 8) in a
/// 64 x 32 product of a transposed stationary tile sAT ([d][row], stride
/// kAttnS: rows rg*4 + i) and a row-major streamed one sX ([col][d], stride
/// kDh + 4: columns cl + 8*jj): out[i][jj] = sum_d A[row][d] X[col][d]. Per
/// 4 dims, 8 conflict-free float4 reads (32 floats a thread) feed 64 FMAs.
/// (The loop a tensor-core version would replace.)
template <int kDh>
__device__ __forceinline__ void attn_tile_dot(const float *sAT, const float *sX,
                                              int rg, int cl,
                                              float (&out)[4][4]) {
  constexpr int kS = kAttnS, kR = kDh + 4;
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int jj = 0; jj < 4; ++jj)
      out[i][jj] = 0.0f;
#pragma unroll 2
  for (int d = 0; d < kDh; d += 4) {
    float x[4][4];
#pragma unroll
    for (int jj = 0; jj < 4; ++jj) {
      const float4 v =
          *reinterpret_cast<const float4 *>(sX + (cl + 8 * jj) * kR + d);
      x[jj][0] = v.x;
      x[jj][1] = v.y;
      x[jj][2] = v.z;
      x[jj][3] = v.w;
    }
#pragma unroll
    for (int dd = 0; dd < 4; ++dd) {
      const float4 a =
          *reinterpret_cast<const float4 *>(sAT + (d + dd) * kS + rg * 4);
      const float av[4] = {a.x, a.y, a.z, a.w};
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int jj = 0; jj < 4; ++jj)
          out[i][jj] = fmaf(av[i], x[jj][dd], out[i][jj]);
    }
  }
}

/// Stores a thread's 4*kH values (dims 32*h + cl*4 + e) of one row to dst,
/// or zeros; dims >= Dh are dropped.
template <int kH>
__device__ __forceinline__ void attn_store_quads(float *dst,
                                                 const float (&a)[4 * kH],
                                                 int cl, int Dh, bool vec,
                                                 bool zero) {
#pragma unroll
  for (int hh = 0; hh < kH; ++hh) {
    const int d = 32 * hh + cl * 4;
    float v[4];
#pragma unroll
    for (int e = 0; e < 4; ++e)
      v[e] = zero ? 0.0f : a[4 * hh + e];
    if (vec) {
      if (d < Dh) // Dh % 4 == 0: all four or none
        *reinterpret_cast<float4 *>(dst + d) =
            make_float4(v[0], v[1], v[2], v[3]);
    } else {
#pragma unroll
      for (int e = 0; e < 4; ++e)
        if (d + e < Dh)
          dst[d + e] = v[e];
    }
  }
}

/// Loads rows 0..kRows-1 of a tile into shared memory: tile row r is source
/// row row_of(r) (-1: zeros) of `src` (row stride ld), columns >= Dh zero,
/// times scale. kTransposed: dst[d * kStride + r], else dst[r * kStride + d].
/// Float4 path (vec): a warp instruction reads 16 rows x 32 contiguous
/// bytes; transposed stores then hit 32 distinct banks (kStride % 32 == 4),
/// row-major ones are float4 (kStride % 4 == 0) or float2 (kStride % 32 ==
/// 2) and conflict-free too.
template <int kRows, int kDh, int kStride, bool kTransposed, class RowOf>
__device__ __forceinline__ void attn_load_tile(float *dst, const float *src,
                                               int64_t ld, int Dh, bool vec,
                                               float scale, RowOf row_of) {
  if (vec) {
    constexpr int kPairs = kDh / 8; // pairs of float4 columns
    constexpr int kItems = kRows / 16 * kPairs;
    static_assert(kItems % kAttnWarps == 0, "tile shape");
    constexpr int kPer = kItems / kAttnWarps;
    const int lane = threadIdx.x & 31, w = threadIdx.x >> 5;
    float4 x[kPer];
#pragma unroll
    for (int u = 0; u < kPer; ++u) {
      const int it = w + u * kAttnWarps;
      const int r = it / kPairs * 16 + (lane & 15);
      const int c = ((it % kPairs) * 2 + (lane >> 4)) * 4;
      const int row = c < Dh ? row_of(r) : -1;
      x[u] = row >= 0 ? *reinterpret_cast<const float4 *>(
                            src + int64_t(row) * ld + c)
                      : make_float4(0.f, 0.f, 0.f, 0.f);
    }
#pragma unroll
    for (int u = 0; u < kPer; ++u) {
      const int it = w + u * kAttnWarps;
      const int r = it / kPairs * 16 + (lane & 15);
      const int c = ((it % kPairs) * 2 + (lane >> 4)) * 4;
      const float4 v = make_float4(x[u].x * scale, x[u].y * scale,
                                   x[u].z * scale, x[u].w * scale);
      if constexpr (kTransposed) {
        dst[(c + 0) * kStride + r] = v.x;
        dst[(c + 1) * kStride + r] = v.y;
        dst[(c + 2) * kStride + r] = v.z;
        dst[(c + 3) * kStride + r] = v.w;
      } else if constexpr (kStride % 4 == 0) {
        *reinterpret_cast<float4 *>(dst + r * kStride + c) = v;
      } else {
        static_assert(kStride % 2 == 0, "float2 rows");
        *reinterpret_cast<float2 *>(dst + r * kStride + c) =
            make_float2(v.x, v.y);
        *reinterpret_cast<float2 *>(dst + r * kStride + c + 2) =
            make_float2(v.z, v.w);
      }
    }
  } else {
    for (int e = threadIdx.x; e < kRows * kDh; e += kAttnThreads) {
      const int r = e / kDh, d = e % kDh;
      const int row = d < Dh ? row_of(r) : -1;
      const float val = row >= 0 ? src[int64_t(row) * ld + d] * scale : 0.0f;
      dst[kTransposed ? d * kStride + r : r * kStride + d] = val;
    }
  }
}

/// One-block kernel: splits the T tokens by membership in keep[0..K) into
/// the free and the kept list (both ascending) and their counts, as
/// AttnParams::lists describes; flags (T ints) is its working space.
template <int kUnused = 0>
__global__ void __launch_bounds__(1024)
    attention_keep_lists_kernel(const int32_t *keep, int K, int T,
                                int32_t *lists, int32_t *flags) {
  __shared__ int warp_kept[32];
  const int tid = threadIdx.x, lane = tid & 31, w = tid >> 5;
  const int nthreads = blockDim.x, nwarps = nthreads / 32;
  for (int t = tid; t < T; t += nthreads)
    flags[t] = 0;
  __syncthreads();
  for (int e = tid; e < K; e += nthreads) {
    const int t = keep[e];
    if (t >= 0 && t < T)
      flags[t] = 1; // repeated entries write the same value
  }
  __syncthreads();
  int nkept = 0; // before this chunk, the same in every thread
  for (int c0 = 0; c0 < T; c0 += nthreads) {
    const int t = c0 + tid;
    const bool in = t < T, kept = in && flags[t] != 0;
    const unsigned ballot = __ballot_sync(kFullMask, kept);
    if (lane == 0)
      warp_kept[w] = __popc(ballot);
    __syncthreads();
    int before = nkept, total = nkept;
    for (int x = 0; x < nwarps; ++x) {
      before += x < w ? warp_kept[x] : 0;
      total += warp_kept[x];
    }
    before += __popc(ballot & ((1u << lane) - 1u));
    if (kept)
      lists[T + before] = t;
    else if (in)
      lists[t - before] = t; // free tokens before t: t - kept before t
    __syncthreads(); // warp_kept is rewritten by the next chunk
    nkept = total;
  }
  if (tid == 0) {
    lists[2 * T] = T - nkept;
    lists[2 * T + 1] = nkept;
  }
}

/// Forward, Dh <= kDh <= 64: a CTA owns 64 queries of one (batch, head)
/// (from the free or the kept list with a keep list) and streams their keys
/// in tiles of 32. Thread (rg = t / 8, cl = t % 8): query rows rg*4 + i
/// (i < 4), key columns cl + 8*jj (jj < 4), output dims 32*h + cl*4 + e.
/// Shared-memory reads are float4 and conflict-free: 8 FMAs per wavefront
/// in the scores, ~11 in P V.
template <int kDh>
__global__ void __launch_bounds__(kAttnThreads, 4)
    attention_fwd_tiled_kernel(const AttnParams p) {
  constexpr int kQ = kAttnRows, kK = kAttnN, kH = kDh / 32;
  constexpr int kQS = kAttnS, kRS = kDh + 4; // 16-byte rows, 4 banks apart
  __shared__ __align__(16) float sqT[kDh * kQS]; // [d][query], pre-scaled
  __shared__ __align__(16) float sk[kK * kRS];   // [key][d]
  __shared__ __align__(16) float sv[kK * kRS];   // [key][d]
  __shared__ __align__(16) float spT[kK * kQS];  // [key][query]
  const int t = threadIdx.x, warp = t >> 5, rg = t >> 3, cl = t & 7;
  const int bh = blockIdx.x / p.tiles, tile = blockIdx.x % p.tiles;
  const int b = bh / p.H, h = bh % p.H, T = p.T;
  // The queries (and their keys): all tokens, the free ones (all keys) or
  // the kept ones (kept keys).
  const int32_t *qlist = nullptr, *klist = nullptr;
  int nq = T, nk = T, i0 = tile * kQ;
  if (p.lists) {
    if (tile < p.free_tiles) {
      qlist = p.lists;
      nq = __ldg(p.lists + 2 * T);
    } else {
      qlist = klist = p.lists + T;
      nq = nk = __ldg(p.lists + 2 * T + 1);
      i0 = (tile - p.free_tiles) * kQ;
    }
  }
  if (i0 >= nq) // a tile of the upper bound the host launched: no query
    return;
  const int64_t ld = attn_ld_qkv(p), hd = int64_t(p.H) * p.Dh;
  const float *qb = p.qkv + int64_t(b) * T * ld + int64_t(h) * p.Dh;
  const float *kb = qb + hd, *vb = qb + 2 * hd;
  const auto qrow = [&](int r) {
    const int i = i0 + r;
    return i < nq ? (qlist ? __ldg(qlist + i) : i) : -1;
  };
  attn_load_tile<kQ, kDh, kQS, true>(sqT, qb, ld, p.Dh, p.vec, p.scale, qrow);
  const bool active = i0 + warp * 16 < nq; // the warp has a real query
  float m[4], l[4], acc[4][4 * kH];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.0f;
#pragma unroll
    for (int e = 0; e < 4 * kH; ++e)
      acc[i][e] = 0.0f;
  }
  for (int j0 = 0; j0 < nk; j0 += kK) {
    __syncthreads(); // the previous tile's reads are done
    const auto krow = [&](int r) {
      const int j = j0 + r;
      return j < nk ? (klist ? __ldg(klist + j) : j) : -1;
    };
    attn_load_tile<kK, kDh, kRS, false>(sk, kb, ld, p.Dh, p.vec, 1.0f, krow);
    attn_load_tile<kK, kDh, kRS, false>(sv, vb, ld, p.Dh, p.vec, 1.0f, krow);
    __syncthreads();
    if (!active)
      continue;
    float s[4][4];
    attn_tile_dot<kDh>(sqT, sk, rg, cl, s);
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      float mx = -INFINITY;
#pragma unroll
      for (int jj = 0; jj < 4; ++jj) {
        if (j0 + cl + 8 * jj >= nk)
          s[i][jj] = -INFINITY;
        mx = fmaxf(mx, s[i][jj]);
      }
      // Finite: key j0 of every tile is a real key.
      const float mNew = fmaxf(m[i], group8_max(mx));
      const float rescale = expf(m[i] - mNew); // 0 on the first tile
      float sum = 0.0f;
#pragma unroll
      for (int jj = 0; jj < 4; ++jj)
        sum += (s[i][jj] = expf(s[i][jj] - mNew));
      l[i] = l[i] * rescale + group8_sum(sum);
      m[i] = mNew;
#pragma unroll
      for (int e = 0; e < 4 * kH; ++e)
        acc[i][e] *= rescale;
    }
#pragma unroll
    for (int jj = 0; jj < 4; ++jj)
      *reinterpret_cast<float4 *>(spT + (cl + 8 * jj) * kQS + rg * 4) =
          make_float4(s[0][jj], s[1][jj], s[2][jj], s[3][jj]);
    __syncwarp(); // a row group reads only the P rows its 8 lanes wrote
#pragma unroll 4
    for (int j = 0; j < kK; ++j) {
      const float4 p4 =
          *reinterpret_cast<const float4 *>(spT + j * kQS + rg * 4);
      const float pr[4] = {p4.x, p4.y, p4.z, p4.w};
#pragma unroll
      for (int hh = 0; hh < kH; ++hh) {
        const float4 v = *reinterpret_cast<const float4 *>(
            sv + j * kRS + 32 * hh + cl * 4);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          acc[i][4 * hh + 0] = fmaf(pr[i], v.x, acc[i][4 * hh + 0]);
          acc[i][4 * hh + 1] = fmaf(pr[i], v.y, acc[i][4 * hh + 1]);
          acc[i][4 * hh + 2] = fmaf(pr[i], v.z, acc[i][4 * hh + 2]);
          acc[i][4 * hh + 3] = fmaf(pr[i], v.w, acc[i][4 * hh + 3]);
        }
      }
    }
  }
  if (!active)
    return;
  const int64_t ldo = attn_ld_o(p);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int tok = qrow(rg * 4 + i);
    if (tok < 0)
      continue;
    const float inv = 1.0f / l[i]; // l >= 1: the maximum's own term
#pragma unroll
    for (int e = 0; e < 4 * kH; ++e)
      acc[i][e] *= inv;
    attn_store_quads<kH>(p.o + (int64_t(b) * T + tok) * ldo +
                             int64_t(h) * p.Dh,
                         acc[i], cl, p.Dh, p.vec, false);
    if (p.lse_out && cl == 0)
      p.lse_out[(int64_t(b) * T + tok) * p.H + h] = m[i] + logf(l[i]);
  }
}

/// The backward's tile of probabilities P and scaled score gradients dS,
/// shared by both passes: rows r = rg*4 + i (i < 4) of the 64 stationary
/// rows, columns c = cl + 8*jj (jj < 4) of the 32 streamed ones. s = A_r .
/// X_c and dp = B_r . Y_c (attn_tile_dot), with A, B transposed ([d][row],
/// stride kAttnS) and X, Y row-major ([col][d], stride kDh + 4). The query
/// of a pair is the row (dQ pass: A = Q, B = dO, X = K, Y = V) or the
/// column (dK/dV pass: A = K, B = V, X = Q, Y = dO); slse and srd hold its
/// lse and D, +inf and 0 for a query that does not take part (whose rows
/// are zeros: P = 0). Bit k of key_bits: key k of the tile takes part.
template <int kDh, bool kRowIsQuery>
__device__ __forceinline__ void
attn_bwd_probs(const float *sAT, const float *sBT, const float *sX,
               const float *sY, const float *slse, const float *srd,
               uint64_t key_bits, float scale, int rg, int cl,
               float (&p)[4][4], float (&ds)[4][4]) {
  float s[4][4], dp[4][4];
  attn_tile_dot<kDh>(sAT, sX, rg, cl, s);
  attn_tile_dot<kDh>(sBT, sY, rg, cl, dp);
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int jj = 0; jj < 4; ++jj) {
      const int r = rg * 4 + i, c = cl + 8 * jj;
      const int qi = kRowIsQuery ? r : c, kj = kRowIsQuery ? c : r;
      float pv = 0.0f, dv = 0.0f;
      if ((key_bits >> kj) & 1u)
        attn_prob_ds(s[i][jj], dp[i][jj], slse[qi], srd[qi], scale, pv, dv);
      p[i][jj] = pv;
      ds[i][jj] = dv;
    }
}

/// Zeros rows [r0, r0 + n) ∩ [0, rows) of a Dh-wide column block (row
/// stride ld) with the whole CTA.
__device__ __forceinline__ void attn_zero_rows(float *base, int64_t ld,
                                               int r0, int n, int rows,
                                               int Dh) {
  for (int e = threadIdx.x; e < n * Dh; e += kAttnThreads) {
    const int r = r0 + e / Dh;
    if (r < rows)
      base[int64_t(r) * ld + e % Dh] = 0.0f;
  }
}

/// Dynamic shared memory of the backward kernels, in floats.
template <int kDh> constexpr int attn_bwd_dq_smem_floats() {
  return 2 * kDh * kAttnS + 2 * kAttnN * (kDh + 4) + kAttnN * kAttnS +
         3 * kAttnRows;
}
template <int kDh> constexpr int attn_bwd_dkdv_smem_floats() {
  return 2 * kDh * kAttnS + 2 * kAttnN * (kDh + 4) + 2 * kAttnN * kAttnS +
         2 * kAttnN;
}

/// Backward pass 1, dQ, Dh <= kDh <= 64: a CTA owns 64 queries of one
/// (batch, head), computes their D = rowsum(dO * O) (to p.rowdot for pass
/// 2) and streams the keys in tiles of 32. Thread (rg = t / 8, cl = t % 8):
/// query rows rg*4 + i, key columns cl + 8*jj, head dims 32*h + cl*4 + e.
template <int kDh>
__global__ void __launch_bounds__(kAttnThreads, 3)
    attention_bwd_dq_tiled_kernel(const AttnParams p) {
  constexpr int kN = kAttnN, kM = kAttnRows, kS = kAttnS, kR = kDh + 4,
                kH = kDh / 32;
  extern __shared__ __align__(16) float attn_smem[];
  float *sqT = attn_smem;       // [d][query]
  float *sgT = sqT + kDh * kS;  // dO, [d][query]
  float *sk = sgT + kDh * kS;   // [key][d]; O ([query][d]) at the start
  float *sv = sk + kN * kR;     // [key][d]
  float *sdS = sv + kN * kR;    // [key][query]
  float *slse = sdS + kN * kS;  // [query]
  float *srd = slse + kM;       // [query]
  int *srow = reinterpret_cast<int *>(srd + kM); // qkv row, -1: none
  const int t = threadIdx.x, warp = t >> 5, lane = t & 31, rg = t >> 3,
            cl = t & 7;
  const int bh = blockIdx.x / p.tiles, i0 = (blockIdx.x % p.tiles) * kM;
  const int b = bh / p.H, h = bh % p.H;
  const int64_t ld = attn_ld_qkv(p), ldo = attn_ld_o(p),
                hd = int64_t(p.H) * p.Dh;
  const float *qb = p.qkv + int64_t(b) * p.T * ld + int64_t(h) * p.Dh;
  float *dqb = p.dqkv + int64_t(b) * p.T * ld + int64_t(h) * p.Dh;
  if (!attn_head_kept(p, h)) { // (attention_bwd only: Tq == T)
    attn_zero_rows(dqb, ld, i0, kM, p.T, p.Dh);
    return;
  }
  if (t < kM) {
    const int row = attn_query_row(p, i0 + t);
    srow[t] = row;
    slse[t] = row >= 0 ? p.lse[(int64_t(b) * p.Tq + i0 + t) * p.H + h]
                       : INFINITY; // P = 0
  }
  __syncthreads();
  const float *gb = p.dout + int64_t(b) * p.Tq * ldo + int64_t(h) * p.Dh;
  const float *ob = p.o_in + int64_t(b) * p.Tq * ldo + int64_t(h) * p.Dh;
  const auto qrow = [&](int r) { return srow[r]; };
  const auto grow = [&](int r) { return srow[r] >= 0 ? i0 + r : -1; };
  attn_load_tile<kM, kDh, kS, true>(sqT, qb, ld, p.Dh, p.vec, 1.0f, qrow);
  attn_load_tile<kM, kDh, kS, true>(sgT, gb, ldo, p.Dh, p.vec, 1.0f, grow);
  attn_load_tile<kM, kDh, kR, false>(sk, ob, ldo, p.Dh, p.vec, 1.0f, grow);
  __syncthreads();
  { // D of query r: 2 threads, dims half + 2*k
    const int r = t >> 1, half = t & 1;
    float s = 0.0f;
#pragma unroll 4
    for (int d = half; d < kDh; d += 2)
      s = fmaf(sgT[d * kS + r], sk[r * kR + d], s);
    s += __shfl_xor_sync(kFullMask, s, 1);
    if (half == 0) {
      srd[r] = srow[r] >= 0 ? s : 0.0f;
      if (i0 + r < p.Tq)
        p.rowdot[int64_t(bh) * p.Tq + i0 + r] = srow[r] >= 0 ? s : 0.0f;
    }
  }
  const bool active =
      __any_sync(kFullMask, lane < 16 && srow[warp * 16 + lane] >= 0);
  const float *kb = qb + hd, *vb = qb + 2 * hd;
  float adq[4][4 * kH];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int e = 0; e < 4 * kH; ++e)
      adq[i][e] = 0.0f;
  for (int j0 = 0; j0 < p.T; j0 += kN) {
    __syncthreads(); // the previous tile's (and O's) reads are done
    const auto krow = [&](int r) {
      return attn_key_ok(p, j0 + r) ? j0 + r : -1;
    };
    attn_load_tile<kN, kDh, kR, false>(sk, kb, ld, p.Dh, p.vec, 1.0f, krow);
    attn_load_tile<kN, kDh, kR, false>(sv, vb, ld, p.Dh, p.vec, 1.0f, krow);
    const uint32_t key_bits =
        __ballot_sync(kFullMask, attn_key_ok(p, j0 + lane));
    __syncthreads();
    if (!active)
      continue;
    float pr[4][4], ds[4][4];
    attn_bwd_probs<kDh, true>(sqT, sgT, sk, sv, slse, srd, key_bits, p.scale,
                              rg, cl, pr, ds);
#pragma unroll
    for (int jj = 0; jj < 4; ++jj)
      *reinterpret_cast<float4 *>(sdS + (cl + 8 * jj) * kS + rg * 4) =
          make_float4(ds[0][jj], ds[1][jj], ds[2][jj], ds[3][jj]);
    __syncwarp(); // a row group reads only the dS columns its lanes wrote
#pragma unroll 4
    for (int j = 0; j < kN; ++j) {
      const float4 d4 =
          *reinterpret_cast<const float4 *>(sdS + j * kS + rg * 4);
      const float dr[4] = {d4.x, d4.y, d4.z, d4.w};
#pragma unroll
      for (int hh = 0; hh < kH; ++hh) {
        const float4 k4 = *reinterpret_cast<const float4 *>(
            sk + j * kR + 32 * hh + cl * 4);
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          adq[i][4 * hh + 0] = fmaf(dr[i], k4.x, adq[i][4 * hh + 0]);
          adq[i][4 * hh + 1] = fmaf(dr[i], k4.y, adq[i][4 * hh + 1]);
          adq[i][4 * hh + 2] = fmaf(dr[i], k4.z, adq[i][4 * hh + 2]);
          adq[i][4 * hh + 3] = fmaf(dr[i], k4.w, adq[i][4 * hh + 3]);
        }
      }
    }
    __syncwarp(); // sdS is rewritten by the next tile
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int r = rg * 4 + i;
    int row = srow[r];
    const bool zero = row < 0;
    if (zero) // a row that does not take part: zero dq (attention_bwd)
      row = !p.query_list && i0 + r < p.Tq ? i0 + r : -1;
    if (row >= 0)
      attn_store_quads<kH>(dqb + int64_t(row) * ld, adq[i], cl, p.Dh, p.vec,
                           zero);
  }
}

/// Backward pass 2, dK and dV, Dh <= kDh <= 64: a CTA owns 64 keys of one
/// (batch, head) and streams the queries in tiles of 32, reading their D
/// from pass 1. Thread (rg = t / 8, cl = t % 8): key rows rg*4 + i, query
/// columns cl + 8*jj, head dims 32*h + cl*4 + e. With a query list it also
/// writes the zero dq of its rows that are no query.
template <int kDh>
__global__ void __launch_bounds__(kAttnThreads, 3)
    attention_bwd_dkdv_tiled_kernel(const AttnParams p) {
  constexpr int kN = kAttnN, kM = kAttnRows, kS = kAttnS, kR = kDh + 4,
                kH = kDh / 32;
  extern __shared__ __align__(16) float attn_smem[];
  float *skT = attn_smem;      // [d][key]
  float *svT = skT + kDh * kS; // [d][key]
  float *sq = svT + kDh * kS;  // [query][d]
  float *sg = sq + kN * kR;    // dO, [query][d]
  float *sP = sg + kN * kR;    // [query][key]
  float *sdS = sP + kN * kS;   // [query][key]
  float *slse = sdS + kN * kS; // [query]
  float *srd = slse + kN;      // [query]
  const int t = threadIdx.x, warp = t >> 5, lane = t & 31, rg = t >> 3,
            cl = t & 7;
  const int bh = blockIdx.x / p.tiles, j0 = (blockIdx.x % p.tiles) * kM;
  const int b = bh / p.H, h = bh % p.H;
  const int64_t ld = attn_ld_qkv(p), ldo = attn_ld_o(p),
                hd = int64_t(p.H) * p.Dh;
  const float *qb = p.qkv + int64_t(b) * p.T * ld + int64_t(h) * p.Dh;
  float *dqb = p.dqkv + int64_t(b) * p.T * ld + int64_t(h) * p.Dh;
  float *dkb = dqb + hd, *dvb = dqb + 2 * hd;
  if (p.query_list) { // dq = 0 at the rows that are no query
    const uint64_t listed =
        attn_warp_listed(p.queries, p.Tq, j0) |
        uint64_t(attn_warp_listed(p.queries, p.Tq, j0 + 32)) << 32;
    for (int e = t; e < kM * p.Dh; e += kAttnThreads) {
      const int r = e / p.Dh;
      if (j0 + r < p.T && !((listed >> r) & 1u))
        dqb[int64_t(j0 + r) * ld + e % p.Dh] = 0.0f;
    }
  }
  const uint64_t key_bits =
      __ballot_sync(kFullMask, attn_key_ok(p, j0 + lane)) |
      uint64_t(__ballot_sync(kFullMask, attn_key_ok(p, j0 + 32 + lane)))
          << 32;
  if (!attn_head_kept(p, h) || key_bits == 0) {
    attn_zero_rows(dkb, ld, j0, kM, p.T, p.Dh);
    attn_zero_rows(dvb, ld, j0, kM, p.T, p.Dh);
    return;
  }
  const auto krow = [&](int r) { return (key_bits >> r) & 1u ? j0 + r : -1; };
  attn_load_tile<kM, kDh, kS, true>(skT, qb + hd, ld, p.Dh, p.vec, 1.0f, krow);
  attn_load_tile<kM, kDh, kS, true>(svT, qb + 2 * hd, ld, p.Dh, p.vec, 1.0f,
                                    krow);
  const bool active = ((key_bits >> (warp * 16)) & 0xffffu) != 0;
  const float *gb = p.dout + int64_t(b) * p.Tq * ldo + int64_t(h) * p.Dh;
  float adk[4][4 * kH], adv[4][4 * kH];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int e = 0; e < 4 * kH; ++e)
      adk[i][e] = adv[i][e] = 0.0f;
  for (int i0 = 0; i0 < p.Tq; i0 += kN) {
    __syncthreads(); // the previous tile's reads are done
    const auto qrow = [&](int r) { return attn_query_row(p, i0 + r); };
    const auto grow = [&](int r) {
      return attn_query_row(p, i0 + r) >= 0 ? i0 + r : -1;
    };
    attn_load_tile<kN, kDh, kR, false>(sq, qb, ld, p.Dh, p.vec, 1.0f, qrow);
    attn_load_tile<kN, kDh, kR, false>(sg, gb, ldo, p.Dh, p.vec, 1.0f, grow);
    if (t < kN) {
      const bool in = attn_query_row(p, i0 + t) >= 0;
      slse[t] = in ? p.lse[(int64_t(b) * p.Tq + i0 + t) * p.H + h] : INFINITY;
      srd[t] = in ? p.rowdot[int64_t(bh) * p.Tq + i0 + t] : 0.0f;
    }
    __syncthreads();
    if (!active)
      continue;
    float pr[4][4], ds[4][4];
    attn_bwd_probs<kDh, false>(skT, svT, sq, sg, slse, srd, key_bits, p.scale,
                               rg, cl, pr, ds);
#pragma unroll
    for (int jj = 0; jj < 4; ++jj) {
      *reinterpret_cast<float4 *>(sP + (cl + 8 * jj) * kS + rg * 4) =
          make_float4(pr[0][jj], pr[1][jj], pr[2][jj], pr[3][jj]);
      *reinterpret_cast<float4 *>(sdS + (cl + 8 * jj) * kS + rg * 4) =
          make_float4(ds[0][jj], ds[1][jj], ds[2][jj], ds[3][jj]);
    }
    __syncwarp(); // a row group reads only the key rows its lanes wrote
#pragma unroll 2
    for (int j = 0; j < kN; ++j) {
      const float4 p4 = *reinterpret_cast<const float4 *>(sP + j * kS + rg * 4);
      const float4 d4 =
          *reinterpret_cast<const float4 *>(sdS + j * kS + rg * 4);
      const float pv[4] = {p4.x, p4.y, p4.z, p4.w};
      const float dv[4] = {d4.x, d4.y, d4.z, d4.w};
#pragma unroll
      for (int hh = 0; hh < kH; ++hh) {
        const float4 g = *reinterpret_cast<const float4 *>(
            sg + j * kR + 32 * hh + cl * 4);
        const float4 q = *reinterpret_cast<const float4 *>(
            sq + j * kR + 32 * hh + cl * 4);
        const float gv[4] = {g.x, g.y, g.z, g.w};
        const float qv[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            adv[i][4 * hh + e] = fmaf(pv[i], gv[e], adv[i][4 * hh + e]);
            adk[i][4 * hh + e] = fmaf(dv[i], qv[e], adk[i][4 * hh + e]);
          }
      }
    }
    __syncwarp(); // sP, sdS are rewritten by the next tile
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int r = rg * 4 + i;
    if (j0 + r >= p.T)
      continue;
    const bool zero = !((key_bits >> r) & 1u);
    attn_store_quads<kH>(dkb + int64_t(j0 + r) * ld, adk[i], cl, p.Dh, p.vec,
                         zero);
    attn_store_quads<kH>(dvb + int64_t(j0 + r) * ld, adv[i], cl, p.Dh, p.vec,
                         zero);
  }
}

/// Warp-per-row kernels for 64 < Dh <= 128: lane holds dims lane + 32 c.
constexpr int kAttnLaneDims = kAttnMaxDh / 32;

__device__ __forceinline__ void attn_load_row(float (&r)[kAttnLaneDims],
                                              const float *src, int Dh,
                                              int lane, float scale = 1.0f) {
#pragma unroll
  for (int c = 0; c < kAttnLaneDims; ++c) {
    const int d = lane + 32 * c;
    r[c] = d < Dh ? src[d] * scale : 0.0f;
  }
}
__device__ __forceinline__ float attn_dot(const float (&a)[kAttnLaneDims],
                                          const float *src, int Dh, int lane) {
  float s = 0.0f;
#pragma unroll
  for (int c = 0; c < kAttnLaneDims; ++c) {
    const int d = lane + 32 * c;
    if (d < Dh)
      s = fmaf(a[c], src[d], s);
  }
  return warp_sum(s);
}
__device__ __forceinline__ float attn_dot(const float (&a)[kAttnLaneDims],
                                          const float (&b)[kAttnLaneDims]) {
  float s = 0.0f;
#pragma unroll
  for (int c = 0; c < kAttnLaneDims; ++c)
    s = fmaf(a[c], b[c], s);
  return warp_sum(s);
}
__device__ __forceinline__ void attn_store_row(const float (&r)[kAttnLaneDims],
                                               float *dst, int Dh, int lane,
                                               float scale = 1.0f) {
#pragma unroll
  for (int c = 0; c < kAttnLaneDims; ++c) {
    const int d = lane + 32 * c;
    if (d < Dh)
      dst[d] = r[c] * scale;
  }
}

/// Forward: one warp per (b, h, query), the queries of the free list then
/// the kept list (or all tokens), as the tiled kernel.
template <int kUnused = 0>
__global__ void __launch_bounds__(kThreads)
    attention_fwd_warp_kernel(const AttnParams p) {
  const int lane = threadIdx.x & 31, T = p.T, Dh = p.Dh;
  const int64_t ld = attn_ld_qkv(p), ldo = attn_ld_o(p),
                hd = int64_t(p.H) * Dh;
  const int64_t rows = int64_t(p.B) * p.H * T;
  const int64_t nwarps = int64_t(gridDim.x) * (kThreads / 32);
  for (int64_t r = int64_t(blockIdx.x) * (kThreads / 32) + (threadIdx.x >> 5);
       r < rows; r += nwarps) {
    const int v = int(r % T);
    const int64_t bh = r / T, b = bh / p.H, h = bh % p.H;
    int tok = v, nk = T;
    const int32_t *klist = nullptr;
    if (p.lists) {
      const int nfree = __ldg(p.lists + 2 * T);
      if (v < nfree) {
        tok = __ldg(p.lists + v);
      } else {
        tok = __ldg(p.lists + T + v - nfree);
        klist = p.lists + T;
        nk = __ldg(p.lists + 2 * T + 1);
      }
    }
    const float *base = p.qkv + b * T * ld + h * Dh;
    float qr[kAttnLaneDims], acc[kAttnLaneDims] = {};
    attn_load_row(qr, base + int64_t(tok) * ld, Dh, lane, p.scale);
    float m = -INFINITY, l = 0.0f;
    for (int jj = 0; jj < nk; ++jj) {
      const int j = klist ? __ldg(klist + jj) : jj;
      const float *kj = base + int64_t(j) * ld + hd, *vj = kj + hd;
      const float s = attn_dot(qr, kj, Dh, lane);
      const float mNew = fmaxf(m, s);
      const float rescale = expf(m - mNew), pj = expf(s - mNew);
      l = l * rescale + pj;
      m = mNew;
#pragma unroll
      for (int c = 0; c < kAttnLaneDims; ++c) {
        const int d = lane + 32 * c;
        acc[c] = acc[c] * rescale + (d < Dh ? pj * vj[d] : 0.0f);
      }
    }
    attn_store_row(acc, p.o + (b * T + tok) * ldo + h * Dh, Dh, lane,
                   1.0f / l);
    if (p.lse_out && lane == 0)
      p.lse_out[(b * T + tok) * p.H + h] = m + logf(l);
  }
}

/// Backward pass 1 (dQ and D), one warp per (b, h, query).
template <int kUnused = 0>
__global__ void __launch_bounds__(kThreads)
    attention_bwd_dq_warp_kernel(const AttnParams p) {
  const int lane = threadIdx.x & 31, T = p.T, Tq = p.Tq, Dh = p.Dh;
  const int64_t ld = attn_ld_qkv(p), ldo = attn_ld_o(p),
                hd = int64_t(p.H) * Dh;
  const int64_t rows = int64_t(p.B) * p.H * Tq;
  const int64_t nwarps = int64_t(gridDim.x) * (kThreads / 32);
  for (int64_t r = int64_t(blockIdx.x) * (kThreads / 32) + (threadIdx.x >> 5);
       r < rows; r += nwarps) {
    const int qi = int(r % Tq);
    const int64_t bh = r / Tq, b = bh / p.H, h = bh % p.H;
    const float *base = p.qkv + b * T * ld + h * Dh;
    float *dqb = p.dqkv + b * T * ld + h * Dh;
    const int row = attn_head_kept(p, int(h)) ? attn_query_row(p, qi) : -1;
    float acc[kAttnLaneDims] = {};
    if (row < 0) {
      if (!p.query_list) // attention_bwd: zero dq for this row
        attn_store_row(acc, dqb + int64_t(qi) * ld, Dh, lane);
      if (lane == 0)
        p.rowdot[bh * Tq + qi] = 0.0f;
      continue;
    }
    const int64_t qo = (b * Tq + qi) * ldo + h * Dh;
    float qr[kAttnLaneDims], gr[kAttnLaneDims], orow[kAttnLaneDims];
    attn_load_row(qr, base + int64_t(row) * ld, Dh, lane);
    attn_load_row(gr, p.dout + qo, Dh, lane);
    attn_load_row(orow, p.o_in + qo, Dh, lane);
    const float rd = attn_dot(gr, orow);
    if (lane == 0)
      p.rowdot[bh * Tq + qi] = rd;
    const float li = p.lse[(b * Tq + qi) * p.H + h];
    for (int j = 0; j < T; ++j) {
      if (!attn_key_ok(p, j))
        continue;
      const float *kj = base + int64_t(j) * ld + hd, *vj = kj + hd;
      float pj, ds;
      attn_prob_ds(attn_dot(qr, kj, Dh, lane), attn_dot(gr, vj, Dh, lane), li,
                   rd, p.scale, pj, ds);
#pragma unroll
      for (int c = 0; c < kAttnLaneDims; ++c) {
        const int d = lane + 32 * c;
        if (d < Dh)
          acc[c] = fmaf(ds, kj[d], acc[c]);
      }
    }
    attn_store_row(acc, dqb + int64_t(row) * ld, Dh, lane);
  }
}

/// Backward pass 2 (dK, dV), one warp per (b, h, key).
template <int kUnused = 0>
__global__ void __launch_bounds__(kThreads)
    attention_bwd_dkdv_warp_kernel(const AttnParams p) {
  const int lane = threadIdx.x & 31, T = p.T, Tq = p.Tq, Dh = p.Dh;
  const int64_t ld = attn_ld_qkv(p), ldo = attn_ld_o(p),
                hd = int64_t(p.H) * Dh;
  const int64_t rows = int64_t(p.B) * p.H * T;
  const int64_t nwarps = int64_t(gridDim.x) * (kThreads / 32);
  for (int64_t r = int64_t(blockIdx.x) * (kThreads / 32) + (threadIdx.x >> 5);
       r < rows; r += nwarps) {
    const int j = int(r % T);
    const int64_t bh = r / T, b = bh / p.H, h = bh % p.H;
    const float *base = p.qkv + b * T * ld + h * Dh;
    float *dqj = p.dqkv + (b * T + j) * ld + h * Dh;
    float ak[kAttnLaneDims] = {}, av[kAttnLaneDims] = {};
    if (p.query_list &&
        !((attn_warp_listed(p.queries, Tq, j & ~31) >> (j & 31)) & 1u))
      attn_store_row(ak, dqj, Dh, lane); // no query: zero dq
    if (attn_head_kept(p, int(h)) && attn_key_ok(p, j)) {
      float kr[kAttnLaneDims], vr[kAttnLaneDims];
      attn_load_row(kr, base + int64_t(j) * ld + hd, Dh, lane);
      attn_load_row(vr, base + int64_t(j) * ld + 2 * hd, Dh, lane);
      for (int qi = 0; qi < Tq; ++qi) {
        const int row = attn_query_row(p, qi);
        if (row < 0)
          continue;
        const float *q = base + int64_t(row) * ld;
        const float *g = p.dout + (b * Tq + qi) * ldo + h * Dh;
        float pj, ds;
        attn_prob_ds(attn_dot(kr, q, Dh, lane), attn_dot(vr, g, Dh, lane),
                     p.lse[(b * Tq + qi) * p.H + h], p.rowdot[bh * Tq + qi],
                     p.scale, pj, ds);
#pragma unroll
        for (int c = 0; c < kAttnLaneDims; ++c) {
          const int d = lane + 32 * c;
          if (d < Dh) {
            av[c] = fmaf(pj, g[d], av[c]);
            ak[c] = fmaf(ds, q[d], ak[c]);
          }
        }
      }
    }
    attn_store_row(ak, dqj + hd, Dh, lane);
    attn_store_row(av, dqj + 2 * hd, Dh, lane);
  }
}

/// Opts a kernel into `bytes` of dynamic shared memory (above the default
/// 48 KiB) and launches it; host-only, allowed during stream capture.
template <class Kernel>
inline void attn_launch_dynamic(const Context &ctx, const char *name,
                                Kernel kernel, unsigned grid, size_t bytes,
                                const AttnParams &p) {
  const cudaError_t e = cudaFuncSetAttribute(
      kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes));
  if (e != cudaSuccess) {
    fail(int(e), name, cudaGetErrorString(e));
    return;
  }
  kernel<<<grid, kAttnThreads, bytes, ctx.stream>>>(p);
  check_launch(name);
}

template <int kDh>
inline void launch_attention_bwd_tiled(const Context &ctx, const char *name,
                                       AttnParams p, unsigned gq, int qtiles,
                                       unsigned gk, int ktiles) {
  if (p.Tq > 0) { // pass 1 (dQ, D) before pass 2 (dK, dV), which reads D
    p.tiles = qtiles;
    attn_launch_dynamic(ctx, name, attention_bwd_dq_tiled_kernel<kDh>, gq,
                        attn_bwd_dq_smem_floats<kDh>() * sizeof(float), p);
  }
  p.tiles = ktiles;
  attn_launch_dynamic(ctx, name, attention_bwd_dkdv_tiled_kernel<kDh>, gk,
                      attn_bwd_dkdv_smem_floats<kDh>() * sizeof(float), p);
}

/// Both backward passes of attention_bwd / attention_bwd_queries (p holds
/// the pointers, the modes and the scale).
inline void launch_attention_bwd(const Context &ctx, const char *name,
                                 AttnParams p, int64_t B, int64_t T, int64_t H,
                                 int64_t Dh, int64_t Tq) {
  if (Dh > kAttnMaxDh) {
    fail_arg(name, "head dim above 128");
    return;
  }
  const int64_t qtiles = ceil_div(Tq, kAttnRows),
                ktiles = ceil_div(T, kAttnRows);
  if (T > 0x7fffffff || Tq > 0x7fffffff || 3 * H * Dh > 0x7fffffff ||
      B * H * (qtiles > ktiles ? qtiles : ktiles) > 0x7fffffff) {
    fail_arg(name, "too many (batch, head, tile)s");
    return;
  }
  p.B = int(B);
  p.T = int(T);
  p.H = int(H);
  p.Dh = int(Dh);
  p.Tq = int(Tq);
  if (Tq > 0) {
    p.rowdot = ScratchCursor(ctx).take<float>(size_t(B * H * Tq));
    if (!p.rowdot) {
      fail_arg(name, "scratch too small (needs 4*B*H*Tq bytes)");
      return;
    }
  }
  const unsigned gq = unsigned(B * H * qtiles), gk = unsigned(B * H * ktiles);
  if (Dh <= 32) {
    launch_attention_bwd_tiled<32>(ctx, name, p, gq, int(qtiles), gk,
                                   int(ktiles));
  } else if (Dh <= kAttnTiledMaxDh) {
    launch_attention_bwd_tiled<64>(ctx, name, p, gq, int(qtiles), gk,
                                   int(ktiles));
  } else {
    if (Tq > 0) { // pass 1 (dQ, D) before pass 2 (dK, dV), which reads D
      attention_bwd_dq_warp_kernel<>
          <<<grid_for(ctx, B * H * Tq * 32), kThreads, 0, ctx.stream>>>(p);
      check_launch(name);
    }
    attention_bwd_dkdv_warp_kernel<>
        <<<grid_for(ctx, B * H * T * 32), kThreads, 0, ctx.stream>>>(p);
    check_launch(name);
  }
}

//===--- ViT class token and token pooling --------------------------------===//

enum class TokenOp { ClsConcat, ClsGrad, Take, TakeGrad };

/// ClsConcat: dst [B, T+1] <- cls, src [B, T]; ClsGrad: dst [B, T] <- src
/// [B, T+1] minus row 0; Take: dst [B] <- src[b, index] (index == T: zero);
/// TakeGrad: dst [B, T] <- src [B] at t == index, else 0. Rows of Dv units
/// of kVec elements; `total` output units. cls is float (a parameter).
template <TokenOp kOp, int kVec, class I, class TS, class TD>
__global__ void __launch_bounds__(kThreads)
    token_rows_kernel(const TS *src, const float *cls, TD *dst, I total, I T,
                      I Dv, I index) {
  const I stride = I(gridDim.x) * kThreads;
  for (I e = I(blockIdx.x) * kThreads + threadIdx.x; e < total; e += stride) {
    const I c = e % Dv, row = e / Dv;
    if constexpr (kOp == TokenOp::ClsConcat) {
      const I t = row % (T + 1), b = row / (T + 1);
      if (t == 0)
        mv_vec<kVec>(cls, c, dst, e);
      else
        mv_vec<kVec>(src, (b * T + t - 1) * Dv + c, dst, e);
    } else if constexpr (kOp == TokenOp::ClsGrad) {
      const I t = row % T, b = row / T;
      mv_vec<kVec>(src, (b * (T + 1) + t + 1) * Dv + c, dst, e);
    } else if constexpr (kOp == TokenOp::Take) {
      if (index < T)
        mv_vec<kVec>(src, (row * T + index) * Dv + c, dst, e);
      else
        zero_vec<kVec>(dst, e);
    } else {
      if (row % T == index)
        mv_vec<kVec>(src, (row / T) * Dv + c, dst, e);
      else
        zero_vec<kVec>(dst, e);
    }
  }
}

template <TokenOp kOp, class TS, class TD>
inline void launch_token_rows(const Context &ctx, const char *name,
                              const TS *src, const float *cls, TD *dst,
                              int64_t B, int64_t T, int64_t D, int64_t index) {
  int64_t out_rows = 0;
  switch (kOp) {
  case TokenOp::ClsConcat:
    out_rows = B * (T + 1);
    break;
  case TokenOp::Take:
    out_rows = B;
    break;
  default:
    out_rows = B * T;
  }
  if (out_rows <= 0 || D <= 0)
    return;
  if (index < 0 || index > T)
    index = T; // out of range: padding
  constexpr bool kCls = kOp == TokenOp::ClsConcat;
  constexpr bool kWide = kIsBf16<TS> || kIsBf16<TD>;
  const int w = row_width<kWide>(
      D,
      {vec_aligned(src, 8), vec_aligned(dst, 8), !kCls || vec_aligned(cls, 8)},
      {vec_aligned(src, 4), vec_aligned(dst, 4), !kCls || vec_aligned(cls, 4)});
  const int64_t Dv = D / w, total = out_rows * Dv;
  const int64_t span = B * (T + 1) * Dv; // largest offset touched
  const unsigned grid = grid_for(ctx, total);
  with_width<kWide>(w, [&](auto wc) {
    constexpr int W = decltype(wc)::value;
    if (span < kMaxIndex32) {
      using I = uint32_t;
      token_rows_kernel<kOp, W, I><<<grid, kThreads, 0, ctx.stream>>>(
          src, cls, dst, I(total), I(T), I(Dv), I(index));
    } else {
      token_rows_kernel<kOp, W, int64_t><<<grid, kThreads, 0, ctx.stream>>>(
          src, cls, dst, total, T, Dv, index);
    }
  });
  check_launch(name);
}

//===--- Entry points, templated on the element types ---------------------===//
// The public float functions and their bf16 overloads call these.

template <class X, class Y>
inline void patchify_impl(const Context &ctx, const X *img, Y *tokens,
                          int64_t B, int64_t C, int64_t H, int64_t W,
                          int64_t p) {
  if (B <= 0 || C <= 0 || p <= 0 || H < p || W < p)
    return;
  if (H % p != 0 || W % p != 0) {
    fail_arg("patchify", "H and W must be multiples of p");
    return;
  }
  const int64_t gh = H / p, gw = W / p, total = B * gh * gw * C * p * p;
  constexpr bool kWide = kIsBf16<X> || kIsBf16<Y>;
  int w = 1;
  if (kWide && p % 8 == 0 && W % 8 == 0 && vec_aligned(img, 8) &&
      vec_aligned(tokens, 8))
    w = 8;
  else if (p % 4 == 0 && W % 4 == 0 && vec_aligned(img, 4) &&
           vec_aligned(tokens, 4))
    w = 4;
  const int64_t tv = total / w;
  const unsigned grid = grid_for(ctx, tv);
  with_width<kWide>(w, [&](auto wc) {
    constexpr int V = decltype(wc)::value;
    if (total < kMaxIndex32) {
      using I = uint32_t;
      patchify_kernel<V, I><<<grid, kThreads, 0, ctx.stream>>>(
          img, tokens, I(tv), I(C), I(H), I(W), I(p), I(gh), I(gw));
    } else {
      patchify_kernel<V, int64_t><<<grid, kThreads, 0, ctx.stream>>>(
          img, tokens, tv, C, H, W, p, gh, gw);
    }
  });
  check_launch("patchify");
}

template <class X, class Y>
inline void copy_impl(const Context &ctx, const X *x, Y *y, int64_t n) {
  if constexpr (std::is_same_v<X, Y>) {
    if (x == y || n <= 0)
      return;
    const cudaError_t e = cudaMemcpyAsync(y, x, size_t(n) * sizeof(X),
                                          cudaMemcpyDeviceToDevice, ctx.stream);
    if (e != cudaSuccess)
      fail(int(e), "copy", cudaGetErrorString(e));
  } else {
    launch_pointwise<1>(ctx, "copy", x, static_cast<const float *>(nullptr), y,
                        n, CopyOp{});
  }
}

template <class X, class Y>
inline void layer_norm_impl(const Context &ctx, const X *x, const float *gamma,
                            const float *beta, Y *y, int64_t rows, int64_t n,
                            float eps) {
  if (rows <= 0 || n <= 0)
    return;
  constexpr bool kWide = kIsBf16<X> || kIsBf16<Y>;
  const int w = row_width<kWide>(n,
                                 {vec_aligned(x, 8), vec_aligned(gamma, 8),
                                  vec_aligned(beta, 8), vec_aligned(y, 8)},
                                 {vec_aligned(x, 4), vec_aligned(gamma, 4),
                                  vec_aligned(beta, 4), vec_aligned(y, 4)});
  const int64_t chunks = ceil_div(n, int64_t(32) * w);
  const bool fast = w > 1 && chunks * w <= kLnMaxPerLane;
  const unsigned grid = grid_for(ctx, rows * 32);
  if (fast) {
    const int ni = int(n);
    with_width<kWide, false>(w, [&](auto wc) {
      constexpr int V = decltype(wc)::value;
      with_chunks<kLnMaxPerLane / V>(int(chunks), [&](auto cc) {
        layer_norm_warp_kernel<decltype(cc)::value, V>
            <<<grid, kThreads, 0, ctx.stream>>>(x, gamma, beta, y, rows, ni,
                                                eps);
      });
    });
  } else {
    layer_norm_generic_kernel<<<grid, kThreads, 0, ctx.stream>>>(
        x, gamma, beta, y, rows, n, eps);
  }
  check_launch("layer_norm");
}

template <class X, class G, class D>
inline void layer_norm_grad_impl(const Context &ctx, const X *x,
                                 const float *gamma, const G *dy, D *dx,
                                 float *dgamma, float *dbeta, int64_t rows,
                                 int64_t n, float eps) {
  if (n <= 0)
    return;
  if (rows <= 0) { // empty sums
    launch_pointwise<0>(ctx, "fill", static_cast<const float *>(nullptr),
                        static_cast<const float *>(nullptr), dgamma, n,
                        FillOp{0.0f});
    launch_pointwise<0>(ctx, "fill", static_cast<const float *>(nullptr),
                        static_cast<const float *>(nullptr), dbeta, n,
                        FillOp{0.0f});
    return;
  }
  constexpr bool kWide = kIsBf16<X> || kIsBf16<G> || kIsBf16<D>;
  const int w = row_width<kWide>(n,
                                 {vec_aligned(x, 8), vec_aligned(gamma, 8),
                                  vec_aligned(dy, 8), vec_aligned(dx, 8)},
                                 {vec_aligned(x, 4), vec_aligned(gamma, 4),
                                  vec_aligned(dy, 4), vec_aligned(dx, 4)});
  const int64_t chunks = ceil_div(n, int64_t(32) * w);
  const bool fast = w > 1 && chunks * w <= kLnMaxPerLane;
  ScratchCursor scratch(ctx);
  if (fast) {
    // At least two blocks per SM (the kernel is register-heavy), and enough
    // that a warp sums at most kLnGradRowsPerWarp rows in float before its
    // block adds them in double; fewer if the partial rows [blocks, 2n] do
    // not fit in scratch.
    int64_t blocks = ceil_div(rows, kLnRowsPerBlock * kLnGradRowsPerWarp);
    const int64_t fill_sms =
        std::min(ceil_div(rows, kLnRowsPerBlock), int64_t(sm_count(ctx)) * 2);
    blocks = std::max(blocks, fill_sms);
    const int64_t fit = int64_t(scratch.size) / (2 * n * 8);
    if (blocks > fit)
      blocks = fit;
    double *partial =
        blocks > 0 ? scratch.take<double>(size_t(blocks * 2 * n)) : nullptr;
    if (!partial) {
      fail_arg("layer_norm_grad", "scratch too small for dgamma/dbeta");
      return;
    }
    const int ni = int(n);
    const unsigned grid = unsigned(blocks);
    with_width<kWide, false>(w, [&](auto wc) {
      constexpr int V = decltype(wc)::value;
      with_chunks<kLnMaxPerLane / V>(int(chunks), [&](auto cc) {
        layer_norm_grad_warp_kernel<decltype(cc)::value, V>
            <<<grid, kThreads, 0, ctx.stream>>>(x, gamma, dy, dx, rows, ni, eps,
                                                partial);
      });
    });
    check_launch("layer_norm_grad");
    layer_norm_grad_finalize_kernel<>
        <<<grid_for(ctx, 2 * n), kThreads, 0, ctx.stream>>>(
            partial, int(blocks), n, dgamma, dbeta);
    check_launch("layer_norm_grad");
    return;
  }
  // Any n: dx and the row statistics, then a column pass for dgamma/dbeta.
  float2 *stats = scratch.take<float2>(size_t(rows));
  if (!stats) {
    fail_arg("layer_norm_grad", "scratch too small for the row statistics");
    return;
  }
  layer_norm_grad_dx_kernel<<<grid_for(ctx, rows * 32), kThreads, 0,
                              ctx.stream>>>(x, gamma, dy, dx, rows, n, eps,
                                            stats);
  check_launch("layer_norm_grad");
  const int64_t tiles = ceil_div(n, 32);
  int64_t splits = ceil_div(int64_t(sm_count(ctx)) * 8, tiles);
  const int64_t by_rows = ceil_div(rows, 64);
  if (splits > by_rows)
    splits = by_rows;
  const int64_t fit = int64_t(scratch.size - scratch.used) / (2 * n * 8) - 1;
  if (splits > fit)
    splits = fit;
  if (splits > 65535)
    splits = 65535;
  if (splits < 1)
    splits = 1;
  const int64_t per_split = ceil_div(rows, splits);
  splits = ceil_div(rows, per_split);
  double *partial = scratch.take<double>(size_t(splits * 2 * n));
  if (!partial || tiles > 0x7fffffff) {
    fail_arg("layer_norm_grad", "scratch too small for dgamma/dbeta");
    return;
  }
  layer_norm_grad_cols_kernel<<<dim3(unsigned(tiles), unsigned(splits)),
                                kThreads, 0, ctx.stream>>>(
      x, dy, stats, rows, n, per_split, partial);
  check_launch("layer_norm_grad");
  layer_norm_grad_finalize_kernel<>
      <<<grid_for(ctx, 2 * n), kThreads, 0, ctx.stream>>>(partial, int(splits),
                                                          n, dgamma, dbeta);
  check_launch("layer_norm_grad");
}

template <class X, class Y>
inline void mean_tokens_grad_impl(const Context &ctx, const X *dy, Y *dx,
                                  int64_t B, int64_t T, int64_t D) {
  if (B <= 0 || T <= 0 || D <= 0)
    return;
  const int64_t total = B * T * D;
  constexpr bool kWide = kIsBf16<X> || kIsBf16<Y>;
  const int w = row_width<kWide>(D, {vec_aligned(dy, 8), vec_aligned(dx, 8)},
                                 {vec_aligned(dy, 4), vec_aligned(dx, 4)});
  const int64_t tv = total / w, TDv = T * D / w, Dv = D / w;
  const unsigned grid = grid_for(ctx, tv);
  const float t = float(T);
  with_width<kWide>(w, [&](auto wc) {
    constexpr int V = decltype(wc)::value;
    if (total < kMaxIndex32) {
      using I = uint32_t;
      mean_tokens_grad_kernel<V, I>
          <<<grid, kThreads, 0, ctx.stream>>>(dy, dx, I(tv), I(TDv), I(Dv), t);
    } else {
      mean_tokens_grad_kernel<V, int64_t>
          <<<grid, kThreads, 0, ctx.stream>>>(dy, dx, tv, TDv, Dv, t);
    }
  });
  check_launch("mean_tokens_grad");
}

template <class L, class G>
inline void softmax_xent_impl(const Context &ctx, const L *logits,
                              const int32_t *labels, float *loss, G *dlogits,
                              int64_t B, int64_t C, float dloss_scale,
                              int64_t *correct) {
  if (B <= 0 || C <= 0) {
    if (loss || correct) {
      softmax_xent_finalize_kernel<><<<1, kThreads, 0, ctx.stream>>>(
          nullptr, nullptr, 0, 0, loss, correct);
      check_launch("softmax_xent");
    }
    return;
  }
  int64_t blocks = ceil_div(B, kLnRowsPerBlock);
  const int64_t cap = int64_t(sm_count(ctx)) * 4;
  if (blocks > cap)
    blocks = cap;
  ScratchCursor scratch(ctx);
  double *block_loss = scratch.take<double>(size_t(blocks));
  long long *block_correct = scratch.take<long long>(size_t(blocks));
  if (!block_loss || !block_correct) {
    fail_arg("softmax_xent", "scratch too small");
    return;
  }
  const float grad_scale = float(double(dloss_scale) / double(B));
  softmax_xent_rows_kernel<<<unsigned(blocks), kThreads, 0, ctx.stream>>>(
      logits, labels, dlogits, B, C, grad_scale, block_loss, block_correct);
  check_launch("softmax_xent");
  softmax_xent_finalize_kernel<><<<1, kThreads, 0, ctx.stream>>>(
      block_loss, block_correct, int(blocks), B, loss, correct);
  check_launch("softmax_xent");
}

template <class X, class Y>
inline void gather_rows_impl(const Context &ctx, const X *x, const int32_t *idx,
                             Y *out, int64_t B, int64_t T, int64_t K,
                             int64_t D) {
  if (B <= 0 || K <= 0 || D <= 0)
    return;
  if (T < 0)
    T = 0;
  constexpr bool kWide = kIsBf16<X> || kIsBf16<Y>;
  const int w = row_width<kWide>(D, {vec_aligned(x, 8), vec_aligned(out, 8)},
                                 {vec_aligned(x, 4), vec_aligned(out, 4)});
  const int64_t Dv = D / w;
  const int64_t total = B * K * Dv;
  const unsigned grid = grid_for(ctx, total);
  with_width<kWide>(w, [&](auto wc) {
    constexpr int V = decltype(wc)::value;
    if (B * (T > K ? T : K) * Dv < kMaxIndex32) {
      using I = uint32_t;
      gather_rows_kernel<V, I><<<grid, kThreads, 0, ctx.stream>>>(
          x, idx, out, I(B), I(T), I(K), I(Dv));
    } else {
      gather_rows_kernel<V, int64_t>
          <<<grid, kThreads, 0, ctx.stream>>>(x, idx, out, B, T, K, Dv);
    }
  });
  check_launch("gather_rows");
}

template <class X, class Y>
inline void cls_concat_grad_impl(const Context &ctx, const X *dy, Y *dx,
                                 float *dcls, int64_t B, int64_t T, int64_t D) {
  if (T < 0)
    T = 0;
  launch_token_rows<TokenOp::ClsGrad>(ctx, "cls_concat_grad", dy, nullptr, dx,
                                      B, T, D, 0);
  // dcls: the class rows, (T+1)*D apart, summed over the batch.
  column_sum(ctx, "cls_concat_grad", dy, 1, B, D, dcls, 1.0, (T + 1) * D);
}

} // namespace detail

//===----------------------------------------------------------------------===//
// Public functions
//===----------------------------------------------------------------------===//

inline void context_destroy(Context &ctx) {
  delete ctx.gemm_plans; // destroys the cuBLASLt descriptors
  ctx.gemm_plans = nullptr;
  if (ctx.workspace)
    cudaFree(ctx.workspace);
  if (ctx.scratch)
    cudaFree(ctx.scratch);
  if (ctx.lt)
    cublasLtDestroy(ctx.lt);
  ctx.workspace = ctx.scratch = nullptr;
  ctx.lt = nullptr;
  ctx.device = -1;
  ctx.sm_count = 0;
}

inline int context_init(Context &ctx, char *err, size_t err_len) {
  char msg[256];
  auto cudaFail = [&](cudaError_t e, const char *what) {
    std::snprintf(msg, sizeof(msg), "sbp::cuda::context_init: %s: %s", what,
                  cudaGetErrorString(e));
    detail::copy_message(err, err_len, msg);
    context_destroy(ctx);
    return int(e);
  };
  cudaError_t e = cudaGetDevice(&ctx.device);
  if (e != cudaSuccess)
    return cudaFail(e, "cudaGetDevice");
  e = cudaDeviceGetAttribute(&ctx.sm_count, cudaDevAttrMultiProcessorCount,
                             ctx.device);
  if (e != cudaSuccess)
    return cudaFail(e, "cudaDeviceGetAttribute(MultiProcessorCount)");
  const cublasStatus_t st = cublasLtCreate(&ctx.lt);
  if (st != CUBLAS_STATUS_SUCCESS) {
    ctx.lt = nullptr;
    std::snprintf(msg, sizeof(msg),
                  "sbp::cuda::context_init: cublasLtCreate: %s",
                  cublasLtGetStatusString(st));
    detail::copy_message(err, err_len, msg);
    context_destroy(ctx);
    return int(st);
  }
  if (ctx.workspace_bytes == 0)
    ctx.workspace_bytes = kDefaultWorkspaceBytes;
  if (ctx.scratch_bytes == 0)
    ctx.scratch_bytes = kDefaultScratchBytes;
  e = cudaMalloc(&ctx.workspace, ctx.workspace_bytes);
  if (e != cudaSuccess) {
    ctx.workspace = nullptr;
    return cudaFail(e, "cudaMalloc(cuBLASLt workspace)");
  }
  e = cudaMalloc(&ctx.scratch, ctx.scratch_bytes);
  if (e != cudaSuccess) {
    ctx.scratch = nullptr;
    return cudaFail(e, "cudaMalloc(scratch)");
  }
  ctx.gemm_plans = new detail::GemmPlanCache;
  return 0;
}

inline int last_error(char *err, size_t err_len) {
  detail::Status &s = detail::status();
  if (s.code == 0) {
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
      detail::fail(int(e), "last_error", cudaGetErrorString(e));
  }
  if (s.code == 0)
    return 0;
  detail::copy_message(err, err_len, s.message);
  const int code = s.code;
  s = detail::Status{};
  return code;
}

inline void gemm(const Context &ctx, bool transA, bool transB, int64_t M,
                 int64_t N, int64_t K, float alpha, const float *A, int64_t lda,
                 const float *B, int64_t ldb, float beta, float *C,
                 int64_t ldc) {
  detail::gemm_impl(ctx, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta,
                    C, ldc);
}

template <class T, class TC, detail::EnableBf16Gemm<T, TC>>
inline void gemm(const Context &ctx, bool transA, bool transB, int64_t M,
                 int64_t N, int64_t K, float alpha, const T *A, int64_t lda,
                 const T *B, int64_t ldb, float beta, TC *C, int64_t ldc) {
  detail::gemm_impl(ctx, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta,
                    C, ldc);
}

inline void cast(const Context &ctx, const float *x, __nv_bfloat16 *y,
                 int64_t n) {
  detail::launch_pointwise<1>(ctx, "cast", x,
                              static_cast<const float *>(nullptr), y, n,
                              detail::CopyOp{});
}

inline void cast(const Context &ctx, const __nv_bfloat16 *x, float *y,
                 int64_t n) {
  detail::launch_pointwise<1>(ctx, "cast", x,
                              static_cast<const float *>(nullptr), y, n,
                              detail::CopyOp{});
}

inline void patchify(const Context &ctx, const float *img, float *tokens,
                     int64_t B, int64_t C, int64_t H, int64_t W, int64_t p) {
  detail::patchify_impl(ctx, img, tokens, B, C, H, W, p);
}
template <class X, class Y, detail::EnableBf16<X, Y>>
inline void patchify(const Context &ctx, const X *img, Y *tokens, int64_t B,
                     int64_t C, int64_t H, int64_t W, int64_t p) {
  detail::patchify_impl(ctx, img, tokens, B, C, H, W, p);
}

inline void add(const Context &ctx, const float *a, const float *b, float *out,
                int64_t n) {
  detail::launch_pointwise<2>(ctx, "add", a, b, out, n, detail::AddOp{});
}
template <class A, class B, class O, detail::EnableBf16<A, B, O>>
inline void add(const Context &ctx, const A *a, const B *b, O *out, int64_t n) {
  detail::launch_pointwise<2>(ctx, "add", a, b, out, n, detail::AddOp{});
}

inline void add_acc(const Context &ctx, float *acc, const float *b, int64_t n) {
  detail::launch_pointwise<2>(ctx, "add_acc", acc, b, acc, n, detail::AddOp{});
}
template <class O, class B, detail::EnableBf16<O, B>>
inline void add_acc(const Context &ctx, O *acc, const B *b, int64_t n) {
  detail::launch_pointwise<2>(ctx, "add_acc", static_cast<const O *>(acc), b,
                              acc, n, detail::AddOp{});
}

inline void bias_add(const Context &ctx, const float *x, const float *bias,
                     float *y, int64_t rows, int64_t n) {
  detail::launch_broadcast_add(ctx, "bias_add", x, bias, y, rows, n);
}
template <class X, class Y, detail::EnableBf16<X, Y>>
inline void bias_add(const Context &ctx, const X *x, const float *bias, Y *y,
                     int64_t rows, int64_t n) {
  detail::launch_broadcast_add(ctx, "bias_add", x, bias, y, rows, n);
}

inline void bias_grad(const Context &ctx, const float *dy, float *dbias,
                      int64_t rows, int64_t n) {
  detail::column_sum(ctx, "bias_grad", dy, 1, rows, n, dbias, 1.0);
}
template <class X, detail::EnableBf16<X>>
inline void bias_grad(const Context &ctx, const X *dy, float *dbias,
                      int64_t rows, int64_t n) {
  detail::column_sum(ctx, "bias_grad", dy, 1, rows, n, dbias, 1.0);
}

inline void pos_add(const Context &ctx, const float *x, const float *pos,
                    float *y, int64_t B, int64_t T, int64_t D) {
  detail::launch_broadcast_add(ctx, "pos_add", x, pos, y, B, T * D);
}
template <class X, class Y, detail::EnableBf16<X, Y>>
inline void pos_add(const Context &ctx, const X *x, const float *pos, Y *y,
                    int64_t B, int64_t T, int64_t D) {
  detail::launch_broadcast_add(ctx, "pos_add", x, pos, y, B, T * D);
}

inline void pos_grad(const Context &ctx, const float *dy, float *dpos,
                     int64_t B, int64_t T, int64_t D) {
  detail::column_sum(ctx, "pos_grad", dy, 1, B, T * D, dpos, 1.0);
}
template <class X, detail::EnableBf16<X>>
inline void pos_grad(const Context &ctx, const X *dy, float *dpos, int64_t B,
                     int64_t T, int64_t D) {
  detail::column_sum(ctx, "pos_grad", dy, 1, B, T * D, dpos, 1.0);
}

inline void gelu(const Context &ctx, const float *x, float *y, int64_t n) {
  detail::launch_pointwise<1>(ctx, "gelu", x,
                              static_cast<const float *>(nullptr), y, n,
                              detail::GeluOp{});
}
template <class X, class Y, detail::EnableBf16<X, Y>>
inline void gelu(const Context &ctx, const X *x, Y *y, int64_t n) {
  detail::launch_pointwise<1>(ctx, "gelu", x,
                              static_cast<const float *>(nullptr), y, n,
                              detail::GeluOp{});
}

inline void gelu_grad(const Context &ctx, const float *x, const float *dy,
                      float *dx, int64_t n) {
  detail::launch_pointwise<2>(ctx, "gelu_grad", x, dy, dx, n,
                              detail::GeluGradOp{});
}
template <class X, class G, class D, detail::EnableBf16<X, G, D>>
inline void gelu_grad(const Context &ctx, const X *x, const G *dy, D *dx,
                      int64_t n) {
  detail::launch_pointwise<2>(ctx, "gelu_grad", x, dy, dx, n,
                              detail::GeluGradOp{});
}

inline void relu(const Context &ctx, const float *x, float *y, int64_t n) {
  detail::launch_pointwise<1>(ctx, "relu", x,
                              static_cast<const float *>(nullptr), y, n,
                              detail::ReluOp{});
}
template <class X, class Y, detail::EnableBf16<X, Y>>
inline void relu(const Context &ctx, const X *x, Y *y, int64_t n) {
  detail::launch_pointwise<1>(ctx, "relu", x,
                              static_cast<const float *>(nullptr), y, n,
                              detail::ReluOp{});
}

inline void relu_grad(const Context &ctx, const float *x, const float *dy,
                      float *dx, int64_t n) {
  detail::launch_pointwise<2>(ctx, "relu_grad", x, dy, dx, n,
                              detail::ReluGradOp{});
}
template <class X, class G, class D, detail::EnableBf16<X, G, D>>
inline void relu_grad(const Context &ctx, const X *x, const G *dy, D *dx,
                      int64_t n) {
  detail::launch_pointwise<2>(ctx, "relu_grad", x, dy, dx, n,
                              detail::ReluGradOp{});
}

inline void fill(const Context &ctx, float *x, float value, int64_t n) {
  detail::launch_pointwise<0>(ctx, "fill", static_cast<const float *>(nullptr),
                              static_cast<const float *>(nullptr), x, n,
                              detail::FillOp{value});
}
template <class T, detail::EnableBf16<T>>
inline void fill(const Context &ctx, T *x, float value, int64_t n) {
  detail::launch_pointwise<0>(ctx, "fill", static_cast<const float *>(nullptr),
                              static_cast<const float *>(nullptr), x, n,
                              detail::FillOp{value});
}

inline void copy(const Context &ctx, const float *x, float *y, int64_t n) {
  detail::copy_impl(ctx, x, y, n);
}
template <class X, class Y, detail::EnableBf16<X, Y>>
inline void copy(const Context &ctx, const X *x, Y *y, int64_t n) {
  detail::copy_impl(ctx, x, y, n);
}

inline void layer_norm(const Context &ctx, const float *x, const float *gamma,
                       const float *beta, float *y, int64_t rows, int64_t n,
                       float eps) {
  detail::layer_norm_impl(ctx, x, gamma, beta, y, rows, n, eps);
}
template <class X, class Y, detail::EnableBf16<X, Y>>
inline void layer_norm(const Context &ctx, const X *x, const float *gamma,
                       const float *beta, Y *y, int64_t rows, int64_t n,
                       float eps) {
  detail::layer_norm_impl(ctx, x, gamma, beta, y, rows, n, eps);
}

inline void layer_norm_grad(const Context &ctx, const float *x,
                            const float *gamma, const float *dy, float *dx,
                            float *dgamma, float *dbeta, int64_t rows,
                            int64_t n, float eps) {
  detail::layer_norm_grad_impl(ctx, x, gamma, dy, dx, dgamma, dbeta, rows, n,
                               eps);
}
template <class X, class G, class D, detail::EnableBf16<X, G, D>>
inline void layer_norm_grad(const Context &ctx, const X *x, const float *gamma,
                            const G *dy, D *dx, float *dgamma, float *dbeta,
                            int64_t rows, int64_t n, float eps) {
  detail::layer_norm_grad_impl(ctx, x, gamma, dy, dx, dgamma, dbeta, rows, n,
                               eps);
}

inline void mean_tokens(const Context &ctx, const float *x, float *y, int64_t B,
                        int64_t T, int64_t D) {
  detail::column_sum(ctx, "mean_tokens", x, B, T, D, y,
                     T > 0 ? 1.0 / double(T) : 0.0);
}
template <class X, class Y, detail::EnableBf16<X, Y>>
inline void mean_tokens(const Context &ctx, const X *x, Y *y, int64_t B,
                        int64_t T, int64_t D) {
  detail::column_sum(ctx, "mean_tokens", x, B, T, D, y,
                     T > 0 ? 1.0 / double(T) : 0.0);
}

inline void mean_tokens_grad(const Context &ctx, const float *dy, float *dx,
                             int64_t B, int64_t T, int64_t D) {
  detail::mean_tokens_grad_impl(ctx, dy, dx, B, T, D);
}
template <class X, class Y, detail::EnableBf16<X, Y>>
inline void mean_tokens_grad(const Context &ctx, const X *dy, Y *dx, int64_t B,
                             int64_t T, int64_t D) {
  detail::mean_tokens_grad_impl(ctx, dy, dx, B, T, D);
}

inline void softmax_xent(const Context &ctx, const float *logits,
                         const int32_t *labels, float *loss, float *dlogits,
                         int64_t B, int64_t C, float dloss_scale,
                         int64_t *correct) {
  detail::softmax_xent_impl(ctx, logits, labels, loss, dlogits, B, C,
                            dloss_scale, correct);
}
template <class L, class G, detail::EnableBf16<L, G>>
inline void softmax_xent(const Context &ctx, const L *logits,
                         const int32_t *labels, float *loss, G *dlogits,
                         int64_t B, int64_t C, float dloss_scale,
                         int64_t *correct) {
  detail::softmax_xent_impl(ctx, logits, labels, loss, dlogits, B, C,
                            dloss_scale, correct);
}
template <class L, detail::EnableBf16<L>>
inline void softmax_xent(const Context &ctx, const L *logits,
                         const int32_t *labels, float *loss, std::nullptr_t,
                         int64_t B, int64_t C, float dloss_scale,
                         int64_t *correct) {
  detail::softmax_xent_impl(ctx, logits, labels, loss,
                            static_cast<float *>(nullptr), B, C, dloss_scale,
                            correct);
}

inline void gather_rows(const Context &ctx, const float *x, const int32_t *idx,
                        float *out, int64_t B, int64_t T, int64_t K,
                        int64_t D) {
  detail::gather_rows_impl(ctx, x, idx, out, B, T, K, D);
}
template <class X, class Y, detail::EnableBf16<X, Y>>
inline void gather_rows(const Context &ctx, const X *x, const int32_t *idx,
                        Y *out, int64_t B, int64_t T, int64_t K, int64_t D) {
  detail::gather_rows_impl(ctx, x, idx, out, B, T, K, D);
}

inline void scatter_rows_acc(const Context &ctx, const float *xk,
                             const int32_t *idx, float *out, int64_t B,
                             int64_t T, int64_t K, int64_t D) {
  detail::launch_row_map<detail::RowOp::ScatterAcc>(
      ctx, "scatter_rows_acc", xk, static_cast<const float *>(nullptr), idx,
      out, B, T, K, D);
}
template <class X, class O, detail::EnableBf16<X, O>>
inline void scatter_rows_acc(const Context &ctx, const X *xk,
                             const int32_t *idx, O *out, int64_t B, int64_t T,
                             int64_t K, int64_t D) {
  detail::launch_row_map<detail::RowOp::ScatterAcc>(
      ctx, "scatter_rows_acc", xk, static_cast<const float *>(nullptr), idx,
      out, B, T, K, D);
}

inline void scatter_rows(const Context &ctx, const float *xk,
                         const int32_t *idx, float *out, int64_t B, int64_t T,
                         int64_t K, int64_t D) {
  detail::launch_row_map<detail::RowOp::Scatter>(
      ctx, "scatter_rows", xk, static_cast<const float *>(nullptr), idx, out, B,
      T, K, D);
}
template <class X, class Y, detail::EnableBf16<X, Y>>
inline void scatter_rows(const Context &ctx, const X *xk, const int32_t *idx,
                         Y *out, int64_t B, int64_t T, int64_t K, int64_t D) {
  detail::launch_row_map<detail::RowOp::Scatter>(
      ctx, "scatter_rows", xk, static_cast<const float *>(nullptr), idx, out, B,
      T, K, D);
}

inline void mask_rows(const Context &ctx, const float *x, const int32_t *idx,
                      float *out, int64_t B, int64_t T, int64_t K, int64_t D) {
  detail::launch_row_map<detail::RowOp::Mask>(
      ctx, "mask_rows", x, static_cast<const float *>(nullptr), idx, out, B, T,
      K, D);
}
template <class X, class Y, detail::EnableBf16<X, Y>>
inline void mask_rows(const Context &ctx, const X *x, const int32_t *idx,
                      Y *out, int64_t B, int64_t T, int64_t K, int64_t D) {
  detail::launch_row_map<detail::RowOp::Mask>(
      ctx, "mask_rows", x, static_cast<const float *>(nullptr), idx, out, B, T,
      K, D);
}

inline void scatter_add_rows(const Context &ctx, const float *base,
                             const float *xk, const int32_t *idx, float *out,
                             int64_t B, int64_t T, int64_t K, int64_t D) {
  detail::launch_row_map<detail::RowOp::ScatterAdd>(ctx, "scatter_add_rows", xk,
                                                    base, idx, out, B, T, K, D);
}
template <class Bs, class X, class O, detail::EnableBf16<Bs, X, O>>
inline void scatter_add_rows(const Context &ctx, const Bs *base, const X *xk,
                             const int32_t *idx, O *out, int64_t B, int64_t T,
                             int64_t K, int64_t D) {
  detail::launch_row_map<detail::RowOp::ScatterAdd>(ctx, "scatter_add_rows", xk,
                                                    base, idx, out, B, T, K, D);
}

inline void attention_fwd(const Context &ctx, const float *qkv, float *o,
                          float *lse, int64_t B, int64_t T, int64_t H,
                          int64_t Dh, float scale, const int32_t *keep,
                          int64_t K) {
  using namespace detail;
  if (B <= 0 || T <= 0 || H <= 0 || Dh <= 0)
    return;
  if (Dh > kAttnMaxDh) {
    fail_arg("attention_fwd", "head dim above 128");
    return;
  }
  if (!keep || K < 0)
    K = 0;
  // Query tiles over the free tokens (all of them without keep), then over
  // the kept ones: host-side upper bounds, surplus CTAs exit at once.
  const int64_t free_tiles = ceil_div(T, kAttnRows);
  const int64_t kept_tiles = ceil_div(K < T ? K : T, kAttnRows);
  const int64_t tiles = free_tiles + kept_tiles;
  if (T > 0x7fffffff / 4 || K > 0x7fffffff || 3 * H * Dh > 0x7fffffff ||
      B * H * tiles > 0x7fffffff) {
    fail_arg("attention_fwd", "too many (batch, head, query tile)s");
    return;
  }
  AttnParams p;
  p.qkv = qkv;
  p.o = o;
  p.lse_out = lse;
  p.B = int(B);
  p.T = int(T);
  p.H = int(H);
  p.Dh = int(Dh);
  p.Tq = int(T);
  p.scale = scale;
  p.vec = Dh % 4 == 0 && aligned16(qkv) && aligned16(o);
  p.tiles = int(tiles);
  p.free_tiles = int(free_tiles);
  if (K > 0) {
    ScratchCursor scratch(ctx);
    int32_t *lists = scratch.take<int32_t>(size_t(2 * T + 2));
    int32_t *flags = scratch.take<int32_t>(size_t(T));
    if (!lists || !flags) {
      fail_arg("attention_fwd",
               "scratch too small for the keep lists (about 12*T bytes)");
      return;
    }
    attention_keep_lists_kernel<><<<1, 1024, 0, ctx.stream>>>(
        keep, int(K), int(T), lists, flags);
    check_launch("attention_fwd");
    p.lists = lists;
  }
  if (Dh <= kAttnTiledMaxDh) {
    const unsigned grid = unsigned(B * H * tiles);
    if (Dh <= 32)
      attention_fwd_tiled_kernel<32><<<grid, kAttnThreads, 0, ctx.stream>>>(p);
    else
      attention_fwd_tiled_kernel<64><<<grid, kAttnThreads, 0, ctx.stream>>>(p);
  } else {
    attention_fwd_warp_kernel<>
        <<<grid_for(ctx, B * H * T * 32), kThreads, 0, ctx.stream>>>(p);
  }
  check_launch("attention_fwd");
}

inline void attention_bwd(const Context &ctx, const float *qkv, const float *o,
                          const float *lse, const float *dout, float *dqkv,
                          int64_t B, int64_t T, int64_t H, int64_t Dh,
                          float scale, const int32_t *row_keep,
                          const int32_t *head_keep) {
  using namespace detail;
  if (B <= 0 || T <= 0 || H <= 0 || Dh <= 0)
    return;
  AttnParams p;
  p.qkv = qkv;
  p.o_in = o;
  p.lse = lse;
  p.dout = dout;
  p.dqkv = dqkv;
  p.row_keep = row_keep;
  p.head_keep = head_keep;
  p.scale = scale;
  p.vec = Dh % 4 == 0 && aligned16(qkv) && aligned16(o) && aligned16(dout) &&
          aligned16(dqkv);
  launch_attention_bwd(ctx, "attention_bwd", p, B, T, H, Dh, T);
}

inline void attention_bwd_queries(const Context &ctx, const float *qkv,
                                  const int32_t *keep, int64_t K,
                                  const float *o_k, const float *lse_k,
                                  const float *dout_k, float *dqkv, int64_t B,
                                  int64_t T, int64_t H, int64_t Dh,
                                  float scale) {
  using namespace detail;
  if (B <= 0 || T <= 0 || H <= 0 || Dh <= 0)
    return;
  if (!keep || K < 0)
    K = 0;
  AttnParams p;
  p.qkv = qkv;
  p.o_in = o_k;
  p.lse = lse_k;
  p.dout = dout_k;
  p.dqkv = dqkv;
  p.queries = keep;
  p.query_list = true;
  p.scale = scale;
  p.vec = Dh % 4 == 0 && aligned16(qkv) && aligned16(o_k) &&
          aligned16(dout_k) && aligned16(dqkv);
  launch_attention_bwd(ctx, "attention_bwd_queries", p, B, T, H, Dh, K);
}

inline void cls_concat(const Context &ctx, const float *x, const float *cls,
                       float *y, int64_t B, int64_t T, int64_t D) {
  detail::launch_token_rows<detail::TokenOp::ClsConcat>(ctx, "cls_concat", x,
                                                        cls, y, B, T, D, 0);
}
template <class X, class Y, detail::EnableBf16<X, Y>>
inline void cls_concat(const Context &ctx, const X *x, const float *cls, Y *y,
                       int64_t B, int64_t T, int64_t D) {
  detail::launch_token_rows<detail::TokenOp::ClsConcat>(ctx, "cls_concat", x,
                                                        cls, y, B, T, D, 0);
}

inline void cls_concat_grad(const Context &ctx, const float *dy, float *dx,
                            float *dcls, int64_t B, int64_t T, int64_t D) {
  detail::cls_concat_grad_impl(ctx, dy, dx, dcls, B, T, D);
}
template <class X, class Y, detail::EnableBf16<X, Y>>
inline void cls_concat_grad(const Context &ctx, const X *dy, Y *dx, float *dcls,
                            int64_t B, int64_t T, int64_t D) {
  detail::cls_concat_grad_impl(ctx, dy, dx, dcls, B, T, D);
}

inline void take_token(const Context &ctx, const float *x, float *y, int64_t B,
                       int64_t T, int64_t D, int64_t index) {
  detail::launch_token_rows<detail::TokenOp::Take>(ctx, "take_token", x,
                                                   nullptr, y, B, T, D, index);
}
template <class X, class Y, detail::EnableBf16<X, Y>>
inline void take_token(const Context &ctx, const X *x, Y *y, int64_t B,
                       int64_t T, int64_t D, int64_t index) {
  detail::launch_token_rows<detail::TokenOp::Take>(ctx, "take_token", x,
                                                   nullptr, y, B, T, D, index);
}

inline void take_token_grad(const Context &ctx, const float *dy, float *dx,
                            int64_t B, int64_t T, int64_t D, int64_t index) {
  detail::launch_token_rows<detail::TokenOp::TakeGrad>(
      ctx, "take_token_grad", dy, nullptr, dx, B, T, D, index);
}
template <class X, class Y, detail::EnableBf16<X, Y>>
inline void take_token_grad(const Context &ctx, const X *dy, Y *dx, int64_t B,
                            int64_t T, int64_t D, int64_t index) {
  detail::launch_token_rows<detail::TokenOp::TakeGrad>(
      ctx, "take_token_grad", dy, nullptr, dx, B, T, D, index);
}

} // namespace cuda
} // namespace sbp

// The bf16 tensor-core attention overloads (attention_fwd, attention_bwd,
// attention_bwd_queries): trainers include only this header.
#include "cuda_attention_bf16.cuh"

#endif // SBP_CUDA_KERNELS_CUH
