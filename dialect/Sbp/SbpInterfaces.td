//===- SbpInterfaces.td - op interfaces of the sbp dialect -*- tablegen -*-===//
#ifndef SBP_INTERFACES_TD
#define SBP_INTERFACES_TD

include "mlir/IR/OpBase.td"

def Sbp_GradientOpInterface : OpInterface<"GradientOpInterface"> {
  let cppNamespace = "::sbp";
  let description = [{
    The reverse-mode rule of an op (the Enzyme-MLIR / TVM Relax `Gradient`
    pattern). `sbp-autodiff` walks the forward graph backwards and asks each op
    for the gradients of its operands given the gradients of its results.
  }];
  let methods = [
    InterfaceMethod<[{
        Builds the gradient of every operand. `resultGrads[i]` is the gradient
        of result i, or a null Value when nothing depends on it. On return
        `operandGrads[j]` holds the gradient of operand j, or a null Value
        where the operand needs none (integer inputs, or a zero gradient).
      }], "::mlir::LogicalResult", "buildGradient",
      (ins "::mlir::OpBuilder &":$builder,
           "::mlir::ArrayRef<::mlir::Value>":$resultGrads,
           "::llvm::SmallVectorImpl<::mlir::Value> &":$operandGrads)>
  ];
}

def Sbp_RowWiseOpInterface : OpInterface<"RowWiseOpInterface"> {
  let cppNamespace = "::sbp";
  let description = [{
    An op that computes each token row of its row-tensor results ([B, T, ...])
    from the same token row of its row-tensor operands only; results that are
    not row tensors (a weight gradient, a bias gradient) are sums over rows.
    `sbp-prune-backward` may therefore run it on the compact kept rows
    [B, K, ...] alone: a dropped row contributes nothing to any result.
  }];
  let methods = [
    InterfaceMethod<"Creates this op on rows restricted to the given operands; "
      "result types are rebuilt with the row count of the row operands.",
      "::mlir::Operation *", "cloneOnRows",
      (ins "::mlir::OpBuilder &":$builder, "::mlir::ValueRange":$operands,
           "int64_t":$rows),
      [{}], [{
        ::mlir::OperationState state($_op->getLoc(), $_op->getName());
        state.addOperands(operands);
        state.addAttributes($_op->getAttrs());
        for (::mlir::Type t : $_op->getResultTypes())
          state.addTypes(::sbp::withRowCount(t, rows));
        return builder.create(state);
      }]>
  ];
}

#endif // SBP_INTERFACES_TD
