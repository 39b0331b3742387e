//===- BudgetSearch.cpp - choose SBP blocks and keep ratio for a memory budget
//===//
//
// Each candidate is the model annotated for that configuration and lowered
// through the whole pipeline to its static memory plan: the numbers the
// search compares are the ones `--emit=report` prints for the same model.
//
//===----------------------------------------------------------------------===//
#include "BudgetSearch.h"
#include "ErrorCounter.h"

#include "Sbp/SbpOps.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/Verifier.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/FormatVariadic.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <cstdio>
#include <limits>

using namespace mlir;
using namespace sbp;

std::optional<int64_t> sbp::parseByteSize(llvm::StringRef text, std::string &error, bool allowZero) {
  llvm::StringRef s = text.trim();
  size_t numberEnd = 0;
  while (numberEnd < s.size() && (llvm::isDigit(s[numberEnd]) || s[numberEnd] == '.'))
    ++numberEnd;
  llvm::StringRef number = s.take_front(numberEnd), unit = s.drop_front(numberEnd).trim();
  double value = 0;
  if (number.empty() || number.count('.') > 1 || number == "." || number.getAsDouble(value)) {
    error = "'" + text.str() +
            "' is not a size: use a number with an optional unit, e.g. 2.5GiB "
            "or 900MiB";
    return std::nullopt;
  }
  static const std::pair<const char *, double> units[] = {{"", 1},          {"B", 1},
                                                          {"KiB", 1024.0},  {"MiB", 1024.0 * 1024},
                                                          {"GiB", 1 << 30}, {"TiB", 1099511627776.0},
                                                          {"kB", 1e3},      {"KB", 1e3},
                                                          {"MB", 1e6},      {"GB", 1e9},
                                                          {"TB", 1e12}};
  const double *scale = nullptr;
  for (const auto &[name, factor] : units)
    if (unit == name)
      scale = &factor;
  if (!scale) {
    error = "'" + text.str() + "' has an unknown unit '" + unit.str() + "' (B, KiB, MiB, GiB, TiB, kB, MB, GB, TB)";
    return std::nullopt;
  }
  double bytes = std::floor(value * *scale);
  if (!(bytes >= 1) && !(allowZero && bytes == 0)) {
    error = "'" + text.str() + "' is not a positive size";
    return std::nullopt;
  }
  if (bytes >= 9.2e18) {
    error = "'" + text.str() + "' is too large";
    return std::nullopt;
  }
  return static_cast<int64_t>(bytes);
}

std::string sbp::formatBytes(int64_t bytes) {
  const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  return u == 0 ? std::to_string(bytes) + " B" : llvm::formatv("{0:f2} {1}", v, units[u]).str();
}

bool sbp::isBudgetAttentionMode(llvm::StringRef mode) {
  return mode == "drop_qkv" || mode == "drop_query" || mode == "drop_head" || mode == "none";
}

int64_t BudgetCandidate::peakBytes() const {
  return std::max(trainArenaBytes, evalArenaBytes) + stateBytes + inputBytes + reserveBytes;
}

static ModelOp theModel(ModuleOp module) { return *module.getOps<ModelOp>().begin(); }

LogicalResult sbp::stripSbp(ModuleOp module) {
  ModelOp model = theModel(module);
  WalkResult other = model.walk([&](Operation *op) {
    if (isa<BranchOp>(op))
      return op->emitError("SBP region outside a ViT block: the memory budget search "
                           "(and --strip-sbp) only place SBP on sbp.vit_block ops"),
             WalkResult::interrupt();
    if (auto attn = dyn_cast<AttentionOp>(op); attn && attn.getMaskAttr())
      return op->emitError("masked sbp.attention outside a ViT block: the memory budget "
                           "search "
                           "(and --strip-sbp) only place SBP on sbp.vit_block ops"),
             WalkResult::interrupt();
    return WalkResult::advance();
  });
  if (other.wasInterrupted())
    return failure();
  for (VitBlockOp block : model.getBlock().getOps<VitBlockOp>()) {
    block.removeMlpMaskAttr();
    block.removeAttnMaskAttr();
    block.removeAttnModeAttr();
  }
  for (MaskGroupOp group : llvm::make_early_inc_range(model.getBlock().getOps<MaskGroupOp>()))
    group.erase();
  return success();
}

