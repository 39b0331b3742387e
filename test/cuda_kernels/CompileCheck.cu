//===- CompileCheck.cu - Every kernel of <sbp/cuda_kernels.cuh> compiles
//---===//
//
// Built in CI without a GPU. Taking the address of every public function
// instantiates it (and each kernel template it launches), and the
// static_asserts pin the API to the CPU library's: each CUDA function has
// exactly the signature of its sbp::cpu twin with `const Context &` in
// front. softmax_xent is the one documented exception.
//
//===----------------------------------------------------------------------===//

#include "sbp/cpu_kernels.h"
#include "sbp/cuda_kernels.cuh"

#include <type_traits>

namespace {

template <class F> struct WithContext;
template <class R, class... A> struct WithContext<R (*)(A...)> {
  using type = R (*)(const sbp::cuda::Context &, A...);
};

#define SBP_MIRRORS_CPU(name)                                                  \
  static_assert(std::is_same_v<decltype(&sbp::cuda::name),                     \
                               WithContext<decltype(&sbp::cpu::name)>::type>,  \
                "sbp::cuda::" #name " must mirror sbp::cpu::" #name)

SBP_MIRRORS_CPU(gemm);
SBP_MIRRORS_CPU(patchify);
SBP_MIRRORS_CPU(add);
SBP_MIRRORS_CPU(add_acc);
SBP_MIRRORS_CPU(bias_add);
SBP_MIRRORS_CPU(bias_grad);
SBP_MIRRORS_CPU(pos_add);
SBP_MIRRORS_CPU(pos_grad);
SBP_MIRRORS_CPU(gelu);
SBP_MIRRORS_CPU(gelu_grad);
SBP_MIRRORS_CPU(relu);
SBP_MIRRORS_CPU(relu_grad);
SBP_MIRRORS_CPU(fill);
SBP_MIRRORS_CPU(copy);
SBP_MIRRORS_CPU(layer_norm);
SBP_MIRRORS_CPU(layer_norm_grad);
SBP_MIRRORS_CPU(mean_tokens);
SBP_MIRRORS_CPU(mean_tokens_grad);
SBP_MIRRORS_CPU(gather_rows);
SBP_MIRRORS_CPU(scatter_rows_acc);
SBP_MIRRORS_CPU(scatter_rows);
SBP_MIRRORS_CPU(mask_rows);
SBP_MIRRORS_CPU(attention_fwd);
SBP_MIRRORS_CPU(attention_bwd);
SBP_MIRRORS_CPU(attention_bwd_queries);
SBP_MIRRORS_CPU(cls_concat);
SBP_MIRRORS_CPU(cls_concat_grad);
SBP_MIRRORS_CPU(take_token);
SBP_MIRRORS_CPU(take_token_grad);
#undef SBP_MIRRORS_CPU

// softmax_xent: void (the loss is written to device memory) and a trailing
// optional device int64_t* for the correct count.
static_assert(std::is_same_v<decltype(&sbp::cuda::softmax_xent),
                             void (*)(const sbp::cuda::Context &, const float *,
                                      const int32_t *, float *, float *,
                                      int64_t, int64_t, float, int64_t *)>,
              "sbp::cuda::softmax_xent signature");
// scatter_add_rows has no CPU twin (the CPU emitter writes copy +
// scatter_rows_acc).
static_assert(std::is_same_v<decltype(&sbp::cuda::scatter_add_rows),
                             void (*)(const sbp::cuda::Context &, const float *,
                                      const float *, const int32_t *, float *,
                                      int64_t, int64_t, int64_t, int64_t)>,
              "sbp::cuda::scatter_add_rows signature");

} // namespace

/// Addresses of every public function: forces their instantiation here.
extern "C" const void *const sbp_cuda_kernels_compile_check[] = {
    reinterpret_cast<const void *>(&sbp::cuda::context_init),
    reinterpret_cast<const void *>(&sbp::cuda::context_destroy),
    reinterpret_cast<const void *>(&sbp::cuda::last_error),
    reinterpret_cast<const void *>(&sbp::cuda::gemm),
    reinterpret_cast<const void *>(&sbp::cuda::patchify),
    reinterpret_cast<const void *>(&sbp::cuda::add),
    reinterpret_cast<const void *>(&sbp::cuda::add_acc),
    reinterpret_cast<const void *>(&sbp::cuda::bias_add),
    reinterpret_cast<const void *>(&sbp::cuda::bias_grad),
    reinterpret_cast<const void *>(&sbp::cuda::pos_add),
    reinterpret_cast<const void *>(&sbp::cuda::pos_grad),
    reinterpret_cast<const void *>(&sbp::cuda::gelu),
    reinterpret_cast<const void *>(&sbp::cuda::gelu_grad),
    reinterpret_cast<const void *>(&sbp::cuda::relu),
    reinterpret_cast<const void *>(&sbp::cuda::relu_grad),
    reinterpret_cast<const void *>(&sbp::cuda::fill),
    reinterpret_cast<const void *>(&sbp::cuda::copy),
    reinterpret_cast<const void *>(&sbp::cuda::layer_norm),
    reinterpret_cast<const void *>(&sbp::cuda::layer_norm_grad),
    reinterpret_cast<const void *>(&sbp::cuda::mean_tokens),
    reinterpret_cast<const void *>(&sbp::cuda::mean_tokens_grad),
    reinterpret_cast<const void *>(&sbp::cuda::softmax_xent),
    reinterpret_cast<const void *>(&sbp::cuda::gather_rows),
    reinterpret_cast<const void *>(&sbp::cuda::scatter_rows_acc),
    reinterpret_cast<const void *>(&sbp::cuda::scatter_rows),
    reinterpret_cast<const void *>(&sbp::cuda::mask_rows),
    reinterpret_cast<const void *>(&sbp::cuda::scatter_add_rows),
    reinterpret_cast<const void *>(&sbp::cuda::attention_fwd),
    reinterpret_cast<const void *>(&sbp::cuda::attention_bwd),
    reinterpret_cast<const void *>(&sbp::cuda::attention_bwd_queries),
    reinterpret_cast<const void *>(&sbp::cuda::cls_concat),
    reinterpret_cast<const void *>(&sbp::cuda::cls_concat_grad),
    reinterpret_cast<const void *>(&sbp::cuda::take_token),
    reinterpret_cast<const void *>(&sbp::cuda::take_token_grad),
};
