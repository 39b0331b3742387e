//===- Conv.cpp - ConvNeXt kernels: depth-wise conv, space-to-depth, layer scale -===//
//
// Images are channels-last token tensors [B, H*W, C], row-major over (h, w).
// The depth-wise conv (weight [C, 1, K, K], K odd, zero padding K/2) runs
// over output rows (b, h) in parallel with the channel loop innermost
// (contiguous); its weight is first transposed to [K*K, C] for that loop.
// Parameter gradients (dweight, dbias, dgamma) are sums over every position,
// accumulated in double per channel chunk and written, not accumulated.
// The `_rows` gradients read dy as its SBP kept rows through a keep map
// (RowSource); a dropped position's dy is zero, so the weight gradient skips it.
//
//===----------------------------------------------------------------------===//

#include "KernelSupport.h"
#include "sbp/cpu_kernels.h"
#include "sbp/fused_support.h"

namespace sbp {
namespace cpu {
namespace {

using detail::kColumnChunk;
using detail::kParallelMinElems;

/// The weight [C, 1, K, K] as [K*K, C], in the calling thread's workspace.
const float *tapsByChannel(const float *weight, int64_t C, int64_t K) {
  float *t = detail::threadWorkspace<float>(size_t(K * K * C));
  for (int64_t c = 0; c < C; ++c)
    for (int64_t k = 0; k < K * K; ++k)
      t[k * C + c] = weight[c * K * K + k];
  return t;
}

/// The rows of a [B, H*W, C] input: all of them, or an SBP tensor's kept rows
/// [B, kept, C] at the positions of a keep map (keep[t] = the row of token t,
/// -1: dropped, its row zero).
struct RowSource {
  const float *data;
  int64_t tokens, channels;
  const int32_t *keep = nullptr; // fused::keep_map: the last k wins (scatter_rows' rule)
  int64_t kept = 0;

