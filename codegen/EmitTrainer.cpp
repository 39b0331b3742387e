//===- EmitTrainer.cpp - planned sbpk graphs -> trainer source ------------===//
//
// One emitter for both targets: host C++ calling the CPU kernel library
// (sbp::cpu), or CUDA C++ calling the CUDA kernel library (sbp::cuda) on the
// step's stream. The generated file documents itself (tfcompile style): a
// header comment with the model, its parameters and the memory plan; then the
// parameter and mask tables, one function per graph with one kernel call per
// sbpk op, and the descriptor behind the trainer's single exported symbol.
//
//===----------------------------------------------------------------------===//
#include "EmitTrainer.h"
#include "EmitFusedKernels.h"
#include "ModelLayout.h"
#include "Sbp/SbpOps.h"
#include "SbpKernel/KernelTable.h"
#include "SbpKernel/SbpKernelDialect.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/ADT/TypeSwitch.h"
#include "llvm/Support/FormatVariadic.h"
#include "llvm/Support/raw_ostream.h"

#include <cstdio>

using namespace mlir;
using namespace sbp;

namespace {
int64_t attrInt(Operation *op, StringRef name) { return op->getAttrOfType<IntegerAttr>(name).getInt(); }
int64_t numel(Value v) { return cast<RankedTensorType>(v.getType()).getNumElements(); }

/// The fusion groups whose column sums the step's deferred launch finishes.
SmallVector<sbpk::FusedOp> deferredGroups(sbpk::GraphOp graph) {
  SmallVector<sbpk::FusedOp> groups;
  for (auto f : graph.getBlock().getOps<sbpk::FusedOp>())
    if (f->hasAttr(sbpk::kDeferredSumsAttr))
      groups.push_back(f);
  return groups;
}

/// The weight gradients run as row-chunk products (sbp-split-weight-grads),
/// which the deferred launch adds up.
SmallVector<sbpk::GemmOp> rowChunkGemms(sbpk::GraphOp graph) {
  SmallVector<sbpk::GemmOp> gemms;
  for (auto g : graph.getBlock().getOps<sbpk::GemmOp>())
    if (g->hasAttr(sbpk::kRowChunksAttr))
      gemms.push_back(g);
  return gemms;
}

std::string typeStr(Type t) {
  std::string s;
  llvm::raw_string_ostream os(s);
  os << t;
  return s;
}

/// Emits one step function.
class GraphEmitter {
public:
  GraphEmitter(llvm::raw_ostream &os, sbpk::GraphOp graph, TrainerTarget target,
               const llvm::DenseMap<Operation *, std::string> &fusedNames)
      : os(os), graph(graph), cuda(target == TrainerTarget::Cuda), fusedNames(fusedNames) {}

  LogicalResult emit() {
    os << "// " << graph.getSymName() << " step: arena " << graph.getArenaBytes().value_or(0) << " bytes\n";
    os << "int " << graph.getSymName() << "_step(const sbp_step_args *a, char *err, size_t err_len) {\n";
    os << "  char *arena = static_cast<char *>(a->arena);\n";
    if (cuda) {
      // The first call (never captured in a CUDA graph) creates the context.
      os << "  if (int rc = ensure_context(err, err_len)) return rc;\n";
      os << "  sbp::cuda::Context &ctx = g_context;\n";
      os << "  ctx.stream = static_cast<cudaStream_t>(a->stream);\n";
    } else {
      os << "  (void)err; (void)err_len;\n";
      os << "  if (a->num_threads > 0) omp_set_num_threads(a->num_threads);\n";
    }
    for (Operation &op : graph.getBlock())
      if (failed(emitOp(&op)))
        return failure();
    if (cuda)
      emitDeferredSumsCall();
    os << (cuda ? "  return sbp::cuda::last_error(err, err_len);\n}\n\n" : "  return 0;\n}\n\n");
    return success();
  }

private:
  std::string name(Value v) {
    auto [it, fresh] = names.try_emplace(v, "v" + std::to_string(names.size()));
    return it->second;
  }

  /// The C++ element type of a float tensor: float, or the CUDA bfloat16.
  static const char *elementType(Value v) {
    return cast<RankedTensorType>(v.getType()).getElementType().isBF16() ? "__nv_bfloat16" : "float";
  }

