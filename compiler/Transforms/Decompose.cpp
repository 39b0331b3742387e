//===- Decompose.cpp - composite ops -> parameters and primitive ops ------===//
//
// `sbp.vit_block "blocks.4" %x heads H hidden F ...` becomes timm's Block:
//
//   x1 = x + proj(attention(qkv(norm1(x))))     (attention: an SBP map if attn_sbp)
//   x2 = x1 + fc2(gelu(fc1(norm2(x1))))         (inside sbp.branch @m if mlp_sbp)
//
// with the block's parameters created under timm's names and initialisers.
// The attention branch's ops are tagged with the region "<name>.attn" for
// reports when its map is an SBP region; the MLP branch is named "<name>.mlp".
//
// `sbp.convnext_block` and `sbp.convnext_downsample` become timm's
// ConvNeXtBlock and stage downsampling the same way (ConvNextBuilder).
//
//===----------------------------------------------------------------------===//
#include "Passes.h"

namespace sbp {
#define GEN_PASS_DEF_SBPDECOMPOSE
#include "Passes.h.inc"
} // namespace sbp

using namespace mlir;
using namespace sbp;

namespace {
class BlockBuilder {
public:
  BlockBuilder(VitBlockOp block) : block(block), b(block), loc(block.getLoc()) {
    auto x = cast<RankedTensorType>(block.getInput().getType());
    batch = x.getDimSize(0);
    tokens = x.getDimSize(1);
    dim = x.getDimSize(2);
  }

  void build() {
    createParams();
    std::string attnRegion = block.getAttnMask() ? (block.getName() + ".attn").str() : "";
    Value x = block.getInput();
    Value attn = attentionBranch(x, attnRegion);
    Value x1 = b.create<AddOp>(loc, x.getType(), x, attn);
    Value mlp = block.getMlpMask() ? mlpBranch(x1) : mlpOps(b, x1);
    Value x2 = b.create<AddOp>(loc, x.getType(), x1, mlp);
    block.getResult().replaceAllUsesWith(x2);
    block.erase();
  }

private:
  RankedTensorType tok(int64_t width) {
    return RankedTensorType::get({batch, tokens, width}, b.getF32Type());
  }

  /// The block's parameters, before the block, in timm's state_dict order
  /// and with timm's initialisers.
  void createParams() {
    int64_t hidden = block.getHiddenAttr().getInt();
    auto norm = [&](StringRef prefix) {
      param((prefix + ".weight").str(), {dim}, InitKind::ones);
      param((prefix + ".bias").str(), {dim}, InitKind::zeros);
    };
    auto linear = [&](StringRef prefix, int64_t out, int64_t in) {
      param((prefix + ".weight").str(), {out, in}, InitKind::trunc_normal, 0.02);
      param((prefix + ".bias").str(), {out}, InitKind::zeros);
    };
    norm("norm1");
    linear("attn.qkv", 3 * dim, dim);
    linear("attn.proj", dim, dim);
    norm("norm2");
    linear("mlp.fc1", hidden, dim);
    linear("mlp.fc2", dim, hidden);
  }

  void param(const std::string &suffix, ArrayRef<int64_t> shape, InitKind kind, double scale = 0.0) {
    auto init = InitAttr::get(b.getContext(), kind, llvm::APFloat(scale));
    auto type = RankedTensorType::get(shape, b.getF32Type());
    params[suffix] =
        b.create<ParamOp>(loc, type, b.getStringAttr((block.getName() + "." + suffix).str()), init, BoolAttr());
  }

  Value layerNorm(OpBuilder &at, StringRef prefix, Value x) {
    return at.create<LayerNormOp>(loc, x.getType(), x, params[(prefix + ".weight").str()],
                                  params[(prefix + ".bias").str()], block.getEpsAttr());
  }

  /// y = x W^T + bias, with the parameters `prefix.weight` and `prefix.bias`.
  Value linear(OpBuilder &at, StringRef prefix, Value x, int64_t out) {
    Value y = at.create<LinearOp>(loc, tok(out), x, params[(prefix + ".weight").str()]);
    return at.create<BiasAddOp>(loc, tok(out), y, params[(prefix + ".bias").str()]);
  }

