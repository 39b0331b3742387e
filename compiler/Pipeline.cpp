//===- Pipeline.cpp - sbpc's pass pipeline --------------------------------===//
#include "Pipeline.h"
#include "ErrorCounter.h"
#include "Passes.h"

#include "mlir/Pass/PassInstrumentation.h"
#include "mlir/Pass/PassManager.h"

using namespace mlir;

static const llvm::StringRef kPasses[] = {
    "sbp-decompose",        "sbp-insert-masks",     "sbp-sink-take-token",  "sbp-autodiff",
    "sbp-check-gradient-support",
    "sbp-prune-backward",   "sbp-recompute",        "sbp-lower-to-kernels", "sbp-fuse-epilogues",
    "sbp-assign-precision", "sbp-fuse-kernels",     "sbp-split-weight-grads", "sbp-kernel-scratch",
    "sbp-plan-memory"};

llvm::ArrayRef<llvm::StringRef> sbp::pipelinePassNames() { return kPasses; }

static std::unique_ptr<Pass> createPass(llvm::StringRef name, const sbp::PipelineOptions &o) {
  if (name == "sbp-decompose")
    return sbp::createSbpDecompose();
  if (name == "sbp-insert-masks")
    return sbp::createSbpInsertMasks(sbp::SbpInsertMasksOptions{o.keepOverride});
  if (name == "sbp-sink-take-token")
    return sbp::createSbpSinkTakeToken();
  if (name == "sbp-autodiff")
    return sbp::createSbpAutodiff();
  if (name == "sbp-check-gradient-support")
    return sbp::createSbpCheckGradientSupport();
  if (name == "sbp-prune-backward")
    return sbp::createSbpPruneBackward();
  if (name == "sbp-recompute")
    return sbp::createSbpRecompute();
  if (name == "sbp-lower-to-kernels")
    return sbp::createSbpLowerToKernels();
  if (name == "sbp-fuse-epilogues")
    return sbp::createSbpFuseEpilogues();
  if (name == "sbp-assign-precision")
    return sbp::createSbpAssignPrecision(sbp::SbpAssignPrecisionOptions{o.precision});
  if (name == "sbp-fuse-kernels")
    return sbp::createSbpFuseKernels();
  if (name == "sbp-split-weight-grads")
    return sbp::createSbpSplitWeightGrads(sbp::SbpSplitWeightGradsOptions{o.target});
  if (name == "sbp-kernel-scratch")
    return sbp::createSbpKernelScratch(sbp::SbpKernelScratchOptions{o.target});
  return sbp::createSbpPlanMemory();
}

namespace {
/// Remembers the first pass that failed, to name it when it gave no reason.
struct FailedPassName : public PassInstrumentation {
  explicit FailedPassName(std::string &name) : name(name) {}
  void runAfterPassFailed(Pass *pass, Operation *) override {
    if (name.empty())
      name = pass->getArgument().str();
  }
  std::string &name;
};
} // namespace

LogicalResult sbp::runPipeline(ModuleOp module, const PipelineOptions &options) {
  if (!options.stopAfter.empty() && !llvm::is_contained(kPasses, options.stopAfter))
    return module.emitError("unknown pass '") << options.stopAfter << "' for mlir-after";
  ErrorCounter errors(module.getContext());
  std::string failedPass;
  PassManager pm(module.getContext());
  pm.addInstrumentation(std::make_unique<FailedPassName>(failedPass));
  for (llvm::StringRef name : kPasses) {
    pm.addPass(createPass(name, options));
    if (name == options.stopAfter)
      break;
  }
  if (succeeded(pm.run(module)))
    return success();
  if (errors.errors() == 0)
    module.emitError("internal compiler error: pass '")
        << (failedPass.empty() ? "?" : failedPass) << "' failed without a message; please report this input";
  return failure();
}

LogicalResult sbp::verifyCompilerInput(ModuleOp module) {
  Operation *model = nullptr;
  for (Operation &op : module.getBody()->getOperations()) {
    if (!isa<sbp::ModelOp>(op))
      return op.emitError("sbpc compiles one sbp.model; '") << op.getName() << "' cannot stand beside it";
    if (model)
      return op.emitError("one sbp.model per file: this is the second");
    model = &op;
  }
  if (!model)
    return module.emitError("no sbp.model in the input");
  return success();
}
