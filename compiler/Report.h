//===- Report.h - compile-time costs of a lowered model ---------*- C++ -*-===//
//
// FLOPs, saved activations and planned arena, read off the planned sbpk
// graphs: what `sbpc --emit=report` prints and the generated trainer carries.
//
//===----------------------------------------------------------------------===//
#ifndef SBP_COMPILER_REPORT_H
#define SBP_COMPILER_REPORT_H

#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/raw_ostream.h"

#include <map>
#include <string>

namespace sbp {
struct Cost {
  double forwardFlops = 0, backwardFlops = 0;
  int64_t savedBytes = 0;
};

struct ModelReport {
  std::string model;
  int64_t parameters = 0; // elements
  Cost total;
  std::map<std::string, Cost> regions; // per SBP branch (by its name)
  int64_t trainArenaBytes = 0, evalArenaBytes = 0;
  int64_t batch = 0;
  int optimizerStates = 0; // float32 tensors per parameter: 2 for AdamW, 1 for SGD-momentum

  /// What a training run holds on the device: the train arena, the float32
  /// parameters, gradients and optimizer state.
  int64_t trainingBytes() const { return trainArenaBytes + 4 * parameters * (2 + optimizerStates); }
};

/// Reads the report off a module holding a model and its planned graphs.
ModelReport computeReport(mlir::ModuleOp module);

/// Prints the with-SBP and without-SBP reports side by side.
void printReport(llvm::raw_ostream &os, const ModelReport &sbp, const ModelReport &dense);
} // namespace sbp

#endif
