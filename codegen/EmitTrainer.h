//===- EmitTrainer.h - kernel graph -> trainer source, and its build -*- C++ -*-===//
#ifndef SBP_CODEGEN_EMITTRAINER_H
#define SBP_CODEGEN_EMITTRAINER_H

#include "Report.h"
#include "mlir/IR/BuiltinOps.h"

#include <string>

namespace sbp {
/// Host C++ for --target=cpu: the step functions over the planned kernel
/// graphs (calls into the CPU kernel library) and the model descriptor the
/// runtime loads. Fails with a diagnostic if the module is not lowered.
mlir::FailureOr<std::string> emitCpuTrainer(mlir::ModuleOp module, const ModelReport &report);

struct BuildOptions {
  std::string compiler = "c++"; // host C++ compiler
  std::string runtimeInclude;   // holds sbp/model_abi.h
  std::string kernelsInclude;   // holds sbp/cpu_kernels.h
  std::string kernelsLibrary;   // libsbp_cpu_kernels.a
  bool keepSource = false;
};

/// Compiles trainer source into a shared library at `output`. On failure the
/// compiler's output is returned in `log`.
mlir::LogicalResult buildCpuTrainer(const std::string &source, const std::string &output,
                                    const BuildOptions &options, std::string &log);
} // namespace sbp

#endif
