//===- LowerToKernels.cpp - sbp.model -> sbpk.graph @train and @eval ------===//
#include "ModelLayout.h"
#include "Passes.h"
#include "SbpKernel/KernelTable.h"

#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/SetVector.h"
#include "llvm/ADT/TypeSwitch.h"

#include <cmath>

namespace sbp {
#define GEN_PASS_DEF_SBPLOWERTOKERNELS
#include "Passes.h.inc"
} // namespace sbp

using namespace mlir;
using namespace sbp;

namespace {
static ArrayRef<int64_t> shapeOf(Value v) { return cast<RankedTensorType>(v.getType()).getShape(); }
static int64_t numel(Value v) { return cast<RankedTensorType>(v.getType()).getNumElements(); }
/// Rows of a tensor whose last dimension is the feature dimension.
static int64_t rowsOf(Value v) { return numel(v) / shapeOf(v).back(); }

/// Lowers the ops of one graph (train or eval), in model order.
class GraphLowering {
public:
  GraphLowering(ModelOp model, sbpk::GraphOp graph)
      : model(model), b(graph.getBlock().getTerminator()) {
    for (const ParamSlot &s : layoutParams(model))
      paramOffset[s.op] = s.offset;
    for (auto [i, g] : llvm::enumerate(maskGroups(model)))
      groupIndex[g.getSymName()] = i;
  }

  LogicalResult lower(ArrayRef<Operation *> ops) {
    for (Operation *op : ops)
      if (failed(lowerOp(op)))
        return failure();
    return success();
  }

  Value lookup(Value v) { return map.lookup(v); }

  /// The train graph fuses the loss with its gradient; eval has no gradient.
  bool includesBackward = false;

private:
  IntegerAttr i64(int64_t v) { return b.getI64IntegerAttr(v); }

  void tag(Operation *from, Operation *to) {
    if (from->hasAttr(kBackwardAttr))
      to->setAttr("bwd", b.getUnitAttr());
    if (auto r = from->getAttr(kRegionAttr))
      to->setAttr("region", r);
  }

  /// sbpk.kernel `name` with integer size attributes.
  Operation *kernel(Operation *from, StringRef name, ValueRange operands,
                    ArrayRef<std::pair<StringRef, int64_t>> sizes, TypeRange results) {
    SmallVector<Value> mapped;
    for (Value v : operands)
      mapped.push_back(map.lookup(v));
    auto op = b.create<sbpk::KernelOp>(from->getLoc(), results, b.getStringAttr(name), mapped);
    for (auto [attr, value] : sizes)
      op->setAttr(attr, i64(value));
    tag(from, op);
    return op;
  }

  void mapResults(Operation *from, Operation *to) {
    for (auto [a, c] : llvm::zip(from->getResults(), to->getResults()))
      map.map(a, c);
  }

  Value gemm(Operation *from, Value a, Value bb, int64_t m, int64_t n, int64_t k, bool ta, bool tb) {
    auto op = b.create<sbpk::GemmOp>(from->getLoc(), from->getResult(0).getType(), map.lookup(a),
                                     map.lookup(bb), Value(), i64(m), i64(n), i64(k),
                                     b.getBoolAttr(ta), b.getBoolAttr(tb), b.getF64FloatAttr(1.0),
                                     b.getF64FloatAttr(0.0));
    tag(from, op);
    return op;
  }

  /// The size attributes of a row gather/scatter between [B, T, D] and [B, K, D].
  SmallVector<std::pair<StringRef, int64_t>> rowSizes(Value full, Value keep) {
    auto s = shapeOf(full);
    return {{"batch", s[0]}, {"tokens", s[1]}, {"kept", shapeOf(keep)[0]}, {"n", s[2]}};
  }

  LogicalResult lowerOp(Operation *op);
  LogicalResult lowerAttention(AttentionOp a);
  LogicalResult lowerAttentionGrad(AttentionGradOp a);

