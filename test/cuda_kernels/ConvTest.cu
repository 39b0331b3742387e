//===- ConvTest.cu - depth-wise conv, space-to-depth, layer scale vs double -===//
//
// The ConvNeXt kernels of codegen/cuda/src/conv_{f32,bf16}.cu (dwconv,
// dwconv_grad_input, dwconv_grad_weight, space_to_depth(_grad),
// layer_scale(_grad)) against naive double-precision references written
// here on NCHW copies of the inputs, straight from the definitions (the
// input gradient as a sum over the outputs each input feeds, not as the
// flipped convolution the kernels use). Inputs are rounded to the tested
// element type first, so a float output is compared at float accuracy and a
// bf16 output within bf16 rounding. Outputs are NaN-poisoned before each
// call: a missed element fails. Shapes cover K = 1, 3, 5, 7, 9, H and W
// that are not multiples of the 8x8 or 16x7 tiles (and smaller than K), C not a
// multiple of the 32-channel group nor of the vector widths (odd C too),
// misaligned pointers, batch 1, and several weight-gradient partial blocks.
// The _rows gradients take dy as SBP kept rows (single positions or 2x2 /
// 4x4 cells, a padding entry and a repeated index) and are checked on the
// scattered dy.
//
//===----------------------------------------------------------------------===//

#include "Bf16TestSupport.h"
#include "detail/conv.cuh" // detail::dwconv_tiled, ConvTile: every library tile

#include <string>
#include <type_traits>

namespace sbp::cuda::test {
namespace {

using DVec = std::vector<double>;

struct ConvShape {
  int64_t B, H, W, C, K;
  size_t offset = 0; // elements of slack in front of every activation
};

std::string str(const ConvShape &s) {
  return "B=" + std::to_string(s.B) + " H=" + std::to_string(s.H) +
         " W=" + std::to_string(s.W) + " C=" + std::to_string(s.C) +
         " K=" + std::to_string(s.K) + " offset=" + std::to_string(s.offset);
}

/// Tokens [B, H*W, C] <-> NCHW.
DVec toNchw(const Vec &t, int64_t B, int64_t H, int64_t W, int64_t C) {
  DVec n(t.size());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t w = 0; w < W; ++w)
          n[((b * C + c) * H + h) * W + w] = t[((b * H + h) * W + w) * C + c];
  return n;
}
Vec fromNchw(const DVec &n, int64_t B, int64_t H, int64_t W, int64_t C) {
  Vec t(n.size());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t w = 0; w < W; ++w)
          t[((b * H + h) * W + w) * C + c] = float(n[((b * C + c) * H + h) * W + w]);
  return t;
}

/// y[b,c,h,w] = bias[c] + sum w[c,ky,kx] x[b,c,h+ky-P,w+kx-P] (zero padding).
DVec refConv(const DVec &x, const Vec &wt, const Vec &bias, const ConvShape &s) {
  const int64_t P = s.K / 2;
  DVec y(x.size());
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t c = 0; c < s.C; ++c)
      for (int64_t h = 0; h < s.H; ++h)
        for (int64_t w = 0; w < s.W; ++w) {
          double acc = bias[c];
          for (int64_t ky = 0; ky < s.K; ++ky)
            for (int64_t kx = 0; kx < s.K; ++kx) {
              const int64_t hy = h + ky - P, wx = w + kx - P;
              if (hy >= 0 && hy < s.H && wx >= 0 && wx < s.W)
                acc += double(wt[(c * s.K + ky) * s.K + kx]) *
                       x[((b * s.C + c) * s.H + hy) * s.W + wx];
            }
          y[((b * s.C + c) * s.H + h) * s.W + w] = acc;
        }
  return y;
}

/// dx = sum over the outputs each input feeds: output (h, w) reads input
/// (h+ky-P, w+kx-P), so dx[that input] += w[ky,kx] dy[h, w].
DVec refGradInput(const DVec &dy, const Vec &wt, const ConvShape &s) {
  const int64_t P = s.K / 2;
  DVec dx(dy.size(), 0.0);
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t c = 0; c < s.C; ++c)
      for (int64_t h = 0; h < s.H; ++h)
        for (int64_t w = 0; w < s.W; ++w)
          for (int64_t ky = 0; ky < s.K; ++ky)
            for (int64_t kx = 0; kx < s.K; ++kx) {
              const int64_t hy = h + ky - P, wx = w + kx - P;
              if (hy >= 0 && hy < s.H && wx >= 0 && wx < s.W)
                dx[((b * s.C + c) * s.H + hy) * s.W + wx] +=
                    double(wt[(c * s.K + ky) * s.K + kx]) *
                    dy[((b * s.C + c) * s.H + h) * s.W + w];
            }
  return dx;
}

