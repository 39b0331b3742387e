//===- BudgetSearch.h - choose SBP blocks and keep ratio for a memory budget -*-
// C++ -*-===//
//
// `sbpc --memory-budget SIZE`: annotates the ViT blocks of a model with the
// SBP configuration that fits SIZE with the least gradient dropped, judged by
// the exact static memory plan (sbp-plan-memory) of each candidate. The order
// of preference is written once, in searchMemoryBudget's comment, and in
// docs/design.md ("Memory budget search").
//
//===----------------------------------------------------------------------===//
#ifndef SBP_COMPILER_BUDGETSEARCH_H
#define SBP_COMPILER_BUDGETSEARCH_H

#include "Pipeline.h"
#include "Report.h"

#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/StringRef.h"

#include <optional>
#include <string>
#include <vector>

namespace sbp {

/// "2.5GiB", "900MiB", "3GB", "123456" (bytes): binary (KiB, MiB, GiB, TiB)
/// and decimal (kB, MB, GB, TB) units, a bare number is bytes. nullopt with
/// `error` set for anything else (negative, zero unless `allowZero`, unknown
/// unit, overflow).
std::optional<int64_t> parseByteSize(llvm::StringRef text, std::string &error, bool allowZero = false);

/// "2.50 GiB": the binary unit that keeps the number below 1024.
std::string formatBytes(int64_t bytes);

/// Removes every SBP annotation the search decides: the mlp_sbp / attn_sbp
/// groups of sbp.vit_block ops, and the mask groups nothing uses then. A model
/// with other SBP regions (sbp.branch, a masked sbp.attention) is refused with
/// an error there: the search only places SBP on ViT blocks.
mlir::LogicalResult stripSbp(mlir::ModuleOp module);

/// Gives every activation of the model (every value but the parameters) the
/// leading dimension `batch`: images, labels, token tensors, logits.
mlir::LogicalResult setBatchSize(mlir::ModuleOp module, int64_t batch);

/// An attention treatment the search may give an SBP block: one of the
/// sbp.attention modes, or MLP-only SBP ("none": the attention stays dense).
bool isBudgetAttentionMode(llvm::StringRef mode);

struct BudgetOptions {
  int64_t budgetBytes = 0;
  /// Added to every plan: what a run needs beyond the planned buffers
  /// (CUDA context libraries' workspaces, loaded kernels, the CUDA graph).
  int64_t reserveBytes = 0;
  /// Keep ratios to try, highest (preferred) first.
  std::vector<double> keeps = {0.75, 0.5, 0.25};
  /// Attention treatments to try for each (keep, blocks), preferred first.
  std::vector<std::string> attentionModes = {"drop_qkv"};
  /// Batch sizes to try, largest (preferred) first; empty: the model's only.
  std::vector<int64_t> batches;
  PipelineOptions pipeline; // precision; keepOverride and stopAfter unused
};

/// One configuration: SBP on the last `sbpBlocks` ViT blocks at `keep`.
struct BudgetCandidate {
  int64_t batch = 0;
  int sbpBlocks = 0; // 0: dense
  double keep = 1.0;
  std::string attentionMode; // one of BudgetOptions::attentionModes
  int64_t trainArenaBytes = 0, evalArenaBytes = 0, stateBytes = 0, inputBytes = 0, reserveBytes = 0;
  /// arena (the larger of train and eval, as the runtime allocates) + state +
  /// input batch + reserve: what the search holds against the budget.
  int64_t peakBytes() const;
};

struct BudgetResult {
  BudgetCandidate chosen;
  int64_t budgetBytes = 0;
  std::vector<std::string> blockNames; // every ViT block, in model order
  std::string maskKind;                // "grid" or "random"
  int64_t densePeakBytes = 0;
  std::vector<BudgetCandidate> tried; // in the order of preference, the chosen one last
  int64_t modelBatch = 0;             // the input's batch size
  bool searchedBatches = false;       // --budget-batches: the batch is part of the choice
};

/// Searches the configurations of `module` (an sbp.model of sbp.vit_block ops,
/// its SBP annotations stripped) in this order of preference and annotates the
/// module with the first that fits (peakBytes() <= budget). For each batch
/// size (the model's, or those of BudgetOptions::batches, largest first):
///   1. dense (no SBP);
///   2. for each keep ratio, highest first: for k = 1 .. number of blocks
///      (SBP on the last k blocks, as the paper grows it from the output
///      side): for each attention treatment in the given order.
/// So a higher keep ratio always wins over fewer SBP blocks: the paper finds
/// keep 0.25 costly (-3.04% top-1) while SBP on 8 of 12 blocks at 0.5 costs
/// under 1.5%. When nothing fits, emits an error that names the smallest
/// planned peak of all candidates and its configuration, and fails.
mlir::FailureOr<BudgetResult> searchMemoryBudget(mlir::ModuleOp module, const BudgetOptions &options);

/// One line for reports and the trainer's --info, e.g. "memory budget 2.50 GiB:
/// SBP keep 0.5 grid, attention drop_qkv, on the last 4 of 12 ViT blocks
/// (blocks.8 .. blocks.11); planned peak 2.31 GiB".
std::string describeBudgetChoice(const BudgetResult &result);

/// The lines `sbpc --emit=report` prints for a budget search.
void printBudgetReport(llvm::raw_ostream &os, const BudgetResult &result);

} // namespace sbp

#endif
