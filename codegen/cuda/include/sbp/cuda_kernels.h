//===- cuda_kernels.h - The kernel library of CUDA trainers -*- C++ -*-===//
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
//    "Mixed precision" below), a cast kernel and bf16 GEMMs.
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
// This header only declares: the kernels are compiled once into
// libsbp_cuda_kernels.a (codegen/cuda/src, one translation unit per kernel
// family and element type; SASS for sm_80 and sm_90, PTX for newer GPUs).
// A trainer includes this header and links the archive, -lcublasLt and the
// shared cudart. The float32 declarations of the kernel-table functions are
// expanded from <sbp/kernel_table.def> (runtime/include); their contracts are
// the comments below, each next to its signature.
//
//===----------------------------------------------------------------------===//
#ifndef SBP_CUDA_KERNELS_H
#define SBP_CUDA_KERNELS_H

#include <cublasLt.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
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

//===--- The kernels of the kernel table: float32 -------------------------===//
// One declaration per library function of <sbp/kernel_table.def>, the
// context first, e.g.
//   void gelu(const Context &ctx, const float *x, float *y, int64_t n);
// The comments below give each one's contract next to its signature.

#define SBP_KERNEL_CONTEXT const Context &ctx,
#include "sbp/kernel_declarations.inc"
#undef SBP_KERNEL_CONTEXT

/// Binds the current device: creates the cuBLASLt handle, allocates the
/// workspace and scratch (workspace_bytes / scratch_bytes if set, else the
/// defaults) and reads the multiprocessor count. Keeps `stream` and
/// `allow_tf32`. Returns 0, or non-zero (the failing cudaError_t or
/// cublasStatus_t) with a message in err, having released what it made.
int context_init(Context &ctx, char *err, size_t err_len);
/// Releases what context_init made (not the stream). Synchronises.
void context_destroy(Context &ctx);
/// 0 if every call since the last last_error() on this host thread went
/// well; else non-zero with the first failure's message in err, and clears
/// it. Also collects a pending asynchronous CUDA error, if any.
int last_error(char *err, size_t err_len);

//===--- GEMM -------------------------------------------------------------===//

/// C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, op(X) = X^T when tX.
/// lda/ldb/ldc are the row strides of A, B, C as stored (row-major). With
/// beta == 0, C is not read. Through cuBLASLt; fp32, or TF32 when
/// ctx.allow_tf32. The first call of a shape plans it (host work, allowed
/// during capture but best done before).
void gemm(const Context &ctx, bool transA, bool transB, int64_t M, int64_t N,
          int64_t K, float alpha, const float *A, int64_t lda, const float *B,
          int64_t ldb, float beta, float *C, int64_t ldc);

//===--- Layout -----------------------------------------------------------===//

/// image [B,C,H,W] -> tokens [B, (H/p)*(W/p), C*p*p]; token t = i*(W/p)+j,
/// feature f = c*p*p + py*p + px (a flattened Conv2d weight [D,C,p,p]).
//   void patchify(const Context &ctx, const float *img, float *tokens,
//                        int64_t B, int64_t C, int64_t H, int64_t W, int64_t
//                        p);

//===--- Elementwise ------------------------------------------------------===//

/// out = a + b
//   void add(const Context &ctx, const float *a, const float *b, float *out,
//                   int64_t n);
/// acc += b
void add_acc(const Context &ctx, float *acc, const float *b, int64_t n);
/// y[r,:] = x[r,:] + bias
//   void bias_add(const Context &ctx, const float *x, const float *bias,
//                        float *y, int64_t rows, int64_t n);
/// dbias = sum_r dy[r,:]  (accumulated in double)
//   void bias_grad(const Context &ctx, const float *dy, float *dbias,
//                         int64_t rows, int64_t n);
/// y[b,t,:] = x[b,t,:] + pos[t,:]
//   void pos_add(const Context &ctx, const float *x, const float *pos,
//                       float *y, int64_t B, int64_t T, int64_t D);
/// dpos = sum_b dy[b]  (accumulated in double)
//   void pos_grad(const Context &ctx, const float *dy, float *dpos,
//                        int64_t B, int64_t T, int64_t D);
/// Exact GELU, x * Phi(x) (normcdff), as torch.nn.GELU().
//   void gelu(const Context &ctx, const float *x, float *y, int64_t n);
/// dx = dy * gelu'(x)
//   void gelu_grad(const Context &ctx, const float *x, const float *dy,
//                         float *dx, int64_t n);
//   void relu(const Context &ctx, const float *x, float *y, int64_t n);
/// dx = dy * (x > 0)
//   void relu_grad(const Context &ctx, const float *x, const float *dy,
//                         float *dx, int64_t n);
//   void fill(const Context &ctx, float *x, float value, int64_t n);
/// y = x (x == y: nothing). Other overlaps are not supported.
void copy(const Context &ctx, const float *x, float *y, int64_t n);

