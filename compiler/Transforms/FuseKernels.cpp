//===- FuseKernels.cpp - fusion groups of memory-bound kernels ------------===//
//
// Between the GEMMs and the attention kernels a training step runs chains of
// memory-bound kernels: in a ViT block's backward, a LayerNorm recompute, its
// gradient, the residual add and a bf16 copy of the sum each read and write
// the [rows, n] activation. This pass groups such chains into `sbpk.fused`
// ops, each of which the emitters generate as one kernel (one pass over
// memory, the intermediates in registers):
//
//  1. Row-wise groups: a `layer_norm_grad` with the `layer_norm` that
//     recomputes the same rows (sbp-recompute) and the elementwise ops on its
//     dx (the residual add, the bf16 copy), and the `bias_grad` of the dx or
//     the sum (the dy of the projection before: fc2, attn.proj); in the
//     forward, a `layer_norm` with the gathers of its input's kept rows
//     (saved by an SBP branch). Kind `rowwise`.
//  2. Elementwise groups: connected `add`/`cast`/`gelu`/`gelu_grad`/`relu`/
//     `relu_grad` kernels over one element count, producer to consumer and
//     siblings reading the same tensor (GELU recompute + GELU gradient), and
//     the `bias_grad` of a member's result (fc1's dy from the GELU gradient;
//     not in groups with a row map). ConvNeXt's layer scale joins them too:
//     `layer_scale` (x * gamma, gamma a per-column operand: the forward's
//     scale and residual add in one pass) and `layer_scale_grad` (dx = gamma
//     * dy, with dgamma = the column sums of dy * x, and fc2's bias gradient,
//     the column sums of dx, beside it instead of a GEMM epilogue).
//     SBP's row maps join them: `gather_rows` (the kept rows of a
//     [batch, tokens, n] value) and `scatter_add_rows` (kept rows added back),
//     all of one index list; the kernel then runs over the full rows and
//     writes the kept domain at each kept token's row. In a backward that is
//     the scatter of a branch's gradient into the residual stream, the
//     gather of the next branch's rows and both bf16 copies in one pass; in
//     a ConvNeXt block's, the residual add, the gather of the MLP branch's
//     rows and its layer scale's gradient with the column sums over the kept
//     rows (dgamma, fc2's bias gradient). Kind `elementwise`.
//  3. The float32 -> bf16 copies of the parameters: one `multi_cast` group.
//  4. Bias gradients no group took (their dy comes from a library kernel:
//     qkv from the attention backward, the head from the loss gradient, the
//     patch embedding from cls_concat_grad) go into GEMM epilogues:
//     `bias_grad(dy)` beside the weight gradient `gemm(dy^T, x)` (or
//     `gemm(cast(dy)^T, x)` in bf16 trainers) becomes one `gemm_bgrad` kernel
//     that writes dW and the column sums of dy (cuBLASLt's BGRADB epilogue,
//     which runs as a second kernel on the H100: a group's column sum costs
//     no launch when the group's sums are deferred).
//
// Column sums in a group (dgamma, dbeta, bias gradients) are deterministic:
// per fixed row chunk partial sums in arena scratch, added in chunk order.
//
// A group is formed only if it creates no cycle (no op outside the group both
// depends on a member and feeds a member); single kernels stay library calls.
// The graph is then re-sorted topologically: untouched ops keep their order,
// and the producers of a group's inputs move up to just before it.
//
//===----------------------------------------------------------------------===//
#include "Passes.h"
#include "SbpKernel/KernelTable.h"

#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/ADT/StringExtras.h"

namespace sbp {
#define GEN_PASS_DEF_SBPFUSEKERNELS
#include "Passes.h.inc"
} // namespace sbp

using namespace mlir;

