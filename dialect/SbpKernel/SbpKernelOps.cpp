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
  // Every attribute the library call reads, unless the table gives a default.
  for (const KernelArg &arg : info->args) {
    bool present = true;
    StringRef what;
    switch (arg.kind) {
    case KernelArg::Size:
      present = bool((*this)->getAttrOfType<IntegerAttr>(arg.attr)), what = "integer";
      break;
    case KernelArg::F32:
      present = arg.hasDefault || (*this)->getAttrOfType<FloatAttr>(arg.attr), what = "float";
      break;
    case KernelArg::Flag:
      present = bool((*this)->getAttrOfType<BoolAttr>(arg.attr)), what = "bool";
      break;
    default:
      break;
    }
    if (!present)
      return emitOpError("kernel '") << getCallee() << "' needs the " << what << " attribute '" << arg.attr << "'";
  }
  return success();
}

LogicalResult FusedOp::verify() {
  Block &body = getBlock();
  if (body.getNumArguments() != getInputs().size())
    return emitOpError("body takes ") << body.getNumArguments() << " arguments for " << getInputs().size()
                                      << " operands";
  for (auto [arg, in] : llvm::zip(body.getArguments(), getInputs()))
    if (arg.getType() != in.getType())
      return emitOpError("body argument type ") << arg.getType() << " does not match operand type " << in.getType();
  auto yield = dyn_cast<YieldOp>(body.getTerminator());
  if (!yield)
    return emitOpError("body must end in sbpk.yield");
  if (yield.getValues().getTypes() != getResultTypes())
    return emitOpError("yielded types do not match the results");
  for (Operation &op : body.without_terminator())
    if (!isa<KernelOp>(op))
      return op.emitOpError("cannot be fused: a fusion group holds sbpk.kernel ops only");
  StringRef kind = getKind();
  if (kind != "elementwise" && kind != "rowwise" && kind != "multi_cast")
    return emitOpError("unknown fusion kind '") << kind << "' (elementwise, rowwise or multi_cast)";
  return success();
}
