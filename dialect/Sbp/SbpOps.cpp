//===- SbpOps.cpp - verifiers and gradient rules of the sbp ops -----------===//
//
// Each op's shape rules (verify) and reverse-mode rule (buildGradient) live
// here, next to each other, so that an op's whole semantics is in one place.
//
//===----------------------------------------------------------------------===//
#include "Sbp/SbpOps.h"
#include "sbp/mask_rules.h"

#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"
#include "llvm/Support/FormatVariadic.h"

#include <algorithm>
#include <cmath>

using namespace mlir;
using namespace sbp;

#include "Sbp/SbpDialect.cpp.inc"
#include "Sbp/SbpEnums.cpp.inc"
#define GET_ATTRDEF_CLASSES
#include "Sbp/SbpAttrs.cpp.inc"
#include "Sbp/SbpInterfaces.cpp.inc"
#define GET_OP_CLASSES
#include "Sbp/SbpOps.cpp.inc"

void SbpDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "Sbp/SbpOps.cpp.inc"
      >();
  addAttributes<
#define GET_ATTRDEF_LIST
#include "Sbp/SbpAttrs.cpp.inc"
      >();
}

//===----------------------------------------------------------------------===//
// Helpers
//===----------------------------------------------------------------------===//

Type sbp::withRowCount(Type type, int64_t rows) {
  auto t = dyn_cast<RankedTensorType>(type);
  if (!t || t.getRank() != 3)
    return type;
  return RankedTensorType::get({t.getDimSize(0), rows, t.getDimSize(2)}, t.getElementType());
}

bool sbp::isTokenTensor(Type type) {
  auto t = dyn_cast<RankedTensorType>(type);
  return t && t.getRank() == 3;
}

int64_t sbp::linearInFeatures(ArrayRef<int64_t> w) {
  int64_t k = 1;
  for (int64_t d : w.drop_front())
    k *= d;
  return k;
}

static ArrayRef<int64_t> shapeOf(Value v) { return cast<RankedTensorType>(v.getType()).getShape(); }

static std::string shapeStr(ArrayRef<int64_t> s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i)
    out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

/// Emits "<what> must be <expected>, got <actual>" unless the shapes agree.
static LogicalResult expectShape(Operation *op, StringRef what, ArrayRef<int64_t> actual,
                                 ArrayRef<int64_t> expected) {
  if (actual == expected)
    return success();
  return op->emitOpError() << what << " must have shape " << shapeStr(expected) << ", got "
                           << shapeStr(actual);
}

/// All dims but the last, followed by `last`.
static SmallVector<int64_t> replaceLast(ArrayRef<int64_t> s, int64_t last) {
  SmallVector<int64_t> r(s.begin(), s.end());
  r.back() = last;
  return r;
}

/// Emits "<what> must have rank >= <min>" for a tensor of smaller rank: a
/// verifier checks this before it reads a dimension (`back()`, `[0]`).
static LogicalResult expectMinRank(Operation *op, StringRef what, Value v, size_t minRank) {
  if (shapeOf(v).size() >= minRank)
    return success();
  return op->emitOpError() << what << " must have rank >= " << minRank << ", got " << v.getType();
}

/// Whether a group masks token positions (grid, random), not heads or samples.
static bool masksTokens(MaskGroupOp group) {
  return group.getKind() == MaskKind::grid || group.getKind() == MaskKind::random;
}

static LogicalResult verifyKeep(Operation *op, Value keep) {
  if (shapeOf(keep).size() != 1)
    return op->emitOpError("keep indices must be [K]");
  return success();
}

//===----------------------------------------------------------------------===//
// Attributes
//===----------------------------------------------------------------------===//

LogicalResult InitAttr::verify(function_ref<InFlightDiagnostic()> emitError, InitKind,
                               llvm::APFloat scaleAttr) {
  double scale = scaleAttr.convertToDouble();
  if (!(scale >= 0.0) || !std::isfinite(scale))
    return emitError() << "initializer scale must be finite and >= 0, got " << scale;
  return success();
}

static LogicalResult checkPositive(function_ref<InFlightDiagnostic()> emitError, StringRef name,
                                   double v, bool allowZero) {
  if (std::isfinite(v) && (allowZero ? v >= 0 : v > 0))
    return success();
  return emitError() << name << " must be " << (allowZero ? ">= 0" : "> 0") << ", got " << v;
}

LogicalResult SgdAttr::verify(function_ref<InFlightDiagnostic()> emitError, llvm::APFloat lrA,
                              llvm::APFloat momentumA, llvm::APFloat wdA, bool) {
  double lr = lrA.convertToDouble(), momentum = momentumA.convertToDouble(), wd = wdA.convertToDouble();
  if (failed(checkPositive(emitError, "lr", lr, false)) ||
      failed(checkPositive(emitError, "weight_decay", wd, true)))
    return failure();
  if (!(momentum >= 0 && momentum < 1))
    return emitError() << "momentum must be in [0, 1), got " << momentum;
  return success();
}

LogicalResult AdamWAttr::verify(function_ref<InFlightDiagnostic()> emitError, llvm::APFloat lrA,
                                llvm::APFloat beta1A, llvm::APFloat beta2A, llvm::APFloat epsA,
                                llvm::APFloat wdA) {
  double lr = lrA.convertToDouble(), beta1 = beta1A.convertToDouble(),
         beta2 = beta2A.convertToDouble(), eps = epsA.convertToDouble(), wd = wdA.convertToDouble();
  if (failed(checkPositive(emitError, "lr", lr, false)) ||
      failed(checkPositive(emitError, "eps", eps, false)) ||
      failed(checkPositive(emitError, "weight_decay", wd, true)))
    return failure();
  for (auto [name, b] : {std::pair{"beta1", beta1}, std::pair{"beta2", beta2}})
    if (!(b >= 0 && b < 1))
      return emitError() << name << " must be in [0, 1), got " << b;
  return success();
}

//===----------------------------------------------------------------------===//
// Structure ops
//===----------------------------------------------------------------------===//

OutputOp ModelOp::getOutput() { return cast<OutputOp>(getBlock().getTerminator()); }

int64_t ModelOp::getBatchSize() {
  for (auto in : getBlock().getOps<InputOp>())
    return shapeOf(in.getResult())[0];
  return 0;
}

LogicalResult ModelOp::verify() {
  llvm::StringMap<Operation *> params;
  InputOp images, labels;
  for (Operation &op : getBlock()) {
    if (auto p = dyn_cast<ParamOp>(op)) {
      auto [it, fresh] = params.try_emplace(p.getName(), &op);
      if (!fresh)
        return (p.emitOpError("redefines parameter '") << p.getName() << "'")
                   .attachNote(it->second->getLoc())
               << "first defined here";
    } else if (auto in = dyn_cast<InputOp>(op)) {
      // Inputs are checked first: the batch size below is read off them.
      if (failed(in.verify()))
        return failure();
      InputOp &slot = in.getName() == "images" ? images : labels;
      if (slot)
        return in.emitOpError("redefines input '") << in.getName() << "'";
      slot = in;
    }
  }
  if (!images || !labels)
    return emitOpError("needs both inputs: sbp.input \"images\" and sbp.input \"labels\"");
  int64_t batch = shapeOf(images.getResult())[0];
  if (shapeOf(labels.getResult())[0] != batch)
    return labels.emitOpError("labels must have the batch size of the images (") << batch << ")";
  // Every activation carries the static batch size in its first dimension.
  WalkResult walk = getBody().walk([&](Operation *op) {
    // Parameters, masks and gradients of parameters are not activations.
    if (isa<ParamOp, KeepIndicesOp>(op) || op->hasAttr(kBackwardAttr) || op->getNumResults() == 0)
      return WalkResult::advance();
    for (Type t : op->getResultTypes()) {
      auto rt = dyn_cast<RankedTensorType>(t);
      if (rt && rt.getRank() > 0 && rt.getDimSize(0) != batch) {
        op->emitOpError("result must have the batch size ") << batch << " as its first dimension, got " << t;
        return WalkResult::interrupt();
      }
    }
    return WalkResult::advance();
  });
  return failure(walk.wasInterrupted());
}