  Value attentionBranch(Value x, StringRef region) {
    Operation *first = block->getPrevNode(); // the last parameter
    Value n = layerNorm(b, "norm1", x);
    Value qkv = linear(b, "attn.qkv", n, 3 * dim);
    int64_t heads = block.getHeadsAttr().getInt();
    auto lse = RankedTensorType::get({batch, tokens, heads}, b.getF32Type());
    auto attn = b.create<AttentionOp>(loc, TypeRange{tok(dim), lse}, qkv, Value(), block.getHeadsAttr(),
                                      block.getAttnMaskAttr(), block.getAttnModeAttr());
    Value out = linear(b, "attn.proj", attn.getResult(), dim);
    if (!region.empty())
      for (Operation *op = first ? first->getNextNode() : &block->getBlock()->front(); op != block.getOperation();
           op = op->getNextNode())
        op->setAttr(kRegionAttr, b.getStringAttr(region));
    return out;
  }

  /// norm2, fc1, GELU, fc2 at the builder's insertion point.
  Value mlpOps(OpBuilder &at, Value x) {
    Value n = layerNorm(at, "norm2", x);
    int64_t hidden = block.getHiddenAttr().getInt();
    Value h = linear(at, "mlp.fc1", n, hidden);
    Value a = at.create<GeluOp>(loc, h.getType(), h);
    return linear(at, "mlp.fc2", a, dim);
  }

  Value mlpBranch(Value x) {
    auto branch = b.create<BranchOp>(loc, TypeRange{x.getType()}, block.getMlpMaskAttr(), ValueRange{x},
                                     b.getStringAttr((block.getName() + ".mlp").str()));
    Block *body = new Block();
    branch.getBody().push_back(body);
    Value arg = body->addArgument(x.getType(), loc);
    OpBuilder inner = OpBuilder::atBlockEnd(body);
    inner.create<YieldOp>(loc, ValueRange{mlpOps(inner, arg)});
    return branch.getResult(0);
  }

  VitBlockOp block;
  OpBuilder b;
  Location loc;
  int64_t batch, tokens, dim;
  llvm::StringMap<Value> params; // by suffix: "norm1.weight", "attn.qkv.bias", ...
};

/// timm's ConvNeXt pieces, channels-last on [B, H*W, C] token tensors:
///   block:      x + gamma * fc2(gelu(fc1(norm(conv_dw(x)))))
///               (norm .. gamma inside sbp.branch @m with mlp_sbp; the
///               product through sbp.drop_path with drop_path)
///   downsample: linear_{.1}(space_to_depth(norm_{.0}(x)))  (the linear +
///               bias inside sbp.branch @m with sbp)
/// Parameters in timm's state_dict order (a module's own parameters, gamma,
/// before its children's) with timm's initialisers.
class ConvNextBuilder {
public:
  explicit ConvNextBuilder(Operation *op, StringRef name) : op(op), name(name.str()), b(op), loc(op->getLoc()) {}

  void buildBlock(ConvNextBlockOp block) {
    Value x = block.getInput();
    auto type = cast<RankedTensorType>(x.getType());
    int64_t dim = type.getDimSize(2), k = block.getKernel(), hidden = block.getHidden();
    param("gamma", {dim}, InitKind::constant, block.getLsInit().convertToDouble());
    param("conv_dw.weight", {dim, 1, k, k}, InitKind::trunc_normal, 0.02);
    param("conv_dw.bias", {dim}, InitKind::zeros);
    norm("norm", dim);
    linearParams("mlp.fc1", hidden, {dim});
    linearParams("mlp.fc2", dim, {hidden});
    Value conv = b.create<DwConvOp>(loc, type, x, params["conv_dw.weight"], params["conv_dw.bias"],
                                    block.getGridAttr());
    auto mlp = [&](OpBuilder &at, Value v) {
      Value n = at.create<LayerNormOp>(loc, type, v, params["norm.weight"], params["norm.bias"], block.getEpsAttr());
      Value h = linear(at, "mlp.fc1", n, hidden);
      Value a = at.create<GeluOp>(loc, h.getType(), h);
      Value y = linear(at, "mlp.fc2", a, dim);
      return at.create<LayerScaleOp>(loc, type, y, params["gamma"]).getResult();
    };
    Value branch = block.getMlpMask() ? inBranch(block.getMlpMaskAttr(), "mlp", conv, type, mlp) : mlp(b, conv);
    // timm: x = shortcut + drop_path(gamma * mlp(...)).
    if (auto group = block.getDropPathAttr())
      branch = b.create<DropPathOp>(loc, type, branch, Value(), group, block.getDropPathRateAttr());
    finish(b.create<AddOp>(loc, type, x, branch));
  }

