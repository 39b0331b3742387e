//===- Bf16KernelsTest.cu - The bf16 overloads vs the CPU fp32 kernels ----===//
//
// Every bf16 overload of <sbp/cuda_kernels.h> that --precision=bf16
// trainers call (and the other type combinations) against the CPU fp32
// kernel run on the same, bf16-representable inputs. Outputs are
// NaN-poisoned before each call. Tolerances (max|got - want| / max|want|):
// 1e-2 for a bf16 output (one rounding), the float kernels' own tolerance
// for a float output (1e-5 pointwise; 1e-4 for LayerNorm, reductions and
// softmax gradients, as in the fp32 tests); pure data movement (gathers,
// scatters, token rows, copies between equal types) is bit-exact, and the
// cast kernel matches a host round-to-nearest-even bit for bit.
//
// Sizes and offsets reach every path: 8-wide (16-byte aligned, multiples
// of 8), 4-wide (bf16 offset by 4 elements = 8-byte aligned, or rows that
// are multiples of 4 only), scalar (offset 1 = 2-byte aligned, odd sizes),
// and the scalar tails.
//
//===----------------------------------------------------------------------===//

#include "Bf16TestSupport.h"

#include <numeric>
#include <string>

namespace sbp::cuda::test {
namespace {

using bf = __nv_bfloat16;

const int64_t kSizes[] = {1, 3, 7, 8, 9, 1023, 4097, (int64_t(1) << 20) + 3};
const size_t kOffsets[] = {0, 1, 4};

class Bf16Kernels : public CudaKernelTest {
protected:
  //===--- pointwise --------------------------------------------------------//

  template <class A, class B, class O> void checkAdd(int64_t n, size_t off) {
    SCOPED_TRACE(::testing::Message()
                 << "add " << typeName((A *)nullptr) << " + "
                 << typeName((B *)nullptr) << " -> " << typeName((O *)nullptr)
                 << " n=" << n << " offset=" << off);
    const Vec a = asStored<A>(randomVec(static_cast<size_t>(n), 1)),
              b = asStored<B>(randomVec(static_cast<size_t>(n), 2));
    Vec want(static_cast<size_t>(n)), acc = a;
    cpu::add(a.data(), b.data(), want.data(), n);
    Tensor<A> da(a, off);
    Tensor<B> db(b, off);
    Tensor<O> dout(static_cast<size_t>(n), off);
    add(ctx, da.get(), db.get(), dout.get(), n);
    sync();
    EXPECT_TRUE(maxRelBelow(dout.download(), want, outTol<O>()));
    if constexpr (std::is_same_v<A, O>) { // add_acc, and add in place
      Tensor<A> dacc(a, off);
      add_acc(ctx, dacc.get(), db.get(), n);
      add(ctx, da.get(), db.get(), da.get(), n);
      sync();
      EXPECT_TRUE(maxRelBelow(dacc.download(), want, outTol<O>()))
          << "add_acc";
      EXPECT_TRUE(maxRelBelow(da.download(), want, outTol<O>()))
          << "in place";
    }
  }

  template <class X, class G, class Y> void checkActs(int64_t n, size_t off) {
    SCOPED_TRACE(::testing::Message()
                 << "x " << typeName((X *)nullptr) << ", dy "
                 << typeName((G *)nullptr) << " -> " << typeName((Y *)nullptr)
                 << " n=" << n << " offset=" << off);
    Vec x = asStored<X>(randomVec(static_cast<size_t>(n), 5, -6.0f, 6.0f));
    x[0] = 0.0f; // relu'(0) = 0
    const Vec dy = asStored<G>(randomVec(static_cast<size_t>(n), 6));
    Vec gy(static_cast<size_t>(n)), gdx(static_cast<size_t>(n)), ry(static_cast<size_t>(n)), rdx(static_cast<size_t>(n));
    cpu::gelu(x.data(), gy.data(), n);
    cpu::gelu_grad(x.data(), dy.data(), gdx.data(), n);
    cpu::relu(x.data(), ry.data(), n);
    cpu::relu_grad(x.data(), dy.data(), rdx.data(), n);
    Tensor<X> dX(x, off);
    Tensor<G> dDy(dy, off);
    Tensor<Y> dGy(static_cast<size_t>(n), off), dGdx(static_cast<size_t>(n), off), dRy(static_cast<size_t>(n), off),
        dRdx(static_cast<size_t>(n), off);
    gelu(ctx, dX.get(), dGy.get(), n);
    gelu_grad(ctx, dX.get(), dDy.get(), dGdx.get(), n);
    relu(ctx, dX.get(), dRy.get(), n);
    relu_grad(ctx, dX.get(), dDy.get(), dRdx.get(), n);
    sync();
    EXPECT_TRUE(maxRelBelow(dGy.download(), gy, outTol<Y>())) << "gelu";
    EXPECT_TRUE(maxRelBelow(dGdx.download(), gdx, outTol<Y>()))
        << "gelu_grad";
    // relu and its gradient select a stored value: exact.
    EXPECT_TRUE(maxRelBelow(dRy.download(), asStored<Y>(ry), 1e-30))
        << "relu";
    EXPECT_TRUE(maxRelBelow(dRdx.download(), asStored<Y>(rdx), 1e-30))
        << "relu_grad";
  }

  //===--- broadcasts -------------------------------------------------------//