LogicalResult OutputOp::verify() {
  auto logits = shapeOf(getLogits());
  if (logits.size() != 2)
    return emitOpError("logits must be [batch, classes], got ") << getLogits().getType();
  if (!getLoss().getDefiningOp<CrossEntropyOp>())
    return emitOpError("the loss must be the result of sbp.cross_entropy");
  return success();
}

LogicalResult MaskGroupOp::verify() {
  double r = getKeep().convertToDouble();
  if (!(r > 0.0 && r <= 1.0))
    return emitOpError("keep ratio must be in (0, 1], got ") << r;
  ArrayRef<int64_t> grid = getGrid();
  if (grid.size() != 2 || grid[0] <= 0 || grid[1] <= 0)
    return emitOpError("grid must be two positive sizes [H, W], got ") << shapeStr(grid);
  int64_t prefix = static_cast<int64_t>(getPrefix());
  if (prefix < 0)
    return emitOpError("prefix must be >= 0");
  // Token indices are i32 in the keep arrays and the runtime's mask draws.
  if (grid[1] > kMaxTokens / grid[0] || prefix > kMaxTokens - grid[0] * grid[1])
    return emitOpError("prefix + H * W must be at most ") << kMaxTokens << " tokens, got prefix " << prefix
                                                           << " and grid " << shapeStr(grid);
  if (getShared() && getKind() != MaskKind::heads)
    return emitOpError("`shared` applies to heads groups (a token group is always one draw shared by "
                       "its regions), got a ")
           << stringifyMaskKind(getKind()) << " group";
  if (getKind() == MaskKind::heads && (grid[0] != 1 || getPrefix() != 0))
    return emitOpError("a heads mask needs grid [1, heads] and no prefix, got ")
           << shapeStr(grid) << " prefix " << getPrefix();
  if (getKind() == MaskKind::samples && (grid[0] != 1 || getPrefix() != 0))
    return emitOpError("a samples mask needs grid [1, batch] and no prefix, got ")
           << shapeStr(grid) << " prefix " << getPrefix();
  if (failed(verifyCell()))
    return failure();
  // The ratio's rules apply on the grid the mask is drawn on.
  std::array<int64_t, 2> drawn = getDrawnGrid();
  std::string drawnText = shapeStr(drawn) + (getCell() != 1 ? " drawn" : "");
  if (getKind() == MaskKind::random &&
      sbp_random_drop_count(static_cast<float>(r), drawn[0] * drawn[1]) == drawn[0] * drawn[1])
    return emitOpError("keep ratio ") << r << " keeps no token of the " << drawnText << " grid";
  // A grid mask keeps the positions of one residue of (i + j) mod s; the
  // residues that occur are 0 .. H + W - 2, so a larger stride keeps nothing
  // on some steps.
  if (getKind() == MaskKind::grid && r < 1.0 && sbp_grid_keeps_matching(static_cast<float>(r)) &&
      sbp_grid_stride(static_cast<float>(r)) > drawn[0] + drawn[1] - 1)
    return emitOpError("keep ratio ") << r << " gives a grid stride of " << sbp_grid_stride(static_cast<float>(r))
           << ", larger than the " << drawnText << " grid's " << drawn[0] + drawn[1] - 1
           << " diagonals: some steps would keep no token";
  return success();
}

/// A derived group (cell N > 1) is drawn on [H/N, W/N] and repeated over N x N
/// cells of its grid.
LogicalResult MaskGroupOp::verifyCell() {
  int64_t cell = static_cast<int64_t>(getCell());
  ArrayRef<int64_t> grid = getGrid();
  if (cell < 1)
    return emitOpError("cell must be >= 1, got ") << cell;
  if (cell == 1)
    return success();
  if (getKind() == MaskKind::heads)
    return emitOpError("a heads mask has no cell: its positions are attention heads, not a token grid");
  if (getKind() == MaskKind::samples)
    return emitOpError("a samples mask has no cell: its positions are the batch's samples, not a token grid");
  if (grid[0] % cell || grid[1] % cell)
    return emitOpError("cell ") << cell << " must divide the grid " << shapeStr(grid);
  if (getPrefix() != 0)
    return emitOpError("a derived group (cell ")
           << cell << ") has no prefix: prefix tokens have no position on the drawn grid to repeat, got prefix "
           << getPrefix();
  return success();
}

std::array<int64_t, 2> MaskGroupOp::getDrawnGrid() {
  int64_t cell = std::max<int64_t>(static_cast<int64_t>(getCell()), 1);
  return {getGrid()[0] / cell, getGrid()[1] / cell};
}

bool MaskGroupOp::sharesDrawWith(MaskGroupOp other) {
  // As MaskSpec::sharesDrawWith in the runtime (Masks.cpp): heads and
  // samples groups are each their own draw.
  auto ownDraw = [](MaskKind k) { return k == MaskKind::heads || k == MaskKind::samples; };
  if (ownDraw(getKind()) || ownDraw(other.getKind()))
    return false;
  return getKind() == other.getKind() && static_cast<float>(getKeep().convertToDouble()) ==
                                             static_cast<float>(other.getKeep().convertToDouble()) &&
         getDrawnGrid() == other.getDrawnGrid();
}

int64_t MaskGroupOp::getNumTokens() {
  return static_cast<int64_t>(getPrefix()) + getGrid()[0] * getGrid()[1];
}

/// The fewest and the most positions of the drawn grid any mask of this
/// group keeps, with the runtime's rules (sbp/mask_rules.h) from the keep
/// ratio as a float, the form the trainer descriptor carries. O(1): grid
/// masks count their kept diagonals in closed form.
static std::pair<int64_t, int64_t> drawnKeptRange(MaskGroupOp group) {
  float r = static_cast<float>(group.getKeep().convertToDouble());
  int64_t h = group.getDrawnGrid()[0], w = group.getDrawnGrid()[1], n = h * w;
  if (r >= 1.0f)
    return {n, n};
  if (group.getKind() == MaskKind::heads || group.getKind() == MaskKind::samples)
    return {0, n}; // each head (sample) independently: anything from none to all
  if (group.getKind() == MaskKind::random) {
    int64_t kept = n - sbp_random_drop_count(r, static_cast<int32_t>(n));
    return {kept, kept};
  }
  int64_t s = sbp_grid_stride(r);
  if (s < 1) // not a valid group (its verifier rejects the ratio)
    return {0, n};
  int64_t most = sbp_grid_matches_max(h, w, s), fewest = sbp_grid_matches_min(h, w, s);
  if (sbp_grid_keeps_matching(r))
    return {fewest, most};
  return {n - most, n - fewest};
}

