//===- pointwise_bf16.cu - the pointwise kernels, bfloat16 overloads -===//
#include "detail/pointwise.cuh"

namespace sbp {
namespace cuda {

void cast(const Context &ctx, const float *x, __nv_bfloat16 *y, int64_t n) {
  detail::launch_pointwise<1>(ctx, "cast", x,
                              static_cast<const float *>(nullptr), y, n,
                              detail::CopyOp{});
}

void cast(const Context &ctx, const __nv_bfloat16 *x, float *y, int64_t n) {
  detail::launch_pointwise<1>(ctx, "cast", x,
                              static_cast<const float *>(nullptr), y, n,
                              detail::CopyOp{});
}

template <class A, class B, class O, detail::EnableBf16<A, B, O>>
void add(const Context &ctx, const A *a, const B *b, O *out, int64_t n) {
  detail::launch_pointwise<2>(ctx, "add", a, b, out, n, detail::AddOp{});
}

template <class O, class B, detail::EnableBf16<O, B>>
void add_acc(const Context &ctx, O *acc, const B *b, int64_t n) {
  detail::launch_pointwise<2>(ctx, "add_acc", static_cast<const O *>(acc), b,
                              acc, n, detail::AddOp{});
}

template <class X, class Y, detail::EnableBf16<X, Y>>
void bias_add(const Context &ctx, const X *x, const float *bias, Y *y,
              int64_t rows, int64_t n) {
  detail::launch_broadcast_add(ctx, "bias_add", x, bias, y, rows, n);
}

template <class X, class Y, detail::EnableBf16<X, Y>>
void pos_add(const Context &ctx, const X *x, const float *pos, Y *y, int64_t B,
             int64_t T, int64_t D) {
  detail::launch_broadcast_add(ctx, "pos_add", x, pos, y, B, T * D);
}

template <class X, class Y, detail::EnableBf16<X, Y>>
void gelu(const Context &ctx, const X *x, Y *y, int64_t n) {
  detail::launch_pointwise<1>(ctx, "gelu", x,
                              static_cast<const float *>(nullptr), y, n,
                              detail::GeluErfOp{});
}

template <class X, class G, class D, detail::EnableBf16<X, G, D>>
void gelu_grad(const Context &ctx, const X *x, const G *dy, D *dx, int64_t n) {
  detail::launch_pointwise<2>(ctx, "gelu_grad", x, dy, dx, n,
                              detail::GeluErfGradOp{});
}

template <class X, class Y, detail::EnableBf16<X, Y>>
void relu(const Context &ctx, const X *x, Y *y, int64_t n) {
  detail::launch_pointwise<1>(ctx, "relu", x,
                              static_cast<const float *>(nullptr), y, n,
                              detail::ReluOp{});
}

template <class X, class G, class D, detail::EnableBf16<X, G, D>>
void relu_grad(const Context &ctx, const X *x, const G *dy, D *dx, int64_t n) {
  detail::launch_pointwise<2>(ctx, "relu_grad", x, dy, dx, n,
                              detail::ReluGradOp{});
}

template <class T, detail::EnableBf16<T>>
void fill(const Context &ctx, T *x, float value, int64_t n) {
  detail::launch_pointwise<0>(ctx, "fill", static_cast<const float *>(nullptr),
                              static_cast<const float *>(nullptr), x, n,
                              detail::FillOp{value});
}

template <class X, class Y, detail::EnableBf16<X, Y>>
void copy(const Context &ctx, const X *x, Y *y, int64_t n) {
  detail::copy_impl(ctx, x, y, n);
}

// Every element-type combination with a bf16 tensor: trainers link these.
#define SBP_INSTANTIATE_ADD(A, B, O)                                           \
  template void add<A, B, O>(const Context &ctx, const A *a, const B *b,       \
                             O *out, int64_t n);
SBP_INSTANTIATE_ADD(__nv_bfloat16, float, float)
SBP_INSTANTIATE_ADD(float, __nv_bfloat16, float)
SBP_INSTANTIATE_ADD(__nv_bfloat16, __nv_bfloat16, float)
SBP_INSTANTIATE_ADD(float, float, __nv_bfloat16)
SBP_INSTANTIATE_ADD(__nv_bfloat16, float, __nv_bfloat16)
SBP_INSTANTIATE_ADD(float, __nv_bfloat16, __nv_bfloat16)
SBP_INSTANTIATE_ADD(__nv_bfloat16, __nv_bfloat16, __nv_bfloat16)
#undef SBP_INSTANTIATE_ADD
#define SBP_INSTANTIATE_ADD_ACC(O, B)                                          \
  template void add_acc<O, B>(const Context &ctx, O *acc, const B *b,          \
                              int64_t n);
SBP_INSTANTIATE_ADD_ACC(__nv_bfloat16, float)
SBP_INSTANTIATE_ADD_ACC(float, __nv_bfloat16)
SBP_INSTANTIATE_ADD_ACC(__nv_bfloat16, __nv_bfloat16)
#undef SBP_INSTANTIATE_ADD_ACC
#define SBP_INSTANTIATE_BIAS_ADD(X, Y)                                         \
  template void bias_add<X, Y>(const Context &ctx, const X *x,                 \
                               const float *bias, Y *y, int64_t rows,          \
                               int64_t n);
SBP_INSTANTIATE_BIAS_ADD(__nv_bfloat16, float)
SBP_INSTANTIATE_BIAS_ADD(float, __nv_bfloat16)
SBP_INSTANTIATE_BIAS_ADD(__nv_bfloat16, __nv_bfloat16)
#undef SBP_INSTANTIATE_BIAS_ADD
#define SBP_INSTANTIATE_POS_ADD(X, Y)                                          \
  template void pos_add<X, Y>(const Context &ctx, const X *x,                  \
                              const float *pos, Y *y, int64_t B, int64_t T,    \
                              int64_t D);
SBP_INSTANTIATE_POS_ADD(__nv_bfloat16, float)
SBP_INSTANTIATE_POS_ADD(float, __nv_bfloat16)
SBP_INSTANTIATE_POS_ADD(__nv_bfloat16, __nv_bfloat16)
#undef SBP_INSTANTIATE_POS_ADD
#define SBP_INSTANTIATE_GELU(X, Y)                                             \
  template void gelu<X, Y>(const Context &ctx, const X *x, Y *y, int64_t n);
SBP_INSTANTIATE_GELU(__nv_bfloat16, float)
SBP_INSTANTIATE_GELU(float, __nv_bfloat16)
SBP_INSTANTIATE_GELU(__nv_bfloat16, __nv_bfloat16)
#undef SBP_INSTANTIATE_GELU
#define SBP_INSTANTIATE_GELU_GRAD(X, G, D)                                     \
  template void gelu_grad<X, G, D>(const Context &ctx, const X *x,             \
                                   const G *dy, D *dx, int64_t n);
SBP_INSTANTIATE_GELU_GRAD(__nv_bfloat16, float, float)
SBP_INSTANTIATE_GELU_GRAD(float, __nv_bfloat16, float)
SBP_INSTANTIATE_GELU_GRAD(__nv_bfloat16, __nv_bfloat16, float)
SBP_INSTANTIATE_GELU_GRAD(float, float, __nv_bfloat16)
SBP_INSTANTIATE_GELU_GRAD(__nv_bfloat16, float, __nv_bfloat16)
SBP_INSTANTIATE_GELU_GRAD(float, __nv_bfloat16, __nv_bfloat16)
SBP_INSTANTIATE_GELU_GRAD(__nv_bfloat16, __nv_bfloat16, __nv_bfloat16)
#undef SBP_INSTANTIATE_GELU_GRAD
#define SBP_INSTANTIATE_RELU(X, Y)                                             \
  template void relu<X, Y>(const Context &ctx, const X *x, Y *y, int64_t n);
SBP_INSTANTIATE_RELU(__nv_bfloat16, float)
SBP_INSTANTIATE_RELU(float, __nv_bfloat16)
SBP_INSTANTIATE_RELU(__nv_bfloat16, __nv_bfloat16)
#undef SBP_INSTANTIATE_RELU
#define SBP_INSTANTIATE_RELU_GRAD(X, G, D)                                     \
  template void relu_grad<X, G, D>(const Context &ctx, const X *x,             \
                                   const G *dy, D *dx, int64_t n);
SBP_INSTANTIATE_RELU_GRAD(__nv_bfloat16, float, float)
SBP_INSTANTIATE_RELU_GRAD(float, __nv_bfloat16, float)
SBP_INSTANTIATE_RELU_GRAD(__nv_bfloat16, __nv_bfloat16, float)
SBP_INSTANTIATE_RELU_GRAD(float, float, __nv_bfloat16)
SBP_INSTANTIATE_RELU_GRAD(__nv_bfloat16, float, __nv_bfloat16)
SBP_INSTANTIATE_RELU_GRAD(float, __nv_bfloat16, __nv_bfloat16)
SBP_INSTANTIATE_RELU_GRAD(__nv_bfloat16, __nv_bfloat16, __nv_bfloat16)
#undef SBP_INSTANTIATE_RELU_GRAD
#define SBP_INSTANTIATE_FILL(T)                                                \
  template void fill<T>(const Context &ctx, T *x, float value, int64_t n);
SBP_INSTANTIATE_FILL(__nv_bfloat16)
#undef SBP_INSTANTIATE_FILL
#define SBP_INSTANTIATE_COPY(X, Y)                                             \
  template void copy<X, Y>(const Context &ctx, const X *x, Y *y, int64_t n);
SBP_INSTANTIATE_COPY(__nv_bfloat16, float)
SBP_INSTANTIATE_COPY(float, __nv_bfloat16)
SBP_INSTANTIATE_COPY(__nv_bfloat16, __nv_bfloat16)
#undef SBP_INSTANTIATE_COPY

} // namespace cuda
} // namespace sbp
