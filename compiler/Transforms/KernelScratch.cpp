//===- KernelScratch.cpp - arena scratch for the library kernels that use it -===//
//
// A library kernel that runs faster with a large scratch buffer gets it from
// the step's arena rather than from the context's fixed 8 MiB: this pass sets
// `scratch_bytes` on such a kernel, with `scratch_optional`: sbp-plan-memory
// places it (live only while the kernel runs) only where it fits in memory
// that is free then, below the peak the rest of the plan needs, and drops it
// otherwise; the emitter passes it as the table's SBP_ARG_SCRATCH argument,
// or nullptr, 0. A speed-up never costs memory: SBP's users come for memory.
//
// Today one kernel asks: the CUDA bf16 attention backward (`attention_bwd`
// and its row / head variants), whose dK/dV kernel stores dS^T there so that
// the dQ kernel computes dQ = dS K instead of recomputing S, P, dP and dS
// (sbp_attention_ds_bytes in <sbp/kernel_scratch.h>: 57.7 MiB for ViT-Tiny
// at batch 256). The float32 kernels and the CPU target have no use for it.
//
//===----------------------------------------------------------------------===//
#include "Passes.h"
#include "SbpKernel/KernelTable.h"

#include "sbp/kernel_scratch.h"

namespace sbp {
#define GEN_PASS_DEF_SBPKERNELSCRATCH
#include "Passes.h.inc"
} // namespace sbp

using namespace mlir;

namespace {
/// The dS^T scratch of a bf16 attention backward, or 0.
int64_t attentionDsBytes(sbpk::KernelOp k) {
  const StringRef callee = k.getCallee();
  if (callee != sbpk::kernel::attention_bwd && callee != sbpk::kernel::attention_bwd_rows &&
      callee != sbpk::kernel::attention_bwd_heads)
    return 0;
  if (!cast<RankedTensorType>(k->getOperand(0).getType()).getElementType().isBF16())
    return 0;
  auto size = [&](StringRef attr) { return k->getAttrOfType<IntegerAttr>(attr).getInt(); };
  return sbp_attention_ds_bytes(size("batch"), size("tokens"), size("heads"));
}

struct KernelScratchPass : sbp::impl::SbpKernelScratchBase<KernelScratchPass> {
  using SbpKernelScratchBase::SbpKernelScratchBase;

  void runOnOperation() override {
    FailureOr<bool> cuda = sbp::isCudaTarget(getOperation(), getArgument(), target);
    if (failed(cuda))
      return signalPassFailure();
    if (!*cuda)
      return;
    Builder b(&getContext());
    getOperation().walk([&](sbpk::KernelOp k) {
      if (int64_t bytes = attentionDsBytes(k)) {
        k->setAttr(sbpk::kScratchBytesAttr, b.getI64IntegerAttr(bytes));
        k->setAttr(sbpk::kScratchOptionalAttr, b.getUnitAttr());
      }
    });
  }
};
} // namespace
