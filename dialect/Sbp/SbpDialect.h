//===- SbpDialect.h - the sbp dialect ---------------------------*- C++ -*-===//
#ifndef SBP_SBPDIALECT_H
#define SBP_SBPDIALECT_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "TensorLimits.h"

#include "Sbp/SbpDialect.h.inc"
#include "Sbp/SbpEnums.h.inc"
#define GET_ATTRDEF_CLASSES
#include "Sbp/SbpAttrs.h.inc"

namespace sbp {
/// A token tensor [B, T, D] with T replaced by `rows`; other types unchanged.
mlir::Type withRowCount(mlir::Type type, int64_t rows);
/// True for token tensors [B, T, D]: the tensors SBP masks rows of.
bool isTokenTensor(mlir::Type type);
/// In-features of a linear weight [N, K1, K2, ...]: K1 * K2 * ... (a Conv2d
/// weight [D, C, p, p] over patchified tokens is a linear of K = C * p * p).
int64_t linearInFeatures(mlir::ArrayRef<int64_t> weightShape);
/// Discardable attributes the passes put on ops.
inline constexpr llvm::StringLiteral kBackwardAttr = "sbp.bwd";   // op is in the backward
inline constexpr llvm::StringLiteral kRegionAttr = "sbp.region";  // the SBP branch it came from
} // namespace sbp

#include "Sbp/SbpInterfaces.h.inc"

#endif // SBP_SBPDIALECT_H
