//===- patchify_f32.cu - the patchify kernels, float32 -===//
#include "detail/patchify.cuh"

namespace sbp {
namespace cuda {

void patchify(const Context &ctx, const float *img, float *tokens, int64_t B,
              int64_t C, int64_t H, int64_t W, int64_t p) {
  detail::patchify_impl(ctx, img, tokens, B, C, H, W, p);
}

} // namespace cuda
} // namespace sbp
