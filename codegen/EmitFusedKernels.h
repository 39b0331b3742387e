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
/// Writes the definition of `op`'s generated function, named `name`.
mlir::LogicalResult emitFusedKernel(llvm::raw_ostream &os, sbpk::FusedOp op, llvm::StringRef name, bool cuda);
} // namespace sbp

#endif // SBPC_EMITFUSEDKERNELS_H