/// The fewest and the most grid positions (prefix excluded) any mask of this
/// group keeps: a derived group keeps each kept drawn position's whole cell.
static std::pair<int64_t, int64_t> keptRange(MaskGroupOp group) {
  std::pair<int64_t, int64_t> drawn = drawnKeptRange(group);
  int64_t cell = static_cast<int64_t>(group.getCell());
  int64_t area = cell * cell;
  return {drawn.first * area, drawn.second * area};
}

int64_t MaskGroupOp::getCapacity() { return static_cast<int64_t>(getPrefix()) + keptRange(*this).second; }

int64_t MaskGroupOp::getMinKept() { return keptRange(*this).first; }

LogicalResult InputOp::verify() {
  auto t = cast<RankedTensorType>(getResult().getType());
  if (!t.hasStaticShape())
    return emitOpError("needs a static shape, got ") << t;
  if (getName() == "images") {
    if (t.getRank() != 4 || !t.getElementType().isF32())
      return emitOpError("images must be f32 [batch, channels, height, width], got ") << t;
    return success();
  }
  if (getName() == "labels") {
    if (t.getRank() != 1 || !t.getElementType().isInteger(32))
      return emitOpError("labels must be i32 [batch], got ") << t;
    return success();
  }
  return emitOpError("unknown input '") << getName() << "': expected \"images\" or \"labels\"";
}

LogicalResult ParamOp::verify() {
  auto t = cast<RankedTensorType>(getResult().getType());
  if (!t.hasStaticShape() || t.getRank() < 1 || t.getRank() > 4)
    return emitOpError("parameter needs a static shape of rank 1 to 4, got ") << t;
  if (getName().empty())
    return emitOpError("parameter needs a name");
  return success();
}

bool ParamOp::hasWeightDecay() {
  if (auto d = getDecay())
    return *d;
  // timm's no_weight_decay set: position embedding and class token.
  return cast<RankedTensorType>(getResult().getType()).getRank() >= 2 && !getName().contains("pos_embed") &&
         !getName().contains("cls_token");
}

LogicalResult BranchOp::verifyRegions() {
  Block &body = getBody().front();
  if (body.getNumArguments() != getInputs().size())
    return emitOpError("body must take one argument per input");
  for (auto [arg, in] : llvm::zip(body.getArguments(), getInputs()))
    if (arg.getType() != in.getType())
      return emitOpError("body argument type ") << arg.getType() << " differs from input " << in.getType();
  auto yield = cast<YieldOp>(body.getTerminator());
  if (yield.getValues().getTypes() != getResultTypes())
    return emitOpError("yielded types must match the results");
  for (Operation &op : body.without_terminator())
    if (!isa<RowWiseOpInterface, BranchOp>(op))
      return op.emitOpError("is not token-wise, so it cannot be inside an SBP branch")
                 .attachNote(getLoc())
             << (isa<DwConvOp>(op) ? "SBP on a depth-wise conv is not supported (each output token reads its "
                                     "neighbours); put the branch after it, as convnext_sbp.py does"
                                   : "SBP branch here");
  return success();
}

LogicalResult BranchOp::verifySymbolUses(SymbolTableCollection &symbols) {
  auto group = symbols.lookupNearestSymbolFrom<MaskGroupOp>(*this, getMaskAttr());
  if (!group)
    return emitOpError("refers to an unknown mask group ") << getMaskAttr();
  if (!masksTokens(group))
    return emitOpError("mask group ") << getMaskAttr() << " masks "
                                      << (group.getKind() == MaskKind::heads ? "attention heads" : "samples")
                                      << ", not tokens";
  int64_t tokens = group.getNumTokens();
  SmallVector<Type> types(getInputs().getTypes());
  llvm::append_range(types, getResultTypes());
  for (Type t : types) {
    auto rt = cast<RankedTensorType>(t);
    if (rt.getRank() != 3 || rt.getDimSize(1) != tokens)
      return emitOpError("tensors must be [batch, ") << tokens << ", features] to match mask group "
             << getMaskAttr() << " (prefix " << group.getPrefix() << " + grid "
             << shapeStr(group.getGrid()) << "), got " << t;
  }
  return success();
}

LogicalResult KeepIndicesOp::verifySymbolUses(SymbolTableCollection &symbols) {
  auto group = symbols.lookupNearestSymbolFrom<MaskGroupOp>(*this, getMaskAttr());
  if (!group)
    return emitOpError("refers to an unknown mask group ") << getMaskAttr();
  return expectShape(*this, "keep indices", shapeOf(getResult()), {group.getCapacity()});
}

//===----------------------------------------------------------------------===//
// Forward ops: verifiers
//===----------------------------------------------------------------------===//

LogicalResult PatchifyOp::verify() {
  auto in = shapeOf(getImage());
  int64_t p = getPatch();
  if (in.size() != 4)
    return emitOpError("image must be [B, C, H, W]");
  if (p <= 0 || in[2] % p || in[3] % p)
    return emitOpError("patch size ") << p << " must divide the image size " << in[2] << "x" << in[3];
  return expectShape(*this, "result", shapeOf(getResult()),
                     {in[0], (in[2] / p) * (in[3] / p), in[1] * p * p});
}

LogicalResult LinearOp::verify() {
  if (failed(expectMinRank(*this, "input", getInput(), 1)))
    return failure();
  auto x = shapeOf(getInput()), w = shapeOf(getWeight());
  if (w.size() < 2)
    return emitOpError("weight must be [out, in] (or [out, in...]), got ") << getWeight().getType();
  if (x.back() != linearInFeatures(w))
    return emitOpError("input features (") << x.back() << ") must equal the weight's in ("
                                           << linearInFeatures(w) << ")";
  return expectShape(*this, "result", shapeOf(getResult()), replaceLast(x, w[0]));
}

LogicalResult BiasAddOp::verify() {
  if (failed(expectMinRank(*this, "input", getInput(), 1)))
    return failure();
  auto x = shapeOf(getInput());
  if (failed(expectShape(*this, "bias", shapeOf(getBias()), {x.back()})))
    return failure();
  return expectShape(*this, "result", shapeOf(getResult()), x);
}

LogicalResult PosAddOp::verify() {
  auto x = shapeOf(getInput());
  if (x.size() != 3)
    return emitOpError("input must be a token tensor [B, T, D]");
  if (failed(expectShape(*this, "position embedding", shapeOf(getPos()), {1, x[1], x[2]})))
    return failure();
  return expectShape(*this, "result", shapeOf(getResult()), x);
}

LogicalResult GeluOp::verify() { return expectShape(*this, "result", shapeOf(getResult()), shapeOf(getInput())); }
LogicalResult ReluOp::verify() { return expectShape(*this, "result", shapeOf(getResult()), shapeOf(getInput())); }

LogicalResult AddOp::verify() {
  if (failed(expectShape(*this, "rhs", shapeOf(getRhs()), shapeOf(getLhs()))))
    return failure();
  return expectShape(*this, "result", shapeOf(getResult()), shapeOf(getLhs()));
}

