//===- KernelTable.h - the fixed set of non-GEMM kernels --------*- C++ -*-===//
//
// One row per kernel that `sbpk.kernel` may name: its operand and result
// counts, the integer size attributes every emitter reads, and its cost model
// (FLOPs per output element) for `sbpc --emit=report`.
//
//===----------------------------------------------------------------------===//
#ifndef SBPK_KERNELTABLE_H
#define SBPK_KERNELTABLE_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"

namespace sbpk {
struct KernelInfo {
  llvm::StringRef name;
  unsigned numOperands;
  unsigned numResults;
  llvm::ArrayRef<llvm::StringRef> sizeAttrs; // required i64 attributes
  double flopsPerElement;                    // of the first operand
};

/// The row for `name`, or nullptr when no such kernel exists.
const KernelInfo *lookupKernel(llvm::StringRef name);
llvm::ArrayRef<KernelInfo> allKernels();
} // namespace sbpk

#endif // SBPK_KERNELTABLE_H
