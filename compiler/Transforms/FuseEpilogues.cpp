//===- FuseEpilogues.cpp - GEMM + bias (+ residual) as one GEMM -----------===//
//
// A linear layer lowers to `sbpk.gemm` then a `bias_add` kernel, and in a
// residual block the result is added to the stream right away. Each of those
// kernels reads and writes the whole activation once more. cuBLASLt applies a
// bias in its epilogue and adds C (beta = 1) for free, so
//
//   gemm -> bias_add            becomes  gemm_bias(a, b, bias)
//   gemm -> bias_add -> add(x)  becomes  gemm_bias_residual(a, b, bias, x)
//
// when the intermediate results have no other reader. (cuBLASLt's GELU
// epilogue is the tanh approximation, not the exact GELU the models use, so
// activations stay separate kernels.)
//
//===----------------------------------------------------------------------===//
#include "Passes.h"
#include "SbpKernel/KernelTable.h"

namespace sbp {
#define GEN_PASS_DEF_SBPFUSEEPILOGUES
#include "Passes.h.inc"
} // namespace sbp

using namespace mlir;

namespace {
/// The only user of v if it is the kernel `callee` reading v as operand
/// `index`, else null.
sbpk::KernelOp soleKernelUser(Value v, StringRef callee, unsigned index) {
  if (!v.hasOneUse())
    return {};
  OpOperand &use = *v.getUses().begin();
  auto k = dyn_cast<sbpk::KernelOp>(use.getOwner());
  return k && k.getCallee() == callee && use.getOperandNumber() == index ? k : sbpk::KernelOp();
}

void fuse(sbpk::GemmOp gemm) {
  if (gemm.getCIn() || gemm.getAlpha().convertToDouble() != 1.0 || gemm.getBeta().convertToDouble() != 0.0)
    return;
  sbpk::KernelOp bias = soleKernelUser(gemm.getResult(), sbpk::kernel::bias_add, 0);
  if (!bias)
    return;
  // The residual add: either operand may be the branch; the other is x.
  sbpk::KernelOp add;
  Value residual;
  if (Value y = bias->getResult(0); y.hasOneUse()) {
    OpOperand &use = *y.getUses().begin();
    if (auto k = dyn_cast<sbpk::KernelOp>(use.getOwner()); k && k.getCallee() == sbpk::kernel::add) {
      add = k;
      residual = k->getOperand(1 - use.getOperandNumber());
    }
  }
  Operation *last = add ? add.getOperation() : bias.getOperation();
  OpBuilder b(last);
  SmallVector<Value> operands = {gemm.getA(), gemm.getB(), bias->getOperand(1)};
  if (residual)
    operands.push_back(residual);
  auto fused = b.create<sbpk::KernelOp>(gemm.getLoc(), TypeRange{last->getResult(0).getType()},
                                        b.getStringAttr(residual ? sbpk::kernel::gemm_bias_residual : sbpk::kernel::gemm_bias), operands);
  for (StringRef attr : {"m", "n", "k", "trans_a", "trans_b", "bwd"})
    if (Attribute a = gemm->getAttr(attr))
      fused->setAttr(attr, a);
  // The result is the last op's: a residual add belongs to the stream, not to
  // the branch (reports attribute saved activations by region).
  if (Attribute region = last->getAttr("region"))
    fused->setAttr("region", region);
  last->getResult(0).replaceAllUsesWith(fused->getResult(0));
  if (add)
    add->erase();
  bias->erase();
  gemm->erase();
}

struct FuseEpiloguesPass : sbp::impl::SbpFuseEpiloguesBase<FuseEpiloguesPass> {
  void runOnOperation() override {
    for (sbpk::GraphOp graph : getOperation().getOps<sbpk::GraphOp>()) {
      SmallVector<sbpk::GemmOp> gemms(graph.getBlock().getOps<sbpk::GemmOp>());
      for (sbpk::GemmOp g : gemms)
        fuse(g);
    }
  }
};
} // namespace
