//===- cpu_kernels.h - The CPU kernel library of --target=cpu trainers ----===//
//
// One function per kernel of the lowered kernel graph. The host C++ that
// `sbpc --target=cpu` emits calls these with pointers into the trainer's
// arena, e.g.
//
//   sbp::cpu::layer_norm(x, g, b, y, rows, n, eps);
//
// Conventions (docs/cpu-target.md has the long form):
//  - Tensors are float32, row-major and contiguous; "rows" is the product of
//    the leading dimensions; every size is int64_t.
//  - Every kernel OVERWRITES its outputs, unless its name ends in `_acc`
//    (accumulate into the output).
//  - Kernels parallelise internally with OpenMP; call them from serial code.
//  - Elementwise kernels may run in place (output == an input); gather,
//    scatter, patchify, class-token and attention kernels may not alias
//    input and output.
//  - No kernel allocates per call. bias_grad/pos_grad (few columns, many
//    rows), layer_norm_grad and the attention kernels keep a grow-only
//    thread-local workspace, allocated on first use and reused by later
//    calls.
//  - gemm calls cblas_sgemm: link the trainer against OpenBLAS.
//
// Self-contained C++17: it needs <cstdint> and the kernel table beside the
// runtime headers (<sbp/kernel_table.def>).
//
//===----------------------------------------------------------------------===//
#ifndef SBP_CPU_KERNELS_H
#define SBP_CPU_KERNELS_H

#include <cstdint>

