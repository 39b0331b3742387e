//===- patchify_bf16.cu - the patchify kernels, bfloat16 overloads -===//
#include "detail/patchify.cuh"

namespace sbp {
namespace cuda {

template <class X, class Y, detail::EnableBf16<X, Y>>
void patchify(const Context &ctx, const X *img, Y *tokens, int64_t B, int64_t C,
              int64_t H, int64_t W, int64_t p) {
  detail::patchify_impl(ctx, img, tokens, B, C, H, W, p);
}

// Every element-type combination with a bf16 tensor: trainers link these.
#define SBP_INSTANTIATE_PATCHIFY(X, Y)                                         \
  template void patchify<X, Y>(const Context &ctx, const X *img, Y *tokens,    \
                               int64_t B, int64_t C, int64_t H, int64_t W,     \
                               int64_t p);
SBP_INSTANTIATE_PATCHIFY(__nv_bfloat16, float)
SBP_INSTANTIATE_PATCHIFY(float, __nv_bfloat16)
SBP_INSTANTIATE_PATCHIFY(__nv_bfloat16, __nv_bfloat16)
#undef SBP_INSTANTIATE_PATCHIFY

} // namespace cuda
} // namespace sbp
