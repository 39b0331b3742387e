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
} // namespace sbp

#endif // SBP_COMPILER_PASSES_H