  void buildDownsample(ConvNextDownsampleOp ds) {
    Value x = ds.getInput();
    auto type = cast<RankedTensorType>(x.getType());
    int64_t dim = type.getDimSize(2), out = ds.getOut();
    norm("0", dim);
    linearParams("1", out, {dim, 2, 2});
    Value n = b.create<LayerNormOp>(loc, type, x, params["0.weight"], params["0.bias"], ds.getEpsAttr());
    auto s = RankedTensorType::get({type.getDimSize(0), type.getDimSize(1) / 4, 4 * dim}, b.getF32Type());
    Value cells = b.create<SpaceToDepthOp>(loc, s, n, ds.getGridAttr(), b.getI64IntegerAttr(2));
    auto reduce = [&](OpBuilder &at, Value v) { return linear(at, "1", v, out); };
    finish(ds.getMask() ? inBranch(ds.getMaskAttr(), "reduction", cells, ds.getType(), reduce) : reduce(b, cells));
  }

private:
  void param(StringRef suffix, ArrayRef<int64_t> shape, InitKind kind, double scale = 0.0) {
    auto init = InitAttr::get(b.getContext(), kind, llvm::APFloat(scale));
    auto type = RankedTensorType::get(shape, b.getF32Type());
    params[suffix] = b.create<ParamOp>(loc, type, b.getStringAttr(name + "." + suffix.str()), init, BoolAttr());
  }
  void norm(StringRef prefix, int64_t dim) {
    param((prefix + ".weight").str(), {dim}, InitKind::ones);
    param((prefix + ".bias").str(), {dim}, InitKind::zeros);
  }
  /// weight [out, in...] (a Conv2d weight for the downsampling), bias [out].
  void linearParams(StringRef prefix, int64_t out, ArrayRef<int64_t> in) {
    SmallVector<int64_t> shape = {out};
    llvm::append_range(shape, in);
    param((prefix + ".weight").str(), shape, InitKind::trunc_normal, 0.02);
    param((prefix + ".bias").str(), {out}, InitKind::zeros);
  }
  Value linear(OpBuilder &at, StringRef prefix, Value x, int64_t out) {
    auto s = cast<RankedTensorType>(x.getType()).getShape();
    auto type = RankedTensorType::get({s[0], s[1], out}, at.getF32Type());
    Value y = at.create<LinearOp>(loc, type, x, params[(prefix + ".weight").str()]);
    return at.create<BiasAddOp>(loc, type, y, params[(prefix + ".bias").str()]);
  }
  /// `body` inside an sbp.branch of group `mask`, named "<name>.<what>".
  Value inBranch(FlatSymbolRefAttr mask, StringRef what, Value x, Type result,
                 function_ref<Value(OpBuilder &, Value)> body) {
    auto branch = b.create<BranchOp>(loc, TypeRange{result}, mask, ValueRange{x},
                                     b.getStringAttr(name + "." + what.str()));
    Block *block = new Block();
    branch.getBody().push_back(block);
    OpBuilder inner = OpBuilder::atBlockEnd(block);
    Value y = body(inner, block->addArgument(x.getType(), loc));
    inner.create<YieldOp>(loc, ValueRange{y});
    return branch.getResult(0);
  }
  void finish(Value result) {
    op->getResult(0).replaceAllUsesWith(result);
    op->erase();
  }

  Operation *op;
  std::string name;
  OpBuilder b;
  Location loc;
  llvm::StringMap<Value> params; // by suffix: "conv_dw.weight", "mlp.fc1.bias", ...
};

struct DecomposePass : sbp::impl::SbpDecomposeBase<DecomposePass> {
  void runOnOperation() override {
    SmallVector<Operation *> composites;
    getOperation().walk([&](Operation *op) {
      if (isa<VitBlockOp, ConvNextBlockOp, ConvNextDownsampleOp>(op))
        composites.push_back(op);
    });
    for (Operation *op : composites) {
      if (auto block = dyn_cast<VitBlockOp>(op))
        BlockBuilder(block).build();
      else if (auto block = dyn_cast<ConvNextBlockOp>(op))
        ConvNextBuilder(op, block.getName()).buildBlock(block);
      else if (auto ds = dyn_cast<ConvNextDownsampleOp>(op))
        ConvNextBuilder(op, ds.getName()).buildDownsample(ds);
    }
  }
};
} // namespace
