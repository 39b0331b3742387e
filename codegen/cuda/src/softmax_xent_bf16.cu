//===- softmax_xent_bf16.cu - the softmax xent kernels, bfloat16 overloads
//-===//
#include "detail/softmax_xent.cuh"

namespace sbp {
namespace cuda {

template <class L, class G, detail::EnableBf16<L, G>>
void softmax_xent(const Context &ctx, const L *logits, const int32_t *labels,
                  float *loss, G *dlogits, int64_t B, int64_t C,
                  float dloss_scale, int64_t *correct) {
  detail::softmax_xent_impl(ctx, logits, labels, loss, dlogits, B, C,
                            dloss_scale, correct);
}

template <class L, detail::EnableBf16<L>>
void softmax_xent(const Context &ctx, const L *logits, const int32_t *labels,
                  float *loss, std::nullptr_t, int64_t B, int64_t C,
                  float dloss_scale, int64_t *correct) {
  detail::softmax_xent_impl(ctx, logits, labels, loss,
                            static_cast<float *>(nullptr), B, C, dloss_scale,
                            correct);
}

// Every element-type combination with a bf16 tensor: trainers link these.
#define SBP_INSTANTIATE_SOFTMAX_XENT(L, G)                                     \
  template void softmax_xent<L, G>(                                            \
      const Context &ctx, const L *logits, const int32_t *labels, float *loss, \
      G *dlogits, int64_t B, int64_t C, float dloss_scale, int64_t *correct);
SBP_INSTANTIATE_SOFTMAX_XENT(__nv_bfloat16, float)
SBP_INSTANTIATE_SOFTMAX_XENT(float, __nv_bfloat16)
SBP_INSTANTIATE_SOFTMAX_XENT(__nv_bfloat16, __nv_bfloat16)
#undef SBP_INSTANTIATE_SOFTMAX_XENT
#define SBP_INSTANTIATE_SOFTMAX_XENT_1(L)                                      \
  template void softmax_xent<L>(const Context &ctx, const L *logits,           \
                                const int32_t *labels, float *loss,            \
                                std::nullptr_t dlogits, int64_t B, int64_t C,  \
                                float dloss_scale, int64_t *correct);
SBP_INSTANTIATE_SOFTMAX_XENT_1(__nv_bfloat16)
#undef SBP_INSTANTIATE_SOFTMAX_XENT_1

} // namespace cuda
} // namespace sbp
