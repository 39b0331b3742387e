//===- sbp-opt.cpp - runs sbp passes on .mlir files, for tests ------------===//
#include "Passes.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"
#include "mlir/Transforms/Passes.h"

int main(int argc, char **argv) {
  mlir::DialectRegistry registry;
  registry.insert<sbp::SbpDialect, sbpk::SbpkDialect>();
  sbp::registerSbpPasses();
  mlir::registerCanonicalizerPass();
  mlir::registerCSEPass();
  return mlir::asMainReturnCode(mlir::MlirOptMain(argc, argv, "sbp optimizer driver\n", registry));
}
