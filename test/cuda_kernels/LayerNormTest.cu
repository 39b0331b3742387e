//===- LayerNormTest.cu - layer_norm and layer_norm_grad vs the CPU -------===//

#include "CudaTestSupport.h"

namespace sbp::cuda::test {
namespace {

// n: the register fast path (n % 4 == 0, n <= 1024) at every chunk count,
// and the generic path (odd n, n > 1024).
const int64_t kWidths[] = {1,   3,   4,   64,   127,  128,  192,
                           384, 516, 768, 1000, 1024, 1030, 2048};
const int64_t kRows[] = {1, 5, 2048};

struct LnData {
  Vec x, gamma, beta, dy;
};

LnData makeData(int64_t rows, int64_t n, uint32_t seed, float offset = 0.0f) {
  LnData d{randomVec(size_t(rows * n), seed),
           randomVec(size_t(n), seed + 1, 0.5f, 1.5f),
           randomVec(size_t(n), seed + 2, -0.5f, 0.5f),
           randomVec(size_t(rows * n), seed + 3)};
  for (float &v : d.x)
    v += offset;
  return d;
}

void checkForward(const Context &ctx, int64_t rows, int64_t n, size_t off,
                  float offset = 0.0f) {
  SCOPED_TRACE(::testing::Message()
               << "rows=" << rows << " n=" << n << " ptr offset=" << off
               << " value offset=" << offset);
  const LnData d = makeData(rows, n, uint32_t(rows * 31 + n), offset);
  const float eps = 1e-6f;
  Vec want(d.x.size());
  cpu::layer_norm(d.x.data(), d.gamma.data(), d.beta.data(), want.data(), rows,
                  n, eps);
  DFloat x(d.x, off), g(d.gamma, off), b(d.beta, off), y(d.x.size(), off);
  layer_norm(ctx, x, g, b, y, rows, n, eps);
  ASSERT_EQ(cudaStreamSynchronize(ctx.stream), cudaSuccess);
  char err[512] = {};
  ASSERT_EQ(last_error(err, sizeof(err)), 0) << err;
  EXPECT_TRUE(relClose(y.download(), want, 1e-4));
}

void checkBackward(const Context &ctx, int64_t rows, int64_t n, size_t off,
                   float offset = 0.0f) {
  SCOPED_TRACE(::testing::Message()
               << "rows=" << rows << " n=" << n << " ptr offset=" << off
               << " value offset=" << offset);
  const LnData d = makeData(rows, n, uint32_t(rows * 17 + n), offset);
  const float eps = 1e-5f;
  Vec dx(d.x.size()), dg(static_cast<size_t>(n)), db(static_cast<size_t>(n));
  cpu::layer_norm_grad(d.x.data(), d.gamma.data(), d.dy.data(), dx.data(),
                       dg.data(), db.data(), rows, n, eps);
  DFloat x(d.x, off), g(d.gamma, off), dy(d.dy, off), ddx(d.x.size(), off);
  DFloat ddg(Vec(size_t(n), 99.0f), off), ddb(Vec(size_t(n), 99.0f), off);
  layer_norm_grad(ctx, x, g, dy, ddx, ddg, ddb, rows, n, eps);
  ASSERT_EQ(cudaStreamSynchronize(ctx.stream), cudaSuccess);
  char err[512] = {};
  ASSERT_EQ(last_error(err, sizeof(err)), 0) << err;
  EXPECT_TRUE(relClose(ddx.download(), dx, 1e-4)) << "dx";
  EXPECT_TRUE(relClose(ddg.download(), dg, 1e-4)) << "dgamma";
  EXPECT_TRUE(relClose(ddb.download(), db, 1e-4)) << "dbeta";
}

using LayerNorm = CudaKernelTest;

TEST_F(LayerNorm, Forward) {
  for (int64_t n : kWidths)
    for (int64_t rows : kRows)
      checkForward(ctx, rows, n, 0);
}

TEST_F(LayerNorm, ForwardUnaligned) {
  for (int64_t n : {64, 192, 1000})
    checkForward(ctx, 37, n, 1);
}

TEST_F(LayerNorm, ForwardLargeMeanKeepsDigits) {
  // Rows like 300 +- 2: the shifted mean keeps the deviations exact enough.
  for (int64_t n : {192, 1030})
    checkForward(ctx, 64, n, 0, 300.0f);
}

TEST_F(LayerNorm, Backward) {
  for (int64_t n : kWidths)
    for (int64_t rows : kRows)
      checkBackward(ctx, rows, n, 0);
}

TEST_F(LayerNorm, BackwardUnalignedAndManyRows) {
  checkBackward(ctx, 37, 192, 1);
  checkBackward(ctx, 50000, 192, 0); // many blocks of partial sums
  checkBackward(ctx, 20000, 100, 0); // generic path, row splits
  checkBackward(ctx, 64, 768, 0, 300.0f);
}

TEST_F(LayerNorm, BackwardZeroRowsZeroesParameterGradients) {
  DFloat dg(Vec(8, 5.0f)), db(Vec(8, 5.0f));
  layer_norm_grad(ctx, nullptr, nullptr, nullptr, nullptr, dg, db, 0, 8, 1e-5f);
  sync();
  EXPECT_TRUE(sameBits(dg.download(), Vec(8, 0.0f)));
  EXPECT_TRUE(sameBits(db.download(), Vec(8, 0.0f)));
}

TEST_F(LayerNorm, BackwardDeterministic) {
  const int64_t rows = 50000, n = 192;
  const LnData d = makeData(rows, n, 7);
  DFloat x(d.x), g(d.gamma), dy(d.dy), dx(d.x.size());
  DFloat dg1(static_cast<size_t>(n)), db1(static_cast<size_t>(n)),
      dg2(static_cast<size_t>(n)), db2(static_cast<size_t>(n));
  layer_norm_grad(ctx, x, g, dy, dx, dg1, db1, rows, n, 1e-5f);
  layer_norm_grad(ctx, x, g, dy, dx, dg2, db2, rows, n, 1e-5f);
  sync();
  EXPECT_TRUE(sameBits(dg1.download(), dg2.download()));
  EXPECT_TRUE(sameBits(db1.download(), db2.download()));
}

/// The generic backward keeps row statistics in scratch: too little of it
/// is an error that last_error reports, not a crash.
class LayerNormTinyScratch : public CudaKernelTest {
  void configure(Context &c) override { c.scratch_bytes = 512; }
};

TEST_F(LayerNormTinyScratch, ReportsScratchTooSmall) {
  const int64_t rows = 1000, n = 100;
  DFloat x(size_t(rows * n)), g(static_cast<size_t>(n)), dy(size_t(rows * n)),
      dx(size_t(rows * n)), dg(static_cast<size_t>(n)),
      db(static_cast<size_t>(n));
  layer_norm_grad(ctx, x, g, dy, dx, dg, db, rows, n, 1e-5f);
  ASSERT_EQ(cudaStreamSynchronize(ctx.stream), cudaSuccess);
  char err[512] = {};
  EXPECT_NE(last_error(err, sizeof(err)), 0);
  EXPECT_NE(std::string(err).find("layer_norm_grad"), std::string::npos) << err;
  EXPECT_EQ(last_error(err, sizeof(err)), 0) << "cleared after reporting";
}

} // namespace
} // namespace sbp::cuda::test