LogicalResult sbp::setBatchSize(ModuleOp module, int64_t batch) {
  ModelOp model = theModel(module);
  int64_t old = model.getBatchSize();
  if (batch == old)
    return success();
  auto retype = [&](Value v) {
    auto t = dyn_cast<RankedTensorType>(v.getType());
    if (!t || t.getRank() == 0 || t.getDimSize(0) != old)
      return;
    SmallVector<int64_t> shape(t.getShape());
    shape[0] = batch;
    v.setType(RankedTensorType::get(shape, t.getElementType(), t.getEncoding()));
  };
  model.walk([&](Operation *op) {
    if (isa<ParamOp>(op))
      return;
    for (Region &r : op->getRegions())
      for (Block &b : r)
        if (op != model.getOperation())
          for (BlockArgument a : b.getArguments())
            retype(a);
    for (Value v : op->getResults())
      retype(v);
  });
  return verify(model);
}

namespace {
/// The token grid a ViT's masks are drawn on: from the patch embedding.
struct TokenGrid {
  int64_t h = 0, w = 0, prefix = 0;
};

FailureOr<TokenGrid> tokenGrid(ModelOp model, ArrayRef<VitBlockOp> blocks) {
  auto patchifies = model.getBlock().getOps<PatchifyOp>();
  if (patchifies.empty())
    return model.emitError("the memory budget search needs the patch grid of the ViT: "
                           "the model has no sbp.patchify"),
           failure();
  PatchifyOp p = *patchifies.begin();
  auto image = cast<RankedTensorType>(p.getImage().getType()).getShape();
  int64_t patch = p.getPatch();
  TokenGrid g{image[2] / patch, image[3] / patch, 0};
  VitBlockOp first = blocks.front();
  int64_t tokens = cast<RankedTensorType>(first.getInput().getType()).getDimSize(1);
  g.prefix = tokens - g.h * g.w;
  if (g.prefix < 0)
    return first.emitError("has ") << tokens << " tokens, fewer than the " << g.h << "x" << g.w << " patch grid",
           failure();
  return g;
}

/// Writes configuration `c` onto a stripped copy of the model.
void annotate(ModelOp model, ArrayRef<VitBlockOp> blocks, const BudgetCandidate &c, const TokenGrid &grid,
              MaskKind kind) {
  if (c.sbpBlocks == 0)
    return;
  MLIRContext *ctx = model.getContext();
  OpBuilder b(ctx);
  b.setInsertionPointToStart(&model.getBlock());
  auto keep = b.getF64FloatAttr(c.keep);
  b.create<MaskGroupOp>(model.getLoc(), b.getStringAttr("m"), keep, MaskKindAttr::get(ctx, kind),
                        b.getDenseI64ArrayAttr({grid.h, grid.w}), b.getI64IntegerAttr(grid.prefix));
  llvm::DenseMap<int64_t, FlatSymbolRefAttr> headGroups; // drop_head: one group per head count
  for (VitBlockOp block : blocks.take_back(c.sbpBlocks)) {
    block.setMlpMaskAttr(FlatSymbolRefAttr::get(ctx, "m"));
    if (c.attentionMode == "none")
      continue;
    FlatSymbolRefAttr group = FlatSymbolRefAttr::get(ctx, "m");
    AttentionMode mode = c.attentionMode == "drop_query"  ? AttentionMode::drop_query
                         : c.attentionMode == "drop_head" ? AttentionMode::drop_head
                                                          : AttentionMode::drop_qkv;
    if (mode == AttentionMode::drop_head) {
      int64_t heads = block.getHeads();
      FlatSymbolRefAttr &h = headGroups[heads];
      if (!h) {
        std::string name = headGroups.size() == 1 ? "h" : "h" + std::to_string(heads);
        b.create<MaskGroupOp>(model.getLoc(), b.getStringAttr(name), keep, MaskKindAttr::get(ctx, MaskKind::heads),
                              b.getDenseI64ArrayAttr({1, heads}), b.getI64IntegerAttr(0));
        h = FlatSymbolRefAttr::get(ctx, name);
      }
      group = h;
    }
    block.setAttnMaskAttr(group);
    block.setAttnModeAttr(AttentionModeAttr::get(ctx, mode));
  }
}

std::vector<VitBlockOp> vitBlocks(ModelOp model) {
  auto range = model.getBlock().getOps<VitBlockOp>();
  return std::vector<VitBlockOp>(range.begin(), range.end());
}

/// The batch buffers outside the arena: the labels (the images are planned
/// into the arena by sbp-plan-memory, see sbp_model_desc.images_in_arena).
int64_t inputBytes(ModelOp model) {
  int64_t bytes = 0;
  for (InputOp in : model.getBlock().getOps<InputOp>())
    if (in.getName() != "images")
      bytes += cast<RankedTensorType>(in.getType()).getNumElements() * 4; // i32 labels
  return bytes;
}

/// 0.5, 0.75, 0.4167: the shortest form that reads back as the value.
std::string keepText(double keep) {
  char text[32];
  std::snprintf(text, sizeof(text), "%g", keep);
  return text;
}

std::string describeCandidate(const BudgetCandidate &c, size_t numBlocks, bool withBatch = false) {
  std::string batch = withBatch ? "batch " + std::to_string(c.batch) + ", " : "";
  if (c.sbpBlocks == 0)
    return batch + "dense (no SBP)";
  std::string attention = c.attentionMode == "none" ? "MLP only (attention dense)" : "attention " + c.attentionMode;
  return batch +
         llvm::formatv("keep {0}, {1}, last {2} of {3} blocks", keepText(c.keep), attention, c.sbpBlocks, numBlocks)
             .str();
}
} // namespace