  template <class X, class Y>
  void checkBiasAdd(int64_t rows, int64_t n, size_t off) {
    SCOPED_TRACE(::testing::Message()
                 << "bias_add " << typeName((X *)nullptr) << " -> "
                 << typeName((Y *)nullptr) << " rows=" << rows << " n=" << n
                 << " offset=" << off);
    const Vec x = asStored<X>(randomVec(static_cast<size_t>(rows * n), 8)),
              b = randomVec(static_cast<size_t>(n), 9);
    Vec want(x.size());
    cpu::bias_add(x.data(), b.data(), want.data(), rows, n);
    Tensor<X> dX(x, off);
    FTensor dB(b, off % 4); // a parameter: float
    Tensor<Y> dY(x.size(), off);
    bias_add(ctx, dX.get(), dB.get(), dY.get(), rows, n);
    sync();
    EXPECT_TRUE(maxRelBelow(dY.download(), want, outTol<Y>()));
  }

  template <class X, class Y>
  void checkPosAdd(int64_t B, int64_t T, int64_t D, size_t off) {
    SCOPED_TRACE(::testing::Message()
                 << "pos_add " << typeName((X *)nullptr) << " -> "
                 << typeName((Y *)nullptr) << " B=" << B << " T=" << T
                 << " D=" << D << " offset=" << off);
    const Vec x = asStored<X>(randomVec(static_cast<size_t>(B * T * D), 10)),
              pos = randomVec(static_cast<size_t>(T * D), 11);
    Vec want(x.size());
    cpu::pos_add(x.data(), pos.data(), want.data(), B, T, D);
    Tensor<X> dX(x, off);
    FTensor dP(pos);
    Tensor<Y> dY(x.size(), off);
    pos_add(ctx, dX.get(), dP.get(), dY.get(), B, T, D);
    sync();
    EXPECT_TRUE(maxRelBelow(dY.download(), want, outTol<Y>()));
  }

  template <class X, class Y>
  void checkMeanTokens(int64_t B, int64_t T, int64_t D, size_t off) {
    SCOPED_TRACE(::testing::Message()
                 << "mean_tokens " << typeName((X *)nullptr) << " -> "
                 << typeName((Y *)nullptr) << " B=" << B << " T=" << T
                 << " D=" << D << " offset=" << off);
    const Vec x = asStored<X>(randomVec(static_cast<size_t>(B * T * D), 12));
    const Vec dy = asStored<X>(randomVec(static_cast<size_t>(B * D), 13));
    Vec y(static_cast<size_t>(B * D)), dx(static_cast<size_t>(B * T * D));
    cpu::mean_tokens(x.data(), y.data(), B, T, D);
    cpu::mean_tokens_grad(dy.data(), dx.data(), B, T, D);
    Tensor<X> dX(x, off), dDy(dy, off);
    Tensor<Y> dY(y.size(), off), dDx(dx.size(), off);
    mean_tokens(ctx, dX.get(), dY.get(), B, T, D);
    mean_tokens_grad(ctx, dDy.get(), dDx.get(), B, T, D);
    sync();
    EXPECT_TRUE(maxRelBelow(dY.download(), y, outTol<Y>(1e-4)))
        << "mean_tokens";
    EXPECT_TRUE(maxRelBelow(dDx.download(), dx, outTol<Y>()))
        << "mean_tokens_grad";
  }

  //===--- LayerNorm --------------------------------------------------------//

  template <class X, class Y>
  void checkLayerNorm(int64_t rows, int64_t n, size_t off) {
    SCOPED_TRACE(::testing::Message()
                 << "layer_norm " << typeName((X *)nullptr) << " -> "
                 << typeName((Y *)nullptr) << " rows=" << rows << " n=" << n
                 << " offset=" << off);
    const Vec x = asStored<X>(randomVec(static_cast<size_t>(rows * n), 20, -3.0f, 5.0f));
    const Vec g = randomVec(static_cast<size_t>(n), 21, 0.5f, 1.5f),
              b = randomVec(static_cast<size_t>(n), 22, -0.5f, 0.5f);
    Vec want(x.size());
    cpu::layer_norm(x.data(), g.data(), b.data(), want.data(), rows, n, 1e-5f);
    Tensor<X> dX(x, off);
    FTensor dG(g), dB(b);
    Tensor<Y> dY(x.size(), off);
    layer_norm(ctx, dX.get(), dG.get(), dB.get(), dY.get(), rows, n, 1e-5f);
    sync();
    EXPECT_TRUE(maxRelBelow(dY.download(), want, outTol<Y>(1e-4)));
  }

  template <class X, class G, class D>
  void checkLayerNormGrad(int64_t rows, int64_t n, size_t off) {
    SCOPED_TRACE(::testing::Message()
                 << "layer_norm_grad x " << typeName((X *)nullptr) << ", dy "
                 << typeName((G *)nullptr) << " -> dx "
                 << typeName((D *)nullptr) << " rows=" << rows << " n=" << n
                 << " offset=" << off);
    const Vec x = asStored<X>(randomVec(static_cast<size_t>(rows * n), 23, -3.0f, 5.0f));
    const Vec dy = asStored<G>(randomVec(static_cast<size_t>(rows * n), 24));
    const Vec g = randomVec(static_cast<size_t>(n), 25, 0.5f, 1.5f);
    Vec dx(x.size()), dg(static_cast<size_t>(n)), db(static_cast<size_t>(n));
    cpu::layer_norm_grad(x.data(), g.data(), dy.data(), dx.data(), dg.data(),
                         db.data(), rows, n, 1e-5f);
    Tensor<X> dX(x, off);
    Tensor<G> dDy(dy, off);
    Tensor<D> dDx(x.size(), off);
    FTensor dGm(g), dDg(static_cast<size_t>(n)), dDb(static_cast<size_t>(n));
    layer_norm_grad(ctx, dX.get(), dGm.get(), dDy.get(), dDx.get(), dDg.get(),
                    dDb.get(), rows, n, 1e-5f);
    sync();
    EXPECT_TRUE(maxRelBelow(dDx.download(), dx, outTol<D>(1e-4))) << "dx";
    EXPECT_TRUE(maxRelBelow(dDg.download(), dg, 1e-4)) << "dgamma";
    EXPECT_TRUE(maxRelBelow(dDb.download(), db, 1e-4)) << "dbeta";
  }