//===--- Normalisation and reductions -------------------------------------===//

/// LayerNorm over the last dim n, biased variance (torch.nn.LayerNorm).
//   void layer_norm(const Context &ctx, const float *x, const float *gamma,
//                          const float *beta, float *y, int64_t rows, int64_t
//                          n, float eps);
/// Backward of layer_norm; recomputes mean and rstd from x. dx is
/// overwritten; dgamma and dbeta are OVERWRITTEN with their sums over rows.
//   void layer_norm_grad(const Context &ctx, const float *x,
//                               const float *gamma, const float *dy, float *dx,
//                               float *dgamma, float *dbeta, int64_t rows,
//                               int64_t n, float eps);
/// y[b,:] = mean_t x[b,t,:]
//   void mean_tokens(const Context &ctx, const float *x, float *y, int64_t B,
//                           int64_t T, int64_t D);
/// dx[b,t,:] = dy[b,:] / T
//   void mean_tokens_grad(const Context &ctx, const float *dy, float *dx,
//                                int64_t B, int64_t T, int64_t D);

//===--- Loss -------------------------------------------------------------===//

/// Mean softmax cross-entropy over B rows of C logits, labels in [0, C).
/// *loss (device float, nullable) receives the mean loss. dlogits (nullable)
/// receives (softmax - onehot) / B * dloss_scale. *correct (device int64_t,
/// nullable) receives the number of rows whose argmax (first maximum)
/// equals the label. Out-of-range labels and NaNs as on the CPU.
void softmax_xent(const Context &ctx, const float *logits,
                  const int32_t *labels, float *loss, float *dlogits, int64_t B,
                  int64_t C, float dloss_scale, int64_t *correct = nullptr);

//===--- SBP row gather / scatter -----------------------------------------===//
// idx (device) holds K token indices in [0, T), ascending, -1 = padding; the
// same idx serves every batch element. An index outside [0, T) is padding.
// Repeated indices are handled as on the CPU (accumulate in k order, or the
// last one wins), deterministically, on a slower path.

/// out[b,k,:] = x[b, idx[k], :], or 0 when idx[k] is padding.
//   void gather_rows(const Context &ctx, const float *x, const int32_t *idx,
//                           float *out, int64_t B, int64_t T, int64_t K,
//                           int64_t D);
/// out[b, idx[k], :] += xk[b,k,:] for valid idx[k]. Other rows untouched.
void scatter_rows_acc(const Context &ctx, const float *xk, const int32_t *idx,
                      float *out, int64_t B, int64_t T, int64_t K, int64_t D);
