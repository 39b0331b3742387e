//===- GradientSupport.cpp - gradient support analysis and its checker ----===//
#include "GradientSupport.h"
#include "Passes.h"

#include <tuple>

namespace sbp {
#define GEN_PASS_DEF_SBPCHECKGRADIENTSUPPORT
#include "Passes.h.inc"
} // namespace sbp

using namespace mlir;
using namespace sbp;

MaskGroupOp sbp::getMaskGroup(Value keep) {
  auto op = keep.getDefiningOp<KeepIndicesOp>();
  return SymbolTable::lookupNearestSymbolFrom<MaskGroupOp>(op, op.getMaskAttr());
}

static Support intersect(Support a, const Support &b) {
  for (Value k : b.keeps)
    if (!llvm::is_contained(a.keeps, k))
      a.keeps.push_back(k);
  return a;
}

static bool sameMasks(const Support &a, const Support &b) {
  return a.keeps.size() == b.keeps.size() &&
         llvm::all_of(a.keeps, [&](Value k) { return llvm::is_contained(b.keeps, k); });
}

/// The union of two supports. It is exact when both sides are the same
/// intersection of masks; otherwise every row is a sound over-approximation.
static Support unite(const Support &a, const Support &b) {
  if (a.isAll() || b.isAll() || !sameMasks(a, b))
    return {};
  return a;
}

GradientSupport::GradientSupport(ModelOp model) {
  for (Operation &op : model.getBlock()) {
    if (!op.hasAttr(kBackwardAttr))
      continue;
    Support s;
    if (auto mask = dyn_cast<MaskRowsOp>(op)) {
      s = intersect(support.lookup(mask.getInput()), Support{{mask.getKeep()}});
    } else if (auto scatter = dyn_cast<ScatterRowsOp>(op)) {
      // Kept rows of a compact gradient (an SBP attention map's dqkv).
      s = Support{{scatter.getKeep()}};
    } else if (isa<AddOp>(op)) {
      s = unite(support.lookup(op.getOperand(0)), support.lookup(op.getOperand(1)));
    } else if (isa<RowWiseOpInterface>(op)) {
      bool first = true;
      for (Value v : op.getOperands()) {
        Operation *def = v.getDefiningOp();
        if (!def || !def->hasAttr(kBackwardAttr))
          continue; // a forward activation or a weight: no restriction
        s = first ? support.lookup(v) : intersect(s, support.lookup(v));
        first = false;
      }
    }
    for (Value r : op.getResults())
      support[r] = s;
  }
}

bool GradientSupport::canVanish(const Support &s) {
  // Masks that share a draw (same kind, ratio and drawn grid: the runtime
  // draws once) keep the same positions of the rows they meet on, so they
  // count once. A prefix token (class token) is in every kept set.
  std::vector<MaskGroupOp> distinct;
  int64_t dropped = 0, positions = 0;
  for (Value k : s.keeps) {
    MaskGroupOp g = getMaskGroup(k);
    if (g.getPrefix() != 0)
      return false;
    if (llvm::any_of(distinct, [&](MaskGroupOp d) { return d.sharesDrawWith(g); }))
      continue;
    distinct.push_back(g);
    positions = g.getGrid()[0] * g.getGrid()[1];
    // The fewest positions any step keeps: small grids can keep fewer than r * n.
    dropped += positions - g.getMinKept();
  }
  // Pigeonhole: sets of n positions surely overlap only when the positions
  // they drop at most add up to fewer than n.
  return distinct.size() > 1 && dropped >= positions;
}

std::string GradientSupport::describe(const Support &s) {
  if (s.isAll())
    return "all";
  std::string out;
  for (Value k : s.keeps)
    out += (out.empty() ? "@" : " & @") + getMaskGroup(k).getSymName().str();
  return out;
}

namespace {
struct CheckGradientSupportPass
    : sbp::impl::SbpCheckGradientSupportBase<CheckGradientSupportPass> {
  using SbpCheckGradientSupportBase::SbpCheckGradientSupportBase;

  void runOnOperation() override {
    bool failed = false;
    for (ModelOp model : getOperation().getOps<ModelOp>()) {
      GradientSupport analysis(model);
      for (Operation &op : model.getBlock()) {
        if (annotate && op.hasAttr(kBackwardAttr) && op.getNumResults())
          op.setAttr("sbp.support", StringAttr::get(&getContext(),
                                                    GradientSupport::describe(analysis.lookup(op.getResult(0)))));
        auto pg = dyn_cast<ParamGradOp>(op);
        if (!pg)
          continue;
        Support s = analysis.lookup(pg.getGrad());
        if (!GradientSupport::canVanish(s))
          continue;
        InFlightDiagnostic diag = pg.emitError("gradient of parameter '")
                                  << pg.getName() << "' vanishes: it only flows through the kept rows of "
                                  << GradientSupport::describe(s)
                                  << ", whose kept token sets can be disjoint (Eq. 10); share one mask group";
        for (Value k : s.keeps)
          diag.attachNote(getMaskGroup(k).getLoc()) << "mask group here";
        failed = true;
      }
    }
    if (failed)
      signalPassFailure();
  }
};
} // namespace