/// dw[c,ky,kx] = sum dy[b,c,h,w] x[b,c,h+ky-P,w+kx-P]; db[c] = sum dy.
void refGradWeight(const DVec &dy, const DVec &x, const ConvShape &s, Vec &dw,
                   Vec &db) {
  const int64_t P = s.K / 2;
  dw.assign(size_t(s.C * s.K * s.K), 0.0f);
  db.assign(size_t(s.C), 0.0f);
  for (int64_t c = 0; c < s.C; ++c) {
    double sb = 0.0;
    std::vector<double> sw(size_t(s.K * s.K), 0.0);
    for (int64_t b = 0; b < s.B; ++b)
      for (int64_t h = 0; h < s.H; ++h)
        for (int64_t w = 0; w < s.W; ++w) {
          const double g = dy[((b * s.C + c) * s.H + h) * s.W + w];
          sb += g;
          for (int64_t ky = 0; ky < s.K; ++ky)
            for (int64_t kx = 0; kx < s.K; ++kx) {
              const int64_t hy = h + ky - P, wx = w + kx - P;
              if (hy >= 0 && hy < s.H && wx >= 0 && wx < s.W)
                sw[size_t(ky * s.K + kx)] +=
                    g * x[((b * s.C + c) * s.H + hy) * s.W + wx];
            }
        }
    db[size_t(c)] = float(sb);
    for (int64_t t = 0; t < s.K * s.K; ++t)
      dw[size_t(c * s.K * s.K + t)] = float(sw[size_t(t)]);
  }
}

const std::vector<ConvShape> &convShapes() {
  static const std::vector<ConvShape> shapes = {
      {2, 9, 11, 40, 7},    // partial tiles, partial channel group, vec path
      {1, 5, 3, 6, 3},      // batch 1, W < K, C not a multiple of 4
      {3, 16, 16, 32, 5},   // exact tiles and group
      {1, 7, 7, 13, 7},     // odd C: no pair stores
      {2, 10, 9, 64, 7, 1}, // misaligned: scalar loads and stores
      {2, 6, 5, 8, 9},      // K = 9: direct kernels
      {1, 4, 4, 3, 1},      // K = 1
      {4, 28, 28, 96, 7},   // ConvNeXt stage 2 width, several wgrad parts
      {2, 14, 14, 384, 7},  // stage 3 width
      {3, 7, 7, 768, 7},    // stage 4: one partial tile per image
  };
  return shapes;
}

/// SBP keep indices over the H*W positions: each position kept with
/// probability 1/2 (fixed seed), cell x cell blocks at a time (cell 1:
/// single positions), ascending; then a padding entry and a repeat of the
/// first kept position (a repeated index takes its last row).
std::vector<int32_t> keptPositions(const ConvShape &s, int cell, uint32_t seed) {
  std::vector<int32_t> idx;
  uint32_t state = seed;
  const int64_t ch = (s.H + cell - 1) / cell, cw = (s.W + cell - 1) / cell;
  std::vector<char> keepCell(size_t(ch * cw));
  for (char &k : keepCell) {
    state = state * 1664525u + 1013904223u;
    k = (state >> 16) & 1;
  }
  for (int64_t h = 0; h < s.H; ++h)
    for (int64_t w = 0; w < s.W; ++w)
      if (keepCell[size_t((h / cell) * cw + w / cell)])
        idx.push_back(int32_t(h * s.W + w));
  idx.push_back(-1);
  if (!idx.empty() && idx[0] >= 0)
    idx.push_back(idx[0]);
  return idx;
}

/// The full dy [B, H*W, C] of kept rows dyk [B, kept, C] at idx (zero
/// elsewhere; a repeated index: its last row).
Vec scatterKept(const Vec &dyk, const std::vector<int32_t> &idx,
                const ConvShape &s) {
  const int64_t T = s.H * s.W, K = int64_t(idx.size());
  Vec dy(size_t(s.B * T * s.C), 0.0f);
  for (int64_t b = 0; b < s.B; ++b)
    for (int64_t k = 0; k < K; ++k)
      if (idx[size_t(k)] >= 0 && idx[size_t(k)] < T)
        for (int64_t c = 0; c < s.C; ++c)
          dy[size_t((b * T + idx[size_t(k)]) * s.C + c)] =
              dyk[size_t((b * K + k) * s.C + c)];
  return dy;
}

