//===- conv_f32.cu - the ConvNeXt kernels (depth-wise conv, space-to-depth, layer scale), float32 -===//
#include "detail/conv.cuh"

namespace sbp {
namespace cuda {

void dwconv(const Context &ctx, const float *x, const float *weight,
            const float *bias, float *y, int64_t batch, int64_t height,
            int64_t width, int64_t channels, int64_t kernel) {
  detail::dwconv_launch<false>(ctx, "dwconv", x, weight, bias, y, batch,
                               height, width, channels, kernel);
}

void dwconv_grad_input(const Context &ctx, const float *dy,
                       const float *weight, float *dx, int64_t batch,
                       int64_t height, int64_t width, int64_t channels,
                       int64_t kernel) {
  detail::dwconv_launch<true>(ctx, "dwconv_grad_input", dy, weight,
                              static_cast<const float *>(nullptr), dx, batch,
                              height, width, channels, kernel);
}

void dwconv_grad_weight(const Context &ctx, const float *dy, const float *x,
                        float *dweight, float *dbias, int64_t batch,
                        int64_t height, int64_t width, int64_t channels,
                        int64_t kernel) {
  detail::dwconv_grad_weight_impl(ctx, "dwconv_grad_weight", dy, x, dweight,
                                  dbias, batch, height, width, channels,
                                  kernel);
}

void dwconv_grad_input_rows(const Context &ctx, const float *dyk,
                            const int32_t *idx, int64_t kept,
                            const float *weight, float *dx, int64_t batch,
                            int64_t height, int64_t width, int64_t channels,
                            int64_t kernel) {
  detail::dwconv_grad_input_rows_impl(ctx, dyk, idx, kept, weight, dx, batch,
                                      height, width, channels, kernel);
}

void dwconv_grad_weight_rows(const Context &ctx, const float *dyk,
                             const int32_t *idx, int64_t kept, const float *x,
                             float *dweight, float *dbias, int64_t batch,
                             int64_t height, int64_t width, int64_t channels,
                             int64_t kernel) {
  detail::dwconv_grad_weight_rows_impl(ctx, dyk, idx, kept, x, dweight, dbias,
                                       batch, height, width, channels, kernel);
}

void space_to_depth(const Context &ctx, const float *x, float *y,
                    int64_t batch, int64_t height, int64_t width,
                    int64_t channels, int64_t block) {
  detail::space_to_depth_impl<false>(ctx, "space_to_depth", x, y, batch,
                                     height, width, channels, block);
}

void space_to_depth_grad(const Context &ctx, const float *dy, float *dx,
                         int64_t batch, int64_t height, int64_t width,
                         int64_t channels, int64_t block) {
  detail::space_to_depth_impl<true>(ctx, "space_to_depth_grad", dy, dx, batch,
                                    height, width, channels, block);
}

void space_to_depth_grad_rows(const Context &ctx, const float *dyk,
                              const int32_t *idx, int64_t kept, float *dx,
                              int64_t batch, int64_t height, int64_t width,
                              int64_t channels, int64_t block) {
  detail::space_to_depth_grad_rows_impl(ctx, dyk, idx, kept, dx, batch, height,
                                        width, channels, block);
}

void layer_scale(const Context &ctx, const float *x, const float *gamma,
                 float *y, int64_t rows, int64_t n) {
  detail::layer_scale_impl(ctx, x, gamma, y, rows, n);
}

void layer_scale_grad(const Context &ctx, const float *dy, const float *x,
                      const float *gamma, float *dx, float *dgamma,
                      int64_t rows, int64_t n) {
  detail::layer_scale_grad_impl(ctx, dy, x, gamma, dx, dgamma, rows, n);
}

} // namespace cuda
} // namespace sbp
