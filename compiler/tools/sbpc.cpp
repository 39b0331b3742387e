//===- sbpc.cpp - the sbp compiler driver ---------------------------------===//
//
//   sbpc model.mlir --target=cpu -o train.so
//   sbpc model.mlir --emit=mlir|mlir-after=<pass>|kernels|cpp|report
//   sbpc model.mlir --memory-budget 2.5GiB -o train.so   (BudgetSearch.h chooses the SBP)
//
// Parses and verifies the model (located diagnostics), runs the pipeline of
// Pipeline.cpp, then prints the requested stage or builds the trainer.
//
//===----------------------------------------------------------------------===//
#include "BudgetSearch.h"
#include "EmitTrainer.h"
#include "ErrorCounter.h"
#include "Pipeline.h"
#include "Report.h"
#include "Sbp/SbpOps.h"
#include "SbpKernel/SbpKernelDialect.h"
#include "sbpc_config.h"

#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/ToolOutputFile.h"

using namespace mlir;
namespace cl = llvm::cl;

static cl::OptionCategory category("sbpc options");
static cl::opt<std::string> inputFile(cl::Positional, cl::desc("<model.mlir>"), cl::Required, cl::cat(category));
static cl::opt<std::string> outputFile("o", cl::desc("Output file (default: stdout for --emit other than lib)"),
                                       cl::value_desc("file"), cl::init(""), cl::cat(category));
static cl::opt<std::string> target("target",
                                   cl::desc("Trainer target: cuda or cpu (default: cuda where nvcc is found)"),
                                   cl::init(""), cl::cat(category));
static cl::opt<std::string> gpuArch("gpu-arch", cl::desc("CUDA architecture the trainer carries code for"),
                                    cl::init("sm_90"), cl::cat(category));
static cl::opt<std::string> nvccPath("nvcc", cl::desc("CUDA compiler for --target=cuda"), cl::init(""),
                                     cl::cat(category));
static cl::opt<std::string> emit("emit",
                                 cl::desc("What to produce: lib (default), mlir, mlir-after=<pass>, kernels, cpp, report"),
                                 cl::init("lib"), cl::cat(category));
static cl::opt<double> keep("keep", cl::desc("Override every mask group's keep ratio, in (0, 1]"), cl::init(-1.0),
                            cl::cat(category));
static cl::opt<std::string> precision("precision",
                                      cl::desc("fp32, or bf16: bfloat16 activations and GEMMs with float32 "
                                               "master weights, as PyTorch autocast (CUDA target)"),
                                      cl::init("fp32"), cl::cat(category));
static cl::opt<bool> keepSource("keep-source", cl::desc("Keep the generated trainer source beside the output"),
                                cl::init(false), cl::cat(category));
static cl::opt<bool> verbose("v", cl::desc("Print the command that builds the trainer"), cl::init(false),
                             cl::cat(category));
static cl::opt<std::string> memoryBudget(
    "memory-budget",
    cl::desc("Choose the SBP configuration (ViT blocks, keep ratio, attention mode) that fits this "
             "planned training memory with the least gradient dropped, e.g. 2.5GiB or 900MiB; "
             "replaces the model's own SBP annotations (docs/design.md)"),
    cl::value_desc("SIZE"), cl::init(""), cl::cat(category));
static cl::opt<std::string> budgetReserve(
    "budget-reserve",
    cl::desc("Memory a run needs beyond the planned buffers, added to every plan the budget "
             "search compares (default: 256MiB for --target=cuda, 0 for cpu)"),
    cl::value_desc("SIZE"), cl::init(""), cl::cat(category));
static cl::list<double> budgetKeeps("budget-keeps",
                                    cl::desc("Keep ratios the budget search tries, preferred first "
                                             "(default 0.75,0.5,0.25)"),
                                    cl::CommaSeparated, cl::cat(category));
static cl::list<std::string> budgetAttention(
    "budget-attention",
    cl::desc("Attention treatments of an SBP block the budget search tries, preferred first: "
             "drop_qkv, drop_query, drop_head, none (MLP-only SBP) (default drop_qkv)"),
    cl::CommaSeparated, cl::cat(category));