/// out = 0, then out[b, idx[k], :] = xk[b,k,:] for valid idx[k].
//   void scatter_rows(const Context &ctx, const float *xk,
//                            const int32_t *idx, float *out, int64_t B, int64_t
//                            T, int64_t K, int64_t D);
/// out[b,t,:] = x[b,t,:] if t is one of the idx entries, else 0. In place ok.
//   void mask_rows(const Context &ctx, const float *x, const int32_t *idx,
//                         float *out, int64_t B, int64_t T, int64_t K, int64_t
//                         D);
/// out = base + scatter(xk): scatter_rows_acc(xk) on a copy of base, in one
/// pass. base [B,T,D], xk [B,K,D]. out == base allowed.
//   void scatter_add_rows(const Context &ctx, const float *base,
//                                const float *xk, const int32_t *idx, float
//                                *out, int64_t B, int64_t T, int64_t K, int64_t
//                                D);

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
//   void attention_fwd(const Context &ctx, const float *qkv, float *o,
//                             float *lse, int64_t B, int64_t T, int64_t H,
//                             int64_t Dh, float scale, const int32_t *keep,
//                             int64_t K);
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
///   drop_head). Scratch: 4 B H T bytes. ds_scratch, ds_scratch_bytes: the
///   bf16 overload's (below); not used here.
//   void attention_bwd(const Context &ctx, const float *qkv, const float *o,
//                             const float *lse, const float *dout, float *dqkv,
//                             int64_t B, int64_t T, int64_t H, int64_t Dh,
//                             float scale, const int32_t *row_keep,
//                             const int32_t *head_keep, void *ds_scratch,
//                             int64_t ds_scratch_bytes);
/// SBP drop_query backward. The queries are the K rows keep[k] (-1 =
/// padding: no query; entries distinct); keys and values are all T rows of
/// qkv. o_k, dout_k: [B, K, H*Dh] and lse_k: [B, K, H] hold the kept query
/// rows (gathered; padding rows are not read). dqkv [B, T, 3*H*Dh] is
/// overwritten: dk, dv at every row (contributions of the kept queries
/// only), dq at the kept rows, zero dq at every other row. Scratch:
/// 4 B H K bytes.
//   void attention_bwd_queries(const Context &ctx, const float *qkv,
//                                     const int32_t *keep, int64_t K,
//                                     const float *o_k, const float *lse_k,
//                                     const float *dout_k, float *dqkv, int64_t
//                                     B, int64_t T, int64_t H, int64_t Dh,
//                                     float scale);

//===--- ViT class token and token pooling --------------------------------===//

/// x [B, T, D] -> y [B, T+1, D]: y[b,0,:] = cls[:], y[b,1+t,:] = x[b,t,:].
//   void cls_concat(const Context &ctx, const float *x, const float *cls,
//                          float *y, int64_t B, int64_t T, int64_t D);
/// dx[b,t,:] = dy[b,1+t,:]; dcls[:] = sum_b dy[b,0,:] (double accumulation,
/// deterministic). dy [B, T+1, D].
//   void cls_concat_grad(const Context &ctx, const float *dy, float *dx,
//                               float *dcls, int64_t B, int64_t T, int64_t D);
/// y[b,:] = x[b,index,:]; x [B, T, D], y [B, D]. An index outside [0, T)
/// is padding: y = 0.
//   void take_token(const Context &ctx, const float *x, float *y, int64_t B,
//                          int64_t T, int64_t D, int64_t index);
/// dx = 0 except dx[b,index,:] = dy[b,:].
//   void take_token_grad(const Context &ctx, const float *dy, float *dx,
//                               int64_t B, int64_t T, int64_t D, int64_t
//                               index);

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
// The bf16 attention overloads are at the end of this header.

/// y = x rounded to bf16, round-to-nearest-even (NaN stays NaN, +-inf and
/// overflow to +-inf as IEEE), and the exact widening back.
void cast(const Context &ctx, const float *x, __nv_bfloat16 *y, int64_t n);
void cast(const Context &ctx, const __nv_bfloat16 *x, float *y, int64_t n);

/// gemm with A and B `const __nv_bfloat16 *` (T = __nv_bfloat16) through
/// cuBLASLt (CUDA_R_16BF operands, CUBLAS_COMPUTE_32F: fp32 accumulation on
/// the tensor cores), C (and D) `__nv_bfloat16 *` or `float *`, alpha and
/// beta float. ctx.allow_tf32 does not apply. Same layout, strides,
/// beta == 0, K == 0, fallback kernel and plan caching (keyed on the data
/// types too) as the float gemm. A template only so that a call with null
/// pointer literals still means the float gemm.
template <class T, class TC, detail::EnableBf16Gemm<T, TC> = 0>
void gemm(const Context &ctx, bool transA, bool transB, int64_t M, int64_t N,
          int64_t K, float alpha, const T *A, int64_t lda, const T *B,
          int64_t ldb, float beta, TC *C, int64_t ldc);