namespace sbp {
namespace cpu {

//===--- The kernels of the kernel table ----------------------------------===//
// One declaration per library function of <sbp/kernel_table.def>, e.g.
//   void gelu(const float *x, float *y, int64_t n);
//   void gemm_bias(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k,
//                  const float *a, int64_t lda, const float *b, int64_t ldb,
//                  const float *bias, const float *residual, float *c,
//                  int64_t ldc);
// Semantics: docs/cpu-target.md and the comments of the table's rows.

#define SBP_KERNEL_CONTEXT
#include "sbp/kernel_declarations.inc"
#undef SBP_KERNEL_CONTEXT

//===--- What each kernel computes -----------------------------------------===//
// (the declarations above come from the table; their contracts, by family)
//
// Layout:
//
//   image [B,C,H,W] -> tokens [B, (H/p)*(W/p), C*p*p]; token t = i*(W/p)+j,
//   feature f = c*p*p + py*p + px (a flattened Conv2d weight [D,C,p,p]).
//   H and W must be multiples of p.
//    void patchify(const float *img, float *tokens, int64_t B, int64_t C, int64_t H,
//                  int64_t W, int64_t p);
//
// Elementwise:
//
//    void add(const float *a, const float *b, float *out, int64_t n); // out = a + b
//    void add_acc(float *acc, const float *b, int64_t n);             // acc += b
//   y[r,:] = x[r,:] + bias
//    void bias_add(const float *x, const float *bias, float *y, int64_t rows,
//                  int64_t n);
//   dbias = sum_r dy[r,:]  (accumulated in double)
//    void bias_grad(const float *dy, float *dbias, int64_t rows, int64_t n);
//   y[b,t,:] = x[b,t,:] + pos[t,:]
//    void pos_add(const float *x, const float *pos, float *y, int64_t B, int64_t T,
//                 int64_t D);
//   dpos = sum_b dy[b]  (accumulated in double)
//    void pos_grad(const float *dy, float *dpos, int64_t B, int64_t T, int64_t D);
//   Exact GELU, 0.5 x (1 + erf(x / sqrt 2)), as torch.nn.GELU().
//    void gelu(const float *x, float *y, int64_t n);
//   dx = dy * gelu'(x)
//    void gelu_grad(const float *x, const float *dy, float *dx, int64_t n);
//    void relu(const float *x, float *y, int64_t n);
//   dx = dy * (x > 0)
//    void relu_grad(const float *x, const float *dy, float *dx, int64_t n);
//    void fill(float *x, float value, int64_t n);
//    void copy(const float *x, float *y, int64_t n);
//
// Normalisation and reductions:
//
//   LayerNorm over the last dim n, biased variance (torch.nn.LayerNorm).
//    void layer_norm(const float *x, const float *gamma, const float *beta, float *y,
//                    int64_t rows, int64_t n, float eps);
//   Backward of layer_norm; recomputes mean and rstd from x. dx is
//   overwritten; dgamma and dbeta are OVERWRITTEN with their sums over rows.
//    void layer_norm_grad(const float *x, const float *gamma, const float *dy,
//                         float *dx, float *dgamma, float *dbeta, int64_t rows,
//                         int64_t n, float eps);
//   y[b,:] = mean_t x[b,t,:]
//    void mean_tokens(const float *x, float *y, int64_t B, int64_t T, int64_t D);
//   dx[b,t,:] = dy[b,:] / T
//    void mean_tokens_grad(const float *dy, float *dx, int64_t B, int64_t T,
//                          int64_t D);
//
// Loss:
//
//   Mean softmax cross-entropy over B rows of C logits, labels in [0, C).
//   *loss receives the mean loss. dlogits (nullable) receives
//   (softmax - onehot) / B * dloss_scale. Returns the number of rows whose
//   argmax (first maximum, as torch.argmax) equals the label. A row whose
//   label is outside [0, C) adds no loss (the mean still divides by B), gets
//   a zero gradient row and counts as incorrect (the runtime validates
//   labels; this only keeps a bad one from reading out of bounds). A NaN
//   logit makes the loss NaN.
//    int64_t softmax_xent(const float *logits, const int32_t *labels, float *loss,
//                         float *dlogits, int64_t B, int64_t C, float dloss_scale);
//
// SBP row gather / scatter:
//   idx holds K token indices in [0, T), ascending, -1 = padding; the same idx
//   serves every batch element. Valid indices are expected to be distinct (the
//   mask sampler guarantees it); the kernels stay correct, only slower, if not.
//
//   out[b,k,:] = x[b, idx[k], :], or 0 when idx[k] < 0. x [B,T,D], out [B,K,D].
//    void gather_rows(const float *x, const int32_t *idx, float *out, int64_t B,
//                     int64_t T, int64_t K, int64_t D);
//   out[b, idx[k], :] += xk[b,k,:] for idx[k] >= 0. Other rows untouched.
//    void scatter_rows_acc(const float *xk, const int32_t *idx, float *out,
//                          int64_t B, int64_t T, int64_t K, int64_t D);
//   out = 0, then out[b, idx[k], :] = xk[b,k,:] for idx[k] >= 0.
//    void scatter_rows(const float *xk, const int32_t *idx, float *out, int64_t B,
//                      int64_t T, int64_t K, int64_t D);
//   out[b,t,:] = x[b,t,:] if t is one of the idx entries, else 0.
//   In place (out == x) is allowed.
//    void mask_rows(const float *x, const int32_t *idx, float *out, int64_t B,
//                   int64_t T, int64_t K, int64_t D);
//
// Attention:
//   Attention layout. qkv: [B, T, 3*H*Dh], the output of timm's qkv projection:
//   q at columns [0, H*Dh), k at [H*Dh, 2*H*Dh), v at [2*H*Dh, 3*H*Dh); head h
//   of each at columns h*Dh..h*Dh+Dh-1 within its third (timm:
//   qkv.reshape(B, T, 3, H, Dh)). o, dout: [B, T, H*Dh] (head h at columns
//   h*Dh). lse: [B, T, H], natural-log log-sum-exp of the scaled scores of
//   query (b, t) in head h over the keys it attended to. scale is usually
//   1/sqrt(Dh). Keep-index arrays hold ascending token indices followed by -1
//   padding (the SBP mask format used elsewhere in this library).
//   Online softmax over key tiles: no T x T matrix is ever materialised; the
//   backward recomputes the probabilities from lse. Inputs and outputs must not
//   alias.
//
//   Forward. keep == nullptr: plain softmax attention, every query over all T
//   keys. keep != nullptr (SBP "drop_qkv" forward), keep[0..K): a query whose
//   token is listed in keep attends only to the keys whose tokens are listed
//   in keep; every other query attends to all T keys. lse is written for
//   every (b, t, h) (lse may be nullptr when no backward follows).
//    void attention_fwd(const float *qkv, float *o, float *lse, int64_t B, int64_t T,
//                       int64_t H, int64_t Dh, float scale, const int32_t *keep,
//                       int64_t K);
//
//   Backward over the same T rows; dqkv [B, T, 3*H*Dh] is overwritten (dq,
//   dk, dv in the qkv layout).
//   row_keep == nullptr: every row is a query and a key (the plain gradient).
//   row_keep != nullptr, row_keep[0..T): row t takes part (as query and as
//     key) iff row_keep[t] >= 0; rows that do not take part get zero dq, dk,
//     dv and are not attended to. (This is the compact SBP drop_qkv backward:
//     the tensors hold the gathered kept rows, and row_keep is the keep-index
//     array itself, so its -1 padding rows drop out.)
//   head_keep == nullptr: every head; else head_keep[0..H) lists kept head
//     indices ascending, -1 padded: only those heads get a gradient, the
//     other heads' dq, dk, dv columns are zero (SBP drop_head).
//   ds_scratch, ds_scratch_bytes: the CUDA bf16 kernels' scratch (nullptr,
//     0 from the CPU trainers); not used here.
//    void attention_bwd(const float *qkv, const float *o, const float *lse,
//                       const float *dout, float *dqkv, int64_t B, int64_t T,
//                       int64_t H, int64_t Dh, float scale, const int32_t *row_keep,
//                       const int32_t *head_keep, void *ds_scratch,
//                       int64_t ds_scratch_bytes);
//
//   SBP drop_query backward. The queries are the K rows keep[k] (-1 =
//   padding: no query); keys and values are all T rows of qkv. o_k, dout_k:
//   [B, K, H*Dh] and lse_k: [B, K, H] hold the kept query rows (gathered;
//   padding rows arbitrary, ignored). dqkv [B, T, 3*H*Dh] overwritten: dk, dv
//   at every row (contributions of the kept queries only), dq at the kept
//   rows, zero dq at every other row.
//    void attention_bwd_queries(const float *qkv, const int32_t *keep, int64_t K,
//                               const float *o_k, const float *lse_k,
//                               const float *dout_k, float *dqkv, int64_t B,
//                               int64_t T, int64_t H, int64_t Dh, float scale);
//
// ViT class token and token pooling:
//
//   ViT class token. x [B, T, D] -> y [B, T+1, D]: y[b,0,:] = cls[:],
//   y[b,1+t,:] = x[b,t,:].
//    void cls_concat(const float *x, const float *cls, float *y, int64_t B,
//                    int64_t T, int64_t D);
//   dx[b,t,:] = dy[b,1+t,:]; dcls[:] = sum_b dy[b,0,:] (double accumulation).
//   dy [B, T+1, D].
//    void cls_concat_grad(const float *dy, float *dx, float *dcls, int64_t B,
//                         int64_t T, int64_t D);
//   Token pooling: y[b,:] = x[b,index,:]; x [B, T, D], y [B, D]. (An index
//   outside [0, T) gives zero rows.)
//    void take_token(const float *x, float *y, int64_t B, int64_t T, int64_t D,
//                    int64_t index);
//   dx = 0 except dx[b,index,:] = dy[b,:].
//    void take_token_grad(const float *dy, float *dx, int64_t B, int64_t T,
//                         int64_t D, int64_t index);

//===--- Called by the runtime and the tests ------------------------------===//

/// C[M,N] = alpha op(A) op(B) + beta C, row-major, through cblas_sgemm.
void gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K,
          float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
          float beta, float *C, int64_t ldc);

void add_acc(float *acc, const float *b, int64_t n); // acc += b
void copy(const float *x, float *y, int64_t n);
/// out[b, idx[k], :] += xk[b, k, :] (see gather_rows for idx).
void scatter_rows_acc(const float *xk, const int32_t *idx, float *out,
                      int64_t B, int64_t T, int64_t K, int64_t D);

/// The loss (mean over the rows with a label in [0, C)), and dlogits (when
/// not null) = dloss_scale * (softmax - onehot) / rows; returns the number
/// of rows whose arg max is the label. Both kernel-table rows softmax_xent
/// and softmax_xent_grad call it.
int64_t softmax_xent(const float *logits, const int32_t *labels, float *loss,
                     float *dlogits, int64_t B, int64_t C, float dloss_scale);

} // namespace cpu
} // namespace sbp

#endif // SBP_CPU_KERNELS_H
