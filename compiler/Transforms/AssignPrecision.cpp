//===- AssignPrecision.cpp - element types of the kernel graph (bf16) -----===//
//
// With precision=bf16 the kernel graph keeps what PyTorch autocast keeps in
// float32 and stores the rest in bfloat16:
//
//  * float32: parameters (the master weights) and their gradients, the loss
//    and the returned logits, the residual stream and its gradient (results of
//    add, pos_add, cls_concat, scatter_add_rows, the LayerNorm input
//    gradient of a float32 input), attention log-sum-exps, and reductions
//    into parameters;
//  * bfloat16: every other activation and activation gradient: GEMM results,
//    LayerNorm outputs, GELU, attention outputs, patches, the loss gradient,
//    the LayerNorm input gradient of a bf16 input (autocast's gradient of a
//    bf16 tensor is bf16: ConvNeXt's block LayerNorm reads the depth-wise
//    convolution's bf16 output, so the convolution's backward reads a bf16 dy).
//
// GEMMs read bfloat16 only: a float32 operand gets a `cast` kernel (one per
// parameter and graph: the bf16 weight copy of the step); so does the bias of
// a bias epilogue with a bf16 output (cuBLASLt wants the output's type). The
// depth-wise convolution reads a bf16 input too (autocast casts conv2d's
// input): its forward and its weight gradient share one bf16 copy of the
// float32 residual stream, which sbp-fuse-kernels writes in the pass that
// makes the stream, and the backward keeps that half-size copy instead of the
// float32 one. Row gathers and scatters, drop paths and the class token's
// row (take_token and its gradient) keep their input's type. Kernels compute
// in float32 whatever they store; the CUDA kernel library has an overload for
// each combination.
//
//===----------------------------------------------------------------------===//
#include "Passes.h"
#include "SbpKernel/KernelTable.h"

#include "llvm/ADT/StringSet.h"

namespace sbp {
#define GEN_PASS_DEF_SBPASSIGNPRECISION
#include "Passes.h.inc"
} // namespace sbp

using namespace mlir;

namespace {
Type withElementType(Type t, Type element) {
  auto rt = cast<RankedTensorType>(t);
  return RankedTensorType::get(rt.getShape(), element);
}

bool isF32(Value v) { return cast<RankedTensorType>(v.getType()).getElementType().isF32(); }

/// Kernels whose every result stays float32: the residual stream and
/// reductions whose results are parameter gradients.
namespace k = sbpk::kernel;
const llvm::StringSet<> kFloatKernels = {k::add,       k::gemm_bias_residual, k::pos_add,
                                         k::cls_concat, k::scatter_add_rows,   k::bias_grad,
                                         k::pos_grad,   k::softmax_xent,       k::fill};
/// Kernels whose result has the type of their first operand.
/// (take_token: a class token's row of the residual stream stays float32
/// where sbp-sink-take-token moved the read above the residual adds.)
const llvm::StringSet<> kTypeFollowing = {k::gather_rows, k::scatter_rows, k::mask_rows,
                                          k::drop_path,   k::take_token,   k::take_token_grad};

class GraphPrecision {
public:
  explicit GraphPrecision(sbpk::GraphOp graph) : graph(graph), b(graph.getContext()) {}

  void run() {
    Type bf16 = b.getBF16Type(), f32 = b.getF32Type();
    for (Operation &op : graph.getBlock())
      if (isa<sbpk::KernelOp, sbpk::GemmOp>(op))
        for (OpResult r : op.getResults())
          r.setType(withElementType(r.getType(), keepsFloat(r) ? f32 : bf16));
    // GEMM operands are bf16; a bias epilogue's bias has the output's type;
    // the depth-wise convolution's input is bf16.
    // (Collected first: the casts are inserted into the block.)
    SmallVector<OpOperand *> bf16Reads;
    for (Operation &op : graph.getBlock())
      for (OpOperand &operand : op.getOpOperands())
        if (readsBf16(&op, operand.getOperandNumber()) && isF32(operand.get()))
          bf16Reads.push_back(&operand);
    for (OpOperand *operand : bf16Reads)
      operand->set(castToBf16(operand->get(), operand->getOwner()));
  }

