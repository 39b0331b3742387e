//===- TrainerSmoke.cpp - Stand-in for a generated CPU trainer ------------===//
//
// Built into a shared object with exactly the compile and link line sbpc
// uses for --target=cpu trainers (see CMakeLists.txt), then dlopen()ed by
// LinkTest.cpp: proves that the header is self-contained, that the static
// archive is position independent, and that -lopenblas -fopenmp resolve
// every symbol.
//
//===----------------------------------------------------------------------===//

#include <sbp/cpu_kernels.h>

extern "C" int sbp_cpu_smoke_step(float *out) {
  // A tiny "linear + layer_norm + gelu + mean" step: out[0..3].
  float x[2 * 3] = {1.0f, 2.0f, 3.0f, -1.0f, 0.5f, 2.0f};
  float w[3 * 4] = {0.1f,  0.2f, 0.3f, 0.4f,  -0.5f, 0.6f,
                    -0.7f, 0.8f, 0.9f, -1.0f, 1.1f,  -1.2f};
  float h[2 * 4], y[2 * 4];
  float gamma[4] = {1.0f, 1.0f, 1.0f, 1.0f}, beta[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  sbp::cpu::gemm(false, false, 2, 4, 3, 1.0f, x, 3, w, 4, 0.0f, h, 4);
  sbp::cpu::layer_norm(h, gamma, beta, y, 2, 4, 1e-5f);
  sbp::cpu::gelu(y, h, 8);
  sbp::cpu::mean_tokens(h, out, 1, 2, 4);
  return 0;
}
