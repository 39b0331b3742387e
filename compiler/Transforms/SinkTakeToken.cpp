//===- SinkTakeToken.cpp - run what follows the last attention on one row -===//
//
// A ViT with class-token pooling (timm's global_pool='token') reads one row
// of the last block's output: `sbp.take_token %x index 0` after the final
// LayerNorm. Everything between the last attention and that read is
// token-wise (the output projection, the residual adds, norm2, the MLP), so
// the other rows are computed and differentiated for nothing: on ViT-Tiny a
// full block's projection and MLP, forward and backward, at 197 rows where
// 1 is read.
//
// This pass moves each `take_token` up through the token-wise ops that
// produce its input: take_token(f(x, w)) = f(take_token(x), w) for f in
// linear, bias_add, add, layer_norm, gelu, relu (weights and biases are not
// token tensors and stay), as long as every reader of f's result takes the
// same token. It stops at an op that mixes tokens (the attention), at a
// value that other ops read in full (the residual stream before the last
// block, which norm1 reads), and at anything else. An SBP gate
// (`sbp.grad_gate`, identity in the forward) is passed when the taken token
// is one of its mask group's prefix tokens, which every mask keeps: the gate
// is then the identity on that row in the backward too. The forward's
// values and the gradients are the same (the rows not taken have zero
// gradient); only the work on them is gone.
//
//===----------------------------------------------------------------------===//
#include "Passes.h"

#include "mlir/IR/SymbolTable.h"

namespace sbp {
#define GEN_PASS_DEF_SBPSINKTAKETOKEN
#include "Passes.h.inc"
} // namespace sbp

using namespace mlir;
using namespace sbp;

namespace {
/// The operands of a token-wise op that are read row by row (the rest are
/// weights, biases and gammas: per feature), or none if the op is not one
/// this pass moves a take_token through.
SmallVector<unsigned> rowOperands(Operation *op) {
  if (isa<AddOp>(op))
    return {0, 1};
  if (isa<LinearOp, BiasAddOp, LayerNormOp, GeluOp, ReluOp>(op))
    return {0};
  return {};
}

/// [B, T, N] of a token tensor, else empty.
ArrayRef<int64_t> tokenShape(Value v) {
  auto t = dyn_cast<RankedTensorType>(v.getType());
  return t && t.getRank() == 3 ? t.getShape() : ArrayRef<int64_t>();
}

/// Whether an SBP gate keeps row `index` at every step: the token is one of
/// its mask group's always-kept prefix tokens.
bool gateKeeps(GradGateOp gate, int64_t index) {
  auto indices = gate.getKeep().getDefiningOp<KeepIndicesOp>();
  if (!indices)
    return false;
  auto group = SymbolTable::lookupNearestSymbolFrom<MaskGroupOp>(indices, indices.getMaskAttr());
  return group && index < int64_t(group.getPrefix());
}

/// The take_token readers of v, if every reader of v is one taking token
/// `index`; else empty.
SmallVector<TakeTokenOp> allTake(Value v, int64_t index) {
  SmallVector<TakeTokenOp> takes;
  for (Operation *user : v.getUsers()) {
    auto t = dyn_cast<TakeTokenOp>(user);
    if (!t || int64_t(t.getIndex()) != index)
      return {};
    takes.push_back(t);
  }
  return takes;
}

/// [B, N]: the type of one token's rows of the token tensor x [B, T, N].
RankedTensorType tokenRowsType(Value x) {
  ArrayRef<int64_t> s = tokenShape(x);
  return RankedTensorType::get({s[0], s[2]}, cast<RankedTensorType>(x.getType()).getElementType());
}

/// take_token(x, index) [B, N] at the builder's position.
Value takeToken(OpBuilder &b, Location loc, Value x, int64_t index) {
  return b.create<TakeTokenOp>(loc, tokenRowsType(x), x, b.getI64IntegerAttr(index));
}

/// Moves the take_token ops reading `take`'s input one op up, if they may.
bool sinkOnce(TakeTokenOp take) {
  const int64_t index = take.getIndex();
  Value v = take.getInput();
  Operation *def = v.getDefiningOp();
  if (!def)
    return false;
  SmallVector<TakeTokenOp> takes = allTake(v, index);
  if (takes.empty())
    return false;
  Value replacement;
  if (auto gate = dyn_cast<GradGateOp>(def)) {
    if (!gateKeeps(gate, index))
      return false;
    OpBuilder b(def);
    replacement = takeToken(b, take.getLoc(), gate.getInput(), index);
  } else if (SmallVector<unsigned> rowArgs = rowOperands(def); !rowArgs.empty()) {
    ArrayRef<int64_t> rows = tokenShape(v);
    auto sameRows = [&](unsigned i) { return tokenShape(def->getOperand(i)).take_front(2) == rows.take_front(2); };
    if (!llvm::all_of(rowArgs, sameRows))
      return false;
    OpBuilder b(def);
    OperationState state(def->getLoc(), def->getName());
    for (auto [i, operand] : llvm::enumerate(def->getOperands()))
      state.addOperands(llvm::is_contained(rowArgs, i) ? takeToken(b, take.getLoc(), operand, index) : operand);
    state.addAttributes(def->getAttrs());
    state.addTypes(tokenRowsType(v));
    replacement = b.create(state)->getResult(0);
  } else {
    return false;
  }
  for (TakeTokenOp t : takes) {
    t.getResult().replaceAllUsesWith(replacement);
    t->erase();
  }
  if (def->use_empty())
    def->erase();
  return true;
}

struct SinkTakeTokenPass : sbp::impl::SbpSinkTakeTokenBase<SinkTakeTokenPass> {
  void runOnOperation() override {
    for (ModelOp model : getOperation().getOps<ModelOp>()) {
      // Each step moves a take_token one op up (or merges readers of one
      // value): a chain of n ops takes n steps.
      bool moved = true;
      while (moved) {
        moved = false;
        for (TakeTokenOp take : llvm::to_vector(model.getBlock().getOps<TakeTokenOp>()))
          if (sinkOnce(take)) {
            moved = true;
            break; // ops were erased
          }
      }
    }
  }
};
} // namespace
