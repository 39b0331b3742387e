//===- context.cu - the kernel context -===//
#include "detail/gemm.cuh"

namespace sbp {
namespace cuda {

void context_destroy(Context &ctx) {
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

int context_init(Context &ctx, char *err, size_t err_len) {
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

int last_error(char *err, size_t err_len) {
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

} // namespace cuda
} // namespace sbp
