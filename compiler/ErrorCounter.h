//===- ErrorCounter.h - did a failure say why? ------------------*- C++ -*-===//
//
// Every failure of sbpc and sbp-opt must print a located `error:`. A pass or
// a verifier that returns failure() without emitting one is a compiler bug;
// the tools count the errors reported while they run, and where a failure
// reported none, they say so instead of exiting silently.
//
//===----------------------------------------------------------------------===//
#ifndef SBP_COMPILER_ERRORCOUNTER_H
#define SBP_COMPILER_ERRORCOUNTER_H

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"

#include <atomic>

namespace sbp {
/// Counts the errors reported to a context while it lives; each still reaches
/// the handlers registered before it (the tool's printer).
class ErrorCounter {
public:
  explicit ErrorCounter(mlir::MLIRContext *context)
      : handler(context, [this](mlir::Diagnostic &d) {
          if (d.getSeverity() == mlir::DiagnosticSeverity::Error)
            ++count;
          return mlir::failure(); // not handled here: pass it on
        }) {}

  int64_t errors() const { return count; }

private:
  std::atomic<int64_t> count{0};
  mlir::ScopedDiagnosticHandler handler;
};
} // namespace sbp

#endif // SBP_COMPILER_ERRORCOUNTER_H