static cl::list<int64_t> budgetBatches(
    "budget-batches",
    cl::desc("Batch sizes the budget search may use, largest preferred: every configuration at the "
             "largest first, then at the next (default: the model's batch only)"),
    cl::CommaSeparated, cl::cat(category));
static cl::opt<bool> stripSbpFlag("strip-sbp",
                                  cl::desc("Remove the model's SBP annotations of ViT blocks (compile it dense)"),
                                  cl::init(false), cl::cat(category));
static cl::opt<bool> exactStep("exact-step",
                               cl::desc("Also emit the exact-gradient step (every keep ratio 1.0) that "
                                        "sbp-train --grad-fidelity compares the SBP gradients with"),
                               cl::init(false), cl::cat(category));
static cl::opt<std::string> hostCompiler("cxx", cl::desc("Host C++ compiler for --target=cpu"), cl::init("c++"),
                                         cl::cat(category));

/// What a CUDA run holds beyond the planned buffers: measured on the H100 as
/// 0.19-0.20 GiB (cuBLASLt workspace, kernel scratch, loaded kernels, the CUDA
/// graph; docs/benchmarks.md), rounded up.
static constexpr int64_t kCudaReserveBytes = 256ll << 20;
static sbp::BudgetOptions budgetOptions;

/// nvcc from PATH, else the toolkit's usual place.
static std::string defaultNvcc() {
  if (llvm::sys::findProgramByName("nvcc"))
    return "nvcc";
  return "/usr/local/cuda/bin/nvcc";
}

/// Headers and kernel libraries: beside sbpc in an installation
/// (<prefix>/bin/sbpc, <prefix>/include, <prefix>/lib, as `cmake --install`
/// lays them out), else the source checkout and build tree it was built in.
static void setKernelPaths(sbp::BuildOptions &build, const char *argv0) {
  bool cuda = build.target == sbp::TrainerTarget::Cuda;
  std::string exe = llvm::sys::fs::getMainExecutable(argv0, reinterpret_cast<void *>(&setKernelPaths));
  llvm::SmallString<256> prefix(llvm::sys::path::parent_path(llvm::sys::path::parent_path(exe)));
  llvm::SmallString<256> include(prefix), library(prefix);
  llvm::sys::path::append(include, "include");
  llvm::sys::path::append(library, "lib", cuda ? "libsbp_cuda_kernels.a" : "libsbp_cpu_kernels.a");
  llvm::SmallString<256> abi(include);
  llvm::sys::path::append(abi, "sbp", "model_abi.h");
  if (!prefix.empty() && llvm::sys::fs::exists(abi) && llvm::sys::fs::exists(library)) {
    build.runtimeInclude = build.kernelsInclude = include.str().str();
    build.kernelsLibrary = library.str().str();
    return;
  }
  build.runtimeInclude = SBPC_RUNTIME_INCLUDE_DIR;
  build.kernelsInclude = cuda ? SBPC_CUDA_KERNELS_INCLUDE_DIR : SBPC_KERNELS_INCLUDE_DIR;
  build.kernelsLibrary = cuda ? SBPC_CUDA_KERNELS_LIBRARY : SBPC_KERNELS_LIBRARY;
}
/// Set once an error has been printed, by fail() or as a diagnostic.
static bool errorPrinted = false;

static int fail(const llvm::Twine &message) {
  llvm::errs() << "sbpc: error: " << message << "\n";
  errorPrinted = true;
  return 1;
}

static OwningOpRef<ModuleOp> parse(MLIRContext &context, llvm::SourceMgr &sourceMgr) {
  std::string error;
  auto file = openInputFile(inputFile, &error);
  if (!file)
    return fail(error), nullptr;
  sourceMgr.AddNewSourceBuffer(std::move(file), llvm::SMLoc());
  return parseSourceFile<ModuleOp>(sourceMgr, &context);
}

static LogicalResult lower(ModuleOp module, double keepOverride, const std::string &stopAfter = "") {
  sbp::PipelineOptions options;
  options.keepOverride = keepOverride;
  options.stopAfter = stopAfter;
  options.precision = precision;
  options.target = target;
  return sbp::runPipeline(module, options);
}

