//===- EmitFusedKernels.cpp - fusion groups -> generated kernels ----------===//
//
// One generator per shape class of `sbpk.fused` (see FuseKernels.cpp):
//
//  - elementwise: a grid-stride loop over the element count, V elements per
//    thread with 16-byte loads where every pointer allows, each fused op one
//    float expression in registers; with a bias gradient (column sums), one
//    block per fixed row chunk whose threads own fixed column vectors;
//  - rowwise: one warp per row of n features (lane l holds columns l + 32c),
//    row statistics by warp sums, the column sums (dgamma, dbeta, bias
//    gradients; a wider one as slices of n) kept per lane, added over the
//    block's warps in order and written per block to arena scratch; a second
//    kernel (or the step's one deferred launch) adds the blocks in order
//    (deterministic, no floating-point atomics);
//  - multi_cast: the parameter copies, one grid row per tensor;
//  - the step's deferred launch: the column sums of the groups marked
//    `deferred_sums` and the row-chunk products of the weight gradients
//    (sbp-split-weight-grads), one grid row each.
//
// The CPU versions are the same computations as OpenMP loops (rows split in
// the same fixed chunks). Every generated function documents its group.
//
//===----------------------------------------------------------------------===//
#include "EmitFusedKernels.h"
#include "SbpKernel/KernelTable.h"

#include "mlir/IR/TypeUtilities.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/TypeSwitch.h"
#include "llvm/Support/FormatVariadic.h"

#include <limits>

using namespace mlir;

namespace {
/// Blocks of the deferred launch's grid row for each row-chunk weight
/// gradient (at least; a row is as wide as the widest column sum).
constexpr int64_t kRowChunkSumBlocks = 64;

int64_t numel(Value v) { return cast<RankedTensorType>(v.getType()).getNumElements(); }
int64_t intAttr(Operation *op, StringRef name) { return op->getAttrOfType<IntegerAttr>(name).getInt(); }
bool isBf16(Value v) { return cast<RankedTensorType>(v.getType()).getElementType().isBF16(); }
const char *ctype(Value v) {
  Type e = cast<RankedTensorType>(v.getType()).getElementType();
  return e.isBF16() ? "__nv_bfloat16" : e.isInteger(32) ? "int32_t" : "float";
}

std::string typeStr(Type t) {
  std::string s;
  llvm::raw_string_ostream os(s);
  os << t;
  return s;
}

/// Aligned for vector access: arena buffers are 256-byte aligned; parameters,
/// inputs and gradient-buffer slots may not be.
bool inArena(Value v) {
  if (sbpk::getGradOutUser(v))
    return false;
  Operation *def = v.getDefiningOp();
  return def && isa<sbpk::KernelOp, sbpk::GemmOp, sbpk::FusedOp>(def);
}

/// The float expression of one elementwise op over operand expressions.
FailureOr<std::string> scalarExpr(sbpk::KernelOp k, ArrayRef<std::string> a) {
  StringRef c = k.getCallee();
  if (c == sbpk::kernel::add)
    return "(" + a[0] + " + " + a[1] + ")";
  if (c == sbpk::kernel::cast)
    return a[0];
  // A GELU of bf16 results (CUDA only) takes PyTorch's formula (gelu_erf),
  // as the library's bf16 GELU; float results keep x Phi(x)
  // (fused_support.cuh and its CPU twin).
  const bool bf16 = getElementTypeOrSelf(k->getResult(0).getType()).isBF16();
  if (c == sbpk::kernel::gelu)
    return std::string(bf16 ? "sbp::fused::gelu_erf(" : "sbp::fused::gelu(") + a[0] + ")";
  if (c == sbpk::kernel::gelu_grad)
    return std::string(bf16 ? "sbp::fused::gelu_erf_grad(" : "sbp::fused::gelu_grad(") + a[0] + ", " + a[1] + ")";
  if (c == sbpk::kernel::relu)
    return "sbp::fused::relu(" + a[0] + ")";
  if (c == sbpk::kernel::relu_grad)
    return "sbp::fused::relu_grad(" + a[0] + ", " + a[1] + ")";
  if (c == sbpk::kernel::layer_scale) // x * gamma
    return "(" + a[0] + " * " + a[1] + ")";
  if (c == sbpk::kernel::layer_scale_grad) // dx = gamma * dy (dgamma is a column sum)
    return "(" + a[2] + " * " + a[0] + ")";
  return failure();
}

/// The float expression of an elementwise group's member over its operands'
/// expressions; in a group with a row map, `kept` is whether the element's
/// token is kept. Reports an error on a member that is not elementwise.
FailureOr<std::string> memberExpr(sbpk::KernelOp k, const llvm::DenseMap<Value, std::string> &expr) {
  SmallVector<std::string> args;
  for (Value v : k->getOperands())
    args.push_back(expr.lookup(v));
  if (k.getCallee() == sbpk::kernel::gather_rows) // the kept rows: the value itself, stored at ki
    return args[0];
  if (k.getCallee() == sbpk::kernel::scatter_add_rows) // kept rows added to their tokens
    return "(" + args[0] + " + (kept ? " + args[1] + " : 0.0f))";
  if (FailureOr<std::string> e = scalarExpr(k, args); succeeded(e))
    return e;
  return k.emitOpError("is not an elementwise kernel");
}

/// Members that add column sums: a bias gradient, a layer scale's gradient.
bool addsColumnSums(Operation &inner) {
  StringRef c = cast<sbpk::KernelOp>(inner).getCallee();
  return c == sbpk::kernel::bias_grad || c == sbpk::kernel::layer_scale_grad;
}

/// A body argument read only as a per-column operand (layer scale's gamma):
/// the value at the element's column, not at the element.
bool isColumnArg(BlockArgument a) {
  return !a.use_empty() && llvm::all_of(a.getUses(), [](OpOperand &use) {
    auto k = dyn_cast<sbpk::KernelOp>(use.getOwner());
    return k && sbpk::columnOperand(k.getCallee()) == int(use.getOperandNumber());
  });
}

/// The column count of an elementwise group whose members have per-column
/// operands (sbp-fuse-kernels gives them one), 0 if none has.
int64_t columnCount(sbpk::FusedOp op) {
  for (Operation &inner : op.getBlock().without_terminator())
    if (sbpk::columnOperand(cast<sbpk::KernelOp>(inner).getCallee()) >= 0)
      return intAttr(&inner, "n");
  return 0;
}

/// Shared by the generators: the group's signature and its comment.
class FusedEmitter {
public:
  FusedEmitter(llvm::raw_ostream &os, sbpk::FusedOp op, StringRef name, bool cuda)
      : os(os), op(op), name(name), cuda(cuda) {}

  LogicalResult emit() {
    if (!cuda && (llvm::any_of(op.getInputs(), isBf16) || llvm::any_of(op.getResults(), isBf16)))
      return op.emitOpError("has a bf16 value: the CPU target computes in fp32");
    comment();
    StringRef kind = op.getKind();
    if (kind == "elementwise")
      return emitElementwise();
    if (kind == "rowwise")
      return emitRowwise();
    if (kind == "multi_cast" && cuda)
      return emitMultiCast();
    return op.emitOpError("has no ") << (cuda ? "CUDA" : "CPU") << " generator for kind '" << kind << "'";
  }

private:
  void comment() {
    os << "// " << name << " (" << op.getKind() << "): generated for\n";
    llvm::DenseMap<Value, std::string> ids;
    for (auto [i, a] : llvm::enumerate(op.getBlock().getArguments()))
      ids[a] = "in" + std::to_string(i);
    int t = 0;
    for (Operation &inner : op.getBlock().without_terminator()) {
      SmallVector<std::string> res, args;
      for (Value r : inner.getResults())
        res.push_back(ids[r] = "t" + std::to_string(t++));
      for (Value v : inner.getOperands())
        args.push_back(ids[v]);
      os << "//   " << llvm::join(res, ", ") << " = " << cast<sbpk::KernelOp>(inner).getCallee() << "("
         << llvm::join(args, ", ") << ")  -> " << typeStr(inner.getResult(0).getType()) << "\n";
    }
    SmallVector<std::string> outs;
    for (Value v : op.getBlock().getTerminator()->getOperands())
      outs.push_back(ids[v]);
    os << "//   out = (" << llvm::join(outs, ", ") << ")\n";
  }

