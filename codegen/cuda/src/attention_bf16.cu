//===- attention_bf16.cu - the attention kernels, bfloat16 (tensor cores) -===//
#include "detail/attention_bf16.cuh"

namespace sbp {
namespace cuda {

void attention_fwd(const Context &ctx, const __nv_bfloat16 *qkv,
                   __nv_bfloat16 *o, float *lse, int64_t B, int64_t T,
                   int64_t H, int64_t Dh, float scale, const int32_t *keep,
                   int64_t K) {
  using namespace detail;
  namespace a = detail::abf16;
  if (B <= 0 || T <= 0 || H <= 0 || Dh <= 0)
    return;
  if (Dh > a::kMaxDh) {
    fail_arg("attention_fwd", "bf16: head dim above 64 (the bf16 tensor-core "
                              "kernels take Dh <= 64; use the fp32 overload)");
    return;
  }
  if (!keep || K <= 0) {
    keep = nullptr;
    K = 0;
  }
  if (keep && T > a::kMaxKeepT) {
    fail_arg("attention_fwd", "bf16: a keep list with more than 8192 tokens");
    return;
  }
  const int64_t tiles = ceil_div(T, a::kTile);
  if (T * 3 * H * Dh > 0x7fffffff || K > 0x7fffffff ||
      B * H * tiles > 0x7fffffff) {
    fail_arg("attention_fwd", "bf16: a batch element above 2^31 elements, or "
                              "too many (batch, head, query tile)s");
    return;
  }
  a::FwdParams p;
  p.qkv = qkv;
  p.o = o;
  p.lse = lse;
  p.keep = keep;
  p.K = int(K);
  p.B = int(B);
  p.T = int(T);
  p.H = int(H);
  p.Dh = int(Dh);
  p.tiles = int(tiles);
  p.scale_log2 = scale * a::kLog2e;
  p.vec = Dh % 8 == 0 && aligned16(qkv) && aligned16(o);
  if (Dh <= 32)
    a::launch_fwd_dh<32>(ctx, p, B * H * tiles);
  else
    a::launch_fwd_dh<64>(ctx, p, B * H * tiles);
  check_launch("attention_fwd");
}

void attention_bwd(const Context &ctx, const __nv_bfloat16 *qkv,
                   const __nv_bfloat16 *o, const float *lse,
                   const __nv_bfloat16 *dout, __nv_bfloat16 *dqkv, int64_t B,
                   int64_t T, int64_t H, int64_t Dh, float scale,
                   const int32_t *row_keep, const int32_t *head_keep) {
  using namespace detail;
  if (B <= 0 || T <= 0 || H <= 0 || Dh <= 0)
    return;
  abf16::BwdParams p;
  p.qkv = qkv;
  p.o = o;
  p.lse = lse;
  p.dout = dout;
  p.dqkv = dqkv;
  p.row_keep = row_keep;
  p.head_keep = head_keep;
  p.vec = Dh % 8 == 0 && aligned16(qkv) && aligned16(o) && aligned16(dout) &&
          aligned16(dqkv);
  abf16::launch_bwd(ctx, "attention_bwd", p, B, T, H, Dh, T, scale);
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
  abf16::launch_bwd(ctx, "attention_bwd_queries", p, B, T, H, Dh, K, scale);
}

} // namespace cuda
} // namespace sbp