static int writeOutput(llvm::StringRef text) {
  std::string path = outputFile.empty() ? "-" : outputFile.getValue();
  std::string error;
  auto out = openOutputFile(path, &error);
  if (!out)
    return fail(error);
  out->os() << text;
  out->keep();
  return 0;
}

static std::string print(Operation *op) {
  std::string s;
  llvm::raw_string_ostream os(s);
  op->print(os);
  return s + "\n";
}

static int compile(MLIRContext &context, llvm::SourceMgr &sourceMgr, const char *argv0);

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  cl::HideUnrelatedOptions(category);
  cl::ParseCommandLineOptions(argc, argv, "sbpc: compiles an sbp model into a trainer library\n");

  if (target.empty())
    target = llvm::sys::fs::exists(defaultNvcc()) || llvm::sys::findProgramByName("nvcc") ? "cuda" : "cpu";
  if (target != "cpu" && target != "cuda")
    return fail("unknown target '" + target + "': use --target=cpu or --target=cuda");
  if (!llvm::StringRef(gpuArch).starts_with("sm_"))
    return fail("--gpu-arch must look like sm_90, got '" + gpuArch + "'");
  if (keep != -1.0 && !(keep > 0.0 && keep <= 1.0))
    return fail("--keep must be in (0, 1], got " + std::to_string(keep));
  if (precision != "fp32" && precision != "bf16")
    return fail("unknown --precision=" + precision + ": use fp32 or bf16");
  if (precision == "bf16" && target == "cpu")
    return fail("--precision=bf16 is for --target=cuda; the CPU target computes in fp32");
  if (memoryBudget.getNumOccurrences() && keep != -1.0)
    return fail("--keep and --memory-budget both choose keep ratios: give one");
  if (!memoryBudget.getNumOccurrences() && (budgetReserve.getNumOccurrences() || !budgetKeeps.empty() ||
                                            !budgetAttention.empty() || !budgetBatches.empty()))
    return fail("--budget-reserve, --budget-keeps, --budget-attention and --budget-batches tune --memory-budget: "
                "give it too");
  for (int64_t b : budgetBatches)
    if (b < 1 || b > (1 << 24))
      return fail("--budget-batches values must be in [1, 2^24], got " + std::to_string(b));
  for (double k : budgetKeeps)
    if (!(k > 0.0 && k < 1.0))
      return fail("--budget-keeps values must be in (0, 1), got " + std::to_string(k));
  for (const std::string &mode : budgetAttention)
    if (!sbp::isBudgetAttentionMode(mode))
      return fail("unknown --budget-attention mode '" + mode + "' (drop_qkv, drop_query, drop_head, none)");
  if (memoryBudget.getNumOccurrences()) {
    std::string error;
    std::optional<int64_t> bytes = sbp::parseByteSize(memoryBudget, error);
    if (!bytes)
      return fail("--memory-budget: " + error);
    budgetOptions.budgetBytes = *bytes;
    budgetOptions.reserveBytes = target == "cuda" ? kCudaReserveBytes : 0;
    if (budgetReserve.getNumOccurrences()) {
      std::optional<int64_t> reserve = sbp::parseByteSize(budgetReserve, error, /*allowZero=*/true);
      if (!reserve)
        return fail("--budget-reserve: " + error);
      budgetOptions.reserveBytes = *reserve;
    }
    if (!budgetKeeps.empty())
      budgetOptions.keeps.assign(budgetKeeps.begin(), budgetKeeps.end());
    if (!budgetAttention.empty())
      budgetOptions.attentionModes.assign(budgetAttention.begin(), budgetAttention.end());
    budgetOptions.batches.assign(budgetBatches.begin(), budgetBatches.end());
    budgetOptions.pipeline.precision = precision;
    budgetOptions.pipeline.target = target;
  }
  bool knownEmit = emit == "lib" || emit == "mlir" || emit == "kernels" || emit == "cpp" || emit == "report" ||
                   llvm::StringRef(emit).starts_with("mlir-after=");
  if (!knownEmit)
    return fail("unknown --emit=" + emit + " (lib, mlir, mlir-after=<pass>, kernels, cpp, report)");
  if (emit == "lib" && outputFile.empty())
    return fail("no output file: use -o train.so");

  llvm::StringRef stopAfter = emit;
  if (stopAfter.consume_front("mlir-after=") && !llvm::is_contained(sbp::pipelinePassNames(), stopAfter))
    return fail("unknown pass '" + stopAfter + "' in --emit=mlir-after= (one of: " +
                llvm::join(sbp::pipelinePassNames(), ", ") + ")");

  MLIRContext context;
  context.loadDialect<sbp::SbpDialect, sbpk::SbpkDialect>();
  context.printOpOnDiagnostic(false); // user errors point at their source, not at IR dumps
  llvm::SourceMgr sourceMgr;
  SourceMgrDiagnosticHandler diagnostics(sourceMgr, &context);
  sbp::ErrorCounter errors(&context);
  int status = compile(context, sourceMgr, argv[0]);
  // A failure that printed nothing is a bug; still, never exit silently.
  if (status != 0 && errors.errors() == 0 && !errorPrinted)
    fail("internal compiler error: failed without a message; please report this input");
  return status;
}