  /// Declares the pointer of every result: into the arena, or the gradient buffer.
  LogicalResult declareResults(Operation *op) {
    auto offsets = op->getAttrOfType<DenseI64ArrayAttr>(sbpk::kArenaOffsetsAttr);
    for (auto [i, r] : llvm::enumerate(op->getResults())) {
      const char *type = elementType(r);
      if (!cuda && StringRef(type) != "float")
        return op->emitOpError("has a bf16 result: the CPU target computes in fp32");
      os << "  " << type << " *" << name(r) << " = ";
      if (auto grad = sbpk::getGradOutUser(r))
        os << "a->grads + " << grad.getOffset() << ";  // gradient of " << grad.getName() << "\n";
      else
        os << "reinterpret_cast<" << type << " *>(arena + " << offsets[i] << ");  // " << typeStr(r.getType())
           << "\n";
    }
    return success();
  }

  std::string args(std::initializer_list<std::string> parts) { return llvm::join(parts, ", "); }
  std::string num(int64_t v) { return std::to_string(v); }
  std::string flt(double v) { return llvm::formatv("{0:e}f", v).str(); }

  LogicalResult emitOp(Operation *op) {
    return llvm::TypeSwitch<Operation *, LogicalResult>(op)
        .Case([&](sbpk::ParamOp p) {
          os << "  float *" << name(p) << " = const_cast<float *>(a->params) + " << p.getOffset() << ";  // "
             << p.getName() << "\n";
          return success();
        })
        .Case([&](sbpk::InputOp in) {
          if (in.getName() == "images")
            os << "  float *" << name(in) << " = const_cast<float *>(a->images);\n";
          else
            os << "  const int32_t *" << name(in) << " = a->labels;\n";
          return success();
        })
        .Case([&](sbpk::KeepIndicesOp k) {
          os << "  const int32_t *" << name(k) << " = a->keep_idx[" << k.getGroup() << "];  // @"
             << k.getMask() << "\n";
          return success();
        })
        .Case([&](sbpk::GemmOp g) { return emitGemm(g); })
        .Case([&](sbpk::KernelOp k) { return emitKernel(k); })
        .Case([&](sbpk::FusedOp f) { return emitFused(f); })
        .Case([&](sbpk::GradOutOp) { return success(); }) // its producer wrote it in place
        .Case([&](sbpk::ReturnOp r) {
          if (cuda)
            os << "  sbp::cuda::copy(ctx, " << name(r.getOperand(0)) << ", a->loss, 1);\n";
          else
            os << "  *a->loss = " << name(r.getOperand(0)) << "[0];\n";
          if (r.getNumOperands() > 1)
            os << "  if (a->logits) " << ns() << "copy(" << ctxArg() << name(r.getOperand(1)) << ", a->logits, "
               << numel(r.getOperand(1)) << ");\n";
          return success();
        })
        .Default([&](Operation *o) { return o->emitOpError("has no CPU emitter"); });
  }

  LogicalResult emitGemm(sbpk::GemmOp g) {
    if (failed(declareResults(g)))
      return failure();
    int64_t m = g.getM(), n = g.getN(), k = g.getK();
    bool ta = g.getTransA(), tb = g.getTransB();
    std::string c = name(g.getResult());
    if (auto chunks = g->getAttrOfType<IntegerAttr>(sbpk::kRowChunksAttr); chunks && cuda)
      return emitRowChunkGemm(g, chunks.getInt());
    if (g.getCIn())
      os << "  if (" << c << " != " << name(g.getCIn()) << ") " << ns() << "copy(" << ctxArg() << name(g.getCIn())
         << ", " << c << ", " << m * n << ");\n";
    os << "  " << ns() << "gemm(" << ctxArg() << (ta ? "true" : "false") << ", " << (tb ? "true" : "false") << ", "
       << args({num(m), num(n), num(k), flt(g.getAlpha().convertToDouble()), name(g.getA()), num(ta ? m : k),
                name(g.getB()), num(tb ? k : n), flt(g.getBeta().convertToDouble()), c, num(n)})
       << ");";
    if (auto r = g->getAttrOfType<StringAttr>("region"))
      os << "  // " << (g->hasAttr("bwd") ? "backward, " : "") << r.getValue();
    os << "\n";
    return success();
  }

