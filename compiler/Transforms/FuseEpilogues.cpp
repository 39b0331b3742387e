//===- FuseEpilogues.cpp - fold neighbours into library kernels ----------===//
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
// The same on the other side of a kernel: in a ConvNeXt block under SBP the
// MLP branch's input gradient exists on the kept rows only, and a
// `scatter_rows` writes it out in full (zeros elsewhere) for the depth-wise
// convolution's backward; a downsampling's reduction gradient likewise for
// the space-to-depth gradient. When those kernels are the scatter's only
// readers they become their `_rows` forms, which read the kept rows through
// the keep indices:
//
//   scatter_rows(dk, idx) -> dwconv_grad_input / dwconv_grad_weight
//       becomes  dwconv_grad_input_rows(dk, idx, w) / dwconv_grad_weight_rows(dk, idx, x)
//   scatter_rows(dk, idx) -> space_to_depth_grad
//       becomes  space_to_depth_grad_rows(dk, idx)
//
// so the full zero-filled gradient is never written nor read, and the weight
// gradient skips the dropped positions.
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

int64_t sizeAttr(Operation *op, StringRef name) {
  auto a = op->getAttrOfType<IntegerAttr>(name);
  return a ? a.getInt() : -1;
}

/// The `_rows` form of the kernel reading `use` as its dy (a depth-wise
/// convolution's gradient, a downsampling's space-to-depth gradient), if that
/// is where a scatter of `scatter`'s rows can fold.
StringRef rowsFormOf(OpOperand &use, sbpk::KernelOp scatter) {
  auto k = dyn_cast<sbpk::KernelOp>(use.getOwner());
  if (!k || use.getOperandNumber() != 0 || sizeAttr(k, "batch") != sizeAttr(scatter, "batch"))
    return {};
  const int64_t h = sizeAttr(k, "height"), w = sizeAttr(k, "width"), c = sizeAttr(k, "channels");
  // The scattered rows are the convolution's positions, of its channels ...
  if (h * w == sizeAttr(scatter, "tokens") && c == sizeAttr(scatter, "n")) {
    if (k.getCallee() == sbpk::kernel::dwconv_grad_input)
      return sbpk::kernel::dwconv_grad_input_rows;
    if (k.getCallee() == sbpk::kernel::dwconv_grad_weight)
      return sbpk::kernel::dwconv_grad_weight_rows;
  }
  // ... or the cells of a space-to-depth of block b, of c * b * b features.
  const int64_t b = sizeAttr(k, "block");
  if (k.getCallee() == sbpk::kernel::space_to_depth_grad && b > 0 &&
      (h / b) * (w / b) == sizeAttr(scatter, "tokens") && c * b * b == sizeAttr(scatter, "n"))
    return sbpk::kernel::space_to_depth_grad_rows;
  return {};
}

void foldScatterIntoConsumers(sbpk::KernelOp scatter) {
  Value full = scatter->getResult(0);
  if (full.use_empty() || !llvm::all_of(full.getUses(), [&](OpOperand &u) { return !rowsFormOf(u, scatter).empty(); }))
    return;
  Value rows = scatter->getOperand(0), idx = scatter->getOperand(1);
  for (OpOperand &use : llvm::make_early_inc_range(full.getUses())) {
    auto k = cast<sbpk::KernelOp>(use.getOwner());
    OpBuilder b(k);
    SmallVector<Value> operands = {rows, idx};
    llvm::append_range(operands, k->getOperands().drop_front());
    auto fused = b.create<sbpk::KernelOp>(k.getLoc(), k->getResultTypes(), b.getStringAttr(rowsFormOf(use, scatter)),
                                          operands);
    for (NamedAttribute a : k->getAttrs())
      if (a.getName() != "callee")
        fused->setAttr(a.getName(), a.getValue());
    fused->setAttr("kept", scatter->getAttr("kept"));
    k->replaceAllUsesWith(fused->getResults());
    k->erase();
  }
  scatter->erase();
}

struct FuseEpiloguesPass : sbp::impl::SbpFuseEpiloguesBase<FuseEpiloguesPass> {
  void runOnOperation() override {
    for (sbpk::GraphOp graph : getOperation().getOps<sbpk::GraphOp>()) {
      SmallVector<sbpk::GemmOp> gemms(graph.getBlock().getOps<sbpk::GemmOp>());
      for (sbpk::GemmOp g : gemms)
        fuse(g);
      SmallVector<sbpk::KernelOp> scatters;
      for (sbpk::KernelOp k : graph.getBlock().getOps<sbpk::KernelOp>())
        if (k.getCallee() == sbpk::kernel::scatter_rows)
          scatters.push_back(k);
      for (sbpk::KernelOp k : scatters)
        foldScatterIntoConsumers(k);
    }
  }
};
} // namespace
