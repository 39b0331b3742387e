//===- kernel_bench.cuh - timing helpers of the kernel micro-benchmarks -*- CUDA -*-===//
//
// Shared by conv_bench.cu and attn_bench.cu: a CUDA error check, the
// library's error record, the median of cudaEvent-timed calls, random device
// buffers and the largest difference of two bf16 buffers.
//
//===----------------------------------------------------------------------===//
#ifndef SBP_BENCH_KERNEL_BENCH_CUH
#define SBP_BENCH_KERNEL_BENCH_CUH

#include "detail/common.cuh" // detail::status(), the library's error record
#include "sbp/cuda_kernels.h"

#include <cuda_bf16.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <vector>

namespace kernel_bench {

using bf16 = __nv_bfloat16;

#define CHECK(call)                                                            \
  do {                                                                         \
    const cudaError_t e_ = (call);                                             \
    if (e_ != cudaSuccess) {                                                   \
      std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__,                  \
                   cudaGetErrorString(e_));                                    \
      std::exit(1);                                                            \
    }                                                                          \
  } while (0)

inline void checkLibrary() {
  const auto &st = sbp::cuda::detail::status();
  if (st.code != 0) {
    std::fprintf(stderr, "library error: %s\n", st.message);
    std::exit(1);
  }
}

/// Median microseconds of `iters` timed calls after `warmup` untimed ones.
inline float timeUs(cudaStream_t s, int warmup, int iters,
             const std::function<void()> &f) {
  for (int i = 0; i < warmup; ++i)
    f();
  CHECK(cudaStreamSynchronize(s));
  checkLibrary();
  std::vector<cudaEvent_t> ev(size_t(iters) + 1);
  for (auto &e : ev)
    CHECK(cudaEventCreate(&e));
  CHECK(cudaEventRecord(ev[0], s));
  for (int i = 0; i < iters; ++i) {
    f();
    CHECK(cudaEventRecord(ev[size_t(i) + 1], s));
  }
  CHECK(cudaStreamSynchronize(s));
  checkLibrary();
  std::vector<float> ms(static_cast<size_t>(iters));
  for (int i = 0; i < iters; ++i)
    CHECK(cudaEventElapsedTime(&ms[size_t(i)], ev[size_t(i)], ev[size_t(i) + 1]));
  for (auto &e : ev)
    cudaEventDestroy(e);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2] * 1000.0f;
}

template <class T> T *devRandom(size_t n, unsigned seed, float scale) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<T> h(n);
  for (auto &v : h)
    v = T(dist(gen));
  T *d = nullptr;
  CHECK(cudaMalloc(&d, n * sizeof(T)));
  CHECK(cudaMemcpy(d, h.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}

/// Largest |a - b| over n bf16 values on the device.
inline float maxDiff(const bf16 *a, const bf16 *b, size_t n) {
  std::vector<bf16> ha(n), hb(n);
  CHECK(cudaMemcpy(ha.data(), a, n * sizeof(bf16), cudaMemcpyDeviceToHost));
  CHECK(cudaMemcpy(hb.data(), b, n * sizeof(bf16), cudaMemcpyDeviceToHost));
  float m = 0.0f;
  for (size_t i = 0; i < n; ++i)
    m = std::max(m, std::abs(float(ha[i]) - float(hb[i])));
  return m;
}

/// A library context on device 0 with its own stream and the default
/// scratch (what context_init gives; no cuBLASLt handle: no GEMMs here).
inline sbp::cuda::Context benchContext(cudaDeviceProp &prop) {
  CHECK(cudaGetDeviceProperties(&prop, 0));
  sbp::cuda::Context ctx;
  CHECK(cudaStreamCreateWithFlags(&ctx.stream, cudaStreamNonBlocking));
  ctx.scratch_bytes = sbp::cuda::kDefaultScratchBytes;
  CHECK(cudaMalloc(&ctx.scratch, ctx.scratch_bytes));
  ctx.sm_count = prop.multiProcessorCount;
  ctx.device = 0;
  return ctx;
}

} // namespace kernel_bench

#endif // SBP_BENCH_KERNEL_BENCH_CUH
