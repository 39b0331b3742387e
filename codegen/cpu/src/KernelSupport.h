//===- KernelSupport.h - Shared helpers of the CPU kernels ------*- C++ -*-===//
//
// Private to the kernel library: thresholds for going parallel, the
// thread-local workspace, the static partition of the row reductions and the
// double-precision column sum they share.
//
//===----------------------------------------------------------------------===//
#ifndef SBP_CPU_KERNEL_SUPPORT_H
#define SBP_CPU_KERNEL_SUPPORT_H

#include <cstddef>
#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace sbp {
namespace cpu {
namespace detail {

/// Below this many floats touched, a parallel region costs more than it
/// saves (a fork/join is a few microseconds, ~10^4 simple flops).
constexpr int64_t kParallelMinElems = int64_t(1) << 15;

/// Teams never grow beyond this; it bounds the stack array of per-thread
/// partial-sum pointers in the row reductions.
constexpr int kMaxThreads = 256;

inline int maxThreads() {
#ifdef _OPENMP
  int n = omp_get_max_threads();
  return n < 1 ? 1 : (n > kMaxThreads ? kMaxThreads : n);
#else
  return 1;
#endif
}
inline int threadNum() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}
inline int numThreads() {
#ifdef _OPENMP
  return omp_get_num_threads();
#else
  return 1;
#endif
}

/// A grow-only buffer owned by the calling thread, reused across calls: the
/// only heap memory the kernels touch, allocated once per thread and size.
/// (A bare new[] rather than std::vector: no std template instantiation
/// leaks into the dynamic symbols of the trainer .so.)
template <typename T> struct ThreadWorkspace {
  T *data = nullptr;
  size_t size = 0;
  ~ThreadWorkspace() { delete[] data; }
};
template <typename T> T *threadWorkspace(size_t count) {
  thread_local ThreadWorkspace<T> ws;
  if (ws.size < count) {
    delete[] ws.data;
    ws.data = new T[count];
    ws.size = count;
  }
  return ws.data;
}

/// Half-open range [begin, end) of `total` items for part `part` of `parts`
/// (balanced static partition, the same every call for a given team size).
inline void partition(int64_t total, int parts, int part, int64_t &begin,
                      int64_t &end) {
  int64_t base = total / parts, rem = total % parts;
  begin = part * base + (part < rem ? part : rem);
  end = begin + base + (part < rem ? 1 : 0);
}

/// Columns per chunk of sumColumnChunk (its double accumulator lives on the
/// stack).
constexpr int64_t kColumnChunk = 256;

/// out[j] = scale * sum_{r < rows} x[r * ld + j] for j in [c0, c1),
/// c1 - c0 <= kColumnChunk, summed in double in row order and rounded once.
inline void sumColumnChunk(const float *x, int64_t rows, int64_t ld, int64_t c0,
                           int64_t c1, double scale, float *out) {
  double acc[kColumnChunk];
  const int64_t w = c1 - c0;
  for (int64_t j = 0; j < w; ++j)
    acc[j] = 0.0;
  for (int64_t r = 0; r < rows; ++r) {
    const float *xr = x + r * ld + c0;
#pragma omp simd
    for (int64_t j = 0; j < w; ++j)
      acc[j] += double(xr[j]);
  }
  for (int64_t j = 0; j < w; ++j)
    out[c0 + j] = float(acc[j] * scale);
}

} // namespace detail
} // namespace cpu
} // namespace sbp

#endif // SBP_CPU_KERNEL_SUPPORT_H
