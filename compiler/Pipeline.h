//===- Pipeline.h - sbpc's pass pipeline ------------------------*- C++ -*-===//
#ifndef SBP_COMPILER_PIPELINE_H
#define SBP_COMPILER_PIPELINE_H

#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"

namespace sbp {
struct PipelineOptions {
  double keepOverride = -1.0;  // in (0, 1]: replaces every mask group's keep ratio
  std::string stopAfter;       // a pass name: stop after it (sbpc --emit=mlir-after=)
  std::string precision = "fp32"; // fp32, or bf16 mixed precision (CUDA target)
  std::string target = "cuda";    // cuda or cpu: the trainer the graph is planned for
};

/// The passes sbpc runs, in order (the names sbp-opt knows them by).
llvm::ArrayRef<llvm::StringRef> pipelinePassNames();

/// Runs the pipeline on a verified module; diagnostics go to the context.
/// Every failure reports an error (a pass that fails silently is named).
mlir::LogicalResult runPipeline(mlir::ModuleOp module, const PipelineOptions &options);

/// What sbpc accepts: exactly one sbp.model and nothing else at the top
/// level. Emits a located error otherwise.
mlir::LogicalResult verifyCompilerInput(mlir::ModuleOp module);
} // namespace sbp

#endif
