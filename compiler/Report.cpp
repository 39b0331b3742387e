//===- Report.cpp - compile-time costs of a lowered model -----------------===//
#include "Report.h"
#include "ModelLayout.h"
#include "SbpKernel/KernelTable.h"
#include "SbpKernel/SbpKernelDialect.h"

#include "llvm/ADT/STLExtras.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/FormatVariadic.h"

#include <vector>

using namespace mlir;
using namespace sbp;

/// Attention FLOPs from its sizes: 4 T_q T_k Dh per (batch, head) forward
/// (q k^T and P v), 10 in the backward (recomputed q k^T, dV, dP, dQ, dK).
/// A drop_qkv forward runs K queries over K keys and T - K over T; the
/// drop_query backward K queries over T keys.
static double attentionFlops(sbpk::KernelOp k) {
  auto size = [&](StringRef name) { return static_cast<double>(k->getAttrOfType<IntegerAttr>(name).getInt()); };
  double bh = size("batch") * size("heads"), dh = size("head_dim"), t = size("tokens");
  StringRef name = k.getCallee();
  if (name == sbpk::kernel::attention_fwd)
    return 4 * bh * t * t * dh;
  if (name == sbpk::kernel::attention_fwd_sbp) {
    double kept = size("kept");
    return 4 * bh * (kept * kept + (t - kept) * t) * dh;
  }
  if (name == sbpk::kernel::attention_bwd_queries)
    return 10 * bh * size("kept") * t * dh;
  return 10 * bh * t * t * dh; // attention_bwd on T (or the kept) rows, attention_bwd_heads
}

static double flopsOf(Operation *op) {
  if (auto f = dyn_cast<sbpk::FusedOp>(op)) {
    double sum = 0;
    for (Operation &inner : f.getBlock().without_terminator())
      sum += flopsOf(&inner);
    return sum;
  }
  if (auto g = dyn_cast<sbpk::GemmOp>(op))
    return 2.0 * g.getM() * g.getN() * g.getK();
  auto k = dyn_cast<sbpk::KernelOp>(op);
  if (!k)
    return 0;
  if (k.getCallee().starts_with("attention"))
    return attentionFlops(k);
  if (k.getCallee().starts_with("gemm")) {
    auto size = [&](StringRef name) { return static_cast<double>(k->getAttrOfType<IntegerAttr>(name).getInt()); };
    return 2.0 * size("m") * size("n") * size("k");
  }
  const sbpk::KernelInfo *info = sbpk::lookupKernel(k.getCallee());
  // dx of a depth-wise conv is dense even when dy comes as its kept rows.
  bool perResult = !k->getNumOperands() || k.getCallee() == sbpk::kernel::dwconv_grad_input_rows;
  Value v = perResult ? k->getResult(0) : k->getOperand(0);
  return info->flopsPerElement * cast<RankedTensorType>(v.getType()).getNumElements();
}

static std::string regionOf(Operation *op) {
  auto r = op->getAttrOfType<StringAttr>("region");
  return r ? r.str() : "";
}

/// The region of result `i` of `op`: of a fusion group, the region of the
/// member that computes it (a group may hold a region's last op and the
/// residual add after it, which belongs to no region).
static std::string regionOfResult(Operation *op, unsigned i) {
  if (auto fused = dyn_cast<sbpk::FusedOp>(op))
    if (Operation *def = fused.getBlock().getTerminator()->getOperand(i).getDefiningOp())
      return regionOf(def);
  return regionOf(op);
}

