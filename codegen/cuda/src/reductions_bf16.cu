//===- reductions_bf16.cu - the reductions kernels, bfloat16 overloads -===//
#include "detail/reductions.cuh"

namespace sbp {
namespace cuda {

template <class X, detail::EnableBf16<X>>
void bias_grad(const Context &ctx, const X *dy, float *dbias, int64_t rows,
               int64_t n) {
  detail::column_sum(ctx, "bias_grad", dy, 1, rows, n, dbias, 1.0);
}

template <class X, detail::EnableBf16<X>>
void pos_grad(const Context &ctx, const X *dy, float *dpos, int64_t B,
              int64_t T, int64_t D) {
  detail::column_sum(ctx, "pos_grad", dy, 1, B, T * D, dpos, 1.0);
}

template <class X, class Y, detail::EnableBf16<X, Y>>
void mean_tokens(const Context &ctx, const X *x, Y *y, int64_t B, int64_t T,
                 int64_t D) {
  detail::column_sum(ctx, "mean_tokens", x, B, T, D, y,
                     T > 0 ? 1.0 / double(T) : 0.0);
}

template <class X, class Y, detail::EnableBf16<X, Y>>
void mean_tokens_grad(const Context &ctx, const X *dy, Y *dx, int64_t B,
                      int64_t T, int64_t D) {
  detail::mean_tokens_grad_impl(ctx, dy, dx, B, T, D);
}

// Every element-type combination with a bf16 tensor: trainers link these.
#define SBP_INSTANTIATE_BIAS_GRAD(X)                                           \
  template void bias_grad<X>(const Context &ctx, const X *dy, float *dbias,    \
                             int64_t rows, int64_t n);
SBP_INSTANTIATE_BIAS_GRAD(__nv_bfloat16)
#undef SBP_INSTANTIATE_BIAS_GRAD
#define SBP_INSTANTIATE_POS_GRAD(X)                                            \
  template void pos_grad<X>(const Context &ctx, const X *dy, float *dpos,      \
                            int64_t B, int64_t T, int64_t D);
SBP_INSTANTIATE_POS_GRAD(__nv_bfloat16)
#undef SBP_INSTANTIATE_POS_GRAD
#define SBP_INSTANTIATE_MEAN_TOKENS(X, Y)                                      \
  template void mean_tokens<X, Y>(const Context &ctx, const X *x, Y *y,        \
                                  int64_t B, int64_t T, int64_t D);
SBP_INSTANTIATE_MEAN_TOKENS(__nv_bfloat16, float)
SBP_INSTANTIATE_MEAN_TOKENS(float, __nv_bfloat16)
SBP_INSTANTIATE_MEAN_TOKENS(__nv_bfloat16, __nv_bfloat16)
#undef SBP_INSTANTIATE_MEAN_TOKENS
#define SBP_INSTANTIATE_MEAN_TOKENS_GRAD(X, Y)                                 \
  template void mean_tokens_grad<X, Y>(const Context &ctx, const X *dy, Y *dx, \
                                       int64_t B, int64_t T, int64_t D);
SBP_INSTANTIATE_MEAN_TOKENS_GRAD(__nv_bfloat16, float)
SBP_INSTANTIATE_MEAN_TOKENS_GRAD(float, __nv_bfloat16)
SBP_INSTANTIATE_MEAN_TOKENS_GRAD(__nv_bfloat16, __nv_bfloat16)
#undef SBP_INSTANTIATE_MEAN_TOKENS_GRAD

} // namespace cuda
} // namespace sbp