  /// A weight gradient as row-chunk products into its scratch; the deferred
  /// launch at the end of the step adds them into the gradient (`c`).
  LogicalResult emitRowChunkGemm(sbpk::GemmOp g, int64_t chunks) {
    auto scratch = g->getAttrOfType<IntegerAttr>(sbpk::kScratchOffsetAttr);
    if (!scratch || g.getTransB() || !g.getTransA())
      return g.emitOpError("row_chunks needs op(A) = A^T, op(B) = B and planned scratch");
    os << "  " << ns() << "gemm_row_chunks("
       << args({"ctx", num(g.getM()), num(g.getN()), num(g.getK()), num(chunks),
                flt(g.getAlpha().convertToDouble()), name(g.getA()), num(g.getM()), name(g.getB()), num(g.getN()),
                "reinterpret_cast<float *>(arena + " + num(scratch.getInt()) + ")"})
       << ");  // " << (g->hasAttr("bwd") ? "backward, " : "");
    if (auto r = g->getAttrOfType<StringAttr>("region"))
      os << r.getValue() << ", ";
    os << name(g.getResult()) << " = the chunks' sum, after the backward\n";
    return success();
  }

  LogicalResult emitKernel(sbpk::KernelOp k) {
    if (failed(declareResults(k)))
      return failure();
    const sbpk::KernelInfo *info = sbpk::lookupKernel(k.getCallee());
    if (!info)
      return k.emitOpError("calls no kernel of the kernel table");
    // ns::function(ctx, args...): the arguments in the table's order; the
    // CUDA functions take the context first.
    SmallVector<std::string> args;
    if (cuda)
      args.push_back("ctx");
    for (const sbpk::KernelArg &arg : info->args)
      args.push_back(callArgument(k, arg));
    os << "  " << ns() << info->function << "(" << llvm::join(args, ", ") << ");";
    if (auto r = k->getAttrOfType<StringAttr>("region"))
      os << "  // " << (k->hasAttr("bwd") ? "backward, " : "") << r.getValue();
    os << "\n";
    return success();
  }

  /// The one launch that finishes every deferred column sum and row-chunk
  /// weight gradient of the graph.
  void emitDeferredSumsCall() {
    SmallVector<sbpk::FusedOp> groups = deferredGroups(graph);
    const bool gemms = !rowChunkGemms(graph).empty();
    if (groups.empty() && !gemms)
      return;
    SmallVector<std::string> callArgs = {"ctx"};
    if (gemms) {
      callArgs.push_back("arena");
      callArgs.push_back("a->grads");
    }
    for (sbpk::FusedOp f : groups) {
      callArgs.push_back("reinterpret_cast<const double *>(arena + " +
                         num(f->getAttrOfType<IntegerAttr>(sbpk::kScratchOffsetAttr).getInt()) + ")");
      for (unsigned i : columnSumResults(f))
        callArgs.push_back(name(f.getResult(i)));
    }
    os << "  " << graph.getSymName() << "_column_sums(" << llvm::join(callArgs, ", ") << ");  // backward\n";
  }

  /// A call of the group's generated function (EmitFusedKernels.cpp).
  LogicalResult emitFused(sbpk::FusedOp f) {
    if (failed(declareResults(f)))
      return failure();
    SmallVector<std::string> callArgs;
    if (cuda)
      callArgs.push_back("ctx");
    for (Value v : f.getInputs())
      callArgs.push_back(name(v));
    for (Value r : f.getResults())
      callArgs.push_back(name(r));
    if (auto offset = f->getAttrOfType<IntegerAttr>(sbpk::kScratchOffsetAttr))
      callArgs.push_back("reinterpret_cast<double *>(arena + " + num(offset.getInt()) + ")");
    os << "  " << fusedNames.lookup(f) << "(" << llvm::join(callArgs, ", ") << ");";
    if (auto r = f->getAttrOfType<StringAttr>("region"))
      os << "  // " << (f->hasAttr("bwd") ? "backward, " : "") << r.getValue();
    os << "\n";
    return success();
  }

