//===- KernelTable.h - the library kernels sbpk.kernel may call -*- C++ -*-===//
//
// The rows of <sbp/kernel_table.def> (runtime/include), the one source of
// each kernel's name, operand and result counts, attributes, cost and the
// argument order of its library call, as data for the verifier, the passes,
// the report and the emitter.
//
//===----------------------------------------------------------------------===//
#ifndef SBPK_KERNELTABLE_H
#define SBPK_KERNELTABLE_H

#include "llvm/ADT/ArrayRef.h"
#include "llvm/ADT/StringRef.h"

namespace sbpk {

/// The kernel names, as constants: `sbpk::kernel::gelu` spells gelu.
namespace kernel {
#define SBP_KERNEL(name, ...) inline constexpr llvm::StringLiteral name{#name};
#include "sbp/kernel_table.def"
} // namespace kernel

/// One argument of a kernel's library call (see kernel_table.def).
struct KernelArg {
  enum Kind {
    In,       // operand `index`, float (or bf16 on CUDA)
    FloatIn,  // operand `index`, always float
    Index,    // operand `index`, int32
    Out,      // result `index`
    FloatOut, // result `index`, always float
    Size,     // i64 attribute `attr`
    F32,      // float attribute `attr` (`value` when absent and `hasDefault`)
    Flag,     // bool attribute `attr`
    LdA,      // trans_a ? m : k
    LdB,      // trans_b ? k : n
    NullIn,   // nullptr for a `const T *` parameter
    NullOut,  // nullptr for a `T *` parameter
    NullIndex, // nullptr for a `const int32_t *` parameter
    LitF32,   // the float constant `literal`
    LitI64,   // the integer constant `literal`
    Scratch,  // `void *p, int64_t p_bytes`: the op's planned scratch, or nullptr, 0
  };
  Kind kind;
  int index;               // operand or result number, else -1
  llvm::StringRef attr;    // attribute name, else empty
  llvm::StringRef param;   // the library function's parameter name
  double value;            // the F32 attribute's default
  bool hasDefault;
  llvm::StringRef literal; // a constant argument, as C++
};

struct KernelInfo {
  llvm::StringRef name;
  unsigned numOperands;
  unsigned numResults;
  double flopsPerElement; // of the first operand (the result without operands)
  llvm::StringRef function; // the library function the call goes to
  llvm::ArrayRef<KernelArg> args; // the call's arguments after the context
};

/// The row for `name`, or nullptr when no such kernel exists.
/// The operand of `callee` that holds one value per column (layer scale's
/// gamma, read at an element's column), -1 if none. The fusion pass and the
/// fused-kernel emitters both go by it.
inline int columnOperand(llvm::StringRef callee) {
  if (callee == kernel::layer_scale)
    return 1;
  if (callee == kernel::layer_scale_grad)
    return 2;
  return -1;
}

/// The results of `callee` that are column sums over its rows (dgamma and
/// dbeta of a LayerNorm gradient, a bias gradient, a layer scale's dgamma),
/// in result order: what a fusion group's scratch and its sums kernel hold.
inline llvm::ArrayRef<unsigned> columnSumResultNumbers(llvm::StringRef callee) {
  static const unsigned kLayerNormGrad[] = {1, 2}, kFirst[] = {0}, kSecond[] = {1};
  if (callee == kernel::layer_norm_grad)
    return kLayerNormGrad;
  if (callee == kernel::bias_grad)
    return kFirst;
  if (callee == kernel::layer_scale_grad)
    return kSecond;
  return {};
}

const KernelInfo *lookupKernel(llvm::StringRef name);
llvm::ArrayRef<KernelInfo> allKernels();
} // namespace sbpk

#endif // SBPK_KERNELTABLE_H