  /// Row (b, t), or null for a dropped position.
  const float *row(int64_t b, int64_t t) const {
    if (!keep)
      return data + (b * tokens + t) * channels;
    return keep[t] < 0 ? nullptr : data + (b * kept + keep[t]) * channels;
  }
};

/// out[b, h, w, :] (+)= sum over taps of in[b, h + s*(ky - p), w + s*(kx - p), :] * taps[ky, kx, :]
/// with s = +1 (the forward) or -1 (dx: the flipped kernel), zero outside.
void correlate(const RowSource &in, const float *taps, float *out, int64_t B, int64_t H, int64_t W, int64_t C,
               int64_t K, int64_t sign) {
  const int64_t p = K / 2;
#pragma omp parallel for collapse(2) schedule(static) if (B * H * W * C * K >= kParallelMinElems)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t w = 0; w < W; ++w) {
        float *o = out + ((b * H + h) * W + w) * C;
        for (int64_t ky = 0; ky < K; ++ky) {
          const int64_t hh = h + sign * (ky - p);
          if (hh < 0 || hh >= H)
            continue;
          for (int64_t kx = 0; kx < K; ++kx) {
            const int64_t ww = w + sign * (kx - p);
            if (ww < 0 || ww >= W)
              continue;
            const float *x = in.row(b, hh * W + ww);
            if (!x)
              continue;
            const float *t = taps + (ky * K + kx) * C;
#pragma omp simd
            for (int64_t c = 0; c < C; ++c)
              o[c] += x[c] * t[c];
          }
        }
      }
}

void gradInput(const RowSource &dy, const float *weight, float *dx, int64_t B, int64_t H, int64_t W, int64_t C,
               int64_t K) {
  const int64_t n = B * H * W * C;
#pragma omp parallel for schedule(static) if (n >= kParallelMinElems)
  for (int64_t i = 0; i < n; ++i)
    dx[i] = 0.0f;
  correlate(dy, tapsByChannel(weight, C, K), dx, B, H, W, C, K, -1);
}

void gradWeight(const RowSource &dy, const float *x, float *dweight, float *dbias, int64_t B, int64_t H, int64_t W,
                int64_t C, int64_t K) {
  const int64_t p = K / 2;
  const int64_t chunk = 16, chunks = (C + chunk - 1) / chunk;
  // One channel chunk per task: its K*K*chunk sums stay private (no races,
  // the same order every call).
#pragma omp parallel for schedule(dynamic, 1) if (B * H * W * C * K >= kParallelMinElems)
  for (int64_t ci = 0; ci < chunks; ++ci) {
    const int64_t c0 = ci * chunk, n = (c0 + chunk < C ? c0 + chunk : C) - c0;
    double *acc = detail::threadWorkspace<double>(size_t((K * K + 1) * chunk));
    for (int64_t i = 0; i < (K * K + 1) * chunk; ++i)
      acc[i] = 0.0;
    double *db = acc + K * K * chunk;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t w = 0; w < W; ++w) {
          const float *row = dy.row(b, h * W + w);
          if (!row)
            continue;
          const float *g = row + c0;
          for (int64_t c = 0; c < n; ++c)
            db[c] += double(g[c]);
          for (int64_t ky = 0; ky < K; ++ky) {
            const int64_t hh = h + ky - p;
            if (hh < 0 || hh >= H)
              continue;
            for (int64_t kx = 0; kx < K; ++kx) {
              const int64_t ww = w + kx - p;
              if (ww < 0 || ww >= W)
                continue;
              const float *xi = x + ((b * H + hh) * W + ww) * C + c0;
              double *a = acc + (ky * K + kx) * chunk;
#pragma omp simd
              for (int64_t c = 0; c < n; ++c)
                a[c] += double(g[c]) * double(xi[c]);
            }
          }
        }
    for (int64_t c = 0; c < n; ++c) {
      for (int64_t k = 0; k < K * K; ++k)
        dweight[(c0 + c) * K * K + k] = float(acc[k * chunk + c]);
      dbias[c0 + c] = float(db[c]);
    }
  }
}

} // namespace

void dwconv(const float *x, const float *weight, const float *bias, float *y, int64_t batch, int64_t height,
            int64_t width, int64_t channels, int64_t kernel) {
  const int64_t rows = batch * height * width, C = channels;
#pragma omp parallel for schedule(static) if (rows * C >= kParallelMinElems)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < C; ++c)
      y[r * C + c] = bias[c];
  correlate(RowSource{x, height * width, C}, tapsByChannel(weight, C, kernel), y, batch, height, width, C, kernel,
            +1);
}

void dwconv_grad_input(const float *dy, const float *weight, float *dx, int64_t batch, int64_t height,
                       int64_t width, int64_t channels, int64_t kernel) {
  gradInput(RowSource{dy, height * width, channels}, weight, dx, batch, height, width, channels, kernel);
}

void dwconv_grad_weight(const float *dy, const float *x, float *dweight, float *dbias, int64_t batch,
                        int64_t height, int64_t width, int64_t channels, int64_t kernel) {
  gradWeight(RowSource{dy, height * width, channels}, x, dweight, dbias, batch, height, width, channels, kernel);
}

void dwconv_grad_input_rows(const float *dyk, const int32_t *idx, int64_t kept, const float *weight, float *dx,
                            int64_t batch, int64_t height, int64_t width, int64_t channels, int64_t kernel) {
  const int64_t T = height * width;
  const std::vector<int32_t> keep = fused::keep_map(idx, kept, T);
  gradInput(RowSource{dyk, T, channels, keep.data(), kept}, weight, dx, batch, height, width, channels, kernel);
}

void dwconv_grad_weight_rows(const float *dyk, const int32_t *idx, int64_t kept, const float *x, float *dweight,
                             float *dbias, int64_t batch, int64_t height, int64_t width, int64_t channels,
                             int64_t kernel) {
  const int64_t T = height * width;
  const std::vector<int32_t> keep = fused::keep_map(idx, kept, T);
  gradWeight(RowSource{dyk, T, channels, keep.data(), kept}, x, dweight, dbias, batch, height, width, channels,
             kernel);
}

