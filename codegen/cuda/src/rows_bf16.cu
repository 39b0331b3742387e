//===- rows_bf16.cu - the rows kernels, bfloat16 overloads -===//
#include "detail/rows.cuh"

namespace sbp {
namespace cuda {

template <class X, class Y, detail::EnableBf16<X, Y>>
void gather_rows(const Context &ctx, const X *x, const int32_t *idx, Y *out,
                 int64_t B, int64_t T, int64_t K, int64_t D) {
  detail::gather_rows_impl(ctx, x, idx, out, B, T, K, D);
}

template <class X, class O, detail::EnableBf16<X, O>>
void scatter_rows_acc(const Context &ctx, const X *xk, const int32_t *idx,
                      O *out, int64_t B, int64_t T, int64_t K, int64_t D) {
  detail::launch_row_map<detail::RowOp::ScatterAcc>(
      ctx, "scatter_rows_acc", xk, static_cast<const float *>(nullptr), idx,
      out, B, T, K, D);
}

template <class X, class Y, detail::EnableBf16<X, Y>>
void scatter_rows(const Context &ctx, const X *xk, const int32_t *idx, Y *out,
                  int64_t B, int64_t T, int64_t K, int64_t D) {
  detail::launch_row_map<detail::RowOp::Scatter>(
      ctx, "scatter_rows", xk, static_cast<const float *>(nullptr), idx, out, B,
      T, K, D);
}

template <class X, class Y, detail::EnableBf16<X, Y>>
void mask_rows(const Context &ctx, const X *x, const int32_t *idx, Y *out,
               int64_t B, int64_t T, int64_t K, int64_t D) {
  detail::launch_row_map<detail::RowOp::Mask>(
      ctx, "mask_rows", x, static_cast<const float *>(nullptr), idx, out, B, T,
      K, D);
}

template <class Bs, class X, class O, detail::EnableBf16<Bs, X, O>>
void scatter_add_rows(const Context &ctx, const Bs *base, const X *xk,
                      const int32_t *idx, O *out, int64_t B, int64_t T,
                      int64_t K, int64_t D) {
  detail::launch_row_map<detail::RowOp::ScatterAdd>(ctx, "scatter_add_rows", xk,
                                                    base, idx, out, B, T, K, D);
}

// Every element-type combination with a bf16 tensor: trainers link these.
#define SBP_INSTANTIATE_GATHER_ROWS(X, Y)                                      \
  template void gather_rows<X, Y>(const Context &ctx, const X *x,              \
                                  const int32_t *idx, Y *out, int64_t B,       \
                                  int64_t T, int64_t K, int64_t D);
SBP_INSTANTIATE_GATHER_ROWS(__nv_bfloat16, float)
SBP_INSTANTIATE_GATHER_ROWS(float, __nv_bfloat16)
SBP_INSTANTIATE_GATHER_ROWS(__nv_bfloat16, __nv_bfloat16)
#undef SBP_INSTANTIATE_GATHER_ROWS
#define SBP_INSTANTIATE_SCATTER_ROWS_ACC(X, O)                                 \
  template void scatter_rows_acc<X, O>(const Context &ctx, const X *xk,        \
                                       const int32_t *idx, O *out, int64_t B,  \
                                       int64_t T, int64_t K, int64_t D);
SBP_INSTANTIATE_SCATTER_ROWS_ACC(__nv_bfloat16, float)
SBP_INSTANTIATE_SCATTER_ROWS_ACC(float, __nv_bfloat16)
SBP_INSTANTIATE_SCATTER_ROWS_ACC(__nv_bfloat16, __nv_bfloat16)
#undef SBP_INSTANTIATE_SCATTER_ROWS_ACC
#define SBP_INSTANTIATE_SCATTER_ROWS(X, Y)                                     \
  template void scatter_rows<X, Y>(const Context &ctx, const X *xk,            \
                                   const int32_t *idx, Y *out, int64_t B,      \
                                   int64_t T, int64_t K, int64_t D);
SBP_INSTANTIATE_SCATTER_ROWS(__nv_bfloat16, float)
SBP_INSTANTIATE_SCATTER_ROWS(float, __nv_bfloat16)
SBP_INSTANTIATE_SCATTER_ROWS(__nv_bfloat16, __nv_bfloat16)
#undef SBP_INSTANTIATE_SCATTER_ROWS
#define SBP_INSTANTIATE_MASK_ROWS(X, Y)                                        \
  template void mask_rows<X, Y>(const Context &ctx, const X *x,                \
                                const int32_t *idx, Y *out, int64_t B,         \
                                int64_t T, int64_t K, int64_t D);
SBP_INSTANTIATE_MASK_ROWS(__nv_bfloat16, float)
SBP_INSTANTIATE_MASK_ROWS(float, __nv_bfloat16)
SBP_INSTANTIATE_MASK_ROWS(__nv_bfloat16, __nv_bfloat16)
#undef SBP_INSTANTIATE_MASK_ROWS
#define SBP_INSTANTIATE_SCATTER_ADD_ROWS(Bs, X, O)                             \
  template void scatter_add_rows<Bs, X, O>(                                    \
      const Context &ctx, const Bs *base, const X *xk, const int32_t *idx,     \
      O *out, int64_t B, int64_t T, int64_t K, int64_t D);
SBP_INSTANTIATE_SCATTER_ADD_ROWS(__nv_bfloat16, float, float)
SBP_INSTANTIATE_SCATTER_ADD_ROWS(float, __nv_bfloat16, float)
SBP_INSTANTIATE_SCATTER_ADD_ROWS(__nv_bfloat16, __nv_bfloat16, float)
SBP_INSTANTIATE_SCATTER_ADD_ROWS(float, float, __nv_bfloat16)
SBP_INSTANTIATE_SCATTER_ADD_ROWS(__nv_bfloat16, float, __nv_bfloat16)
SBP_INSTANTIATE_SCATTER_ADD_ROWS(float, __nv_bfloat16, __nv_bfloat16)
SBP_INSTANTIATE_SCATTER_ADD_ROWS(__nv_bfloat16, __nv_bfloat16, __nv_bfloat16)
#undef SBP_INSTANTIATE_SCATTER_ADD_ROWS

} // namespace cuda
} // namespace sbp
