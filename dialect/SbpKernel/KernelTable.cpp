//===- KernelTable.cpp - the rows of <sbp/kernel_table.def> ---------------===//
#include "SbpKernel/KernelTable.h"

#include "llvm/ADT/STLExtras.h"

using namespace sbpk;
using llvm::StringRef;

namespace {
#define SBP_UNPAREN(...) __VA_ARGS__
#define SBP_ARG_IN(i, p) {KernelArg::In, i, "", #p, 0, false, ""}
#define SBP_ARG_FIN(i, p) {KernelArg::FloatIn, i, "", #p, 0, false, ""}
#define SBP_ARG_IDX(i, p) {KernelArg::Index, i, "", #p, 0, false, ""}
#define SBP_ARG_OUT(i, p) {KernelArg::Out, i, "", #p, 0, false, ""}
#define SBP_ARG_FOUT(i, p) {KernelArg::FloatOut, i, "", #p, 0, false, ""}
#define SBP_ARG_SIZE(a) {KernelArg::Size, -1, #a, #a, 0, false, ""}
#define SBP_ARG_SIZE_AS(a, p) {KernelArg::Size, -1, #a, #p, 0, false, ""}
#define SBP_ARG_F32(a) {KernelArg::F32, -1, #a, #a, 0, false, ""}
#define SBP_ARG_F32_OR(a, v) {KernelArg::F32, -1, #a, #a, v, true, ""}
#define SBP_ARG_FLAG(a) {KernelArg::Flag, -1, #a, #a, 0, false, ""}
#define SBP_ARG_LDA(p) {KernelArg::LdA, -1, "", #p, 0, false, ""}
#define SBP_ARG_LDB(p) {KernelArg::LdB, -1, "", #p, 0, false, ""}
#define SBP_ARG_NULL_IN(p) {KernelArg::NullIn, -1, "", #p, 0, false, ""}
#define SBP_ARG_NULL_OUT(p) {KernelArg::NullOut, -1, "", #p, 0, false, ""}
#define SBP_ARG_NULL_IDX(p) {KernelArg::NullIndex, -1, "", #p, 0, false, ""}
#define SBP_ARG_LIT_F32(p, v) {KernelArg::LitF32, -1, "", #p, 0, false, #v}
#define SBP_ARG_LIT_I64(p, v) {KernelArg::LitI64, -1, "", #p, 0, false, #v}
#define SBP_ARG_SCRATCH(p) {KernelArg::Scratch, -1, "", #p, 0, false, ""}

// One argument array per row ...
#define SBP_KERNEL(name, ops, results, flops, fn, args) const KernelArg name##Args[] = {SBP_UNPAREN args};
#include "sbp/kernel_table.def"

// ... and the rows.
#define SBP_KERNEL(name, ops, results, flops, fn, args) {#name, ops, results, flops, #fn, name##Args},
const KernelInfo kKernels[] = {
#include "sbp/kernel_table.def"
};
#undef SBP_UNPAREN
} // namespace

const KernelInfo *sbpk::lookupKernel(StringRef name) {
  const KernelInfo *it = llvm::find_if(kKernels, [&](const KernelInfo &k) { return k.name == name; });
  return it == std::end(kKernels) ? nullptr : it;
}

llvm::ArrayRef<KernelInfo> sbpk::allKernels() { return kKernels; }
