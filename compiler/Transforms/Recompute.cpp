//===- Recompute.cpp - recompute cheap activations in the backward --------===//
//
// A forward LayerNorm or activation function whose output the backward reads
// (a weight gradient's input: dW = dY^T act(h)) is recomputed in the backward
// from its input instead of being saved, when that input is saved anyway
// (GELU's gradient reads h; LayerNorm's gradient reads x). The output then
// dies in the forward: per ViT block the MLP's hidden activation and both
// normalised inputs no longer stay live into the backward. One elementwise
// pass per recomputed op buys the memory of its output; the kernels are
// deterministic, so the recomputed values equal the forward's bit for bit.
//
// Under SBP the backward reads the kept rows (`sbp.gather_rows` saved in the
// forward); the op is then recomputed on the kept rows of its input.
//
//===----------------------------------------------------------------------===//
#include "Passes.h"

#include "llvm/ADT/MapVector.h"

namespace sbp {
#define GEN_PASS_DEF_SBPRECOMPUTE
#include "Passes.h.inc"
} // namespace sbp

using namespace mlir;
using namespace sbp;

namespace {
bool isBackward(Operation *op) { return op->hasAttr(kBackwardAttr); }

/// Backward users of v, in block order.
SmallVector<Operation *> backwardUsers(Value v) {
  SmallVector<Operation *> users;
  for (Operation *u : v.getUsers())
    if (isBackward(u))
      users.push_back(u);
  llvm::sort(users, [](Operation *a, Operation *b) { return a->isBeforeInBlock(b); });
  return users;
}

class Recomputer {
public:
  explicit Recomputer(ModelOp model) : model(model) {
    for (auto g : model.getBlock().getOps<GatherRowsOp>())
      if (!isBackward(g))
        savedGather[{g.getInput(), g.getKeep()}] = g;
  }

  void run() {
    SmallVector<Operation *> candidates;
    for (Operation &op : model.getBlock())
      if (isa<GeluOp, ReluOp, LayerNormOp>(op) && !isBackward(&op))
        candidates.push_back(&op);
    for (Operation *op : candidates)
      recompute(op);
  }

private:
  /// The token operands (activations) of op: parameters are always at hand.
  static SmallVector<Value> activations(Operation *op) {
    SmallVector<Value> acts;
    for (Value v : op->getOperands())
      if (!v.getDefiningOp<ParamOp>())
        acts.push_back(v);
    return acts;
  }

  void recompute(Operation *op) {
    Value result = op->getResult(0);
    // Full rows: the backward reads the output; its inputs must be read too.
    if (auto users = backwardUsers(result); !users.empty()) {
      if (llvm::all_of(activations(op), [](Value v) { return !backwardUsers(v).empty(); })) {
        OpBuilder b(users.front());
        Operation *clone = b.clone(*op);
        tagBackward(clone);
        result.replaceUsesWithIf(clone->getResult(0), [](OpOperand &use) { return isBackward(use.getOwner()); });
      }
    }
    // Kept rows: the saved gather of the output, from the saved gathers of the inputs.
    SmallVector<std::pair<Value, GatherRowsOp>> gathers;
    for (auto &[key, g] : savedGather)
      if (key.first == result)
        gathers.push_back({key.second, g});
    for (auto [keep, g] : gathers) {
      SmallVector<Value> operands;
      bool allSaved = true;
      for (Value v : op->getOperands()) {
        if (v.getDefiningOp<ParamOp>()) {
          operands.push_back(v);
          continue;
        }
        auto it = savedGather.find(std::make_pair(v, keep));
        allSaved &= it != savedGather.end() && !backwardUsers(it->second.getResult()).empty();
        if (!allSaved)
          break;
        operands.push_back(it->second.getResult());
      }
      auto users = backwardUsers(g.getResult());
      if (!allSaved || users.empty())
        continue;
      OpBuilder b(users.front());
      int64_t rows = cast<RankedTensorType>(keep.getType()).getDimSize(0);
      Operation *clone = cast<RowWiseOpInterface>(op).cloneOnRows(b, operands, rows);
      tagBackward(clone, op);
      g.getResult().replaceAllUsesWith(clone->getResult(0));
      savedGather.erase(std::make_pair(result, keep));
      g->erase();
    }
  }

  void tagBackward(Operation *clone, Operation *from = nullptr) {
    clone->setAttr(kBackwardAttr, UnitAttr::get(clone->getContext()));
    if (from)
      if (auto region = from->getAttr(kRegionAttr))
        clone->setAttr(kRegionAttr, region);
  }

  ModelOp model;
  /// The forward's gathers of saved activations, by (activation, keep indices).
  llvm::MapVector<std::pair<Value, Value>, GatherRowsOp> savedGather;
};

struct RecomputePass : sbp::impl::SbpRecomputeBase<RecomputePass> {
  void runOnOperation() override {
    for (ModelOp model : getOperation().getOps<ModelOp>())
      Recomputer(model).run();
  }
};
} // namespace
