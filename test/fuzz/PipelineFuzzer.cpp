//===- PipelineFuzzer.cpp - sbpc in process: parse, verify, lower, emit ---===//
//
// One input is one .mlir file. It goes through what `sbpc` does short of
// running a host compiler: parse and verify, the input check, the whole pass
// pipeline, the report, and the emitted CPU or CUDA trainer source. Inputs
// may be rejected anywhere, but only with an error diagnostic: a failure
// that reported no error (sbpc would exit 1 with an empty stderr) traps, as
// does any crash, sanitizer report or hang.
//
// The input's size picks the options, so that one corpus covers them all and
// every input replays the same way: fp32 or bf16, the --keep override, and
// the --emit=report path (a second, dense lowering).
//
//===----------------------------------------------------------------------===//
#include "EmitTrainer.h"
#include "ErrorCounter.h"
#include "Pipeline.h"
#include "Report.h"
#include "Sbp/SbpOps.h"
#include "SbpKernel/SbpKernelDialect.h"

#include "mlir/IR/MLIRContext.h"
#include "mlir/Parser/Parser.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdio>
#include <cstdlib>

using namespace mlir;

namespace {
struct Variant {
  sbp::PipelineOptions options;
  sbp::TrainerTarget target = sbp::TrainerTarget::Cpu;
  bool report = false; // also lower a dense copy, as --emit=report does
};

Variant variantFor(size_t size) {
  Variant v;
  switch (size % 4) {
  case 0:
    break;
  case 1:
    v.options.precision = "bf16";
    v.target = sbp::TrainerTarget::Cuda;
    break;
  case 2:
    v.options.keepOverride = 0.5;
    v.target = sbp::TrainerTarget::Cuda;
    break;
  case 3:
    v.report = true;
    break;
  }
  return v;
}

/// Runs sbpc's stages on a parsed module; fails where sbpc would exit 1.
LogicalResult compile(ModuleOp module, const Variant &v) {
  if (failed(sbp::verifyCompilerInput(module)))
    return failure();
  OwningOpRef<ModuleOp> dense;
  if (v.report)
    dense = module.clone();
  if (failed(sbp::runPipeline(module, v.options)))
    return failure();
  sbp::ModelReport report = sbp::computeReport(module);
  if (v.report) {
    sbp::PipelineOptions denseOptions = v.options;
    denseOptions.keepOverride = 1.0;
    if (failed(sbp::runPipeline(*dense, denseOptions)))
      return failure();
    std::string text;
    llvm::raw_string_ostream os(text);
    sbp::printReport(os, report, sbp::computeReport(*dense));
  }
  FailureOr<std::string> source = sbp::emitTrainer(module, report, v.target);
  return failure(failed(source));
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  MLIRContext context(MLIRContext::Threading::DISABLED);
  context.loadDialect<sbp::SbpDialect, sbpk::SbpkDialect>();
  context.printOpOnDiagnostic(false);
  // Diagnostics are expected (most inputs are invalid): count, don't print.
  ScopedDiagnosticHandler quiet(&context, [](Diagnostic &) { return success(); });
  sbp::ErrorCounter errors(&context);
  // MLIR's lexer reads up to a terminating NUL, as files are loaded (sbpc's
  // MemoryBuffer has one): libFuzzer's bytes have none, a std::string does.
  std::string text(reinterpret_cast<const char *>(data), size);
  OwningOpRef<ModuleOp> module = parseSourceString<ModuleOp>(text, &context, "fuzz.mlir");
  bool ok = module && succeeded(compile(*module, variantFor(size)));
  if (!ok && errors.errors() == 0) {
    std::fprintf(stderr, "sbpc failed without an error diagnostic\n");
    std::abort();
  }
  return 0;
}
