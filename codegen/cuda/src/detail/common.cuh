//===- detail/common.cuh - Status, launch helpers, device helpers, the float/bf16 element types -*- CUDA -*-===//
//
// Internal to the CUDA kernel library (libsbp_cuda_kernels.a): kernel
// bodies and launch templates, included by the translation units in
// codegen/cuda/src, never by trainers (they include <sbp/cuda_kernels.h>).
//
//===----------------------------------------------------------------------===//
#ifndef SBP_CUDA_DETAIL_COMMON_CUH
#define SBP_CUDA_DETAIL_COMMON_CUH

#include "sbp/cuda_kernels.h"

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

/// The vector width (elements) of a row-wise x -> y kernel over rows of n
/// elements, for with_width: 8 (16 bytes of bf16) when kWide, else 4, where
/// n and both pointers allow it; 1 otherwise.
template <bool kWide, class TX, class TY>
inline int row_vector_width(int64_t n, const TX *x, const TY *y) {
  if (kWide && n % 8 == 0 && vec_aligned(x, 8) && vec_aligned(y, 8))
    return 8;
  if (n % 4 == 0 && vec_aligned(x, 4) && vec_aligned(y, 4))
    return 4;
  return 1;
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


} // namespace detail
} // namespace cuda
} // namespace sbp

#endif // SBP_CUDA_DETAIL_COMMON_CUH
