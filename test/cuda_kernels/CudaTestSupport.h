//===- CudaTestSupport.h - Helpers of the CUDA kernel tests -----*- CUDA
//-*-===//
//
// Device buffers, random inputs, comparisons against the CPU kernel library
// (the reference: tested itself against double precision and finite
// differences in test/cpu_kernels), and a fixture that owns a Context and
// skips every test when the machine has no CUDA device.
//
//===----------------------------------------------------------------------===//
#ifndef SBP_TEST_CUDA_KERNELS_CUDA_TEST_SUPPORT_H
#define SBP_TEST_CUDA_KERNELS_CUDA_TEST_SUPPORT_H

#include "sbp/cpu_kernels.h"
#include "sbp/cuda_kernels.h"
#include "detail/gemm.cuh" // detail::gemm_fallback, the reference GEMM

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

namespace sbp::cuda::test {

using Vec = std::vector<float>;
using IVec = std::vector<int32_t>;

/// Printed (and matched by ctest's SKIP_REGULAR_EXPRESSION) when there is
/// nothing to run on.
constexpr const char *kNoDeviceMessage =
    "SBP_CUDA_TESTS_SKIPPED: no CUDA device";

/// True when the CUDA runtime sees at least one device (checked once).
inline bool haveDevice() {
  static const bool have = [] {
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    return count > 0;
  }();
  return have;
}

/// Uniform values in [lo, hi).
inline Vec randomVec(size_t n, uint32_t seed, float lo = -2.0f,
                     float hi = 2.0f) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<float> dist(lo, hi);
  Vec v(n);
  for (float &x : v)
    x = dist(gen);
  return v;
}

/// A device array of T; `offset` elements of slack in front shift the data
/// pointer off 16-byte alignment (to reach the kernels' scalar paths).
template <class T> class DeviceArray {
public:
  explicit DeviceArray(size_t n, size_t offset = 0) : n_(n), offset_(offset) {
    EXPECT_EQ(cudaMalloc(&base_, (n + offset + 1) * sizeof(T)), cudaSuccess);
  }
  DeviceArray(const std::vector<T> &host, size_t offset = 0)
      : DeviceArray(host.size(), offset) {
    upload(host);
  }
  ~DeviceArray() {
    if (base_)
      cudaFree(base_);
  }
  DeviceArray(const DeviceArray &) = delete;
  DeviceArray &operator=(const DeviceArray &) = delete;

  T *get() const { return base_ + offset_; }
  operator T *() const { return get(); }
  size_t size() const { return n_; }

  // The tests' Context runs on a cudaStreamNonBlocking stream, which does
  // not synchronise with the legacy default stream that cudaMemcpy uses. A
  // pageable host-to-device cudaMemcpy may return once the data is staged,
  // before the DMA into the device buffer is done, so a kernel launched
  // right after on ctx.stream could read (and read-modify-write) a partly
  // uploaded buffer: scatter_rows_acc on a freshly uploaded 512 KiB output
  // lost the tail of `base` on an H100. Both directions therefore wait for
  // the whole device: an upload is complete before it returns, and a
  // download never races kernels still running on ctx.stream.
  void upload(const std::vector<T> &host) {
    ASSERT_EQ(host.size(), n_);
    ASSERT_EQ(
        cudaMemcpy(get(), host.data(), n_ * sizeof(T), cudaMemcpyHostToDevice),
        cudaSuccess);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  }
  std::vector<T> download() const {
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    std::vector<T> host(n_);
    EXPECT_EQ(
        cudaMemcpy(host.data(), get(), n_ * sizeof(T), cudaMemcpyDeviceToHost),
        cudaSuccess);
    return host;
  }

private:
  T *base_ = nullptr;
  size_t n_, offset_;
};
using DFloat = DeviceArray<float>;
using DInt = DeviceArray<int32_t>;

/// |got - want| <= rtol * max(|want|, floor) elementwise, floor = 1% of the
/// largest |want| (entries far below the tensor's scale are compared at
/// that scale: a relative error, without the cancellation noise of entries
/// near zero). An all-zero reference must be matched exactly; NaNs and
/// infinities must match.
inline ::testing::AssertionResult relClose(const Vec &got, const Vec &want,
                                           double rtol) {
  if (got.size() != want.size())
    return ::testing::AssertionFailure()
           << "size " << got.size() << " vs " << want.size();
  double scale = 0.0;
  for (float w : want)
    if (std::isfinite(w))
      scale = std::max(scale, std::fabs(double(w)));
  const double floor = 1e-2 * scale;
  double worst = 0.0;
  size_t at = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(want[i]) || std::isnan(got[i])) {
      if (std::isnan(want[i]) != std::isnan(got[i]))
        return ::testing::AssertionFailure()
               << "element " << i << ": got " << got[i] << ", want " << want[i];
      continue;
    }
    if (std::isinf(want[i]) || std::isinf(got[i])) {
      if (got[i] != want[i])
        return ::testing::AssertionFailure()
               << "element " << i << ": got " << got[i] << ", want " << want[i];
      continue;
    }
    const double diff = std::fabs(double(got[i]) - double(want[i]));
    const double ref = std::max(std::fabs(double(want[i])), floor);
    const double err = ref > 0.0 ? diff / ref : (diff == 0.0 ? 0.0 : INFINITY);
    if (err > worst || (worst == 0.0 && err != err)) {
      worst = err;
      at = i;
    }
  }
  if (!(worst <= rtol))
    return ::testing::AssertionFailure()
           << "relative error " << worst << " > " << rtol << " at element "
           << at << ": got " << got[at] << ", want " << want[at];
  return ::testing::AssertionSuccess();
}

/// Bitwise equality (same kernels, same inputs: the same bits).
inline ::testing::AssertionResult sameBits(const Vec &a, const Vec &b) {
  if (a.size() != b.size())
    return ::testing::AssertionFailure()
           << "size " << a.size() << " vs " << b.size();
  for (size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0)
      return ::testing::AssertionFailure()
             << "element " << i << ": " << a[i] << " vs " << b[i];
  return ::testing::AssertionSuccess();
}

/// Owns a Context on its own stream; every test using it is skipped when
/// there is no device.
class CudaKernelTest : public ::testing::Test {
protected:
  void SetUp() override {
    if (!haveDevice())
      GTEST_SKIP() << kNoDeviceMessage;
    ASSERT_EQ(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking),
              cudaSuccess);
    ctx.stream = stream_;
    configure(ctx);
    char err[256] = {};
    ASSERT_EQ(context_init(ctx, err, sizeof(err)), 0) << err;
    ready_ = true;
  }
  void TearDown() override {
    if (ready_) {
      sync();
      context_destroy(ctx);
    }
    if (stream_)
      cudaStreamDestroy(stream_);
  }
  /// Override to set Context fields before context_init.
  virtual void configure(Context &) {}

  /// Waits for the stream; fails the test on any recorded error.
  void sync() {
    EXPECT_EQ(cudaStreamSynchronize(ctx.stream), cudaSuccess);
    char err[512] = {};
    EXPECT_EQ(last_error(err, sizeof(err)), 0) << err;
  }

  Context ctx;

private:
  cudaStream_t stream_ = nullptr;
  bool ready_ = false;
};

} // namespace sbp::cuda::test

#endif // SBP_TEST_CUDA_KERNELS_CUDA_TEST_SUPPORT_H
