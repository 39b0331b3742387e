//===- RowOpsTest.cu - patchify and the SBP row gather/scatter vs the CPU -===//

#include "CudaTestSupport.h"

#include <numeric>

namespace sbp::cuda::test {
namespace {

using RowOps = CudaKernelTest;

/// The mask sampler's shape: K entries, `kept` ascending valid tokens, the
/// rest -1 padding at the end.
IVec sampledIdx(int64_t T, int64_t K, int64_t kept, uint32_t seed) {
  IVec all(static_cast<size_t>(T));
  std::iota(all.begin(), all.end(), 0);
  std::mt19937 gen(seed);
  std::shuffle(all.begin(), all.end(), gen);
  IVec idx(all.begin(), all.begin() + kept);
  std::sort(idx.begin(), idx.end());
  idx.resize(size_t(K), -1);
  return idx;
}

struct RowCase {
  int64_t B, T, K, D;
  IVec idx;
  std::string what;
};

std::vector<RowCase> rowCases() {
  std::vector<RowCase> cases;
  const int64_t shapes[][4] = {{1, 1, 1, 1},      {3, 16, 8, 64},
                               {128, 16, 8, 64},  {2, 197, 99, 192},
                               {3, 13, 5, 3},     {2, 50, 20, 4},
                               {1, 13000, 700, 8}}; // T > shared-memory map
  for (const auto &s : shapes) {
    const int64_t B = s[0], T = s[1], K = s[2], D = s[3];
    cases.push_back({B, T, K, D, sampledIdx(T, K, K, uint32_t(T)), "sampled"});
    if (K > 1)
      cases.push_back(
          {B, T, K, D, sampledIdx(T, K, K - 1, uint32_t(T + 1)), "padded"});
  }
  // Off the documented shape: unsorted, repeated, out of range, padding in
  // the middle. Still correct (and deterministic) on the slow paths.
  cases.push_back({2, 10, 6, 5, {7, 2, 7, -1, 12, 2}, "repeats"});
  cases.push_back({3, 16, 5, 64, {9, 9, 9, 1, 0}, "repeats vec"});
  cases.push_back({2, 16, 4, 8, {-1, 3, -5, 1}, "unsorted"});
  cases.push_back({2, 13000, 4, 4, {12999, 5, 5, 200}, "repeats global map"});
  return cases;
}

TEST_F(RowOps, GatherScatterMask) {
  for (const RowCase &c : rowCases())
    for (size_t off : {size_t(0), size_t(1)}) {
      const int64_t B = c.B, T = c.T, K = c.K, D = c.D;
      SCOPED_TRACE(::testing::Message()
                   << c.what << " B=" << B << " T=" << T << " K=" << K
                   << " D=" << D << " offset=" << off);
      const Vec x = randomVec(size_t(B * T * D), 1);
      const Vec xk = randomVec(size_t(B * K * D), 2);
      const Vec base = randomVec(size_t(B * T * D), 3);
      DFloat dx(x, off), dxk(xk, off), dbase(base, off);
      DInt didx(c.idx);

      Vec gathered(size_t(B * K * D), -7.0f);
      cpu::gather_rows(x.data(), c.idx.data(), gathered.data(), B, T, K, D);
      DFloat dg(Vec(gathered.size(), 5.0f), off);
      gather_rows(ctx, dx, didx, dg, B, T, K, D);

      Vec scattered(x.size(), -7.0f);
      cpu::scatter_rows(xk.data(), c.idx.data(), scattered.data(), B, T, K, D);
      DFloat ds(Vec(x.size(), 5.0f), off);
      scatter_rows(ctx, dxk, didx, ds, B, T, K, D);

      Vec acc = base;
      cpu::scatter_rows_acc(xk.data(), c.idx.data(), acc.data(), B, T, K, D);
      DFloat dacc(base, off);
      scatter_rows_acc(ctx, dxk, didx, dacc, B, T, K, D);

      // scatter_add_rows == copy + scatter_rows_acc, out of place and in place
      DFloat dsum(x.size(), off), dbase2(base, off);
      scatter_add_rows(ctx, dbase, dxk, didx, dsum, B, T, K, D);
      scatter_add_rows(ctx, dbase2, dxk, didx, dbase2, B, T, K, D);

      Vec masked(x.size(), -7.0f);
      cpu::mask_rows(x.data(), c.idx.data(), masked.data(), B, T, K, D);
      DFloat dm(Vec(x.size(), 5.0f), off), dxin(x, off);
      mask_rows(ctx, dx, didx, dm, B, T, K, D);
      mask_rows(ctx, dxin, didx, dxin, B, T, K, D); // in place
      sync();

      EXPECT_TRUE(sameBits(dg.download(), gathered)) << "gather_rows";
      EXPECT_TRUE(sameBits(ds.download(), scattered)) << "scatter_rows";
      EXPECT_TRUE(sameBits(dacc.download(), acc)) << "scatter_rows_acc";
      EXPECT_TRUE(sameBits(dsum.download(), acc)) << "scatter_add_rows";
      EXPECT_TRUE(sameBits(dbase2.download(), acc))
          << "scatter_add_rows in place";
      EXPECT_TRUE(sameBits(dm.download(), masked)) << "mask_rows";
      EXPECT_TRUE(sameBits(dxin.download(), masked)) << "mask_rows in place";
    }
}

TEST_F(RowOps, NoKeptRows) {
  const int64_t B = 2, T = 6, D = 4;
  const Vec x = randomVec(size_t(B * T * D), 4);
  DFloat dx(x), ds(Vec(x.size(), 1.0f)), dm(Vec(x.size(), 1.0f)), dacc(x);
  DInt didx(IVec{-1});
  scatter_rows(ctx, dx, didx, ds, B, T, 0, D);
  mask_rows(ctx, dx, didx, dm, B, T, 1, D);
  scatter_rows_acc(ctx, dx, didx, dacc, B, T, 1, D);
  sync();
  EXPECT_TRUE(sameBits(ds.download(), Vec(x.size(), 0.0f)));
  EXPECT_TRUE(sameBits(dm.download(), Vec(x.size(), 0.0f)));
  EXPECT_TRUE(sameBits(dacc.download(), x));
}

TEST_F(RowOps, Patchify) {
  const int64_t shapes[][5] = {{2, 3, 10, 15, 5},   // scalar path
                               {4, 3, 64, 48, 16},  // float4 path
                               {128, 1, 28, 28, 7}, // the MNIST sample
                               {2, 3, 224, 224, 16}};
  for (const auto &s : shapes)
    for (size_t off : {size_t(0), size_t(1)}) {
      const int64_t B = s[0], C = s[1], H = s[2], W = s[3], p = s[4];
      SCOPED_TRACE(::testing::Message()
                   << "B=" << B << " C=" << C << " H=" << H << " W=" << W
                   << " p=" << p << " offset=" << off);
      const Vec img = randomVec(size_t(B * C * H * W), 5);
      Vec want(img.size(), -7.0f);
      cpu::patchify(img.data(), want.data(), B, C, H, W, p);
      DFloat dimg(img, off), dtok(img.size(), off);
      patchify(ctx, dimg, dtok, B, C, H, W, p);
      sync();
      EXPECT_TRUE(sameBits(dtok.download(), want));
    }
}

TEST_F(RowOps, PatchifyRejectsRaggedImages) {
  DFloat img(2 * 3 * 10 * 10), tok(2 * 3 * 10 * 10);
  patchify(ctx, img, tok, 2, 3, 10, 10, 3);
  ASSERT_EQ(cudaStreamSynchronize(ctx.stream), cudaSuccess);
  char err[512] = {};
  EXPECT_NE(last_error(err, sizeof(err)), 0);
  EXPECT_NE(std::string(err).find("patchify"), std::string::npos) << err;
}

} // namespace
} // namespace sbp::cuda::test