  /// `(ctx, in0, ..., out0, ...[, double *scratch])` with element types.
  std::string hostParams(bool withScratch) {
    SmallVector<std::string> p;
    if (cuda)
      p.push_back("const sbp::cuda::Context &ctx");
    for (auto [i, v] : llvm::enumerate(op.getInputs()))
      p.push_back(std::string("const ") + ctype(v) + " *in" + std::to_string(i));
    for (auto [i, v] : llvm::enumerate(op.getResults()))
      p.push_back(std::string(ctype(v)) + " *out" + std::to_string(i));
    if (withScratch)
      p.push_back("double *scratch");
    return llvm::join(p, ", ");
  }

  LogicalResult emitElementwise();
  LogicalResult emitColumnSumElementwise();
  LogicalResult emitRowwise();
  LogicalResult emitMultiCast();
  void emitSumsKernel(int64_t sums, int64_t n, int64_t chunks);
  void emitSumsLaunch(int64_t sums, int64_t n);

  llvm::raw_ostream &os;
  sbpk::FusedOp op;
  StringRef name;
  bool cuda;
};

//===--- elementwise ------------------------------------------------------===//

/// The row map of an elementwise group with `gather_rows` / `scatter_add_rows`
/// members (sbp-fuse-kernels gives all of them one index list): the kernel
/// runs over the full [batch, tokens, n] elements, and a value of the kept
/// domain [batch, kept, n] is read and written at its token's kept row.
/// The runtime's index lists are ascending and unique, padded with -1 at the
/// end (runtime/lib/Masks.cpp); padded kept rows are written as zeros, as
/// the library's gather does.
struct RowMap {
  int idxArg = -1; // block argument of the index list
  int64_t batch = 0, tokens = 0, kept = 0, n = 0;
  bool present() const { return idxArg >= 0; }
  int64_t fullNumel() const { return batch * tokens * n; }
  int64_t keptNumel() const { return batch * kept * n; }
};

/// Writes zeros to the padded kept rows (the -1 entries past the `valid`
/// ones, a variable of the generated code) of the results `outputs` of a
/// group with a row map: a loop on the CPU, a grid-stride loop over the
/// blocks of `threads` threads on the GPU.
void emitPaddedRowZeros(llvm::raw_ostream &os, int64_t batch, ArrayRef<std::pair<size_t, Value>> outputs,
                        bool cuda, int64_t threads = 256) {
  if (outputs.empty())
    return;
  if (!cuda) {
    os << "  for (int64_t b = 0; b < " << batch << "; ++b)\n"
       << "    for (int64_t j = (b * kK + valid) * kN; j < (b + 1) * kK * kN; ++j) {\n";
    for (auto [i, v] : outputs)
      os << "      out" << i << "[j] = 0.0f;\n";
    os << "    }\n";
    return;
  }
  os << "  const int64_t pad = (kK - valid) * int64_t(kN);\n"
     << "  for (int64_t j = int64_t(blockIdx.x) * " << threads << " + threadIdx.x; j < " << batch
     << " * pad; j += int64_t(gridDim.x) * " << threads << ") {\n"
     << "    const int64_t at = (j / pad * kK + valid) * kN + j % pad;\n";
  for (auto [i, v] : outputs)
    os << "    out" << i << "[at] = sbp::fused::from_float<" << ctype(v) << ">(0.0f);\n";
  os << "  }\n";
}

RowMap rowMapOf(sbpk::FusedOp op) {
  RowMap m;
  for (Operation &inner : op.getBlock().without_terminator()) {
    auto k = cast<sbpk::KernelOp>(inner);
    if (k.getCallee() != sbpk::kernel::gather_rows && k.getCallee() != sbpk::kernel::scatter_add_rows)
      continue;
    m.idxArg = cast<BlockArgument>(k->getOperands().back()).getArgNumber();
    m.batch = intAttr(k, "batch");
    m.tokens = intAttr(k, "tokens");
    m.kept = intAttr(k, "kept");
    m.n = intAttr(k, "n");
  }
  return m;
}

LogicalResult FusedEmitter::emitElementwise() {
  Block &body = op.getBlock();
  if (llvm::any_of(body.without_terminator(), addsColumnSums))
    return emitColumnSumElementwise();
  const RowMap map = rowMapOf(op);
  const int64_t total = map.present() ? map.fullNumel() : numel(op.getResult(0));
  if (map.present() && map.keptNumel() >= total)
    return op.emitOpError("row map without fewer kept rows than tokens");
  // Values of the kept domain: read at the kept row `ki`, when the token is kept.
  auto kept = [&](Value v) { return map.present() && numel(v) == map.keptNumel(); };
  // Per-element expressions: block arguments a<i>[v], op results t<k>.
  // Per-column operands are read at the element's column (i % kCols).
  const int64_t cols = columnCount(op);
  llvm::DenseMap<Value, std::string> expr;
  for (auto [i, a] : llvm::enumerate(body.getArguments()))
    expr[a] = "a" + std::to_string(i) +
              (cuda ? "[v]" : isColumnArg(a) ? "[i % kCols]" : (kept(a) ? "k_" : "[i]"));
  std::string stmts;
  int t = 0;
  for (Operation &inner : body.without_terminator()) {
    auto k = cast<sbpk::KernelOp>(inner);
    FailureOr<std::string> e = memberExpr(k, expr);
    if (failed(e))
      return failure();
    std::string id = "t" + std::to_string(t++);
    stmts += std::string(cuda ? "      " : "    ") + "const float " + id + " = " + *e + ";\n";
    expr[inner.getResult(0)] = id;
  }
  auto yielded = body.getTerminator()->getOperands();
  auto isData = [&](unsigned i) { return int(i) != map.idxArg; };
  SmallVector<std::pair<size_t, Value>> keptResults; // padded kept rows are zeroed
  for (auto [i, v] : llvm::enumerate(yielded))
    if (kept(v))
      keptResults.push_back({i, v});
  const bool keptOutputs = !keptResults.empty();
  // Only kept rows to write: the rows of dropped tokens need not be read.
  const char *skipDropped = llvm::all_of(yielded, kept) ? "    if (!kept)\n      continue;\n" : "";

  if (!cuda) {
    os << "void " << name << "(" << hostParams(false) << ") {\n";
    if (cols)
      os << "  constexpr int64_t kCols = " << cols << ";\n";
    for (auto [i, v] : llvm::enumerate(op.getInputs()))
      if (isData(i))
        os << "  const float *a" << i << " = in" << i << ";\n";
    if (map.present()) {
      os << "  constexpr int64_t kT = " << map.tokens << ", kK = " << map.kept << ", kN = " << map.n << ";\n"
         << "  const std::vector<int32_t> inv = sbp::fused::keep_map(in" << map.idxArg << ", kK, kT);\n"
         << (keptOutputs ? "  const int64_t valid = sbp::fused::valid_count(in" + std::to_string(map.idxArg) + ", kK, kT);\n" : "");
    }
    os << "#pragma omp parallel for schedule(static) if (" << total << " >= 32768)\n"
       << "  for (int64_t i = 0; i < " << total << "; ++i) {\n";
    if (map.present()) {
      os << "    const int64_t row = i / kN;\n    const int32_t k = inv[size_t(row % kT)];\n"
         << "    const bool kept = k >= 0;\n    const int64_t ki = ((row / kT) * kK + k) * kN + i % kN;\n"
         << skipDropped;
      for (auto [i, a] : llvm::enumerate(body.getArguments()))
        if (isData(i) && kept(a))
          os << "    const float a" << i << "k_ = kept ? a" << i << "[ki] : 0.0f;\n";
    }
    os << llvm::StringRef(stmts).rtrim() << "\n";
    for (auto [i, v] : llvm::enumerate(yielded))
      os << (kept(v) ? "    if (kept) out" : "    out") << i << (kept(v) ? "[ki] = " : "[i] = ") << expr[v]
         << ";\n";
    os << "  }\n";
    emitPaddedRowZeros(os, map.batch, keptResults, false);
    os << "}\n\n";
    return success();
  }

  // Vector width: 8 elements when every pointer is an arena buffer; within
  // one row when a row map needs the row of each vector.
  // (Per-column operands are read element by element: they are parameters.)
  bool aligned = llvm::all_of(op.getResults(), inArena);
  for (auto [i, v] : llvm::enumerate(op.getInputs()))
    aligned &= !isData(i) || isColumnArg(body.getArgument(i)) || inArena(v);
  int vec = 1;
  for (int v : {8, 4, 2})
    if (aligned && total % v == 0 && (!map.present() || map.n % v == 0)) {
      vec = v;
      break;
    }
  const int64_t threads = 256, perBlock = threads * vec;
  // With a row map every block first builds the inverse map of all tokens:
  // 1024 blocks (a full H100 at 8 blocks of 256 per multiprocessor) keep that
  // cost a small part of each block's loop.
  const int64_t maxBlocks = map.present() ? 1024 : 4096;
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>((total + perBlock - 1) / perBlock, maxBlocks));
  SmallVector<std::string> kparams;
  for (auto [i, v] : llvm::enumerate(op.getInputs()))
    kparams.push_back(isData(i) ? std::string("const ") + ctype(v) + " *__restrict__ in" + std::to_string(i)
                                : "const int32_t *__restrict__ in" + std::to_string(i));
  for (auto [i, v] : llvm::enumerate(op.getResults()))
    kparams.push_back(std::string(ctype(v)) + " *__restrict__ out" + std::to_string(i));
  os << "__global__ void __launch_bounds__(" << threads << ") " << name << "_kernel(" << llvm::join(kparams, ", ")
     << ") {\n"
     << "  constexpr int64_t kTotal = " << total << ";\n  constexpr int kV = " << vec << ";\n";
  if (cols)
    os << "  constexpr int64_t kCols = " << cols << ";\n";
  if (map.present())
    os << "  constexpr int kT = " << map.tokens << ", kK = " << map.kept << ", kN = " << map.n << ";\n"
       << "  __shared__ int inv[kT];\n"
       << "  " << (keptOutputs ? "const int valid = " : "") << "sbp::fused::keep_map(in" << map.idxArg << ", kK, kT, inv);\n";
  os << "  for (int64_t i = (int64_t(blockIdx.x) * " << threads << " + threadIdx.x) * kV; i < kTotal;\n"
     << "       i += int64_t(gridDim.x) * " << perBlock << ") {\n";
  if (map.present())
    os << "    const int64_t row = i / kN;\n    const int k = inv[row % kT];\n    const bool kept = k >= 0;\n"
       << "    const int64_t ki = ((row / kT) * kK + k) * kN + i % kN;\n"
       << skipDropped;
  for (auto [i, a] : llvm::enumerate(body.getArguments())) {
    if (!isData(i))
      continue;
    os << "    float a" << i << "[kV];\n";
    if (isColumnArg(a))
      os << "#pragma unroll\n    for (int v = 0; v < kV; ++v)\n      a" << i << "[v] = in" << i
         << "[(i + v) % kCols];\n";
    else if (kept(a))
      os << "    sbp::fused::load_if<kV>(kept, in" << i << " + (kept ? ki : 0), a" << i << ");\n";
    else
      os << "    sbp::fused::load<kV>(in" << i << " + i, a" << i << ");\n";
  }
  os << "    float r[" << yielded.size() << "][kV];\n#pragma unroll\n    for (int v = 0; v < kV; ++v) {\n" << stmts;
  for (auto [i, v] : llvm::enumerate(yielded))
    os << "      r[" << i << "][v] = " << expr[v] << ";\n";
  os << "    }\n";
  for (auto [i, v] : llvm::enumerate(yielded))
    if (kept(v))
      os << "    if (kept)\n      sbp::fused::store<kV>(out" << i << " + ki, r[" << i << "]);\n";
    else
      os << "    sbp::fused::store<kV>(out" << i << " + i, r[" << i << "]);\n";
  os << "  }\n";
  emitPaddedRowZeros(os, map.batch, keptResults, true);
  os << "}\n\n";
  SmallVector<std::string> args;
  for (size_t i = 0; i < op.getInputs().size(); ++i)
    args.push_back("in" + std::to_string(i));
  for (size_t i = 0; i < op.getNumResults(); ++i)
    args.push_back("out" + std::to_string(i));
  os << "void " << name << "(" << hostParams(false) << ") {\n"
     << "  " << name << "_kernel<<<" << blocks << ", " << threads << ", 0, ctx.stream>>>(" << llvm::join(args, ", ")
     << ");\n}\n\n";
  return success();
}