class ConvTest : public CudaKernelTest {
protected:
  template <class TX, class TY> void checkForward(const ConvShape &s);
  template <class TG, class TD> void checkGradInput(const ConvShape &s);
  template <class TG, class TX> void checkGradWeight(const ConvShape &s);
  template <class TG, class TD>
  void checkGradsOfKeptRows(const ConvShape &s, int cell);
};

/// The _rows gradients (dy as its kept rows) against the double references
/// on the scattered dy, dx also against the dense kernel on it (the same
/// tiles and sums: equal values), and deterministic.
template <class TG, class TD>
void ConvTest::checkGradsOfKeptRows(const ConvShape &s, int cell) {
  SCOPED_TRACE(str(s) + " cell " + std::to_string(cell) + " dy " +
               typeName((TG *)nullptr) + " dx/x " + typeName((TD *)nullptr));
  const std::vector<int32_t> idx = keptPositions(s, cell, uint32_t(s.H * 31 + s.C));
  const int64_t kept = int64_t(idx.size());
  const size_t n = size_t(s.B * s.H * s.W * s.C);
  const Vec dyk = asStored<TG>(randomVec(size_t(s.B * kept * s.C), 51));
  const Vec dy = scatterKept(dyk, idx, s);
  const Vec x = asStored<TD>(randomVec(n, 52));
  const Vec wt = randomVec(size_t(s.C * s.K * s.K), 53, -0.5f, 0.5f);
  Tensor<TG> dDyk(dyk, s.offset), dDy(dy, s.offset);
  Tensor<TD> dDx(n, s.offset), dDxDense(n, s.offset), dX(x, s.offset);
  DeviceArray<int32_t> dIdx(idx);
  DeviceArray<float> dW(wt);
  dwconv_grad_input_rows(ctx, dDyk.get(), dIdx.get(), kept, dW.get(),
                         dDx.get(), s.B, s.H, s.W, s.C, s.K);
  dwconv_grad_input(ctx, dDy.get(), dW.get(), dDxDense.get(), s.B, s.H, s.W,
                    s.C, s.K);
  sync();
  const DVec dyn = toNchw(dy, s.B, s.H, s.W, s.C);
  const Vec wantDx = fromNchw(refGradInput(dyn, wt, s), s.B, s.H, s.W, s.C);
  EXPECT_TRUE(maxRelBelow(dDx.download(), wantDx, outTol<TD>()));
  EXPECT_EQ(dDx.download(), dDxDense.download());

  FTensor dWg(size_t(s.C * s.K * s.K)), dBg(size_t(s.C));
  dwconv_grad_weight_rows(ctx, dDyk.get(), dIdx.get(), kept, dX.get(),
                          dWg.get(), dBg.get(), s.B, s.H, s.W, s.C, s.K);
  sync();
  Vec wantW, wantB;
  refGradWeight(dyn, toNchw(x, s.B, s.H, s.W, s.C), s, wantW, wantB);
  EXPECT_TRUE(maxRelBelow(dWg.download(), wantW, 2e-5));
  EXPECT_TRUE(maxRelBelow(dBg.download(), wantB, 2e-5));
  const std::vector<uint32_t> first = dWg.bits();
  dWg.poison();
  dwconv_grad_weight_rows(ctx, dDyk.get(), dIdx.get(), kept, dX.get(),
                          dWg.get(), dBg.get(), s.B, s.H, s.W, s.C, s.K);
  sync();
  EXPECT_EQ(dWg.bits(), first);
}

template <class TX, class TY> void ConvTest::checkForward(const ConvShape &s) {
  SCOPED_TRACE(str(s) + " x " + typeName((TX *)nullptr) + " y " +
               typeName((TY *)nullptr));
  const size_t n = size_t(s.B * s.H * s.W * s.C);
  const Vec x = asStored<TX>(randomVec(n, 11));
  const Vec wt = randomVec(size_t(s.C * s.K * s.K), 12, -0.5f, 0.5f);
  const Vec bias = randomVec(size_t(s.C), 13);
  Tensor<TX> dX(x, s.offset);
  Tensor<TY> dY(n, s.offset);
  DeviceArray<float> dW(wt), dB(bias);
  dwconv(ctx, dX.get(), dW.get(), dB.get(), dY.get(), s.B, s.H, s.W, s.C, s.K);
  sync();
  const Vec want =
      fromNchw(refConv(toNchw(x, s.B, s.H, s.W, s.C), wt, bias, s), s.B, s.H,
               s.W, s.C);
  EXPECT_TRUE(maxRelBelow(dY.download(), want, outTol<TY>()));
}

