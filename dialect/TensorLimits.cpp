//===- TensorLimits.cpp - the sizes a model may have ----------------------===//
#include "TensorLimits.h"

#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Diagnostics.h"

using namespace mlir;

/// Checks one operand's or result's type; `what` is "operand #0" or "result #1".
static LogicalResult verifySize(Operation *op, Type type, const Twine &what) {
  auto tensor = dyn_cast<RankedTensorType>(type);
  if (!tensor)
    return success();
  int64_t elements = 1;
  for (int64_t dim : tensor.getShape()) {
    if (ShapedType::isDynamic(dim))
      return op->emitOpError() << what << " needs a static shape, got " << type;
    if (dim <= 0)
      return op->emitOpError() << what << " has a dimension of size " << dim << " (" << type
                               << "): every size must be positive";
    // elements <= kMaxTensorElements here, so the test cannot overflow.
    if (dim > sbp::kMaxTensorElements / elements)
      return op->emitOpError() << what << " " << type << " has more than " << sbp::kMaxTensorElements
                               << " elements, the most a tensor may hold";
    elements *= dim;
  }
  return success();
}

LogicalResult sbp::verifyTensorSizes(Operation *op) {
  for (auto [i, type] : llvm::enumerate(op->getOperandTypes()))
    if (failed(verifySize(op, type, "operand #" + Twine(i))))
      return failure();
  for (auto [i, type] : llvm::enumerate(op->getResultTypes()))
    if (failed(verifySize(op, type, "result #" + Twine(i))))
      return failure();
  return success();
}