/// An elementwise group with column sums (`bias_grad` members: the bias
/// gradient of fc1 from the GELU gradient). The elements are rows x n; the
/// rows are split into `chunks` fixed ranges, one GPU block or CPU task
/// each. On the GPU a block's threads own fixed column vectors (kV columns)
/// of kSub rows at a time, sum their columns in registers, then the block
/// adds its row slices in order in shared memory (double) and writes one
/// partial row per chunk to scratch; the chunks are added in order by the
/// `_sums` kernel or the deferred launch. No atomics: same bits every run.
/// With a row map the rows are the map's full rows; a value of the kept
/// domain is read and written at its token's kept row, and a sum of one adds
/// the kept rows only (a ConvNeXt block's residual add, the gather of its MLP
/// branch's rows and the layer scale's gradient on them).
LogicalResult FusedEmitter::emitColumnSumElementwise() {
  Block &body = op.getBlock();
  const RowMap map = rowMapOf(op);
  auto kept = [&](Value v) { return map.present() && numel(v) == map.keptNumel(); };
  auto isData = [&](unsigned i) { return int(i) != map.idxArg; };
  int64_t rows = map.present() ? map.batch * map.tokens : 0, n = map.present() ? map.n : 0;
  // Column sums: (result, summed expression, whether it sums the kept rows).
  struct Sum {
    Value result;
    std::string expr;
    bool keptRows;
  };
  SmallVector<Sum> sums;
  llvm::DenseMap<Value, std::string> expr;
  for (auto [i, a] : llvm::enumerate(body.getArguments()))
    expr[a] = "a" + std::to_string(i) + (cuda ? "[v]" : isColumnArg(a) ? "[j]" : kept(a) ? "k_" : "[i]");
  std::string stmts, indent = cuda ? "        " : "      ";
  int t = 0;
  for (Operation &inner : body.without_terminator()) {
    auto k = cast<sbpk::KernelOp>(inner);
    if (addsColumnSums(inner)) {
      const int64_t kr = intAttr(k, "rows"), kn = intAttr(k, "n");
      const bool overKept = map.present() && kr * kn == map.keptNumel();
      if (map.present() ? kn != n || (kr * kn != rows * n && !overKept) : (!sums.empty() && (kn != n || kr != rows)))
        return k.emitOpError("sums columns of another shape than the group's rows or its other column sums");
      if (!map.present())
        rows = kr, n = kn;
      if (k.getCallee() == sbpk::kernel::bias_grad) {
        sums.push_back({k->getResult(0), expr[k->getOperand(0)], overKept});
        continue;
      }
      // layer_scale_grad's dgamma: the column sums of dy * x.
      sums.push_back({k->getResult(1), "(" + expr[k->getOperand(0)] + " * " + expr[k->getOperand(1)] + ")", overKept});
    }
    FailureOr<std::string> e = memberExpr(k, expr);
    if (failed(e))
      return failure();
    std::string id = "t" + std::to_string(t++);
    stmts += indent + "const float " + id + " = " + *e + ";\n";
    expr[inner.getResult(0)] = id;
  }
  const int64_t chunks = intAttr(op, "chunks"), nsums = int64_t(sums.size());
  auto yielded = body.getTerminator()->getOperands();
  SmallVector<int> sumIndex(yielded.size(), -1);
  for (auto [i, v] : llvm::enumerate(yielded))
    for (auto [s, sum] : llvm::enumerate(sums))
      if (sum.result == v)
        sumIndex[i] = int(s);
  for (auto [i, a] : llvm::enumerate(body.getArguments()))
    if (isData(i) && (isColumnArg(a) ? numel(a) != n : numel(a) != rows * n && !kept(a)))
      return op.emitOpError("operand ") << i << " is not of the " << rows << " x " << n << " elements of its column sums";
  // Kept-domain row results: stored at the kept row; padded kept rows zeroed.
  SmallVector<std::pair<size_t, Value>> keptResults;
  for (auto [i, v] : llvm::enumerate(yielded))
    if (sumIndex[i] < 0 && kept(v))
      keptResults.push_back({i, v});
  auto summand = [&](const Sum &sum) { return sum.keptRows ? "(kept ? " + sum.expr + " : 0.0f)" : sum.expr; };
  // Only kept rows to write and sum: the rows of dropped tokens need not be read.
  bool onlyKept = map.present() && llvm::all_of(sums, [](const Sum &s) { return s.keptRows; });
  for (auto [i, v] : llvm::enumerate(yielded))
    onlyKept &= sumIndex[i] >= 0 || kept(v);

  if (!cuda) {
    os << "void " << name << "(" << hostParams(true) << ") {\n"
       << "  constexpr int64_t kRows = " << rows << ", kN = " << n << ", kChunks = " << chunks
       << ", kSums = " << nsums << ", kPer = (kRows + kChunks - 1) / kChunks;\n";
    for (auto [i, v] : llvm::enumerate(op.getInputs()))
      if (isData(i))
        os << "  const float *a" << i << " = in" << i << ";\n";
    if (map.present())
      os << "  constexpr int64_t kT = " << map.tokens << ", kK = " << map.kept << ";\n"
         << "  const std::vector<int32_t> inv = sbp::fused::keep_map(in" << map.idxArg << ", kK, kT);\n"
         << (keptResults.empty() ? "" : "  const int64_t valid = sbp::fused::valid_count(in" + std::to_string(map.idxArg) + ", kK, kT);\n");
    os << "#pragma omp parallel for schedule(static)\n"
       << "  for (int64_t chunk = 0; chunk < kChunks; ++chunk) {\n"
       << "    double *acc = scratch + chunk * kSums * kN;\n"
       << "    for (int64_t j = 0; j < kSums * kN; ++j) acc[j] = 0.0;\n"
       << "    for (int64_t r = chunk * kPer; r < std::min(kRows, (chunk + 1) * kPer); ++r) {\n";
    if (map.present())
      os << "    const int32_t kr = inv[size_t(r % kT)];\n    const bool kept = kr >= 0;\n"
         << (onlyKept ? "    if (!kept)\n      continue;\n" : "")
         << "    const int64_t krow = ((r / kT) * kK + kr) * kN;\n";
    os << "    for (int64_t j = 0; j < kN; ++j) {\n      const int64_t i = r * kN + j;\n";
    if (map.present()) {
      os << "      const int64_t ki = krow + j;\n";
      for (auto [i, a] : llvm::enumerate(body.getArguments()))
        if (isData(i) && kept(a))
          os << "      const float a" << i << "k_ = kept ? a" << i << "[ki] : 0.0f;\n";
    }
    os << stmts;
    for (auto [i, v] : llvm::enumerate(yielded))
      if (sumIndex[i] < 0)
        os << (kept(v) ? "      if (kept) out" : "      out") << i << (kept(v) ? "[ki] = " : "[i] = ") << expr[v]
           << ";\n";
    for (auto [s, sum] : llvm::enumerate(sums))
      os << "      acc[" << s << " * kN + j] += " << summand(sum) << ";\n";
    os << "    }\n    }\n  }\n  for (int64_t j = 0; j < kN; ++j) {\n";
    for (auto [i, v] : llvm::enumerate(yielded))
      if (sumIndex[i] >= 0)
        os << "    { double s = 0.0; for (int64_t c = 0; c < kChunks; ++c) s += scratch[(c * kSums + " << sumIndex[i]
           << ") * kN + j]; out" << i << "[j] = float(s); }\n";
    os << "  }\n";
    emitPaddedRowZeros(os, map.batch, keptResults, false);
    os << "}\n\n";
    return success();
  }

  // Vector width: within a row, every pointer an arena buffer.
  bool aligned = true;
  for (auto [i, v] : llvm::enumerate(op.getResults()))
    aligned &= sumIndex[i] >= 0 || inArena(v);
  for (auto [i, v] : llvm::enumerate(op.getInputs()))
    aligned &= !isData(i) || isColumnArg(body.getArgument(i)) || inArena(v);
  int vec = 1;
  for (int v : {8, 4, 2})
    if (aligned && n % v == 0) {
      vec = v;
      break;
    }
  // kLanes threads per row (one column vector each, kCV of them when a row
  // has more than 256 vectors), kSub rows at a time.
  const int64_t nv = n / vec, lanes = std::min<int64_t>(nv, 256), sub = std::max<int64_t>(1, 256 / nv);
  const int64_t threads = lanes * sub;
  SmallVector<std::string> kparams, largs;
  for (auto [i, v] : llvm::enumerate(op.getInputs())) {
    kparams.push_back(std::string("const ") + ctype(v) + " *__restrict__ in" + std::to_string(i));
    largs.push_back("in" + std::to_string(i));
  }
  for (auto [i, v] : llvm::enumerate(op.getResults()))
    if (sumIndex[i] < 0) {
      kparams.push_back(std::string(ctype(v)) + " *__restrict__ out" + std::to_string(i));
      largs.push_back("out" + std::to_string(i));
    }
  kparams.push_back("double *__restrict__ partial");
  largs.push_back("scratch");
  SmallVector<std::string> rowResults;
  for (auto [i, v] : llvm::enumerate(yielded))
    if (sumIndex[i] < 0)
      rowResults.push_back(std::to_string(i));
  os << "__global__ void __launch_bounds__(" << threads << ") " << name << "_kernel(" << llvm::join(kparams, ", ")
     << ") {\n"
     << "  constexpr int64_t kRows = " << rows << ", kPer = (kRows + " << chunks << " - 1) / " << chunks << ";\n"
     << "  constexpr int kN = " << n << ", kV = " << vec << ", kNV = kN / kV, kLanes = " << lanes
     << ", kSub = " << sub << ", kCV = (kNV + kLanes - 1) / kLanes, kSums = " << nsums << ";\n"
     << "  const int lane = threadIdx.x % kLanes, sub = threadIdx.x / kLanes;\n"
     << "  const int64_t r0 = int64_t(blockIdx.x) * kPer, r1 = r0 + kPer < kRows ? r0 + kPer : kRows;\n";
  if (map.present())
    os << "  constexpr int kT = " << map.tokens << ", kK = " << map.kept << ";\n"
       << "  __shared__ int inv[kT];\n"
       << "  " << (keptResults.empty() ? "" : "const int valid = ") << "sbp::fused::keep_map(in" << map.idxArg
       << ", kK, kT, inv);\n";
  os << "  float acc[kSums][kCV][kV] = {};\n"
     << "  for (int64_t r = r0 + sub; r < r1; r += kSub) {\n";
  if (map.present())
    os << "    const int kr = inv[r % kT];\n    const bool kept = kr >= 0;\n"
       << (onlyKept ? "    if (!kept)\n      continue;\n" : "")
       << "    const int64_t krow = ((r / kT) * kK + kr) * int64_t(kN);\n";
  os << "#pragma unroll\n    for (int cv = 0; cv < kCV; ++cv) {\n"
     << "      const int col = lane + cv * kLanes;\n      if (col >= kNV)\n        break;\n"
     << "      const int64_t i = r * kN + int64_t(col) * kV;\n";
  if (map.present())
    os << "      const int64_t ki = krow + int64_t(col) * kV;\n";
  for (auto [i, a] : llvm::enumerate(body.getArguments())) {
    if (!isData(i))
      continue;
    if (isColumnArg(a)) // a parameter: element by element
      os << "      float a" << i << "[kV];\n#pragma unroll\n      for (int v = 0; v < kV; ++v)\n        a" << i
         << "[v] = in" << i << "[col * kV + v];\n";
    else if (kept(a))
      os << "      float a" << i << "[kV];\n      sbp::fused::load_if<kV>(kept, in" << i << " + (kept ? ki : 0), a" << i
         << ");\n";
    else
      os << "      float a" << i << "[kV];\n      sbp::fused::load<kV>(in" << i << " + i, a" << i << ");\n";
  }
  if (!rowResults.empty())
    os << "      float res[" << yielded.size() << "][kV];\n";
  os << "#pragma unroll\n      for (int v = 0; v < kV; ++v) {\n" << stmts;
  for (auto [i, v] : llvm::enumerate(yielded))
    if (sumIndex[i] < 0)
      os << "        res[" << i << "][v] = " << expr[v] << ";\n";
  for (auto [s, sum] : llvm::enumerate(sums))
    os << "        acc[" << s << "][cv][v] += " << summand(sum) << ";\n";
  os << "      }\n";
  for (auto [i, v] : llvm::enumerate(yielded))
    if (sumIndex[i] < 0)
      os << (kept(v) ? "      if (kept)\n        sbp::fused::store<kV>(out" : "      sbp::fused::store<kV>(out") << i
         << (kept(v) ? " + ki, res[" : " + i, res[") << i << "]);\n";
  os << "    }\n  }\n"
     << "  // The block's column sums: its row slices added in order, in double.\n"
     << "  __shared__ double sh[kSums * kN];\n"
     << "  for (int w = 0; w < kSub; ++w) {\n    if (sub == w) {\n"
     << "#pragma unroll\n      for (int cv = 0; cv < kCV; ++cv) {\n"
     << "        const int col = lane + cv * kLanes;\n        if (col >= kNV)\n          break;\n"
     << "#pragma unroll\n        for (int s = 0; s < kSums; ++s) {\n"
     << "#pragma unroll\n          for (int v = 0; v < kV; ++v) {\n"
     << "            double &d = sh[s * kN + col * kV + v];\n"
     << "            d = (w ? d : 0.0) + double(acc[s][cv][v]);\n          }\n        }\n      }\n    }\n"
     << "    __syncthreads();\n  }\n"
     << "  for (int j = threadIdx.x; j < kSums * kN; j += " << threads << ")\n"
     << "    partial[int64_t(blockIdx.x) * kSums * kN + j] = sh[j];\n";
  emitPaddedRowZeros(os, map.batch, keptResults, true, threads);
  os << "}\n\n";
  emitSumsKernel(nsums, n, chunks);
  os << "void " << name << "(" << hostParams(true) << ") {\n"
     << "  " << name << "_kernel<<<" << chunks << ", " << threads << ", 0, ctx.stream>>>(" << llvm::join(largs, ", ")
     << ");\n";
  emitSumsLaunch(nsums, n);
  os << "}\n\n";
  return success();
}

