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
// Compile the including .cu with nvcc -std=c++17 -arch=sm_90 (any sm_70+
// works) and link -lcublasLt (cudart comes with nvcc).
//
//===----------------------------------------------------------------------===//
#ifndef SBP_CUDA_KERNELS_CUH
#define SBP_CUDA_KERNELS_CUH

#include <cublasLt.h>
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

namespace sbp {
namespace cuda {

namespace detail {
struct GemmPlanCache;
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
// q, o, dq: [B,Tq,H,Dh]; k, v, dk, dv: [B,Tk,H,Dh] (heads interleaved, token
// stride H*Dh); lse: [B,H,Tq]. Dh <= 128 (fast tiles for Dh <= 64). Every one
// of the Tk keys takes part (pass Tk = valid keys when padding trails).

/// o = softmax(scale * q k^T) v per (batch, head), online softmax over key
/// tiles. lse (natural log-sum-exp of the scaled scores) nullable.
inline void attention_fwd(const Context &ctx, const float *q, const float *k,
                          const float *v, float *o, float *lse, int64_t B,
                          int64_t H, int64_t Tq, int64_t Tk, int64_t Dh,
                          float scale);
/// Backward of attention_fwd, recomputing the probabilities from lse.
/// dq, dk, dv are overwritten.
inline void attention_bwd(const Context &ctx, const float *q, const float *k,
                          const float *v, const float *o, const float *lse,
                          const float *dout, float *dq, float *dk, float *dv,
                          int64_t B, int64_t H, int64_t Tq, int64_t Tk,
                          int64_t Dh, float scale);

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

template <int kVec> struct VecOf;
template <> struct VecOf<1> {
  using type = float;
  __device__ static float zero() { return 0.0f; }
};
template <> struct VecOf<4> {
  using type = float4;
  __device__ static float4 zero() { return make_float4(0.f, 0.f, 0.f, 0.f); }
};

__device__ __forceinline__ float vadd(float a, float b) { return a + b; }
__device__ __forceinline__ float4 vadd(float4 a, float4 b) {
  return make_float4(a.x + b.x, a.y + b.y, a.z + b.z, a.w + b.w);
}
template <class F> __device__ __forceinline__ float vmap(float a, F f) {
  return f(a);
}
template <class F> __device__ __forceinline__ float4 vmap(float4 a, F f) {
  return make_float4(f(a.x), f(a.y), f(a.z), f(a.w));
}
template <class F>
__device__ __forceinline__ float vmap2(float a, float b, F f) {
  return f(a, b);
}
template <class F>
__device__ __forceinline__ float4 vmap2(float4 a, float4 b, F f) {
  return make_float4(f(a.x, b.x), f(a.y, b.y), f(a.z, b.z), f(a.w, b.w));
}

//===--- Pointwise --------------------------------------------------------===//

struct AddOp {
  __device__ float operator()(float a, float b) const { return a + b; }
};
struct FillOp {
  float value;
  __device__ float operator()(float, float) const { return value; }
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

/// y[i] = op(a[i], b[i]) with kIn inputs (0: neither read, 1: a only).
template <int kIn, int kVec, class Op, class I>
__global__ void __launch_bounds__(kThreads)
    pointwise_kernel(const float *a, const float *b, float *y, I n, Op op) {
  using V = typename VecOf<kVec>::type;
  const I nv = n / kVec;
  const I stride = I(gridDim.x) * kThreads;
  const I first = I(blockIdx.x) * kThreads + threadIdx.x;
  const V *av = reinterpret_cast<const V *>(a);
  const V *bv = reinterpret_cast<const V *>(b);
  V *yv = reinterpret_cast<V *>(y);
  for (I i = first; i < nv; i += stride) {
    V x0 = VecOf<kVec>::zero(), x1 = VecOf<kVec>::zero();
    if constexpr (kIn >= 1)
      x0 = av[i];
    if constexpr (kIn >= 2)
      x1 = bv[i];
    yv[i] = vmap2(x0, x1, op);
  }
  if constexpr (kVec > 1) // the < kVec leftover elements
    for (I i = nv * kVec + first; i < n; i += stride) {
      float x0 = 0.0f, x1 = 0.0f;
      if constexpr (kIn >= 1)
        x0 = a[i];
      if constexpr (kIn >= 2)
        x1 = b[i];
      y[i] = op(x0, x1);
    }
}

template <int kIn, class Op>
inline void launch_pointwise(const Context &ctx, const char *name,
                             const float *a, const float *b, float *y,
                             int64_t n, Op op) {
  if (n <= 0)
    return;
  const bool vec = aligned16(y) && (kIn < 1 || aligned16(a)) &&
                   (kIn < 2 || aligned16(b)) && n >= 4;
  const unsigned grid = grid_for(ctx, vec ? n / 4 : n);
  if (n < kMaxIndex32) {
    if (vec)
      pointwise_kernel<kIn, 4, Op, uint32_t>
          <<<grid, kThreads, 0, ctx.stream>>>(a, b, y, uint32_t(n), op);
    else
      pointwise_kernel<kIn, 1, Op, uint32_t>
          <<<grid, kThreads, 0, ctx.stream>>>(a, b, y, uint32_t(n), op);
  } else {
    if (vec)
      pointwise_kernel<kIn, 4, Op, int64_t>
          <<<grid, kThreads, 0, ctx.stream>>>(a, b, y, n, op);
    else
      pointwise_kernel<kIn, 1, Op, int64_t>
          <<<grid, kThreads, 0, ctx.stream>>>(a, b, y, n, op);
  }
  check_launch(name);
}

/// y[i] = x[i] + v[i % n] over `total` elements (bias_add, pos_add); in
/// units of kVec floats.
template <int kVec, class I>
__global__ void __launch_bounds__(kThreads)
    broadcast_add_kernel(const float *x, const float *v, float *y, I total,
                         I n) {
  using V = typename VecOf<kVec>::type;
  const V *xv = reinterpret_cast<const V *>(x);
  const V *vv = reinterpret_cast<const V *>(v);
  V *yv = reinterpret_cast<V *>(y);
  const I stride = I(gridDim.x) * kThreads;
  for (I i = I(blockIdx.x) * kThreads + threadIdx.x; i < total; i += stride)
    yv[i] = vadd(xv[i], vv[i % n]);
}

inline void launch_broadcast_add(const Context &ctx, const char *name,
                                 const float *x, const float *v, float *y,
                                 int64_t rows, int64_t n) {
  if (rows <= 0 || n <= 0)
    return;
  const int64_t total = rows * n;
  const bool vec = n % 4 == 0 && aligned16(x) && aligned16(v) && aligned16(y);
  const int64_t tv = vec ? total / 4 : total, nv = vec ? n / 4 : n;
  const unsigned grid = grid_for(ctx, tv);
  if (total < kMaxIndex32) {
    if (vec)
      broadcast_add_kernel<4, uint32_t><<<grid, kThreads, 0, ctx.stream>>>(
          x, v, y, uint32_t(tv), uint32_t(nv));
    else
      broadcast_add_kernel<1, uint32_t><<<grid, kThreads, 0, ctx.stream>>>(
          x, v, y, uint32_t(tv), uint32_t(nv));
  } else {
    if (vec)
      broadcast_add_kernel<4, int64_t>
          <<<grid, kThreads, 0, ctx.stream>>>(x, v, y, tv, nv);
    else
      broadcast_add_kernel<1, int64_t>
          <<<grid, kThreads, 0, ctx.stream>>>(x, v, y, tv, nv);
  }
  check_launch(name);
}

/// dx[b,t,:] = dy[b,:] / T, in units of kVec floats (D % kVec == 0).
template <int kVec, class I>
__global__ void __launch_bounds__(kThreads)
    mean_tokens_grad_kernel(const float *dy, float *dx, I total, I TD, I D,
                            float t) {
  using V = typename VecOf<kVec>::type;
  const V *gv = reinterpret_cast<const V *>(dy);
  V *xv = reinterpret_cast<V *>(dx);
  const I stride = I(gridDim.x) * kThreads;
  for (I i = I(blockIdx.x) * kThreads + threadIdx.x; i < total; i += stride)
    xv[i] = vmap(gv[(i / TD) * D + i % D], [t](float g) { return g / t; });
}

//===--- Column sums (bias_grad, pos_grad, mean_tokens) -------------------===//
// x [batches, rows, n] -> out [batches, n] = scale * sum over rows, in
// double. A block owns a tile of `tile` column vectors and a split of the
// rows; its 256 threads form (256 / tile) row lanes, so a warp always reads
// contiguous memory (a narrow matrix is read as a flat stream). With several
// splits the per-split sums go to scratch and a second kernel adds them in
// split order: the result does not depend on timing.

template <int kVec>
__global__ void __launch_bounds__(kThreads)
    colsum_kernel(const float *x, int64_t batches, int64_t rows, int64_t n,
                  int tile, int64_t rows_per_split, double *partial, float *out,
                  double scale) {
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
      const float *xb = x + b * rows * n + col * kVec;
#pragma unroll 4
      for (int64_t r = r0 + lane; r < r1; r += lanes) {
        if constexpr (kVec == 4) {
          const float4 q = *reinterpret_cast<const float4 *>(xb + r * n);
          acc[0] += double(q.x);
          acc[1] += double(q.y);
          acc[2] += double(q.z);
          acc[3] += double(q.w);
        } else {
          acc[0] += double(xb[r * n]);
        }
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
          out[b * n + j] = float(s * scale);
        else
          partial[(b * splits + split) * n + j] = s;
      }
    }
    __syncthreads();
  }
}

/// out[b*n + j] = scale * sum_s partial[(b*splits + s)*n + j], s in order.
template <int kUnused = 0>
__global__ void __launch_bounds__(kThreads)
    colsum_finalize_kernel(const double *partial, int64_t batches, int splits,
                           int64_t n, float *out, double scale) {
  const int64_t total = batches * n;
  const int64_t stride = int64_t(gridDim.x) * kThreads;
  for (int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x; i < total;
       i += stride) {
    const int64_t b = i / n, j = i % n;
    double s = 0.0;
    for (int k = 0; k < splits; ++k)
      s += partial[(b * splits + k) * n + j];
    out[i] = float(s * scale);
  }
}

inline void column_sum(const Context &ctx, const char *name, const float *x,
                       int64_t batches, int64_t rows, int64_t n, float *out,
                       double scale) {
  if (batches <= 0 || n <= 0)
    return;
  if (rows < 0)
    rows = 0;
  const bool vec = n % 4 == 0 && aligned16(x);
  const int kv = vec ? 4 : 1;
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
  if (vec)
    colsum_kernel<4><<<grid, kThreads, 0, ctx.stream>>>(
        x, batches, rows, n, tile, per_split, partial, out, scale);
  else
    colsum_kernel<1><<<grid, kThreads, 0, ctx.stream>>>(
        x, batches, rows, n, tile, per_split, partial, out, scale);
  check_launch(name);
  if (splits > 1) {
    colsum_finalize_kernel<>
        <<<grid_for(ctx, batches * n), kThreads, 0, ctx.stream>>>(
            partial, batches, int(splits), n, out, scale);
    check_launch(name);
  }
}

//===--- LayerNorm --------------------------------------------------------===//
// One warp per row. Fast path (n % 4 == 0, n <= 1024, 16-byte aligned): the
// row lives in registers as kChunks float4 per lane, read once. Statistics
// as on the CPU: the mean summed around the row's first element (rows like
// 300 +- 1 keep their digits), then the mean of squared deviations.

constexpr int kLnMaxChunks = 8; // n <= 32 lanes * 4 floats * 8 = 1024
constexpr int kLnRowsPerBlock = kThreads / 32;
constexpr int64_t kLnGradRowsPerWarp = 32; // float partial sums per warp

template <int kChunks>
__global__ void __launch_bounds__(kThreads)
    layer_norm_warp_kernel(const float *x, const float *gamma,
                           const float *beta, float *y, int64_t rows, int n,
                           float eps) {
  const int lane = threadIdx.x & 31;
  const int nv = n >> 2;
  const int64_t nwarps = int64_t(gridDim.x) * kLnRowsPerBlock;
  const float4 *g4 = reinterpret_cast<const float4 *>(gamma);
  const float4 *b4 = reinterpret_cast<const float4 *>(beta);
  for (int64_t r = int64_t(blockIdx.x) * kLnRowsPerBlock + (threadIdx.x >> 5);
       r < rows; r += nwarps) {
    const float4 *xr = reinterpret_cast<const float4 *>(x + r * n);
    float4 v[kChunks];
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int j = c * 32 + lane;
      v[c] = j < nv ? xr[j] : make_float4(0.f, 0.f, 0.f, 0.f);
    }
    const float pivot = __shfl_sync(kFullMask, v[0].x, 0);
    float s = 0.0f;
#pragma unroll
    for (int c = 0; c < kChunks; ++c)
      if (c * 32 + lane < nv)
        s += ((v[c].x - pivot) + (v[c].y - pivot)) +
             ((v[c].z - pivot) + (v[c].w - pivot));
    const float mean = pivot + warp_sum(s) / float(n);
    float q = 0.0f;
#pragma unroll
    for (int c = 0; c < kChunks; ++c)
      if (c * 32 + lane < nv) {
        const float dx = v[c].x - mean, dy = v[c].y - mean, dz = v[c].z - mean,
                    dw = v[c].w - mean;
        q += (dx * dx + dy * dy) + (dz * dz + dw * dw);
      }
    const float rstd = 1.0f / sqrtf(warp_sum(q) / float(n) + eps);
    float4 *yr = reinterpret_cast<float4 *>(y + r * n);
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int j = c * 32 + lane;
      if (j < nv) {
        const float4 g = g4[j], b = b4[j];
        yr[j] = make_float4((v[c].x - mean) * rstd * g.x + b.x,
                            (v[c].y - mean) * rstd * g.y + b.y,
                            (v[c].z - mean) * rstd * g.z + b.z,
                            (v[c].w - mean) * rstd * g.w + b.w);
      }
    }
  }
}

