//===- EmitTrainer.h - kernel graph -> trainer source, and its build -*- C++ -*-===//
#ifndef SBP_CODEGEN_EMITTRAINER_H
#define SBP_CODEGEN_EMITTRAINER_H

#include "Report.h"
#include "mlir/IR/BuiltinOps.h"

#include <string>

namespace sbp {
enum class TrainerTarget { Cpu, Cuda };

/// What a trainer may carry beside the model's own steps.
struct TrainerExtras {
  /// The same model lowered at keep 1.0 (null: none): its train graph becomes
  /// the descriptor's exact_train_step, the gradients SBP estimates.
  mlir::ModuleOp exact;
  /// How the SBP configuration was chosen (sbpc --memory-budget), for --info.
  std::string sbpPlan;
};

/// Trainer source: the step functions over the planned kernel graphs (calls
/// into the CPU or CUDA kernel library) and the model descriptor the runtime
/// loads. Fails with a diagnostic if the module is not lowered.
mlir::FailureOr<std::string> emitTrainer(mlir::ModuleOp module, const ModelReport &report,
                                         TrainerTarget target, const TrainerExtras &extras = {});

struct BuildOptions {
  TrainerTarget target = TrainerTarget::Cpu;
  std::string compiler = "c++";  // host C++ compiler (cpu)
  std::string nvcc = "nvcc";     // CUDA compiler (cuda)
  std::string gpuArch = "sm_90"; // cuda: the architecture the .so carries code for
  std::string runtimeInclude;    // holds sbp/model_abi.h and sbp/kernel_table.def
  std::string kernelsInclude;    // holds sbp/cpu_kernels.h or sbp/cuda_kernels.h
  std::string kernelsLibrary;    // libsbp_cpu_kernels.a or libsbp_cuda_kernels.a
  bool keepSource = false;
  bool verbose = false;          // print the compiler command line to stderr
};

/// Compiles trainer source into a shared library at `output`. On failure the
/// compiler's output is returned in `log`.
mlir::LogicalResult buildTrainer(const std::string &source, const std::string &output,
                                 const BuildOptions &options, std::string &log);
} // namespace sbp

#endif
