//===- tokens_f32.cu - the tokens kernels, float32 -===//
#include "detail/tokens.cuh"

namespace sbp {
namespace cuda {

void cls_concat(const Context &ctx, const float *x, const float *cls, float *y,
                int64_t B, int64_t T, int64_t D) {
  detail::launch_token_rows<detail::TokenOp::ClsConcat>(ctx, "cls_concat", x,
                                                        cls, y, B, T, D, 0);
}

void cls_concat_grad(const Context &ctx, const float *dy, float *dx,
                     float *dcls, int64_t B, int64_t T, int64_t D) {
  detail::cls_concat_grad_impl(ctx, dy, dx, dcls, B, T, D);
}

void take_token(const Context &ctx, const float *x, float *y, int64_t B,
                int64_t T, int64_t D, int64_t index) {
  detail::launch_token_rows<detail::TokenOp::Take>(ctx, "take_token", x,
                                                   nullptr, y, B, T, D, index);
}

void take_token_grad(const Context &ctx, const float *dy, float *dx, int64_t B,
                     int64_t T, int64_t D, int64_t index) {
  detail::launch_token_rows<detail::TokenOp::TakeGrad>(
      ctx, "take_token_grad", dy, nullptr, dx, B, T, D, index);
}

} // namespace cuda
} // namespace sbp