template <class TG, class TD>
void ConvTest::checkGradInput(const ConvShape &s) {
  SCOPED_TRACE(str(s) + " dy " + typeName((TG *)nullptr) + " dx " +
               typeName((TD *)nullptr));
  const size_t n = size_t(s.B * s.H * s.W * s.C);
  const Vec dy = asStored<TG>(randomVec(n, 21));
  const Vec wt = randomVec(size_t(s.C * s.K * s.K), 22, -0.5f, 0.5f);
  Tensor<TG> dDy(dy, s.offset);
  Tensor<TD> dDx(n, s.offset);
  DeviceArray<float> dW(wt);
  dwconv_grad_input(ctx, dDy.get(), dW.get(), dDx.get(), s.B, s.H, s.W, s.C,
                    s.K);
  sync();
  const Vec want = fromNchw(
      refGradInput(toNchw(dy, s.B, s.H, s.W, s.C), wt, s), s.B, s.H, s.W, s.C);
  EXPECT_TRUE(maxRelBelow(dDx.download(), want, outTol<TD>()));
}

template <class TG, class TX>
void ConvTest::checkGradWeight(const ConvShape &s) {
  SCOPED_TRACE(str(s) + " dy " + typeName((TG *)nullptr) + " x " +
               typeName((TX *)nullptr));
  const size_t n = size_t(s.B * s.H * s.W * s.C);
  const Vec dy = asStored<TG>(randomVec(n, 31));
  const Vec x = asStored<TX>(randomVec(n, 32));
  Tensor<TG> dDy(dy, s.offset);
  Tensor<TX> dX(x, s.offset);
  FTensor dW(size_t(s.C * s.K * s.K)), dB(size_t(s.C));
  dwconv_grad_weight(ctx, dDy.get(), dX.get(), dW.get(), dB.get(), s.B, s.H,
                     s.W, s.C, s.K);
  sync();
  Vec wantW, wantB;
  refGradWeight(toNchw(dy, s.B, s.H, s.W, s.C), toNchw(x, s.B, s.H, s.W, s.C),
                s, wantW, wantB);
  // Float sums of up to a few thousand products per thread.
  EXPECT_TRUE(maxRelBelow(dW.download(), wantW, 2e-5));
  EXPECT_TRUE(maxRelBelow(dB.download(), wantB, 2e-5));
  // Deterministic: a second call gives the same bits.
  const std::vector<uint32_t> first = dW.bits(), firstB = dB.bits();
  dW.poison();
  dB.poison();
  dwconv_grad_weight(ctx, dDy.get(), dX.get(), dW.get(), dB.get(), s.B, s.H,
                     s.W, s.C, s.K);
  sync();
  EXPECT_EQ(dW.bits(), first);
  EXPECT_EQ(dB.bits(), firstB);
}

TEST_F(ConvTest, DwconvForward) {
  for (const ConvShape &s : convShapes()) {
    checkForward<float, float>(s);
    checkForward<__nv_bfloat16, __nv_bfloat16>(s);
  }
  checkForward<__nv_bfloat16, float>(convShapes()[0]);
  checkForward<float, __nv_bfloat16>(convShapes()[3]);
}

TEST_F(ConvTest, DwconvGradInput) {
  for (const ConvShape &s : convShapes()) {
    checkGradInput<float, float>(s);
    checkGradInput<__nv_bfloat16, __nv_bfloat16>(s);
  }
  checkGradInput<__nv_bfloat16, float>(convShapes()[1]);
}

TEST_F(ConvTest, DwconvGradWeight) {
  for (const ConvShape &s : convShapes()) {
    checkGradWeight<float, float>(s);
    checkGradWeight<__nv_bfloat16, __nv_bfloat16>(s);
  }
  checkGradWeight<__nv_bfloat16, float>(convShapes()[0]);
}

TEST_F(ConvTest, DwconvGradsOfKeptRows) {
  for (const ConvShape &s : convShapes())
    for (int cell : {1, 2, 4}) {
      checkGradsOfKeptRows<float, float>(s, cell);
      checkGradsOfKeptRows<__nv_bfloat16, __nv_bfloat16>(s, cell);
    }
  // The SBP trainer's combination: float kept rows, bf16 dx and x.
  checkGradsOfKeptRows<float, __nv_bfloat16>(convShapes()[7], 4);
}

