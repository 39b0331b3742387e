//===- reductions_f32.cu - the reductions kernels, float32 -===//
#include "detail/reductions.cuh"

namespace sbp {
namespace cuda {

void bias_grad(const Context &ctx, const float *dy, float *dbias, int64_t rows,
               int64_t n) {
  detail::column_sum(ctx, "bias_grad", dy, 1, rows, n, dbias, 1.0);
}

void pos_grad(const Context &ctx, const float *dy, float *dpos, int64_t B,
              int64_t T, int64_t D) {
  detail::column_sum(ctx, "pos_grad", dy, 1, B, T * D, dpos, 1.0);
}

void mean_tokens(const Context &ctx, const float *x, float *y, int64_t B,
                 int64_t T, int64_t D) {
  detail::column_sum(ctx, "mean_tokens", x, B, T, D, y,
                     T > 0 ? 1.0 / double(T) : 0.0);
}

void mean_tokens_grad(const Context &ctx, const float *dy, float *dx, int64_t B,
                      int64_t T, int64_t D) {
  detail::mean_tokens_grad_impl(ctx, dy, dx, B, T, D);
}

} // namespace cuda
} // namespace sbp