/// A weight gradient dW = alpha A^T B (A [K, M], B [K, N], row strides lda,
/// ldb) as `chunks` partial products over equal row chunks of K:
/// partial[s] (packed M x N, float) = alpha A[sK/c .. (s+1)K/c)^T B[same rows].
/// One strided-batched cuBLASLt call without split-K (the chunks give the
/// GPU its parallelism), so one launch; the caller adds the partials in
/// order (the trainer's deferred column-sum launch: deterministic).
/// K must be a multiple of chunks.
void gemm_row_chunks(const Context &ctx, int64_t M, int64_t N, int64_t K,
                     int64_t chunks, float alpha, const float *A, int64_t lda,
                     const float *B, int64_t ldb, float *partial);
void gemm_row_chunks(const Context &ctx, int64_t M, int64_t N, int64_t K,
                     int64_t chunks, float alpha, const __nv_bfloat16 *A,
                     int64_t lda, const __nv_bfloat16 *B, int64_t ldb,
                     float *partial);

template <class X, class Y, detail::EnableBf16<X, Y> = 0>
void patchify(const Context &ctx, const X *img, Y *tokens, int64_t B, int64_t C,
              int64_t H, int64_t W, int64_t p);
template <class A, class B, class O, detail::EnableBf16<A, B, O> = 0>
void add(const Context &ctx, const A *a, const B *b, O *out, int64_t n);
template <class O, class B, detail::EnableBf16<O, B> = 0>
void add_acc(const Context &ctx, O *acc, const B *b, int64_t n);
template <class X, class Y, detail::EnableBf16<X, Y> = 0>
void bias_add(const Context &ctx, const X *x, const float *bias, Y *y,
              int64_t rows, int64_t n);
template <class X, detail::EnableBf16<X> = 0>
void bias_grad(const Context &ctx, const X *dy, float *dbias, int64_t rows,
               int64_t n);
template <class X, class Y, detail::EnableBf16<X, Y> = 0>
void pos_add(const Context &ctx, const X *x, const float *pos, Y *y, int64_t B,
             int64_t T, int64_t D);
template <class X, detail::EnableBf16<X> = 0>
void pos_grad(const Context &ctx, const X *dy, float *dpos, int64_t B,
              int64_t T, int64_t D);
template <class X, class Y, detail::EnableBf16<X, Y> = 0>
void gelu(const Context &ctx, const X *x, Y *y, int64_t n);
template <class X, class G, class D, detail::EnableBf16<X, G, D> = 0>
void gelu_grad(const Context &ctx, const X *x, const G *dy, D *dx, int64_t n);
template <class X, class Y, detail::EnableBf16<X, Y> = 0>
void relu(const Context &ctx, const X *x, Y *y, int64_t n);
template <class X, class G, class D, detail::EnableBf16<X, G, D> = 0>
void relu_grad(const Context &ctx, const X *x, const G *dy, D *dx, int64_t n);
template <class T, detail::EnableBf16<T> = 0>
void fill(const Context &ctx, T *x, float value, int64_t n);
/// Equal types: a device copy (x == y: nothing); otherwise cast.
template <class X, class Y, detail::EnableBf16<X, Y> = 0>
void copy(const Context &ctx, const X *x, Y *y, int64_t n);

template <class X, class Y, detail::EnableBf16<X, Y> = 0>
void layer_norm(const Context &ctx, const X *x, const float *gamma,
                const float *beta, Y *y, int64_t rows, int64_t n, float eps);
template <class X, class G, class D, detail::EnableBf16<X, G, D> = 0>
void layer_norm_grad(const Context &ctx, const X *x, const float *gamma,
                     const G *dy, D *dx, float *dgamma, float *dbeta,
                     int64_t rows, int64_t n, float eps);
template <class X, class Y, detail::EnableBf16<X, Y> = 0>
void mean_tokens(const Context &ctx, const X *x, Y *y, int64_t B, int64_t T,
                 int64_t D);