ModelReport sbp::computeReport(ModuleOp module) {
  ModelReport report;
  for (ModelOp model : module.getOps<ModelOp>()) {
    report.model = model.getSymName().str();
    report.batch = model.getBatchSize();
    for (const ParamSlot &s : layoutParams(model))
      report.parameters += s.numel;
    if (auto sgd = dyn_cast<SgdAttr>(model.getOptimizer()))
      report.optimizerStates = sgd.getMomentum().isZero() ? 0 : 1;
    else
      report.optimizerStates = 2;
  }
  for (sbpk::GraphOp graph : module.getOps<sbpk::GraphOp>()) {
    int64_t arena = graph.getArenaBytes().value_or(0);
    if (graph.getSymName() == "eval") {
      report.evalArenaBytes = arena;
      continue;
    }
    report.trainArenaBytes = arena;
    for (Operation &op : graph.getBlock()) {
      bool backward = op.hasAttr("bwd");
      double flops = flopsOf(&op);
      (backward ? report.total.backwardFlops : report.total.forwardFlops) += flops;
      // A fusion group's FLOPs go to its members' regions.
      SmallVector<Operation *> members = {&op};
      if (auto fused = dyn_cast<sbpk::FusedOp>(op))
        members = llvm::to_vector(llvm::map_range(fused.getBlock().without_terminator(), [](Operation &m) { return &m; }));
      for (Operation *m : members) {
        Cost &region = report.regions[regionOf(m)];
        (backward ? region.backwardFlops : region.forwardFlops) += m == &op ? flops : flopsOf(m);
      }
      if (backward || !isa<sbpk::KernelOp, sbpk::GemmOp, sbpk::FusedOp>(op))
        continue;
      // A forward value read by the backward is a saved activation.
      for (auto [i, r] : llvm::enumerate(op.getResults())) {
        Operation *reader = nullptr;
        for (Operation *user : r.getUsers())
          if (user->hasAttr("bwd"))
            reader = user;
        if (!reader)
          continue;
        int64_t bytes = sbpk::byteSize(r.getType());
        report.total.savedBytes += bytes;
        std::string name = regionOfResult(&op, unsigned(i));
        if (name.empty())
          name = regionOf(reader);
        report.regions[name].savedBytes += bytes;
      }
    }
  }
  report.regions.erase("");
  return report;
}

static std::string human(double v, const char *unit) {
  const char *prefixes[] = {"", "K", "M", "G", "T"};
  int i = 0;
  while (v >= 1000 && i < 4) {
    v /= 1000;
    ++i;
  }
  std::string s;
  llvm::raw_string_ostream os(s);
  os << llvm::format("%.2f %s%s", v, prefixes[i], unit);
  return s;
}

static void row(llvm::raw_ostream &os, llvm::StringRef what, double withSbp, double without, const char *unit) {
  double ratio = without > 0 ? withSbp / without : 1.0;
  os << llvm::format("  %-34s %14s %14s %7.3fx\n", what.str().c_str(), human(withSbp, unit).c_str(),
                     human(without, unit).c_str(), ratio);
}

void sbp::printReport(llvm::raw_ostream &os, const ModelReport &s, const ModelReport &d) {
  os << "model " << s.model << ": batch " << s.batch << ", " << s.parameters << " parameters ("
     << human(4.0 * s.parameters, "B") << ")\n";
  os << llvm::formatv("  {0,-34} {1,14} {2,14} {3,8}\n", "", "with SBP", "without SBP", "ratio");
  row(os, "forward FLOPs / step", s.total.forwardFlops, d.total.forwardFlops, "FLOP");
  row(os, "backward FLOPs / step", s.total.backwardFlops, d.total.backwardFlops, "FLOP");
  row(os, "saved activations", s.total.savedBytes, d.total.savedBytes, "B");
  row(os, "planned peak (train arena)", s.trainArenaBytes, d.trainArenaBytes, "B");
  row(os, "planned peak (eval arena)", s.evalArenaBytes, d.evalArenaBytes, "B");
  row(os, "planned training memory", s.trainingBytes(), d.trainingBytes(), "B");
  os << "  (training memory: train arena + float32 parameters, gradients and optimizer state)\n";
  if (s.regions.empty())
    return;
  os << "SBP regions:\n";
  // Natural order: blocks.4 before blocks.10.
  std::vector<std::pair<std::string, Cost>> regions(s.regions.begin(), s.regions.end());
  auto key = [](llvm::StringRef name) {
    std::vector<std::pair<std::string, uint64_t>> parts;
    while (!name.empty()) {
      size_t digits = name.find_first_of("0123456789");
      llvm::StringRef text = name.take_front(digits);
      name = name.drop_front(text.size());
      uint64_t number = 0;
      llvm::StringRef num = name.take_while([](char c) { return c >= '0' && c <= '9'; });
      name = name.drop_front(num.size());
      num.getAsInteger(10, number);
      parts.push_back({text.str(), number});
    }
    return parts;
  };
  llvm::stable_sort(regions, [&](const auto &a, const auto &b) { return key(a.first) < key(b.first); });
  for (const auto &[name, cost] : regions) {
    auto it = d.regions.find(name);
    Cost dense = it == d.regions.end() ? Cost{} : it->second;
    row(os, name + " backward FLOPs", cost.backwardFlops, dense.backwardFlops, "FLOP");
    row(os, name + " saved activations", cost.savedBytes, dense.savedBytes, "B");
  }
}