//===--- rowwise ----------------------------------------------------------===//

/// The row code of a rowwise group, written once for both targets: values
/// are per-row arrays indexed by `c` (CUDA: column lane + 32c of the warp's
/// row) or `j` (CPU: column j), and the column sums are accumulators.
class RowwiseGenerator {
public:
  RowwiseGenerator(sbpk::FusedOp op, bool cuda) : op(op), cuda(cuda) {}

  LogicalResult analyse() {
    // The rows: of the LayerNorm gradient, else (a forward group) of the LayerNorm.
    for (StringRef callee : {sbpk::kernel::layer_norm, sbpk::kernel::layer_norm_grad})
      for (Operation &inner : op.getBlock().without_terminator())
        if (auto k = cast<sbpk::KernelOp>(inner); k.getCallee() == callee) {
          rows = intAttr(k, "rows");
          n = intAttr(k, "n");
        }
    if (rows <= 0 || n <= 0)
      return op.emitOpError("rowwise group without a layer_norm or layer_norm_grad");
    map = rowMapOf(op);
    if (map.present() && map.batch * map.tokens != rows)
      return op.emitOpError("gathers rows of another row count");
    for (auto [i, a] : llvm::enumerate(op.getBlock().getArguments())) {
      if (int(i) == map.idxArg)
        continue;
      // A per-column operand (gamma, beta) is a vector [n]; a row operand
      // has rows, even a single one ([1, n]: class-token rows at batch 1).
      const bool column = isColumnOperand(a);
      if (!column && numel(a) == rows * n)
        rowInputs.push_back(i);
      else if (column)
        colInputs.push_back(i);
      else if (isSideInput(a))
        ; // read in column slices by its bias_grad
      else
        return op.emitOpError("rowwise operand ") << i
               << " is neither [rows, n], [n] nor [rows, m n] read by a bias_grad";
      name[a] = (column ? "p" : "a") + std::to_string(i);
    }
    return success();
  }

