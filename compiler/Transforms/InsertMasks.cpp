//===- InsertMasks.cpp - sbp.branch -> body + keep mask + gradient gate ---===//
#include "Passes.h"

#include "mlir/IR/IRMapping.h"
#include "mlir/IR/SymbolTable.h"
#include "llvm/ADT/MapVector.h"

namespace sbp {
#define GEN_PASS_DEF_SBPINSERTMASKS
#include "Passes.h.inc"
} // namespace sbp

using namespace mlir;
using namespace sbp;

namespace {
struct InsertMasksPass : sbp::impl::SbpInsertMasksBase<InsertMasksPass> {
  using SbpInsertMasksBase::SbpInsertMasksBase;

  void runOnOperation() override {
    if (keepOverride != -1.0 && !(keepOverride > 0.0 && keepOverride <= 1.0)) {
      getOperation().emitError("keep ratio override must be in (0, 1], got ") << keepOverride;
      return signalPassFailure();
    }
    for (ModelOp model : getOperation().getOps<ModelOp>())
      if (failed(runOnModel(model)))
        return signalPassFailure();
  }

  LogicalResult runOnModel(ModelOp model) {
    // The override is the SBP keep ratio: drop-path rates (samples groups)
    // are the model's regularisation and stay.
    if (keepOverride > 0.0)
      for (MaskGroupOp group : model.getBlock().getOps<MaskGroupOp>())
        if (group.getKind() != MaskKind::samples)
          group.setKeepAttr(FloatAttr::get(Float64Type::get(&getContext()), keepOverride));

    if (auto blocks = model.getBlock().getOps<VitBlockOp>(); !blocks.empty())
      return (*blocks.begin()).emitOpError("is a composite op: run sbp-decompose first");
    for (Operation &op : model.getBlock())
      if (isa<ConvNextBlockOp, ConvNextDownsampleOp>(op))
        return op.emitOpError("is a composite op: run sbp-decompose first");
    splitPerBlockHeadGroups(model);
    splitPerOpSampleGroups(model);
    llvm::DenseMap<Operation *, Value> keepOfGroup;
    for (AttentionOp attn : model.getBlock().getOps<AttentionOp>())
      if (attn.getMask() && !attn.getKeep())
        annotateAttention(attn, keepOfGroup);
    for (DropPathOp dp : llvm::make_early_inc_range(model.getBlock().getOps<DropPathOp>()))
      if (!dp.getKeep())
        annotateDropPath(dp, keepOfGroup);

    // Inner branches first, so that an outer body holds no branch when inlined.
    SmallVector<BranchOp> branches;
    model.walk<WalkOrder::PostOrder>([&](BranchOp b) { branches.push_back(b); });
    for (BranchOp branch : branches) {
      auto group = SymbolTable::lookupNearestSymbolFrom<MaskGroupOp>(branch, branch.getMaskAttr());
      Value keep;
      if (group.getKeep().convertToDouble() < 1.0)
        keep = getKeepIndices(group, keepOfGroup);
      inlineBranch(branch, keep);
    }
    return success();
  }

  /// A heads group (not `shared`, keep below 1) used by several attention ops
  /// becomes one group per op, so that each block draws its own heads. The
  /// copies take the group's place, in the order of their ops, and are named
  /// `<group>.<region>` (`<group>.<k>` for an op without a region).
  void splitPerBlockHeadGroups(ModelOp model) {
    llvm::MapVector<Operation *, SmallVector<AttentionOp>> users;
    for (AttentionOp attn : model.getBlock().getOps<AttentionOp>()) {
      if (!attn.getMask() || attn.getKeep())
        continue;
      auto group = SymbolTable::lookupNearestSymbolFrom<MaskGroupOp>(attn, attn.getMaskAttr());
      if (group && group.getKind() == MaskKind::heads && !group.getShared() &&
          group.getKeep().convertToDouble() < 1.0)
        users[group].push_back(attn);
    }
    splitGroups(model, users);
  }