LogicalResult LayerNormOp::verify() {
  if (failed(expectMinRank(*this, "input", getInput(), 1)))
    return failure();
  auto x = shapeOf(getInput());
  if (failed(expectShape(*this, "weight", shapeOf(getWeight()), {x.back()})) ||
      failed(expectShape(*this, "bias", shapeOf(getBias()), {x.back()})))
    return failure();
  if (!(getEps().convertToDouble() > 0))
    return emitOpError("eps must be > 0");
  return expectShape(*this, "result", shapeOf(getResult()), x);
}

LogicalResult MeanTokensOp::verify() {
  auto x = shapeOf(getInput());
  if (x.size() != 3)
    return emitOpError("input must be a token tensor [B, T, D]");
  return expectShape(*this, "result", shapeOf(getResult()), {x[0], x[2]});
}

LogicalResult CrossEntropyOp::verify() {
  auto l = shapeOf(getLogits());
  if (l.size() != 2)
    return emitOpError("logits must be [B, classes]");
  return expectShape(*this, "labels", shapeOf(getLabels()), {l[0]});
}

LogicalResult ClsConcatOp::verify() {
  auto x = shapeOf(getInput());
  if (x.size() != 3)
    return emitOpError("input must be a token tensor [B, T, D]");
  if (failed(expectShape(*this, "class token", shapeOf(getCls()), {1, 1, x[2]})))
    return failure();
  return expectShape(*this, "result", shapeOf(getResult()), {x[0], x[1] + 1, x[2]});
}

LogicalResult TakeTokenOp::verify() {
  auto x = shapeOf(getInput());
  if (x.size() != 3)
    return emitOpError("input must be a token tensor [B, T, D]");
  if (getIndexAttr().getInt() < 0 || getIndexAttr().getInt() >= x[1])
    return emitOpError("token index ") << getIndexAttr().getInt() << " is outside [0, " << x[1] << ")";
  return expectShape(*this, "result", shapeOf(getResult()), {x[0], x[2]});
}

/// Checks qkv [B, T, 3 * D] against `heads` and returns D, or fails after an
/// error.
static FailureOr<int64_t> verifyQkv(Operation *op, Value qkv, int64_t heads) {
  auto s = shapeOf(qkv);
  if (s.size() != 3 || s[2] % 3)
    return op->emitOpError("qkv must be [B, T, 3 * D], got ") << qkv.getType();
  int64_t dim = s[2] / 3;
  if (heads <= 0 || dim % heads)
    return op->emitOpError("heads (") << heads << ") must be positive and divide the width " << dim;
  return dim;
}

int64_t AttentionOp::getHeadDim() { return shapeOf(getResult())[2] / getHeadsAttr().getInt(); }
double AttentionOp::getScale() { return 1.0 / std::sqrt(static_cast<double>(getHeadDim())); }

LogicalResult AttentionOp::verify() {
  FailureOr<int64_t> dim = verifyQkv(*this, getQkv(), getHeadsAttr().getInt());
  if (failed(dim))
    return failure();
  auto q = shapeOf(getQkv());
  if (getMask().has_value() != getMode().has_value())
    return emitOpError("an SBP attention needs both a mask group and a mode");
  if (getKeep() && !getMode())
    return emitOpError("keep indices need an SBP mode");
  if (getKeep() && failed(verifyKeep(*this, getKeep())))
    return failure();
  if (failed(expectShape(*this, "result", shapeOf(getResult()), {q[0], q[1], *dim})))
    return failure();
  return expectShape(*this, "lse", shapeOf(getLse()), {q[0], q[1], getHeadsAttr().getInt()});
}

/// The mask group of an SBP attention map must fit its mode: a heads group of
/// `heads` positions for drop_head, else a token group over the T tokens.
static LogicalResult verifyAttentionGroup(Operation *op, SymbolTableCollection &symbols,
                                          FlatSymbolRefAttr mask, AttentionMode mode, int64_t tokens,
                                          int64_t heads) {
  auto group = symbols.lookupNearestSymbolFrom<MaskGroupOp>(op, mask);
  if (!group)
    return op->emitOpError("refers to an unknown mask group ") << mask;
  bool headGroup = group.getKind() == MaskKind::heads;
  if (mode == AttentionMode::drop_head) {
    if (!headGroup || group.getGrid()[1] != heads)
      return op->emitOpError("drop_head needs a heads mask group of ")
             << heads << " heads (sbp.mask_group " << mask << " keep r heads [1, " << heads << "])";
    return success();
  }
  if (!masksTokens(group))
    return op->emitOpError("mode ") << stringifyAttentionMode(mode) << " needs a token mask group, "
                                    << mask << " masks " << stringifyMaskKind(group.getKind());
  if (group.getNumTokens() != tokens)
    return op->emitOpError("has ") << tokens << " tokens, but mask group " << mask << " covers "
                                   << group.getNumTokens() << " (prefix " << group.getPrefix() << " + grid "
                                   << shapeStr(group.getGrid()) << ")";
  return success();
}

LogicalResult AttentionOp::verifySymbolUses(SymbolTableCollection &symbols) {
  if (!getMask())
    return success();
  if (failed(verifyAttentionGroup(*this, symbols, getMaskAttr(), *getMode(), shapeOf(getQkv())[1],
                                  getHeadsAttr().getInt())))
    return failure();
  if (!getKeep())
    return success();
  auto group = symbols.lookupNearestSymbolFrom<MaskGroupOp>(*this, getMaskAttr());
  return expectShape(*this, "keep indices", shapeOf(getKeep()), {group.getCapacity()});
}

LogicalResult VitBlockOp::verify() {
  auto x = shapeOf(getInput());
  if (x.size() != 3)
    return emitOpError("input must be a token tensor [B, T, D]");
  if (getHeadsAttr().getInt() <= 0 || x[2] % getHeadsAttr().getInt())
    return emitOpError("heads (") << getHeadsAttr().getInt() << ") must be positive and divide the width " << x[2];
  int64_t hidden = getHiddenAttr().getInt();
  if (hidden <= 0)
    return emitOpError("hidden must be positive");
  // The widest activations of the decomposed block, [B, T, hidden] and the
  // qkv [B, T, 3 D], must fit a tensor (TensorLimits.h); x[0] * x[1] does.
  if (std::max(hidden, 3 * x[2]) > kMaxTensorElements / (x[0] * x[1]))
    return emitOpError("hidden ") << hidden << " and width " << x[2] << " give [B, T, hidden] or [B, T, 3 * D] "
                                  << "activations of more than " << kMaxTensorElements << " elements";
  if (!(getEps().convertToDouble() > 0))
    return emitOpError("eps must be > 0");
  if (getAttnMask().has_value() != getAttnMode().has_value())
    return emitOpError("attn_sbp needs both a mask group and a mode");
  if (getName().empty())
    return emitOpError("needs a parameter name prefix");
  return success();
}

LogicalResult VitBlockOp::verifySymbolUses(SymbolTableCollection &symbols) {
  int64_t tokens = shapeOf(getInput())[1];
  if (auto mlp = getMlpMaskAttr()) {
    auto group = symbols.lookupNearestSymbolFrom<MaskGroupOp>(*this, mlp);
    if (!group)
      return emitOpError("refers to an unknown mask group ") << mlp;
    if (!masksTokens(group) || group.getNumTokens() != tokens)
      return emitOpError("mlp_sbp needs a token mask group over ") << tokens << " tokens, " << mlp
                                                                   << " is not one";
  }
  if (auto attn = getAttnMaskAttr())
    return verifyAttentionGroup(*this, symbols, attn, *getAttnMode(), tokens, getHeadsAttr().getInt());
  return success();
}