/// Any n, any alignment: the same statistics from three strided passes over
/// the row (the later ones hit L1).
struct RowStats {
  float mean, rstd;
};
__device__ __forceinline__ RowStats row_stats(const float *xr, int64_t n,
                                              float eps, int lane) {
  const float pivot = xr[0];
  float s = 0.0f;
  for (int64_t j = lane; j < n; j += 32)
    s += xr[j] - pivot;
  const float mean = pivot + warp_sum(s) / float(n);
  float q = 0.0f;
  for (int64_t j = lane; j < n; j += 32) {
    const float d = xr[j] - mean;
    q += d * d;
  }
  return {mean, 1.0f / sqrtf(warp_sum(q) / float(n) + eps)};
}

template <int kUnused = 0>
__global__ void __launch_bounds__(kThreads)
    layer_norm_generic_kernel(const float *x, const float *gamma,
                              const float *beta, float *y, int64_t rows,
                              int64_t n, float eps) {
  const int lane = threadIdx.x & 31;
  const int64_t nwarps = int64_t(gridDim.x) * kLnRowsPerBlock;
  for (int64_t r = int64_t(blockIdx.x) * kLnRowsPerBlock + (threadIdx.x >> 5);
       r < rows; r += nwarps) {
    const float *xr = x + r * n;
    const RowStats st = row_stats(xr, n, eps, lane);
    for (int64_t j = lane; j < n; j += 32)
      y[r * n + j] = (xr[j] - st.mean) * st.rstd * gamma[j] + beta[j];
  }
}

/// Backward, fast path: dx per row, and this warp's share of dgamma/dbeta
/// in registers; the block adds its warps in order (shared memory, double)
/// and writes one partial row [2n] to scratch.
template <int kChunks>
__global__ void __launch_bounds__(kThreads)
    layer_norm_grad_warp_kernel(const float *x, const float *gamma,
                                const float *dy, float *dx, int64_t rows, int n,
                                float eps, double *partial) {
  __shared__ double sh[2 * kChunks * 128];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int nv = n >> 2;
  const int64_t nwarps = int64_t(gridDim.x) * kLnRowsPerBlock;
  const float4 *g4 = reinterpret_cast<const float4 *>(gamma);
  float4 ag[kChunks], ab[kChunks];
#pragma unroll
  for (int c = 0; c < kChunks; ++c) {
    ag[c] = make_float4(0.f, 0.f, 0.f, 0.f);
    ab[c] = ag[c];
  }
  const float invN = 1.0f / float(n);
  for (int64_t r = int64_t(blockIdx.x) * kLnRowsPerBlock + warp; r < rows;
       r += nwarps) {
    const float4 *xr = reinterpret_cast<const float4 *>(x + r * n);
    const float4 *dyr = reinterpret_cast<const float4 *>(dy + r * n);
    float4 v[kChunks], d[kChunks];
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int j = c * 32 + lane;
      const bool in = j < nv;
      v[c] = in ? xr[j] : make_float4(0.f, 0.f, 0.f, 0.f);
      d[c] = in ? dyr[j] : make_float4(0.f, 0.f, 0.f, 0.f);
    }
    const float pivot = __shfl_sync(kFullMask, v[0].x, 0);
    float s = 0.0f;
#pragma unroll
    for (int c = 0; c < kChunks; ++c)
      if (c * 32 + lane < nv)
        s += ((v[c].x - pivot) + (v[c].y - pivot)) +
             ((v[c].z - pivot) + (v[c].w - pivot));
    const float mean = pivot + warp_sum(s) / float(n);
    float q = 0.0f;
#pragma unroll
    for (int c = 0; c < kChunks; ++c)
      if (c * 32 + lane < nv) {
        const float ex = v[c].x - mean, ey = v[c].y - mean, ez = v[c].z - mean,
                    ew = v[c].w - mean;
        q += (ex * ex + ey * ey) + (ez * ez + ew * ew);
      }
    const float rstd = 1.0f / sqrtf(warp_sum(q) / float(n) + eps);
    // dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * gamma.
    float sumG = 0.0f, sumGX = 0.0f;
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int j = c * 32 + lane;
      if (j < nv) {
        const float4 gm = g4[j];
        const float hx = (v[c].x - mean) * rstd, hy = (v[c].y - mean) * rstd,
                    hz = (v[c].z - mean) * rstd, hw = (v[c].w - mean) * rstd;
        ag[c].x += d[c].x * hx;
        ag[c].y += d[c].y * hy;
        ag[c].z += d[c].z * hz;
        ag[c].w += d[c].w * hw;
        ab[c] = vadd(ab[c], d[c]);
        // g rounded once (__fmul_rn: never fused into the subtraction
        // below), as on the CPU; see layer_norm_grad_dx_kernel.
        d[c] = make_float4(__fmul_rn(d[c].x, gm.x), __fmul_rn(d[c].y, gm.y),
                           __fmul_rn(d[c].z, gm.z),
                           __fmul_rn(d[c].w, gm.w)); // now g
        sumG += (d[c].x + d[c].y) + (d[c].z + d[c].w);
        sumGX += (d[c].x * hx + d[c].y * hy) + (d[c].z * hz + d[c].w * hw);
      }
    }
    const float meanG = warp_sum(sumG) * invN;
    const float meanGX = warp_sum(sumGX) * invN;
    float4 *dxr = reinterpret_cast<float4 *>(dx + r * n);
