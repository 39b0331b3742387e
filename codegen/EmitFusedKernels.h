//===- EmitFusedKernels.h - generated kernels of fusion groups --*- C++ -*-===//
//
// Each `sbpk.fused` op (sbp-fuse-kernels) becomes one generated function in
// the trainer source, specialised on its static sizes: a CUDA kernel and its
// launcher, or an OpenMP loop for the CPU. The function takes the kernel
// context (CUDA), then one pointer per operand, one per result, in op order,
// then the arena scratch (double *) when the op has `scratch_bytes`.
//
//===----------------------------------------------------------------------===//
#ifndef SBPC_EMITFUSEDKERNELS_H
#define SBPC_EMITFUSEDKERNELS_H

#include "SbpKernel/SbpKernelDialect.h"

#include "mlir/Support/LogicalResult.h"
#include "llvm/Support/raw_ostream.h"

namespace sbp {
/// Writes the definition of `op`'s generated function, named `name`. A
/// rowwise group marked `deferred_sums` leaves its column sums in its scratch
/// for emitDeferredColumnSums (CUDA; the CPU loops always finish them).
mlir::LogicalResult emitFusedKernel(llvm::raw_ostream &os, sbpk::FusedOp op, llvm::StringRef name, bool cuda);

/// The function `name(ctx, partial0, out0_0, out0_1, partial1, ...)` that adds
/// up the column sums of several rowwise groups in one launch (CUDA), and
/// with `gemms` (weight gradients with `row_chunks`, sbp-split-weight-grads)
/// also their row-chunk partial products, read at their scratch offsets in
/// `arena` and written at their gradient offsets in `grads`: the function
/// then takes `(ctx, arena, grads, partial0, ...)`.
mlir::LogicalResult emitDeferredColumnSums(llvm::raw_ostream &os, llvm::StringRef name,
                                           llvm::ArrayRef<sbpk::FusedOp> groups,
                                           llvm::ArrayRef<sbpk::GemmOp> gemms);

/// The result numbers of a rowwise group that are column sums, in the order
/// of its accumulators (dgamma, dbeta).
llvm::SmallVector<unsigned> columnSumResults(sbpk::FusedOp op);
} // namespace sbp

#endif // SBPC_EMITFUSEDKERNELS_H