  /// One argument of a library call, as the table describes it.
  std::string callArgument(sbpk::KernelOp k, const sbpk::KernelArg &arg) {
    auto size = [&](StringRef attr) { return attrInt(k, attr); };
    auto flag = [&](StringRef attr) { return k->getAttrOfType<BoolAttr>(attr).getValue(); };
    switch (arg.kind) {
    case sbpk::KernelArg::In:
    case sbpk::KernelArg::FloatIn:
    case sbpk::KernelArg::Index:
      return name(k.getOperand(arg.index));
    case sbpk::KernelArg::Out:
    case sbpk::KernelArg::FloatOut:
      return name(k.getResult(arg.index));
    case sbpk::KernelArg::Size:
      return num(size(arg.attr));
    case sbpk::KernelArg::F32: {
      auto attr = k->getAttrOfType<FloatAttr>(arg.attr);
      return flt(attr ? attr.getValueAsDouble() : arg.value);
    }
    case sbpk::KernelArg::Flag:
      return flag(arg.attr) ? "true" : "false";
    case sbpk::KernelArg::LdA:
      return num(flag("trans_a") ? size("m") : size("k"));
    case sbpk::KernelArg::LdB:
      return num(flag("trans_b") ? size("k") : size("n"));
    case sbpk::KernelArg::NullIn:
    case sbpk::KernelArg::NullOut:
    case sbpk::KernelArg::NullIndex:
      return "nullptr";
    case sbpk::KernelArg::LitF32:
    case sbpk::KernelArg::LitI64:
      return arg.literal.str();
    case sbpk::KernelArg::Scratch: {
      auto offset = k->getAttrOfType<IntegerAttr>(sbpk::kScratchOffsetAttr);
      auto bytes = k->getAttrOfType<IntegerAttr>(sbpk::kScratchBytesAttr);
      if (!offset || !bytes)
        return "nullptr, 0";
      return "arena + " + num(offset.getInt()) + ", " + num(bytes.getInt());
    }
    }
    llvm_unreachable("unknown kernel argument kind");
  }

  const char *ns() const { return cuda ? "sbp::cuda::" : "sbp::cpu::"; }
  const char *ctxArg() const { return cuda ? "ctx, " : ""; }