#pragma unroll
    for (int c = 0; c < kChunks; ++c) {
      const int j = c * 32 + lane;
      if (j < nv) {
        const float hx = (v[c].x - mean) * rstd, hy = (v[c].y - mean) * rstd,
                    hz = (v[c].z - mean) * rstd, hw = (v[c].w - mean) * rstd;
        dxr[j] = make_float4(rstd * (d[c].x - meanG - hx * meanGX),
                             rstd * (d[c].y - meanG - hy * meanGX),
                             rstd * (d[c].z - meanG - hz * meanGX),
                             rstd * (d[c].w - meanG - hw * meanGX));
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
          double *sg = sh + 4 * j, *sb = sh + n + 4 * j;
          sg[0] += double(ag[c].x);
          sg[1] += double(ag[c].y);
          sg[2] += double(ag[c].z);
          sg[3] += double(ag[c].w);
          sb[0] += double(ab[c].x);
          sb[1] += double(ab[c].y);
          sb[2] += double(ab[c].z);
          sb[3] += double(ab[c].w);
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
template <int kUnused = 0>
__global__ void __launch_bounds__(kThreads)
    layer_norm_grad_dx_kernel(const float *x, const float *gamma,
                              const float *dy, float *dx, int64_t rows,
                              int64_t n, float eps, float2 *stats) {
  const int lane = threadIdx.x & 31;
  const int64_t nwarps = int64_t(gridDim.x) * kLnRowsPerBlock;
  const float invN = 1.0f / float(n);
  for (int64_t r = int64_t(blockIdx.x) * kLnRowsPerBlock + (threadIdx.x >> 5);
       r < rows; r += nwarps) {
    const float *xr = x + r * n, *dyr = dy + r * n;
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
      const float g = __fmul_rn(dyr[j], gamma[j]);
      sumG += g;
      sumGX += g * ((xr[j] - st.mean) * st.rstd);
    }
    const float meanG = warp_sum(sumG) * invN;
    const float meanGX = warp_sum(sumGX) * invN;
    for (int64_t j = lane; j < n; j += 32) {
      const float xhat = (xr[j] - st.mean) * st.rstd;
      const float g = __fmul_rn(dyr[j], gamma[j]);
      dx[r * n + j] = st.rstd * (g - meanG - xhat * meanGX);
    }
    if (lane == 0)
      stats[r] = make_float2(st.mean, st.rstd);
  }
}

/// dgamma/dbeta partials over a split of the rows: block (32 columns x 8
/// row lanes), lanes added in order; one partial row [2n] per split.
template <int kUnused = 0>
__global__ void __launch_bounds__(kThreads)
    layer_norm_grad_cols_kernel(const float *x, const float *dy,
                                const float2 *stats, int64_t rows, int64_t n,
                                int64_t rows_per_split, double *partial) {
  __shared__ double shg[kThreads], shb[kThreads];
  const int cl = threadIdx.x & 31, lane = threadIdx.x >> 5;
  const int64_t col = int64_t(blockIdx.x) * 32 + cl;
  const int64_t r0 = int64_t(blockIdx.y) * rows_per_split;
  const int64_t r1 = r0 + rows_per_split < rows ? r0 + rows_per_split : rows;
  double ag = 0.0, ab = 0.0;
  if (col < n)
    for (int64_t r = r0 + lane; r < r1; r += kThreads / 32) {
      const float2 st = stats[r];
      const float g = dy[r * n + col];
      ag += double(g) * double((x[r * n + col] - st.x) * st.y);
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

template <int kUnused = 0>
__global__ void __launch_bounds__(kThreads)
    softmax_xent_rows_kernel(const float *logits, const int32_t *labels,
                             float *dlogits, int64_t B, int64_t C,
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
    const float *z = logits + r * C;
    // First maximum among the non-NaN logits (ties: lowest index).
    float m = -INFINITY;
    int64_t best = C;
    for (int64_t j = lane; j < C; j += 32) {
      const float zj = z[j];
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
    const float z0 = z[0];
    if (z0 != z0 || best == C) {
      best = 0;
      m = z0;
    }
    float s = 0.0f;
    for (int64_t j = lane; j < C; j += 32)
      s += expf(z[j] - m);
    s = warp_sum(s);
    const int64_t label = labels[r];
    const bool valid = label >= 0 && label < C;
    if (valid && lane == 0) {
      loss += double(logf(s)) - (double(z[label]) - double(m));
      correct += best == label ? 1 : 0;
    }
    if (dlogits) {
      float *g = dlogits + r * C;
      const float invS = 1.0f / s;
      for (int64_t j = lane; j < C; j += 32) {
        float v = 0.0f;
        if (valid) {
          v = expf(z[j] - m) * invS * grad_scale;
          if (j == label)
            v -= grad_scale;
        }
        g[j] = v;
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
/// Sizes in units of kVec floats (Dv = D / kVec).
template <RowOp kOp, int kVec, class I>
__global__ void __launch_bounds__(kThreads)
    row_map_kernel(const float *src, const float *base, const int32_t *idx,
                   float *out, I B, I T, I K, I Dv, const int *global_map) {
  extern __shared__ int smem_map[];
  using Vt = typename VecOf<kVec>::type;
  const int *inv;
  bool dup;
  if (global_map) {
    inv = global_map;
    dup = global_map[T] != 0;
  } else {
    dup = build_keep_map(idx, int(K), int(T), smem_map);
    inv = smem_map;
  }
  const Vt *sv = reinterpret_cast<const Vt *>(src);
  Vt *ov = reinterpret_cast<Vt *>(out);
  const I stride = I(gridDim.x) * kThreads;
  const I first = I(blockIdx.x) * kThreads + threadIdx.x;
  if (kOp == RowOp::ScatterAcc) {
    const I total = B * K * Dv;
    for (I e = first; e < total; e += stride) {
      const I c = e % Dv, row = e / Dv, k = row % K, b = row / K;
      const int t = idx[k];
      if (t < 0 || I(t) >= T)
        continue;
      Vt *dst = ov + (b * T + I(t)) * Dv + c;
      if (!dup) {
        *dst = vadd(*dst, sv[e]);
      } else if (inv[t] == int(k)) { // the last occurrence adds them all
        Vt acc = *dst;
        for (I kk = 0; kk < K; ++kk)
          if (idx[kk] == t)
            acc = vadd(acc, sv[(b * K + kk) * Dv + c]);
        *dst = acc;
      }
    }
  } else {
    const Vt *bv = reinterpret_cast<const Vt *>(base);
    const I total = B * T * Dv;
    for (I e = first; e < total; e += stride) {
      const I c = e % Dv, row = e / Dv, t = row % T, b = row / T;
      const int k = inv[t];
      Vt val = VecOf<kVec>::zero();
      if (kOp == RowOp::Scatter) {
        if (k >= 0)
          val = sv[(b * K + I(k)) * Dv + c];
      } else if (kOp == RowOp::Mask) {
        if (k >= 0)
          val = sv[e];
      } else { // ScatterAdd
        val = bv[e];
        if (k >= 0) {
          if (!dup)
            val = vadd(val, sv[(b * K + I(k)) * Dv + c]);
          else
            for (I kk = 0; kk < K; ++kk)
              if (idx[kk] == int(t))
                val = vadd(val, sv[(b * K + kk) * Dv + c]);
        }
      }
      ov[e] = val;
    }
  }
}

template <RowOp kOp>
inline void launch_row_map(const Context &ctx, const char *name,
                           const float *src, const float *base,
                           const int32_t *idx, float *out, int64_t B, int64_t T,
                           int64_t K, int64_t D) {
  if (B <= 0 || T <= 0 || D <= 0)
    return;
  if (K < 0)
    K = 0;
  if (T >= (int64_t(1) << 31) || K >= (int64_t(1) << 31)) {
    fail_arg(name, "T or K does not fit in 32 bits");
    return;
  }
  const bool vec = D % 4 == 0 && aligned16(src) && aligned16(out) &&
                   (kOp != RowOp::ScatterAdd || aligned16(base));
  const int64_t kv = vec ? 4 : 1, Dv = D / kv;
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
  if (span < kMaxIndex32) {
    using I = uint32_t;
    if (vec)
      row_map_kernel<kOp, 4, I><<<grid, kThreads, smem, ctx.stream>>>(
          src, base, idx, out, I(B), I(T), I(K), I(Dv), global_map);
    else
      row_map_kernel<kOp, 1, I><<<grid, kThreads, smem, ctx.stream>>>(
          src, base, idx, out, I(B), I(T), I(K), I(Dv), global_map);
  } else {
    if (vec)
      row_map_kernel<kOp, 4, int64_t><<<grid, kThreads, smem, ctx.stream>>>(
          src, base, idx, out, B, T, K, Dv, global_map);
    else
      row_map_kernel<kOp, 1, int64_t><<<grid, kThreads, smem, ctx.stream>>>(
          src, base, idx, out, B, T, K, Dv, global_map);
  }
  check_launch(name);
}

/// out[b,k] = x[b, idx[k]] or 0, in units of kVec floats.
template <int kVec, class I>
__global__ void __launch_bounds__(kThreads)
    gather_rows_kernel(const float *x, const int32_t *idx, float *out, I B, I T,
                       I K, I Dv) {
  using Vt = typename VecOf<kVec>::type;
  const Vt *xv = reinterpret_cast<const Vt *>(x);
  Vt *ov = reinterpret_cast<Vt *>(out);
  const I total = B * K * Dv;
  const I stride = I(gridDim.x) * kThreads;
  for (I e = I(blockIdx.x) * kThreads + threadIdx.x; e < total; e += stride) {
    const I c = e % Dv, row = e / Dv, k = row % K, b = row / K;
    const int t = __ldg(idx + k);
    ov[e] =
        t >= 0 && I(t) < T ? xv[(b * T + I(t)) * Dv + c] : VecOf<kVec>::zero();
  }
}

//===--- patchify ---------------------------------------------------------===//

/// One thread per kVec output floats (kVec divides p and W).
template <int kVec, class I>
__global__ void __launch_bounds__(kThreads)
    patchify_kernel(const float *img, float *tokens, I total, I C, I H, I W,
                    I p, I gh, I gw) {
  using Vt = typename VecOf<kVec>::type;
  const I pv = p / kVec;
  Vt *ov = reinterpret_cast<Vt *>(tokens);
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
    ov[e] = *reinterpret_cast<const Vt *>(
        img + ((b * C + c) * H + i * p + py) * W + j * p + px * kVec);
  }
}

//===--- GEMM through cuBLASLt --------------------------------------------===//
// Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: cuBLASLt
// runs m' = N, n' = M with B in the A slot. A plan (descriptors, layouts and
// the heuristic's algorithm) is made once per shape, strides, transposes,
// pointer alignment and math mode, and kept in the Context.

struct GemmKey {
  int64_t m, n, k, lda, ldb, ldc;
  uint32_t flags;  // transA | transB << 1 | tf32 << 2
  uint32_t aligns; // log2 alignment of A | B << 8 | C << 16
  bool operator<(const GemmKey &o) const {
    return std::tie(m, n, k, lda, ldb, ldc, flags, aligns) <
           std::tie(o.m, o.n, o.k, o.lda, o.ldb, o.ldc, o.flags, o.aligns);
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

/// Largest power of two (4..256 bytes) dividing the address.
inline uint32_t alignment_of(const void *p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  uint32_t al = 256;
  while (al > 4 && (a & (al - 1)) != 0)
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
  st = cublasLtMatrixLayoutCreate(&plan.a, CUDA_R_32F,
                                  uint64_t(tb ? key.k : key.n),
                                  uint64_t(tb ? key.n : key.k), key.ldb);
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatrixLayoutCreate(&plan.b, CUDA_R_32F,
                                    uint64_t(ta ? key.m : key.k),
                                    uint64_t(ta ? key.k : key.m), key.lda);
  if (st == CUBLAS_STATUS_SUCCESS)
    st = cublasLtMatrixLayoutCreate(&plan.c, CUDA_R_32F, uint64_t(key.n),
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
template <int kUnused = 0>
__global__ void __launch_bounds__(kThreads)
    gemm_fallback_kernel(bool ta, bool tb, int64_t M, int64_t N, int64_t K,
                         float alpha, const float *A, int64_t lda,
                         const float *B, int64_t ldb, float beta, float *C,
                         int64_t ldc) {
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
                       ? (ta ? A[ak * lda + row] : A[row * lda + ak])
                       : 0.0f;
      Bs[ty][tx] = bk < K && col < N
                       ? (tb ? B[col * ldb + bk] : B[bk * ldb + col])
                       : 0.0f;
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < 16; ++kk)
        acc = fmaf(As[ty][kk], Bs[kk][tx], acc);
      __syncthreads();
    }
    if (row < M && col < N) {
      float *c = C + row * ldc + col;
      *c = beta == 0.0f ? alpha * acc : alpha * acc + beta * *c;
    }
  }
}

/// gemm through gemm_fallback_kernel (M, N > 0, K > 0).
inline void gemm_fallback(const Context &ctx, bool transA, bool transB,
                          int64_t M, int64_t N, int64_t K, float alpha,
                          const float *A, int64_t lda, const float *B,
                          int64_t ldb, float beta, float *C, int64_t ldc) {
  const int64_t col_tiles = ceil_div(N, 16), row_tiles = ceil_div(M, 16);
  if (col_tiles > 0x7fffffff) {
    fail_arg("gemm", "N too large for the fallback kernel");
    return;
  }
  const dim3 grid{unsigned(col_tiles),
                  unsigned(row_tiles < 65535 ? row_tiles : 65535)};
  gemm_fallback_kernel<><<<grid, kThreads, 0, ctx.stream>>>(
      transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  check_launch("gemm");
}

/// C[i,j] = beta * C[i,j] (beta == 0: 0, C not read): the K == 0 or
/// alpha == 0 product.
template <class I>
__global__ void __launch_bounds__(kThreads)
    gemm_scale_kernel(float *C, I M, I N, I ldc, float beta) {
  const I total = M * N, stride = I(gridDim.x) * kThreads;
  for (I e = I(blockIdx.x) * kThreads + threadIdx.x; e < total; e += stride) {
    float *c = C + (e / N) * ldc + e % N;
    *c = beta == 0.0f ? 0.0f : *c * beta;
  }
}

//===--- Attention --------------------------------------------------------===//
// fp32 FlashAttention on CUDA cores, deterministic (no atomics).
//  - Dh <= 64: tiled kernels of 128 threads. Thread t is in row group
//    rg = t / 16 (16 lanes, half a warp: the online-softmax row statistics
//    are 16-lane shuffles) and lane cl = t % 16. Tiles are stored
//    transposed in shared memory where a thread reads several rows at one
//    head dim, so those reads are 16-byte vectors.
//  - 64 < Dh <= 128: one warp per query (or key) row, a warp reduction per
//    score. Correct, slower; no ViT uses it.
// The backward is two passes over the score matrix: a key-stationary kernel
// accumulates dK and dV in registers, a query-stationary one dQ (both
// recompute P from lse), so no partial dQ has to be summed across blocks.

constexpr int kAttnThreads = 128;
constexpr int kAttnTiledMaxDh = 64;
constexpr int kAttnMaxDh = 128;

__device__ __forceinline__ float group16_max(float v) {
#pragma unroll
  for (int o = 8; o > 0; o >>= 1)
    v = fmaxf(v, __shfl_xor_sync(kFullMask, v, o));
  return v;
}
__device__ __forceinline__ float group16_sum(float v) {
#pragma unroll
  for (int o = 8; o > 0; o >>= 1)
    v += __shfl_xor_sync(kFullMask, v, o);
  return v;
}

/// Loads rows [r0, r0 + kRows) of a [T, H*Dh] head slice into shared
/// memory, zero beyond T and Dh: transposed (dst[d * stride + r]) or not
/// (dst[r * stride + d]), optionally scaled.
template <int kRows, int kDh, bool kTransposed>
__device__ __forceinline__ void
attn_load_tile(float *dst, int stride, const float *src, int64_t ld, int r0,
               int T, int Dh, float scale = 1.0f) {
  for (int e = threadIdx.x; e < kRows * kDh; e += kAttnThreads) {
    const int r = e / kDh, d = e % kDh;
    const float val =
        r0 + r < T && d < Dh ? src[int64_t(r0 + r) * ld + d] * scale : 0.0f;
    dst[kTransposed ? d * stride + r : r * stride + d] = val;
  }
}

/// Forward, Dh <= kDh <= 64: a block owns 64 queries of one (batch, head)
/// and streams the keys in tiles of 32. Thread rows rg*8 + i (i < 8), score
/// columns cl*2 + j (j < 2), output dims cl*kD + d.
template <int kDh>
__global__ void __launch_bounds__(kAttnThreads)
    attention_fwd_tiled_kernel(const float *q, const float *k, const float *v,
                               float *o, float *lse, int H, int Tq, int Tk,
                               int Dh, float scale, int qtiles) {
  constexpr int kQ = 64, kK = 32, kD = kDh / 16;
  constexpr int kQS = kQ + 4, kKS = kK + 4; // row strides, 16-byte multiples
  __shared__ __align__(16) float sqT[kDh * kQS]; // [d][query], pre-scaled
  __shared__ __align__(16) float skT[kDh * kKS]; // [d][key]
  __shared__ __align__(16) float sv[kK * kDh];   // [key][d]
  __shared__ __align__(16) float spT[kK * kQS];  // [key][query]
  const int t = threadIdx.x, rg = t >> 4, cl = t & 15;
  const int bh = blockIdx.x / qtiles, i0 = (blockIdx.x % qtiles) * kQ;
  const int b = bh / H, h = bh % H;
  const int64_t ld = int64_t(H) * Dh;
  const float *qb = q + (int64_t(b) * Tq * H + h) * Dh;
  const float *kb = k + (int64_t(b) * Tk * H + h) * Dh;
  const float *vb = v + (int64_t(b) * Tk * H + h) * Dh;
  attn_load_tile<kQ, kDh, true>(sqT, kQS, qb, ld, i0, Tq, Dh, scale);
  float m[8], l[8], acc[8][kD];
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    m[i] = -INFINITY;
    l[i] = 0.0f;
#pragma unroll
    for (int d = 0; d < kD; ++d)
      acc[i][d] = 0.0f;
  }
  for (int j0 = 0; j0 < Tk; j0 += kK) {
    __syncthreads(); // the previous tile's reads are done
    attn_load_tile<kK, kDh, true>(skT, kKS, kb, ld, j0, Tk, Dh);
    attn_load_tile<kK, kDh, false>(sv, kDh, vb, ld, j0, Tk, Dh);
    __syncthreads();
    float s[8][2];
#pragma unroll
    for (int i = 0; i < 8; ++i)
      s[i][0] = s[i][1] = 0.0f;
#pragma unroll 4
    for (int d = 0; d < kDh; ++d) {
      const float4 qa =
          *reinterpret_cast<const float4 *>(sqT + d * kQS + rg * 8);
      const float4 qc =
          *reinterpret_cast<const float4 *>(sqT + d * kQS + rg * 8 + 4);
      const float2 kk =
          *reinterpret_cast<const float2 *>(skT + d * kKS + cl * 2);
      const float qv[8] = {qa.x, qa.y, qa.z, qa.w, qc.x, qc.y, qc.z, qc.w};
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        s[i][0] = fmaf(qv[i], kk.x, s[i][0]);
        s[i][1] = fmaf(qv[i], kk.y, s[i][1]);
      }
    }
    const bool in0 = j0 + cl * 2 < Tk, in1 = j0 + cl * 2 + 1 < Tk;
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const float s0 = in0 ? s[i][0] : -INFINITY;
      const float s1 = in1 ? s[i][1] : -INFINITY;
      // Finite: every tile holds at least one real key.
      const float mNew = fmaxf(m[i], group16_max(fmaxf(s0, s1)));
      const float rescale = expf(m[i] - mNew); // 0 on the first tile
      const float p0 = expf(s0 - mNew), p1 = expf(s1 - mNew);
      l[i] = l[i] * rescale + group16_sum(p0 + p1);
      m[i] = mNew;
#pragma unroll
      for (int d = 0; d < kD; ++d)
        acc[i][d] *= rescale;
      spT[(cl * 2) * kQS + rg * 8 + i] = p0;
      spT[(cl * 2 + 1) * kQS + rg * 8 + i] = p1;
    }
    __syncwarp(); // P rows of a row group are written and read by it alone
#pragma unroll 4
    for (int j = 0; j < kK; ++j) {
      const float4 pa =
          *reinterpret_cast<const float4 *>(spT + j * kQS + rg * 8);
      const float4 pc =
          *reinterpret_cast<const float4 *>(spT + j * kQS + rg * 8 + 4);
      const float pv[8] = {pa.x, pa.y, pa.z, pa.w, pc.x, pc.y, pc.z, pc.w};
      float vv[kD];
      if constexpr (kD == 4) {
        const float4 x =
            *reinterpret_cast<const float4 *>(sv + j * kDh + cl * 4);
        vv[0] = x.x;
        vv[1] = x.y;
        vv[2] = x.z;
        vv[3] = x.w;
      } else {
#pragma unroll
        for (int d = 0; d < kD; ++d)
          vv[d] = sv[j * kDh + cl * kD + d];
      }
#pragma unroll
      for (int i = 0; i < 8; ++i)
#pragma unroll
        for (int d = 0; d < kD; ++d)
          acc[i][d] = fmaf(pv[i], vv[d], acc[i][d]);
    }
  }
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    const int qi = i0 + rg * 8 + i;
    if (qi >= Tq)
      continue;
    const float inv = l[i] > 0.0f ? 1.0f / l[i] : 0.0f;
    float *oi = o + (int64_t(b) * Tq + qi) * ld + int64_t(h) * Dh;
#pragma unroll
    for (int d = 0; d < kD; ++d)
      if (cl * kD + d < Dh)
        oi[cl * kD + d] = acc[i][d] * inv;
    if (lse && cl == 0)
      lse[int64_t(bh) * Tq + qi] = m[i] + logf(l[i]);
  }
}

/// rowdot[b,h,i] = sum_d dout[b,i,h,d] * o[b,i,h,d] (warp per row; rows in
/// memory order (b, i, h)).
template <int kUnused = 0>
__global__ void __launch_bounds__(kThreads)
    attention_rowdot_kernel(const float *o, const float *dout, float *rowdot,
                            int64_t rows, int H, int Tq, int Dh) {
  const int lane = threadIdx.x & 31;
  const int64_t nwarps = int64_t(gridDim.x) * (kThreads / 32);
  for (int64_t r = int64_t(blockIdx.x) * (kThreads / 32) + (threadIdx.x >> 5);
       r < rows; r += nwarps) {
    const float *oi = o + r * Dh, *gi = dout + r * Dh;
    float s = 0.0f;
    for (int d = lane; d < Dh; d += 32)
      s += oi[d] * gi[d];
    s = warp_sum(s);
    if (lane == 0) {
      const int64_t h = r % H, bi = r / H, i = bi % Tq, b = bi / Tq;
      rowdot[(b * H + h) * Tq + i] = s;
    }
  }
}

/// Backward dK, dV, Dh <= kDh <= 64: a block owns 32 keys and streams the
/// queries in tiles of 32. Thread key rows rg*4 + i (i < 4), query columns
/// cl*2 + j (j < 2), head dims cl + 16 d.
template <int kDh>
__global__ void __launch_bounds__(kAttnThreads)
    attention_bwd_dkdv_tiled_kernel(const float *q, const float *k,
                                    const float *v, const float *lse,
                                    const float *rowdot, const float *dout,
                                    float *dk, float *dv, int H, int Tq, int Tk,
                                    int Dh, float scale, int ktiles) {
  constexpr int kN = 32, kD = kDh / 16;
  constexpr int kS = kN + 4, kR = kDh + 1;
  __shared__ __align__(16) float skT[kDh * kS]; // [d][key]
  __shared__ __align__(16) float svT[kDh * kS];
  __shared__ float sq[kN * kR];                // [query][d]
  __shared__ float sg[kN * kR];                // dout
  __shared__ __align__(16) float sP[kN * kS];  // [query][key]
  __shared__ __align__(16) float sdS[kN * kS]; // [query][key]
  __shared__ float slse[kN], srd[kN];
  const int t = threadIdx.x, rg = t >> 4, cl = t & 15;
  const int bh = blockIdx.x / ktiles, j0 = (blockIdx.x % ktiles) * kN;
  const int b = bh / H, h = bh % H;
  const int64_t ld = int64_t(H) * Dh;
  const float *qb = q + (int64_t(b) * Tq * H + h) * Dh;
  const float *gb = dout + (int64_t(b) * Tq * H + h) * Dh;
  attn_load_tile<kN, kDh, true>(skT, kS, k + (int64_t(b) * Tk * H + h) * Dh, ld,
                                j0, Tk, Dh);
  attn_load_tile<kN, kDh, true>(svT, kS, v + (int64_t(b) * Tk * H + h) * Dh, ld,
                                j0, Tk, Dh);
  float adk[4][kD], adv[4][kD];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int d = 0; d < kD; ++d)
      adk[i][d] = adv[i][d] = 0.0f;
  for (int i0 = 0; i0 < Tq; i0 += kN) {
    __syncthreads();
    attn_load_tile<kN, kDh, false>(sq, kR, qb, ld, i0, Tq, Dh);
    attn_load_tile<kN, kDh, false>(sg, kR, gb, ld, i0, Tq, Dh);
    if (t < kN) {
      const bool in = i0 + t < Tq;
      slse[t] = in ? lse[int64_t(bh) * Tq + i0 + t] : INFINITY; // p = 0
      srd[t] = in ? rowdot[int64_t(bh) * Tq + i0 + t] : 0.0f;
    }
    __syncthreads();
    float s[4][2], dp[4][2];
#pragma unroll
    for (int i = 0; i < 4; ++i)
      s[i][0] = s[i][1] = dp[i][0] = dp[i][1] = 0.0f;
#pragma unroll 4
    for (int d = 0; d < kDh; ++d) {
      const float4 kk =
          *reinterpret_cast<const float4 *>(skT + d * kS + rg * 4);
      const float4 vv =
          *reinterpret_cast<const float4 *>(svT + d * kS + rg * 4);
      const float kr[4] = {kk.x, kk.y, kk.z, kk.w};
      const float vr[4] = {vv.x, vv.y, vv.z, vv.w};
      const float q0 = sq[(cl * 2) * kR + d], q1 = sq[(cl * 2 + 1) * kR + d];
      const float g0 = sg[(cl * 2) * kR + d], g1 = sg[(cl * 2 + 1) * kR + d];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        s[i][0] = fmaf(kr[i], q0, s[i][0]);
        s[i][1] = fmaf(kr[i], q1, s[i][1]);
        dp[i][0] = fmaf(vr[i], g0, dp[i][0]);
        dp[i][1] = fmaf(vr[i], g1, dp[i][1]);
      }
    }
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const bool key_in = j0 + rg * 4 + i < Tk;
#pragma unroll
      for (int jj = 0; jj < 2; ++jj) {
        const int qc = cl * 2 + jj;
        const float p = key_in ? expf(scale * s[i][jj] - slse[qc]) : 0.0f;
        sP[qc * kS + rg * 4 + i] = p;
        sdS[qc * kS + rg * 4 + i] = p * (dp[i][jj] - srd[qc]) * scale;
      }
    }
    __syncwarp(); // a row group reads only the key rows it wrote
#pragma unroll 2
    for (int j = 0; j < kN; ++j) {
      const float4 p4 = *reinterpret_cast<const float4 *>(sP + j * kS + rg * 4);
      const float4 d4 =
          *reinterpret_cast<const float4 *>(sdS + j * kS + rg * 4);
      const float pr[4] = {p4.x, p4.y, p4.z, p4.w};
      const float dr[4] = {d4.x, d4.y, d4.z, d4.w};
      float gq[kD], qq[kD];
#pragma unroll
      for (int d = 0; d < kD; ++d) {
        gq[d] = sg[j * kR + cl + 16 * d];
        qq[d] = sq[j * kR + cl + 16 * d];
      }
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int d = 0; d < kD; ++d) {
          adv[i][d] = fmaf(pr[i], gq[d], adv[i][d]);
          adk[i][d] = fmaf(dr[i], qq[d], adk[i][d]);
        }
    }
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int kr = j0 + rg * 4 + i;
    if (kr >= Tk)
      continue;
    const int64_t row = (int64_t(b) * Tk + kr) * ld + int64_t(h) * Dh;
#pragma unroll
    for (int d = 0; d < kD; ++d)
      if (cl + 16 * d < Dh) {
        dk[row + cl + 16 * d] = adk[i][d];
        dv[row + cl + 16 * d] = adv[i][d];
      }
  }
}

