//===- PruneBackward.cpp - backward on kept rows, activations saved at kept rows ===//
//
// Starting at each sbp.mask_rows (the gradient of an SBP gate), gradients are
// carried in compact form [B, K, D]: only the K kept rows. A token-wise
// backward op whose gradient operands are compact is rebuilt on K rows; the
// forward activations it reads are gathered right after they are computed, so
// that only their kept rows stay live until the backward. A compact gradient
// that meets a full one (the residual stream) is scattered into it.
//
// An SBP attention map's gradient arrives already compact (its rule gathers
// the kept rows and scatters dqkv back): a backward sbp.scatter_rows is a
// compact value too. A backward gather of a value that is compact is that
// value's rows; a gather of a token-wise backward op's result runs the op on
// the kept rows instead; a gather of a forward activation that the backward
// reads nowhere else moves right after the activation is made.
//
//===----------------------------------------------------------------------===//
#include "GradientSupport.h"
#include "Passes.h"

namespace sbp {
#define GEN_PASS_DEF_SBPPRUNEBACKWARD
#include "Passes.h.inc"
} // namespace sbp

using namespace mlir;
using namespace sbp;

namespace {
/// A gradient held at kept rows only.
struct Compact {
  Value rows; // [B, K, D]
  Value keep; // [K] the kept token indices
};

class Pruner {
public:
  explicit Pruner(ModelOp model) : model(model) {}

  void run() {
    SmallVector<Operation *> backward;
    for (Operation &op : model.getBlock())
      if (op.hasAttr(kBackwardAttr))
        backward.push_back(&op);
    for (Operation *op : backward)
      visit(op);
    eraseDeadBackward();
    materializeRemainingUses();
    eraseDeadBackward();
    hoistSavedGathers();
  }

private:
  void visit(Operation *op) {
    if (auto mask = dyn_cast<MaskRowsOp>(op))
      return visitMask(mask);
    if (auto scatter = dyn_cast<ScatterRowsOp>(op)) {
      compact[scatter.getResult()] = {scatter.getInput(), scatter.getKeep()};
      return;
    }
    if (auto gather = dyn_cast<GatherRowsOp>(op))
      return visitGather(gather);
    Value keep = compactKeep(op);
    if (!keep)
      return;
    if (isa<AddOp>(op) && !allCompact(op, keep))
      return visitMixedAdd(op, keep);
    if (isa<RowWiseOpInterface>(op) && allTokenOperandsPrunable(op, keep))
      return rebuildOnRows(op, keep);
  }

  /// mask_rows(d): its compact form is the kept rows of d.
  void visitMask(MaskRowsOp mask) {
    Value keep = mask.getKeep();
    auto it = compact.find(mask.getInput());
    if (it != compact.end() && it->second.keep == keep) {
      compact[mask.getResult()] = it->second;
      return;
    }
    OpBuilder b(mask);
    compact[mask.getResult()] = {gather(b, mask.getInput(), keep, mask), keep};
  }

  /// A gather of a compact value is its rows; a gather of the only use of a
  /// token-wise backward op runs that op on the kept rows.
  void visitGather(GatherRowsOp gather) {
    Value keep = gather.getKeep();
    if (Value rows = keptRows(gather.getInput(), keep, gather)) {
      gather.getResult().replaceAllUsesWith(rows);
      return;
    }
  }

  /// The kept rows of `v` without a gather where possible: v's compact form,
  /// or v's token-wise backward producer rebuilt on gathered operands. Null
  /// when only a gather would do.
  Value keptRows(Value v, Value keep, Operation *user) {
    if (auto it = compact.find(v); it != compact.end() && it->second.keep == keep)
      return it->second.rows;
    Operation *def = v.getDefiningOp();
    if (!def || !def->hasAttr(kBackwardAttr) || !isa<RowWiseOpInterface>(def) || def->getNumResults() != 1 ||
        !v.hasOneUse())
      return {};
    OpBuilder b(def);
    SmallVector<Value> operands;
    for (Value operand : def->getOperands()) {
      if (!isTokenTensor(operand.getType())) {
        operands.push_back(operand);
      } else if (Value rows = keptRows(operand, keep, def)) {
        operands.push_back(rows);
      } else {
        Operation *operandDef = operand.getDefiningOp();
        operands.push_back(operandDef && !operandDef->hasAttr(kBackwardAttr)
                               ? savedAtKeptRows(operand, keep, def)
                               : gather(b, operand, keep, def));
      }
    }
    Operation *pruned = cast<RowWiseOpInterface>(def).cloneOnRows(b, operands, keepRows(keep));
    copyTags(def, pruned);
    return pruned->getResult(0);
  }