  //===--- softmax cross-entropy --------------------------------------------//

  template <class L, class G> void checkXent(int64_t B, int64_t C) {
    SCOPED_TRACE(::testing::Message()
                 << "softmax_xent logits " << typeName((L *)nullptr)
                 << " -> dlogits " << typeName((G *)nullptr) << " B=" << B
                 << " C=" << C);
    Vec logits = asStored<L>(randomVec(static_cast<size_t>(B * C), uint32_t(B + C), -4, 4));
    IVec labels(static_cast<size_t>(B));
    std::mt19937 gen(uint32_t(B * C));
    for (int64_t r = 0; r < B; ++r)
      labels[static_cast<size_t>(r)] = int32_t(gen() % uint32_t(C));
    for (int64_t r = 0; r < B; r += 3) // some rows right
      logits[static_cast<size_t>(r * C + labels[static_cast<size_t>(r)])] = 9.0f;
    if (C > 2)
      for (int64_t r = 1; r < B; r += 5) { // ties: the first maximum wins
        logits[static_cast<size_t>(r * C + 1)] = 9.5f;
        logits[static_cast<size_t>(r * C + 2)] = 9.5f;
      }
    Vec want(logits.size());
    float wantLoss = 0.0f;
    const int64_t wantCorrect = cpu::softmax_xent(
        logits.data(), labels.data(), &wantLoss, want.data(), B, C, 1.0f);
    Tensor<L> dz(logits);
    Tensor<G> dg(logits.size());
    FTensor dloss(1), dloss2(1);
    DInt dl(labels);
    DeviceArray<int64_t> dcorrect(1), dcorrect2(1);
    softmax_xent(ctx, dz.get(), dl.get(), dloss.get(), dg.get(), B, C, 1.0f,
                 dcorrect.get());
    if constexpr (!std::is_same_v<L, float>) // the nullptr overload
      softmax_xent(ctx, dz.get(), dl.get(), dloss2.get(), nullptr, B, C, 1.0f,
                   dcorrect2.get());
    sync();
    const float loss = dloss.download()[0];
    EXPECT_NEAR(loss, wantLoss, 1e-5 * std::fabs(wantLoss) + 1e-7);
    EXPECT_EQ(dcorrect.download()[0], wantCorrect);
    EXPECT_TRUE(maxRelBelow(dg.download(), want, outTol<G>(1e-4)));
    if constexpr (!std::is_same_v<L, float>) {
      EXPECT_EQ(dloss2.download()[0], loss) << "without dlogits";
      EXPECT_EQ(dcorrect2.download()[0], wantCorrect) << "without dlogits";
    }
  }
};

/// The mask sampler's shape: K entries, `kept` ascending valid tokens, the
/// rest -1 padding at the end.
IVec sampledIdx(int64_t T, int64_t K, int64_t kept, uint32_t seed) {
  IVec all(static_cast<size_t>(T));
  std::iota(all.begin(), all.end(), 0);
  std::mt19937 gen(seed);
  std::shuffle(all.begin(), all.end(), gen);
  IVec idx(all.begin(), all.begin() + kept);
  std::sort(idx.begin(), idx.end());
  idx.resize(static_cast<size_t>(K), -1);
  return idx;
}

/// Every float bit pattern class the rounding must get right.
Vec castInputs(size_t n, uint32_t seed) {
  const float inf = std::numeric_limits<float>::infinity();
  Vec v = {0.0f,
           -0.0f,
           1.0f,
           -1.0f,
           1.0f + 0x1p-8f,          // tie, even below: 1
           1.0f + 0x3p-8f,          // tie, odd below: rounds up
           1.0f + 0x1p-8f + 0x1p-23f, // just above a tie
           1.0f + 0x1p-8f - 0x1p-23f, // just below a tie
           -(1.0f + 0x3p-8f),
           std::numeric_limits<float>::max(), // rounds to inf
           -std::numeric_limits<float>::max(),
           0x1.fefffep127f, // just below the tie to inf: the largest bf16
           std::numeric_limits<float>::min(),
           std::numeric_limits<float>::denorm_min(), // rounds to 0
           0x1.8p-133f,                              // subnormal tie
           0x1.7p-130f,
           3.0e-39f,
           -3.0e-39f,
           inf,
           -inf,
           std::numeric_limits<float>::quiet_NaN(),
           -std::numeric_limits<float>::quiet_NaN()};
  std::mt19937 gen(seed);
  while (v.size() < n) { // random bit patterns: every exponent
    const uint32_t u = gen();
    float f;
    std::memcpy(&f, &u, sizeof(f));
    v.push_back(f);
  }
  v.resize(n);
  return v;
}

//===--- cast ---------------------------------------------------------------//

TEST_F(Bf16Kernels, CastToBf16RoundsToNearestEven) {
  for (int64_t n : {int64_t(1), int64_t(22), int64_t(23), int64_t(1000),
                    int64_t(4097), (int64_t(1) << 20) + 3})
    for (size_t off : kOffsets) {
      SCOPED_TRACE(::testing::Message() << "n=" << n << " offset=" << off);
      const Vec x = castInputs(static_cast<size_t>(n), uint32_t(n));
      FTensor dX(x, off);
      BTensor dY(static_cast<size_t>(n), off);
      cast(ctx, dX.get(), dY.get(), n);
      sync();
      const std::vector<uint32_t> got = dY.bits();
      size_t bad = 0;
      for (size_t i = 0; i < x.size(); ++i) {
        const uint16_t want = bf16BitsRne(x[i]);
        const bool ok = std::isnan(x[i])
                            ? std::isnan(bf16BitsToFloat(uint16_t(got[i])))
                            : got[i] == want;
        if (!ok && ++bad <= 5)
          ADD_FAILURE() << "element " << i << ": x = " << x[i] << " ("
                        << std::hexfloat << x[i] << std::defaultfloat
                        << "), got bits 0x" << std::hex << got[i]
                        << ", want 0x" << want << std::dec;
      }
      EXPECT_EQ(bad, 0u);
    }
}

TEST_F(Bf16Kernels, CastFromBf16IsExactForEveryPattern) {
  // All 65536 bf16 patterns (twice, plus a tail), widened.
  const size_t n = 2 * 65536 + 5;
  std::vector<uint16_t> pat(n);
  for (size_t i = 0; i < n; ++i)
    pat[i] = uint16_t(i * 40503u); // odd multiplier: a permutation mod 2^16
  for (size_t off : kOffsets) {
    SCOPED_TRACE(::testing::Message() << "offset=" << off);
    std::vector<bf> host(n);
    for (size_t i = 0; i < n; ++i)
      host[i] = bf16FromBits(pat[i]);
    DeviceArray<bf> dX(host, off);
    FTensor dY(n, off);
    cast(ctx, dX.get(), dY.get(), int64_t(n));
    sync();
    const std::vector<uint32_t> got = dY.bits();
    size_t bad = 0;
    for (size_t i = 0; i < n; ++i) {
      const float want = bf16BitsToFloat(pat[i]);
      uint32_t wb;
      std::memcpy(&wb, &want, sizeof(wb));
      float g;
      std::memcpy(&g, &got[i], sizeof(g));
      const bool ok = std::isnan(want) ? std::isnan(g) : got[i] == wb;
      if (!ok && ++bad <= 5)
        ADD_FAILURE() << "pattern 0x" << std::hex << pat[i] << ": got 0x"
                      << got[i] << std::dec;
    }
    EXPECT_EQ(bad, 0u);
  }
}

TEST_F(Bf16Kernels, CopyAndFill) {
  for (int64_t n : kSizes)
    for (size_t off : kOffsets) {
      SCOPED_TRACE(::testing::Message() << "n=" << n << " offset=" << off);
      const Vec x = randomBf16Vec(static_cast<size_t>(n), 7);
      const Vec xf = randomVec(static_cast<size_t>(n), 8);
      BTensor dX(x, off), dY(static_cast<size_t>(n), off), dF(static_cast<size_t>(n), off),
          dC(static_cast<size_t>(n), off);
      FTensor dXf(xf, off), dW(static_cast<size_t>(n), off);
      copy(ctx, dX.get(), dY.get(), n);   // bits
      copy(ctx, dX.get(), dX.get(), n);   // nothing
      copy(ctx, dXf.get(), dC.get(), n);  // cast
      copy(ctx, dX.get(), dW.get(), n);   // widen
      fill(ctx, dF.get(), -1.5f, n);
      sync();
      EXPECT_EQ(dY.bits(), dX.bits());
      EXPECT_TRUE(maxRelBelow(dX.download(), x, 1e-30));
      EXPECT_TRUE(maxRelBelow(dC.download(), roundedBf16(xf), 1e-30));
      EXPECT_TRUE(maxRelBelow(dW.download(), x, 1e-30));
      EXPECT_TRUE(maxRelBelow(dF.download(), Vec(static_cast<size_t>(n), -1.5f), 1e-30));
    }
}

//===--- pointwise ----------------------------------------------------------//

TEST_F(Bf16Kernels, Add) {
  for (int64_t n : kSizes)
    for (size_t off : kOffsets) {
      checkAdd<float, bf, float>(n, off); // the residual stream
      checkAdd<bf, float, float>(n, off);
      checkAdd<bf, bf, bf>(n, off);
      checkAdd<bf, bf, float>(n, off);
      checkAdd<float, float, bf>(n, off);
    }
}

TEST_F(Bf16Kernels, GeluReluAndGrads) {
  for (int64_t n : kSizes)
    for (size_t off : kOffsets) {
      checkActs<bf, bf, bf>(n, off); // the MLP
      checkActs<float, bf, bf>(n, off);
      checkActs<bf, float, float>(n, off);
    }
}

TEST_F(Bf16Kernels, GeluIsPyTorchsWithinBf16Rounding) {
  // The bf16 GELU and its gradient (dy = 1) take PyTorch's float formula,
  // 0.5 x (1 + erf(x / sqrt 2)): within one bf16 ulp (2^-7 relative) of the
  // exact values (double), plus, in the far negative tail where 1 + erf
  // cancels in float as in PyTorch, an absolute 1e-6 |x| on values that are
  // tiny there. (Emulated on the host in float: at most 0.48 of this bound.)
  Vec x;
  for (float v = -10.0f; v <= 10.0f; v += 1.0f / 32)
    x.push_back(roundBf16(v));
  const int64_t n = int64_t(x.size());
  const Vec ones(x.size(), 1.0f);
  Tensor<bf> dX(x), dOnes(ones), dY(x.size()), dDx(x.size());
  gelu(ctx, dX.get(), dY.get(), n);
  gelu_grad(ctx, dX.get(), dOnes.get(), dDx.get(), n);
  sync();
  const Vec y = dY.download(), dx = dDx.download();
  for (size_t i = 0; i < x.size(); ++i) {
    const double v = x[i], cdf = 0.5 * std::erfc(-v / std::sqrt(2.0));
    const double want = v * cdf;
    const double wantGrad = cdf + v * std::exp(-0.5 * v * v) / std::sqrt(2.0 * M_PI);
    const double allowance = 1e-6 * std::fabs(v);
    EXPECT_NEAR(y[i], want, std::ldexp(std::fabs(want), -7) + allowance) << "gelu at x=" << v;
    EXPECT_NEAR(dx[i], wantGrad, std::ldexp(std::fabs(wantGrad), -7) + allowance) << "gelu_grad at x=" << v;
  }
}

TEST_F(Bf16Kernels, BiasAdd) {
  const int64_t shapes[][2] = {{1, 1},     {5, 3},    {7, 4},    {9, 12},
                               {2048, 64}, {1000, 10}, {33, 1001}, {3, 4096}};
  for (const auto &s : shapes)
    for (size_t off : kOffsets) {
      checkBiasAdd<bf, bf>(s[0], s[1], off);
      checkBiasAdd<bf, float>(s[0], s[1], off); // logits
      checkBiasAdd<float, bf>(s[0], s[1], off);
    }
}

TEST_F(Bf16Kernels, PosAdd) {
  const int64_t shapes[][3] = {
      {1, 1, 1}, {128, 16, 64}, {3, 197, 192}, {5, 7, 3}, {2, 5, 12}};
  for (const auto &s : shapes)
    for (size_t off : kOffsets) {
      checkPosAdd<bf, float>(s[0], s[1], s[2], off); // patch embedding
      checkPosAdd<bf, bf>(s[0], s[1], s[2], off);
      checkPosAdd<float, bf>(s[0], s[1], s[2], off);
    }
}

TEST_F(Bf16Kernels, MeanTokensAndGrad) {
  const int64_t shapes[][3] = {
      {1, 1, 1}, {128, 16, 64}, {3, 197, 192}, {5, 7, 3}, {4, 9, 12}};
  for (const auto &s : shapes)
    for (size_t off : kOffsets) {
      checkMeanTokens<bf, bf>(s[0], s[1], s[2], off);
      checkMeanTokens<bf, float>(s[0], s[1], s[2], off);
    }
}

//===--- column sums --------------------------------------------------------//

TEST_F(Bf16Kernels, BiasGradAndPosGrad) {
  const int64_t shapes[][2] = {{1, 1},    {5, 3},     {7, 4},    {9, 12},
                               {4096, 64}, {1000, 10}, {33, 1001}, {50000, 8}};
  for (const auto &s : shapes)
    for (size_t off : kOffsets) {
      const int64_t rows = s[0], n = s[1];
      SCOPED_TRACE(::testing::Message()
                   << "rows=" << rows << " n=" << n << " offset=" << off);
      const Vec dy = randomBf16Vec(static_cast<size_t>(rows * n), 30);
      Vec want(static_cast<size_t>(n)), wantPos(static_cast<size_t>(n));
      cpu::bias_grad(dy.data(), want.data(), rows, n);
      cpu::pos_grad(dy.data(), wantPos.data(), rows, 1, n);
      BTensor dDy(dy, off);
      FTensor dOut(static_cast<size_t>(n)), dPos(static_cast<size_t>(n));
      bias_grad(ctx, dDy.get(), dOut.get(), rows, n);
      pos_grad(ctx, dDy.get(), dPos.get(), rows, 1, n);
      sync();
      EXPECT_TRUE(maxRelBelow(dOut.download(), want, 1e-4)) << "bias_grad";
      EXPECT_TRUE(maxRelBelow(dPos.download(), wantPos, 1e-4)) << "pos_grad";
    }
}

TEST_F(Bf16Kernels, ColumnSumsAreDeterministic) {
  const int64_t rows = 50000, n = 24;
  const Vec dy = randomBf16Vec(static_cast<size_t>(rows * n), 31);
  BTensor dDy(dy);
  FTensor a(static_cast<size_t>(n)), b(static_cast<size_t>(n));
  bias_grad(ctx, dDy.get(), a.get(), rows, n);
  bias_grad(ctx, dDy.get(), b.get(), rows, n);
  sync();
  EXPECT_EQ(a.bits(), b.bits());
}

//===--- LayerNorm ----------------------------------------------------------//

// n: 8-wide register rows (64, 192, 768, 1024), 4-wide (12, 100), the
// generic kernel (odd, above 1024).
const int64_t kLnShapes[][2] = {{1, 8},   {7, 64},   {300, 192}, {33, 768},
                                {5, 1024}, {9, 12},   {17, 100},  {11, 33},
                                {3, 1},    {6, 1030}, {2, 4096}};

TEST_F(Bf16Kernels, LayerNorm) {
  for (const auto &s : kLnShapes)
    for (size_t off : kOffsets) {
      checkLayerNorm<float, bf>(s[0], s[1], off); // the residual stream
      checkLayerNorm<bf, bf>(s[0], s[1], off);
      checkLayerNorm<bf, float>(s[0], s[1], off);
    }
}

TEST_F(Bf16Kernels, LayerNormGrad) {
  for (const auto &s : kLnShapes)
    for (size_t off : kOffsets) {
      checkLayerNormGrad<float, bf, float>(s[0], s[1], off); // emitted
      checkLayerNormGrad<bf, bf, bf>(s[0], s[1], off);
    }
  checkLayerNormGrad<float, bf, float>(2000, 192, 0); // many blocks
}

TEST_F(Bf16Kernels, LayerNormGradIsDeterministic) {
  const int64_t rows = 3000, n = 192;
  const Vec x = randomVec(static_cast<size_t>(rows * n), 40);
  const Vec dy = randomBf16Vec(static_cast<size_t>(rows * n), 41);
  const Vec g = randomVec(static_cast<size_t>(n), 42);
  FTensor dX(x), dG(g), dx1(x.size()), dx2(x.size()), dg1(static_cast<size_t>(n)),
      dg2(static_cast<size_t>(n)), db1(static_cast<size_t>(n)), db2(static_cast<size_t>(n));
  BTensor dDy(dy);
  layer_norm_grad(ctx, dX.get(), dG.get(), dDy.get(), dx1.get(), dg1.get(),
                  db1.get(), rows, n, 1e-6f);
  layer_norm_grad(ctx, dX.get(), dG.get(), dDy.get(), dx2.get(), dg2.get(),
                  db2.get(), rows, n, 1e-6f);
  sync();
  EXPECT_EQ(dx1.bits(), dx2.bits());
  EXPECT_EQ(dg1.bits(), dg2.bits());
  EXPECT_EQ(db1.bits(), db2.bits());
}

//===--- softmax cross-entropy ----------------------------------------------//

TEST_F(Bf16Kernels, SoftmaxXent) {
  const int64_t shapes[][2] = {{1, 1}, {7, 10}, {256, 10}, {33, 100},
                               {5, 1000}};
  for (const auto &s : shapes) {
    checkXent<float, bf>(s[0], s[1]);
    checkXent<bf, bf>(s[0], s[1]); // the train graph
    checkXent<bf, float>(s[0], s[1]);
  }
}

//===--- SBP rows -------------------------------------------------------------//

TEST_F(Bf16Kernels, GatherScatterMaskRows) {
  struct Case {
    int64_t B, T, K, D;
    IVec idx;
  };
  std::vector<Case> cases = {
      {3, 16, 8, 64, sampledIdx(16, 8, 8, 1)},
      {2, 197, 99, 192, sampledIdx(197, 99, 98, 2)},
      {2, 50, 20, 12, sampledIdx(50, 20, 20, 3)}, // 4-wide
      {3, 13, 5, 3, sampledIdx(13, 5, 4, 4)},     // scalar
      {1, 13000, 700, 8, sampledIdx(13000, 700, 700, 5)},
      {2, 10, 6, 5, {7, 2, 7, -1, 12, 2}},     // repeats, out of range
      {3, 16, 5, 64, {9, 9, 9, 1, 0}},         // repeats, vector path
  };
  for (const Case &c : cases)
    for (size_t off : kOffsets) {
      const int64_t B = c.B, T = c.T, K = c.K, D = c.D;
      SCOPED_TRACE(::testing::Message() << "B=" << B << " T=" << T << " K="
                                        << K << " D=" << D << " offset=" << off);
      const Vec x = randomBf16Vec(static_cast<size_t>(B * T * D), 1);
      const Vec xk = randomBf16Vec(static_cast<size_t>(B * K * D), 2);
      const Vec base = randomVec(static_cast<size_t>(B * T * D), 3);
      DInt didx(c.idx);

      Vec gathered(static_cast<size_t>(B * K * D)), scattered(x.size()), masked(x.size());
      cpu::gather_rows(x.data(), c.idx.data(), gathered.data(), B, T, K, D);
      cpu::scatter_rows(xk.data(), c.idx.data(), scattered.data(), B, T, K, D);
      cpu::mask_rows(x.data(), c.idx.data(), masked.data(), B, T, K, D);
      Vec acc = base; // float base + bf16 rows (the residual stream)
      cpu::scatter_rows_acc(xk.data(), c.idx.data(), acc.data(), B, T, K, D);
      Vec accB = roundedBf16(base); // all bf16
      cpu::scatter_rows_acc(xk.data(), c.idx.data(), accB.data(), B, T, K, D);

      BTensor dx(x, off), dxk(xk, off), dg(gathered.size(), off),
          ds(x.size(), off), dm(x.size(), off), dxin(x, off);
      gather_rows(ctx, dx.get(), didx.get(), dg.get(), B, T, K, D);
      scatter_rows(ctx, dxk.get(), didx.get(), ds.get(), B, T, K, D);
      mask_rows(ctx, dx.get(), didx.get(), dm.get(), B, T, K, D);
      mask_rows(ctx, dxin.get(), didx.get(), dxin.get(), B, T, K, D);
      FTensor dbase(base, off), dsum(x.size(), off), dacc(base, off);
      scatter_add_rows(ctx, dbase.get(), dxk.get(), didx.get(), dsum.get(), B,
                       T, K, D);
      scatter_add_rows(ctx, dbase.get(), dxk.get(), didx.get(), dbase.get(), B,
                       T, K, D); // in place
      scatter_rows_acc(ctx, dxk.get(), didx.get(), dacc.get(), B, T, K, D);
      BTensor dbaseB(base, off), dsumB(x.size(), off);
      scatter_add_rows(ctx, dbaseB.get(), dxk.get(), didx.get(), dsumB.get(), B,
                       T, K, D);
      sync();
      // Moves: the very values (the inputs are bf16-representable).
      EXPECT_TRUE(maxRelBelow(dg.download(), gathered, 1e-30)) << "gather";
      EXPECT_TRUE(maxRelBelow(ds.download(), scattered, 1e-30)) << "scatter";
      EXPECT_TRUE(maxRelBelow(dm.download(), masked, 1e-30)) << "mask";
      EXPECT_TRUE(maxRelBelow(dxin.download(), masked, 1e-30))
          << "mask in place";
      // Float sums of the same floats, in k order: as the CPU.
      EXPECT_TRUE(maxRelBelow(dsum.download(), acc, kFloatOutTol))
          << "scatter_add_rows";
      EXPECT_TRUE(maxRelBelow(dbase.download(), acc, kFloatOutTol))
          << "scatter_add_rows in place";
      EXPECT_TRUE(maxRelBelow(dacc.download(), acc, kFloatOutTol))
          << "scatter_rows_acc";
      EXPECT_TRUE(maxRelBelow(dsumB.download(), accB, kBf16OutTol))
          << "scatter_add_rows bf16";
    }
}

//===--- patchify and the ViT token kernels ---------------------------------//

TEST_F(Bf16Kernels, PatchifyRoundsTheImage) {
  const int64_t shapes[][5] = {// B, C, H, W, p
                               {2, 3, 32, 32, 4},
                               {2, 3, 32, 32, 8},
                               {3, 1, 28, 28, 7},
                               {1, 3, 224, 224, 16},
                               {2, 2, 12, 12, 6}};
  for (const auto &s : shapes)
    for (size_t off : {static_cast<size_t>(0), static_cast<size_t>(1)}) {
      const int64_t B = s[0], C = s[1], H = s[2], W = s[3], p = s[4];
      SCOPED_TRACE(::testing::Message() << "B=" << B << " C=" << C << " H="
                                        << H << " W=" << W << " p=" << p
                                        << " offset=" << off);
      const Vec img = randomVec(static_cast<size_t>(B * C * H * W), 50);
      Vec want(img.size());
      cpu::patchify(img.data(), want.data(), B, C, H, W, p);
      FTensor dImg(img, off);
      BTensor dTok(img.size(), off);
      patchify(ctx, dImg.get(), dTok.get(), B, C, H, W, p);
      sync();
      EXPECT_TRUE(maxRelBelow(dTok.download(), roundedBf16(want), 1e-30));
    }
}

TEST_F(Bf16Kernels, ClsTokenAndTakeToken) {
  const int64_t shapes[][3] = {
      {2, 4, 64}, {3, 196, 192}, {2, 5, 12}, {5, 7, 3}, {1, 1, 8}};
  for (const auto &s : shapes)
    for (size_t off : kOffsets) {
      const int64_t B = s[0], T = s[1], D = s[2];
      SCOPED_TRACE(::testing::Message() << "B=" << B << " T=" << T
                                        << " D=" << D << " offset=" << off);
      const Vec x = randomBf16Vec(static_cast<size_t>(B * T * D), 60);
      const Vec cls = randomVec(static_cast<size_t>(D), 61);
      const Vec dy = randomVec(static_cast<size_t>(B * (T + 1) * D), 62);
      Vec y(static_cast<size_t>(B * (T + 1) * D)), dx(static_cast<size_t>(B * T * D)), dcls(static_cast<size_t>(D));
      cpu::cls_concat(x.data(), cls.data(), y.data(), B, T, D);
      cpu::cls_concat_grad(dy.data(), dx.data(), dcls.data(), B, T, D);
      BTensor dX(x, off);
      FTensor dCls(cls), dYf(y.size(), off), dDy(dy, off), dDcls(static_cast<size_t>(D));
      BTensor dYb(y.size(), off), dDx(dx.size(), off);
      cls_concat(ctx, dX.get(), dCls.get(), dYf.get(), B, T, D); // emitted
      cls_concat(ctx, dX.get(), dCls.get(), dYb.get(), B, T, D);
      cls_concat_grad(ctx, dDy.get(), dDx.get(), dDcls.get(), B, T, D);
      sync();
      EXPECT_TRUE(maxRelBelow(dYf.download(), y, 1e-30)) << "cls_concat";
      EXPECT_TRUE(maxRelBelow(dYb.download(), roundedBf16(y), 1e-30))
          << "cls_concat -> bf16";
      EXPECT_TRUE(maxRelBelow(dDx.download(), roundedBf16(dx), 1e-30))
          << "cls_concat_grad dx";
      EXPECT_TRUE(maxRelBelow(dDcls.download(), dcls, 1e-6))
          << "cls_concat_grad dcls";

      for (int64_t index : {int64_t(0), T - 1, T, int64_t(-1)}) {
        SCOPED_TRACE(::testing::Message() << "index=" << index);
        const Vec g = randomBf16Vec(static_cast<size_t>(B * D), 63);
        Vec t(static_cast<size_t>(B * D)), tg(static_cast<size_t>(B * T * D));
        cpu::take_token(x.data(), t.data(), B, T, D, index);
        cpu::take_token_grad(g.data(), tg.data(), B, T, D, index);
        BTensor dT(t.size(), off), dG(g, off), dTg(tg.size(), off);
        take_token(ctx, dX.get(), dT.get(), B, T, D, index);
        take_token_grad(ctx, dG.get(), dTg.get(), B, T, D, index);
        sync();
        EXPECT_TRUE(maxRelBelow(dT.download(), t, 1e-30)) << "take_token";
        EXPECT_TRUE(maxRelBelow(dTg.download(), tg, 1e-30))
            << "take_token_grad";
      }
    }
}

//===--- a bf16 MLP block step in a CUDA graph -------------------------------//

// The emitted bf16 sequence of one residual MLP block (LayerNorm of the
// float stream into bf16, GEMMs on bf16, GELU, the float residual add, and
// the backward), eagerly and replayed from a CUDA graph: the same bits.
TEST_F(Bf16Kernels, MlpBlockStepReplaysInAGraph) {
  const int64_t rows = 96, d = 64, h = 128;
  const Vec x = randomVec(static_cast<size_t>(rows * d), 70);
  const Vec g = randomVec(static_cast<size_t>(d), 71, 0.5f, 1.5f),
            be = randomVec(static_cast<size_t>(d), 72, -0.1f, 0.1f);
  const Vec w1 = randomVec(static_cast<size_t>(h * d), 73, -0.2f, 0.2f),
            b1 = randomVec(static_cast<size_t>(h), 74, -0.1f, 0.1f);
  const Vec w2 = randomVec(static_cast<size_t>(d * h), 75, -0.2f, 0.2f);
  const Vec dyv = randomVec(static_cast<size_t>(rows * d), 76);
  FTensor dx(x), dg(g), db(be), dw1(w1), db1(b1), dw2(w2), dres(x.size()),
      ddx(x.size()), ddg(static_cast<size_t>(d)), ddb(static_cast<size_t>(d)), ddw1(w1.size()),
      ddb1(static_cast<size_t>(h)), ddw2(w2.size());
  BTensor w1b(w1.size()), w2b(w2.size()), n(x.size()), a(static_cast<size_t>(rows * h)),
      act(static_cast<size_t>(rows * h)), y(x.size()), dyb(dyv), dact(static_cast<size_t>(rows * h)),
      da(static_cast<size_t>(rows * h)), dn(x.size());
  auto step = [&](cudaStream_t s) {
    Context c = ctx;
    c.stream = s;
    cast(c, dw1.get(), w1b.get(), int64_t(w1.size()));
    cast(c, dw2.get(), w2b.get(), int64_t(w2.size()));
    layer_norm(c, dx.get(), dg.get(), db.get(), n.get(), rows, d, 1e-6f);
    gemm(c, false, true, rows, h, d, 1.0f, n.get(), d, w1b.get(), d, 0.0f,
         a.get(), h);
    bias_add(c, a.get(), db1.get(), a.get(), rows, h);
    gelu(c, a.get(), act.get(), rows * h);
    gemm(c, false, true, rows, d, h, 1.0f, act.get(), h, w2b.get(), h, 0.0f,
         y.get(), d);
    add(c, dx.get(), y.get(), dres.get(), rows * d);
    // backward from dy (bf16)
    gemm(c, true, false, d, h, rows, 1.0f, dyb.get(), d, act.get(), h, 0.0f,
         ddw2.get(), h);
    gemm(c, false, false, rows, h, d, 1.0f, dyb.get(), d, w2b.get(), h, 0.0f,
         dact.get(), h);
    gelu_grad(c, a.get(), dact.get(), da.get(), rows * h);
    bias_grad(c, da.get(), ddb1.get(), rows, h);
    gemm(c, true, false, h, d, rows, 1.0f, da.get(), h, n.get(), d, 0.0f,
         ddw1.get(), d);
    gemm(c, false, false, rows, d, h, 1.0f, da.get(), h, w1b.get(), d, 0.0f,
         dn.get(), d);
    layer_norm_grad(c, dx.get(), dg.get(), dn.get(), ddx.get(), ddg.get(),
                    ddb.get(), rows, d, 1e-6f);
  };
  step(ctx.stream); // plans the GEMMs
  sync();
  const auto eager = std::vector<std::vector<uint32_t>>{
      dres.bits(), ddx.bits(), ddg.bits(), ddb.bits(),
      ddw1.bits(), ddb1.bits(), ddw2.bits()};
  for (FTensor *t : {&dres, &ddx, &ddg, &ddb, &ddw1, &ddb1, &ddw2})
    t->poison();
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(ctx.stream, cudaStreamCaptureModeGlobal),
            cudaSuccess);
  step(ctx.stream);
  ASSERT_EQ(cudaStreamEndCapture(ctx.stream, &graph), cudaSuccess);
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, ctx.stream), cudaSuccess);
  sync();
  const auto replayed = std::vector<std::vector<uint32_t>>{
      dres.bits(), ddx.bits(), ddg.bits(), ddb.bits(),
      ddw1.bits(), ddb1.bits(), ddw2.bits()};
  EXPECT_TRUE(eager == replayed);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  // And the step is right: the forward against the CPU in float from the
  // same bf16-rounded operands (the intermediates are bf16 on the GPU).
  Vec nr(x.size()), ar(static_cast<size_t>(rows * h)), actr(static_cast<size_t>(rows * h)),
      yr(x.size()), res(x.size());
  cpu::layer_norm(x.data(), g.data(), be.data(), nr.data(), rows, d, 1e-6f);
  nr = roundedBf16(nr);
  const Vec w1r = roundedBf16(w1), w2r = roundedBf16(w2);
  cpu::gemm(false, true, rows, h, d, 1.0f, nr.data(), d, w1r.data(), d, 0.0f,
            ar.data(), h);
  cpu::bias_add(ar.data(), b1.data(), ar.data(), rows, h);
  ar = roundedBf16(ar);
  cpu::gelu(ar.data(), actr.data(), rows * h);
  actr = roundedBf16(actr);
  cpu::gemm(false, true, rows, d, h, 1.0f, actr.data(), h, w2r.data(), h, 0.0f,
            yr.data(), d);
  yr = roundedBf16(yr);
  cpu::add(x.data(), yr.data(), res.data(), rows * d);
  EXPECT_TRUE(maxRelBelow(dres.download(), res, kBf16OutTol)) << "forward";
}

} // namespace
} // namespace sbp::cuda::test