  llvm::raw_ostream &os;
  sbpk::GraphOp graph;
  bool cuda;
  const llvm::DenseMap<Operation *, std::string> &fusedNames;
  llvm::DenseMap<Value, std::string> names;
};

const char *initName(InitKind k) {
  switch (k) {
  case InitKind::zeros: return "SBP_INIT_ZEROS";
  case InitKind::ones: return "SBP_INIT_ONES";
  case InitKind::normal: return "SBP_INIT_NORMAL";
  case InitKind::trunc_normal: return "SBP_INIT_TRUNC_NORMAL";
  case InitKind::uniform: return "SBP_INIT_UNIFORM";
  case InitKind::constant: return "SBP_INIT_CONSTANT";
  }
  return "SBP_INIT_ZEROS";
}

/// Whether sbp-plan-memory put the graph's images at arena offset 0.
bool imagesInArena(sbpk::GraphOp graph) { return graph && graph->hasAttr(sbpk::kImagesInArenaAttr); }

void emitHeaderComment(llvm::raw_ostream &os, ModelOp model, ModuleOp module, const ModelReport &report,
                       bool cuda) {
  os << "// Trainer for model @" << model.getSymName() << ", generated by sbpc for --target="
     << (cuda ? "cuda" : "cpu") << ".\n"
     << "// Do not edit: regenerate with sbpc.\n//\n"
     << "// batch " << report.batch << ", " << report.parameters << " parameters\n"
     << "// forward " << llvm::formatv("{0:e3}", report.total.forwardFlops) << " FLOP, backward "
     << llvm::formatv("{0:e3}", report.total.backwardFlops) << " FLOP per step\n"
     << "// saved activations " << report.total.savedBytes << " bytes\n//\n// Parameters (offset in floats):\n";
  for (ParamSlot s : layoutParams(model))
    os << "//   " << llvm::formatv("{0,-36}", s.op.getName()) << " " << typeStr(s.op.getType()) << " @ "
       << s.offset << "\n";
  os << "//\n// Memory plan:\n";
  for (sbpk::GraphOp g : module.getOps<sbpk::GraphOp>()) {
    os << "//   @" << g.getSymName() << ": arena " << g.getArenaBytes().value_or(0) << " bytes\n";
    for (Operation &op : g.getBlock()) {
      // The batch images, pinned at offset 0 by sbp-plan-memory.
      if (auto in = dyn_cast<sbpk::InputOp>(op); in && in.getName() == "images" && imagesInArena(g))
        os << "//     " << llvm::formatv("{0,-18}", "input:images") << " "
           << llvm::formatv("{0,-22}", typeStr(in.getType())) << " [0, " << sbpk::byteSize(in.getType()) << ")\n";
      if (auto offsets = op.getAttrOfType<DenseI64ArrayAttr>(sbpk::kArenaOffsetsAttr))
        for (auto [i, r] : llvm::enumerate(op.getResults()))
          if (offsets[i] >= 0)
            os << "//     " << llvm::formatv("{0,-18}", op.getName().getStringRef().drop_front(5).str() +
                                                            (isa<sbpk::KernelOp>(op)
                                                                 ? ":" + cast<sbpk::KernelOp>(op).getCallee().str()
                                                                 : ""))
               << " " << llvm::formatv("{0,-22}", typeStr(r.getType())) << " [" << offsets[i] << ", "
               << offsets[i] + sbpk::byteSize(r.getType()) << ")\n";
    }
  }
  os << "\n";
}

const char *maskKindName(MaskKind k) {
  switch (k) {
  case MaskKind::grid: return "SBP_MASK_GRID";
  case MaskKind::random: return "SBP_MASK_RANDOM";
  case MaskKind::heads: return "SBP_MASK_HEADS";
  case MaskKind::samples: return "SBP_MASK_SAMPLES";
  }
  return "SBP_MASK_GRID";
}

void emitTables(llvm::raw_ostream &os, ModelOp model) {
  os << "const sbp_param_desc kParams[] = {\n";
  for (ParamSlot s : layoutParams(model)) {
    auto shape = s.op.getType().getShape();
    os << "  {\"" << s.op.getName() << "\", " << shape.size() << ", {";
    for (size_t i = 0; i < 4; ++i)
      os << (i ? ", " : "") << (i < shape.size() ? shape[i] : 1);
    os << "}, " << s.numel << ", " << s.offset << ", " << initName(s.op.getInit().getKind()) << ", "
       << llvm::formatv("{0:e}f", s.op.getInit().getScale().convertToDouble()) << ", "
       << (s.op.hasWeightDecay() ? 1 : 0) << "},\n";
  }
  os << "};\n\n";
  std::vector<MaskGroupOp> groups = maskGroups(model);
  os << "const sbp_mask_group_desc kMaskGroups[] = {\n";
  for (MaskGroupOp g : groups)
    os << "  {\"" << g.getSymName() << "\", " << llvm::formatv("{0:e}f", g.getKeep().convertToDouble()) << ", "
       << maskKindName(g.getKind()) << ", " << g.getGrid()[0] << ", "
       << g.getGrid()[1] << ", " << g.getPrefix() << ", " << g.getCapacity() << ", " << g.getCell() << "},\n";
  if (groups.empty())
    os << "  {\"none\", 1.0f, SBP_MASK_GRID, 1, 1, 0, 1, 1},  // placeholder: the model has no mask group\n";
  os << "};\n\n";
}

std::string optimizerInit(ModelOp model) {
  Attribute opt = model.getOptimizer();
  auto d = [](const llvm::APFloat &v) { return llvm::formatv("{0:e}f", v.convertToDouble()).str(); };
  if (auto sgd = dyn_cast<SgdAttr>(opt))
    return "{SBP_OPT_SGD, " + d(sgd.getLr()) + ", " + d(sgd.getMomentum()) + ", " +
           (sgd.getNesterov() ? "1" : "0") + ", 0.9f, 0.999f, 1e-8f, " + d(sgd.getWeightDecay()) + "}";
  auto adamw = cast<AdamWAttr>(opt);
  return "{SBP_OPT_ADAMW, " + d(adamw.getLr()) + ", 0.0f, 0, " + d(adamw.getBeta1()) + ", " +
         d(adamw.getBeta2()) + ", " + d(adamw.getEps()) + ", " + d(adamw.getWeightDecay()) + "}";
}
} // namespace

/// A C string literal's contents: quotes, backslashes and non-printables escaped.
static std::string cString(StringRef text) {
  std::string out;
  for (unsigned char c : text) {
    if (c == '"' || c == '\\')
      out += '\\';
    if (c >= 0x20 && c < 0x7f)
      out += char(c);
    else {
      char octal[8];
      std::snprintf(octal, sizeof(octal), "\\%03o", unsigned(c));
      out += octal;
    }
  }
  return out;
}

