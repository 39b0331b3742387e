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
//    scatter and patchify kernels may not alias input and output.
//  - No kernel allocates per call. bias_grad/pos_grad (few columns, many
//    rows), layer_norm_grad and attention_fwd keep a grow-only thread-local
//    workspace, allocated on first use and reused by later calls.
//  - gemm calls cblas_sgemm: link the trainer against OpenBLAS.
//
// This header is self-contained C++17: it needs only <cstdint>.
//
//===----------------------------------------------------------------------===//
#ifndef SBP_CPU_KERNELS_H
#define SBP_CPU_KERNELS_H

#include <cstdint>

namespace sbp {
namespace cpu {

//===--- GEMM -------------------------------------------------------------===//

/// C[M,N] = alpha * op(A)[M,K] * op(B)[K,N] + beta * C, op(X) = X^T when tX.
/// lda/ldb/ldc are the row strides of A, B, C as stored (row-major). With
/// beta == 0, C is not read (NaNs in it do not propagate).
void gemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K,
          float alpha, const float *A, int64_t lda, const float *B, int64_t ldb,
          float beta, float *C, int64_t ldc);

//===--- Layout -----------------------------------------------------------===//

/// image [B,C,H,W] -> tokens [B, (H/p)*(W/p), C*p*p]; token t = i*(W/p)+j,
/// feature f = c*p*p + py*p + px (a flattened Conv2d weight [D,C,p,p]).
/// H and W must be multiples of p.
void patchify(const float *img, float *tokens, int64_t B, int64_t C, int64_t H,
              int64_t W, int64_t p);

//===--- Elementwise ------------------------------------------------------===//

void add(const float *a, const float *b, float *out, int64_t n); // out = a + b
void add_acc(float *acc, const float *b, int64_t n);             // acc += b
/// y[r,:] = x[r,:] + bias
void bias_add(const float *x, const float *bias, float *y, int64_t rows,
              int64_t n);
/// dbias = sum_r dy[r,:]  (accumulated in double)
void bias_grad(const float *dy, float *dbias, int64_t rows, int64_t n);
/// y[b,t,:] = x[b,t,:] + pos[t,:]
void pos_add(const float *x, const float *pos, float *y, int64_t B, int64_t T,
             int64_t D);
/// dpos = sum_b dy[b]  (accumulated in double)
void pos_grad(const float *dy, float *dpos, int64_t B, int64_t T, int64_t D);
/// Exact GELU, 0.5 x (1 + erf(x / sqrt 2)), as torch.nn.GELU().
void gelu(const float *x, float *y, int64_t n);
/// dx = dy * gelu'(x)
void gelu_grad(const float *x, const float *dy, float *dx, int64_t n);
void relu(const float *x, float *y, int64_t n);
/// dx = dy * (x > 0)
void relu_grad(const float *x, const float *dy, float *dx, int64_t n);
void fill(float *x, float value, int64_t n);
void copy(const float *x, float *y, int64_t n);

//===--- Normalisation and reductions -------------------------------------===//

/// LayerNorm over the last dim n, biased variance (torch.nn.LayerNorm).
void layer_norm(const float *x, const float *gamma, const float *beta, float *y,
                int64_t rows, int64_t n, float eps);
/// Backward of layer_norm; recomputes mean and rstd from x. dx is
/// overwritten; dgamma and dbeta are OVERWRITTEN with their sums over rows.
void layer_norm_grad(const float *x, const float *gamma, const float *dy,
                     float *dx, float *dgamma, float *dbeta, int64_t rows,
                     int64_t n, float eps);
/// y[b,:] = mean_t x[b,t,:]
void mean_tokens(const float *x, float *y, int64_t B, int64_t T, int64_t D);
/// dx[b,t,:] = dy[b,:] / T
void mean_tokens_grad(const float *dy, float *dx, int64_t B, int64_t T,
                      int64_t D);

//===--- Loss -------------------------------------------------------------===//

/// Mean softmax cross-entropy over B rows of C logits, labels in [0, C).
/// *loss receives the mean loss. dlogits (nullable) receives
/// (softmax - onehot) / B * dloss_scale. Returns the number of rows whose
/// argmax (first maximum, as torch.argmax) equals the label. A row whose
/// label is outside [0, C) adds no loss (the mean still divides by B), gets
/// a zero gradient row and counts as incorrect (the runtime validates
/// labels; this only keeps a bad one from reading out of bounds). A NaN
/// logit makes the loss NaN.
int64_t softmax_xent(const float *logits, const int32_t *labels, float *loss,
                     float *dlogits, int64_t B, int64_t C, float dloss_scale);

//===--- SBP row gather / scatter -----------------------------------------===//
// idx holds K token indices in [0, T), ascending, -1 = padding; the same idx
// serves every batch element. Valid indices are expected to be distinct (the
// mask sampler guarantees it); the kernels stay correct, only slower, if not.

/// out[b,k,:] = x[b, idx[k], :], or 0 when idx[k] < 0. x [B,T,D], out [B,K,D].
void gather_rows(const float *x, const int32_t *idx, float *out, int64_t B,
                 int64_t T, int64_t K, int64_t D);
/// out[b, idx[k], :] += xk[b,k,:] for idx[k] >= 0. Other rows untouched.
void scatter_rows_acc(const float *xk, const int32_t *idx, float *out,
                      int64_t B, int64_t T, int64_t K, int64_t D);
/// out = 0, then out[b, idx[k], :] = xk[b,k,:] for idx[k] >= 0.
void scatter_rows(const float *xk, const int32_t *idx, float *out, int64_t B,
                  int64_t T, int64_t K, int64_t D);
/// out[b,t,:] = x[b,t,:] if t is one of the idx entries, else 0.
/// In place (out == x) is allowed.
void mask_rows(const float *x, const int32_t *idx, float *out, int64_t B,
               int64_t T, int64_t K, int64_t D);

//===--- Attention --------------------------------------------------------===//
// q, o, dq: [B,Tq,H,Dh]; k, v, dk, dv: [B,Tk,H,Dh] (heads interleaved, as the
// columns of a qkv projection; the row stride of a token is H*Dh).
// lse: [B,H,Tq], the natural-log log-sum-exp of the scaled scores of each
// query. Every one of the Tk keys is attended to: pass Tk = number of valid
// keys when the key rows carry padding at the end.

/// o = softmax(scale * q k^T) v per (batch, head), with an online softmax
/// over key tiles (the Tq x Tk matrix is never materialised). lse nullable.
void attention_fwd(const float *q, const float *k, const float *v, float *o,
                   float *lse, int64_t B, int64_t H, int64_t Tq, int64_t Tk,
                   int64_t Dh, float scale);
/// Backward of attention_fwd, recomputing the probabilities from lse.
/// dq, dk, dv are overwritten.
void attention_bwd(const float *q, const float *k, const float *v,
                   const float *o, const float *lse, const float *dout,
                   float *dq, float *dk, float *dv, int64_t B, int64_t H,
                   int64_t Tq, int64_t Tk, int64_t Dh, float scale);

} // namespace cpu
} // namespace sbp

#endif // SBP_CPU_KERNELS_H