  bool isColumnOperand(Value a) const {
    return cast<RankedTensorType>(a.getType()).getRank() == 1 && numel(a) == n;
  }

  /// A [rows, m n] operand (m > 1) whose only reader is a bias_grad: the dy
  /// of an earlier layer (sbp-fuse-kernels' upstream bias gradient).
  bool isSideInput(Value a) const {
    return numel(a) % (rows * n) == 0 && numel(a) > rows * n && llvm::all_of(a.getUsers(), [](Operation *u) {
             return cast<sbpk::KernelOp>(u).getCallee() == sbpk::kernel::bias_grad;
           });
  }

  int64_t rows = 0, n = 0;
  RowMap map; // gathers of kept rows (a forward group)
  SmallVector<unsigned> rowInputs, colInputs;
  /// Results that are kept rows (gathers): stored at the row's kept row.
  llvm::DenseSet<Value> keptRows;
  /// Column sums in result order: (value, accumulator name).
  SmallVector<std::pair<Value, std::string>> colSums;
  llvm::DenseMap<Value, std::string> name;

  /// Statements for one row. `idx` is the array index, `loop(body)` wraps a
  /// per-column loop, `rowSum(x)` reduces a float over the row.
  LogicalResult rowCode(std::string &out) {
    int t = 0;
    for (Operation &inner : op.getBlock().without_terminator()) {
      auto k = cast<sbpk::KernelOp>(inner);
      StringRef callee = k.getCallee();
      auto in = [&](unsigned i) { return name[k->getOperand(i)]; };
      if (callee == sbpk::kernel::gather_rows) { // the row itself, stored at its kept row
        name[k->getResult(0)] = in(0);
        keptRows.insert(k->getResult(0));
        continue;
      }
      if (callee == sbpk::kernel::layer_norm || callee == sbpk::kernel::layer_norm_grad) {
        std::string s = stats(k->getOperand(0), k->getAttrOfType<FloatAttr>("eps").getValueAsDouble(), out);
        std::string x = in(0), g = in(1), id = "t" + std::to_string(t++);
        std::string xhat = "(" + at(x) + " - " + s + "_mean) * " + s + "_rstd";
        declare(id, out);
        name[k->getResult(0)] = id;
        if (callee == sbpk::kernel::layer_norm) {
          out += loop(at(id) + " = " + xhat + " * " + at(g) + " + " + at(in(2)) + ";");
          continue;
        }
        std::string dy = in(2), sums = id + "_s";
        std::string dg = "dg" + std::to_string(colSums.size()), db = "db" + std::to_string(colSums.size() + 1);
        colSums.push_back({k->getResult(1), dg});
        colSums.push_back({k->getResult(2), db});
        out += "    float " + sums + "g = 0.0f, " + sums + "x = 0.0f;\n";
        out += loop("const float xh = " + xhat + "; const float gg = " + at(dy) + " * " + at(g) + "; " + sums +
                    "g += gg; " + sums + "x += gg * xh; " + at(dg) + " += " + at(dy) + " * xh; " + at(db) +
                    " += " + at(dy) + ";");
        out += "    " + sums + "g = " + rowSum(sums + "g") + " * (1.0f / " + std::to_string(n) + ".0f);\n";
        out += "    " + sums + "x = " + rowSum(sums + "x") + " * (1.0f / " + std::to_string(n) + ".0f);\n";
        out += loop("const float xh = " + xhat + "; " + at(id) + " = " + s + "_rstd * (" + at(dy) + " * " + at(g) +
                    " - " + sums + "g - xh * " + sums + "x);");
        continue;
      }
      if (callee == sbpk::kernel::bias_grad && isSideInput(k->getOperand(0))) {
        // An m n wide operand: m column slices of n, each an accumulator.
        const int64_t m = numel(k->getOperand(0)) / (rows * n);
        const std::string src = "in" + std::to_string(cast<BlockArgument>(k->getOperand(0)).getArgNumber());
        for (int64_t q = 0; q < m; ++q) {
          std::string acc = "cs" + std::to_string(colSums.size());
          colSums.push_back({k->getResult(0), acc});
          std::string elem = src + "[r * " + std::to_string(m * n) + " + " + std::to_string(q * n) + " + ";
          out += cuda ? loop("const int j = lane + 32 * c; if (j < kN) " + acc + "[c] += sbp::fused::to_float(" +
                             elem + "j]);")
                      : loop(acc + "[j] += " + elem + "j];");
        }
        continue;
      }
      if (callee == sbpk::kernel::bias_grad) { // a column sum of a row value
        std::string acc = "cs" + std::to_string(colSums.size());
        colSums.push_back({k->getResult(0), acc});
        out += loop(at(acc) + " += " + at(in(0)) + ";");
        continue;
      }
      SmallVector<std::string> args;
      for (Value v : k->getOperands())
        args.push_back(at(name[v]));
      FailureOr<std::string> e = scalarExpr(k, args);
      if (failed(e))
        return k.emitOpError("cannot be generated in a rowwise group");
      std::string id = "t" + std::to_string(t++);
      declare(id, out);
      out += loop(at(id) + " = " + *e + ";");
      name[k->getResult(0)] = id;
    }
    return success();
  }