/// The train graph of the keep-1.0 module, renamed exact_train (its step
/// function and column-sum kernel take the graph's name). Its keep indices (drop path's samples groups: the keep-1.0 module keeps
/// them) index the main model's table, where heads groups may have been
/// split per block: renumbered by the group's name.
static FailureOr<sbpk::GraphOp> exactTrainGraph(ModuleOp exact, ArrayRef<MaskGroupOp> mainGroups) {
  for (sbpk::GraphOp g : exact.getOps<sbpk::GraphOp>())
    if (g.getSymName() == "train" || g.getSymName() == "exact_train") {
      if (!g.getArenaBytes())
        return g.emitError("exact-gradient graph is not planned (sbp-plan-memory)"), failure();
      for (sbpk::KeepIndicesOp k : g.getBlock().getOps<sbpk::KeepIndicesOp>()) {
        auto it = llvm::find_if(mainGroups, [&](MaskGroupOp m) { return m.getSymName() == k.getMask(); });
        if (it == mainGroups.end())
          return k.emitError("the exact-gradient step reads mask group @")
                     << k.getMask() << ", which the trained model does not have",
                 failure();
        k.setGroup(int64_t(it - mainGroups.begin()));
      }
      g.setSymName("exact_train");
      return g;
    }
  return exact.emitError("the exact-gradient module has no train graph"), failure();
}

