//===- SbpDialect.td - the sbp dialect, its attributes and enums -*- tablegen -*-===//
//
// The `sbp` dialect describes a network to be trained: its inputs, parameters,
// forward ops, the optimizer, and the Stochastic Backpropagation (SBP)
// annotations (mask groups, and the residual branches they apply to). Passes
// add the backward ops of the same dialect (autodiff, SBP, pruning) before the
// graph is lowered to the `sbpk` kernel graph.
//
//===----------------------------------------------------------------------===//
#ifndef SBP_DIALECT_TD
#define SBP_DIALECT_TD

include "mlir/IR/OpBase.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

def Sbp_Dialect : Dialect {
  let name = "sbp";
  let cppNamespace = "::sbp";
  let summary = "Models annotated for Stochastic Backpropagation training";
  let description = [{
    A model is an `sbp.model` holding named inputs (`sbp.input`), parameters
    (`sbp.param`, with shape and initializer), forward ops on ranked f32
    tensors, and one `sbp.output` naming the loss and the logits. The
    optimizer is an attribute of the model. SBP is declared with
    `sbp.mask_group` (keep ratio, `grid` | `random` token grid, or `heads`)
    and applied to token-wise residual branches with `sbp.branch` and to
    attention maps with `sbp.attention ... sbp @group mode`, which refer to a
    mask group. Composite ops (`sbp.vit_block`) are expanded into these by
    `sbp-decompose`.

    Sizes are static and positive, and no tensor holds more than 2^31 - 1
    elements, nor does a mask group cover more than 2^31 - 1 tokens (the
    kernels' and keep indices' 32-bit sizes): every op's verifier checks
    this (the `SizedTensors` trait) before its own rules.
  }];
  let useDefaultAttributePrinterParser = 1;
}

// Static, positive sizes that fit the kernels (TensorLimits.h), checked
// before each op's own verifier.
def Sbp_SizedTensors : NativeOpTrait<"SizedTensors"> { let cppNamespace = "::sbp"; }

class Sbp_Op<string mnemonic, list<Trait> traits = []>
    : Op<Sbp_Dialect, mnemonic, !listconcat(traits, [Sbp_SizedTensors])>;

//===----------------------------------------------------------------------===//
// Enums
//===----------------------------------------------------------------------===//

def Sbp_MaskKind : I32EnumAttr<"MaskKind", "how a keep mask is sampled", [
    I32EnumAttrCase<"grid", 0>, I32EnumAttrCase<"random", 1>,
    I32EnumAttrCase<"heads", 2>, I32EnumAttrCase<"samples", 3>]> {
  let cppNamespace = "::sbp";
  let genSpecializedAttr = 0;
}
def Sbp_MaskKindAttr : EnumAttr<Sbp_Dialect, Sbp_MaskKind, "mask_kind">;

def Sbp_AttentionMode : I32EnumAttr<"AttentionMode",
    "which part of an attention map carries gradient under SBP", [
    I32EnumAttrCase<"drop_qkv", 0>, I32EnumAttrCase<"drop_query", 1>,
    I32EnumAttrCase<"drop_head", 2>]> {
  let cppNamespace = "::sbp";
  let genSpecializedAttr = 0;
}
def Sbp_AttentionModeAttr : EnumAttr<Sbp_Dialect, Sbp_AttentionMode, "attention_mode">;

def Sbp_InitKind : I32EnumAttr<"InitKind", "parameter initializer", [
    I32EnumAttrCase<"zeros", 0>, I32EnumAttrCase<"ones", 1>,
    I32EnumAttrCase<"normal", 2>, I32EnumAttrCase<"trunc_normal", 3>,
    I32EnumAttrCase<"uniform", 4>, I32EnumAttrCase<"constant", 5>]> {
  let cppNamespace = "::sbp";
  let genSpecializedAttr = 0;
}
def Sbp_InitKindAttr : EnumAttr<Sbp_Dialect, Sbp_InitKind, "init_kind">;

//===----------------------------------------------------------------------===//
// Attributes
//===----------------------------------------------------------------------===//

// A double printed and parsed as a plain float literal.
class Sbp_F64Param<string desc> : AttrParameter<"::llvm::APFloat", desc> {
  let comparator = "$_lhs.bitwiseIsEqual($_rhs)";
  let parser = [{ [&]() -> ::mlir::FailureOr<::llvm::APFloat> {
    double v; if ($_parser.parseFloat(v)) return ::mlir::failure();
    return ::llvm::APFloat(v); }() }];
  let printer = [{ $_printer.printFloat($_self) }];
}

class Sbp_OptionalF64Param<string desc> : Sbp_F64Param<desc> {
  let defaultValue = "::llvm::APFloat(0.0)";
}

class Sbp_Attr<string name, string attrMnemonic, list<Trait> traits = []>
    : AttrDef<Sbp_Dialect, name, traits> {
  let mnemonic = attrMnemonic;
}

def Sbp_InitAttr : Sbp_Attr<"Init", "init"> {
  let summary = "how the runtime initialises a parameter";
  let description = [{
    `#sbp.init<trunc_normal, 0.02>`: `zeros`, `ones`, `normal` (std = scale),
    `trunc_normal` (std = scale, cut at two standard deviations, as timm does),
    `uniform` (in [-scale, scale]), `constant` (every element = scale: ConvNeXt's
    layer scale gamma, 1e-6).
  }];
  let parameters = (ins "InitKind":$kind, Sbp_OptionalF64Param<"scale">:$scale);
  let assemblyFormat = "`<` $kind (`,` $scale^)? `>`";
  let genVerifyDecl = 1;
}

def Sbp_SgdAttr : Sbp_Attr<"Sgd", "sgd"> {
  let summary = "SGD with momentum (PyTorch semantics, coupled weight decay)";
  let parameters = (ins Sbp_F64Param<"learning rate">:$lr,
                        Sbp_F64Param<"momentum">:$momentum,
                        Sbp_F64Param<"weight decay">:$weight_decay,
                        DefaultValuedParameter<"bool", "false">:$nesterov);
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
}

def Sbp_AdamWAttr : Sbp_Attr<"AdamW", "adamw"> {
  let summary = "AdamW (PyTorch semantics, decoupled weight decay)";
  let parameters = (ins Sbp_F64Param<"learning rate">:$lr,
                        Sbp_F64Param<"beta1">:$beta1,
                        Sbp_F64Param<"beta2">:$beta2,
                        Sbp_F64Param<"epsilon">:$eps,
                        Sbp_F64Param<"weight decay">:$weight_decay);
  let assemblyFormat = "`<` struct(params) `>`";
  let genVerifyDecl = 1;
}

#endif // SBP_DIALECT_TD
