// CudaBackend.h - the backend of "cuda" trainers (see docs/runtime.md, "The
// CUDA backend"): one device allocation, one stream, masks sampled and the
// optimizer applied on the device, the step replayed as a CUDA graph.
#ifndef SBP_RUNTIME_CUDA_CUDABACKEND_H
#define SBP_RUNTIME_CUDA_CUDABACKEND_H

#include "Backend.h"
#include "Masks.h"

#include <cstdint>
#include <memory>
#include <vector>

namespace sbp::rt::cuda {

// The backend on CUDA device `device`. Throws SBP_ERROR_UNSUPPORTED when there
// is no usable CUDA device (no driver, no GPU, kernels not built for it) and
// SBP_ERROR_INVALID_ARGUMENT when `device` is not one of the machine's.
std::unique_ptr<Backend> makeCudaBackend(int32_t device);

// CUDA devices this process sees; 0 without a driver or a GPU. Never throws.
int32_t deviceCount();

// The keep indices the device kernel samples for every group of `sampler`, for
// each of `steps`: result[s][group] holds `capacity` entries. For tests and
// tools; allocates and synchronises.
std::vector<std::vector<std::vector<int32_t>>>
sampleMasksOnDevice(const MaskSampler &sampler, uint64_t seed, const std::vector<int64_t> &steps,
                    int32_t device = 0);

} // namespace sbp::rt::cuda

#endif // SBP_RUNTIME_CUDA_CUDABACKEND_H
