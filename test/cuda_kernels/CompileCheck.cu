//===- CompileCheck.cu - Every function of <sbp/cuda_kernels.h> exists ---===//
//
// Built in CI without a GPU. Taking the address of every public function
// makes the test binary link it from libsbp_cuda_kernels.a (a missing
// instantiation is a link error), and the static_casts pin the API: each float CUDA function has exactly the
// signature of its sbp::cpu twin with `const Context &` in front
// (softmax_xent is the one documented exception), and each bf16 overload
// exists with the signature the generated --precision=bf16 trainers call.
//
//===----------------------------------------------------------------------===//

#include "sbp/cpu_kernels.h"
#include "sbp/cuda_kernels.h"

#include <type_traits>

namespace {

using sbp::cuda::Context;
using bf16 = __nv_bfloat16;

template <class F> struct WithContext;
template <class R, class... A> struct WithContext<R (*)(A...)> {
  using type = R (*)(const Context &, A...);
};

// The overload of sbp::cuda::name whose type is exactly the CPU function's
// with a Context in front (a compile error if there is none: the names are
// overloaded with the bf16 variants, so this selects by the exact type).
#define SBP_MIRROR(name)                                                       \
  static_cast<WithContext<decltype(&sbp::cpu::name)>::type>(&sbp::cuda::name)

// The overload of sbp::cuda::name with exactly the parameters after the
// Context given, returning void.
#define SBP_OVERLOAD(name, ...)                                                \
  reinterpret_cast<const void *>(                                              \
      static_cast<void (*)(const Context &, __VA_ARGS__)>(&sbp::cuda::name))

} // namespace