  /// A samples group used by several sbp.drop_path ops becomes one group per
  /// op: timm draws every block's samples anew.
  void splitPerOpSampleGroups(ModelOp model) {
    llvm::MapVector<Operation *, SmallVector<DropPathOp>> users;
    for (DropPathOp dp : model.getBlock().getOps<DropPathOp>()) {
      auto group = SymbolTable::lookupNearestSymbolFrom<MaskGroupOp>(dp, dp.getMaskAttr());
      if (!dp.getKeep() && group && group.getKind() == MaskKind::samples)
        users[group].push_back(dp);
    }
    splitGroups(model, users);
  }

  /// Gives each user of a group with several users a copy of the group, in
  /// the group's place and in user order, named `<group>.<region>`
  /// (`<group>.<k>` for a user without a region).
  template <typename OpT>
  void splitGroups(ModelOp model, llvm::MapVector<Operation *, SmallVector<OpT>> &users) {
    SymbolTable symbols(model);
    for (auto &[op, ops] : users) {
      if (ops.size() < 2)
        continue;
      auto group = cast<MaskGroupOp>(op);
      OpBuilder b(group);
      for (auto [k, user] : llvm::enumerate(ops)) {
        auto region = user->template getAttrOfType<StringAttr>(kRegionAttr);
        std::string name = group.getSymName().str() + "." +
                           (region ? region.getValue().str() : std::to_string(k));
        auto copy = cast<MaskGroupOp>(b.clone(*group));
        copy.setSymName(name);
        symbols.insert(copy); // renames on a clash, so read the name back
        user.setMaskAttr(FlatSymbolRefAttr::get(copy.getSymNameAttr()));
      }
      symbols.erase(group);
    }
  }

  /// A drop path reads its group's kept samples; at rate 0 it is the identity.
  void annotateDropPath(DropPathOp dp, llvm::DenseMap<Operation *, Value> &keepOfGroup) {
    auto group = SymbolTable::lookupNearestSymbolFrom<MaskGroupOp>(dp, dp.getMaskAttr());
    if (dp.getRate().convertToDouble() > 0.0 && group.getKeep().convertToDouble() < 1.0) {
      dp.getKeepMutable().assign(getKeepIndices(group, keepOfGroup));
      return;
    }
    dp.getResult().replaceAllUsesWith(dp.getInput());
    dp.erase();
  }

  /// An SBP attention map reads its group's keep indices; at keep 1.0 it is
  /// an ordinary attention.
  void annotateAttention(AttentionOp attn, llvm::DenseMap<Operation *, Value> &keepOfGroup) {
    auto group = SymbolTable::lookupNearestSymbolFrom<MaskGroupOp>(attn, attn.getMaskAttr());
    if (group.getKeep().convertToDouble() < 1.0) {
      attn.getKeepMutable().assign(getKeepIndices(group, keepOfGroup));
      return;
    }
    attn.removeMaskAttr();
    attn.removeModeAttr();
  }

  /// One sbp.keep_indices per group, at the top of the model so that it
  /// dominates every use (and every gather the pruning adds).
  Value getKeepIndices(MaskGroupOp group, llvm::DenseMap<Operation *, Value> &cache) {
    Value &keep = cache[group];
    if (keep)
      return keep;
    OpBuilder b(group->getBlock(), group->getBlock()->begin());
    auto type = RankedTensorType::get({group.getCapacity()}, b.getI32Type());
    keep = b.create<KeepIndicesOp>(group.getLoc(), type, FlatSymbolRefAttr::get(group.getSymNameAttr()));
    return keep;
  }

  void inlineBranch(BranchOp branch, Value keep) {
    OpBuilder b(branch);
    IRMapping map;
    Block &body = branch.getBody().front();
    map.map(body.getArguments(), branch.getInputs());
    StringAttr region = branch.getNameAttr();
    for (Operation &op : body.without_terminator()) {
      Operation *clone = b.clone(op, map);
      if (region && !clone->hasAttr(kRegionAttr))
        clone->setAttr(kRegionAttr, region);
    }
    auto yield = cast<YieldOp>(body.getTerminator());
    for (auto [result, yielded] : llvm::zip(branch.getResults(), yield.getValues())) {
      Value value = map.lookupOrDefault(yielded);
      if (keep) {
        auto gate = b.create<GradGateOp>(branch.getLoc(), value.getType(), value, keep);
        if (region)
          gate->setAttr(kRegionAttr, region);
        value = gate;
      }
      result.replaceAllUsesWith(value);
    }
    branch.erase();
  }
};
} // namespace