//===----------------------------------------------------------------------===//
// Ops added by passes: verifiers
//===----------------------------------------------------------------------===//


LogicalResult GradGateOp::verify() {
  if (failed(verifyKeep(*this, getKeep())))
    return failure();
  if (!isTokenTensor(getInput().getType()))
    return emitOpError("input must be a token tensor [B, T, D]");
  return expectShape(*this, "result", shapeOf(getResult()), shapeOf(getInput()));
}

LogicalResult MaskRowsOp::verify() {
  if (failed(verifyKeep(*this, getKeep())))
    return failure();
  if (!isTokenTensor(getInput().getType()))
    return emitOpError("input must be a token tensor [B, T, D]");
  return expectShape(*this, "result", shapeOf(getResult()), shapeOf(getInput()));
}

LogicalResult GatherRowsOp::verify() {
  auto x = shapeOf(getInput());
  if (failed(verifyKeep(*this, getKeep())))
    return failure();
  if (x.size() != 3)
    return emitOpError("input must be a token tensor [B, T, D]");
  return expectShape(*this, "result", shapeOf(getResult()), {x[0], shapeOf(getKeep())[0], x[2]});
}

LogicalResult ScatterRowsOp::verify() {
  auto x = shapeOf(getInput()), y = shapeOf(getResult());
  if (failed(verifyKeep(*this, getKeep())))
    return failure();
  if (x.size() != 3 || y.size() != 3)
    return emitOpError("needs token tensors [B, K, D] -> [B, T, D]");
  if (x[1] != shapeOf(getKeep())[0] || x[0] != y[0] || x[2] != y[2] || y[1] < x[1])
    return emitOpError("input ") << shapeStr(x) << " does not scatter into " << shapeStr(y);
  return success();
}

LogicalResult ScatterAddRowsOp::verify() {
  auto b = shapeOf(getBase()), x = shapeOf(getInput());
  if (failed(verifyKeep(*this, getKeep())))
    return failure();
  if (b.size() != 3 || x.size() != 3)
    return emitOpError("needs token tensors");
  if (x[1] != shapeOf(getKeep())[0] || x[0] != b[0] || x[2] != b[2])
    return emitOpError("input ") << shapeStr(x) << " does not scatter into " << shapeStr(b);
  return expectShape(*this, "result", shapeOf(getResult()), b);
}

LogicalResult LinearGradInputOp::verify() {
  if (failed(expectMinRank(*this, "gradient", getGrad(), 1)))
    return failure();
  auto dy = shapeOf(getGrad()), w = shapeOf(getWeight());
  if (w.size() < 2 || dy.back() != w[0])
    return emitOpError("gradient features must equal the weight's out");
  return expectShape(*this, "result", shapeOf(getResult()), replaceLast(dy, linearInFeatures(w)));
}

LogicalResult LinearGradWeightOp::verify() {
  if (failed(expectMinRank(*this, "input", getInput(), 1)) ||
      failed(expectMinRank(*this, "gradient", getGrad(), 1)))
    return failure();
  auto x = shapeOf(getInput()), dy = shapeOf(getGrad());
  if (x.drop_back() != dy.drop_back())
    return emitOpError("input and gradient must have the same rows");
  auto w = shapeOf(getResult());
  if (w.size() >= 2 && w[0] == dy.back() && linearInFeatures(w) == x.back())
    return success();
  return expectShape(*this, "result", w, {dy.back(), x.back()});
}

LogicalResult BiasGradOp::verify() {
  if (failed(expectMinRank(*this, "gradient", getGrad(), 1)))
    return failure();
  return expectShape(*this, "result", shapeOf(getResult()), {shapeOf(getGrad()).back()});
}

LogicalResult PosGradOp::verify() {
  auto dy = shapeOf(getGrad());
  if (dy.size() != 3)
    return emitOpError("gradient must be a token tensor");
  return expectShape(*this, "result", shapeOf(getResult()), {1, dy[1], dy[2]});
}

LogicalResult GeluGradOp::verify() {
  return expectShape(*this, "gradient", shapeOf(getGrad()), shapeOf(getInput()));
}
LogicalResult ReluGradOp::verify() {
  return expectShape(*this, "gradient", shapeOf(getGrad()), shapeOf(getInput()));
}

LogicalResult LayerNormGradOp::verify() {
  if (failed(expectMinRank(*this, "input", getInput(), 1)))
    return failure();
  auto x = shapeOf(getInput());
  if (failed(expectShape(*this, "gradient", shapeOf(getGrad()), x)) ||
      failed(expectShape(*this, "weight", shapeOf(getWeight()), {x.back()})) ||
      failed(expectShape(*this, "input gradient", shapeOf(getGradInput()), x)) ||
      failed(expectShape(*this, "weight gradient", shapeOf(getGradWeight()), {x.back()})))
    return failure();
  if (!(getEps().convertToDouble() > 0))
    return emitOpError("eps must be > 0");
  return expectShape(*this, "bias gradient", shapeOf(getGradBias()), {x.back()});
}

LogicalResult ClsConcatGradOp::verify() {
  auto dy = shapeOf(getGrad());
  if (dy.size() != 3 || dy[1] < 2)
    return emitOpError("gradient must be a token tensor [B, T + 1, D]");
  if (failed(expectShape(*this, "input gradient", shapeOf(getGradInput()), {dy[0], dy[1] - 1, dy[2]})))
    return failure();
  return expectShape(*this, "class token gradient", shapeOf(getGradCls()), {1, 1, dy[2]});
}

LogicalResult TakeTokenGradOp::verify() {
  auto dy = shapeOf(getGrad()), dx = shapeOf(getResult());
  if (dx.size() != 3 || dy.size() != 2 || dx[0] != dy[0] || dx[2] != dy[1])
    return emitOpError("result must be [B, T, D] for a gradient [B, D]");
  if (getIndexAttr().getInt() < 0 || getIndexAttr().getInt() >= dx[1])
    return emitOpError("token index ") << getIndexAttr().getInt() << " is outside [0, " << dx[1] << ")";
  return success();
}

LogicalResult AttentionGradOp::verify() {
  FailureOr<int64_t> dim = verifyQkv(*this, getQkv(), getHeadsAttr().getInt());
  if (failed(dim))
    return failure();
  auto q = shapeOf(getQkv());
  std::optional<AttentionMode> mode = getMode();
  if (getKeep().operator bool() != mode.has_value())
    return emitOpError("keep indices and an SBP mode go together");
  if (getKeep() && failed(verifyKeep(*this, getKeep())))
    return failure();
  // Rows of out, lse and grad: the kept query rows for drop_query, else qkv's.
  int64_t rows = q[1];
  if (mode == AttentionMode::drop_query)
    rows = shapeOf(getKeep())[0];
  if ((mode == AttentionMode::drop_qkv) && q[1] != shapeOf(getKeep())[0])
    return emitOpError("drop_qkv gradient works on the kept rows: qkv must have ") << shapeOf(getKeep())[0]
           << " rows";
  if (mode == AttentionMode::drop_head && shapeOf(getKeep())[0] != getHeadsAttr().getInt())
    return emitOpError("drop_head keep indices must list ") << getHeadsAttr().getInt() << " heads";
  if (failed(expectShape(*this, "out", shapeOf(getOut()), {q[0], rows, *dim})) ||
      failed(expectShape(*this, "grad", shapeOf(getGrad()), {q[0], rows, *dim})) ||
      failed(expectShape(*this, "lse", shapeOf(getLse()), {q[0], rows, getHeadsAttr().getInt()})))
    return failure();
  return expectShape(*this, "result", shapeOf(getResult()), q);
}