/// Backward dQ, Dh <= kDh <= 64: a block owns 32 queries and streams the
/// keys in tiles of 32. Thread query rows rg*4 + i, key columns cl*2 + j,
/// head dims cl + 16 d.
template <int kDh>
__global__ void __launch_bounds__(kAttnThreads)
    attention_bwd_dq_tiled_kernel(const float *q, const float *k,
                                  const float *v, const float *lse,
                                  const float *rowdot, const float *dout,
                                  float *dq, int H, int Tq, int Tk, int Dh,
                                  float scale, int qtiles) {
  constexpr int kN = 32, kD = kDh / 16;
  constexpr int kS = kN + 4, kR = kDh + 1;
  __shared__ __align__(16) float sqT[kDh * kS]; // [d][query]
  __shared__ __align__(16) float sgT[kDh * kS];
  __shared__ float sk[kN * kR]; // [key][d]
  __shared__ float sv[kN * kR];
  __shared__ __align__(16) float sdS[kN * kS]; // [key][query]
  __shared__ float slse[kN], srd[kN];
  const int t = threadIdx.x, rg = t >> 4, cl = t & 15;
  const int bh = blockIdx.x / qtiles, i0 = (blockIdx.x % qtiles) * kN;
  const int b = bh / H, h = bh % H;
  const int64_t ld = int64_t(H) * Dh;
  const float *kb = k + (int64_t(b) * Tk * H + h) * Dh;
  const float *vb = v + (int64_t(b) * Tk * H + h) * Dh;
  attn_load_tile<kN, kDh, true>(sqT, kS, q + (int64_t(b) * Tq * H + h) * Dh, ld,
                                i0, Tq, Dh);
  attn_load_tile<kN, kDh, true>(sgT, kS, dout + (int64_t(b) * Tq * H + h) * Dh,
                                ld, i0, Tq, Dh);
  if (t < kN) {
    const bool in = i0 + t < Tq;
    slse[t] = in ? lse[int64_t(bh) * Tq + i0 + t] : INFINITY;
    srd[t] = in ? rowdot[int64_t(bh) * Tq + i0 + t] : 0.0f;
  }
  float adq[4][kD];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int d = 0; d < kD; ++d)
      adq[i][d] = 0.0f;
  for (int j0 = 0; j0 < Tk; j0 += kN) {
    __syncthreads();
    attn_load_tile<kN, kDh, false>(sk, kR, kb, ld, j0, Tk, Dh);
    attn_load_tile<kN, kDh, false>(sv, kR, vb, ld, j0, Tk, Dh);
    __syncthreads();
    float s[4][2], dp[4][2];
#pragma unroll
    for (int i = 0; i < 4; ++i)
      s[i][0] = s[i][1] = dp[i][0] = dp[i][1] = 0.0f;
#pragma unroll 4
    for (int d = 0; d < kDh; ++d) {
      const float4 qq =
          *reinterpret_cast<const float4 *>(sqT + d * kS + rg * 4);
      const float4 gg =
          *reinterpret_cast<const float4 *>(sgT + d * kS + rg * 4);
      const float qr[4] = {qq.x, qq.y, qq.z, qq.w};
      const float gr[4] = {gg.x, gg.y, gg.z, gg.w};
      const float k0 = sk[(cl * 2) * kR + d], k1 = sk[(cl * 2 + 1) * kR + d];
      const float v0 = sv[(cl * 2) * kR + d], v1 = sv[(cl * 2 + 1) * kR + d];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        s[i][0] = fmaf(qr[i], k0, s[i][0]);
        s[i][1] = fmaf(qr[i], k1, s[i][1]);
        dp[i][0] = fmaf(gr[i], v0, dp[i][0]);
        dp[i][1] = fmaf(gr[i], v1, dp[i][1]);
      }
    }
