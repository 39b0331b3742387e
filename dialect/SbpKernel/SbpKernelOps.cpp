//===- SbpKernelOps.cpp - the sbpk kernel-graph dialect -------------------===//
#include "SbpKernel/SbpKernelDialect.h"
#include "SbpKernel/KernelTable.h"

using namespace mlir;
using namespace sbpk;

#include "SbpKernel/SbpKernelOpsDialect.cpp.inc"
#define GET_OP_CLASSES
#include "SbpKernel/SbpKernelOps.cpp.inc"

void SbpkDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "SbpKernel/SbpKernelOps.cpp.inc"
      >();
}

GradOutOp sbpk::getGradOutUser(Value value) {
  for (Operation *user : value.getUsers())
    if (auto g = dyn_cast<GradOutOp>(user))
      return g;
  return {};
}

int64_t sbpk::byteSize(Type type) {
  auto t = cast<RankedTensorType>(type);
  return t.getNumElements() * ((t.getElementTypeBitWidth() + 7) / 8);
}

static int64_t numElements(Value v) { return cast<RankedTensorType>(v.getType()).getNumElements(); }

LogicalResult GemmOp::verify() {
  int64_t m = getM(), n = getN(), k = getK();
  if (m <= 0 || n <= 0 || k <= 0)
    return emitOpError("sizes must be positive");
  // Bounded first, so that the products below cannot overflow.
  if (m > sbp::kMaxTensorElements || n > sbp::kMaxTensorElements || k > sbp::kMaxTensorElements)
    return emitOpError("sizes must be at most ") << sbp::kMaxTensorElements;
  if (numElements(getA()) != m * k || numElements(getB()) != k * n || numElements(getResult()) != m * n)
    return emitOpError("operand sizes do not match m = ") << m << ", n = " << n << ", k = " << k;
  if (getCIn() && numElements(getCIn()) != m * n)
    return emitOpError("accumulator must have m * n elements");
  return success();
}

LogicalResult KernelOp::verify() {
  const KernelInfo *info = lookupKernel(getCallee());
  if (!info)
    return emitOpError("unknown kernel '") << getCallee() << "'";
  if (getOperands().size() != info->numOperands || getResults().size() != info->numResults)
    return emitOpError("kernel '") << getCallee() << "' takes " << info->numOperands
                                   << " operands and " << info->numResults << " results";
  for (StringRef attr : info->sizeAttrs)
    if (!(*this)->getAttrOfType<IntegerAttr>(attr))
      return emitOpError("kernel '") << getCallee() << "' needs the integer attribute '" << attr << "'";
  return success();
}