  /// Whether operand i of op is read as bf16: a GEMM's A and B, a bias
  /// epilogue's bias when the output is bf16, the depth-wise convolution's
  /// input x (operand 0 of dwconv, 1 of dwconv_grad_weight (dy, x), 2 of
  /// dwconv_grad_weight_rows (dyk, idx, x)).
  static bool readsBf16(Operation *op, unsigned i) {
    if (isa<sbpk::GemmOp>(op))
      return i < 2;
    if (isGemmKernel(op))
      return i < 2 || (i == 2 && !isF32(op->getResult(0)));
    auto k = dyn_cast<sbpk::KernelOp>(op);
    if (!k)
      return false;
    StringRef callee = k.getCallee();
    return (callee == sbpk::kernel::dwconv && i == 0) ||
           (callee == sbpk::kernel::dwconv_grad_weight && i == 1) ||
           (callee == sbpk::kernel::dwconv_grad_weight_rows && i == 2);
  }

  static bool isGemmKernel(Operation *op) {
    auto k = dyn_cast<sbpk::KernelOp>(op);
    return k && k.getCallee().starts_with("gemm");
  }

private:
  bool keepsFloat(OpResult r) {
    for (Operation *user : r.getUsers())
      if (isa<sbpk::GradOutOp, sbpk::ReturnOp>(user))
        return true;
    Operation *op = r.getOwner();
    auto k = dyn_cast<sbpk::KernelOp>(op);
    if (!k)
      return false; // a GEMM result that is not a parameter gradient
    StringRef callee = k.getCallee();
    if (kFloatKernels.contains(callee))
      return true;
    if (kTypeFollowing.contains(callee))
      return isF32(k.getOperand(0));
    if (callee == sbpk::kernel::cls_concat_grad)
      return r.getResultNumber() == 1; // dcls; dx feeds GEMMs
    if (callee == sbpk::kernel::layer_norm_grad)
      return r.getResultNumber() != 0 || isF32(k.getOperand(0)); // dx has x's type
    if (callee.starts_with(sbpk::kernel::attention_fwd))
      return r.getResultNumber() == 1; // lse
    return false;
  }

  /// One bf16 copy per float32 value: a parameter's right after it, so that
  /// forward and backward GEMMs share it; anything else right before its use.
  Value castToBf16(Value v, Operation *user) {
    Value &slot = casts[v];
    if (slot)
      return slot;
    Operation *def = v.getDefiningOp();
    if (isa<sbpk::ParamOp>(def))
      b.setInsertionPointAfter(def);
    else
      b.setInsertionPoint(user);
    auto op = b.create<sbpk::KernelOp>(user->getLoc(), TypeRange{withElementType(v.getType(), b.getBF16Type())},
                                       b.getStringAttr(sbpk::kernel::cast), ValueRange{v});
    op->setAttr("n", b.getI64IntegerAttr(cast<RankedTensorType>(v.getType()).getNumElements()));
    if (user->hasAttr("bwd") && !isa<sbpk::ParamOp>(def))
      op->setAttr("bwd", b.getUnitAttr());
    slot = op->getResult(0);
    return slot;
  }

  sbpk::GraphOp graph;
  OpBuilder b;
  llvm::DenseMap<Value, Value> casts;
};

struct AssignPrecisionPass : sbp::impl::SbpAssignPrecisionBase<AssignPrecisionPass> {
  using SbpAssignPrecisionBase::SbpAssignPrecisionBase;

  void runOnOperation() override {
    if (precision == "fp32")
      return;
    if (precision != "bf16") {
      getOperation().emitError("unknown precision '") << precision << "': use fp32 or bf16";
      return signalPassFailure();
    }
    for (sbpk::GraphOp graph : getOperation().getOps<sbpk::GraphOp>())
      GraphPrecision(graph).run();
  }
};
} // namespace
