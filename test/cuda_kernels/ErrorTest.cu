//===- ErrorTest.cu - Context lifetime and error reporting ----------------===//

#include "CudaTestSupport.h"

namespace sbp::cuda::test {
namespace {

using Errors = CudaKernelTest;

TEST_F(Errors, NothingToReportAfterGoodCalls) {
  DFloat x(100);
  fill(ctx, x, 1.0f, 100);
  gelu(ctx, x, x, 100);
  sync(); // asserts last_error() == 0
}

TEST_F(Errors, GemmOnAnUninitialisedContextIsReported) {
  Context bare; // no context_init: no cuBLASLt handle
  bare.stream = ctx.stream;
  DFloat a(16), b(16), c(16);
  gemm(bare, false, false, 4, 4, 4, 1.0f, a, 4, b, 4, 0.0f, c, 4);
  char err[512] = {};
  const int code = last_error(err, sizeof(err));
  EXPECT_NE(code, 0);
  EXPECT_NE(std::string(err).find("gemm"), std::string::npos) << err;
  EXPECT_NE(std::string(err).find("context_init"), std::string::npos) << err;
  EXPECT_EQ(last_error(err, sizeof(err)), 0) << "reported once, then cleared";
}

TEST_F(Errors, FirstFailureWins) {
  Context bare;
  DFloat img(64);
  patchify(ctx, img, img, 1, 1, 8, 8, 3); // 8 is not a multiple of 3
  gemm(bare, false, false, 4, 4, 4, 1.0f, img, 4, img, 4, 0.0f, img, 4);
  char err[512] = {};
  EXPECT_NE(last_error(err, sizeof(err)), 0);
  EXPECT_NE(std::string(err).find("patchify"), std::string::npos) << err;
  EXPECT_EQ(std::string(err).find("gemm"), std::string::npos) << err;
}

TEST_F(Errors, MessageIsTruncatedSafely) {
  Context bare;
  DFloat a(16);
  gemm(bare, false, false, 4, 4, 4, 1.0f, a, 4, a, 4, 0.0f, a, 4);
  char err[8];
  std::memset(err, 'x', sizeof(err));
  EXPECT_NE(last_error(err, sizeof(err)), 0);
  EXPECT_EQ(err[7], '\0');
  EXPECT_EQ(last_error(nullptr, 0), 0);
}

TEST_F(Errors, ContextInitAndDestroyAgain) {
  Context other;
  char err[256] = {};
  ASSERT_EQ(context_init(other, err, sizeof(err)), 0) << err;
  EXPECT_NE(other.lt, nullptr);
  EXPECT_GT(other.sm_count, 0);
  EXPECT_EQ(other.workspace_bytes, kDefaultWorkspaceBytes);
  EXPECT_EQ(other.scratch_bytes, kDefaultScratchBytes);
  context_destroy(other);
  EXPECT_EQ(other.lt, nullptr);
  EXPECT_EQ(other.scratch, nullptr);
  context_destroy(other); // idempotent
}

} // namespace
} // namespace sbp::cuda::test