#pragma unroll
    for (int jj = 0; jj < 2; ++jj) {
      const int kc = cl * 2 + jj;
      const bool key_in = j0 + kc < Tk;
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int qr = rg * 4 + i;
        const float p = key_in ? expf(scale * s[i][jj] - slse[qr]) : 0.0f;
        sdS[kc * kS + qr] = p * (dp[i][jj] - srd[qr]) * scale;
      }
    }
    __syncwarp();
#pragma unroll 2
    for (int j = 0; j < kN; ++j) {
      const float4 d4 =
          *reinterpret_cast<const float4 *>(sdS + j * kS + rg * 4);
      const float dr[4] = {d4.x, d4.y, d4.z, d4.w};
      float kk[kD];
#pragma unroll
      for (int d = 0; d < kD; ++d)
        kk[d] = sk[j * kR + cl + 16 * d];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int d = 0; d < kD; ++d)
          adq[i][d] = fmaf(dr[i], kk[d], adq[i][d]);
    }
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int qi = i0 + rg * 4 + i;
    if (qi >= Tq)
      continue;
    float *out = dq + (int64_t(b) * Tq + qi) * ld + int64_t(h) * Dh;
#pragma unroll
    for (int d = 0; d < kD; ++d)
      if (cl + 16 * d < Dh)
        out[cl + 16 * d] = adq[i][d];
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