/// Addresses of every public function: forces their instantiation here.
extern "C" const void *const sbp_cuda_kernels_compile_check[] = {
    reinterpret_cast<const void *>(&sbp::cuda::context_init),
    reinterpret_cast<const void *>(&sbp::cuda::context_destroy),
    reinterpret_cast<const void *>(&sbp::cuda::last_error),
    reinterpret_cast<const void *>(SBP_MIRROR(gemm)),
    reinterpret_cast<const void *>(SBP_MIRROR(patchify)),
    reinterpret_cast<const void *>(SBP_MIRROR(add)),
    reinterpret_cast<const void *>(SBP_MIRROR(add_acc)),
    reinterpret_cast<const void *>(SBP_MIRROR(bias_add)),
    reinterpret_cast<const void *>(SBP_MIRROR(bias_grad)),
    reinterpret_cast<const void *>(SBP_MIRROR(pos_add)),
    reinterpret_cast<const void *>(SBP_MIRROR(pos_grad)),
    reinterpret_cast<const void *>(SBP_MIRROR(gelu)),
    reinterpret_cast<const void *>(SBP_MIRROR(gelu_grad)),
    reinterpret_cast<const void *>(SBP_MIRROR(relu)),
    reinterpret_cast<const void *>(SBP_MIRROR(relu_grad)),
    reinterpret_cast<const void *>(SBP_MIRROR(fill)),
    reinterpret_cast<const void *>(SBP_MIRROR(copy)),
    reinterpret_cast<const void *>(SBP_MIRROR(layer_norm)),
    reinterpret_cast<const void *>(SBP_MIRROR(layer_norm_grad)),
    reinterpret_cast<const void *>(SBP_MIRROR(mean_tokens)),
    reinterpret_cast<const void *>(SBP_MIRROR(mean_tokens_grad)),
    // softmax_xent: void (the loss is written to device memory) and a
    // trailing optional device int64_t* for the correct count.
    SBP_OVERLOAD(softmax_xent, const float *, const int32_t *, float *,
                 float *, int64_t, int64_t, float, int64_t *),
    reinterpret_cast<const void *>(SBP_MIRROR(gather_rows)),
    reinterpret_cast<const void *>(SBP_MIRROR(scatter_rows_acc)),
    reinterpret_cast<const void *>(SBP_MIRROR(scatter_rows)),
    reinterpret_cast<const void *>(SBP_MIRROR(mask_rows)),
    reinterpret_cast<const void *>(SBP_MIRROR(scatter_add_rows)),
    reinterpret_cast<const void *>(SBP_MIRROR(drop_path)),
    reinterpret_cast<const void *>(SBP_MIRROR(cast)),
    reinterpret_cast<const void *>(SBP_MIRROR(gemm_bias)),
    reinterpret_cast<const void *>(SBP_MIRROR(gemm_bgrad)),
    reinterpret_cast<const void *>(SBP_MIRROR(attention_fwd)),
    reinterpret_cast<const void *>(SBP_MIRROR(attention_bwd)),
    reinterpret_cast<const void *>(SBP_MIRROR(attention_bwd_queries)),
    reinterpret_cast<const void *>(SBP_MIRROR(cls_concat)),
    reinterpret_cast<const void *>(SBP_MIRROR(cls_concat_grad)),
    reinterpret_cast<const void *>(SBP_MIRROR(take_token)),
    reinterpret_cast<const void *>(SBP_MIRROR(take_token_grad)),
#ifndef SBP_COMPILE_CHECK_FLOAT_ONLY
    // bf16: every combination a --precision=bf16 trainer emits (see
    // compiler/Transforms/AssignPrecision.cpp), and the other natural ones.
    SBP_OVERLOAD(cast, const float *, bf16 *, int64_t),
    SBP_OVERLOAD(cast, const bf16 *, float *, int64_t),
    SBP_OVERLOAD(gemm, bool, bool, int64_t, int64_t, int64_t, float,
                 const bf16 *, int64_t, const bf16 *, int64_t, float, bf16 *,
                 int64_t),
    SBP_OVERLOAD(gemm, bool, bool, int64_t, int64_t, int64_t, float,
                 const bf16 *, int64_t, const bf16 *, int64_t, float, float *,
                 int64_t),
    SBP_OVERLOAD(patchify, const float *, bf16 *, int64_t, int64_t, int64_t,
                 int64_t, int64_t),
    SBP_OVERLOAD(patchify, const bf16 *, bf16 *, int64_t, int64_t, int64_t,
                 int64_t, int64_t),
    SBP_OVERLOAD(add, const float *, const bf16 *, float *, int64_t),
    SBP_OVERLOAD(add, const bf16 *, const float *, float *, int64_t),
    SBP_OVERLOAD(add, const bf16 *, const bf16 *, bf16 *, int64_t),
    SBP_OVERLOAD(add, const bf16 *, const bf16 *, float *, int64_t),
    SBP_OVERLOAD(add_acc, float *, const bf16 *, int64_t),
    SBP_OVERLOAD(add_acc, bf16 *, const bf16 *, int64_t),
    SBP_OVERLOAD(bias_add, const bf16 *, const float *, bf16 *, int64_t,
                 int64_t),
    SBP_OVERLOAD(bias_add, const bf16 *, const float *, float *, int64_t,
                 int64_t),
    SBP_OVERLOAD(bias_add, const float *, const float *, bf16 *, int64_t,
                 int64_t),
    SBP_OVERLOAD(bias_grad, const bf16 *, float *, int64_t, int64_t),
    SBP_OVERLOAD(pos_add, const bf16 *, const float *, float *, int64_t,
                 int64_t, int64_t),
    SBP_OVERLOAD(pos_add, const bf16 *, const float *, bf16 *, int64_t,
                 int64_t, int64_t),
    SBP_OVERLOAD(pos_grad, const bf16 *, float *, int64_t, int64_t, int64_t),
    SBP_OVERLOAD(gelu, const bf16 *, bf16 *, int64_t),
    SBP_OVERLOAD(gelu, const float *, bf16 *, int64_t),
    SBP_OVERLOAD(gelu_grad, const bf16 *, const bf16 *, bf16 *, int64_t),
    SBP_OVERLOAD(relu, const bf16 *, bf16 *, int64_t),
    SBP_OVERLOAD(relu_grad, const bf16 *, const bf16 *, bf16 *, int64_t),
    SBP_OVERLOAD(fill, bf16 *, float, int64_t),
    SBP_OVERLOAD(copy, const bf16 *, bf16 *, int64_t),
    SBP_OVERLOAD(copy, const float *, bf16 *, int64_t),
    SBP_OVERLOAD(copy, const bf16 *, float *, int64_t),
    SBP_OVERLOAD(layer_norm, const float *, const float *, const float *,
                 bf16 *, int64_t, int64_t, float),
    SBP_OVERLOAD(layer_norm, const bf16 *, const float *, const float *,
                 bf16 *, int64_t, int64_t, float),
    SBP_OVERLOAD(layer_norm_grad, const float *, const float *, const bf16 *,
                 float *, float *, float *, int64_t, int64_t, float),
    SBP_OVERLOAD(layer_norm_grad, const bf16 *, const float *, const bf16 *,
                 bf16 *, float *, float *, int64_t, int64_t, float),
    SBP_OVERLOAD(mean_tokens, const bf16 *, bf16 *, int64_t, int64_t, int64_t),
    SBP_OVERLOAD(mean_tokens, const bf16 *, float *, int64_t, int64_t,
                 int64_t),
    SBP_OVERLOAD(mean_tokens_grad, const bf16 *, bf16 *, int64_t, int64_t,
                 int64_t),
    SBP_OVERLOAD(softmax_xent, const float *, const int32_t *, float *, bf16 *,
                 int64_t, int64_t, float, int64_t *),
    SBP_OVERLOAD(softmax_xent, const bf16 *, const int32_t *, float *, bf16 *,
                 int64_t, int64_t, float, int64_t *),
    SBP_OVERLOAD(softmax_xent, const bf16 *, const int32_t *, float *,
                 float *, int64_t, int64_t, float, int64_t *),
    SBP_OVERLOAD(softmax_xent, const bf16 *, const int32_t *, float *,
                 std::nullptr_t, int64_t, int64_t, float, int64_t *),
    SBP_OVERLOAD(gather_rows, const bf16 *, const int32_t *, bf16 *, int64_t,
                 int64_t, int64_t, int64_t),
    SBP_OVERLOAD(scatter_rows_acc, const bf16 *, const int32_t *, float *,
                 int64_t, int64_t, int64_t, int64_t),
    SBP_OVERLOAD(scatter_rows_acc, const bf16 *, const int32_t *, bf16 *,
                 int64_t, int64_t, int64_t, int64_t),
    SBP_OVERLOAD(scatter_rows, const bf16 *, const int32_t *, bf16 *, int64_t,
                 int64_t, int64_t, int64_t),
    SBP_OVERLOAD(mask_rows, const bf16 *, const int32_t *, bf16 *, int64_t,
                 int64_t, int64_t, int64_t),
    SBP_OVERLOAD(drop_path, const bf16 *, const int32_t *, bf16 *, int64_t,
                 int64_t, int64_t, float),
    SBP_OVERLOAD(drop_path, const float *, const int32_t *, bf16 *, int64_t,
                 int64_t, int64_t, float),
    SBP_OVERLOAD(scatter_add_rows, const float *, const bf16 *,
                 const int32_t *, float *, int64_t, int64_t, int64_t, int64_t),
    SBP_OVERLOAD(scatter_add_rows, const bf16 *, const bf16 *,
                 const int32_t *, bf16 *, int64_t, int64_t, int64_t, int64_t),
    SBP_OVERLOAD(cls_concat, const bf16 *, const float *, float *, int64_t,
                 int64_t, int64_t),
    SBP_OVERLOAD(cls_concat, const bf16 *, const float *, bf16 *, int64_t,
                 int64_t, int64_t),
    SBP_OVERLOAD(cls_concat_grad, const float *, bf16 *, float *, int64_t,
                 int64_t, int64_t),
    SBP_OVERLOAD(cls_concat_grad, const bf16 *, bf16 *, float *, int64_t,
                 int64_t, int64_t),
    SBP_OVERLOAD(take_token, const bf16 *, bf16 *, int64_t, int64_t, int64_t,
                 int64_t),
    SBP_OVERLOAD(take_token_grad, const bf16 *, bf16 *, int64_t, int64_t,
                 int64_t, int64_t),
    SBP_OVERLOAD(gemm_bias, bool, bool, int64_t, int64_t, int64_t,
                 const bf16 *, int64_t, const bf16 *, int64_t, const float *,
                 const float *, float *, int64_t),
    SBP_OVERLOAD(gemm_bias, bool, bool, int64_t, int64_t, int64_t,
                 const bf16 *, int64_t, const bf16 *, int64_t, const bf16 *,
                 const bf16 *, bf16 *, int64_t),
    SBP_OVERLOAD(gemm_bgrad, bool, bool, int64_t, int64_t, int64_t,
                 const bf16 *, int64_t, const bf16 *, int64_t, float *, int64_t,
                 float *),
    SBP_OVERLOAD(gemm_bgrad, bool, bool, int64_t, int64_t, int64_t,
                 const bf16 *, int64_t, const bf16 *, int64_t, bf16 *, int64_t,
                 float *),
    // The bf16 tensor-core attention.
    SBP_OVERLOAD(attention_fwd, const bf16 *, bf16 *, float *, int64_t,
                 int64_t, int64_t, int64_t, float, const int32_t *, int64_t),
    SBP_OVERLOAD(attention_bwd, const bf16 *, const bf16 *, const float *,
                 const bf16 *, bf16 *, int64_t, int64_t, int64_t, int64_t,
                 float, const int32_t *, const int32_t *, void *, int64_t),
    SBP_OVERLOAD(attention_bwd_queries, const bf16 *, const int32_t *,
                 int64_t, const bf16 *, const float *, const bf16 *, bf16 *,
                 int64_t, int64_t, int64_t, int64_t, float),
#endif
};