template <class X, class Y, detail::EnableBf16<X, Y> = 0>
void mean_tokens_grad(const Context &ctx, const X *dy, Y *dx, int64_t B,
                      int64_t T, int64_t D);

/// loss and correct as in the float softmax_xent; dlogits bf16 or float, or
/// nullptr (the second overload).
template <class L, class G, detail::EnableBf16<L, G> = 0>
void softmax_xent(const Context &ctx, const L *logits, const int32_t *labels,
                  float *loss, G *dlogits, int64_t B, int64_t C,
                  float dloss_scale, int64_t *correct = nullptr);
template <class L, detail::EnableBf16<L> = 0>
void softmax_xent(const Context &ctx, const L *logits, const int32_t *labels,
                  float *loss, std::nullptr_t dlogits, int64_t B, int64_t C,
                  float dloss_scale, int64_t *correct = nullptr);

template <class X, class Y, detail::EnableBf16<X, Y> = 0>
void gather_rows(const Context &ctx, const X *x, const int32_t *idx, Y *out,
                 int64_t B, int64_t T, int64_t K, int64_t D);
template <class X, class O, detail::EnableBf16<X, O> = 0>
void scatter_rows_acc(const Context &ctx, const X *xk, const int32_t *idx,
                      O *out, int64_t B, int64_t T, int64_t K, int64_t D);
template <class X, class Y, detail::EnableBf16<X, Y> = 0>
void scatter_rows(const Context &ctx, const X *xk, const int32_t *idx, Y *out,
                  int64_t B, int64_t T, int64_t K, int64_t D);
template <class X, class Y, detail::EnableBf16<X, Y> = 0>
void mask_rows(const Context &ctx, const X *x, const int32_t *idx, Y *out,
               int64_t B, int64_t T, int64_t K, int64_t D);
template <class Bs, class X, class O, detail::EnableBf16<Bs, X, O> = 0>
void scatter_add_rows(const Context &ctx, const Bs *base, const X *xk,
                      const int32_t *idx, O *out, int64_t B, int64_t T,
                      int64_t K, int64_t D);

template <class X, class Y, detail::EnableBf16<X, Y> = 0>
void cls_concat(const Context &ctx, const X *x, const float *cls, Y *y,
                int64_t B, int64_t T, int64_t D);
template <class X, class Y, detail::EnableBf16<X, Y> = 0>
void cls_concat_grad(const Context &ctx, const X *dy, Y *dx, float *dcls,
                     int64_t B, int64_t T, int64_t D);
template <class X, class Y, detail::EnableBf16<X, Y> = 0>
void take_token(const Context &ctx, const X *x, Y *y, int64_t B, int64_t T,
                int64_t D, int64_t index);
template <class X, class Y, detail::EnableBf16<X, Y> = 0>
void take_token_grad(const Context &ctx, const X *dy, Y *dx, int64_t B,
                     int64_t T, int64_t D, int64_t index);

//===--- ConvNeXt: depth-wise conv, space-to-depth, layer scale (bf16) ---===//
// The kernel-table rows dwconv* / space_to_depth* / layer_scale* with bf16
// activations (weight, bias, gamma and their gradients float). Channels-last
// [B, H*W, C]; dwconv: odd K, padding K/2, weight [C, 1, K, K]; tiled fast
// path for K = 3, 5, 7 (any C, H, W), a direct kernel for other odd K.
// dwconv_grad_weight writes dweight and dbias (deterministic two-stage
// reduction; scratch: 4 * C * (K*K + 1) bytes per partial block, at least
// one). The _rows gradients take dy as its SBP kept rows [B, kept, C] at idx
// (other K, and space_to_depth_grad_rows: 4 * (tokens + 1) bytes of scratch
// for a keep map).
// layer_scale_grad writes dgamma (double, deterministic).
template <class X, class Y, detail::EnableBf16<X, Y> = 0>
void dwconv(const Context &ctx, const X *x, const float *weight,
            const float *bias, Y *y, int64_t batch, int64_t height,
            int64_t width, int64_t channels, int64_t kernel);
