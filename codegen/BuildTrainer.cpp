//===- BuildTrainer.cpp - compile generated trainer source into a .so -----===//
#include "EmitTrainer.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/raw_ostream.h"

using namespace mlir;
using namespace sbp;

/// The compiler command line for one target.
static std::vector<std::string> compileCommand(const BuildOptions &o, const std::string &program,
                                               const std::string &source, const std::string &out) {
  if (o.target == TrainerTarget::Cuda) {
    llvm::StringRef arch = o.gpuArch;
    arch.consume_front("sm_");
    // Machine code for the named GPU, plus its PTX so that the driver can
    // compile the trainer for a newer GPU at load time (see docs/cuda-target.md).
    std::string gencode = "arch=compute_" + arch.str() + ",code=[sm_" + arch.str() + ",compute_" + arch.str() + "]";
    // -cudart shared: one CUDA runtime in the process, shared with libsbprt.
    // The trainer holds only host code calling libsbp_cuda_kernels.a, which
    // carries the kernels (compiled once, docs/cuda-target.md).
    return {program, "-O3", "-std=c++17", "-shared", "-cudart", "shared", "-Xcompiler", "-fPIC", "-Xcompiler",
            "-fvisibility=hidden", "-gencode", gencode, "-I", o.runtimeInclude, "-I", o.kernelsInclude,
            source, o.kernelsLibrary, "-lcublasLt", "-lcudart", "-o", out};
  }
  return {program, "-O2", "-std=c++17", "-shared", "-fPIC", "-fopenmp", "-fvisibility=hidden",
          "-I", o.runtimeInclude, "-I", o.kernelsInclude, source, o.kernelsLibrary, "-lopenblas", "-o", out};
}

LogicalResult sbp::buildTrainer(const std::string &source, const std::string &output,
                                const BuildOptions &options, std::string &log) {
  bool cuda = options.target == TrainerTarget::Cuda;
  // The source goes beside the output (kept with --keep-source) so that
  // compiler errors point at a file the user can open.
  std::string cppPath = output + (cuda ? ".cu" : ".cpp");
  {
    std::error_code ec;
    llvm::raw_fd_ostream os(cppPath, ec);
    if (ec) {
      log = "cannot write '" + cppPath + "': " + ec.message();
      return failure();
    }
    os << source;
  }
  const std::string &wanted = cuda ? options.nvcc : options.compiler;
  auto compiler = llvm::sys::findProgramByName(wanted);
  if (!compiler) {
    log = std::string("cannot find the ") + (cuda ? "CUDA compiler" : "host C++ compiler") + " '" + wanted + "'";
    return failure();
  }
  llvm::SmallString<128> logPath;
  llvm::sys::fs::createTemporaryFile("sbpc-build", "log", logPath);
  // Build to a temporary name and rename: a failed build never leaves a
  // half-written trainer at the output path.
  std::string tmpOut = output + ".tmp";
  std::vector<std::string> argv = compileCommand(options, *compiler, cppPath, tmpOut);
  if (options.verbose)
    llvm::errs() << llvm::join(argv, " ") << "\n";
  std::vector<llvm::StringRef> args(argv.begin(), argv.end());
  std::optional<llvm::StringRef> redirects[] = {std::nullopt, llvm::StringRef(logPath), llvm::StringRef(logPath)};
  std::string errMsg;
  int rc = llvm::sys::ExecuteAndWait(*compiler, args, std::nullopt, redirects, 0, 0, &errMsg);
  if (auto buf = llvm::MemoryBuffer::getFile(logPath))
    log = (*buf)->getBuffer().str();
  llvm::sys::fs::remove(logPath);
  if (!options.keepSource)
    llvm::sys::fs::remove(cppPath);
  if (rc != 0) {
    llvm::sys::fs::remove(tmpOut);
    log = "host compiler failed (exit " + std::to_string(rc) + ")" + (errMsg.empty() ? "" : ": " + errMsg) +
          "\n" + llvm::join(argv, " ") + "\n" + log;
    return failure();
  }
  if (std::error_code ec = llvm::sys::fs::rename(tmpOut, output)) {
    log = "cannot write '" + output + "': " + ec.message();
    return failure();
  }
  return success();
}
