//===- tokens_bf16.cu - the tokens kernels, bfloat16 overloads -===//
#include "detail/tokens.cuh"

namespace sbp {
namespace cuda {

template <class X, class Y, detail::EnableBf16<X, Y>>
void cls_concat(const Context &ctx, const X *x, const float *cls, Y *y,
                int64_t B, int64_t T, int64_t D) {
  detail::launch_token_rows<detail::TokenOp::ClsConcat>(ctx, "cls_concat", x,
                                                        cls, y, B, T, D, 0);
}

template <class X, class Y, detail::EnableBf16<X, Y>>
void cls_concat_grad(const Context &ctx, const X *dy, Y *dx, float *dcls,
                     int64_t B, int64_t T, int64_t D) {
  detail::cls_concat_grad_impl(ctx, dy, dx, dcls, B, T, D);
}

template <class X, class Y, detail::EnableBf16<X, Y>>
void take_token(const Context &ctx, const X *x, Y *y, int64_t B, int64_t T,
                int64_t D, int64_t index) {
  detail::launch_token_rows<detail::TokenOp::Take>(ctx, "take_token", x,
                                                   nullptr, y, B, T, D, index);
}

template <class X, class Y, detail::EnableBf16<X, Y>>
void take_token_grad(const Context &ctx, const X *dy, Y *dx, int64_t B,
                     int64_t T, int64_t D, int64_t index) {
  detail::launch_token_rows<detail::TokenOp::TakeGrad>(
      ctx, "take_token_grad", dy, nullptr, dx, B, T, D, index);
}

// Every element-type combination with a bf16 tensor: trainers link these.
#define SBP_INSTANTIATE_CLS_CONCAT(X, Y)                                       \
  template void cls_concat<X, Y>(const Context &ctx, const X *x,               \
                                 const float *cls, Y *y, int64_t B, int64_t T, \
                                 int64_t D);
SBP_INSTANTIATE_CLS_CONCAT(__nv_bfloat16, float)
SBP_INSTANTIATE_CLS_CONCAT(float, __nv_bfloat16)
SBP_INSTANTIATE_CLS_CONCAT(__nv_bfloat16, __nv_bfloat16)
#undef SBP_INSTANTIATE_CLS_CONCAT
#define SBP_INSTANTIATE_CLS_CONCAT_GRAD(X, Y)                                  \
  template void cls_concat_grad<X, Y>(const Context &ctx, const X *dy, Y *dx,  \
                                      float *dcls, int64_t B, int64_t T,       \
                                      int64_t D);
SBP_INSTANTIATE_CLS_CONCAT_GRAD(__nv_bfloat16, float)
SBP_INSTANTIATE_CLS_CONCAT_GRAD(float, __nv_bfloat16)
SBP_INSTANTIATE_CLS_CONCAT_GRAD(__nv_bfloat16, __nv_bfloat16)
#undef SBP_INSTANTIATE_CLS_CONCAT_GRAD
#define SBP_INSTANTIATE_TAKE_TOKEN(X, Y)                                       \
  template void take_token<X, Y>(const Context &ctx, const X *x, Y *y,         \
                                 int64_t B, int64_t T, int64_t D,              \
                                 int64_t index);
SBP_INSTANTIATE_TAKE_TOKEN(__nv_bfloat16, float)
SBP_INSTANTIATE_TAKE_TOKEN(float, __nv_bfloat16)
SBP_INSTANTIATE_TAKE_TOKEN(__nv_bfloat16, __nv_bfloat16)
#undef SBP_INSTANTIATE_TAKE_TOKEN
#define SBP_INSTANTIATE_TAKE_TOKEN_GRAD(X, Y)                                  \
  template void take_token_grad<X, Y>(const Context &ctx, const X *dy, Y *dx,  \
                                      int64_t B, int64_t T, int64_t D,         \
                                      int64_t index);
SBP_INSTANTIATE_TAKE_TOKEN_GRAD(__nv_bfloat16, float)
SBP_INSTANTIATE_TAKE_TOKEN_GRAD(float, __nv_bfloat16)
SBP_INSTANTIATE_TAKE_TOKEN_GRAD(__nv_bfloat16, __nv_bfloat16)
#undef SBP_INSTANTIATE_TAKE_TOKEN_GRAD

} // namespace cuda
} // namespace sbp