/// Calls f(input offset, output offset) for every element: output token
/// (i, j) of the (H/s) x (W/s) grid, feature c*s*s + dy*s + dx, is input
/// token (s*i + dy, s*j + dx), channel c.
template <typename F>
static void forEachSpaceToDepth(int64_t B, int64_t H, int64_t W, int64_t C, int64_t s, F f) {
  const int64_t Ho = H / s, Wo = W / s, D = C * s * s;
#pragma omp parallel for collapse(2) schedule(static) if (B * H * W * C >= kParallelMinElems)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < Ho * Wo; ++t) {
      const int64_t i = t / Wo, j = t % Wo;
      for (int64_t dy = 0; dy < s; ++dy)
        for (int64_t dx = 0; dx < s; ++dx) {
          const int64_t in = ((b * H + s * i + dy) * W + s * j + dx) * C;
          const int64_t out = (b * Ho * Wo + t) * D + dy * s + dx;
          for (int64_t c = 0; c < C; ++c)
            f(in + c, out + c * s * s);
        }
    }
}

void space_to_depth(const float *x, float *y, int64_t batch, int64_t height, int64_t width, int64_t channels,
                    int64_t block) {
  forEachSpaceToDepth(batch, height, width, channels, block, [&](int64_t i, int64_t o) { y[o] = x[i]; });
}

void space_to_depth_grad(const float *dy, float *dx, int64_t batch, int64_t height, int64_t width,
                         int64_t channels, int64_t block) {
  forEachSpaceToDepth(batch, height, width, channels, block, [&](int64_t i, int64_t o) { dx[i] = dy[o]; });
}

void space_to_depth_grad_rows(const float *dyk, const int32_t *idx, int64_t kept, float *dx, int64_t batch,
                              int64_t height, int64_t width, int64_t channels, int64_t block) {
  const int64_t tokens = (height / block) * (width / block), D = channels * block * block;
  const std::vector<int32_t> keep = fused::keep_map(idx, kept, tokens);
  forEachSpaceToDepth(batch, height, width, channels, block, [&](int64_t i, int64_t o) {
    const int64_t row = o / D, t = row % tokens;
    dx[i] = keep[t] < 0 ? 0.0f : dyk[((row / tokens) * kept + keep[t]) * D + o % D];
  });
}

void layer_scale(const float *x, const float *gamma, float *y, int64_t rows, int64_t n) {
#pragma omp parallel for schedule(static) if (rows * n >= kParallelMinElems)
  for (int64_t r = 0; r < rows; ++r) {
#pragma omp simd
    for (int64_t j = 0; j < n; ++j)
      y[r * n + j] = x[r * n + j] * gamma[j];
  }
}

void layer_scale_grad(const float *dy, const float *x, const float *gamma, float *dx, float *dgamma, int64_t rows,
                      int64_t n) {
  // dgamma first: dx may alias dy (elementwise in place).
  const int64_t chunks = (n + kColumnChunk - 1) / kColumnChunk;
#pragma omp parallel for schedule(static) if (rows * n >= kParallelMinElems)
  for (int64_t ci = 0; ci < chunks; ++ci) {
    const int64_t c0 = ci * kColumnChunk, c1 = c0 + kColumnChunk < n ? c0 + kColumnChunk : n;
    double acc[kColumnChunk] = {};
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = c0; j < c1; ++j)
        acc[j - c0] += double(dy[r * n + j]) * double(x[r * n + j]);
    for (int64_t j = c0; j < c1; ++j)
      dgamma[j] = float(acc[j - c0]);
  }
  layer_scale(dy, gamma, dx, rows, n);
}

} // namespace cpu
} // namespace sbp