  /// Name of the row-statistics pair of x, emitted the first time it is needed.
  std::string stats(Value x, double eps, std::string &out) {
    auto it = statsOf.find(x);
    if (it != statsOf.end())
      return it->second;
    std::string s = "s" + std::to_string(statsOf.size()), xs = name[x];
    std::string nf = std::to_string(n) + ".0f";
    out += "    float " + s + "_sum = 0.0f;\n" + loop(s + "_sum += " + at(xs) + ";");
    out += "    const float " + s + "_mean = " + rowSum(s + "_sum") + " / " + nf + ";\n";
    out += "    float " + s + "_sq = 0.0f;\n" +
           loop("const float d = " + at(xs) + " - " + s + "_mean; " + s + "_sq += " + mask("d * d") + ";");
    out += "    const float " + s + "_rstd = 1.0f / " + (cuda ? "sqrtf(" : "std::sqrt(") + rowSum(s + "_sq") + " / " +
           nf + " + " + llvm::formatv("{0:e}f", eps).str() + ");\n";
    return statsOf[x] = s;
  }

  std::string at(const std::string &v) const {
    // Column parameters are per-lane arrays too on the GPU; on the CPU a
    // row input is a row pointer, like a column parameter.
    return v + (cuda ? "[c]" : "[j]");
  }
  std::string loop(const std::string &stmt) const {
    if (cuda)
      return "#pragma unroll\n    for (int c = 0; c < kC; ++c) { " + stmt + " }\n";
    return "    for (int64_t j = 0; j < kN; ++j) { " + stmt + " }\n";
  }
  /// Padding lanes (columns >= n) hold zeros in every row input, so sums of
  /// inputs are exact; a value that is not zero there (a deviation) is masked.
  std::string mask(const std::string &e) const {
    return cuda ? "(lane + 32 * c < kN ? " + e + " : 0.0f)" : e;
  }
  std::string rowSum(const std::string &x) const { return cuda ? "sbp::fused::warp_sum(" + x + ")" : x; }
  void declare(const std::string &id, std::string &out) const {
    out += cuda ? "    float " + id + "[kC];\n" : "    float " + id + "[kN];\n";
  }

private:
  sbpk::FusedOp op;
  bool cuda;
  llvm::DenseMap<Value, std::string> statsOf;
};