template <int kUnused = 0>
__global__ void __launch_bounds__(kThreads)
    attention_fwd_warp_kernel(const float *q, const float *k, const float *v,
                              float *o, float *lse, int64_t BH, int H, int Tq,
                              int Tk, int Dh, float scale) {
  const int lane = threadIdx.x & 31;
  const int64_t ld = int64_t(H) * Dh;
  const int64_t nwarps = int64_t(gridDim.x) * (kThreads / 32);
  for (int64_t r = int64_t(blockIdx.x) * (kThreads / 32) + (threadIdx.x >> 5);
       r < BH * Tq; r += nwarps) {
    const int64_t bh = r / Tq, i = r % Tq, b = bh / H, h = bh % H;
    const float *kb = k + (b * Tk * H + h) * Dh,
                *vb = v + (b * Tk * H + h) * Dh;
    float qr[kAttnLaneDims], acc[kAttnLaneDims] = {};
    attn_load_row(qr, q + (b * Tq + i) * ld + h * Dh, Dh, lane);
    float m = -INFINITY, l = 0.0f;
    for (int j = 0; j < Tk; ++j) {
      const float s = scale * attn_dot(qr, kb + j * ld, Dh, lane);
      const float mNew = fmaxf(m, s);
      const float rescale = expf(m - mNew), p = expf(s - mNew);
      l = l * rescale + p;
      m = mNew;
#pragma unroll
      for (int c = 0; c < kAttnLaneDims; ++c) {
        const int d = lane + 32 * c;
        acc[c] = acc[c] * rescale + (d < Dh ? p * vb[j * ld + d] : 0.0f);
      }
    }
    attn_store_row(acc, o + (b * Tq + i) * ld + h * Dh, Dh, lane,
                   l > 0.0f ? 1.0f / l : 0.0f);
    if (lse && lane == 0)
      lse[bh * Tq + i] = m + logf(l);
  }
}

template <int kUnused = 0>
__global__ void __launch_bounds__(kThreads)
    attention_bwd_dq_warp_kernel(const float *q, const float *k, const float *v,
                                 const float *lse, const float *rowdot,
                                 const float *dout, float *dq, int64_t BH,
                                 int H, int Tq, int Tk, int Dh, float scale) {
  const int lane = threadIdx.x & 31;
  const int64_t ld = int64_t(H) * Dh;
  const int64_t nwarps = int64_t(gridDim.x) * (kThreads / 32);
  for (int64_t r = int64_t(blockIdx.x) * (kThreads / 32) + (threadIdx.x >> 5);
       r < BH * Tq; r += nwarps) {
    const int64_t bh = r / Tq, i = r % Tq, b = bh / H, h = bh % H;
    const float *kb = k + (b * Tk * H + h) * Dh,
                *vb = v + (b * Tk * H + h) * Dh;
    const int64_t row = (b * Tq + i) * ld + h * Dh;
    float qr[kAttnLaneDims], gr[kAttnLaneDims], acc[kAttnLaneDims] = {};
    attn_load_row(qr, q + row, Dh, lane);
    attn_load_row(gr, dout + row, Dh, lane);
    const float li = lse[r], rd = rowdot[r];
    for (int j = 0; j < Tk; ++j) {
      const float p = expf(scale * attn_dot(qr, kb + j * ld, Dh, lane) - li);
      const float ds = p * (attn_dot(gr, vb + j * ld, Dh, lane) - rd) * scale;
#pragma unroll
      for (int c = 0; c < kAttnLaneDims; ++c) {
        const int d = lane + 32 * c;
        if (d < Dh)
          acc[c] = fmaf(ds, kb[j * ld + d], acc[c]);
      }
    }
    attn_store_row(acc, dq + row, Dh, lane);
  }
}

template <int kUnused = 0>
__global__ void __launch_bounds__(kThreads)
    attention_bwd_dkdv_warp_kernel(const float *q, const float *k,
                                   const float *v, const float *lse,
                                   const float *rowdot, const float *dout,
                                   float *dk, float *dv, int64_t BH, int H,
                                   int Tq, int Tk, int Dh, float scale) {
  const int lane = threadIdx.x & 31;
  const int64_t ld = int64_t(H) * Dh;
  const int64_t nwarps = int64_t(gridDim.x) * (kThreads / 32);
  for (int64_t r = int64_t(blockIdx.x) * (kThreads / 32) + (threadIdx.x >> 5);
       r < BH * Tk; r += nwarps) {
    const int64_t bh = r / Tk, j = r % Tk, b = bh / H, h = bh % H;
    const float *qb = q + (b * Tq * H + h) * Dh;
    const float *gb = dout + (b * Tq * H + h) * Dh;
    const int64_t row = (b * Tk + j) * ld + h * Dh;
    float kr[kAttnLaneDims], vr[kAttnLaneDims];
    float ak[kAttnLaneDims] = {}, av[kAttnLaneDims] = {};
    attn_load_row(kr, k + row, Dh, lane);
    attn_load_row(vr, v + row, Dh, lane);
    for (int i = 0; i < Tq; ++i) {
      const float *qi = qb + i * ld, *gi = gb + i * ld;
      const float p =
          expf(scale * attn_dot(kr, qi, Dh, lane) - lse[bh * Tq + i]);
      const float ds =
          p * (attn_dot(vr, gi, Dh, lane) - rowdot[bh * Tq + i]) * scale;
#pragma unroll
      for (int c = 0; c < kAttnLaneDims; ++c) {
        const int d = lane + 32 * c;
        if (d < Dh) {
          av[c] = fmaf(p, gi[d], av[c]);
          ak[c] = fmaf(ds, qi[d], ak[c]);
        }
      }
    }
    attn_store_row(ak, dk + row, Dh, lane);
    attn_store_row(av, dv + row, Dh, lane);
  }
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
  using namespace detail;
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
  GemmKey key{M,
              N,
              K,
              lda,
              ldb,
              ldc,
              uint32_t(transA) | uint32_t(transB) << 1 |
                  uint32_t(ctx.allow_tf32) << 2,
              log2u(alignment_of(A)) | log2u(alignment_of(B)) << 8 |
                  log2u(alignment_of(C)) << 16};
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
    gemm_fallback(ctx, transA, transB, M, N, K, alpha, A, lda, B, ldb, beta, C,
                  ldc);
    return;
  }
  const cublasStatus_t st = cublasLtMatmul(
      ctx.lt, plan.op, &alpha, B, plan.a, A, plan.b, &beta, C, plan.c, C,
      plan.c, &plan.algo, plan.workspace ? ctx.workspace : nullptr,
      plan.workspace, ctx.stream);
  check_cublas(st, "gemm", "cublasLtMatmul");
}

