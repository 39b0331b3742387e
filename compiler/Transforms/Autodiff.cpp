//===- Autodiff.cpp - reverse-mode differentiation of the loss ------------===//
#include "Passes.h"

namespace sbp {
#define GEN_PASS_DEF_SBPAUTODIFF
#include "Passes.h.inc"
} // namespace sbp

using namespace mlir;
using namespace sbp;

namespace {
struct AutodiffPass : sbp::impl::SbpAutodiffBase<AutodiffPass> {
  void runOnOperation() override {
    for (ModelOp model : getOperation().getOps<ModelOp>())
      if (failed(differentiate(model)))
        return signalPassFailure();
  }

  LogicalResult differentiate(ModelOp model) {
    if (!model.getBlock().getOps<BranchOp>().empty())
      return model.emitError("run sbp-insert-masks before sbp-autodiff: sbp.branch remains");
    if (!model.getBlock().getOps<ParamGradOp>().empty())
      return model.emitError("model is already differentiated");
    OutputOp output = model.getOutput();
    OpBuilder b(output);
    llvm::DenseMap<Value, Value> grads;
    Value loss = output.getLoss();
    grads[loss] = loss; // d(loss)/d(loss) = 1, see CrossEntropyOp::buildGradient

    SmallVector<Operation *> forward;
    for (Operation &op : model.getBlock().without_terminator())
      forward.push_back(&op);
    for (Operation *op : llvm::reverse(forward)) {
      auto gradOp = dyn_cast<GradientOpInterface>(op);
      SmallVector<Value> resultGrads;
      for (Value r : op->getResults())
        resultGrads.push_back(grads.lookup(r));
      if (llvm::all_of(resultGrads, [](Value v) { return !v; }))
        continue;
      if (isa<ParamOp, InputOp>(op))
        continue; // leaves: their gradients are read below
      if (!gradOp)
        return op->emitOpError("has no gradient rule");
      Operation *before = output->getPrevNode();
      SmallVector<Value> operandGrads;
      if (failed(gradOp.buildGradient(b, resultGrads, operandGrads)))
        return failure();
      for (auto [operand, g] : llvm::zip(op->getOperands(), operandGrads))
        if (g)
          accumulate(b, grads, operand, g, op);
      tagNewOps(before, output, op);
    }

    for (ParamOp param : model.getBlock().getOps<ParamOp>()) {
      Value g = grads.lookup(param.getResult());
      if (!g) {
        param.emitWarning("parameter '") << param.getName() << "' gets no gradient; it is left unchanged";
        continue;
      }
      b.create<ParamGradOp>(param.getLoc(), param.getNameAttr(), g);
    }
    return success();
  }

  /// grads[v] += g, as an sbp.add when v already has a gradient.
  void accumulate(OpBuilder &b, llvm::DenseMap<Value, Value> &grads, Value v, Value g, Operation *from) {
    Value &slot = grads[v];
    slot = slot ? b.create<AddOp>(from->getLoc(), slot.getType(), slot, g).getResult() : g;
  }

  /// Marks the ops created since `before` as backward ops of `from`'s region.
  void tagNewOps(Operation *before, Operation *end, Operation *from) {
    Operation *op = before ? before->getNextNode() : &end->getBlock()->front();
    auto region = from->getAttrOfType<StringAttr>(kRegionAttr);
    for (; op != end; op = op->getNextNode()) {
      op->setAttr(kBackwardAttr, UnitAttr::get(op->getContext()));
      if (region && !op->hasAttr(kRegionAttr))
        op->setAttr(kRegionAttr, region);
    }
  }
};
} // namespace
