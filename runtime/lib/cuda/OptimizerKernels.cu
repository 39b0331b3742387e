// OptimizerKernels.cu - SGD and AdamW as one fused multi-tensor kernel.
//
// One block per OptimizerChunk (a piece of one parameter tensor, so the
// per-tensor weight-decay flag is uniform in a block). The arithmetic is
// Optimizers.cpp's operation by operation, with the _rn intrinsics so that
// nvcc does not contract a multiply and an add into an FMA: the host rounds
// after every operation, and so does this kernel. The step-dependent factors
// (lr, AdamW's bias corrections) are read from device memory, so a captured
// graph follows a learning-rate schedule.
#include "Kernels.h"
#include "sbp/model_abi.h"

namespace sbp::rt::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ bool shouldApply(const StepScalars &s, const StepStatus *status) {
  if (!s.update)
    return false;
  if (!status)
    return true;
  return isfinite(status->loss) && status->bad_label_index < 0 && status->mask_group < 0;
}

__global__ void __launch_bounds__(kThreads)
    sgdKernel(const OptimizerChunk *__restrict__ chunks, float *__restrict__ params,
              const float *__restrict__ grads, float *__restrict__ buf,
              const StepScalars *__restrict__ scalars, StepStatus *status) {
  const StepScalars s = *scalars;
  if (!shouldApply(s, status))
    return;
  const OptimizerChunk c = chunks[blockIdx.x];
  if (blockIdx.x == 0 && threadIdx.x == 0 && status)
    status->applied = 1;
  const float wd = c.decay ? s.weight_decay : 0.0f;
  const float mom = s.momentum, lr = s.lr;
  const bool nesterov = s.nesterov != 0;
  float *p = params + c.offset;
  const float *g = grads + c.offset;
  float *b = buf + c.offset;
#pragma unroll 4
  for (int32_t k = threadIdx.x; k < c.numel; k += kThreads) {
    float pk = p[k];
    float d = g[k];
    if (wd != 0.0f)
      d = __fadd_rn(d, __fmul_rn(wd, pk));
    if (mom != 0.0f) {
      float bk = __fadd_rn(__fmul_rn(mom, b[k]), d);
      b[k] = bk;
      d = nesterov ? __fadd_rn(d, __fmul_rn(mom, bk)) : bk;
    }
    p[k] = __fsub_rn(pk, __fmul_rn(lr, d));
  }
}

__global__ void __launch_bounds__(kThreads)
    adamwKernel(const OptimizerChunk *__restrict__ chunks, float *__restrict__ params,
                const float *__restrict__ grads, float *__restrict__ exp_avg,
                float *__restrict__ exp_avg_sq, const StepScalars *__restrict__ scalars,
                StepStatus *status) {
  const StepScalars s = *scalars;
  if (!shouldApply(s, status))
    return;
  const OptimizerChunk c = chunks[blockIdx.x];
  if (blockIdx.x == 0 && threadIdx.x == 0 && status)
    status->applied = 1;
  const float decay = c.decay ? s.adam_decay : 1.0f;
  const float b1 = s.beta1, b2 = s.beta2, eps = s.eps;
  const float one_minus_b1 = __fsub_rn(1.0f, b1), one_minus_b2 = __fsub_rn(1.0f, b2);
  const float step_size = s.adam_step_size, bias2_sqrt = s.adam_bias2_sqrt;
  float *p = params + c.offset;
  const float *g = grads + c.offset;
  float *m = exp_avg + c.offset;
  float *v = exp_avg_sq + c.offset;
#pragma unroll 4
  for (int32_t k = threadIdx.x; k < c.numel; k += kThreads) {
    const float gk = g[k];
    const float pk = __fmul_rn(p[k], decay);
    const float mk = __fadd_rn(m[k], __fmul_rn(__fsub_rn(gk, m[k]), one_minus_b1));
    const float vk = __fadd_rn(__fmul_rn(v[k], b2), __fmul_rn(__fmul_rn(one_minus_b2, gk), gk));
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vk), bias2_sqrt), eps);
    m[k] = mk;
    v[k] = vk;
    p[k] = __fsub_rn(pk, __fmul_rn(step_size, __fdiv_rn(mk, denom)));
  }
}

} // namespace

cudaError_t launchOptimizer(int32_t kind, const OptimizerChunk *chunks, int64_t num_chunks,
                            float *params, const float *grads, float *state0, float *state1,
                            const StepScalars *scalars, StepStatus *status, cudaStream_t stream) {
  if (num_chunks <= 0)
    return cudaSuccess;
  if (num_chunks > 0x7FFFFFFF)
    return cudaErrorInvalidConfiguration;
  dim3 grid(static_cast<unsigned>(num_chunks));
  if (kind == SBP_OPT_ADAMW)
    adamwKernel<<<grid, kThreads, 0, stream>>>(chunks, params, grads, state0, state1, scalars,
                                               status);
  else
    sgdKernel<<<grid, kThreads, 0, stream>>>(chunks, params, grads, state0, scalars, status);
  return cudaGetLastError();
}

} // namespace sbp::rt::cuda