FailureOr<BudgetResult> sbp::searchMemoryBudget(ModuleOp module, const BudgetOptions &options) {
  ModelOp model = theModel(module);
  std::vector<VitBlockOp> blocks = vitBlocks(model);
  if (blocks.empty())
    return model.emitError("the memory budget search places SBP on "
                           "sbp.vit_block ops; this model has none"),
           failure();
  FailureOr<TokenGrid> grid = tokenGrid(model, blocks);
  if (failed(grid))
    return failure();
  // A mask kind the model chose before stripping is kept (grid otherwise).
  MaskKind kind = MaskKind::grid;
  for (MaskGroupOp g : model.getBlock().getOps<MaskGroupOp>())
    if (g.getKind() == MaskKind::random)
      kind = MaskKind::random;
  if (failed(stripSbp(module)))
    return failure();

  BudgetResult result;
  result.budgetBytes = options.budgetBytes;
  result.maskKind = kind == MaskKind::random ? "random" : "grid";
  for (VitBlockOp b : blocks)
    result.blockNames.push_back(b.getName().str());
  result.modelBatch = model.getBatchSize();
  result.searchedBatches = !options.batches.empty();
  std::vector<int64_t> batches = options.batches;
  if (batches.empty())
    batches.push_back(result.modelBatch);
  llvm::sort(batches, std::greater<int64_t>());
  batches.erase(std::unique(batches.begin(), batches.end()), batches.end());
  const bool withBatch = result.searchedBatches;

  // Plans candidate c on a copy of the stripped module; fills its numbers.
  auto plan = [&](BudgetCandidate &c) -> LogicalResult {
    OwningOpRef<ModuleOp> copy = module.clone();
    if (failed(setBatchSize(*copy, c.batch)))
      return model.emitError("cannot give the model batch size ") << c.batch, failure();
    ModelOp m = theModel(*copy);
    const int64_t input = inputBytes(m);
    annotate(m, vitBlocks(m), c, *grid, kind);
    PipelineOptions pipeline = options.pipeline;
    pipeline.keepOverride = -1.0;
    pipeline.stopAfter.clear();
    if (failed(runPipeline(*copy, pipeline)))
      return model.emitRemark("while planning the memory of configuration: ")
                 << describeCandidate(c, blocks.size(), withBatch),
             failure();
    ModelReport r = computeReport(*copy);
    c.trainArenaBytes = r.trainArenaBytes;
    c.evalArenaBytes = r.evalArenaBytes;
    c.stateBytes = r.trainingBytes() - r.trainArenaBytes;
    c.inputBytes = input;
    c.reserveBytes = options.reserveBytes;
    return success();
  };

  std::vector<BudgetCandidate> order;
  for (int64_t batch : batches) {
    BudgetCandidate dense;
    dense.batch = batch;
    order.push_back(dense);
    for (double keep : options.keeps)
      for (int k = 1; k <= static_cast<int>(blocks.size()); ++k)
        for (const std::string &mode : options.attentionModes) {
          BudgetCandidate c;
          c.batch = batch;
          c.sbpBlocks = k;
          c.keep = keep;
          c.attentionMode = mode;
          order.push_back(c);
        }
  }
  for (BudgetCandidate &c : order) {
    if (failed(plan(c)))
      return failure();
    result.tried.push_back(c);
    if (c.sbpBlocks == 0 && c.batch == batches.front())
      result.densePeakBytes = c.peakBytes();
    if (c.peakBytes() <= options.budgetBytes) {
      result.chosen = c;
      if (failed(setBatchSize(module, c.batch)))
        return failure();
      annotate(model, vitBlocks(model), c, *grid, kind);
      return result;
    }
  }
  const BudgetCandidate *smallest = &result.tried.front();
  for (const BudgetCandidate &c : result.tried)
    if (c.peakBytes() < smallest->peakBytes())
      smallest = &c;
  return model.emitError("no SBP configuration fits the memory budget of ")
             << formatBytes(options.budgetBytes) << " (" << options.budgetBytes << " B): the smallest planned peak is "
             << formatBytes(smallest->peakBytes()) << " (" << smallest->peakBytes() << " B), with "
             << describeCandidate(*smallest, blocks.size(), withBatch) << "; the dense plan is "
             << formatBytes(result.densePeakBytes) << " (searched " << result.tried.size()
             << " configurations; a smaller batch (--budget-batches) or keep ratio lowers it)",
         failure();
}