/// Parses, verifies, lowers and writes the requested output; returns the
/// exit status.
static int compile(MLIRContext &context, llvm::SourceMgr &sourceMgr, const char *argv0) {
  OwningOpRef<ModuleOp> module = parse(context, sourceMgr);
  if (!module)
    return 1;
  if (failed(sbp::verifyCompilerInput(*module)))
    return 1;

  // The SBP configuration: as written, stripped, or chosen for a budget.
  std::optional<sbp::BudgetResult> budget;
  std::string sbpPlan;
  if (memoryBudget.getNumOccurrences()) {
    FailureOr<sbp::BudgetResult> result = sbp::searchMemoryBudget(*module, budgetOptions);
    if (failed(result))
      return 1;
    budget = *result;
    sbpPlan = sbp::describeBudgetChoice(*budget);
    if (emit != "report")
      llvm::errs() << "sbpc: " << sbpPlan << "\n";
  } else if (stripSbpFlag) {
    if (failed(sbp::stripSbp(*module)))
      return 1;
    sbpPlan = "SBP annotations stripped (sbpc --strip-sbp): dense";
  }

  llvm::StringRef emitKind = emit;
  if (emitKind == "mlir")
    return writeOutput(print(*module));
  if (emitKind.consume_front("mlir-after=")) {
    if (failed(lower(*module, keep, emitKind.str())))
      return 1;
    return writeOutput(print(*module));
  }

  if (emit == "report") {
    OwningOpRef<ModuleOp> dense = module->clone();
    if (failed(lower(*module, keep)) || failed(lower(*dense, 1.0)))
      return 1;
    std::string text;
    llvm::raw_string_ostream os(text);
    if (budget)
      sbp::printBudgetReport(os, *budget);
    sbp::printReport(os, sbp::computeReport(*module), sbp::computeReport(*dense));
    return writeOutput(text);
  }

  // The exact-gradient step: the same model at keep 1.0, lowered on its own.
  OwningOpRef<ModuleOp> exact;
  if (exactStep && emit != "kernels") {
    exact = module->clone();
    if (failed(lower(*exact, 1.0)))
      return 1;
  }
  if (failed(lower(*module, keep)))
    return 1;
  if (emit == "kernels")
    return writeOutput(print(*module));
  sbp::TrainerTarget trainerTarget = target == "cuda" ? sbp::TrainerTarget::Cuda : sbp::TrainerTarget::Cpu;
  sbp::TrainerExtras extras;
  extras.exact = exact ? *exact : ModuleOp();
  extras.sbpPlan = sbpPlan;
  FailureOr<std::string> source = sbp::emitTrainer(*module, sbp::computeReport(*module), trainerTarget, extras);
  if (failed(source))
    return 1;
  if (emit == "cpp")
    return writeOutput(*source);

  sbp::BuildOptions build;
  build.target = trainerTarget;
  build.compiler = hostCompiler;
  build.nvcc = nvccPath.empty() ? defaultNvcc() : nvccPath.getValue();
  build.gpuArch = gpuArch;
  setKernelPaths(build, argv0);
  build.keepSource = keepSource;
  build.verbose = verbose;
  std::string log;
  if (failed(sbp::buildTrainer(*source, outputFile, build, log)))
    return fail("building the trainer failed:\n" + log);
  return 0;
}
