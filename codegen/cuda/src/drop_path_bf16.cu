//===- drop_path_bf16.cu - stochastic depth, bfloat16 overloads -===//
#include "detail/drop_path.cuh"

namespace sbp {
namespace cuda {

template <class X, class Y, detail::EnableBf16<X, Y>>
void drop_path(const Context &ctx, const X *x, const int32_t *keep, Y *y,
               int64_t batch, int64_t kept, int64_t n, float scale) {
  detail::drop_path_impl(ctx, x, keep, y, batch, kept, n, scale);
}

// Every element-type combination with a bf16 tensor: trainers link these.
#define SBP_I_DROP_PATH(X, Y)                                                  \
  template void drop_path<X, Y>(const Context &, const X *, const int32_t *,   \
                                Y *, int64_t, int64_t, int64_t, float);
SBP_I_DROP_PATH(__nv_bfloat16, float)
SBP_I_DROP_PATH(float, __nv_bfloat16)
SBP_I_DROP_PATH(__nv_bfloat16, __nv_bfloat16)
#undef SBP_I_DROP_PATH

} // namespace cuda
} // namespace sbp