LogicalResult FusedEmitter::emitRowwise() {
  RowwiseGenerator gen(op, cuda);
  if (failed(gen.analyse()))
    return failure();
  std::string body;
  if (failed(gen.rowCode(body)))
    return failure();
  const int64_t chunks = intAttr(op, "chunks"), n = gen.n, rows = gen.rows;
  const int64_t sums = gen.colSums.size();
  auto yielded = op.getBlock().getTerminator()->getOperands();
  // Which result is a column sum (s-th), which a row.
  SmallVector<int> sumIndex(yielded.size(), -1);
  for (auto [i, v] : llvm::enumerate(yielded))
    for (auto [s, cs] : llvm::enumerate(gen.colSums))
      if (cs.first == v && sumIndex[i] < 0) // its first column slice
        sumIndex[i] = s;

  const bool hasSums = sums > 0;
  const RowMap &map = gen.map;
  SmallVector<std::pair<size_t, Value>> keptResults; // gathers: padded kept rows are zeroed
  for (auto [i, v] : llvm::enumerate(yielded))
    if (gen.keptRows.contains(v))
      keptResults.push_back({i, v});
  const bool keptOutputs = !keptResults.empty();
  // A row result: the whole row, or (a gather) the row's kept row if kept.
  auto storeRow = [&](unsigned i, Value v) -> std::string {
    std::string val = gen.name[v], out = "out" + std::to_string(i);
    if (!gen.keptRows.contains(v))
      return cuda ? "    sbp::fused::store_row<kC>(" + out + " + r * kN, lane, kN, " + val + ");\n"
                  : "    for (int64_t j = 0; j < kN; ++j) " + out + "[r * kN + j] = " + val + "[j];\n";
    std::string at = "((r / kT) * kK + inv[r % kT]) * kN";
    return cuda ? "    if (inv[r % kT] >= 0)\n      sbp::fused::store_row<kC>(" + out + " + " + at + ", lane, kN, " + val +
                      ");\n"
                : "    if (inv[size_t(r % kT)] >= 0)\n      for (int64_t j = 0; j < kN; ++j) " + out + "[" + at +
                      " + j] = " + val + "[j];\n";
  };
  std::string mapDecl;
  if (map.present())
    mapDecl = "  constexpr int64_t kT = " + std::to_string(map.tokens) + ", kK = " + std::to_string(map.kept) + ";\n";

  if (!cuda) {
    os << "void " << name << "(" << hostParams(hasSums) << ") {\n"
       << "  constexpr int64_t kRows = " << rows << ", kN = " << n << ", kChunks = " << chunks
       << ", kPer = (kRows + kChunks - 1) / kChunks;\n"
       << mapDecl;
    if (map.present())
      os << "  const std::vector<int32_t> inv = sbp::fused::keep_map(in" << map.idxArg << ", kK, kT);\n";
    os << "#pragma omp parallel for schedule(static)\n"
       << "  for (int64_t chunk = 0; chunk < kChunks; ++chunk) {\n";
    if (hasSums)
      os << "    constexpr int64_t kSums = " << sums << ";\n"
         << "    double *acc = scratch + chunk * kSums * kN;\n"
         << "    for (int64_t j = 0; j < kSums * kN; ++j) acc[j] = 0.0;\n";
    for (auto [s, cs] : llvm::enumerate(gen.colSums))
      os << "    double *" << cs.second << " = acc + " << s << " * kN;\n";
    os << "    for (int64_t r = chunk * kPer; r < std::min(kRows, (chunk + 1) * kPer); ++r) {\n";
    for (unsigned i : gen.rowInputs)
      os << "    const float *a" << i << " = in" << i << " + r * kN;\n";
    for (unsigned i : gen.colInputs)
      os << "    const float *p" << i << " = in" << i << ";\n";
    os << body;
    for (auto [i, v] : llvm::enumerate(yielded))
      if (sumIndex[i] < 0)
        os << storeRow(i, v);
    os << "    }\n  }\n";
    if (hasSums) { // chunk partials added in chunk order
      os << "  for (int64_t j = 0; j < kN; ++j) {\n";
      for (auto [i, v] : llvm::enumerate(yielded))
        for (int64_t q = 0; sumIndex[i] >= 0 && q < numel(v) / n; ++q)
          os << "    { double s = 0.0; for (int64_t c = 0; c < kChunks; ++c) s += scratch[(c * " << sums << " + "
             << sumIndex[i] + q << ") * kN + j]; out" << i << "[" << q * n << " + j] = float(s); }\n";
      os << "  }\n";
    }
    if (keptOutputs) {
      os << "  const int64_t valid = sbp::fused::valid_count(in" << map.idxArg << ", kK, kT);\n";
      emitPaddedRowZeros(os, map.batch, keptResults, false);
    }
    os << "}\n\n";
    return success();
  }

  // CUDA: 8 warps a block, one row a warp; `chunks` blocks.
  SmallVector<std::string> kparams, largs;
  for (auto [i, v] : llvm::enumerate(op.getInputs())) {
    kparams.push_back(std::string("const ") + ctype(v) + " *__restrict__ in" + std::to_string(i));
    largs.push_back("in" + std::to_string(i));
  }
  for (auto [i, v] : llvm::enumerate(op.getResults()))
    if (sumIndex[i] < 0) {
      kparams.push_back(std::string(ctype(v)) + " *__restrict__ out" + std::to_string(i));
      largs.push_back("out" + std::to_string(i));
    }
  if (hasSums) {
    kparams.push_back("double *__restrict__ partial");
    largs.push_back("scratch");
  }
  os << "__global__ void __launch_bounds__(256) " << name << "_rows(" << llvm::join(kparams, ", ") << ") {\n"
     << "  constexpr int64_t kRows = " << rows << ";\n  constexpr int kN = " << n
     << ", kC = (kN + 31) / 32" << (hasSums ? ", kSums = " + std::to_string(sums) : std::string()) << ";\n"
     << "  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;\n"
     << mapDecl;
  if (map.present())
    os << "  __shared__ int inv[kT];\n  " << (keptOutputs ? "const int valid = " : "")
       << "sbp::fused::keep_map(in" << map.idxArg << ", kK, kT, inv);\n";
  for (unsigned i : gen.colInputs)
    os << "  float p" << i << "[kC];\n  sbp::fused::load_row<kC>(in" << i << ", lane, kN, p" << i << ");\n";
  for (auto &cs : gen.colSums)
    os << "  float " << cs.second << "[kC] = {};\n";
  os << "  for (int64_t r = int64_t(blockIdx.x) * 8 + warp; r < kRows; r += int64_t(gridDim.x) * 8) {\n";
  for (unsigned i : gen.rowInputs)
    os << "    float a" << i << "[kC];\n    sbp::fused::load_row<kC>(in" << i << " + r * kN, lane, kN, a" << i
       << ");\n";
  os << body;
  for (auto [i, v] : llvm::enumerate(yielded))
    if (sumIndex[i] < 0)
      os << storeRow(i, v);
  os << "  }\n";
  emitPaddedRowZeros(os, map.batch, keptResults, true);
  if (hasSums)
    os << "  // The block's column sums: its warps added in order, in double.\n"
       << "  __shared__ double sh[kSums * kN];\n"
       << "  for (int w = 0; w < 8; ++w) {\n    if (warp == w) {\n#pragma unroll\n"
       << "      for (int c = 0; c < kC; ++c) {\n        const int j = lane + 32 * c;\n        if (j < kN) {\n";
  for (auto [s, cs] : llvm::enumerate(gen.colSums))
    os << "          sh[" << s << " * kN + j] = (w ? sh[" << s << " * kN + j] : 0.0) + double(" << cs.second
       << "[c]);\n";
  if (hasSums)
    os << "        }\n      }\n    }\n    __syncthreads();\n  }\n"
       << "  for (int j = threadIdx.x; j < kSums * kN; j += 256)\n"
       << "    partial[int64_t(blockIdx.x) * kSums * kN + j] = sh[j];\n";
  os << "}\n\n";

  if (!hasSums) {
    os << "void " << name << "(" << hostParams(false) << ") {\n"
       << "  " << name << "_rows<<<" << chunks << ", 256, 0, ctx.stream>>>(" << llvm::join(largs, ", ") << ");\n}\n\n";
    return success();
  }
  emitSumsKernel(sums, n, chunks);
  os << "void " << name << "(" << hostParams(true) << ") {\n"
     << "  " << name << "_rows<<<" << chunks << ", 256, 0, ctx.stream>>>(" << llvm::join(largs, ", ") << ");\n";
  emitSumsLaunch(sums, n);
  os << "}\n\n";
  return success();
}

// Finalize: 32 columns x 8 slices of the blocks per block of threads;
// deferred to one launch for all groups at the end of the step when the
// sums are only parameter gradients (sbp-fuse-kernels' `deferred_sums`).
void FusedEmitter::emitSumsKernel(int64_t sums, int64_t n, int64_t chunks) {
  if (op->hasAttr(sbpk::kDeferredSumsAttr))
    return;
  SmallVector<unsigned> sumResults = sbp::columnSumResults(op);
  SmallVector<std::string> sparams = {"const double *__restrict__ partial"}, outs;
  for (unsigned i : sumResults) {
    sparams.push_back("float *__restrict__ out" + std::to_string(i));
    for (int64_t q = 0; q < numel(op.getResult(i)) / n; ++q) // column slices of n
      outs.push_back("out" + std::to_string(i) + (q ? " + " + std::to_string(q * n) : ""));
  }
  os << "__global__ void __launch_bounds__(256) " << name << "_sums(" << llvm::join(sparams, ", ") << ") {\n"
     << "  float *const outs[" << sums << "] = {" << llvm::join(outs, ", ") << "};\n"
     << "  sbp::fused::column_sums_block(partial, " << chunks << ", " << sums * n << ", " << n
     << ", outs, blockIdx.x);\n}\n\n";
}

void FusedEmitter::emitSumsLaunch(int64_t sums, int64_t n) {
  if (op->hasAttr(sbpk::kDeferredSumsAttr))
    return;
  SmallVector<std::string> sargs = {"scratch"};
  for (unsigned i : sbp::columnSumResults(op))
    sargs.push_back("out" + std::to_string(i));
  os << "  " << name << "_sums<<<" << (sums * n + 31) / 32 << ", 256, 0, ctx.stream>>>(" << llvm::join(sargs, ", ")
     << ");\n";
}

//===--- multi_cast -------------------------------------------------------===//

LogicalResult FusedEmitter::emitMultiCast() {
  // Kernel parameters stay under 4 KB: at most 128 tensors a launch.
  constexpr int64_t kPerLaunch = 128;
  const int64_t count = op.getInputs().size();
  os << "struct " << name << "_args {\n  const float *src[" << kPerLaunch << "];\n  __nv_bfloat16 *dst["
     << kPerLaunch << "];\n  int64_t n[" << kPerLaunch << "];\n};\n\n"
     << "__global__ void __launch_bounds__(256) " << name << "_kernel(" << name << "_args a) {\n"
     << "  const int s = blockIdx.y;\n  const int64_t n = a.n[s];\n"
     << "  for (int64_t i = int64_t(blockIdx.x) * 256 + threadIdx.x; i < n; i += int64_t(gridDim.x) * 256)\n"
     << "    a.dst[s][i] = __float2bfloat16_rn(a.src[s][i]);\n}\n\n";
  os << "void " << name << "(" << hostParams(false) << ") {\n";
  for (int64_t base = 0; base < count; base += kPerLaunch) {
    int64_t end = std::min(count, base + kPerLaunch), largest = 0;
    os << "  {\n    " << name << "_args a{};\n";
    for (int64_t i = base; i < end; ++i) {
      Value in = op.getInputs()[i];
      if (isBf16(in) || !isBf16(op.getResult(i)))
        return op.emitOpError("multi_cast copies float32 to bf16");
      largest = std::max(largest, numel(in));
      os << "    a.src[" << i - base << "] = in" << i << "; a.dst[" << i - base << "] = out" << i << "; a.n["
         << i - base << "] = " << numel(in) << ";\n";
    }
    int64_t blocks = std::max<int64_t>(1, std::min<int64_t>((largest + 255) / 256, 128));
    os << "    " << name << "_kernel<<<dim3(" << blocks << ", " << end - base << "), 256, 0, ctx.stream>>>(a);\n  }\n";
  }
  os << "}\n\n";
  return success();
}
} // namespace

