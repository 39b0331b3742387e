//===- attn_bench.cu - times sbp::cuda's bf16 attention on ViT shapes ------===//
//
// The four attention calls a ViT-Tiny bf16 trainer makes, batch 256 (or
// argv[1]), T = 197, 3 heads of 64: the forward, the SBP drop_qkv forward
// (every other token kept: a kept query attends only the kept keys), the
// backward, and the SBP compact backward (the gathered kept rows, T = 99).
// Each call: warm-up calls, then N calls timed with cudaEvents on one
// stream, the median printed in microseconds with the useful FLOP rate
// (forward 4 T^2 Dh per (batch, head), backward 2.5x that: FlashAttention's
// count, without padding or recomputation). Each call twice: on the tiled
// kernels (the library's default) and on the resident ones (a CTA per
// (batch, head): what SBP_ATTN_KERNELS=auto picks for these shapes), with
// the largest difference of their outputs. Two more rows time the tiled
// backward through the dS^T scratch (what the compiled trainers pass) against
// the tiled backward without it (T = 197) and against the resident kernel
// (the compact T = 99). Built and run by
// bench/attn_bench.sh; bench/attn_bench_torch.py times PyTorch's SDPA back
// ends (cuDNN, FlashAttention-2, memory-efficient) on the same shapes.
//
//===----------------------------------------------------------------------===//
#include "detail/attention_bf16.cuh" // detail::abf16::run_fwd / run_bwd, Kernels
#include "kernel_bench.cuh"
#include "sbp/kernel_scratch.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

using sbp::cuda::Context;
using namespace kernel_bench;

/// The tensors of one attention layer of T rows.
struct Layer {
  int64_t B, T, H, Dh;
  bf16 *qkv, *o, *dout, *dqkv;
  float *lse;

  Layer(int64_t B_, int64_t T_, int64_t H_, int64_t Dh_, unsigned seed)
      : B(B_), T(T_), H(H_), Dh(Dh_) {
    const size_t rows = size_t(B * T), hd = size_t(H * Dh);
    qkv = devRandom<bf16>(rows * 3 * hd, seed, 1.0f);
    dout = devRandom<bf16>(rows * hd, seed + 1, 1.0f);
    CHECK(cudaMalloc(&o, rows * hd * sizeof(bf16)));
    CHECK(cudaMalloc(&dqkv, rows * 3 * hd * sizeof(bf16)));
    CHECK(cudaMalloc(&lse, rows * size_t(H) * sizeof(float)));
  }
  ~Layer() {
    cudaFree(qkv), cudaFree(o), cudaFree(dout), cudaFree(dqkv), cudaFree(lse);
  }
  /// FlashAttention's forward FLOPs with `pairs` (query, key) pairs per head.
  double fwdFlops(double pairs) const { return 4.0 * B * H * pairs * Dh; }
};

} // namespace

