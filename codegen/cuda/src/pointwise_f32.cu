//===- pointwise_f32.cu - the pointwise kernels, float32 -===//
#include "detail/pointwise.cuh"

namespace sbp {
namespace cuda {

void add(const Context &ctx, const float *a, const float *b, float *out,
         int64_t n) {
  detail::launch_pointwise<2>(ctx, "add", a, b, out, n, detail::AddOp{});
}

void add_acc(const Context &ctx, float *acc, const float *b, int64_t n) {
  detail::launch_pointwise<2>(ctx, "add_acc", acc, b, acc, n, detail::AddOp{});
}

void bias_add(const Context &ctx, const float *x, const float *bias, float *y,
              int64_t rows, int64_t n) {
  detail::launch_broadcast_add(ctx, "bias_add", x, bias, y, rows, n);
}

void pos_add(const Context &ctx, const float *x, const float *pos, float *y,
             int64_t B, int64_t T, int64_t D) {
  detail::launch_broadcast_add(ctx, "pos_add", x, pos, y, B, T * D);
}

void gelu(const Context &ctx, const float *x, float *y, int64_t n) {
  detail::launch_pointwise<1>(ctx, "gelu", x,
                              static_cast<const float *>(nullptr), y, n,
                              detail::GeluOp{});
}

void gelu_grad(const Context &ctx, const float *x, const float *dy, float *dx,
               int64_t n) {
  detail::launch_pointwise<2>(ctx, "gelu_grad", x, dy, dx, n,
                              detail::GeluGradOp{});
}

void relu(const Context &ctx, const float *x, float *y, int64_t n) {
  detail::launch_pointwise<1>(ctx, "relu", x,
                              static_cast<const float *>(nullptr), y, n,
                              detail::ReluOp{});
}

void relu_grad(const Context &ctx, const float *x, const float *dy, float *dx,
               int64_t n) {
  detail::launch_pointwise<2>(ctx, "relu_grad", x, dy, dx, n,
                              detail::ReluGradOp{});
}

void fill(const Context &ctx, float *x, float value, int64_t n) {
  detail::launch_pointwise<0>(ctx, "fill", static_cast<const float *>(nullptr),
                              static_cast<const float *>(nullptr), x, n,
                              detail::FillOp{value});
}

void copy(const Context &ctx, const float *x, float *y, int64_t n) {
  detail::copy_impl(ctx, x, y, n);
}

// The CUDA kernels convert in cast's bf16 overloads; float to float (the
// kernel table's float32 declaration) is a copy, as on the CPU.
void cast(const Context &ctx, const float *x, float *y, int64_t n) {
  copy(ctx, x, y, n);
}

} // namespace cuda
} // namespace sbp
