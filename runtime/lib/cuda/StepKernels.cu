// StepKernels.cu - the kernel that opens every step: status reset and labels.
#include "Kernels.h"

#include <climits>
#include <cmath>

namespace sbp::rt::cuda {
namespace {

constexpr int kThreads = 256;

__global__ void __launch_bounds__(kThreads)
    beginStepKernel(int32_t *labels, int64_t batch, int32_t num_classes, StepStatus *status) {
  __shared__ int first_bad;
  if (threadIdx.x == 0)
    first_bad = INT_MAX;
  __syncthreads();
  for (int64_t b = threadIdx.x; b < batch; b += blockDim.x) {
    int32_t label = labels[b];
    if (label < 0 || label >= num_classes) {
      atomicMin(&first_bad, int(b));
      break; // this thread's later entries cannot be the first
    }
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    StepStatus s;
    s.loss = nanf("");
    s.bad_label_index = first_bad == INT_MAX ? -1 : first_bad;
    s.bad_label_value = first_bad == INT_MAX ? 0 : labels[first_bad];
    *status = s;
  }
  __syncthreads();
  if (first_bad == INT_MAX)
    return;
  for (int64_t b = threadIdx.x; b < batch; b += blockDim.x)
    if (labels[b] < 0 || labels[b] >= num_classes)
      labels[b] = 0;
}

} // namespace

cudaError_t launchBeginStep(int32_t *labels, int64_t batch, int32_t num_classes, StepStatus *status,
                            cudaStream_t stream) {
  beginStepKernel<<<1, kThreads, 0, stream>>>(labels, batch, num_classes, status);
  return cudaGetLastError();
}

} // namespace sbp::rt::cuda

namespace sbp::rt::cuda {

cudaError_t probeKernelImage() {
  cudaFuncAttributes attributes;
  return cudaFuncGetAttributes(&attributes, beginStepKernel);
}

} // namespace sbp::rt::cuda