FailureOr<std::string> sbp::emitTrainer(ModuleOp module, const ModelReport &report, TrainerTarget target,
                                        const TrainerExtras &extras) {
  bool cuda = target == TrainerTarget::Cuda;
  auto models = module.getOps<ModelOp>();
  if (models.empty() || std::next(models.begin()) != models.end())
    return module.emitError("expected exactly one sbp.model"), failure();
  ModelOp model = *models.begin();
  sbpk::GraphOp train, eval;
  for (sbpk::GraphOp g : module.getOps<sbpk::GraphOp>())
    (g.getSymName() == "train" ? train : eval) = g;
  if (!train || !eval || !train.getArenaBytes())
    return model.emitError("model is not lowered and planned (sbp-lower-to-kernels, sbp-plan-memory)"), failure();
  sbpk::GraphOp exact;
  if (extras.exact) {
    FailureOr<sbpk::GraphOp> g = exactTrainGraph(extras.exact, maskGroups(model));
    if (failed(g))
      return failure();
    exact = *g;
  }
  SmallVector<sbpk::GraphOp, 3> graphs = {train, eval};
  if (exact)
    graphs.push_back(exact);

  std::string source;
  llvm::raw_string_ostream os(source);
  emitHeaderComment(os, model, module, report, cuda);
  if (cuda)
    os << "#include <sbp/cuda_kernels.h>\n#include <sbp/fused_support.cuh>\n#include <sbp/model_abi.h>\n\n#include <cstdio>\n\n"
       << "namespace {\n\n"
       << "// One kernel context (cuBLASLt handle, workspace, scratch) per loaded trainer,\n"
       << "// created by the first step, which the runtime never captures in a graph.\n"
       << "sbp::cuda::Context g_context;\nbool g_context_ready = false;\n\n"
       << "int ensure_context(char *err, size_t err_len) {\n"
       << "  if (g_context_ready) return 0;\n"
       << "  if (int rc = sbp::cuda::context_init(g_context, err, err_len)) return rc;\n"
       << "  g_context_ready = true;\n  return 0;\n}\n\n";
  else
    os << "#include <sbp/cpu_kernels.h>\n#include <sbp/fused_support.h>\n#include <sbp/model_abi.h>\n\n"
       << "#include <omp.h>\n#include <algorithm>\n#include <cstdio>\n\n"
       << "namespace {\n\n";
  emitTables(os, model);

  // Parameters without a gradient (unused by the loss) get zeros.
  llvm::StringSet<> withGrad;
  for (auto g : train.getBlock().getOps<sbpk::GradOutOp>())
    withGrad.insert(g.getName());
  os << "void zero_unused_grads(const sbp_step_args *a) {\n  (void)a;\n";
  for (ParamSlot s : layoutParams(model))
    if (!withGrad.contains(s.op.getName()))
      os << "  " << (cuda ? "sbp::cuda::fill(g_context, " : "sbp::cpu::fill(") << "a->grads + " << s.offset
         << ", 0.0f, " << s.numel << ");\n";
  os << "}\n\n";
  // The generated kernels of the fusion groups, then the step functions.
  llvm::DenseMap<Operation *, std::string> fusedNames;
  for (sbpk::GraphOp g : graphs)
    for (auto f : g.getBlock().getOps<sbpk::FusedOp>()) {
      std::string fn = (f.getName() + "_" + llvm::Twine(fusedNames.size())).str();
      fusedNames[f] = fn;
      if (failed(emitFusedKernel(os, f, fn, cuda)))
        return failure();
    }
  if (cuda)
    for (sbpk::GraphOp g : graphs) {
      SmallVector<sbpk::FusedOp> deferred = deferredGroups(g);
      SmallVector<sbpk::GemmOp> chunked = rowChunkGemms(g);
      if ((!deferred.empty() || !chunked.empty()) &&
          failed(emitDeferredColumnSums(os, (g.getSymName() + "_column_sums").str(), deferred, chunked)))
        return failure();
    }
  for (sbpk::GraphOp g : graphs)
    if (failed(GraphEmitter(os, g, target, fusedNames).emit()))
      return failure();

  auto images = model.getBlock().getOps<InputOp>();
  ArrayRef<int64_t> imageShape;
  for (InputOp in : images)
    if (in.getName() == "images")
      imageShape = in.getType().getShape();
  int64_t classes = cast<RankedTensorType>(model.getOutput().getLogits().getType()).getDimSize(1);
  std::vector<MaskGroupOp> groups = maskGroups(model);

  os << "int train_with_zeroed(const sbp_step_args *a, char *err, size_t err_len) {\n"
     << "  zero_unused_grads(a);\n  return train_step(a, err, err_len);\n}\n\n";
  if (exact)
    os << "// Every keep ratio 1.0: ordinary backprop, the gradients SBP estimates.\n"
       << "int exact_with_zeroed(const sbp_step_args *a, char *err, size_t err_len) {\n"
       << "  zero_unused_grads(a);\n  return exact_train_step(a, err, err_len);\n}\n\n";
  os
     << "const sbp_model_desc kModel = {\n"
     << "  SBP_ABI_VERSION, sizeof(sbp_model_desc), \"" << model.getSymName() << "\", \""
     << (cuda ? "cuda" : "cpu") << "\", \"sbpc "
     << SBPC_VERSION_STRING << "\",\n"
     << "  " << imageShape[0] << ", " << imageShape[1] << ", " << imageShape[2] << ", " << imageShape[3] << ", "
     << classes << ",\n"
     << "  " << layoutParams(model).size() << ", kParams, " << paramBufferElements(model) << ",\n"
     << "  " << groups.size() << ", kMaskGroups,\n"
     << "  " << optimizerInit(model) << ",\n"
     << "  {" << llvm::formatv("{0:e}", report.total.forwardFlops) << ", "
     << llvm::formatv("{0:e}", report.total.backwardFlops) << ", " << report.total.savedBytes << ", "
     << *train.getArenaBytes() << ", " << eval.getArenaBytes().value_or(0) << "},\n"
     << "  train_with_zeroed, eval_step,\n"
     << "  " << (exact ? "exact_with_zeroed" : "nullptr") << ", " << (exact ? *exact.getArenaBytes() : 0) << ",\n"
     << "  \"" << cString(extras.sbpPlan) << "\",\n"
     << "  " << (imagesInArena(train) && imagesInArena(eval) ? 1 : 0) << ",\n};\n\n} // namespace\n\n"
     << "extern \"C\" __attribute__((visibility(\"default\"))) const sbp_model_desc *\n"
     << "sbp_trainer_model(uint32_t runtime_abi, char *err, size_t err_len) {\n"
     << "  if (runtime_abi != SBP_ABI_VERSION) {\n"
     << "    if (err) std::snprintf(err, err_len, \"trainer '" << model.getSymName()
     << "' was generated for runtime ABI %u, but the runtime has ABI %u: rebuild it with this sbpc\",\n"
     << "                           SBP_ABI_VERSION, runtime_abi);\n"
     << "    return nullptr;\n  }\n  return &kModel;\n}\n";
  return source;
}
