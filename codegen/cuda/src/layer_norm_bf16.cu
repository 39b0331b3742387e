//===- layer_norm_bf16.cu - the layer norm kernels, bfloat16 overloads -===//
#include "detail/layer_norm.cuh"

namespace sbp {
namespace cuda {

template <class X, class Y, detail::EnableBf16<X, Y>>
void layer_norm(const Context &ctx, const X *x, const float *gamma,
                const float *beta, Y *y, int64_t rows, int64_t n, float eps) {
  detail::layer_norm_impl(ctx, x, gamma, beta, y, rows, n, eps);
}

template <class X, class G, class D, detail::EnableBf16<X, G, D>>
void layer_norm_grad(const Context &ctx, const X *x, const float *gamma,
                     const G *dy, D *dx, float *dgamma, float *dbeta,
                     int64_t rows, int64_t n, float eps) {
  detail::layer_norm_grad_impl(ctx, x, gamma, dy, dx, dgamma, dbeta, rows, n,
                               eps);
}

// Every element-type combination with a bf16 tensor: trainers link these.
#define SBP_INSTANTIATE_LAYER_NORM(X, Y)                                       \
  template void layer_norm<X, Y>(const Context &ctx, const X *x,               \
                                 const float *gamma, const float *beta, Y *y,  \
                                 int64_t rows, int64_t n, float eps);
SBP_INSTANTIATE_LAYER_NORM(__nv_bfloat16, float)
SBP_INSTANTIATE_LAYER_NORM(float, __nv_bfloat16)
SBP_INSTANTIATE_LAYER_NORM(__nv_bfloat16, __nv_bfloat16)
#undef SBP_INSTANTIATE_LAYER_NORM
#define SBP_INSTANTIATE_LAYER_NORM_GRAD(X, G, D)                               \
  template void layer_norm_grad<X, G, D>(                                      \
      const Context &ctx, const X *x, const float *gamma, const G *dy, D *dx,  \
      float *dgamma, float *dbeta, int64_t rows, int64_t n, float eps);
SBP_INSTANTIATE_LAYER_NORM_GRAD(__nv_bfloat16, float, float)
SBP_INSTANTIATE_LAYER_NORM_GRAD(float, __nv_bfloat16, float)
SBP_INSTANTIATE_LAYER_NORM_GRAD(__nv_bfloat16, __nv_bfloat16, float)
SBP_INSTANTIATE_LAYER_NORM_GRAD(float, float, __nv_bfloat16)
SBP_INSTANTIATE_LAYER_NORM_GRAD(__nv_bfloat16, float, __nv_bfloat16)
SBP_INSTANTIATE_LAYER_NORM_GRAD(float, __nv_bfloat16, __nv_bfloat16)
SBP_INSTANTIATE_LAYER_NORM_GRAD(__nv_bfloat16, __nv_bfloat16, __nv_bfloat16)
#undef SBP_INSTANTIATE_LAYER_NORM_GRAD

} // namespace cuda
} // namespace sbp
