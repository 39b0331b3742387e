//===- layer_norm_f32.cu - the layer norm kernels, float32 -===//
#include "detail/layer_norm.cuh"

namespace sbp {
namespace cuda {

void layer_norm(const Context &ctx, const float *x, const float *gamma,
                const float *beta, float *y, int64_t rows, int64_t n,
                float eps) {
  detail::layer_norm_impl(ctx, x, gamma, beta, y, rows, n, eps);
}

void layer_norm_grad(const Context &ctx, const float *x, const float *gamma,
                     const float *dy, float *dx, float *dgamma, float *dbeta,
                     int64_t rows, int64_t n, float eps) {
  detail::layer_norm_grad_impl(ctx, x, gamma, dy, dx, dgamma, dbeta, rows, n,
                               eps);
}

} // namespace cuda
} // namespace sbp
