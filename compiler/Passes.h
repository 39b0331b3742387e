//===- Passes.h - the sbpc pipeline's passes --------------------*- C++ -*-===//
#ifndef SBP_COMPILER_PASSES_H
#define SBP_COMPILER_PASSES_H

#include "Sbp/SbpOps.h"
#include "SbpKernel/SbpKernelDialect.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/Pass.h"

namespace sbp {
#define GEN_PASS_DECL
#include "Passes.h.inc"
#define GEN_PASS_REGISTRATION
#include "Passes.h.inc"

/// The `target` option of a target-specific pass: true for "cuda", false for
/// "cpu" (the pass leaves the module alone), failure with a located error
/// naming the pass for anything else.
inline mlir::FailureOr<bool> isCudaTarget(mlir::ModuleOp module, llvm::StringRef pass, llvm::StringRef target) {
  if (target != "cuda" && target != "cpu") {
    module.emitError(pass) << ": unknown target '" << target << "' (cuda or cpu)";
    return mlir::failure();
  }
  return target == "cuda";
}
} // namespace sbp

#endif // SBP_COMPILER_PASSES_H