int main(int argc, char **argv) {
  const int64_t B = argc > 1 ? std::atoll(argv[1]) : 256;
  const int iters = argc > 2 ? std::atoi(argv[2]) : 50;
  const int warmup = iters > 1 ? 10 : 1; // iters 1: one warm-up, one timed (ncu)
  const int64_t T = 197, H = 3, Dh = 64;
  const float scale = 0.125f;
  cudaDeviceProp prop{};
  const Context ctx = benchContext(prop);
  std::printf("sbp::cuda bf16 attention, batch %lld, T %lld, %lld heads of "
              "%lld, median of %d, device: %s (%d SMs)\n",
              (long long)B, (long long)T, (long long)H, (long long)Dh, iters,
              prop.name, prop.multiProcessorCount);

  // Every other token kept (the class token too): the grid mask's count.
  std::vector<int32_t> hkeep;
  for (int32_t t = 0; t < T; t += 2)
    hkeep.push_back(t);
  const int64_t K = int64_t(hkeep.size());
  int32_t *keep = nullptr;
  CHECK(cudaMalloc(&keep, hkeep.size() * sizeof(int32_t)));
  CHECK(cudaMemcpy(keep, hkeep.data(), hkeep.size() * sizeof(int32_t),
                   cudaMemcpyHostToDevice));

  namespace a = sbp::cuda::detail::abf16;
  using a::Kernels;
  // Times one call both ways, the tiled kernels first (the reference);
  // `out` / `n`: the output both write, compared. `resident`: whether the
  // resident kernels take this call on this device (else both columns time
  // the tiled ones, and the row says so).
  const auto both = [&](const char *what, double flops, bf16 *out, size_t n,
                        bool resident, const std::function<void(Kernels)> &call) {
    const float tiled = timeUs(ctx.stream, warmup, iters, [&] { call(Kernels::kTiled); });
    std::vector<bf16> t(n), r(n);
    CHECK(cudaMemcpy(t.data(), out, n * sizeof(bf16), cudaMemcpyDeviceToHost));
    const float us = timeUs(ctx.stream, warmup, iters, [&] { call(Kernels::kResident); });
    CHECK(cudaMemcpy(r.data(), out, n * sizeof(bf16), cudaMemcpyDeviceToHost));
    float diff = 0.0f, big = 0.0f;
    for (size_t i = 0; i < n; ++i) {
      diff = std::max(diff, std::abs(float(r[i]) - float(t[i])));
      big = std::max(big, std::abs(float(t[i])));
    }
    std::printf("| %s%s | %.1f | %.1f | %.1f | %.1f | %.3g (of %.3g) |\n", what,
                resident ? "" : " (resident kernels do not fit: tiled)", us,
                flops / (us * 1e6), tiled, flops / (tiled * 1e6), diff, big);
  };
  const auto fits = [&](int64_t rows, bool bwd) {
    return a::use_resident<64>(ctx, Kernels::kResident, B, rows, H, true, bwd);
  };
  std::printf("| call | resident us | TFLOP/s | tiled us | tiled TFLOP/s | max diff |\n"
              "|---|---:|---:|---:|---:|---:|\n");

  Layer full(B, T, H, Dh, 1);
  const size_t nO = size_t(B * T * H * Dh), nQKV = 3 * nO;
  const double dense = double(T) * T;
  both("forward", full.fwdFlops(dense), full.o, nO, fits(T, false), [&](Kernels k) {
    a::run_fwd(ctx, full.qkv, full.o, full.lse, B, T, H, Dh, scale, nullptr, 0, k);
  });
  // Kept queries attend K keys, the others all T.
  const double kept_pairs = double(K) * K + double(T - K) * T;
  both("forward, drop_qkv keep list (K = 99)", full.fwdFlops(kept_pairs), full.o,
       nO, fits(T, false), [&](Kernels k) {
         a::run_fwd(ctx, full.qkv, full.o, full.lse, B, T, H, Dh, scale, keep, K, k);
       });
  sbp::cuda::attention_fwd(ctx, full.qkv, full.o, full.lse, B, T, H, Dh, scale,
                           nullptr, 0);
  both("backward", 2.5 * full.fwdFlops(dense), full.dqkv, nQKV, fits(T, true),
       [&](Kernels k) {
    a::run_bwd(ctx, full.qkv, full.o, full.lse, full.dout, full.dqkv, B, T, H,
               Dh, scale, nullptr, nullptr, nullptr, 0, k);
  });
  // The same through the dS^T scratch (what the compiled trainers pass):
  // the tiled kernels store dS^T and the dQ pass reads it back.
  const int64_t ds_bytes = sbp_attention_ds_bytes(B, T, H);
  void *ds = nullptr;
  CHECK(cudaMalloc(&ds, size_t(ds_bytes)));
  both("backward, tiled with dS^T scratch (resident column: without)",
       2.5 * full.fwdFlops(dense), full.dqkv, nQKV, true, [&](Kernels k) {
    const bool with_ds = k == Kernels::kTiled;
    a::run_bwd(ctx, full.qkv, full.o, full.lse, full.dout, full.dqkv, B, T, H,
               Dh, scale, nullptr, nullptr, with_ds ? ds : nullptr,
               with_ds ? ds_bytes : 0, Kernels::kTiled);
  });

  // The compact drop_qkv backward: the gathered kept rows, row_keep = the
  // keep list itself (every row takes part).
  Layer compact(B, K, H, Dh, 7);
  sbp::cuda::attention_fwd(ctx, compact.qkv, compact.o, compact.lse, B, K, H,
                           Dh, scale, nullptr, 0);
  both("backward, compact kept rows (T = 99)",
       2.5 * compact.fwdFlops(double(K) * K), compact.dqkv, 3 * size_t(B * K * H * Dh),
       fits(K, true), [&](Kernels k) {
         a::run_bwd(ctx, compact.qkv, compact.o, compact.lse, compact.dout,
                    compact.dqkv, B, K, H, Dh, scale, keep, nullptr, nullptr,
                    0, k);
       });
  both("backward, compact kept rows, tiled with dS^T scratch (resident column: "
       "resident)",
       2.5 * compact.fwdFlops(double(K) * K), compact.dqkv,
       3 * size_t(B * K * H * Dh), fits(K, true), [&](Kernels k) {
         const bool with_ds = k == Kernels::kTiled;
         a::run_bwd(ctx, compact.qkv, compact.o, compact.lse, compact.dout,
                    compact.dqkv, B, K, H, Dh, scale, keep, nullptr,
                    with_ds ? ds : nullptr, with_ds ? ds_bytes : 0, k);
       });
  cudaFree(ds);
  CHECK(cudaStreamSynchronize(ctx.stream));
  checkLibrary();
  cudaFree(keep);
  cudaFree(ctx.scratch);
  cudaStreamDestroy(ctx.stream);
  return 0;
}