namespace {
int64_t numel(Value v) { return cast<RankedTensorType>(v.getType()).getNumElements(); }
int64_t intAttr(Operation *op, StringRef name) { return op->getAttrOfType<IntegerAttr>(name).getInt(); }

sbpk::KernelOp kernelNamed(Operation *op, StringRef callee) {
  auto k = dyn_cast_or_null<sbpk::KernelOp>(op);
  return k && k.getCallee() == callee ? k : sbpk::KernelOp();
}

bool isParamCast(sbpk::KernelOp k) {
  return k.getCallee() == sbpk::kernel::cast && isa_and_nonnull<sbpk::ParamOp>(k->getOperand(0).getDefiningOp());
}

/// Kernels whose every (first) result element depends only on the same
/// element of each operand (all operands of one element count), and on its
/// column's value of a per-column operand (layer scale's gamma).
bool isElementwise(Operation *op) {
  auto k = dyn_cast<sbpk::KernelOp>(op);
  if (!k || isParamCast(k))
    return false;
  static const StringRef kNames[] = {sbpk::kernel::add,       sbpk::kernel::cast,        sbpk::kernel::gelu,
                                     sbpk::kernel::gelu_grad, sbpk::kernel::relu,        sbpk::kernel::relu_grad,
                                     sbpk::kernel::layer_scale, sbpk::kernel::layer_scale_grad};
  if (!llvm::is_contained(kNames, k.getCallee()))
    return false;
  int64_t n = numel(k->getResult(0));
  const int column = sbpk::columnOperand(k.getCallee());
  for (auto [i, v] : llvm::enumerate(k->getOperands()))
    if (int(i) == column ? numel(v) != intAttr(k, "n") || n % numel(v) != 0 : numel(v) != n)
      return false;
  return true;
}

/// Kernels that add column sums in a group: a bias gradient, a layer scale's
/// gradient (dgamma).
bool isColumnSum(Operation *op) {
  return kernelNamed(op, sbpk::kernel::bias_grad) || kernelNamed(op, sbpk::kernel::layer_scale_grad);
}

/// The column count of a member with a column structure (column sums, a
/// per-column operand), else 0.
int64_t columnsOf(Operation *op) {
  auto k = dyn_cast<sbpk::KernelOp>(op);
  if (!k || (k.getCallee() != sbpk::kernel::bias_grad && sbpk::columnOperand(k.getCallee()) < 0))
    return 0;
  return intAttr(k, "n");
}

/// The row map of a `gather_rows` / `scatter_add_rows` kernel: the full
/// [batch, tokens, n] rows and the kept [batch, kept, n] rows of `idx`.
struct KeptRows {
  Value idx;
  int64_t batch = 0, tokens = 0, kept = 0, n = 0;
  int64_t fullNumel() const { return batch * tokens * n; }
  int64_t keptNumel() const { return batch * kept * n; }
  bool operator==(const KeptRows &o) const {
    return idx == o.idx && batch == o.batch && tokens == o.tokens && kept == o.kept && n == o.n;
  }
};

/// The row map of a row-map kernel that may join an elementwise group: fewer
/// kept rows than tokens (so the two domains differ in size) and a token
/// count whose inverse map fits the kernel's shared memory.
std::optional<KeptRows> keptRowsOf(Operation *op) {
  constexpr int64_t kMaxTokens = 8192; // the generated kernel's inverse map: 32 KiB
  auto k = dyn_cast_or_null<sbpk::KernelOp>(op);
  if (!k || (k.getCallee() != sbpk::kernel::gather_rows && k.getCallee() != sbpk::kernel::scatter_add_rows))
    return std::nullopt;
  KeptRows r{k->getOperands().back(), intAttr(k, "batch"), intAttr(k, "tokens"), intAttr(k, "kept"), intAttr(k, "n")};
  if (r.kept >= r.tokens || r.tokens > kMaxTokens)
    return std::nullopt;
  return r;
}

//===--- 4. bias gradients into weight-gradient GEMMs ---------------------===//

/// The weight-gradient GEMM dW = op(a)^T b whose `a` is dy, or a cast of dy,
/// and whose m is dy's feature count: its reduction runs over dy's rows.
sbpk::GemmOp weightGradGemmOf(Value dy, int64_t rows, int64_t n) {
  SmallVector<Value> candidates = {dy};
  for (Operation *user : dy.getUsers())
    if (auto c = kernelNamed(user, sbpk::kernel::cast))
      candidates.push_back(c->getResult(0));
  for (Value a : candidates)
    for (Operation *user : a.getUsers()) {
      auto g = dyn_cast<sbpk::GemmOp>(user);
      if (g && g.getA() == a && g.getTransA() && !g.getCIn() && g.getM() == n && g.getK() == rows &&
          g.getAlpha().convertToDouble() == 1.0 && g.getBeta().convertToDouble() == 0.0)
        return g;
    }
  return {};
}

void fuseBiasGrad(sbpk::KernelOp biasGrad) {
  int64_t rows = intAttr(biasGrad, "rows"), n = intAttr(biasGrad, "n");
  sbpk::GemmOp gemm = weightGradGemmOf(biasGrad->getOperand(0), rows, n);
  if (!gemm)
    return;
  OpBuilder b(gemm);
  auto fused = b.create<sbpk::KernelOp>(gemm.getLoc(),
                                        TypeRange{gemm.getType(), biasGrad->getResult(0).getType()},
                                        b.getStringAttr(sbpk::kernel::gemm_bgrad), ValueRange{gemm.getA(), gemm.getB()});
  for (StringRef attr : {"m", "n", "k", "trans_a", "trans_b", "bwd", "region"})
    if (Attribute a = gemm->getAttr(attr))
      fused->setAttr(attr, a);
  gemm.getResult().replaceAllUsesWith(fused->getResult(0));
  biasGrad->getResult(0).replaceAllUsesWith(fused->getResult(1));
  gemm->erase();
  biasGrad->erase();
}

//===--- legality ---------------------------------------------------------===//

/// True if some op outside `group` depends on a member and feeds a member:
/// outlining the group would then create a cycle. Ops are in topological
/// order, so only the window between the first and last member matters.
bool formsCycle(ArrayRef<Operation *> group) {
  llvm::SmallPtrSet<Operation *, 8> members(group.begin(), group.end());
  Operation *first = group.front(), *last = group.front();
  for (Operation *op : group) {
    if (op->isBeforeInBlock(first))
      first = op;
    if (last->isBeforeInBlock(op))
      last = op;
  }
  llvm::SmallPtrSet<Operation *, 32> downstream; // non-members depending on a member
  for (Operation *op = first; op && op != last->getNextNode(); op = op->getNextNode()) {
    bool dependsOnGroup = false, dependsOnOutside = false;
    for (Value v : op->getOperands()) {
      Operation *def = v.getDefiningOp();
      dependsOnGroup |= def && members.contains(def);
      dependsOnOutside |= def && downstream.contains(def);
    }
    if (members.contains(op)) {
      if (dependsOnOutside)
        return true;
    } else if (dependsOnGroup || dependsOnOutside) {
      downstream.insert(op);
    }
  }
  return false;
}

//===--- 1. row-wise groups -----------------------------------------------===//

/// A CUDA block adds its column sums in shared memory, one double per
/// column slice: a group keeps them under the 48 KiB of static shared memory
/// (with room for the row map's inverse).
constexpr int64_t kMaxSumBytes = 40 * 1024;
bool sumsFit(int64_t slices, int64_t n) { return slices * n * int64_t(sizeof(double)) <= kMaxSumBytes; }

/// The `bias_grad` kernel reading v over `rows` rows of `n` columns that no
/// group has taken, if any: a column sum a group producing v can add up.
sbpk::KernelOp biasGradOf(Value v, int64_t rows, int64_t n, bool bwd, const llvm::DenseSet<Operation *> &taken) {
  for (Operation *user : v.getUsers())
    if (auto k = kernelNamed(user, sbpk::kernel::bias_grad);
        k && !taken.contains(k) && intAttr(k, "rows") == rows && intAttr(k, "n") == n && k->hasAttr("bwd") == bwd)
      return k;
  return {};
}

/// The sole user of v if it is one of `callees`, else null.
sbpk::KernelOp soleUser(Value v, ArrayRef<StringRef> callees) {
  if (!v.hasOneUse())
    return {};
  auto k = dyn_cast<sbpk::KernelOp>(*v.getUsers().begin());
  return k && llvm::is_contained(callees, k.getCallee()) ? k : sbpk::KernelOp();
}

/// The user of v that is a cast, if any.
sbpk::KernelOp castUser(Value v) {
  for (Operation *user : v.getUsers())
    if (auto c = kernelNamed(user, sbpk::kernel::cast))
      return c;
  return {};
}

/// The bias gradient of the layer whose input gradient flows into `grad`:
/// dy' -> gemm(dy', W) -> layer_norm_grad (qkv's dy', from the attention
/// backward, before norm1's backward). No generated group reads dy', so its
/// column sum joins this group (same rows; a width of whole multiples of the
/// group's n, added up as that many column slices): no launch of its own,
/// where a GEMM's BGRADB epilogue costs one.
sbpk::KernelOp upstreamBiasGrad(sbpk::KernelOp grad, const llvm::DenseSet<Operation *> &taken) {
  auto gemm = dyn_cast_or_null<sbpk::GemmOp>(grad->getOperand(2).getDefiningOp());
  // dy' of an elementwise kernel (fc1's, the GELU gradient) is summed by
  // that kernel's group, where it is in registers.
  if (!gemm || gemm.getTransA())
    return {};
  if (Operation *def = gemm.getA().getDefiningOp(); def && isElementwise(def))
    return {};
  const int64_t rows = intAttr(grad, "rows"), n = intAttr(grad, "n");
  for (Operation *user : gemm.getA().getUsers())
    if (auto k = kernelNamed(user, sbpk::kernel::bias_grad);
        k && !taken.contains(k) && intAttr(k, "rows") == rows && intAttr(k, "n") % n == 0 &&
        k->hasAttr("bwd") == grad->hasAttr("bwd"))
      return k;
  return {};
}

SmallVector<Operation *> rowwiseGroup(sbpk::KernelOp grad, const llvm::DenseSet<Operation *> &taken) {
  Value x = grad->getOperand(0), gamma = grad->getOperand(1);
  SmallVector<Operation *> group = {grad};
  // The recompute of the same normalised rows (same x, gamma, eps).
  for (Operation *user : x.getUsers())
    if (auto ln = kernelNamed(user, sbpk::kernel::layer_norm);
        ln && !taken.contains(ln) && ln->getOperand(1) == gamma && ln->getAttr("eps") == grad->getAttr("eps") &&
        ln->hasAttr("bwd") == grad->hasAttr("bwd")) {
      group.push_back(ln);
      break;
    }
  // The epilogue on dx: the residual add, then the bf16 copy of the sum.
  Value tail = grad->getResult(0);
  if (auto add = soleUser(tail, {sbpk::kernel::add}); add && !taken.contains(add) && isElementwise(add)) {
    group.push_back(add);
    tail = add->getResult(0);
  }
  if (auto c = castUser(tail); c && !taken.contains(c))
    group.push_back(c);
  // Drop from the end until legal (the epilogue first, then the recompute).
  while (group.size() > 1 && formsCycle(group))
    group.pop_back();
  // The bias gradient of the sum, else of dx: the dy of the projection
  // before. It only reads a member, so it never makes the group illegal.
  SmallVector<Value> dys;
  for (Operation *m : group)
    if (kernelNamed(m, sbpk::kernel::add))
      dys.push_back(m->getResult(0));
  dys.push_back(grad->getResult(0));
  const int64_t n = intAttr(grad, "n");
  int64_t slices = 2; // dgamma, dbeta
  for (Value v : dys)
    if (auto bg = biasGradOf(v, intAttr(grad, "rows"), n, grad->hasAttr("bwd"), taken); bg && sumsFit(slices + 1, n)) {
      group.push_back(bg);
      ++slices;
      break;
    }
  if (auto bg = upstreamBiasGrad(grad, taken); bg && sumsFit(slices + intAttr(bg, "n") / n, n)) {
    group.push_back(bg);
    if (formsCycle(group))
      group.pop_back();
  }
  return group;
}

/// A forward LayerNorm with the gathers of the kept rows of its input (the
/// rows an SBP branch saves for its backward): one pass over the rows.
SmallVector<Operation *> forwardRowwiseGroup(sbpk::KernelOp ln, const llvm::DenseSet<Operation *> &taken) {
  SmallVector<Operation *> group = {ln};
  const int64_t rows = intAttr(ln, "rows"), n = intAttr(ln, "n");
  std::optional<KeptRows> map;
  for (Operation *user : ln->getOperand(0).getUsers()) {
    std::optional<KeptRows> r = keptRowsOf(user);
    if (!r || taken.contains(user) || !kernelNamed(user, sbpk::kernel::gather_rows) ||
        r->batch * r->tokens != rows || r->n != n || (map && !(*map == *r)) || user->hasAttr("bwd") != ln->hasAttr("bwd"))
      continue;
    group.push_back(user);
    if (formsCycle(group))
      group.pop_back();
    else
      map = r;
  }
  return group;
}

//===--- 2. elementwise groups --------------------------------------------===//

bool hasColumnSum(ArrayRef<Operation *> group) { return llvm::any_of(group, isColumnSum); }

/// The one column count of a group's members with a column structure (they
/// share the sums' layout and the column index), 0 if none has one.
int64_t groupColumns(ArrayRef<Operation *> group) {
  for (Operation *op : group)
    if (int64_t c = columnsOf(op))
      return c;
  return 0;
}

/// The one row map of a group's gather/scatter members, if any.
std::optional<KeptRows> groupRows(ArrayRef<Operation *> group) {
  for (Operation *op : group)
    if (std::optional<KeptRows> r = keptRowsOf(op))
      return r;
  return std::nullopt;
}

/// Whether a column sum over `elements` values of `n` columns, the
/// `sumsBefore`+1-th of its group, fits a group with the row map `rows`: it
/// sums the full rows or the kept rows of the map (the kernel then runs over
/// the full rows and adds a kept value at its token's kept row), and the
/// map's inverse (an int per token) fits in shared memory beside the sums.
bool sumFitsRowMap(const KeptRows &rows, int64_t elements, int64_t n, int64_t sumsBefore) {
  constexpr int64_t kSharedBytes = 46 * 1024;
  return (elements == rows.fullNumel() || elements == rows.keptNumel()) && n == rows.n &&
         rows.tokens * int64_t(sizeof(int32_t)) + (sumsBefore + 1) * n * int64_t(sizeof(double)) <= kSharedBytes;
}

/// The elements a column-sum member sums: its rows x n.
int64_t summedElements(Operation *op) { return intAttr(op, "rows") * intAttr(op, "n"); }

/// The element count a group runs over: a row map's full rows, else the
/// seed's result.
int64_t fullNumel(Operation *seed) {
  if (std::optional<KeptRows> r = keptRowsOf(seed))
    return r->fullNumel();
  return numel(seed->getResult(0));
}

/// Grows a group from `seed` over consumers and siblings of one element count
/// (or of the kept rows of the group's row map).
SmallVector<Operation *> elementwiseGroup(Operation *seed, const llvm::DenseSet<Operation *> &taken) {
  constexpr size_t kMaxOps = 8; // keeps the generated kernels small
  SmallVector<Operation *> group = {seed};
  const int64_t n = fullNumel(seed);
  std::optional<KeptRows> rows = groupRows(group);
  // Forward and backward ops never share a group: a group runs at one
  // point of the step, and a forward member would keep backward values alive.
  auto candidate = [&](Operation *op) {
    if (!op || taken.contains(op) || llvm::is_contained(group, op) || op->getBlock() != seed->getBlock() ||
        op->hasAttr("bwd") != seed->hasAttr("bwd"))
      return false;
    if (std::optional<KeptRows> r = keptRowsOf(op)) {
      // The group's column sums must fit the map (sums over full or kept rows).
      int64_t sumsBefore = 0;
      for (Operation *m : group)
        if (isColumnSum(m) && !sumFitsRowMap(*r, summedElements(m), intAttr(m, "n"), sumsBefore++))
          return false;
      return r->fullNumel() == n && (!rows || *rows == *r) && (!groupColumns(group) || groupColumns(group) == r->n);
    }
    // Members with a column structure share one column count (the sums'
    // layout, the column of an element); with a row map, the map's.
    if (int64_t c = columnsOf(op); c && ((groupColumns(group) && groupColumns(group) != c) || (rows && rows->n != c)))
      return false;
    // Column sums (a bias gradient of a member's result, a layer scale's
    // gradient): rows x n = the group's elements, or with a row map its full
    // or kept rows.
    if (isColumnSum(op)) {
      auto k = cast<sbpk::KernelOp>(op);
      const int64_t sumsBefore = llvm::count_if(group, isColumnSum);
      if (rows ? !sumFitsRowMap(*rows, summedElements(k), intAttr(k, "n"), sumsBefore)
               : summedElements(k) != n || !sumsFit(1 + sumsBefore, intAttr(k, "n")))
        return false;
      if (kernelNamed(op, sbpk::kernel::bias_grad))
        return llvm::is_contained(group, k->getOperand(0).getDefiningOp());
    }
    if (!isElementwise(op))
      return false;
    int64_t m = numel(op->getResult(0));
    return m == n || (rows && m == rows->keptNumel());
  };
  bool grew = true;
  while (grew && group.size() < kMaxOps) {
    grew = false;
    llvm::SetVector<Operation *> next;
    for (Operation *member : group) {
      for (Value r : member->getResults()) // consumers
        for (Operation *user : r.getUsers())
          if (candidate(user))
            next.insert(user);
      // Siblings reading the same tensor; not through a row map's index
      // list, which every gather of a mask group reads.
      std::optional<KeptRows> memberRows = keptRowsOf(member);
      for (Value v : member->getOperands())
        if (!memberRows || v != memberRows->idx)
          for (Operation *user : v.getUsers())
            if (candidate(user))
              next.insert(user);
    }
    for (Operation *op : next) {
      if (group.size() >= kMaxOps)
        break;
      if (!candidate(op)) // a row map joined since: another one no longer fits
        continue;
      group.push_back(op);
      if (formsCycle(group)) {
        group.pop_back();
        continue;
      }
      rows = groupRows(group);
      grew = true;
    }
  }
  return group;
}

//===--- outlining --------------------------------------------------------===//

/// Inductor-style name: fused_<callees in order>.
std::string groupName(ArrayRef<Operation *> ops) {
  SmallVector<std::string> parts = {"fused"};
  for (Operation *op : ops) {
    std::string callee = cast<sbpk::KernelOp>(op).getCallee().str();
    if (!llvm::is_contained(parts, callee))
      parts.push_back(callee);
  }
  return llvm::join(parts, "_");
}

/// Moves `ops` (in block order) into one sbpk.fused op placed at the first.
sbpk::FusedOp outline(SmallVector<Operation *> ops, StringRef kind, StringRef name) {
  llvm::sort(ops, [](Operation *a, Operation *b) { return a->isBeforeInBlock(b); });
  llvm::SmallPtrSet<Operation *, 8> members(ops.begin(), ops.end());
  llvm::SetVector<Value> inputs;
  SmallVector<Value> outputs;
  for (Operation *op : ops) {
    for (Value v : op->getOperands())
      if (!members.contains(v.getDefiningOp()))
        inputs.insert(v);
    for (Value r : op->getResults())
      if (llvm::any_of(r.getUsers(), [&](Operation *u) { return !members.contains(u); }))
        outputs.push_back(r);
  }
  // A group nothing outside reads (a model's dead branch, e.g. a block whose
  // output is unused) still returns its last value: the emitters size the
  // kernel by its results, and the dead value costs a buffer, not a crash.
  if (outputs.empty())
    for (Operation *op : llvm::reverse(ops))
      if (op->getNumResults() > 0) {
        outputs.push_back(op->getResult(0));
        break;
      }
  OpBuilder b(ops.front());
  SmallVector<Type> resultTypes;
  for (Value v : outputs)
    resultTypes.push_back(v.getType());
  auto fused = b.create<sbpk::FusedOp>(ops.front()->getLoc(), resultTypes, b.getStringAttr(name),
                                       b.getStringAttr(kind), inputs.getArrayRef());
  // The group is backward if its members are; its region is the first's,
  // not a bias gradient's (of the layer before: another region).
  if (llvm::all_of(ops, [](Operation *op) { return op->hasAttr("bwd"); }))
    fused->setAttr("bwd", b.getUnitAttr());
  for (Operation *op : ops)
    if (Attribute r = op->getAttr("region"); r && !kernelNamed(op, sbpk::kernel::bias_grad)) {
      fused->setAttr("region", r);
      break;
    }
  Block *body = b.createBlock(&fused.getBody());
  IRMapping map;
  for (Value v : inputs)
    map.map(v, body->addArgument(v.getType(), v.getLoc()));
  b.setInsertionPointToEnd(body);
  for (Operation *op : ops)
    b.clone(*op, map);
  SmallVector<Value> yielded;
  for (Value v : outputs)
    yielded.push_back(map.lookup(v));
  b.create<sbpk::YieldOp>(fused.getLoc(), yielded);
  for (auto [v, r] : llvm::zip(outputs, fused.getResults()))
    v.replaceAllUsesWith(r);
  for (Operation *op : llvm::reverse(ops))
    op->erase();
  return fused;
}

/// Row chunks of a group with column sums: one per 64 rows, at most 512 (the
/// partial sums live in scratch, a row of each per chunk), and at least 256
/// (of 16 or more rows) where there are 4096 rows or more, so that few wide
/// rows still fill the GPU: the GELU gradient of ConvNeXt-T's last stage,
/// 6272 rows of 3072, ran as 98 blocks at a fifth of the memory bandwidth.
int64_t columnSumChunks(int64_t rows) {
  constexpr int64_t kFill = 256, kMinRows = 16;
  const int64_t chunks = (rows + 63) / 64;
  if (rows >= kFill * kMinRows)
    return std::min<int64_t>(std::max(chunks, kFill), 512);
  return std::max<int64_t>(chunks, 1);
}

/// The column sums of a group (dgamma, dbeta of a `layer_norm_grad`, a
/// `bias_grad`) are reduced over its rows in `chunks` fixed row ranges (a GPU
/// block or a CPU task each), whose partial sums (double) live in arena
/// scratch planned by sbp-plan-memory; a second pass adds them in chunk
/// order, so the result never depends on timing. Rows and columns are the
/// group's LayerNorm's, else its first column sum's.
void planColumnSums(sbpk::FusedOp fused) {
  int64_t rows = 0, n = 0, sums = 0;
  SmallVector<Value> sumValues; // inside the body
  for (Operation &op : fused.getBlock()) {
    auto k = dyn_cast<sbpk::KernelOp>(op);
    if (!k)
      continue;
    if (k.getCallee() == sbpk::kernel::layer_norm || k.getCallee() == sbpk::kernel::layer_norm_grad ||
        (isColumnSum(k) && rows == 0)) {
      rows = intAttr(k, "rows");
      n = intAttr(k, "n");
    }
    for (unsigned r : sbpk::columnSumResultNumbers(k.getCallee()))
      sumValues.push_back(k->getResult(r));
  }
  // With a row map the kernel runs over the map's full rows.
  for (Operation &op : fused.getBlock())
    if (std::optional<KeptRows> r = keptRowsOf(&op))
      rows = r->batch * r->tokens;
  // In column slices of n (a wider bias gradient takes several).
  for (Value v : sumValues)
    sums += numel(v) / std::max<int64_t>(n, 1);
  Builder b(fused);
  // Without column sums the CPU loop still runs over fixed row chunks.
  const int64_t chunks = columnSumChunks(rows);
  fused->setAttr("chunks", b.getI64IntegerAttr(chunks));
  if (sums == 0)
    return;
  fused->setAttr(sbpk::kScratchBytesAttr, b.getI64IntegerAttr(chunks * sums * n * int64_t(sizeof(double))));
  // Sums that only become parameter gradients can be finished after the
  // backward, all groups in one launch (the partials stay planned).
  Operation *yield = fused.getBlock().getTerminator();
  bool onlyGradients = true;
  for (OpOperand &use : yield->getOpOperands())
    if (llvm::is_contained(sumValues, use.get()))
      onlyGradients &= llvm::all_of(fused.getResult(use.getOperandNumber()).getUsers(),
                                    [](Operation *u) { return isa<sbpk::GradOutOp>(u); });
  if (onlyGradients)
    fused->setAttr(sbpk::kDeferredSumsAttr, b.getUnitAttr());
}

/// Restores a topological order after outlining placed a group at its first
/// member (whose inputs may be defined after it): ops keep their order, and
/// one that reads a value defined later has that value's producers (depth
/// first) moved to just before it. mlir::sortTopologically would instead
/// move every ready op ahead of the group, in a backward the gathers of saved
/// forward values too, which then live (in arena memory) from the start of
/// the backward instead of from their block.
void sortPullingProducers(Block &block) {
  llvm::DenseSet<Operation *> visited;
  SmallVector<Operation *> order;
  // Iterative depth-first post-order: (op, whether its producers are placed).
  SmallVector<std::pair<Operation *, bool>> stack;
  for (Operation &root : block) {
    stack.push_back({&root, false});
    while (!stack.empty()) {
      auto [op, ready] = stack.pop_back_val();
      if (ready) {
        order.push_back(op);
        continue;
      }
      if (!visited.insert(op).second)
        continue;
      stack.push_back({op, true});
      // Producers in this block, of the op's operands and of its body's.
      SmallVector<Operation *> producers;
      op->walk([&](Operation *inner) {
        for (Value v : inner->getOperands())
          if (Operation *def = v.getDefiningOp(); def && def->getBlock() == &block && !visited.contains(def))
            producers.push_back(def);
      });
      for (Operation *def : llvm::reverse(producers)) // the first operand's placed first
        stack.push_back({def, false});
    }
  }
  for (Operation *op : order)
    op->moveBefore(&block, block.end());
}

/// Outlines one group and restores the topological order, so that the
/// legality of the next group is judged on the graph as it now is.
void outlineAndSort(Block &block, SmallVector<Operation *> ops, StringRef kind, llvm::DenseSet<Operation *> &taken) {
  llvm::sort(ops, [](Operation *a, Operation *b) { return a->isBeforeInBlock(b); });
  taken.insert(ops.begin(), ops.end());
  // Asked before outlining, which erases the ops.
  const bool sums = kind == "rowwise" || hasColumnSum(ops);
  sbpk::FusedOp fused =
      outline(ops, kind, kind == "multi_cast" ? std::string("fused_cast_params") : groupName(ops));
  if (sums)
    planColumnSums(fused);
  sortPullingProducers(block);
}

void fuseGraph(sbpk::GraphOp graph) {
  Block &block = graph.getBlock();

  // `taken` holds the members of outlined groups (erased ops: never
  // dereferenced once in it).
  llvm::DenseSet<Operation *> taken;
  SmallVector<Operation *> anchors, elementwise, casts;
  SmallVector<Operation *> forwardNorms, biasGrads;
  for (auto k : block.getOps<sbpk::KernelOp>()) {
    if (k.getCallee() == sbpk::kernel::bias_grad)
      biasGrads.push_back(k);
    if (k.getCallee() == sbpk::kernel::layer_norm_grad)
      anchors.push_back(k);
    if (k.getCallee() == sbpk::kernel::layer_norm && !k->hasAttr("bwd"))
      forwardNorms.push_back(k);
    if (isParamCast(k))
      casts.push_back(k);
    else if (isElementwise(k) || keptRowsOf(k))
      elementwise.push_back(k);
  }
  for (Operation *anchor : anchors)
    if (SmallVector<Operation *> g = rowwiseGroup(cast<sbpk::KernelOp>(anchor), taken); g.size() > 1)
      outlineAndSort(block, g, "rowwise", taken);
  for (Operation *ln : forwardNorms)
    if (SmallVector<Operation *> g = forwardRowwiseGroup(cast<sbpk::KernelOp>(ln), taken); g.size() > 1)
      outlineAndSort(block, g, "rowwise", taken);
  for (Operation *seed : elementwise)
    if (!taken.contains(seed))
      if (SmallVector<Operation *> g = elementwiseGroup(seed, taken); g.size() > 1)
        outlineAndSort(block, g, "elementwise", taken);
  if (casts.size() > 1)
    outlineAndSort(block, casts, "multi_cast", taken);
  for (Operation *bg : biasGrads)
    if (!taken.contains(bg))
      fuseBiasGrad(cast<sbpk::KernelOp>(bg));
  // gemm_bgrad stands at the GEMM; a reader of the bias gradient may come
  // before it.
  sortPullingProducers(block);
}

struct FuseKernelsPass : sbp::impl::SbpFuseKernelsBase<FuseKernelsPass> {
  void runOnOperation() override {
    for (sbpk::GraphOp graph : getOperation().getOps<sbpk::GraphOp>())
      fuseGraph(graph);
  }
};
} // namespace
