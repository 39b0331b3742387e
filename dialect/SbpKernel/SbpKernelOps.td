//===- SbpKernelOps.td - the sbpk kernel-graph dialect ----*- tablegen -*-===//
//
// The target-neutral kernel graph: what `sbp-lower-to-kernels` produces from
// the joint forward+backward `sbp` model and what the CPU and CUDA emitters
// consume. Each op is one kernel launch with static sizes; values are tensors
// living in one arena at offsets chosen by `sbp-plan-memory`
// (`arena_offsets`, one per result), or in the parameter/gradient buffers.
//
//===----------------------------------------------------------------------===//
#ifndef SBPK_OPS_TD
#define SBPK_OPS_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/SymbolInterfaces.td"
include "mlir/Interfaces/SideEffectInterfaces.td"

def Sbpk_Dialect : Dialect {
  let name = "sbpk";
  let cppNamespace = "::sbpk";
  let summary = "The kernel graph: one op per kernel launch, static sizes";
}

// Static, positive sizes that fit the kernels (TensorLimits.h).
def Sbpk_SizedTensors : NativeOpTrait<"SizedTensors"> { let cppNamespace = "::sbp"; }

class Sbpk_Op<string mnemonic, list<Trait> traits = []>
    : Op<Sbpk_Dialect, mnemonic, !listconcat(traits, [Sbpk_SizedTensors])>;

def Sbpk_GraphOp : Sbpk_Op<"graph", [Symbol, IsolatedFromAbove,
    SingleBlockImplicitTerminator<"ReturnOp">]> {
  let summary = "one step function: `train` (forward + backward) or `eval`";
  let description = [{
    Runs its ops in order. `arena_bytes` (set by `sbp-plan-memory`) is the
    size of the scratch arena the step needs.
  }];
  let arguments = (ins SymbolNameAttr:$sym_name, OptionalAttr<I64Attr>:$arena_bytes);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = "$sym_name attr-dict-with-keyword $body";
  let extraClassDeclaration = [{
    ::mlir::Block &getBlock() { return getBody().front(); }
  }];
}

def Sbpk_ReturnOp : Sbpk_Op<"return", [Terminator, HasParent<"GraphOp">]> {
  let summary = "the step's loss, and the logits (eval)";
  let arguments = (ins Variadic<AnyRankedTensor>:$values);
  let assemblyFormat = "($values^ `:` type($values))? attr-dict";
  let builders = [OpBuilder<(ins), [{ }]>];
}

def Sbpk_ParamOp : Sbpk_Op<"param", [Pure]> {
  let summary = "a view of a parameter in the parameter buffer";
  let arguments = (ins StrAttr:$name, I64Attr:$offset);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$name `at` $offset attr-dict `:` type($result)";
}

def Sbpk_InputOp : Sbpk_Op<"input", [Pure]> {
  let summary = "the step's `images` or `labels`";
  let arguments = (ins StrAttr:$name);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$name attr-dict `:` type($result)";
}

def Sbpk_KeepIndicesOp : Sbpk_Op<"keep_indices", [Pure]> {
  let summary = "the kept token indices of mask group number `group`";
  let arguments = (ins FlatSymbolRefAttr:$mask, I64Attr:$group);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$mask `group` $group attr-dict `:` type($result)";
}

def Sbpk_GemmOp : Sbpk_Op<"gemm", [Pure]> {
  let summary = "C[m, n] = alpha op(A)[m, k] op(B)[k, n] (+ beta C_in), row-major";
  let description = [{
    Row-major with packed strides; `trans_a`/`trans_b` select op(X) = X^T.
    Leading dimensions of token tensors are flattened into `m`. A pruned
    backward GEMM has m = B * K (kept rows), or k = B * K for a weight gradient.
    With a third operand, C = ... + beta * C_in.
  }];
  let arguments = (ins AnyRankedTensor:$a, AnyRankedTensor:$b,
                       Optional<AnyRankedTensor>:$c_in,
                       I64Attr:$m, I64Attr:$n, I64Attr:$k,
                       BoolAttr:$trans_a, BoolAttr:$trans_b,
                       F64Attr:$alpha, F64Attr:$beta);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$a `,` $b (`,` $c_in^)? attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Sbpk_KernelOp : Sbpk_Op<"kernel", [Pure]> {
  let summary = "a generated non-GEMM kernel (elementwise, row reduction, gather/scatter)";
  let description = [{
    `callee` names one kernel of the fixed kernel table (KernelTable.cpp):
    it fixes the operand and result counts and the size attributes each
    emitter reads (`rows`, `n`, `batch`, `tokens`, `kept`, `eps`, ...).
  }];
  let arguments = (ins StrAttr:$callee, Variadic<AnyRankedTensor>:$operands);
  let results = (outs Variadic<AnyRankedTensor>:$results);
  let assemblyFormat = "$callee `(` $operands `)` attr-dict `:` functional-type($operands, $results)";
  let hasVerifier = 1;
}

def Sbpk_GradOutOp : Sbpk_Op<"grad_out"> {
  let summary = "a parameter's gradient: its producer writes it to the gradient buffer";
  let arguments = (ins StrAttr:$name, I64Attr:$offset, AnyRankedTensor:$grad);
  let assemblyFormat = "$name `at` $offset `,` $grad attr-dict `:` type($grad)";
}


def Sbpk_FusedOp : Sbpk_Op<"fused", [IsolatedFromAbove, SingleBlock]> {
  let summary = "a fusion group: several kernels generated as one launch";
  let description = [{
    Made by `sbp-fuse-kernels`. The body holds `sbpk.kernel` ops over the
    block arguments (one per operand) and ends in `sbpk.yield` with the
    values that leave the group; every other value of the body stays in
    registers. `kind` is the generated kernel's shape class:

    - `elementwise`: ops over tensors of one element count (and bias
      vectors broadcast over rows), one pass over memory;
    - `rowwise`: a LayerNorm backward with its sibling recompute and the
      elementwise ops on its rows (residual add, cast), one warp per row,
      the column sums (dgamma, dbeta) reduced deterministically;
    - `multi_cast`: the float32 -> bf16 copies of many parameters in one
      launch.

    `name` says what was fused (Inductor style); the emitter names the
    generated kernel after it.

    ```mlir
    %r:2 = sbpk.fused "fused_gelu_gelu_grad" elementwise (%h, %dg) : (...) -> (...) {
    ^bb0(%a: tensor<...>, %b: tensor<...>):
      %0 = sbpk.kernel "gelu"(%a) {n = 1024 : i64} : ...
      %1 = sbpk.kernel "gelu_grad"(%a, %b) {n = 1024 : i64} : ...
      sbpk.yield %0, %1 : ...
    }
    ```
  }];
  let arguments = (ins StrAttr:$name, StrAttr:$kind, Variadic<AnyRankedTensor>:$inputs);
  let results = (outs Variadic<AnyRankedTensor>:$results);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = "$name $kind `(` $inputs `)` attr-dict `:` functional-type($inputs, $results) $body";
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    ::mlir::Block &getBlock() { return getBody().front(); }
  }];
}

def Sbpk_YieldOp : Sbpk_Op<"yield", [Pure, Terminator, HasParent<"FusedOp">]> {
  let summary = "the values that leave a fusion group";
  let arguments = (ins Variadic<AnyRankedTensor>:$values);
  let assemblyFormat = "($values^ `:` type($values))? attr-dict";
}

#endif // SBPK_OPS_TD