LogicalResult MeanTokensGradOp::verify() {
  auto dy = shapeOf(getGrad()), dx = shapeOf(getResult());
  if (dx.size() != 3 || dy.size() != 2 || dx[0] != dy[0] || dx[2] != dy[1])
    return emitOpError("result must be [B, T, D] for a gradient [B, D]");
  return success();
}

LogicalResult CrossEntropyGradOp::verify() {
  auto l = shapeOf(getLogits());
  if (l.size() != 2)
    return emitOpError("logits must be [B, classes]");
  if (failed(expectShape(*this, "labels", shapeOf(getLabels()), {l[0]})))
    return failure();
  return expectShape(*this, "result", shapeOf(getResult()), l);
}


//===----------------------------------------------------------------------===//
// Gradient rules
//===----------------------------------------------------------------------===//

template <typename OpT, typename... Args>
static Value make(OpBuilder &b, Operation *at, Type type, Args... args) {
  return b.create<OpT>(at->getLoc(), type, args...).getResult();
}

LogicalResult PatchifyOp::buildGradient(OpBuilder &, ArrayRef<Value>, SmallVectorImpl<Value> &g) {
  g.assign(1, Value()); // its input is the batch
  return success();
}

LogicalResult LinearOp::buildGradient(OpBuilder &b, ArrayRef<Value> dy, SmallVectorImpl<Value> &g) {
  g.assign(2, Value());
  if (!dy[0])
    return success();
  g[0] = make<LinearGradInputOp>(b, *this, getInput().getType(), dy[0], getWeight());
  g[1] = make<LinearGradWeightOp>(b, *this, getWeight().getType(), getInput(), dy[0]);
  return success();
}

LogicalResult BiasAddOp::buildGradient(OpBuilder &b, ArrayRef<Value> dy, SmallVectorImpl<Value> &g) {
  g.assign(2, Value());
  if (!dy[0])
    return success();
  g[0] = dy[0];
  g[1] = make<BiasGradOp>(b, *this, getBias().getType(), dy[0]);
  return success();
}

LogicalResult PosAddOp::buildGradient(OpBuilder &b, ArrayRef<Value> dy, SmallVectorImpl<Value> &g) {
  g.assign(2, Value());
  if (!dy[0])
    return success();
  g[0] = dy[0];
  g[1] = make<PosGradOp>(b, *this, getPos().getType(), dy[0]);
  return success();
}

LogicalResult GeluOp::buildGradient(OpBuilder &b, ArrayRef<Value> dy, SmallVectorImpl<Value> &g) {
  g.assign(1, dy[0] ? make<GeluGradOp>(b, *this, getInput().getType(), getInput(), dy[0]) : Value());
  return success();
}

LogicalResult ReluOp::buildGradient(OpBuilder &b, ArrayRef<Value> dy, SmallVectorImpl<Value> &g) {
  g.assign(1, dy[0] ? make<ReluGradOp>(b, *this, getInput().getType(), getInput(), dy[0]) : Value());
  return success();
}

LogicalResult AddOp::buildGradient(OpBuilder &, ArrayRef<Value> dy, SmallVectorImpl<Value> &g) {
  g.assign(2, dy[0]);
  return success();
}

LogicalResult LayerNormOp::buildGradient(OpBuilder &b, ArrayRef<Value> dy, SmallVectorImpl<Value> &g) {
  g.assign(3, Value());
  if (!dy[0])
    return success();
  auto op = b.create<LayerNormGradOp>(getLoc(), getInput().getType(), getWeight().getType(),
                                      getBias().getType(), getInput(), getWeight(), dy[0], getEpsAttr());
  g[0] = op.getGradInput();
  g[1] = op.getGradWeight();
  g[2] = op.getGradBias();
  return success();
}

LogicalResult MeanTokensOp::buildGradient(OpBuilder &b, ArrayRef<Value> dy, SmallVectorImpl<Value> &g) {
  g.assign(1, dy[0] ? make<MeanTokensGradOp>(b, *this, getInput().getType(), dy[0]) : Value());
  return success();
}

/// The loss is the root of the backward: sbp-autodiff seeds it with the loss
/// value itself, standing for d(loss)/d(loss) = 1.
LogicalResult CrossEntropyOp::buildGradient(OpBuilder &b, ArrayRef<Value> dy, SmallVectorImpl<Value> &g) {
  g.assign(2, Value());
  if (!dy[0])
    return success();
  if (dy[0] != getLoss())
    return emitOpError("the loss must not feed other ops: only the model's loss is differentiated");
  g[0] = make<CrossEntropyGradOp>(b, *this, getLogits().getType(), getLogits(), getLabels());
  return success();
}

LogicalResult GradGateOp::buildGradient(OpBuilder &b, ArrayRef<Value> dy, SmallVectorImpl<Value> &g) {
  g.assign(2, Value());
  if (dy[0])
    g[0] = make<MaskRowsOp>(b, *this, getInput().getType(), dy[0], getKeep());
  return success();
}

LogicalResult ClsConcatOp::buildGradient(OpBuilder &b, ArrayRef<Value> dy, SmallVectorImpl<Value> &g) {
  g.assign(2, Value());
  if (!dy[0])
    return success();
  auto op = b.create<ClsConcatGradOp>(getLoc(), getInput().getType(), getCls().getType(), dy[0]);
  g[0] = op.getGradInput();
  g[1] = op.getGradCls();
  return success();
}

LogicalResult TakeTokenOp::buildGradient(OpBuilder &b, ArrayRef<Value> dy, SmallVectorImpl<Value> &g) {
  g.assign(1, Value());
  if (dy[0])
    g[0] = b.create<TakeTokenGradOp>(getLoc(), getInput().getType(), dy[0], getIndexAttr());
  return success();
}

