//===- SbpKernelDialect.h - the sbpk kernel-graph dialect -------*- C++ -*-===//
#ifndef SBPK_SBPKERNELDIALECT_H
#define SBPK_SBPKERNELDIALECT_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "TensorLimits.h"

#include "SbpKernel/SbpKernelOpsDialect.h.inc"
#define GET_OP_CLASSES
#include "SbpKernel/SbpKernelOps.h.inc"

namespace sbpk {
/// Discardable attribute set by sbp-plan-memory: one arena byte offset per result.
inline constexpr llvm::StringLiteral kArenaOffsetsAttr = "arena_offsets";
/// Discardable attributes of an op that needs arena scratch while it runs:
/// its size (set by the pass that needs it) and offset (sbp-plan-memory).
inline constexpr llvm::StringLiteral kScratchBytesAttr = "scratch_bytes";
inline constexpr llvm::StringLiteral kScratchOffsetAttr = "scratch_offset";
/// Unit attribute beside scratch_bytes: the kernel runs without the scratch
/// too (slower), so sbp-plan-memory grants it only where it fits in memory
/// that is free anyway, and otherwise drops scratch_bytes (the emitter then
/// passes nullptr, 0): it never raises the planned peak.
inline constexpr llvm::StringLiteral kScratchOptionalAttr = "scratch_optional";
/// Unit attribute of an op whose column sums (a fusion group's) or row-chunk
/// products (a weight-gradient GEMM's) the step's one deferred launch adds up
/// after the backward: its scratch stays planned until the end of the step.
inline constexpr llvm::StringLiteral kDeferredSumsAttr = "deferred_sums";
/// Discardable attribute of a weight-gradient `sbpk.gemm` (sbp-split-weight-
/// grads): it runs as this many row-chunk products into its scratch, which
/// the step's deferred column-sum launch adds into the gradient.
inline constexpr llvm::StringLiteral kRowChunksAttr = "row_chunks";
/// Unit attribute of a graph (sbp-plan-memory): its `images` input is planned
/// at arena offset 0, free after its last reader.
inline constexpr llvm::StringLiteral kImagesInArenaAttr = "images_in_arena";

/// The grad_out op that a value is written to, if any: such a value lives in
/// the gradient buffer instead of the arena.
GradOutOp getGradOutUser(mlir::Value value);

/// Bytes of a tensor value (f32 and i32 elements).
int64_t byteSize(mlir::Type type);
} // namespace sbpk

#endif // SBPK_SBPKERNELDIALECT_H