inline void patchify(const Context &ctx, const float *img, float *tokens,
                     int64_t B, int64_t C, int64_t H, int64_t W, int64_t p) {
  using namespace detail;
  if (B <= 0 || C <= 0 || p <= 0 || H < p || W < p)
    return;
  if (H % p != 0 || W % p != 0) {
    fail_arg("patchify", "H and W must be multiples of p");
    return;
  }
  const int64_t gh = H / p, gw = W / p, total = B * gh * gw * C * p * p;
  const bool vec =
      p % 4 == 0 && W % 4 == 0 && aligned16(img) && aligned16(tokens);
  const int64_t tv = vec ? total / 4 : total;
  const unsigned grid = grid_for(ctx, tv);
  if (total < kMaxIndex32) {
    using I = uint32_t;
    if (vec)
      patchify_kernel<4, I><<<grid, kThreads, 0, ctx.stream>>>(
          img, tokens, I(tv), I(C), I(H), I(W), I(p), I(gh), I(gw));
    else
      patchify_kernel<1, I><<<grid, kThreads, 0, ctx.stream>>>(
          img, tokens, I(tv), I(C), I(H), I(W), I(p), I(gh), I(gw));
  } else {
    if (vec)
      patchify_kernel<4, int64_t><<<grid, kThreads, 0, ctx.stream>>>(
          img, tokens, tv, C, H, W, p, gh, gw);
    else
      patchify_kernel<1, int64_t><<<grid, kThreads, 0, ctx.stream>>>(
          img, tokens, tv, C, H, W, p, gh, gw);
  }
  check_launch("patchify");
}

inline void add(const Context &ctx, const float *a, const float *b, float *out,
                int64_t n) {
  detail::launch_pointwise<2>(ctx, "add", a, b, out, n, detail::AddOp{});
}

inline void add_acc(const Context &ctx, float *acc, const float *b, int64_t n) {
  detail::launch_pointwise<2>(ctx, "add_acc", acc, b, acc, n, detail::AddOp{});
}

inline void bias_add(const Context &ctx, const float *x, const float *bias,
                     float *y, int64_t rows, int64_t n) {
  detail::launch_broadcast_add(ctx, "bias_add", x, bias, y, rows, n);
}

inline void bias_grad(const Context &ctx, const float *dy, float *dbias,
                      int64_t rows, int64_t n) {
  detail::column_sum(ctx, "bias_grad", dy, 1, rows, n, dbias, 1.0);
}

inline void pos_add(const Context &ctx, const float *x, const float *pos,
                    float *y, int64_t B, int64_t T, int64_t D) {
  detail::launch_broadcast_add(ctx, "pos_add", x, pos, y, B, T * D);
}

inline void pos_grad(const Context &ctx, const float *dy, float *dpos,
                     int64_t B, int64_t T, int64_t D) {
  detail::column_sum(ctx, "pos_grad", dy, 1, B, T * D, dpos, 1.0);
}

inline void gelu(const Context &ctx, const float *x, float *y, int64_t n) {
  detail::launch_pointwise<1>(ctx, "gelu", x, nullptr, y, n, detail::GeluOp{});
}

inline void gelu_grad(const Context &ctx, const float *x, const float *dy,
                      float *dx, int64_t n) {
  detail::launch_pointwise<2>(ctx, "gelu_grad", x, dy, dx, n,
                              detail::GeluGradOp{});
}

inline void relu(const Context &ctx, const float *x, float *y, int64_t n) {
  detail::launch_pointwise<1>(ctx, "relu", x, nullptr, y, n, detail::ReluOp{});
}

inline void relu_grad(const Context &ctx, const float *x, const float *dy,
                      float *dx, int64_t n) {
  detail::launch_pointwise<2>(ctx, "relu_grad", x, dy, dx, n,
                              detail::ReluGradOp{});
}

inline void fill(const Context &ctx, float *x, float value, int64_t n) {
  detail::launch_pointwise<0>(ctx, "fill", nullptr, nullptr, x, n,
                              detail::FillOp{value});
}

inline void copy(const Context &ctx, const float *x, float *y, int64_t n) {
  if (x == y || n <= 0)
    return;
  const cudaError_t e = cudaMemcpyAsync(y, x, size_t(n) * sizeof(float),
                                        cudaMemcpyDeviceToDevice, ctx.stream);
  if (e != cudaSuccess)
    detail::fail(int(e), "copy", cudaGetErrorString(e));
}

inline void layer_norm(const Context &ctx, const float *x, const float *gamma,
                       const float *beta, float *y, int64_t rows, int64_t n,
                       float eps) {
  using namespace detail;
  if (rows <= 0 || n <= 0)
    return;
  const int64_t chunks = ceil_div(n, 128);
  const bool fast = n % 4 == 0 && chunks <= kLnMaxChunks && aligned16(x) &&
                    aligned16(gamma) && aligned16(beta) && aligned16(y);
  const unsigned grid = grid_for(ctx, rows * 32);
  if (fast) {
    const int ni = int(n);
    switch (chunks) {
#define SBP_LN_CASE(C)                                                         \
  case C:                                                                      \
    layer_norm_warp_kernel<C>                                                  \
        <<<grid, kThreads, 0, ctx.stream>>>(x, gamma, beta, y, rows, ni, eps); \
    break;
      SBP_LN_CASE(1)
      SBP_LN_CASE(2)
      SBP_LN_CASE(3)
      SBP_LN_CASE(4)
      SBP_LN_CASE(5)
      SBP_LN_CASE(6)
      SBP_LN_CASE(7)
      SBP_LN_CASE(8)
#undef SBP_LN_CASE
    }
  } else {
    layer_norm_generic_kernel<>
        <<<grid, kThreads, 0, ctx.stream>>>(x, gamma, beta, y, rows, n, eps);
  }
  check_launch("layer_norm");
}

inline void layer_norm_grad(const Context &ctx, const float *x,
                            const float *gamma, const float *dy, float *dx,
                            float *dgamma, float *dbeta, int64_t rows,
                            int64_t n, float eps) {
  using namespace detail;
  if (n <= 0)
    return;
  if (rows <= 0) { // empty sums
    fill(ctx, dgamma, 0.0f, n);
    fill(ctx, dbeta, 0.0f, n);
    return;
  }
  const int64_t chunks = ceil_div(n, 128);
  const bool fast = n % 4 == 0 && chunks <= kLnMaxChunks && aligned16(x) &&
                    aligned16(gamma) && aligned16(dy) && aligned16(dx);
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
    switch (chunks) {
#define SBP_LNG_CASE(C)                                                        \
  case C:                                                                      \
    layer_norm_grad_warp_kernel<C><<<grid, kThreads, 0, ctx.stream>>>(         \
        x, gamma, dy, dx, rows, ni, eps, partial);                             \
    break;
      SBP_LNG_CASE(1)
      SBP_LNG_CASE(2)
      SBP_LNG_CASE(3)
      SBP_LNG_CASE(4)
      SBP_LNG_CASE(5)
      SBP_LNG_CASE(6)
      SBP_LNG_CASE(7)
      SBP_LNG_CASE(8)
#undef SBP_LNG_CASE
    }
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
  layer_norm_grad_dx_kernel<>
      <<<grid_for(ctx, rows * 32), kThreads, 0, ctx.stream>>>(
          x, gamma, dy, dx, rows, n, eps, stats);
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
  layer_norm_grad_cols_kernel<>
      <<<dim3(unsigned(tiles), unsigned(splits)), kThreads, 0, ctx.stream>>>(
          x, dy, stats, rows, n, per_split, partial);
  check_launch("layer_norm_grad");
  layer_norm_grad_finalize_kernel<>
      <<<grid_for(ctx, 2 * n), kThreads, 0, ctx.stream>>>(partial, int(splits),
                                                          n, dgamma, dbeta);
  check_launch("layer_norm_grad");
}

inline void mean_tokens(const Context &ctx, const float *x, float *y, int64_t B,
                        int64_t T, int64_t D) {
  detail::column_sum(ctx, "mean_tokens", x, B, T, D, y,
                     T > 0 ? 1.0 / double(T) : 0.0);
}

inline void mean_tokens_grad(const Context &ctx, const float *dy, float *dx,
                             int64_t B, int64_t T, int64_t D) {
  using namespace detail;
  if (B <= 0 || T <= 0 || D <= 0)
    return;
  const int64_t total = B * T * D;
  const bool vec = D % 4 == 0 && aligned16(dy) && aligned16(dx);
  const int64_t kv = vec ? 4 : 1, tv = total / kv, TDv = T * D / kv,
                Dv = D / kv;
  const unsigned grid = grid_for(ctx, tv);
  const float t = float(T);
  if (total < kMaxIndex32) {
    using I = uint32_t;
    if (vec)
      mean_tokens_grad_kernel<4, I>
          <<<grid, kThreads, 0, ctx.stream>>>(dy, dx, I(tv), I(TDv), I(Dv), t);
    else
      mean_tokens_grad_kernel<1, I>
          <<<grid, kThreads, 0, ctx.stream>>>(dy, dx, I(tv), I(TDv), I(Dv), t);
  } else {
    if (vec)
      mean_tokens_grad_kernel<4, int64_t>
          <<<grid, kThreads, 0, ctx.stream>>>(dy, dx, tv, TDv, Dv, t);
    else
      mean_tokens_grad_kernel<1, int64_t>
          <<<grid, kThreads, 0, ctx.stream>>>(dy, dx, tv, TDv, Dv, t);
  }
  check_launch("mean_tokens_grad");
}