/// The gradient of an SBP attention map follows its mode (see the op's
/// description): drop_qkv differentiates the restricted attention of the kept
/// rows, on gathered rows, and scatters dqkv back; drop_query keeps every key
/// but only the kept queries; drop_head only the kept heads.
LogicalResult AttentionOp::buildGradient(OpBuilder &b, ArrayRef<Value> dy, SmallVectorImpl<Value> &g) {
  g.assign(getNumOperands(), Value());
  if (dy[1])
    return emitOpError("lse is saved for the backward only: it must not feed the loss");
  if (!dy[0])
    return success();
  if (getMask() && !getKeep())
    return emitOpError("is an SBP attention map without keep indices: run sbp-insert-masks before sbp-autodiff");
  Location loc = getLoc();
  Value keep = getKeep();
  auto gather = [&](Value v) {
    int64_t k = shapeOf(keep)[0];
    return b.create<GatherRowsOp>(loc, withRowCount(v.getType(), k), v, keep).getResult();
  };
  Type qkvType = getQkv().getType();
  auto modeAttr = getModeAttr();
  if (!keep) {
    g[0] = b.create<AttentionGradOp>(loc, qkvType, getQkv(), getResult(), getLse(), dy[0], Value(),
                                     getHeadsAttr(), nullptr);
    return success();
  }
  switch (*getMode()) {
  case AttentionMode::drop_qkv: {
    // Gathers in a fixed order (qkv, out, lse, dout): not in argument order,
    // which C++ leaves unspecified.
    Value qkvKept = gather(getQkv()), outKept = gather(getResult()), lseKept = gather(getLse());
    Value doutKept = gather(dy[0]);
    Value dqkv = b.create<AttentionGradOp>(loc, qkvKept.getType(), qkvKept, outKept, lseKept, doutKept, keep,
                                           getHeadsAttr(), modeAttr);
    g[0] = b.create<ScatterRowsOp>(loc, qkvType, dqkv, keep);
    break;
  }
  case AttentionMode::drop_query: {
    Value outKept = gather(getResult()), lseKept = gather(getLse()), doutKept = gather(dy[0]);
    g[0] = b.create<AttentionGradOp>(loc, qkvType, getQkv(), outKept, lseKept, doutKept, keep, getHeadsAttr(),
                                     modeAttr);
    break;
  }
  case AttentionMode::drop_head:
    g[0] = b.create<AttentionGradOp>(loc, qkvType, getQkv(), getResult(), getLse(), dy[0], keep, getHeadsAttr(),
                                     modeAttr);
    break;
  }
  return success();
}

//===----------------------------------------------------------------------===//
// ConvNeXt ops: depth-wise conv, layer scale, space-to-depth, composites
//===----------------------------------------------------------------------===//

/// Checks a channels-last image [B, H*W, C] against its grid [H, W].
static LogicalResult verifyGridTokens(Operation *op, StringRef what, Value x, ArrayRef<int64_t> grid) {
  auto s = shapeOf(x);
  if (s.size() != 3)
    return op->emitOpError() << what << " must be a token tensor [B, H*W, C], got " << x.getType();
  if (grid.size() != 2 || grid[0] <= 0 || grid[1] <= 0)
    return op->emitOpError("grid must be two positive sizes [H, W], got ") << shapeStr(grid);
  if (grid[0] * grid[1] != s[1])
    return op->emitOpError("grid ") << shapeStr(grid) << " has " << grid[0] * grid[1] << " positions, but the "
                                    << what << " has " << s[1] << " tokens";
  return success();
}

/// Checks a depth-wise conv weight [C, 1, K, K] (K odd) for C channels.
static LogicalResult verifyDwWeight(Operation *op, ArrayRef<int64_t> w, int64_t channels) {
  if (w.size() != 4 || w[1] != 1 || w[2] != w[3])
    return op->emitOpError("depth-wise weight must be [C, 1, K, K], got ") << shapeStr(w);
  if (w[2] <= 0 || w[2] % 2 == 0)
    return op->emitOpError("kernel size must be odd (padding K/2 keeps the grid), got ") << w[2];
  if (w[0] != channels)
    return op->emitOpError("depth-wise weight has ") << w[0] << " channels, the input " << channels;
  return success();
}

int64_t DwConvOp::getKernelSize() { return shapeOf(getWeight())[2]; }

LogicalResult DwConvOp::verify() {
  if (failed(verifyGridTokens(*this, "input", getInput(), getGrid())))
    return failure();
  auto x = shapeOf(getInput());
  if (failed(verifyDwWeight(*this, shapeOf(getWeight()), x[2])) ||
      failed(expectShape(*this, "bias", shapeOf(getBias()), {x[2]})))
    return failure();
  return expectShape(*this, "result", shapeOf(getResult()), x);
}

LogicalResult DwConvGradInputOp::verify() {
  if (failed(verifyGridTokens(*this, "gradient", getGrad(), getGrid())))
    return failure();
  auto dy = shapeOf(getGrad());
  if (failed(verifyDwWeight(*this, shapeOf(getWeight()), dy[2])))
    return failure();
  return expectShape(*this, "result", shapeOf(getResult()), dy);
}

LogicalResult DwConvGradWeightOp::verify() {
  if (failed(verifyGridTokens(*this, "gradient", getGrad(), getGrid())))
    return failure();
  auto dy = shapeOf(getGrad());
  if (failed(expectShape(*this, "input", shapeOf(getInput()), dy)) ||
      failed(verifyDwWeight(*this, shapeOf(getGradWeight()), dy[2])))
    return failure();
  return expectShape(*this, "bias gradient", shapeOf(getGradBias()), {dy[2]});
}

LogicalResult LayerScaleOp::verify() {
  if (failed(expectMinRank(*this, "input", getInput(), 1)))
    return failure();
  auto x = shapeOf(getInput());
  if (failed(expectShape(*this, "gamma", shapeOf(getGamma()), {x.back()})))
    return failure();
  return expectShape(*this, "result", shapeOf(getResult()), x);
}

LogicalResult LayerScaleGradOp::verify() {
  if (failed(expectMinRank(*this, "input", getInput(), 1)))
    return failure();
  auto x = shapeOf(getInput());
  if (failed(expectShape(*this, "gradient", shapeOf(getGrad()), x)) ||
      failed(expectShape(*this, "gamma", shapeOf(getGamma()), {x.back()})) ||
      failed(expectShape(*this, "input gradient", shapeOf(getGradInput()), x)))
    return failure();
  return expectShape(*this, "gamma gradient", shapeOf(getGradGamma()), {x.back()});
}

/// Checks the input grid of a space-to-depth and returns the shape of its
/// output [B, (H/s)(W/s), s*s*C].
static FailureOr<SmallVector<int64_t>> spaceToDepthShape(Operation *op, Value x, ArrayRef<int64_t> grid,
                                                          int64_t block) {
  if (failed(verifyGridTokens(op, "input", x, grid)))
    return failure();
  if (block <= 0 || grid[0] % block || grid[1] % block)
    return op->emitOpError("block ") << block << " must be positive and divide the grid " << shapeStr(grid)
                                     << " (downsampling needs an even grid)";
  auto s = shapeOf(x);
  return SmallVector<int64_t>{s[0], s[1] / (block * block), s[2] * block * block};
}

LogicalResult SpaceToDepthOp::verify() {
  auto out = spaceToDepthShape(*this, getInput(), getGrid(), getBlock());
  if (failed(out))
    return failure();
  return expectShape(*this, "result", shapeOf(getResult()), *out);
}

LogicalResult SpaceToDepthGradOp::verify() {
  auto out = spaceToDepthShape(*this, getResult(), getGrid(), getBlock());
  if (failed(out))
    return failure();
  return expectShape(*this, "gradient", shapeOf(getGrad()), *out);
}

//===--- Stochastic depth ---===//

/// A drop rate p in [0, 1): p = 1 would drop every sample and scale by 1/0.
static LogicalResult verifyDropRate(Operation *op, double rate) {
  if (rate >= 0.0 && rate < 1.0)
    return success();
  return op->emitOpError("drop-path rate must be in [0, 1), got ") << rate;
}

