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

struct DecomposePass : sbp::impl::SbpDecomposeBase<DecomposePass> {
  void runOnOperation() override {
    SmallVector<VitBlockOp> blocks;
    getOperation().walk([&](VitBlockOp op) { blocks.push_back(op); });
    for (VitBlockOp block : blocks)
      BlockBuilder(block).build();
  }
};
} // namespace