/// Each forward / input-gradient tile of the library (dwconv_tile_for picks
/// one per image size) on shape s gives the bits of the library's own call:
/// dense and kept-row input gradients, bf16 and float.
template <class T>
void checkEveryTile(const Context &c, const ConvShape &s, int cell) {
  using namespace sbp::cuda::detail;
  SCOPED_TRACE(str(s) + " " + typeName((T *)nullptr));
  const size_t n = size_t(s.B * s.H * s.W * s.C);
  const std::vector<int32_t> idx = keptPositions(s, cell, 7);
  const int64_t kept = int64_t(idx.size());
  Tensor<T> dXin(randomVec(n, 61), s.offset), dDyk(randomVec(size_t(s.B * kept * s.C), 62), s.offset);
  DeviceArray<float> dW(randomVec(size_t(s.C * s.K * s.K), 63, -0.5f, 0.5f));
  DeviceArray<float> dB(randomVec(size_t(s.C), 64));
  DeviceArray<int32_t> dIdx(idx);
  Tensor<T> y(n, s.offset), dx(n, s.offset), dxk(n, s.offset);
  dwconv(c, dXin.get(), dW.get(), dB.get(), y.get(), s.B, s.H, s.W, s.C, s.K);
  dwconv_grad_input(c, dXin.get(), dW.get(), dx.get(), s.B, s.H, s.W, s.C, s.K);
  dwconv_grad_input_rows(c, dDyk.get(), dIdx.get(), kept, dW.get(), dxk.get(),
                         s.B, s.H, s.W, s.C, s.K);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const auto same = [&](auto tile) {
    using Tile = decltype(tile);
    SCOPED_TRACE(std::to_string(Tile::TH) + "x" + std::to_string(Tile::TW));
    Tensor<T> ty(n, s.offset), tdx(n, s.offset), tdxk(n, s.offset);
    dwconv_tiled<Tile, false>(c, "dwconv", dXin.get(), dW.get(), dB.get(),
                              ty.get(), s.B, s.H, s.W, s.C, s.K, nullptr, -1);
    dwconv_tiled<Tile, true>(c, "dwconv_grad_input", dXin.get(), dW.get(),
                             static_cast<const float *>(nullptr), tdx.get(),
                             s.B, s.H, s.W, s.C, s.K, nullptr, -1);
    dwconv_tiled<Tile, true>(c, "dwconv_grad_input_rows", dDyk.get(), dW.get(),
                             static_cast<const float *>(nullptr), tdxk.get(),
                             s.B, s.H, s.W, s.C, s.K, dIdx.get(), kept);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    EXPECT_EQ(ty.bits(), y.bits());
    EXPECT_EQ(tdx.bits(), dx.bits());
    EXPECT_EQ(tdxk.bits(), dxk.bits());
  };
  same(ConvTile<8, 8, 4>{});
  same(ConvTile<16, 7, 7>{});
}

TEST_F(ConvTest, DwconvEveryTileGivesTheSameBits) {
  for (const ConvShape &s : convShapes())
    if (s.K == 3 || s.K == 5 || s.K == 7) {
      checkEveryTile<float>(ctx, s, 2);
      checkEveryTile<__nv_bfloat16>(ctx, s, 2);
    }
}

TEST_F(ConvTest, DwconvGradsOfNoKeptRowAreZero) {
  const ConvShape s{2, 9, 9, 40, 7};
  const size_t n = size_t(s.B * s.H * s.W * s.C);
  FTensor dyk(1), dx(n), x(n), dW(size_t(s.C * 49)), dB(size_t(s.C));
  DeviceArray<int32_t> idx(std::vector<int32_t>{5});
  DeviceArray<float> w(Vec(size_t(s.C * 49), 1.0f));
  dwconv_grad_input_rows(ctx, dyk.get(), idx.get(), 0, w.get(), dx.get(), s.B,
                         s.H, s.W, s.C, s.K);
  dwconv_grad_weight_rows(ctx, dyk.get(), idx.get(), 0, x.get(), dW.get(),
                          dB.get(), s.B, s.H, s.W, s.C, s.K);
  sync();
  EXPECT_EQ(dx.download(), Vec(n, 0.0f));
  EXPECT_EQ(dW.download(), Vec(size_t(s.C * 49), 0.0f));
  EXPECT_EQ(dB.download(), Vec(size_t(s.C), 0.0f));
}

TEST_F(ConvTest, DwconvGradWeightEmptyIsZero) {
  FTensor dW(49 * 5), dB(5);
  dwconv_grad_weight(ctx, static_cast<const float *>(nullptr),
                     static_cast<const float *>(nullptr), dW.get(), dB.get(),
                     0, 4, 4, 5, 7);
  sync();
  EXPECT_EQ(dW.download(), Vec(49 * 5, 0.0f));
  EXPECT_EQ(dB.download(), Vec(5, 0.0f));
}