/// @g must be a `samples` group over the batch whose keep ratio is 1 - rate.
static LogicalResult verifySamplesGroup(Operation *op, SymbolTableCollection &symbols, FlatSymbolRefAttr mask,
                                        double rate, int64_t batch) {
  auto group = symbols.lookupNearestSymbolFrom<MaskGroupOp>(op, mask);
  if (!group)
    return op->emitOpError("refers to an unknown mask group ") << mask;
  if (group.getKind() != MaskKind::samples)
    return op->emitOpError("drop path needs a samples mask group, ")
           << mask << " masks " << stringifyMaskKind(group.getKind());
  if (group.getGrid()[1] != batch)
    return op->emitOpError("has batch ") << batch << ", but samples group " << mask << " covers "
                                         << group.getGrid()[1] << " samples";
  // The runtime draws with the group's ratio, the kernel scales by the rate.
  double keep = group.getKeep().convertToDouble();
  if (std::abs(keep - (1.0 - rate)) > 1e-6)
    return op->emitOpError("drop-path rate ") << rate << " needs keep " << 1.0 - rate << " in group " << mask
                                              << ", which keeps " << keep;
  return success();
}

double DropPathOp::getScale() { return 1.0 / (1.0 - getRate().convertToDouble()); }

LogicalResult DropPathOp::verify() {
  if (failed(expectMinRank(*this, "input", getInput(), 1)) ||
      failed(verifyDropRate(*this, getRate().convertToDouble())))
    return failure();
  if (getKeep() && failed(verifyKeep(*this, getKeep())))
    return failure();
  return expectShape(*this, "result", shapeOf(getResult()), shapeOf(getInput()));
}

LogicalResult DropPathOp::verifySymbolUses(SymbolTableCollection &symbols) {
  if (failed(verifySamplesGroup(*this, symbols, getMaskAttr(), getRate().convertToDouble(),
                                shapeOf(getInput())[0])))
    return failure();
  if (!getKeep())
    return success();
  auto group = symbols.lookupNearestSymbolFrom<MaskGroupOp>(*this, getMaskAttr());
  return expectShape(*this, "keep indices", shapeOf(getKeep()), {group.getCapacity()});
}

/// dx = drop_path(dy) with the same kept samples: the scaling is linear.
LogicalResult DropPathOp::buildGradient(OpBuilder &b, ArrayRef<Value> dy, SmallVectorImpl<Value> &g) {
  g.assign(2, Value());
  if (!dy[0])
    return success();
  if (!getKeep())
    return emitOpError("has no keep indices: run sbp-insert-masks before sbp-autodiff");
  g[0] = b.create<DropPathOp>(getLoc(), getInput().getType(), dy[0], getKeep(), getMaskAttr(), getRateAttr());
  return success();
}

LogicalResult ConvNextBlockOp::verify() {
  if (failed(verifyGridTokens(*this, "input", getInput(), getGrid())))
    return failure();
  auto x = shapeOf(getInput());
  int64_t k = getKernel(), hidden = getHidden();
  if (k <= 0 || k % 2 == 0)
    return emitOpError("kernel size must be odd, got ") << k;
  if (hidden <= 0)
    return emitOpError("hidden must be positive");
  if (hidden > kMaxTensorElements / (x[0] * x[1]))
    return emitOpError("hidden ") << hidden << " gives [B, T, hidden] activations of more than "
                                  << kMaxTensorElements << " elements";
  if (!(getEps().convertToDouble() > 0))
    return emitOpError("eps must be > 0");
  if (!(getLsInit().convertToDouble() >= 0))
    return emitOpError("ls_init must be >= 0");
  if (getName().empty())
    return emitOpError("needs a parameter name prefix");
  if (getDropPath().has_value() != getDropPathRate().has_value())
    return emitOpError("drop_path needs both a samples group and a rate");
  if (auto rate = getDropPathRate())
    return verifyDropRate(*this, rate->convertToDouble());
  return success();
}

/// A token mask group @m over exactly `tokens` tokens (no prefix: a ConvNeXt
/// has no class token).
static LogicalResult verifyTokenGroup(Operation *op, SymbolTableCollection &symbols, FlatSymbolRefAttr mask,
                                      StringRef what, int64_t tokens) {
  auto group = symbols.lookupNearestSymbolFrom<MaskGroupOp>(op, mask);
  if (!group)
    return op->emitOpError("refers to an unknown mask group ") << mask;
  if (!masksTokens(group) || group.getNumTokens() != tokens)
    return op->emitOpError() << what << " needs a token mask group over " << tokens << " tokens, " << mask
                             << " covers " << group.getNumTokens();
  return success();
}

LogicalResult ConvNextBlockOp::verifySymbolUses(SymbolTableCollection &symbols) {
  if (auto m = getMlpMaskAttr())
    if (failed(verifyTokenGroup(*this, symbols, m, "mlp_sbp", shapeOf(getInput())[1])))
      return failure();
  if (auto g = getDropPathAttr())
    return verifySamplesGroup(*this, symbols, g, getDropPathRate()->convertToDouble(), shapeOf(getInput())[0]);
  return success();
}

LogicalResult ConvNextDownsampleOp::verify() {
  auto out = spaceToDepthShape(*this, getInput(), getGrid(), 2);
  if (failed(out))
    return failure();
  if (getOut() <= 0)
    return emitOpError("out must be positive");
  if (!(getEps().convertToDouble() > 0))
    return emitOpError("eps must be > 0");
  if (getName().empty())
    return emitOpError("needs a parameter name prefix");
  return expectShape(*this, "result", shapeOf(getResult()), {(*out)[0], (*out)[1], static_cast<int64_t>(getOut())});
}

LogicalResult ConvNextDownsampleOp::verifySymbolUses(SymbolTableCollection &symbols) {
  if (auto m = getMaskAttr())
    return verifyTokenGroup(*this, symbols, m, "sbp", shapeOf(getResult())[1]);
  return success();
}

LogicalResult DwConvOp::buildGradient(OpBuilder &b, ArrayRef<Value> dy, SmallVectorImpl<Value> &g) {
  g.assign(3, Value());
  if (!dy[0])
    return success();
  g[0] = b.create<DwConvGradInputOp>(getLoc(), getInput().getType(), dy[0], getWeight(), getGridAttr());
  // Saves x: the weight gradient correlates dy with the forward input.
  auto wg = b.create<DwConvGradWeightOp>(getLoc(), getWeight().getType(), getBias().getType(), dy[0], getInput(),
                                         getGridAttr());
  g[1] = wg.getGradWeight();
  g[2] = wg.getGradBias();
  return success();
}

LogicalResult LayerScaleOp::buildGradient(OpBuilder &b, ArrayRef<Value> dy, SmallVectorImpl<Value> &g) {
  g.assign(2, Value());
  if (!dy[0])
    return success();
  auto op = b.create<LayerScaleGradOp>(getLoc(), getInput().getType(), getGamma().getType(), dy[0], getInput(),
                                       getGamma());
  g[0] = op.getGradInput();
  g[1] = op.getGradGamma();
  return success();
}

LogicalResult SpaceToDepthOp::buildGradient(OpBuilder &b, ArrayRef<Value> dy, SmallVectorImpl<Value> &g) {
  g.assign(1, Value());
  if (dy[0])
    g[0] = b.create<SpaceToDepthGradOp>(getLoc(), getInput().getType(), dy[0], getGridAttr(), getBlockAttr());
  return success();
}