  /// The keep indices shared by the op's compact operands, or null.
  Value compactKeep(Operation *op) {
    Value keep;
    for (Value v : op->getOperands()) {
      auto it = compact.find(v);
      if (it == compact.end())
        continue;
      if (keep && keep != it->second.keep)
        return {}; // different masks: leave the op on full rows
      keep = it->second.keep;
    }
    return keep;
  }

  bool allCompact(Operation *op, Value keep) {
    return llvm::all_of(op->getOperands(), [&](Value v) {
      auto it = compact.find(v);
      return it != compact.end() && it->second.keep == keep;
    });
  }

  /// A token operand may be gathered when it is a forward activation (read
  /// at kept rows only) or already compact.
  bool allTokenOperandsPrunable(Operation *op, Value keep) {
    return llvm::all_of(op->getOperands(), [&](Value v) {
      if (!isTokenTensor(v.getType()) || compact.count(v))
        return true;
      Operation *def = v.getDefiningOp();
      return !def || !def->hasAttr(kBackwardAttr);
    });
  }

  /// full + compact: scatter the kept rows into the full gradient.
  void visitMixedAdd(Operation *op, Value keep) {
    Value a = op->getOperand(0), b = op->getOperand(1);
    if (compact.count(a))
      std::swap(a, b);
    if (!compact.count(b) || compact.count(a))
      return;
    OpBuilder builder(op);
    auto sum = builder.create<ScatterAddRowsOp>(op->getLoc(), a.getType(), a, compact[b].rows, keep);
    copyTags(op, sum);
    op->getResult(0).replaceAllUsesWith(sum.getResult());
  }

  void rebuildOnRows(Operation *op, Value keep) {
    OpBuilder b(op);
    SmallVector<Value> operands;
    for (Value v : op->getOperands()) {
      if (auto it = compact.find(v); it != compact.end())
        operands.push_back(it->second.rows);
      else if (isTokenTensor(v.getType()))
        operands.push_back(savedAtKeptRows(v, keep, op));
      else
        operands.push_back(v);
    }
    int64_t rows = cast<RankedTensorType>(keep.getType()).getDimSize(0);
    Operation *pruned = cast<RowWiseOpInterface>(op).cloneOnRows(b, operands, rows);
    for (auto [old, now] : llvm::zip(op->getResults(), pruned->getResults())) {
      if (isTokenTensor(old.getType()))
        compact[old] = {now, keep};
      else
        old.replaceAllUsesWith(now);
    }
  }

  /// The kept rows of a forward activation, gathered right after it is made
  /// (once per activation and mask), so its full form dies in the forward.
  Value savedAtKeptRows(Value activation, Value keep, Operation *user) {
    Value &slot = saved[{activation, keep}];
    if (slot)
      return slot;
    // Keep indices are drawn at the top of the model, so they dominate this.
    OpBuilder b(activation.getContext());
    b.setInsertionPointAfter(activation.getDefiningOp());
    slot = b.create<GatherRowsOp>(activation.getLoc(), withRowCount(activation.getType(), keepRows(keep)),
                                  activation, keep);
    if (auto region = user->getAttr(kRegionAttr))
      slot.getDefiningOp()->setAttr(kRegionAttr, region);
    return slot;
  }

  static int64_t keepRows(Value keep) { return cast<RankedTensorType>(keep.getType()).getDimSize(0); }