  ModelOp model;
  OpBuilder b;
  IRMapping map;
  llvm::DenseMap<Operation *, int64_t> paramOffset;
  llvm::StringMap<int64_t> groupIndex;
  llvm::DenseSet<Operation *> fusedAway;
};

/// attention_fwd (every query over every key), or attention_fwd_sbp for a
/// drop_qkv map in the train graph (kept queries over kept keys). drop_query
/// and drop_head maps have the exact forward; eval never applies SBP.
LogicalResult GraphLowering::lowerAttention(AttentionOp a) {
  auto s = shapeOf(a.getQkv());
  SmallVector<std::pair<StringRef, int64_t>> sizes = {
      {"batch", s[0]}, {"tokens", s[1]}, {"heads", a.getHeadsAttr().getInt()}, {"head_dim", a.getHeadDim()}};
  bool restricted = includesBackward && a.getKeep() && a.getMode() == AttentionMode::drop_qkv;
  if (restricted)
    sizes.push_back({"kept", shapeOf(a.getKeep())[0]});
  SmallVector<Value> operands = {a.getQkv()};
  if (restricted)
    operands.push_back(a.getKeep());
  Operation *k = kernel(a, restricted ? sbpk::kernel::attention_fwd_sbp : sbpk::kernel::attention_fwd, operands, sizes, a->getResultTypes());
  k->setAttr("scale", b.getF64FloatAttr(a.getScale()));
  mapResults(a, k);
  return success();
}

/// The backward kernel of each mode (see sbp.attention_grad).
LogicalResult GraphLowering::lowerAttentionGrad(AttentionGradOp a) {
  auto s = shapeOf(a.getQkv());
  int64_t heads = a.getHeadsAttr().getInt(), headDim = s[2] / 3 / heads;
  SmallVector<std::pair<StringRef, int64_t>> sizes = {
      {"batch", s[0]}, {"tokens", s[1]}, {"heads", heads}, {"head_dim", headDim}};
  StringRef name = sbpk::kernel::attention_bwd;
  SmallVector<Value> operands = {a.getQkv(), a.getOut(), a.getLse(), a.getGrad()};
  if (std::optional<AttentionMode> mode = a.getMode()) {
    switch (*mode) {
    case AttentionMode::drop_qkv:
      name = sbpk::kernel::attention_bwd_rows;
      operands.push_back(a.getKeep());
      break;
    case AttentionMode::drop_head:
      name = sbpk::kernel::attention_bwd_heads;
      operands.push_back(a.getKeep());
      break;
    case AttentionMode::drop_query:
      name = sbpk::kernel::attention_bwd_queries;
      operands = {a.getQkv(), a.getKeep(), a.getOut(), a.getLse(), a.getGrad()};
      sizes.push_back({"kept", shapeOf(a.getKeep())[0]});
      break;
    }
  }
  Operation *k = kernel(a, name, operands, sizes, a->getResultTypes());
  k->setAttr("scale", b.getF64FloatAttr(1.0 / std::sqrt(static_cast<double>(headDim))));
  mapResults(a, k);
  return success();
}

LogicalResult GraphLowering::lowerOp(Operation *op) {
  if (fusedAway.count(op))
    return success();
  Location loc = op->getLoc();
  return llvm::TypeSwitch<Operation *, LogicalResult>(op)
      .Case([&](InputOp in) {
        map.map(in.getResult(), b.create<sbpk::InputOp>(loc, in.getType(), in.getNameAttr()));
        return success();
      })
      .Case([&](ParamOp p) {
        map.map(p.getResult(), b.create<sbpk::ParamOp>(loc, p.getType(), p.getNameAttr(), i64(paramOffset[p])));
        return success();
      })
      .Case([&](KeepIndicesOp k) {
        map.map(k.getResult(), b.create<sbpk::KeepIndicesOp>(loc, k.getType(), k.getMaskAttr(),
                                                            i64(groupIndex[k.getMask()])));
        return success();
      })
      .Case([&](PatchifyOp p) {
        auto s = shapeOf(p.getImage());
        mapResults(op, kernel(op, sbpk::kernel::patchify, p.getImage(),
                              {{"batch", s[0]}, {"channels", s[1]}, {"height", s[2]}, {"width", s[3]},
                               {"patch", p.getPatch()}},
                              p.getType()));
        return success();
      })
      .Case([&](LinearOp l) {
        auto w = shapeOf(l.getWeight());
        map.map(l.getResult(), gemm(op, l.getInput(), l.getWeight(), rowsOf(l.getInput()), w[0],
                                    linearInFeatures(w), false, true));
        return success();
      })
      .Case([&](LinearGradInputOp l) {
        auto w = shapeOf(l.getWeight());
        map.map(l.getResult(), gemm(op, l.getGrad(), l.getWeight(), rowsOf(l.getGrad()), linearInFeatures(w), w[0],
                                    false, false));
        return success();
      })
      .Case([&](LinearGradWeightOp l) {
        // dW[N, K] = dy^T x, summed over the (possibly only kept) rows.
        int64_t n = shapeOf(l.getGrad()).back(), k = shapeOf(l.getInput()).back();
        map.map(l.getResult(), gemm(op, l.getGrad(), l.getInput(), n, k, rowsOf(l.getInput()), true, false));
        return success();
      })
      .Case<BiasAddOp, BiasGradOp, LayerNormOp, LayerNormGradOp>([&](Operation *) {
        Value x = op->getOperand(0);
        StringRef name = isa<BiasAddOp>(op)      ? sbpk::kernel::bias_add
                         : isa<BiasGradOp>(op)   ? sbpk::kernel::bias_grad
                         : isa<LayerNormOp>(op)  ? sbpk::kernel::layer_norm
                                                 : sbpk::kernel::layer_norm_grad;
        Operation *k = kernel(op, name, op->getOperands(), {{"rows", rowsOf(x)}, {"n", shapeOf(x).back()}},
                              op->getResultTypes());
        if (auto eps = op->getAttr("eps"))
          k->setAttr("eps", eps);
        mapResults(op, k);
        return success();
      })
      .Case<PosAddOp, PosGradOp, MeanTokensOp>([&](Operation *) {
        auto s = shapeOf(op->getOperand(0));
        StringRef name = isa<PosAddOp>(op) ? sbpk::kernel::pos_add : isa<PosGradOp>(op) ? sbpk::kernel::pos_grad : sbpk::kernel::mean_tokens;
        mapResults(op, kernel(op, name, op->getOperands(), {{"batch", s[0]}, {"tokens", s[1]}, {"n", s[2]}},
                              op->getResultTypes()));
        return success();
      })
      .Case([&](MeanTokensGradOp m) {
        auto s = shapeOf(m.getResult());
        mapResults(op, kernel(op, sbpk::kernel::mean_tokens_grad, m.getGrad(), {{"batch", s[0]}, {"tokens", s[1]}, {"n", s[2]}},
                              m.getType()));
        return success();
      })
      .Case<GeluOp, ReluOp, GeluGradOp, ReluGradOp, AddOp>([&](Operation *) {
        StringRef name = isa<GeluOp>(op)       ? sbpk::kernel::gelu
                         : isa<ReluOp>(op)     ? sbpk::kernel::relu
                         : isa<GeluGradOp>(op) ? sbpk::kernel::gelu_grad
                         : isa<ReluGradOp>(op) ? sbpk::kernel::relu_grad
                                               : sbpk::kernel::add;
        mapResults(op, kernel(op, name, op->getOperands(), {{"n", numel(op->getResult(0))}}, op->getResultTypes()));
        return success();
      })
      .Case([&](ClsConcatOp c) {
        auto s = shapeOf(c.getInput());
        mapResults(op, kernel(op, sbpk::kernel::cls_concat, op->getOperands(), {{"batch", s[0]}, {"tokens", s[1]}, {"n", s[2]}},
                              c.getType()));
        return success();
      })
      .Case([&](ClsConcatGradOp c) {
        auto s = shapeOf(c.getGradInput());
        mapResults(op, kernel(op, sbpk::kernel::cls_concat_grad, c.getGrad(), {{"batch", s[0]}, {"tokens", s[1]}, {"n", s[2]}},
                              op->getResultTypes()));
        return success();
      })
      .Case<TakeTokenOp, TakeTokenGradOp>([&](Operation *) {
        bool grad = isa<TakeTokenGradOp>(op);
        auto s = shapeOf(grad ? op->getResult(0) : op->getOperand(0));
        int64_t index = op->getAttrOfType<IntegerAttr>("index").getInt();
        mapResults(op, kernel(op, grad ? sbpk::kernel::take_token_grad : sbpk::kernel::take_token, op->getOperands(),
                              {{"batch", s[0]}, {"tokens", s[1]}, {"n", s[2]}, {"index", index}},
                              op->getResultTypes()));
        return success();
      })
      .Case([&](AttentionOp a) { return lowerAttention(a); })
      .Case([&](AttentionGradOp a) { return lowerAttentionGrad(a); })
      .Case([&](CrossEntropyOp ce) {
        auto s = shapeOf(ce.getLogits());
        // Fuse the loss with its gradient: one pass over the logits.
        CrossEntropyGradOp grad;
        for (Operation *user : ce.getLogits().getUsers())
          if (auto g = dyn_cast<CrossEntropyGradOp>(user); g && g->getBlock() == op->getBlock())
            grad = g;
        if (grad && includesBackward) {
          Operation *k = kernel(op, sbpk::kernel::softmax_xent_grad, ce->getOperands(), {{"batch", s[0]}, {"classes", s[1]}},
                                {ce.getType(), grad.getType()});
          map.map(ce.getLoss(), k->getResult(0));
          map.map(grad.getResult(), k->getResult(1));
          fusedAway.insert(grad);
          return success();
        }
        mapResults(op, kernel(op, sbpk::kernel::softmax_xent, ce->getOperands(), {{"batch", s[0]}, {"classes", s[1]}},
                              ce.getType()));
        return success();
      })
      .Case([&](GradGateOp g) { // identity in the forward
        map.map(g.getResult(), map.lookup(g.getInput()));
        return success();
      })
      .Case<MaskRowsOp, GatherRowsOp>([&](Operation *) {
        Value keep = op->getOperand(1);
        mapResults(op, kernel(op, isa<MaskRowsOp>(op) ? sbpk::kernel::mask_rows : sbpk::kernel::gather_rows, op->getOperands(),
                              rowSizes(op->getOperand(0), keep), op->getResultTypes()));
        return success();
      })
      .Case([&](ScatterRowsOp s) {
        mapResults(op, kernel(op, sbpk::kernel::scatter_rows, op->getOperands(), rowSizes(s.getResult(), s.getKeep()),
                              s.getType()));
        return success();
      })
      .Case([&](ScatterAddRowsOp s) {
        mapResults(op, kernel(op, sbpk::kernel::scatter_add_rows, op->getOperands(), rowSizes(s.getBase(), s.getKeep()),
                              s.getType()));
        return success();
      })
      // ConvNeXt: the grid ops take the channels-last image sizes (of the
      // input for space_to_depth and its gradient).
      .Case<DwConvOp, DwConvGradInputOp, DwConvGradWeightOp>([&](Operation *) {
        auto s = shapeOf(op->getOperand(0));
        auto grid = op->getAttrOfType<DenseI64ArrayAttr>("grid").asArrayRef();
        Value w = isa<DwConvGradWeightOp>(op) ? op->getResult(0) : op->getOperand(1);
        StringRef name = isa<DwConvOp>(op)            ? sbpk::kernel::dwconv
                         : isa<DwConvGradInputOp>(op) ? sbpk::kernel::dwconv_grad_input
                                                      : sbpk::kernel::dwconv_grad_weight;
        mapResults(op, kernel(op, name, op->getOperands(),
                              {{"batch", s[0]}, {"height", grid[0]}, {"width", grid[1]}, {"channels", s[2]},
                               {"kernel", shapeOf(w)[2]}},
                              op->getResultTypes()));
        return success();
      })
      .Case<SpaceToDepthOp, SpaceToDepthGradOp>([&](Operation *) {
        bool grad = isa<SpaceToDepthGradOp>(op);
        auto s = shapeOf(grad ? op->getResult(0) : op->getOperand(0));
        auto grid = op->getAttrOfType<DenseI64ArrayAttr>("grid").asArrayRef();
        int64_t block = op->getAttrOfType<IntegerAttr>("block").getInt();
        mapResults(op, kernel(op, grad ? sbpk::kernel::space_to_depth_grad : sbpk::kernel::space_to_depth,
                              op->getOperands(),
                              {{"batch", s[0]}, {"height", grid[0]}, {"width", grid[1]}, {"channels", s[2]},
                               {"block", block}},
                              op->getResultTypes()));
        return success();
      })
      .Case<LayerScaleOp, LayerScaleGradOp>([&](Operation *) {
        Value x = isa<LayerScaleOp>(op) ? op->getOperand(0) : op->getOperand(1);
        mapResults(op, kernel(op, isa<LayerScaleOp>(op) ? sbpk::kernel::layer_scale : sbpk::kernel::layer_scale_grad,
                              op->getOperands(), {{"rows", rowsOf(x)}, {"n", shapeOf(x).back()}},
                              op->getResultTypes()));
        return success();
      })
      .Case([&](DropPathOp dp) {
        // Stochastic depth is training-only: eval (no backward) is the identity.
        if (!includesBackward || !dp.getKeep()) {
          map.map(dp.getResult(), map.lookup(dp.getInput()));
          return success();
        }
        auto s = shapeOf(dp.getInput());
        Operation *k = kernel(op, sbpk::kernel::drop_path, op->getOperands(),
                              {{"batch", s[0]}, {"kept", shapeOf(dp.getKeep())[0]}, {"n", numel(dp.getInput()) / s[0]}},
                              dp.getType());
        k->setAttr("scale", b.getF64FloatAttr(dp.getScale()));
        mapResults(op, k);
        return success();
      })
      .Case([&](ParamGradOp pg) {
        ParamOp param;
        for (ParamOp p : model.getBlock().getOps<ParamOp>())
          if (p.getName() == pg.getName())
            param = p;
        if (!param)
          return LogicalResult(pg.emitOpError("names no parameter"));
        b.create<sbpk::GradOutOp>(loc, pg.getNameAttr(), i64(paramOffset[param]), map.lookup(pg.getGrad()));
        return success();
      })
      .Default([&](Operation *) {
        if (isa<MaskGroupOp, OutputOp>(op))
          return success();
        return LogicalResult(
            op->emitOpError("cannot be lowered to kernels (run sbp-insert-masks and sbp-autodiff first)"));
      });
}

struct LowerToKernelsPass : sbp::impl::SbpLowerToKernelsBase<LowerToKernelsPass> {
  void runOnOperation() override {
    SmallVector<ModelOp> models(getOperation().getOps<ModelOp>());
    for (ModelOp model : models)
      if (failed(lowerModel(model)))
        return signalPassFailure();
  }