std::string sbp::describeBudgetChoice(const BudgetResult &r) {
  const BudgetCandidate &c = r.chosen;
  std::string text = "memory budget " + formatBytes(r.budgetBytes) + ": ";
  if (c.sbpBlocks == 0) {
    text += "dense (no SBP) fits";
  } else {
    std::string attention = c.attentionMode == "none" ? "MLP only (attention dense)" : "attention " + c.attentionMode;
    text += llvm::formatv("SBP keep {0} {1}, {2}, on the last {3} of {4} ViT "
                          "blocks ({5} .. {6})",
                          keepText(c.keep), r.maskKind, attention, c.sbpBlocks, r.blockNames.size(),
                          r.blockNames[r.blockNames.size() - c.sbpBlocks], r.blockNames.back())
                .str();
  }
  if (r.searchedBatches || c.batch != r.modelBatch)
    text += ", batch " + std::to_string(c.batch);
  return text + "; planned peak " + formatBytes(c.peakBytes());
}

void sbp::printBudgetReport(llvm::raw_ostream &os, const BudgetResult &r) {
  const BudgetCandidate &c = r.chosen;
  os << describeBudgetChoice(r) << "\n";
  os << llvm::formatv("  planned peak {0} B = arena {1} + parameters, "
                      "gradients, optimizer state {2} + "
                      "labels {3} (the images are in the arena) + reserve {4}\n",
                      c.peakBytes(), std::max(c.trainArenaBytes, c.evalArenaBytes), c.stateBytes, c.inputBytes,
                      c.reserveBytes);
  os << "  budget " << r.budgetBytes << " B; dense plan " << r.densePeakBytes << " B; searched " << r.tried.size()
     << " configurations, in order of preference:\n";
  for (const BudgetCandidate &t : r.tried)
    os << llvm::formatv("    {0,-58} peak {1,14} B  {2}\n", describeCandidate(t, r.blockNames.size(), r.searchedBatches),
                        t.peakBytes(),
                        t.peakBytes() <= r.budgetBytes ? "fits" : "over");
}