TEST_F(ConvTest, DwconvRejectsEvenKernel) {
  FTensor x(2 * 4 * 4 * 3), y(2 * 4 * 4 * 3);
  DeviceArray<float> w(3 * 16);
  dwconv(ctx, x.get(), w.get(), static_cast<const float *>(nullptr), y.get(),
         2, 4, 4, 3, 4);
  cudaStreamSynchronize(ctx.stream);
  char err[256] = {};
  EXPECT_NE(last_error(err, sizeof(err)), 0);
  EXPECT_NE(std::string(err).find("dwconv"), std::string::npos) << err;
}

/// y token (i, j), feature c*s*s + dy*s + dx = x token (s*i+dy, s*j+dx), channel c.
template <class TX, class TY>
void checkSpaceToDepth(ConvTest &, const Context &ctx, int64_t B, int64_t H,
                       int64_t W, int64_t C, int64_t s) {
  SCOPED_TRACE("B=" + std::to_string(B) + " H=" + std::to_string(H) +
               " W=" + std::to_string(W) + " C=" + std::to_string(C) +
               " s=" + std::to_string(s) + " " + typeName((TX *)nullptr) +
               " -> " + typeName((TY *)nullptr));
  const size_t n = size_t(B * H * W * C);
  const Vec x = asStored<TX>(randomVec(n, 41));
  const DVec xn = toNchw(x, B, H, W, C);
  const int64_t Ho = H / s, Wo = W / s, D = C * s * s;
  DVec yn(n);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t dy = 0; dy < s; ++dy)
        for (int64_t dx = 0; dx < s; ++dx)
          for (int64_t i = 0; i < Ho; ++i)
            for (int64_t j = 0; j < Wo; ++j)
              yn[((b * D + c * s * s + dy * s + dx) * Ho + i) * Wo + j] =
                  xn[((b * C + c) * H + i * s + dy) * W + j * s + dx];
  const Vec want = asStored<TY>(fromNchw(yn, B, Ho, Wo, D));
  Tensor<TX> dX(x);
  Tensor<TY> dY(n);
  space_to_depth(ctx, dX.get(), dY.get(), B, H, W, C, s);
  EXPECT_EQ(cudaStreamSynchronize(ctx.stream), cudaSuccess);
  EXPECT_EQ(dY.download(), want);
  // The gradient is the inverse permutation: back to x exactly.
  Tensor<TX> dBack(n);
  Tensor<TY> dYs(want);
  space_to_depth_grad(ctx, dYs.get(), dBack.get(), B, H, W, C, s);
  EXPECT_EQ(cudaStreamSynchronize(ctx.stream), cudaSuccess);
  EXPECT_EQ(dBack.download(), asStored<TX>(asStored<TY>(x)));
}

/// space_to_depth_grad_rows (dy as the kept rows of the output tokens)
/// equals space_to_depth_grad of the scattered dy: pure moves, equal bits.
template <class TG, class TD>
void checkSpaceToDepthGradRows(const Context &ctx, int64_t B, int64_t H,
                               int64_t W, int64_t C, int64_t s, int cell) {
  SCOPED_TRACE("B=" + std::to_string(B) + " H=" + std::to_string(H) +
               " W=" + std::to_string(W) + " C=" + std::to_string(C) +
               " s=" + std::to_string(s) + " " + typeName((TG *)nullptr) +
               " -> " + typeName((TD *)nullptr));
  const ConvShape grid{B, H / s, W / s, C * s * s, 1};
  const std::vector<int32_t> idx = keptPositions(grid, cell, uint32_t(H * 7 + C));
  const int64_t kept = int64_t(idx.size()), D = C * s * s;
  const Vec dyk = asStored<TG>(randomVec(size_t(B * kept * D), 61));
  const Vec dy = scatterKept(dyk, idx, grid);
  const size_t n = size_t(B * H * W * C);
  Tensor<TG> dDyk(dyk), dDy(dy);
  Tensor<TD> got(n), want(n);
  DeviceArray<int32_t> dIdx(idx);
  space_to_depth_grad_rows(ctx, dDyk.get(), dIdx.get(), kept, got.get(), B, H,
                           W, C, s);
  space_to_depth_grad(ctx, dDy.get(), want.get(), B, H, W, C, s);
  EXPECT_EQ(cudaStreamSynchronize(ctx.stream), cudaSuccess);
  EXPECT_EQ(got.bits(), want.bits());
}