SmallVector<unsigned> sbp::columnSumResults(sbpk::FusedOp op) {
  // In body order: dgamma, then dbeta of a layer_norm_grad, the sum of a
  // bias_grad, dgamma of a layer_scale_grad (as the generators number their
  // accumulators).
  SmallVector<Value> sums;
  for (Operation &inner : op.getBlock().without_terminator())
    for (unsigned r : sbpk::columnSumResultNumbers(cast<sbpk::KernelOp>(inner).getCallee()))
      sums.push_back(inner.getResult(r));
  SmallVector<unsigned> results;
  auto yielded = op.getBlock().getTerminator()->getOperands();
  for (Value s : sums)
    for (auto [i, v] : llvm::enumerate(yielded))
      if (v == s)
        results.push_back(i);
  return results;
}

/// The `__constant__` table of the deferred launch's weight gradients: per
/// row-chunk GEMM its partials' arena offset, its gradient's offset in the
/// gradient buffer, its element count and chunk count.
static LogicalResult emitRowChunkTable(llvm::raw_ostream &os, StringRef name, ArrayRef<sbpk::GemmOp> gemms) {
  if (gemms.empty())
    return success();
  os << "__constant__ sbp::fused::RowChunkSum " << name << "_gemms[" << gemms.size() << "] = {\n";
  for (sbpk::GemmOp g : gemms) {
    auto chunks = g->getAttrOfType<IntegerAttr>(sbpk::kRowChunksAttr);
    auto scratch = g->getAttrOfType<IntegerAttr>(sbpk::kScratchOffsetAttr);
    sbpk::GradOutOp grad = sbpk::getGradOutUser(g.getResult());
    if (!chunks || !scratch || !grad)
      return g.emitOpError("row-chunk weight gradient without row_chunks, planned scratch or a gradient to write");
    os << "    {" << scratch.getInt() << ", " << grad.getOffset() << ", " << numel(g.getResult()) << ", "
       << chunks.getInt() << "},  // " << grad.getName() << "\n";
  }
  os << "};\n\n";
  return success();
}

LogicalResult sbp::emitDeferredColumnSums(llvm::raw_ostream &os, StringRef name, ArrayRef<sbpk::FusedOp> groups,
                                          ArrayRef<sbpk::GemmOp> gemms) {
  SmallVector<std::string> params = {"const sbp::cuda::Context &ctx"};
  if (!gemms.empty()) {
    params.push_back("const char *arena");
    params.push_back("float *grads");
  }
  // A group's sums in column slices of its n (the narrowest sum; a wider
  // bias gradient is several slices).
  auto widthOf = [](sbpk::FusedOp op) {
    int64_t n = std::numeric_limits<int64_t>::max();
    for (unsigned i : columnSumResults(op))
      n = std::min(n, cast<RankedTensorType>(op.getResult(i).getType()).getNumElements());
    return n;
  };
  auto slotsOf = [&](sbpk::FusedOp op) {
    SmallVector<std::pair<unsigned, int64_t>> slots; // (sum number, column offset)
    const int64_t n = widthOf(op);
    for (auto [s, i] : llvm::enumerate(columnSumResults(op)))
      for (int64_t q = 0; q < cast<RankedTensorType>(op.getResult(i).getType()).getNumElements() / n; ++q)
        slots.push_back({unsigned(s), q * n});
    return slots;
  };
  size_t most = 1; // column slices of a group, at most
  for (sbpk::FusedOp op : groups)
    most = std::max(most, slotsOf(op).size());
  if (failed(emitRowChunkTable(os, name, gemms)))
    return failure();
  // Kernel parameters: the groups' pointers (a zero-sized array is not C++).
  const size_t slots = std::max<size_t>(groups.size(), 1);
  os << "// " << name << ": the column sums (dgamma, dbeta, bias gradients) of " << groups.size()
     << " groups and the row-chunk sums of " << gemms.size() << " weight gradients, one grid row each, after the "
     << "backward.\n"
     << "struct " << name << "_args {\n  const double *partial[" << slots << "];\n  float *out[" << slots << "]["
     << most << "];\n};\n\n"
     << "__global__ void __launch_bounds__(256) " << name << "_kernel(" << name << "_args a"
     << (gemms.empty() ? "" : ", const char *arena, float *grads") << ") {\n"
     << "  switch (blockIdx.y) {\n";
  int64_t widest = 0;
  std::string fill;
  for (auto [g, constOp] : llvm::enumerate(groups)) {
    sbpk::FusedOp op = constOp;
    SmallVector<unsigned> sums = columnSumResults(op);
    if (sums.empty())
      return op.emitOpError("deferred column sums without a layer_norm_grad, bias_grad or layer_scale_grad");
    const int64_t n = widthOf(op);
    SmallVector<std::pair<unsigned, int64_t>> slots = slotsOf(op);
    int64_t cols = int64_t(slots.size()) * n, chunks = op->getAttrOfType<IntegerAttr>("chunks").getInt();
    widest = std::max(widest, (cols + 31) / 32);
    os << "  case " << g << ":\n    if (blockIdx.x < " << (cols + 31) / 32 << ")\n"
       << "      sbp::fused::column_sums_block(a.partial[" << g << "], " << chunks << ", " << cols << ", " << n
       << ", a.out[" << g << "], blockIdx.x);\n    break;\n";
    params.push_back("const double *partial" + std::to_string(g));
    fill += "  a.partial[" + std::to_string(g) + "] = partial" + std::to_string(g) + ";\n";
    for (unsigned s = 0; s < sums.size(); ++s)
      params.push_back("float *out" + std::to_string(g) + "_" + std::to_string(s));
    for (unsigned q = 0; q < most; ++q) {
      std::string out = "nullptr";
      if (q < slots.size())
        out = "out" + std::to_string(g) + "_" + std::to_string(slots[q].first) +
              (slots[q].second ? " + " + std::to_string(slots[q].second) : "");
      fill += "  a.out[" + std::to_string(g) + "][" + std::to_string(q) + "] = " + out + ";\n";
    }
  }
  // The weight gradients' rows (one call site: a case each made nvcc take 7
  // of the ViT-Tiny trainer's 19 s); their blocks stride over the elements.
  if (!gemms.empty()) {
    widest = std::max<int64_t>(widest, kRowChunkSumBlocks);
    os << "  default: {\n    const sbp::fused::RowChunkSum &r = " << name << "_gemms[blockIdx.y - " << groups.size()
       << "];\n    sbp::fused::row_chunk_sums(reinterpret_cast<const float *>(arena + r.partial), r.chunks, r.count, "
       << "grads + r.grad, blockIdx.x, gridDim.x);\n  }\n";
  }
  os << "  }\n}\n\n"
     << "void " << name << "(" << llvm::join(params, ", ") << ") {\n  " << name << "_args a{};\n" << fill
     << "  " << name << "_kernel<<<dim3(" << widest << ", " << groups.size() + gemms.size()
     << "), 256, 0, ctx.stream>>>(a" << (gemms.empty() ? "" : ", arena, grads") << ");\n}\n\n";
  return success();
}

LogicalResult sbp::emitFusedKernel(llvm::raw_ostream &os, sbpk::FusedOp op, StringRef name, bool cuda) {
  return FusedEmitter(os, op, name, cuda).emit();
}
