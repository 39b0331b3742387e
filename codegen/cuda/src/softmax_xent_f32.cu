//===- softmax_xent_f32.cu - the softmax xent kernels, float32 -===//
#include "detail/softmax_xent.cuh"

namespace sbp {
namespace cuda {

void softmax_xent(const Context &ctx, const float *logits,
                  const int32_t *labels, float *loss, float *dlogits, int64_t B,
                  int64_t C, float dloss_scale, int64_t *correct) {
  detail::softmax_xent_impl(ctx, logits, labels, loss, dlogits, B, C,
                            dloss_scale, correct);
}

} // namespace cuda
} // namespace sbp