template <class G, class D, detail::EnableBf16<G, D> = 0>
void dwconv_grad_input(const Context &ctx, const G *dy, const float *weight,
                       D *dx, int64_t batch, int64_t height, int64_t width,
                       int64_t channels, int64_t kernel);
template <class G, class X, detail::EnableBf16<G, X> = 0>
void dwconv_grad_weight(const Context &ctx, const G *dy, const X *x,
                        float *dweight, float *dbias, int64_t batch,
                        int64_t height, int64_t width, int64_t channels,
                        int64_t kernel);
template <class G, class D, detail::EnableBf16<G, D> = 0>
void dwconv_grad_input_rows(const Context &ctx, const G *dyk,
                            const int32_t *idx, int64_t kept,
                            const float *weight, D *dx, int64_t batch,
                            int64_t height, int64_t width, int64_t channels,
                            int64_t kernel);
template <class G, class X, detail::EnableBf16<G, X> = 0>
void dwconv_grad_weight_rows(const Context &ctx, const G *dyk,
                             const int32_t *idx, int64_t kept, const X *x,
                             float *dweight, float *dbias, int64_t batch,
                             int64_t height, int64_t width, int64_t channels,
                             int64_t kernel);
template <class X, class Y, detail::EnableBf16<X, Y> = 0>
void space_to_depth(const Context &ctx, const X *x, Y *y, int64_t batch,
                    int64_t height, int64_t width, int64_t channels,
                    int64_t block);
template <class G, class D, detail::EnableBf16<G, D> = 0>
void space_to_depth_grad(const Context &ctx, const G *dy, D *dx, int64_t batch,
                         int64_t height, int64_t width, int64_t channels,
                         int64_t block);
template <class G, class D, detail::EnableBf16<G, D> = 0>
void space_to_depth_grad_rows(const Context &ctx, const G *dyk,
                              const int32_t *idx, int64_t kept, D *dx,
                              int64_t batch, int64_t height, int64_t width,
                              int64_t channels, int64_t block);
template <class X, class Y, detail::EnableBf16<X, Y> = 0>
void layer_scale(const Context &ctx, const X *x, const float *gamma, Y *y,
                 int64_t rows, int64_t n);
template <class G, class X, class D, detail::EnableBf16<G, X, D> = 0>
void layer_scale_grad(const Context &ctx, const G *dy, const X *x,
                      const float *gamma, D *dx, float *dgamma, int64_t rows,
                      int64_t n);

//===--- Stochastic depth (bf16) ------------------------------------------===//
// The kernel-table row drop_path with bf16 tensors: y[b] = x[b] * scale for
// samples b in keep (ascending, -1 padded), 0 otherwise; may run in place.
template <class X, class Y, detail::EnableBf16<X, Y> = 0>
void drop_path(const Context &ctx, const X *x, const int32_t *keep, Y *y,
               int64_t batch, int64_t kept, int64_t n, float scale);

//===--- GEMM epilogues (sbp-fuse-epilogues, the fusion pass)
//--------------===//

template <class T> struct Identity { using type = T; };

/// C = op(A) op(B) + bias (+ residual, when not null). residual may not alias
/// C.
template <class TA, class TB, class TC>
void gemm_bias(const Context &ctx, bool transA, bool transB, int64_t M,
               int64_t N, int64_t K, const TA *A, int64_t lda, const TB *B,
               int64_t ldb, const typename Identity<TC>::type *bias,
               const typename Identity<TC>::type *residual, TC *C, int64_t ldc);

/// C = op(A) op(B) (alpha 1, beta 0, as gemm) and dbias[i] = sum_j op(A)[i, j]
/// over the K columns of op(A), in float32 whatever A's type: the weight
/// gradient dW = dY^T X with the bias gradient, the column sums of dY, from
/// one cuBLASLt call with a BGRAD epilogue (or, where cuBLASLt has no
/// algorithm for it, the GEMM and a column-sum kernel; same result).
/// Deterministic. The float32 overload is declared from the kernel table.
template <class TA, class TB, class TC>
void gemm_bgrad(const Context &ctx, bool transA, bool transB, int64_t M,
                int64_t N, int64_t K, const TA *A, int64_t lda, const TB *B,
                int64_t ldb, TC *C, int64_t ldc, float *dbias);

