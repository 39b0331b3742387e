//===- attention_f32.cu - the attention kernels, float32 -===//
#include "detail/attention.cuh"

namespace sbp {
namespace cuda {

void attention_fwd(const Context &ctx, const float *qkv, float *o, float *lse,
                   int64_t B, int64_t T, int64_t H, int64_t Dh, float scale,
                   const int32_t *keep, int64_t K) {
  using namespace detail;
  if (B <= 0 || T <= 0 || H <= 0 || Dh <= 0)
    return;
  if (Dh > kAttnMaxDh) {
    fail_arg("attention_fwd", "head dim above 128");
    return;
  }
  if (!keep || K < 0)
    K = 0;
  // Query tiles over the free tokens (all of them without keep), then over
  // the kept ones: host-side upper bounds, surplus CTAs exit at once.
  const int64_t free_tiles = ceil_div(T, kAttnRows);
  const int64_t kept_tiles = ceil_div(K < T ? K : T, kAttnRows);
  const int64_t tiles = free_tiles + kept_tiles;
  if (T > 0x7fffffff / 4 || K > 0x7fffffff || 3 * H * Dh > 0x7fffffff ||
      B * H * tiles > 0x7fffffff) {
    fail_arg("attention_fwd", "too many (batch, head, query tile)s");
    return;
  }
  AttnParams p;
  p.qkv = qkv;
  p.o = o;
  p.lse_out = lse;
  p.B = int(B);
  p.T = int(T);
  p.H = int(H);
  p.Dh = int(Dh);
  p.Tq = int(T);
  p.scale = scale;
  p.vec = Dh % 4 == 0 && aligned16(qkv) && aligned16(o);
  p.tiles = int(tiles);
  p.free_tiles = int(free_tiles);
  if (K > 0) {
    ScratchCursor scratch(ctx);
    int32_t *lists = scratch.take<int32_t>(size_t(2 * T + 2));
    int32_t *flags = scratch.take<int32_t>(size_t(T));
    if (!lists || !flags) {
      fail_arg("attention_fwd",
               "scratch too small for the keep lists (about 12*T bytes)");
      return;
    }
    attention_keep_lists_kernel<>
        <<<1, 1024, 0, ctx.stream>>>(keep, int(K), int(T), lists, flags);
    check_launch("attention_fwd");
    p.lists = lists;
  }
  if (Dh <= kAttnTiledMaxDh) {
    const unsigned grid = unsigned(B * H * tiles);
    if (Dh <= 32)
      attention_fwd_tiled_kernel<32><<<grid, kAttnThreads, 0, ctx.stream>>>(p);
    else
      attention_fwd_tiled_kernel<64><<<grid, kAttnThreads, 0, ctx.stream>>>(p);
  } else {
    attention_fwd_warp_kernel<>
        <<<grid_for(ctx, B * H * T * 32), kThreads, 0, ctx.stream>>>(p);
  }
  check_launch("attention_fwd");
}

void attention_bwd(const Context &ctx, const float *qkv, const float *o,
                   const float *lse, const float *dout, float *dqkv, int64_t B,
                   int64_t T, int64_t H, int64_t Dh, float scale,
                   const int32_t *row_keep, const int32_t *head_keep,
                   void * /*ds_scratch*/, int64_t /*ds_scratch_bytes*/) {
  using namespace detail;
  if (B <= 0 || T <= 0 || H <= 0 || Dh <= 0)
    return;
  AttnParams p;
  p.qkv = qkv;
  p.o_in = o;
  p.lse = lse;
  p.dout = dout;
  p.dqkv = dqkv;
  p.row_keep = row_keep;
  p.head_keep = head_keep;
  p.scale = scale;
  p.vec = Dh % 4 == 0 && aligned16(qkv) && aligned16(o) && aligned16(dout) &&
          aligned16(dqkv);
  launch_attention_bwd(ctx, "attention_bwd", p, B, T, H, Dh, T);
}

void attention_bwd_queries(const Context &ctx, const float *qkv,
                           const int32_t *keep, int64_t K, const float *o_k,
                           const float *lse_k, const float *dout_k, float *dqkv,
                           int64_t B, int64_t T, int64_t H, int64_t Dh,
                           float scale) {
  using namespace detail;
  if (B <= 0 || T <= 0 || H <= 0 || Dh <= 0)
    return;
  if (!keep || K < 0)
    K = 0;
  AttnParams p;
  p.qkv = qkv;
  p.o_in = o_k;
  p.lse = lse_k;
  p.dout = dout_k;
  p.dqkv = dqkv;
  p.queries = keep;
  p.query_list = true;
  p.scale = scale;
  p.vec = Dh % 4 == 0 && aligned16(qkv) && aligned16(o_k) &&
          aligned16(dout_k) && aligned16(dqkv);
  launch_attention_bwd(ctx, "attention_bwd_queries", p, B, T, H, Dh, K);
}

} // namespace cuda
} // namespace sbp
