//===- SplitWeightGrads.cpp - weight gradients as row-chunk products ------===//
//
// A weight gradient dW = dy^T x reduces over all the batch's rows (K = 50k
// for ViT-Tiny at batch 256) into a small output (192 x 768): a handful of
// GEMM tiles. cuBLASLt parallelises it with split-K, which on the H100 costs
// a second launch per GEMM (`splitKreduce`, whatever reduction scheme is
// asked for). This pass gives such a GEMM `row_chunks` = S instead: the
// CUDA emitter calls `gemm_row_chunks`, one strided-batched product of S
// equal row chunks writing S float32 partials into arena scratch, and the
// step's deferred column-sum launch (EmitFusedKernels) adds them in chunk
// order into the gradient buffer. One launch per weight gradient, the same
// bits every run.
//
// Only GEMMs whose result is nothing but a parameter gradient qualify (the
// sum is deferred to the end of the step): op(A) = A^T, op(B) = B, no C
// input, beta 0, a float32 result. The CPU target keeps plain GEMMs.
//
//===----------------------------------------------------------------------===//
#include "Passes.h"

namespace sbp {
#define GEN_PASS_DEF_SBPSPLITWEIGHTGRADS
#include "Passes.h.inc"
} // namespace sbp

using namespace mlir;

namespace {
/// GEMM output tiles are taken as 128 x 128 (cuBLASLt's usual Hopper tile)
/// and the products sized to give about one wave of them on the H100's 132
/// SMs: every chunk writes a float32 partial that the deferred launch reads
/// back, and on the H100 (2026-12-07) one wave beat two by 1% of the ViT-Tiny
/// dense step and 1.3% of the SBP one (fewer partials; the tuned batched
/// GEMM keeps the GPU busy). At most 64 chunks (the partials are S times the
/// weight, live until the end of the step); at least 16 rows each.
constexpr int64_t kTile = 128, kTargetTiles = 132, kMaxChunks = 64, kMinRows = 16;

/// The chunk count of an m x n weight gradient over k rows: the largest
/// divisor of k (chunks are equal) up to what fills the GPU; 1: no split.
int64_t rowChunks(int64_t m, int64_t n, int64_t k) {
  const int64_t tiles = ((m + kTile - 1) / kTile) * ((n + kTile - 1) / kTile);
  const int64_t wanted = std::min(kMaxChunks, (kTargetTiles + tiles - 1) / tiles);
  for (int64_t s = std::min(wanted, k / kMinRows); s > 1; --s)
    if (k % s == 0)
      return s;
  return 1;
}

/// Whether the GEMM is a weight gradient whose sum may be deferred: it
/// writes a parameter gradient and nothing reads it in the step.
bool isDeferrableWeightGrad(sbpk::GemmOp g) {
  Value c = g.getResult();
  return g.getTransA() && !g.getTransB() && !g.getCIn() && g.getBeta().isZero() &&
         cast<RankedTensorType>(c.getType()).getElementType().isF32() && c.hasOneUse() &&
         sbpk::getGradOutUser(c);
}

struct SplitWeightGradsPass : sbp::impl::SbpSplitWeightGradsBase<SplitWeightGradsPass> {
  using SbpSplitWeightGradsBase::SbpSplitWeightGradsBase;

  void runOnOperation() override {
    FailureOr<bool> cuda = sbp::isCudaTarget(getOperation(), getArgument(), target);
    if (failed(cuda))
      return signalPassFailure();
    if (!*cuda)
      return;
    Builder b(&getContext());
    getOperation().walk([&](sbpk::GemmOp g) {
      if (!isDeferrableWeightGrad(g))
        return;
      const int64_t chunks = rowChunks(g.getM(), g.getN(), g.getK());
      if (chunks < 2)
        return;
      g->setAttr(sbpk::kRowChunksAttr, b.getI64IntegerAttr(chunks));
      g->setAttr(sbpk::kScratchBytesAttr,
                 b.getI64IntegerAttr(chunks * g.getM() * g.getN() * int64_t(sizeof(float))));
      g->setAttr(sbpk::kDeferredSumsAttr, b.getUnitAttr());
    });
  }
};
} // namespace