inline void softmax_xent(const Context &ctx, const float *logits,
                         const int32_t *labels, float *loss, float *dlogits,
                         int64_t B, int64_t C, float dloss_scale,
                         int64_t *correct) {
  using namespace detail;
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
  softmax_xent_rows_kernel<><<<unsigned(blocks), kThreads, 0, ctx.stream>>>(
      logits, labels, dlogits, B, C, grad_scale, block_loss, block_correct);
  check_launch("softmax_xent");
  softmax_xent_finalize_kernel<><<<1, kThreads, 0, ctx.stream>>>(
      block_loss, block_correct, int(blocks), B, loss, correct);
  check_launch("softmax_xent");
}

inline void gather_rows(const Context &ctx, const float *x, const int32_t *idx,
                        float *out, int64_t B, int64_t T, int64_t K,
                        int64_t D) {
  using namespace detail;
  if (B <= 0 || K <= 0 || D <= 0)
    return;
  if (T < 0)
    T = 0;
  const bool vec = D % 4 == 0 && aligned16(x) && aligned16(out);
  const int64_t kv = vec ? 4 : 1, Dv = D / kv;
  const int64_t total = B * K * Dv;
  const unsigned grid = grid_for(ctx, total);
  if (B * (T > K ? T : K) * Dv < kMaxIndex32) {
    using I = uint32_t;
    if (vec)
      gather_rows_kernel<4, I><<<grid, kThreads, 0, ctx.stream>>>(
          x, idx, out, I(B), I(T), I(K), I(Dv));
    else
      gather_rows_kernel<1, I><<<grid, kThreads, 0, ctx.stream>>>(
          x, idx, out, I(B), I(T), I(K), I(Dv));
  } else {
    if (vec)
      gather_rows_kernel<4, int64_t>
          <<<grid, kThreads, 0, ctx.stream>>>(x, idx, out, B, T, K, Dv);
    else
      gather_rows_kernel<1, int64_t>
          <<<grid, kThreads, 0, ctx.stream>>>(x, idx, out, B, T, K, Dv);
  }
  check_launch("gather_rows");
}

inline void scatter_rows_acc(const Context &ctx, const float *xk,
                             const int32_t *idx, float *out, int64_t B,
                             int64_t T, int64_t K, int64_t D) {
  detail::launch_row_map<detail::RowOp::ScatterAcc>(
      ctx, "scatter_rows_acc", xk, nullptr, idx, out, B, T, K, D);
}

inline void scatter_rows(const Context &ctx, const float *xk,
                         const int32_t *idx, float *out, int64_t B, int64_t T,
                         int64_t K, int64_t D) {
  detail::launch_row_map<detail::RowOp::Scatter>(ctx, "scatter_rows", xk,
                                                 nullptr, idx, out, B, T, K, D);
}

inline void mask_rows(const Context &ctx, const float *x, const int32_t *idx,
                      float *out, int64_t B, int64_t T, int64_t K, int64_t D) {
  detail::launch_row_map<detail::RowOp::Mask>(ctx, "mask_rows", x, nullptr, idx,
                                              out, B, T, K, D);
}

inline void scatter_add_rows(const Context &ctx, const float *base,
                             const float *xk, const int32_t *idx, float *out,
                             int64_t B, int64_t T, int64_t K, int64_t D) {
  detail::launch_row_map<detail::RowOp::ScatterAdd>(ctx, "scatter_add_rows", xk,
                                                    base, idx, out, B, T, K, D);
}

inline void attention_fwd(const Context &ctx, const float *q, const float *k,
                          const float *v, float *o, float *lse, int64_t B,
                          int64_t H, int64_t Tq, int64_t Tk, int64_t Dh,
                          float scale) {
  using namespace detail;
  if (B <= 0 || H <= 0 || Tq <= 0 || Dh <= 0)
    return;
  if (Dh > kAttnMaxDh) {
    fail_arg("attention_fwd", "head dim above 128");
    return;
  }
  if (Tk <= 0) { // no key: o = 0, lse = -inf, as on the CPU
    fill(ctx, o, 0.0f, B * Tq * H * Dh);
    if (lse)
      fill(ctx, lse, -INFINITY, B * H * Tq);
    return;
  }
  const int64_t BH = B * H;
  const int h = int(H), tq = int(Tq), tk = int(Tk), dh = int(Dh);
  if (Dh <= kAttnTiledMaxDh) {
    const int64_t qtiles = ceil_div(Tq, 64);
    if (BH * qtiles > 0x7fffffff || Tq > 0x7fffffff || Tk > 0x7fffffff) {
      fail_arg("attention_fwd", "too many (batch, head, query tile)s");
      return;
    }
    const unsigned grid = unsigned(BH * qtiles);
    if (Dh <= 32)
      attention_fwd_tiled_kernel<32><<<grid, kAttnThreads, 0, ctx.stream>>>(
          q, k, v, o, lse, h, tq, tk, dh, scale, int(qtiles));
    else
      attention_fwd_tiled_kernel<64><<<grid, kAttnThreads, 0, ctx.stream>>>(
          q, k, v, o, lse, h, tq, tk, dh, scale, int(qtiles));
  } else {
    attention_fwd_warp_kernel<>
        <<<grid_for(ctx, BH * Tq * 32), kThreads, 0, ctx.stream>>>(
            q, k, v, o, lse, BH, h, tq, tk, dh, scale);
  }
  check_launch("attention_fwd");
}

inline void attention_bwd(const Context &ctx, const float *q, const float *k,
                          const float *v, const float *o, const float *lse,
                          const float *dout, float *dq, float *dk, float *dv,
                          int64_t B, int64_t H, int64_t Tq, int64_t Tk,
                          int64_t Dh, float scale) {
  using namespace detail;
  if (B <= 0 || H <= 0 || Dh <= 0)
    return;
  if (Dh > kAttnMaxDh) {
    fail_arg("attention_bwd", "head dim above 128");
    return;
  }
  const int64_t ld = H * Dh;
  if (Tq <= 0 || Tk <= 0) { // no score: every gradient is zero
    if (Tk > 0) {
      fill(ctx, dk, 0.0f, B * Tk * ld);
      fill(ctx, dv, 0.0f, B * Tk * ld);
    }
    if (Tq > 0)
      fill(ctx, dq, 0.0f, B * Tq * ld);
    return;
  }
  const int64_t BH = B * H;
  float *rowdot = ScratchCursor(ctx).take<float>(size_t(BH * Tq));
  if (!rowdot) {
    fail_arg("attention_bwd", "scratch too small (needs 4*B*H*Tq bytes)");
    return;
  }
  attention_rowdot_kernel<>
      <<<grid_for(ctx, BH * Tq * 32), kThreads, 0, ctx.stream>>>(
          o, dout, rowdot, BH * Tq, int(H), int(Tq), int(Dh));
  check_launch("attention_bwd");
  const int h = int(H), tq = int(Tq), tk = int(Tk), dh = int(Dh);
  if (Dh <= kAttnTiledMaxDh) {
    const int64_t ktiles = ceil_div(Tk, 32), qtiles = ceil_div(Tq, 32);
    if (BH * ktiles > 0x7fffffff || BH * qtiles > 0x7fffffff ||
        Tq > 0x7fffffff || Tk > 0x7fffffff) {
      fail_arg("attention_bwd", "too many (batch, head, tile)s");
      return;
    }
    const unsigned gk = unsigned(BH * ktiles), gq = unsigned(BH * qtiles);
    if (Dh <= 32) {
      attention_bwd_dkdv_tiled_kernel<32><<<gk, kAttnThreads, 0, ctx.stream>>>(
          q, k, v, lse, rowdot, dout, dk, dv, h, tq, tk, dh, scale,
          int(ktiles));
      check_launch("attention_bwd");
      attention_bwd_dq_tiled_kernel<32><<<gq, kAttnThreads, 0, ctx.stream>>>(
          q, k, v, lse, rowdot, dout, dq, h, tq, tk, dh, scale, int(qtiles));
    } else {
      attention_bwd_dkdv_tiled_kernel<64><<<gk, kAttnThreads, 0, ctx.stream>>>(
          q, k, v, lse, rowdot, dout, dk, dv, h, tq, tk, dh, scale,
          int(ktiles));
      check_launch("attention_bwd");
      attention_bwd_dq_tiled_kernel<64><<<gq, kAttnThreads, 0, ctx.stream>>>(
          q, k, v, lse, rowdot, dout, dq, h, tq, tk, dh, scale, int(qtiles));
    }
  } else {
    attention_bwd_dkdv_warp_kernel<>
        <<<grid_for(ctx, BH * Tk * 32), kThreads, 0, ctx.stream>>>(
            q, k, v, lse, rowdot, dout, dk, dv, BH, h, tq, tk, dh, scale);
    check_launch("attention_bwd");
    attention_bwd_dq_warp_kernel<>
        <<<grid_for(ctx, BH * Tq * 32), kThreads, 0, ctx.stream>>>(
            q, k, v, lse, rowdot, dout, dq, BH, h, tq, tk, dh, scale);
  }
  check_launch("attention_bwd");
}

} // namespace cuda
} // namespace sbp

#endif // SBP_CUDA_KERNELS_CUH