  sbpk::GraphOp makeGraph(ModelOp model, StringRef name) {
    OpBuilder b(model->getContext());
    b.setInsertionPointAfter(model);
    auto graph = b.create<sbpk::GraphOp>(model.getLoc(), b.getStringAttr(name), IntegerAttr());
    graph.getBody().emplaceBlock();
    b.setInsertionPointToEnd(&graph.getBlock());
    b.create<sbpk::ReturnOp>(model.getLoc());
    return graph;
  }

  LogicalResult lowerModel(ModelOp model) {
    OutputOp out = model.getOutput();
    SmallVector<Operation *> all;
    for (Operation &op : model.getBlock().without_terminator())
      all.push_back(&op);

    // train: everything; returns the loss.
    sbpk::GraphOp train = makeGraph(model, "train");
    GraphLowering trainLowering(model, train);
    trainLowering.includesBackward = true;
    if (failed(trainLowering.lower(all)))
      return failure();
    setReturn(train, {trainLowering.lookup(out.getLoss())});

    // eval: the forward slice of the loss and the logits, no SBP, no backward.
    llvm::SetVector<Operation *> needed;
    SmallVector<Value> work = {out.getLoss(), out.getLogits()};
    while (!work.empty()) {
      Operation *def = work.pop_back_val().getDefiningOp();
      if (!def || !needed.insert(def))
        continue;
      llvm::append_range(work, def->getOperands());
    }
    SmallVector<Operation *> evalOps;
    for (Operation *op : all)
      if (needed.count(op) && !isa<KeepIndicesOp>(op))
        evalOps.push_back(op);
    sbpk::GraphOp eval = makeGraph(model, "eval");
    GraphLowering evalLowering(model, eval);
    if (failed(evalLowering.lower(evalOps)))
      return failure();
    setReturn(eval, {evalLowering.lookup(out.getLoss()), evalLowering.lookup(out.getLogits())});
    // Graphs in order train, eval after the model.
    eval->moveAfter(train);
    return success();
  }

  void setReturn(sbpk::GraphOp graph, ArrayRef<Value> values) {
    graph.getBlock().getTerminator()->setOperands(values);
  }
};
} // namespace