TEST_F(ConvTest, SpaceToDepthGradOfKeptRows) {
  checkSpaceToDepthGradRows<float, float>(ctx, 2, 8, 8, 24, 2, 1);
  checkSpaceToDepthGradRows<__nv_bfloat16, __nv_bfloat16>(ctx, 3, 28, 28, 96, 2, 2);
  checkSpaceToDepthGradRows<__nv_bfloat16, float>(ctx, 1, 12, 6, 5, 3, 1);
}

TEST_F(ConvTest, SpaceToDepth) {
  checkSpaceToDepth<float, float>(*this, ctx, 2, 8, 8, 24, 2);
  checkSpaceToDepth<float, float>(*this, ctx, 1, 6, 9, 3, 3);
  checkSpaceToDepth<float, float>(*this, ctx, 1, 4, 2, 5, 1);
  checkSpaceToDepth<__nv_bfloat16, __nv_bfloat16>(*this, ctx, 2, 56, 56, 96, 2);
  checkSpaceToDepth<__nv_bfloat16, __nv_bfloat16>(*this, ctx, 3, 2, 4, 7, 2);
  checkSpaceToDepth<float, __nv_bfloat16>(*this, ctx, 1, 4, 6, 9, 2);
  sync();
}

TEST_F(ConvTest, SpaceToDepthRejectsOddGrid) {
  FTensor x(2 * 5 * 4 * 3), y(2 * 5 * 4 * 3);
  space_to_depth(ctx, x.get(), y.get(), 2, 5, 4, 3, 2);
  cudaStreamSynchronize(ctx.stream);
  char err[256] = {};
  EXPECT_NE(last_error(err, sizeof(err)), 0);
  EXPECT_NE(std::string(err).find("space_to_depth"), std::string::npos) << err;
}

template <class TX, class TY>
void checkLayerScale(const Context &ctx, int64_t rows, int64_t n,
                     size_t offset) {
  SCOPED_TRACE("rows=" + std::to_string(rows) + " n=" + std::to_string(n) +
               " offset=" + std::to_string(offset) + " " +
               typeName((TX *)nullptr) + " -> " + typeName((TY *)nullptr));
  const Vec x = asStored<TX>(randomVec(size_t(rows * n), 51));
  const Vec g = randomVec(size_t(n), 52);
  Vec want(x.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j)
      want[size_t(r * n + j)] = float(double(x[size_t(r * n + j)]) * g[size_t(j)]);
  Tensor<TX> dX(x, offset);
  Tensor<TY> dY(x.size(), offset);
  DeviceArray<float> dG(g);
  layer_scale(ctx, dX.get(), dG.get(), dY.get(), rows, n);
  EXPECT_EQ(cudaStreamSynchronize(ctx.stream), cudaSuccess);
  EXPECT_TRUE(maxRelBelow(dY.download(), want, outTol<TY>(1e-6)));
}

template <class TG, class TX, class TD>
void checkLayerScaleGrad(const Context &ctx, int64_t rows, int64_t n) {
  SCOPED_TRACE("rows=" + std::to_string(rows) + " n=" + std::to_string(n) +
               " dy " + typeName((TG *)nullptr) + " x " +
               typeName((TX *)nullptr) + " dx " + typeName((TD *)nullptr));
  const Vec dy = asStored<TG>(randomVec(size_t(rows * n), 61));
  const Vec x = asStored<TX>(randomVec(size_t(rows * n), 62));
  const Vec g = randomVec(size_t(n), 63);
  Vec wantDx(dy.size()), wantDg(static_cast<size_t>(n));
  for (int64_t j = 0; j < n; ++j) {
    double s = 0.0;
    for (int64_t r = 0; r < rows; ++r) {
      const size_t i = size_t(r * n + j);
      wantDx[i] = float(double(dy[i]) * g[size_t(j)]);
      s += double(dy[i]) * x[i];
    }
    wantDg[size_t(j)] = float(s);
  }
  Tensor<TG> dDy(dy);
  Tensor<TX> dX(x);
  Tensor<TD> dDx(dy.size());
  DeviceArray<float> dG(g);
  FTensor dDg(static_cast<size_t>(n));
  layer_scale_grad(ctx, dDy.get(), dX.get(), dG.get(), dDx.get(), dDg.get(),
                   rows, n);
  EXPECT_EQ(cudaStreamSynchronize(ctx.stream), cudaSuccess);
  EXPECT_TRUE(maxRelBelow(dDx.download(), wantDx, outTol<TD>(1e-6)));
  EXPECT_TRUE(maxRelBelow(dDg.download(), wantDg, 1e-6));
}

