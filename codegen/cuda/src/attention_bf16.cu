//===- attention_bf16.cu - the attention kernels, bfloat16 (tensor cores) -===//
#include "detail/attention_bf16.cuh"

namespace sbp {
namespace cuda {

void attention_fwd(const Context &ctx, const __nv_bfloat16 *qkv,
                   __nv_bfloat16 *o, float *lse, int64_t B, int64_t T,
                   int64_t H, int64_t Dh, float scale, const int32_t *keep,
                   int64_t K) {
  detail::abf16::run_fwd(ctx, qkv, o, lse, B, T, H, Dh, scale, keep, K);
}

void attention_bwd(const Context &ctx, const __nv_bfloat16 *qkv,
                   const __nv_bfloat16 *o, const float *lse,
                   const __nv_bfloat16 *dout, __nv_bfloat16 *dqkv, int64_t B,
                   int64_t T, int64_t H, int64_t Dh, float scale,
                   const int32_t *row_keep, const int32_t *head_keep,
                   void *ds_scratch, int64_t ds_scratch_bytes) {
  detail::abf16::run_bwd(ctx, qkv, o, lse, dout, dqkv, B, T, H, Dh, scale,
                         row_keep, head_keep, ds_scratch, ds_scratch_bytes);
}

void attention_bwd_queries(const Context &ctx, const __nv_bfloat16 *qkv,
                           const int32_t *keep, int64_t K,
                           const __nv_bfloat16 *o_k, const float *lse_k,
                           const __nv_bfloat16 *dout_k, __nv_bfloat16 *dqkv,
                           int64_t B, int64_t T, int64_t H, int64_t Dh,
                           float scale) {
  using namespace detail;
  if (B <= 0 || T <= 0 || H <= 0 || Dh <= 0)
    return;
  if (!keep || K < 0)
    K = 0;
  abf16::BwdParams p;
  p.qkv = qkv;
  p.o = o_k;
  p.lse = lse_k;
  p.dout = dout_k;
  p.dqkv = dqkv;
  p.queries = keep;
  p.query_list = true;
  p.vec = Dh % 8 == 0 && aligned16(qkv) && aligned16(o_k) &&
          aligned16(dout_k) && aligned16(dqkv);
  abf16::launch_bwd(ctx, "attention_bwd_queries", p, B, T, H, Dh, K, scale,
                    abf16::Kernels::kTiled);
}

} // namespace cuda
} // namespace sbp
