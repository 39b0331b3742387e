//===- conv_bench.cu - times sbp::cuda's depth-wise 7x7 conv on ConvNeXt-T shapes -===//
//
// dwconv forward, dwconv_grad_input and dwconv_grad_weight (+ dbias), bf16
// activations, float weights, channels-last [B, H*W, C], batch 128 (or
// argv[1]), the four ConvNeXt-T stage shapes. Each kernel: warm-up calls,
// then N calls each timed with cudaEvents on one stream, the median printed
// in microseconds with the effective bandwidth (activation bytes read and
// written once) and the FLOP rate (2 K^2 per output element). Built and run
// by bench/conv_bench.sh; bench/conv_bench_torch.py times cuDNN on the same
// shapes.
//
//===----------------------------------------------------------------------===//
#include "detail/conv.cuh" // detail::dwconv_tiled, ConvTile
#include "kernel_bench.cuh"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace {

using sbp::cuda::Context;
using namespace kernel_bench;

/// One row of the tile table: Tile's forward and input gradient on one shape,
/// timed, and compared with the library's outputs ref_y / ref_dx.
template <class Tile>
std::string tileRow(const Context &ctx, int warmup, int iters, const bf16 *x,
             const bf16 *dy, const float *w, const float *b, bf16 *y,
             bf16 *dx, const bf16 *ref_y, const bf16 *ref_dx, int64_t B,
             int64_t H, int64_t W, int64_t C, int64_t K) {
  using sbp::cuda::detail::dwconv_tiled;
  const float fwd = timeUs(ctx.stream, warmup, iters, [&] {
    dwconv_tiled<Tile, false>(ctx, "dwconv", x, w, b, y, B, H, W, C, K,
                              nullptr, -1);
  });
  const float dgrad = timeUs(ctx.stream, warmup, iters, [&] {
    dwconv_tiled<Tile, true>(ctx, "dwconv_grad_input", dy, w,
                             static_cast<const float *>(nullptr), dx, B, H, W,
                             C, K, nullptr, -1);
  });
  const size_t n = size_t(B * H * W * C);
  const float diff = std::max(maxDiff(y, ref_y, n), maxDiff(dx, ref_dx, n));
  char line[160];
  std::snprintf(line, sizeof line,
                "| %lldx%lldx%lld | %dx%d, %d per thread (%d threads) | %.1f | "
                "%.1f | %.3g |\n",
                (long long)H, (long long)W, (long long)C, Tile::TH, Tile::TW,
                Tile::R, Tile::NT, fwd, dgrad, diff);
  return line;
}

} // namespace

