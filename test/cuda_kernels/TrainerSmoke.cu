//===- TrainerSmoke.cu - A stand-in for a generated CUDA trainer ----------===//
//
// Built into a shared library with the command line sbpc uses for CUDA
// trainers (docs/cuda-target.md), with --no-undefined and -Werror, and
// dlopen'ed by TrainerLinkTest.cu: the header is self-contained, links with
// only -lcublasLt (and the shared cudart), and a trainer-shaped step works.
//
//===----------------------------------------------------------------------===//

#include <sbp/cuda_kernels.h>

#define SBP_SMOKE_EXPORT extern "C" __attribute__((visibility("default")))

namespace {
sbp::cuda::Context &trainerContext() {
  static sbp::cuda::Context ctx;
  return ctx;
}
} // namespace

SBP_SMOKE_EXPORT int sbp_cuda_smoke_init(char *err, size_t err_len) {
  return sbp::cuda::context_init(trainerContext(), err, err_len);
}

SBP_SMOKE_EXPORT void sbp_cuda_smoke_fini() {
  sbp::cuda::context_destroy(trainerContext());
}

/// logits = gelu(layer_norm(x) @ w^T + b), loss and dlogits: x [rows, n],
/// w [classes, n], one label per row. Returns last_error().
SBP_SMOKE_EXPORT int
sbp_cuda_smoke_step(void *stream, const float *x, const float *gamma,
                    const float *beta, const float *w, const float *b,
                    const int32_t *labels, float *scratch, float *logits,
                    float *dlogits, float *loss, int64_t rows, int64_t n,
                    int64_t classes, char *err, size_t err_len) {
  sbp::cuda::Context ctx = trainerContext(); // per call: this step's stream
  ctx.stream = static_cast<cudaStream_t>(stream);
  sbp::cuda::layer_norm(ctx, x, gamma, beta, scratch, rows, n, 1e-6f);
  sbp::cuda::gemm(ctx, false, true, rows, classes, n, 1.0f, scratch, n, w, n,
                  0.0f, logits, classes);
  sbp::cuda::bias_add(ctx, logits, b, logits, rows, classes);
  sbp::cuda::gelu(ctx, logits, logits, rows * classes);
  sbp::cuda::softmax_xent(ctx, logits, labels, loss, dlogits, rows, classes,
                          1.0f);
  return sbp::cuda::last_error(err, err_len);
}
