// Kernels.h - launchers of the CUDA backend's kernels (defined in the .cu
// files beside this one). Each enqueues on `stream` and returns the launch's
// status; none synchronises, so all of them can be captured in a CUDA graph.
#ifndef SBP_RUNTIME_CUDA_KERNELS_H
#define SBP_RUNTIME_CUDA_KERNELS_H

#include "DeviceTypes.h"

#include <cuda_runtime_api.h>

#include <cstdint>

namespace sbp::rt::cuda {

// Whether this library's kernels can run on the current device (they are built
// for CMAKE_CUDA_ARCHITECTURES): cudaSuccess, or why not.
cudaError_t probeKernelImage();

// StepKernels.cu: opens a step. Resets *status (loss NaN until the trainer
// writes it, no flags), finds the first label outside [0, num_classes) and
// records it, then replaces bad labels by 0 so the trainer never indexes out of
// bounds (the step's update is then skipped and the host reports the label).
cudaError_t launchBeginStep(int32_t *labels, int64_t batch, int32_t num_classes, StepStatus *status,
                            cudaStream_t stream);

// MaskKernels.cu: samples the keep indices of every group that is not fixed,
// one block per group, for (scalars->seed, scalars->step). A draw over a
// group's capacity is recorded in *status (the update is then skipped).
cudaError_t launchSampleMasks(const DeviceMaskGroup *groups, int32_t num_groups,
                              const StepScalars *scalars, StepStatus *status, cudaStream_t stream);

// OptimizerKernels.cu: the fused optimizer over the whole parameter buffer,
// one block per chunk. kind is sbp_optimizer_kind; state0/state1 are
// momentum_buffer (SGD) or exp_avg/exp_avg_sq (AdamW). The update is applied
// only when scalars->update is set and, if status is not NULL, the step's loss
// is finite and no label or mask error was recorded.
cudaError_t launchOptimizer(int32_t kind, const OptimizerChunk *chunks, int64_t num_chunks,
                            float *params, const float *grads, float *state0, float *state1,
                            const StepScalars *scalars, StepStatus *status, cudaStream_t stream);

} // namespace sbp::rt::cuda

#endif // SBP_RUNTIME_CUDA_KERNELS_H