TEST_F(ConvTest, LayerScale) {
  checkLayerScale<float, float>(ctx, 37, 96, 0);
  checkLayerScale<float, float>(ctx, 37, 13, 0);
  checkLayerScale<float, float>(ctx, 5, 8, 1);
  checkLayerScale<__nv_bfloat16, __nv_bfloat16>(ctx, 37, 96, 0);
  checkLayerScale<__nv_bfloat16, __nv_bfloat16>(ctx, 9, 12, 0);
  checkLayerScale<__nv_bfloat16, __nv_bfloat16>(ctx, 9, 7, 1);
  checkLayerScale<__nv_bfloat16, float>(ctx, 3, 16, 0);
  sync();
}

TEST_F(ConvTest, LayerScaleGrad) {
  checkLayerScaleGrad<float, float, float>(ctx, 1, 5);
  checkLayerScaleGrad<float, float, float>(ctx, 1000, 96);  // several splits
  checkLayerScaleGrad<float, float, float>(ctx, 5000, 7);
  checkLayerScaleGrad<__nv_bfloat16, __nv_bfloat16, __nv_bfloat16>(ctx, 3136, 96);
  checkLayerScaleGrad<__nv_bfloat16, float, __nv_bfloat16>(ctx, 77, 40);
  checkLayerScaleGrad<float, __nv_bfloat16, float>(ctx, 77, 33);
  sync();
}

// drop_path: kept samples scaled, the others zero, against a direct
// reference; vector widths 8/4/1 (n and the offset), in place, keep lists
// keeping none or all, and more samples than gridDim.y holds.
template <class TX, class TY>
void checkDropPath(const Context &ctx, int64_t B, int64_t n, size_t offset,
                   const std::vector<int32_t> &keep) {
  SCOPED_TRACE("B=" + std::to_string(B) + " n=" + std::to_string(n) +
               " offset=" + std::to_string(offset) + " kept " +
               std::to_string(keep.size()) + " " + typeName((TX *)nullptr) +
               " -> " + typeName((TY *)nullptr));
  const float scale = 1.0f / 0.8f;
  const Vec x = asStored<TX>(randomVec(size_t(B * n), 71));
  std::vector<char> kept(size_t(B), 0);
  for (int32_t b : keep)
    if (b >= 0)
      kept[size_t(b)] = 1;
  Vec want(x.size());
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < n; ++j)
      want[size_t(b * n + j)] = kept[size_t(b)] ? x[size_t(b * n + j)] * scale : 0.0f;
  Tensor<TX> dX(x, offset);
  Tensor<TY> dY(x.size(), offset);
  DeviceArray<int32_t> dK(keep);
  drop_path(ctx, dX.get(), dK.get(), dY.get(), B, int64_t(keep.size()), n, scale);
  EXPECT_EQ(cudaStreamSynchronize(ctx.stream), cudaSuccess);
  EXPECT_TRUE(maxRelBelow(dY.download(), want, outTol<TY>(1e-6)));
  if constexpr (std::is_same_v<TX, TY>) {
    drop_path(ctx, dX.get(), dK.get(), dX.get(), B, int64_t(keep.size()), n, scale);
    EXPECT_EQ(cudaStreamSynchronize(ctx.stream), cudaSuccess);
    EXPECT_TRUE(maxRelBelow(dX.download(), want, outTol<TY>(1e-6))) << "in place";
  }
}

TEST_F(ConvTest, DropPath) {
  const std::vector<int32_t> some = {0, 2, 3, -1, -1}, none(5, -1), all = {0, 1, 2, 3, 4};
  for (const auto *keep : {&some, &none, &all}) {
    checkDropPath<float, float>(ctx, 5, 96, 0, *keep);
    checkDropPath<float, float>(ctx, 5, 13, 0, *keep);
    checkDropPath<float, float>(ctx, 5, 8, 1, *keep);
    checkDropPath<__nv_bfloat16, __nv_bfloat16>(ctx, 5, 96, 0, *keep);
    checkDropPath<__nv_bfloat16, __nv_bfloat16>(ctx, 5, 7, 1, *keep);
    checkDropPath<float, __nv_bfloat16>(ctx, 5, 16, 0, *keep);
  }
  std::vector<int32_t> many;
  for (int32_t b = 0; b < 70000; b += 3)
    many.push_back(b);
  many.resize(70000, -1);
  checkDropPath<float, float>(ctx, 70000, 4, 0, many);
  sync();
}

} // namespace
} // namespace sbp::cuda::test
