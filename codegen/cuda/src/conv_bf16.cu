//===- conv_bf16.cu - the ConvNeXt kernels, bfloat16 overloads -===//
#include "detail/conv.cuh"

namespace sbp {
namespace cuda {

template <class X, class Y, detail::EnableBf16<X, Y>>
void dwconv(const Context &ctx, const X *x, const float *weight,
            const float *bias, Y *y, int64_t batch, int64_t height,
            int64_t width, int64_t channels, int64_t kernel) {
  detail::dwconv_launch<false>(ctx, "dwconv", x, weight, bias, y, batch,
                               height, width, channels, kernel);
}

template <class G, class D, detail::EnableBf16<G, D>>
void dwconv_grad_input(const Context &ctx, const G *dy, const float *weight,
                       D *dx, int64_t batch, int64_t height, int64_t width,
                       int64_t channels, int64_t kernel) {
  detail::dwconv_launch<true>(ctx, "dwconv_grad_input", dy, weight,
                              static_cast<const float *>(nullptr), dx, batch,
                              height, width, channels, kernel);
}

template <class G, class X, detail::EnableBf16<G, X>>
void dwconv_grad_weight(const Context &ctx, const G *dy, const X *x,
                        float *dweight, float *dbias, int64_t batch,
                        int64_t height, int64_t width, int64_t channels,
                        int64_t kernel) {
  detail::dwconv_grad_weight_impl(ctx, "dwconv_grad_weight", dy, x, dweight,
                                  dbias, batch, height, width, channels,
                                  kernel);
}

template <class G, class D, detail::EnableBf16<G, D>>
void dwconv_grad_input_rows(const Context &ctx, const G *dyk,
                            const int32_t *idx, int64_t kept,
                            const float *weight, D *dx, int64_t batch,
                            int64_t height, int64_t width, int64_t channels,
                            int64_t kernel) {
  detail::dwconv_grad_input_rows_impl(ctx, dyk, idx, kept, weight, dx, batch,
                                      height, width, channels, kernel);
}

template <class G, class X, detail::EnableBf16<G, X>>
void dwconv_grad_weight_rows(const Context &ctx, const G *dyk,
                             const int32_t *idx, int64_t kept, const X *x,
                             float *dweight, float *dbias, int64_t batch,
                             int64_t height, int64_t width, int64_t channels,
                             int64_t kernel) {
  detail::dwconv_grad_weight_rows_impl(ctx, dyk, idx, kept, x, dweight, dbias,
                                       batch, height, width, channels, kernel);
}

template <class X, class Y, detail::EnableBf16<X, Y>>
void space_to_depth(const Context &ctx, const X *x, Y *y, int64_t batch,
                    int64_t height, int64_t width, int64_t channels,
                    int64_t block) {
  detail::space_to_depth_impl<false>(ctx, "space_to_depth", x, y, batch,
                                     height, width, channels, block);
}

template <class G, class D, detail::EnableBf16<G, D>>
void space_to_depth_grad(const Context &ctx, const G *dy, D *dx, int64_t batch,
                         int64_t height, int64_t width, int64_t channels,
                         int64_t block) {
  detail::space_to_depth_impl<true>(ctx, "space_to_depth_grad", dy, dx, batch,
                                    height, width, channels, block);
}

template <class G, class D, detail::EnableBf16<G, D>>
void space_to_depth_grad_rows(const Context &ctx, const G *dyk,
                              const int32_t *idx, int64_t kept, D *dx,
                              int64_t batch, int64_t height, int64_t width,
                              int64_t channels, int64_t block) {
  detail::space_to_depth_grad_rows_impl(ctx, dyk, idx, kept, dx, batch, height,
                                        width, channels, block);
}

template <class X, class Y, detail::EnableBf16<X, Y>>
void layer_scale(const Context &ctx, const X *x, const float *gamma, Y *y,
                 int64_t rows, int64_t n) {
  detail::layer_scale_impl(ctx, x, gamma, y, rows, n);
}

template <class G, class X, class D, detail::EnableBf16<G, X, D>>
void layer_scale_grad(const Context &ctx, const G *dy, const X *x,
                      const float *gamma, D *dx, float *dgamma, int64_t rows,
                      int64_t n) {
  detail::layer_scale_grad_impl(ctx, dy, x, gamma, dx, dgamma, rows, n);
}

// Every element-type combination with a bf16 tensor: trainers link these.
#define SBP_CONV_PAIRS(M)                                                      \
  M(__nv_bfloat16, float) M(float, __nv_bfloat16) M(__nv_bfloat16, __nv_bfloat16)
#define SBP_I_DWCONV(X, Y)                                                     \
  template void dwconv<X, Y>(const Context &, const X *, const float *,        \
                             const float *, Y *, int64_t, int64_t, int64_t,    \
                             int64_t, int64_t);                                \
  template void dwconv_grad_input<X, Y>(const Context &, const X *,            \
                                        const float *, Y *, int64_t, int64_t,  \
                                        int64_t, int64_t, int64_t);            \
  template void dwconv_grad_weight<X, Y>(const Context &, const X *, const Y *, \
                                         float *, float *, int64_t, int64_t,   \
                                         int64_t, int64_t, int64_t);           \
  template void dwconv_grad_input_rows<X, Y>(                                  \
      const Context &, const X *, const int32_t *, int64_t, const float *, Y *, \
      int64_t, int64_t, int64_t, int64_t, int64_t);                            \
  template void dwconv_grad_weight_rows<X, Y>(                                 \
      const Context &, const X *, const int32_t *, int64_t, const Y *, float *, \
      float *, int64_t, int64_t, int64_t, int64_t, int64_t);                   \
  template void space_to_depth<X, Y>(const Context &, const X *, Y *, int64_t, \
                                     int64_t, int64_t, int64_t, int64_t);      \
  template void space_to_depth_grad<X, Y>(const Context &, const X *, Y *,     \
                                          int64_t, int64_t, int64_t, int64_t,  \
                                          int64_t);                            \
  template void space_to_depth_grad_rows<X, Y>(                                \
      const Context &, const X *, const int32_t *, int64_t, Y *, int64_t,       \
      int64_t, int64_t, int64_t, int64_t);                                      \
  template void layer_scale<X, Y>(const Context &, const X *, const float *,   \
                                  Y *, int64_t, int64_t);
SBP_CONV_PAIRS(SBP_I_DWCONV)
#undef SBP_I_DWCONV
#define SBP_I_LS_GRAD(G, X, D)                                                 \
  template void layer_scale_grad<G, X, D>(const Context &, const G *,          \
                                          const X *, const float *, D *,       \
                                          float *, int64_t, int64_t);
SBP_I_LS_GRAD(__nv_bfloat16, float, float)
SBP_I_LS_GRAD(float, __nv_bfloat16, float)
SBP_I_LS_GRAD(__nv_bfloat16, __nv_bfloat16, float)
SBP_I_LS_GRAD(float, float, __nv_bfloat16)
SBP_I_LS_GRAD(__nv_bfloat16, float, __nv_bfloat16)
SBP_I_LS_GRAD(float, __nv_bfloat16, __nv_bfloat16)
SBP_I_LS_GRAD(__nv_bfloat16, __nv_bfloat16, __nv_bfloat16)
#undef SBP_I_LS_GRAD
#undef SBP_CONV_PAIRS

} // namespace cuda
} // namespace sbp
