//===- drop_path_f32.cu - stochastic depth, float32 -===//
#include "detail/drop_path.cuh"

namespace sbp {
namespace cuda {

void drop_path(const Context &ctx, const float *x, const int32_t *keep,
               float *y, int64_t batch, int64_t kept, int64_t n, float scale) {
  detail::drop_path_impl(ctx, x, keep, y, batch, kept, n, scale);
}

} // namespace cuda
} // namespace sbp