int main(int argc, char **argv) {
  const int64_t B = argc > 1 ? std::atoll(argv[1]) : 128;
  const int iters = argc > 2 ? std::atoi(argv[2]) : 50;
  const bool tiles = argc > 3 && std::string(argv[3]) == "tiles";
  const int warmup = 10, K = 7;
  cudaDeviceProp prop{};
  const Context ctx = benchContext(prop);
  std::printf("sbp::cuda depth-wise %dx%d conv, bf16 activations, batch %lld, "
              "median of %d, device: %s (%d SMs)\n",
              K, K, (long long)B, iters, prop.name, prop.multiProcessorCount);
  std::printf("| shape (HxWxC) | kernel | us | GB/s | TFLOP/s |\n"
              "|---|---|---:|---:|---:|\n");
  const int64_t shapes[4][2] = {{56, 96}, {28, 192}, {14, 384}, {7, 768}};
  float total = 0.0f;
  std::string tileTable, blocksTable;
  for (const auto &sh : shapes) {
    const int64_t H = sh[0], W = sh[0], C = sh[1];
    const size_t n = size_t(B * H * W * C);
    bf16 *x = devRandom<bf16>(n, 1, 1.0f), *dy = devRandom<bf16>(n, 2, 1.0f);
    bf16 *y = nullptr, *dx = nullptr;
    CHECK(cudaMalloc(&y, n * sizeof(bf16)));
    CHECK(cudaMalloc(&dx, n * sizeof(bf16)));
    float *w = devRandom<float>(size_t(C * K * K), 3, 0.1f);
    float *b = devRandom<float>(size_t(C), 4, 0.1f);
    float *dw = nullptr, *db = nullptr;
    CHECK(cudaMalloc(&dw, size_t(C * K * K) * sizeof(float)));
    CHECK(cudaMalloc(&db, size_t(C) * sizeof(float)));
    const double flops = 2.0 * K * K * double(n);
    const auto row = [&](const char *what, float us, double bytes) {
      std::printf("| %lldx%lldx%lld | %s | %.1f | %.0f | %.1f |\n",
                  (long long)H, (long long)W, (long long)C, what, us,
                  bytes / (us * 1e3), flops / (us * 1e6));
      total += us;
    };
    const double act = double(n) * sizeof(bf16);
    row("dwconv fwd",
        timeUs(ctx.stream, warmup, iters,
               [&] { sbp::cuda::dwconv(ctx, x, w, b, y, B, H, W, C, K); }),
        2 * act);
    row("dwconv dgrad",
        timeUs(ctx.stream, warmup, iters,
               [&] {
                 sbp::cuda::dwconv_grad_input(ctx, dy, w, dx, B, H, W, C, K);
               }),
        2 * act);
    row("dwconv wgrad+bgrad",
        timeUs(ctx.stream, warmup, iters,
               [&] {
                 sbp::cuda::dwconv_grad_weight(ctx, dy, x, dw, db, B, H, W, C,
                                               K);
               }),
        2 * act);
    if (tiles) {
      bf16 *ty = nullptr, *tdx = nullptr;
      CHECK(cudaMalloc(&ty, n * sizeof(bf16)));
      CHECK(cudaMalloc(&tdx, n * sizeof(bf16)));
      sbp::cuda::dwconv(ctx, x, w, b, y, B, H, W, C, K);
      sbp::cuda::dwconv_grad_input(ctx, dy, w, dx, B, H, W, C, K);
      using sbp::cuda::detail::ConvTile;
      const auto each = [&](auto tile) {
        tileTable += tileRow<decltype(tile)>(ctx, warmup, iters, x, dy, w, b,
                                             ty, tdx, y, dx, B, H, W, C, K);
      };
      each(ConvTile<8, 8, 4>{});
      each(ConvTile<8, 14, 7>{});
      each(ConvTile<16, 7, 7>{});
      each(ConvTile<8, 7, 7>{});
      each(ConvTile<8, 14, 14>{});
      each(ConvTile<8, 16, 8>{});
      each(ConvTile<16, 8, 8>{});
      for (int blocks : {4, 6, 8, 12}) {
        const float us = timeUs(ctx.stream, warmup, iters, [&] {
          sbp::cuda::detail::dwconv_grad_weight_impl(ctx, "dwconv_grad_weight",
                                                     dy, x, dw, db, B, H, W, C,
                                                     K, nullptr, -1, blocks);
        });
        char line[120];
        std::snprintf(line, sizeof line, "| %lldx%lldx%lld | %d blocks/SM | %.1f |\n",
                      (long long)H, (long long)W, (long long)C, blocks, us);
        blocksTable += line;
      }
      cudaFree(ty), cudaFree(tdx);
    }
    cudaFree(x), cudaFree(dy), cudaFree(y), cudaFree(dx);
    cudaFree(w), cudaFree(b), cudaFree(dw), cudaFree(db);
  }
  std::printf("total (3 kernels x 4 shapes, one block each): %.1f us\n", total);
  if (tiles)
    std::printf("\nTile shapes (detail::dwconv_tiled), forward and input gradient:\n"
                "| shape | tile | fwd us | dgrad us | max diff vs the library |\n"
                "|---|---|---:|---:|---:|\n%s",
                tileTable.c_str());
  if (tiles)
    std::printf("\nWeight gradient, partial blocks per multiprocessor:\n"
                "| shape | blocks | wgrad+bgrad us |\n|---|---|---:|\n%s",
                blocksTable.c_str());
  cudaFree(ctx.scratch);
  cudaStreamDestroy(ctx.stream);
  return 0;
}