//===--- Attention: bfloat16 (tensor cores, mma.sync) ---------------------===//

//===--- API --------------------------------------------------------------===//
// Layout (timm's), as the fp32 overloads: qkv [B, T, 3*H*Dh] bf16, q at
// columns [0, H*Dh), k at [H*Dh, 2*H*Dh), v at [2*H*Dh, 3*H*Dh), head h of
// each at columns h*Dh..h*Dh+Dh-1 within its third. o, dout [B, T, H*Dh]
// bf16 (head h at columns h*Dh). lse [B, T, H] float, the natural-log
// log-sum-exp of query (b, t)'s scaled scores in head h over the keys it
// attended to. Keep lists: ascending token indices, -1 padding (an entry
// outside [0, T) is padding). 1 <= Dh <= 64. No aliasing. Asynchronous on
// ctx.stream; errors recorded (last_error).

/// Forward. keep == nullptr (or K <= 0): every query attends all T keys.
/// Otherwise (SBP drop_qkv) a query whose token is listed in keep[0..K)
/// attends only the listed keys, every other query all T keys; T <= 8192.
/// o and lse (nullable) are written for every (b, t, h). No scratch.
void attention_fwd(const Context &ctx, const __nv_bfloat16 *qkv,
                   __nv_bfloat16 *o, float *lse, int64_t B, int64_t T,
                   int64_t H, int64_t Dh, float scale, const int32_t *keep,
                   int64_t K);
/// Backward; dqkv [B, T, 3*H*Dh] is overwritten. row_keep (nullable, [T]):
/// row t takes part, as query and as key, iff row_keep[t] >= 0; the others
/// get zero dq, dk, dv and nothing of theirs (qkv, o, lse, dout) is read.
/// head_keep (nullable, [H], kept heads then -1): the other heads get zero
/// dq, dk, dv, nothing of theirs is read. Scratch: 8 B H ceil64(T) bytes.
/// ds_scratch (nullable; else at least sbp_attention_ds_bytes(B, T, H) bytes
/// of ds_scratch_bytes, <sbp/kernel_scratch.h>, or the call fails): where
/// the tiled kernels take it (16-byte aligned tensors, Dh % 8 == 0), the
/// dK/dV kernel stores dS^T there and dQ = dS K reads it back instead of
/// recomputing S, P, dP and dS (~2x faster dQ). Its contents are scratch.
void attention_bwd(const Context &ctx, const __nv_bfloat16 *qkv,
                   const __nv_bfloat16 *o, const float *lse,
                   const __nv_bfloat16 *dout, __nv_bfloat16 *dqkv, int64_t B,
                   int64_t T, int64_t H, int64_t Dh, float scale,
                   const int32_t *row_keep, const int32_t *head_keep,
                   void *ds_scratch, int64_t ds_scratch_bytes);
/// SBP drop_query backward: the queries are the K rows keep[k] (-1 or out
/// of range: no query; the valid entries distinct), with o_k, dout_k
/// [B, K, H*Dh] and lse_k [B, K, H] (padding rows not read); keys and values
/// are all T rows. dqkv [B, T, 3*H*Dh] is overwritten: dk, dv at every row
/// (from the kept queries), dq at the kept rows, zero dq elsewhere.
/// Scratch: 8 B H ceil64(K) bytes.
void attention_bwd_queries(const Context &ctx, const __nv_bfloat16 *qkv,
                           const int32_t *keep, int64_t K,
                           const __nv_bfloat16 *o_k, const float *lse_k,
                           const __nv_bfloat16 *dout_k, __nv_bfloat16 *dqkv,
                           int64_t B, int64_t T, int64_t H, int64_t Dh,
                           float scale);

//===----------------------------------------------------------------------===//
// Implementation
//===----------------------------------------------------------------------===//

} // namespace cuda
} // namespace sbp

#endif // SBP_CUDA_KERNELS_H