  Value gather(OpBuilder &b, Value full, Value keep, Operation *tagFrom) {
    auto op = b.create<GatherRowsOp>(tagFrom->getLoc(), withRowCount(full.getType(), keepRows(keep)), full, keep);
    copyTags(tagFrom, op);
    return op;
  }

  void copyTags(Operation *from, Operation *to) {
    to->setAttr(kBackwardAttr, UnitAttr::get(to->getContext()));
    if (auto region = from->getAttr(kRegionAttr))
      to->setAttr(kRegionAttr, region);
  }

  /// Erases unused backward ops and gathers, until none is left. The compact
  /// form of a value that is still read in full form is kept: it is scattered
  /// back by materializeRemainingUses.
  void eraseDeadBackward() {
    for (bool changed = true; changed;) {
      changed = false;
      llvm::DenseSet<Operation *> needed;
      for (auto &[value, c] : compact)
        if (!value.use_empty())
          needed.insert(c.rows.getDefiningOp());
      SmallVector<Operation *> ops;
      for (Operation &op : model.getBlock())
        if (op.hasAttr(kBackwardAttr) || isa<GatherRowsOp>(op))
          ops.push_back(&op);
      for (Operation *op : llvm::reverse(ops)) {
        if (!op->use_empty() || isa<ParamGradOp>(op) || needed.count(op))
          continue;
        forgetCompact(op);
        op->erase();
        changed = true;
      }
    }
  }

  /// Drops map entries keyed by, or compacted into, results of `op`.
  void forgetCompact(Operation *op) {
    SmallVector<Value> stale;
    for (auto &[value, c] : compact)
      if (value.getDefiningOp() == op || c.rows.getDefiningOp() == op)
        stale.push_back(value);
    for (Value v : stale)
      compact.erase(v);
  }

  /// A backward gather of a forward activation that no other backward op
  /// reads in full moves right after the activation (the forward epilogue),
  /// so that only the kept rows stay live into the backward.
  void hoistSavedGathers() {
    SmallVector<GatherRowsOp> gathers;
    for (auto g : model.getBlock().getOps<GatherRowsOp>())
      if (g->hasAttr(kBackwardAttr))
        gathers.push_back(g);
    for (GatherRowsOp g : gathers) {
      Value activation = g.getInput();
      Operation *def = activation.getDefiningOp();
      if (!def || def->hasAttr(kBackwardAttr))
        continue;
      bool readInFull = llvm::any_of(activation.getUsers(), [&](Operation *user) {
        return user->hasAttr(kBackwardAttr) && !isa<GatherRowsOp>(user);
      });
      if (readInFull)
        continue;
      Value &slot = saved[{activation, g.getKeep()}];
      if (slot) {
        g.getResult().replaceAllUsesWith(slot);
        g->erase();
        continue;
      }
      g->moveAfter(def);
      g->removeAttr(kBackwardAttr);
      slot = g.getResult();
    }
  }

  /// A value rebuilt in compact form but still read in full form by an op
  /// that could not be pruned: scatter the kept rows back (zeros elsewhere).
  void materializeRemainingUses() {
    for (auto &[value, c] : compact) {
      if (value.use_empty() || value == c.rows)
        continue;
      if (auto scatter = value.getDefiningOp<ScatterRowsOp>(); scatter && scatter.getInput() == c.rows)
        continue; // already the full form of its rows
      OpBuilder b(value.getContext());
      b.setInsertionPointAfter(c.rows.getDefiningOp());
      auto full = b.create<ScatterRowsOp>(value.getLoc(), value.getType(), c.rows, c.keep);
      copyTags(c.rows.getDefiningOp(), full);
      value.replaceAllUsesWith(full.getResult());
    }
  }

  ModelOp model;
  llvm::DenseMap<Value, Compact> compact;
  llvm::DenseMap<std::pair<Value, Value>, Value> saved;
};

struct PruneBackwardPass : sbp::impl::SbpPruneBackwardBase<PruneBackwardPass> {
  void runOnOperation() override {
    for (ModelOp model : getOperation().getOps<ModelOp>())
      Pruner(model).run();
  }
};
} // namespace
