//===- rows_f32.cu - the rows kernels, float32 -===//
#include "detail/rows.cuh"

namespace sbp {
namespace cuda {

void gather_rows(const Context &ctx, const float *x, const int32_t *idx,
                 float *out, int64_t B, int64_t T, int64_t K, int64_t D) {
  detail::gather_rows_impl(ctx, x, idx, out, B, T, K, D);
}

void scatter_rows_acc(const Context &ctx, const float *xk, const int32_t *idx,
                      float *out, int64_t B, int64_t T, int64_t K, int64_t D) {
  detail::launch_row_map<detail::RowOp::ScatterAcc>(
      ctx, "scatter_rows_acc", xk, static_cast<const float *>(nullptr), idx,
      out, B, T, K, D);
}

void scatter_rows(const Context &ctx, const float *xk, const int32_t *idx,
                  float *out, int64_t B, int64_t T, int64_t K, int64_t D) {
  detail::launch_row_map<detail::RowOp::Scatter>(
      ctx, "scatter_rows", xk, static_cast<const float *>(nullptr), idx, out, B,
      T, K, D);
}

void mask_rows(const Context &ctx, const float *x, const int32_t *idx,
               float *out, int64_t B, int64_t T, int64_t K, int64_t D) {
  detail::launch_row_map<detail::RowOp::Mask>(
      ctx, "mask_rows", x, static_cast<const float *>(nullptr), idx, out, B, T,
      K, D);
}

void scatter_add_rows(const Context &ctx, const float *base, const float *xk,
                      const int32_t *idx, float *out, int64_t B, int64_t T,
                      int64_t K, int64_t D) {
  detail::launch_row_map<detail::RowOp::ScatterAdd>(ctx, "scatter_add_rows", xk,
                                                    base, idx, out, B, T, K, D);
}

} // namespace cuda
} // namespace sbp
