//===- SbpOps.td - ops of the sbp dialect -------------------*- tablegen -*-===//
//
// Conventions: activations are ranked f32 tensors; a *token tensor* is
// [B, T, D] (batch, tokens, features). Linear weights are [out, in] as in
// PyTorch (y = x W^T). Every op's description states its gradient rule and its
// SBP behaviour; the rules themselves are implemented in SbpOps.cpp.
//
//===----------------------------------------------------------------------===//
#ifndef SBP_OPS_TD
#define SBP_OPS_TD

include "Sbp/SbpDialect.td"
include "Sbp/SbpInterfaces.td"
include "mlir/IR/SymbolInterfaces.td"
include "mlir/IR/RegionKindInterface.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/Interfaces/ControlFlowInterfaces.td"

def Sbp_F32Tensor : RankedTensorOf<[F32]>;
def Sbp_I32Tensor : RankedTensorOf<[I32]>;
def Sbp_F32Scalar : 0DTensorOf<[F32]>;

//===----------------------------------------------------------------------===//
// Structure
//===----------------------------------------------------------------------===//

def Sbp_ModelOp : Sbp_Op<"model", [SymbolTable, Symbol, IsolatedFromAbove, SingleBlock]> {
  let summary = "a network to train, with its optimizer and static batch size";
  let description = [{
    Holds one block: mask groups, inputs, parameters, forward ops and a final
    `sbp.output`. The batch size is static (the first dimension of every
    activation); `optimizer` is `#sbp.sgd<...>` or `#sbp.adamw<...>`.

    ```mlir
    sbp.model @mlp attributes {optimizer = #sbp.adamw<lr = 0.001, beta1 = 0.9,
        beta2 = 0.999, eps = 1.0e-08, weight_decay = 0.05>} {
      ...
      sbp.output %loss, %logits : tensor<f32>, tensor<128x10xf32>
    }
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name, AnyAttrOf<[Sbp_SgdAttr, Sbp_AdamWAttr]>:$optimizer);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = "$sym_name attr-dict-with-keyword $body";
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    ::mlir::Block &getBlock() { return getBody().front(); }
    OutputOp getOutput();
    /// The static batch size: the first dimension of the `images` input.
    int64_t getBatchSize();
  }];
}

def Sbp_OutputOp : Sbp_Op<"output", [Terminator, HasParent<"ModelOp">]> {
  let summary = "names the loss (a scalar) and the logits [B, classes]";
  let arguments = (ins Sbp_F32Scalar:$loss, Sbp_F32Tensor:$logits);
  let assemblyFormat = "$loss `,` $logits attr-dict `:` type($loss) `,` type($logits)";
  let hasVerifier = 1;
}

def Sbp_MaskGroupOp : Sbp_Op<"mask_group", [Symbol, HasParent<"ModelOp">]> {
  let summary = "a keep mask drawn once per step and shared by its branches";
  let description = [{
    `keep` is the keep ratio r in (0, 1]. The mask is drawn on a
    `grid` = [H, W] of tokens that follow `prefix` always-kept tokens (1 for a
    ViT class token). `kind = grid`: stride s = round(1/r) for r <= 0.5, keep
    positions with (i + j) mod s == start; for r > 0.5, s = round(1/(1 - r))
    and drop positions with (i + j) mod s == start; `start` is drawn at random
    each step. `kind = random`: drop int((1 - r) * H * W) positions uniformly.
    `round` is numpy's (half to even) on the double nearest the decimal keep
    ratio, as the reference implementation computes it: at r = 0.4 and
    r = 0.6 the stride is 2 (1/0.4 = 2.5 rounds to 2), so both keep half.
    `kind = heads`: the positions are the heads of an attention op (`grid` =
    [1, heads], no prefix); each head is kept independently with probability
    r (the `drop_head` mode of `sbp.attention`; a step may keep no head).
    With `cell` N (default 1) the group is derived: the mask is drawn on the
    coarser [H/N, W/N] grid and each drawn position covers an N x N cell of
    the group's [H, W] grid, so position (i, j) is kept iff drawn position
    (i / N, j / N) is. ConvNeXt draws on the coarsest SBP stage's grid this
    way and repeats it over the finer stages (same locations at every
    resolution). N divides H and W; a derived group has no prefix (a prefix
    token has no place on the coarse grid) and is not a heads group. Kept
    counts and the capacity are those of the drawn grid times N * N.
    Every token group is drawn once per step and shared by all its regions;
    groups with the same kind, ratio and drawn grid ([H/N, W/N]) share that
    draw, so `@s0 [56, 56] cell 4`, `@s1 [28, 28] cell 2` and `@s2 [14, 14]`
    keep the same locations.
    A heads group is drawn per attention op, as vit_sbp.py draws the heads of
    each block anew: `sbp-insert-masks` gives each attention op that uses the
    group a group of its own (`@h.<region>`, e.g. `@h.blocks.1.attn`). With
    `shared`, every block using the group drops the same heads in a step.
    `kind = samples`: the positions are the samples of the batch (`grid` =
    [1, B], no prefix), each kept independently with probability r, drawn
    like heads (a step may keep none): the per-sample draw of
    `sbp.drop_path` (stochastic depth), not SBP. Each drop_path op draws
    its own (`sbp-insert-masks` splits a group used by several), and
    `sbpc --keep` does not override it.

    ```mlir
    sbp.mask_group @m keep 0.5 grid [7, 7]
    sbp.mask_group @m keep 0.5 random [14, 14] prefix 1
    sbp.mask_group @h keep 0.5 heads [1, 3]
    sbp.mask_group @hs keep 0.5 heads [1, 3] shared
    sbp.mask_group @dp keep 0.9 samples [1, 128]
    sbp.mask_group @s0 keep 0.5 grid [56, 56] cell 4
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name, F64Attr:$keep,
                       Sbp_MaskKindAttr:$kind, DenseI64ArrayAttr:$grid,
                       DefaultValuedAttr<I64Attr, "0">:$prefix,
                       UnitAttr:$shared,
                       DefaultValuedAttr<I64Attr, "1">:$cell);
  let assemblyFormat = "$sym_name `keep` $keep $kind $grid (`prefix` $prefix^)? (`shared` $shared^)? "
                       "(`cell` $cell^)? attr-dict";
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// Tokens a branch under this group must have: prefix + H * W.
    int64_t getNumTokens();
    /// The most tokens any mask of this group keeps (the compact row count).
    int64_t getCapacity();
    /// The fewest grid positions any mask of this group keeps (prefix excluded).
    int64_t getMinKept();
    /// The grid the mask is drawn on: [H / cell, W / cell].
    std::array<int64_t, 2> getDrawnGrid();
    /// Whether the runtime gives this group and `other` one draw per step
    /// (same kind, keep ratio and drawn grid; heads groups never share).
    bool sharesDrawWith(MaskGroupOp other);
    /// The verifier's checks of `cell`.
    ::mlir::LogicalResult verifyCell();
  }];
}

def Sbp_InputOp : Sbp_Op<"input", [Pure, HasParent<"ModelOp">]> {
  let summary = "a batch input: `images` [B, C, H, W] f32 or `labels` [B] i32";
  let arguments = (ins StrAttr:$name);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$name attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def Sbp_ParamOp : Sbp_Op<"param", [Pure, HasParent<"ModelOp">]> {
  let summary = "a trainable parameter with its initializer";
  let description = [{
    Names follow PyTorch/timm (`blocks.0.mlp.fc1.weight`): checkpoints use
    them. `decay` says whether the optimizer's weight decay applies (by
    default: parameters of rank >= 2 except the position embedding and the
    class token, as timm does).
  }];
  let arguments = (ins StrAttr:$name, Sbp_InitAttr:$init, OptionalAttr<BoolAttr>:$decay);
  let results = (outs Sbp_F32Tensor:$result);
  let assemblyFormat = "$name `:` type($result) `init` $init attr-dict";
  let hasVerifier = 1;
  let extraClassDeclaration = [{ bool hasWeightDecay(); }];
}

def Sbp_BranchOp : Sbp_Op<"branch", [DeclareOpInterfaceMethods<SymbolUserOpInterface>,
    SingleBlockImplicitTerminator<"YieldOp">, RecursiveMemoryEffects]> {
  let summary = "an SBP region: a residual branch under a mask group";
  let description = [{
    `%y = sbp.branch @m (%x) {...}` computes its body on every token, but only
    the rows that the mask keeps carry gradient back into the body (Alg. 1 of
    the paper); the dropped rows of `%y` are constants to the backward. Put it
    on residual branches (`x + branch(x)`): the identity path still carries the
    gradient at dropped tokens. Its body must be token-wise (each output row a
    function of the same input row), and its tensors [B, T, D] with
    T = the mask group's prefix + H * W. `name` labels the region in reports.
  }];
  let arguments = (ins FlatSymbolRefAttr:$mask, Variadic<Sbp_F32Tensor>:$inputs,
                       OptionalAttr<StrAttr>:$name);
  let results = (outs Variadic<Sbp_F32Tensor>:$results);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = [{
    $mask `(` $inputs `)` attr-dict `:` functional-type($inputs, $results) $body
  }];
  let hasRegionVerifier = 1;
}

def Sbp_YieldOp : Sbp_Op<"yield", [Pure, Terminator, HasParent<"BranchOp">]> {
  let summary = "the results of an sbp.branch";
  let arguments = (ins Variadic<Sbp_F32Tensor>:$values);
  let assemblyFormat = "($values^ `:` type($values))? attr-dict";
  let builders = [OpBuilder<(ins), [{ }]>];
}

//===----------------------------------------------------------------------===//
// Forward ops
//===----------------------------------------------------------------------===//

class Sbp_ComputeOp<string mnemonic, list<Trait> traits = []>
    : Sbp_Op<mnemonic, !listconcat(traits, [Pure,
        DeclareOpInterfaceMethods<Sbp_GradientOpInterface>])> {
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

class Sbp_RowWiseOp<string mnemonic, list<Trait> traits = []>
    : Sbp_ComputeOp<mnemonic, !listconcat(traits, [Sbp_RowWiseOpInterface])>;

def Sbp_PatchifyOp : Sbp_ComputeOp<"patchify"> {
  let summary = "image [B, C, H, W] -> tokens [B, (H/p)(W/p), C*p*p]";
  let description = [{
    Non-overlapping p x p patches, row-major over the patch grid; feature
    c*p*p + py*p + px, the order of a flattened Conv2d weight [D, C, p, p], so
    `patchify` + `linear` is the ViT patch embedding. No gradient (its input
    is the batch).
  }];
  let arguments = (ins Sbp_F32Tensor:$image, I64Attr:$patch);
  let results = (outs Sbp_F32Tensor:$result);
  let assemblyFormat = "$image `patch` $patch attr-dict `:` type($image) `->` type($result)";
}

def Sbp_LinearOp : Sbp_RowWiseOp<"linear"> {
  let summary = "y[..., N] = x[..., K] W^T, W = [N, K] (no bias)";
  let description = [{
    Gradient: dx = dy W (`sbp.linear_grad_input`), dW = dy^T x summed over
    all rows (`sbp.linear_grad_weight`). Under SBP, dW = X_keep^T dY_keep
    (Eq. 5): only kept rows are saved and multiplied. The weight may carry
    more dimensions, [N, K1, K2, ...] with K = K1 * K2 * ...: a Conv2d weight
    [D, C, p, p] over `sbp.patchify` tokens is the ViT patch embedding, stored
    in the shape PyTorch and timm checkpoints use.
  }];
  let arguments = (ins Sbp_F32Tensor:$input, Sbp_F32Tensor:$weight);
  let results = (outs Sbp_F32Tensor:$result);
}

def Sbp_BiasAddOp : Sbp_RowWiseOp<"bias_add"> {
  let summary = "y = x + b, b [N] broadcast over the rows of x [..., N]";
  let description = "Gradient: dx = dy, db = sum of dy over rows (`sbp.bias_grad`).";
  let arguments = (ins Sbp_F32Tensor:$input, Sbp_F32Tensor:$bias);
  let results = (outs Sbp_F32Tensor:$result);
}

def Sbp_PosAddOp : Sbp_ComputeOp<"pos_add"> {
  let summary = "y = x + pos: a learned position embedding [1, T, D] over the batch";
  let description = "Gradient: dx = dy, dpos = sum of dy over the batch (`sbp.pos_grad`).";
  let arguments = (ins Sbp_F32Tensor:$input, Sbp_F32Tensor:$pos);
  let results = (outs Sbp_F32Tensor:$result);
}

def Sbp_GeluOp : Sbp_RowWiseOp<"gelu"> {
  let summary = "exact (erf) GELU, as torch.nn.GELU()";
  let description = "Gradient: dx = dy * gelu'(x) (`sbp.gelu_grad`, saves x).";
  let arguments = (ins Sbp_F32Tensor:$input);
  let results = (outs Sbp_F32Tensor:$result);
}

def Sbp_ReluOp : Sbp_RowWiseOp<"relu"> {
  let summary = "max(x, 0)";
  let description = "Gradient: dx = dy * (x > 0) (`sbp.relu_grad`, saves x).";
  let arguments = (ins Sbp_F32Tensor:$input);
  let results = (outs Sbp_F32Tensor:$result);
}

def Sbp_AddOp : Sbp_RowWiseOp<"add", [Commutative]> {
  let summary = "elementwise sum of two tensors of one shape (the residual add)";
  let description = "Gradient: both operands get dy.";
  let arguments = (ins Sbp_F32Tensor:$lhs, Sbp_F32Tensor:$rhs);
  let results = (outs Sbp_F32Tensor:$result);
}

def Sbp_LayerNormOp : Sbp_RowWiseOp<"layer_norm"> {
  let summary = "LayerNorm over the last dimension, with weight and bias";
  let description = [{
    Biased variance, `eps` inside the square root, as torch.nn.LayerNorm.
    Gradient: `sbp.layer_norm_grad` (saves x only; mean and 1/std are
    recomputed in the backward).
  }];
  let arguments = (ins Sbp_F32Tensor:$input, Sbp_F32Tensor:$weight, Sbp_F32Tensor:$bias,
                       DefaultValuedAttr<F64Attr, "1.0e-5">:$eps);
  let results = (outs Sbp_F32Tensor:$result);
  let assemblyFormat = "$input `,` $weight `,` $bias attr-dict `:` functional-type(operands, results)";
}

def Sbp_MeanTokensOp : Sbp_ComputeOp<"mean_tokens"> {
  let summary = "[B, T, D] -> [B, D], the mean over tokens";
  let description = "Gradient: dx[b, t] = dy[b] / T (`sbp.mean_tokens_grad`).";
  let arguments = (ins Sbp_F32Tensor:$input);
  let results = (outs Sbp_F32Tensor:$result);
}

def Sbp_ClsConcatOp : Sbp_ComputeOp<"cls_concat"> {
  let summary = "prepend the class token: [B, T, D], [1, 1, D] -> [B, T + 1, D]";
  let description = [{
    Token 0 of every batch element is the learned class token (timm's
    `cls_token`), tokens 1.. are the input. Gradient: `sbp.cls_concat_grad`
    (dx = dy at tokens 1.., dcls = the sum over the batch of dy at token 0).
  }];
  let arguments = (ins Sbp_F32Tensor:$input, Sbp_F32Tensor:$cls);
  let results = (outs Sbp_F32Tensor:$result);
}

def Sbp_TakeTokenOp : Sbp_ComputeOp<"take_token"> {
  let summary = "[B, T, D] -> [B, D]: one token of each batch element (class-token pooling)";
  let description = "Gradient: `sbp.take_token_grad`, dy placed at token `index`, zeros elsewhere.";
  let arguments = (ins Sbp_F32Tensor:$input, I64Attr:$index);
  let results = (outs Sbp_F32Tensor:$result);
  let assemblyFormat = "$input `index` $index attr-dict `:` functional-type(operands, results)";
}

def Sbp_AttentionOp : Sbp_Op<"attention", [Pure,
    DeclareOpInterfaceMethods<Sbp_GradientOpInterface>,
    DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "multi-head scaled dot-product self-attention over a packed qkv tensor";
  let description = [{
    `qkv` [B, T, 3 * D] is the output of the qkv projection in timm's layout
    (q, k, v thirds; head h at columns h * Dh of each, Dh = D / heads).
    Results: `result` [B, T, D] = softmax(q k^T / sqrt(Dh)) v per head (heads
    side by side, as timm's transpose-reshape), and `lse` [B, T, heads], the
    log-sum-exp of each query's scores, kept for the backward
    (FlashAttention: the T x T map is never stored; the backward recomputes
    it). Gradient: `sbp.attention_grad`.

    `sbp @m mode` makes the attention map an SBP region (Alg. 1); the
    projections around it stay ordinary. Modes, per the reference
    implementation of the paper:
    * `drop_qkv` (the paper's choice): queries at tokens kept by @m attend
      over the kept keys and values only, with gradient; the other queries
      attend over all keys without gradient. The forward value of a kept row
      is the restricted attention. The backward runs on the kept rows alone.
    * `drop_query`: kept queries attend over all keys with gradient, the
      others without; the forward is exact. dq is zero at dropped rows, dk and
      dv come from the kept queries only.
    * `drop_head`: @m is a `heads` mask group; the kept heads carry gradient,
      the others do not; the forward is exact.
    `sbp-insert-masks` adds the group's keep indices as the `keep` operand
    (or drops the annotation when the keep ratio is 1).

    ```mlir
    %o, %lse = sbp.attention %qkv heads 3 sbp @m drop_qkv
        : (tensor<8x17x72xf32>) -> (tensor<8x17x24xf32>, tensor<8x17x3xf32>)
    ```
  }];
  let arguments = (ins Sbp_F32Tensor:$qkv, Optional<Sbp_I32Tensor>:$keep, I64Attr:$heads,
                       OptionalAttr<FlatSymbolRefAttr>:$mask,
                       OptionalAttr<Sbp_AttentionModeAttr>:$mode);
  let results = (outs Sbp_F32Tensor:$result, Sbp_F32Tensor:$lse);
  let assemblyFormat = [{
    $qkv (`,` $keep^)? `heads` $heads (`sbp` $mask^ $mode)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    int64_t getHeadDim();
    /// The softmax scale, 1 / sqrt(head_dim).
    double getScale();
  }];
}

def Sbp_VitBlockOp : Sbp_Op<"vit_block", [HasParent<"ModelOp">,
    AllTypesMatch<["input", "result"]>,
    DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "a pre-norm transformer block (timm's ViT Block), expanded by sbp-decompose";
  let description = [{
    x + attn(norm1(x)), then + mlp(norm2(x)), with timm's parameters under
    `name` (`blocks.4.norm1.weight`, `blocks.4.attn.qkv.weight`, ...; qkv with
    bias; exact GELU; LayerNorm `eps`), created and initialised as timm does
    (linear weights trunc-normal 0.02, biases zero, norms one/zero).
    `mlp_sbp @m`: the MLP branch is an SBP region of group @m;
    `attn_sbp @g mode`: the attention map is an SBP region of group @g in
    that mode (see `sbp.attention`). `sbp-decompose` replaces the op by its
    parameters and primitive ops.

    ```mlir
    %x5 = sbp.vit_block "blocks.4" %x4 heads 3 hidden 768 mlp_sbp @m attn_sbp @m drop_qkv
        : tensor<256x197x192xf32>
    ```
  }];
  let arguments = (ins StrAttr:$name, Sbp_F32Tensor:$input, I64Attr:$heads, I64Attr:$hidden,
                       DefaultValuedAttr<F64Attr, "1.0e-6">:$eps,
                       OptionalAttr<FlatSymbolRefAttr>:$mlp_mask,
                       OptionalAttr<FlatSymbolRefAttr>:$attn_mask,
                       OptionalAttr<Sbp_AttentionModeAttr>:$attn_mode);
  let results = (outs Sbp_F32Tensor:$result);
  let assemblyFormat = [{
    $name $input `heads` $heads `hidden` $hidden (`mlp_sbp` $mlp_mask^)?
    (`attn_sbp` $attn_mask^ $attn_mode)? attr-dict `:` type($input)
  }];
  let hasVerifier = 1;
}

//===--- ConvNeXt ops (channels-last token tensors [B, H*W, C]) ----------===//

def Sbp_DwConvOp : Sbp_ComputeOp<"dwconv"> {
  let summary = "depth-wise KxK convolution with bias over a token grid (timm's conv_dw)";
  let description = [{
    `x` [B, H*W, C] is a channels-last image, row-major over the (h, w) grid
    `grid` = [H, W]; `weight` [C, 1, K, K] (PyTorch's depth-wise Conv2d
    weight), K odd, zero padding K/2, stride 1; `bias` [C]. Not token-wise
    (each output token reads its KxK neighbourhood), so it cannot be inside
    an SBP branch. Gradient: `sbp.dwconv_grad_input` (dx, from the weight) and
    `sbp.dwconv_grad_weight` (dweight, dbias; saves x).

    ```mlir
    %y = sbp.dwconv %x, %w, %b grid [8, 8]
        : (tensor<2x64x16xf32>, tensor<16x1x7x7xf32>, tensor<16xf32>) -> tensor<2x64x16xf32>
    ```
  }];
  let arguments = (ins Sbp_F32Tensor:$input, Sbp_F32Tensor:$weight, Sbp_F32Tensor:$bias,
                       DenseI64ArrayAttr:$grid);
  let results = (outs Sbp_F32Tensor:$result);
  let assemblyFormat = [{
    $input `,` $weight `,` $bias `grid` $grid attr-dict `:` functional-type(operands, results)
  }];
  let extraClassDeclaration = [{ int64_t getKernelSize(); }];
}

def Sbp_LayerScaleOp : Sbp_RowWiseOp<"layer_scale"> {
  let summary = "y = x * gamma, gamma [C] broadcast over the rows of x [..., C] (timm's gamma)";
  let description = [{
    Token-wise: allowed inside an SBP branch. Gradient: `sbp.layer_scale_grad`
    (dx = dy * gamma, dgamma = sum over rows of dy * x; saves x).
  }];
  let arguments = (ins Sbp_F32Tensor:$input, Sbp_F32Tensor:$gamma);
  let results = (outs Sbp_F32Tensor:$result);
}

def Sbp_DropPathOp : Sbp_Op<"drop_path", [Pure, Sbp_RowWiseOpInterface,
    DeclareOpInterfaceMethods<Sbp_GradientOpInterface>,
    DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "stochastic depth (timm's drop_path): whole samples of a residual branch dropped";
  let description = [{
    In the train step, sample b of `input` [B, ...] is multiplied by
    1 / (1 - `rate`) when the `samples` mask group @g keeps b, else by 0
    (timm's DropPath with scale_by_keep; each sample kept with probability
    1 - rate, the group's keep ratio). The eval step is the identity. Put it
    on a residual branch's output, before the add: x + drop_path(branch(x)).
    Gradient: the same scaling of dy (another `sbp.drop_path` with the same
    keep indices). `sbp-insert-masks` adds the group's keep indices (the kept
    samples, ascending, padded with -1) as the `keep` operand, or removes
    the op when the rate is 0. Token-wise, so it may run on compact rows.

    ```mlir
    sbp.mask_group @dp keep 0.9 samples [1, 8]
    %y = sbp.drop_path %x group @dp rate 0.1 : (tensor<8x64x16xf32>) -> tensor<8x64x16xf32>
    ```
  }];
  let arguments = (ins Sbp_F32Tensor:$input, Optional<Sbp_I32Tensor>:$keep,
                       FlatSymbolRefAttr:$mask, F64Attr:$rate);
  let results = (outs Sbp_F32Tensor:$result);
  let assemblyFormat = [{
    $input (`,` $keep^)? `group` $mask `rate` $rate attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// 1 / (1 - rate): the factor of a kept sample.
    double getScale();
  }];
}

def Sbp_SpaceToDepthOp : Sbp_ComputeOp<"space_to_depth"> {
  let summary = "[B, H*W, C] -> [B, (H/s)*(W/s), s*s*C]: s x s cells of the grid become features";
  let description = [{
    Output token (i, j) of the (H/s) x (W/s) grid, feature c*s*s + dy*s + dx,
    is input token (s*i + dy, s*j + dx), channel c: the flatten order of a
    Conv2d weight [N, C, s, s], so `space_to_depth` + `linear` is a
    stride-s s x s convolution (ConvNeXt's downsampling). H and W must be
    multiples of s. Not token-wise. Gradient: `sbp.space_to_depth_grad`
    (the inverse permutation).

    ```mlir
    %y = sbp.space_to_depth %x grid [8, 8] block 2 : tensor<2x64x16xf32> -> tensor<2x16x64xf32>
    ```
  }];
  let arguments = (ins Sbp_F32Tensor:$input, DenseI64ArrayAttr:$grid, I64Attr:$block);
  let results = (outs Sbp_F32Tensor:$result);
  let assemblyFormat = "$input `grid` $grid `block` $block attr-dict `:` type($input) `->` type($result)";
}

def Sbp_ConvNextBlockOp : Sbp_Op<"convnext_block", [HasParent<"ModelOp">,
    AllTypesMatch<["input", "result"]>,
    DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "timm's ConvNeXtBlock (channels-last), expanded by sbp-decompose";
  let description = [{
    x + layer_scale(fc2(gelu(fc1(norm(dwconv(x)))))) over the token grid
    `grid` = [H, W], with timm's parameters under `name`
    (`stages.0.blocks.0.conv_dw.weight` [C, 1, 7, 7], `.conv_dw.bias`,
    `.norm.weight/bias`, `.mlp.fc1.weight/bias`, `.mlp.fc2.weight/bias`,
    `.gamma`) and initialisers (weights trunc-normal 0.02, biases zero, norm
    one/zero, gamma the constant `ls_init` = 1e-6). `mlp_sbp @m`: everything
    after the depth-wise conv (norm .. layer scale) is an SBP branch of group
    @m, which must cover the H*W tokens. `drop_path @g rate p`: stochastic
    depth on the branch output after the layer scale, before the residual
    add (`sbp.drop_path`, @g a `samples` group of keep 1 - p).

    ```mlir
    %y = sbp.convnext_block "stages.0.blocks.0" %x grid [56, 56] hidden 384 mlp_sbp @m
        : tensor<128x3136x96xf32>
    %z = sbp.convnext_block "stages.0.blocks.1" %y grid [56, 56] hidden 384 drop_path @dp1 rate 0.1
        : tensor<128x3136x96xf32>
    ```
  }];
  let arguments = (ins StrAttr:$name, Sbp_F32Tensor:$input, DenseI64ArrayAttr:$grid, I64Attr:$hidden,
                       DefaultValuedAttr<I64Attr, "7">:$kernel,
                       DefaultValuedAttr<F64Attr, "1.0e-6">:$eps,
                       DefaultValuedAttr<F64Attr, "1.0e-6">:$ls_init,
                       OptionalAttr<FlatSymbolRefAttr>:$mlp_mask,
                       OptionalAttr<FlatSymbolRefAttr>:$drop_path,
                       OptionalAttr<F64Attr>:$drop_path_rate);
  let results = (outs Sbp_F32Tensor:$result);
  let assemblyFormat = [{
    $name $input `grid` $grid `hidden` $hidden (`mlp_sbp` $mlp_mask^)?
    (`drop_path` $drop_path^ `rate` $drop_path_rate)? attr-dict `:` type($input)
  }];
  let hasVerifier = 1;
}

def Sbp_ConvNextDownsampleOp : Sbp_Op<"convnext_downsample", [HasParent<"ModelOp">,
    DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "timm's ConvNeXt downsampling (LayerNorm, 2x2 stride-2 conv), expanded by sbp-decompose";
  let description = [{
    layer_norm (`name.0.weight/bias`, eps 1e-6) -> space_to_depth block 2 ->
    linear (`name.1.weight` [out, C, 2, 2]) + bias (`name.1.bias`).
    `sbp @m`: the linear + bias is an SBP branch of group @m, a group over the
    (H/2) x (W/2) output grid (no residual: the gradient reaches the
    LayerNorm only through the kept output positions).

    ```mlir
    %y = sbp.convnext_downsample "stages.1.downsample" %x grid [56, 56] out 192
        : (tensor<128x3136x96xf32>) -> tensor<128x784x192xf32>
    ```
  }];
  let arguments = (ins StrAttr:$name, Sbp_F32Tensor:$input, DenseI64ArrayAttr:$grid, I64Attr:$out,
                       DefaultValuedAttr<F64Attr, "1.0e-6">:$eps,
                       OptionalAttr<FlatSymbolRefAttr>:$mask);
  let results = (outs Sbp_F32Tensor:$result);
  let assemblyFormat = [{
    $name $input `grid` $grid `out` $out (`sbp` $mask^)? attr-dict `:` functional-type($input, $result)
  }];
  let hasVerifier = 1;
}

def Sbp_CrossEntropyOp : Sbp_ComputeOp<"cross_entropy"> {
  let summary = "mean softmax cross-entropy of logits [B, C] against labels [B]";
  let description = "Gradient: (softmax(logits) - onehot(labels)) / B (`sbp.cross_entropy_grad`).";
  let arguments = (ins Sbp_F32Tensor:$logits, Sbp_I32Tensor:$labels);
  let results = (outs Sbp_F32Scalar:$loss);
}

//===----------------------------------------------------------------------===//
// Ops added by the passes: SBP masks, gradients, row gather/scatter
//===----------------------------------------------------------------------===//

class Sbp_InternalOp<string mnemonic, list<Trait> traits = []>
    : Sbp_Op<mnemonic, !listconcat(traits, [Pure])> {
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Sbp_KeepIndicesOp : Sbp_Op<"keep_indices", [Pure,
    DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "this step's kept token indices of a mask group";
  let description = [{
    [K] i32, K = the group's capacity: ascending token indices, padded with -1
    when a mask keeps fewer. Drawn by the runtime from (seed, step).
  }];
  let arguments = (ins FlatSymbolRefAttr:$mask);
  let results = (outs Sbp_I32Tensor:$result);
  let assemblyFormat = "$mask attr-dict `:` type($result)";
}

def Sbp_GradGateOp : Sbp_Op<"grad_gate", [Pure,
    DeclareOpInterfaceMethods<Sbp_GradientOpInterface>]> {
  let summary = "identity forward; gradient only at kept rows";
  let description = [{
    Placed by `sbp-insert-masks` on the output of an SBP branch. Its gradient
    is `sbp.mask_rows` of the incoming gradient: zero at dropped rows.
  }];
  let arguments = (ins Sbp_F32Tensor:$input, Sbp_I32Tensor:$keep);
  let results = (outs Sbp_F32Tensor:$result);
  let assemblyFormat = "operands attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def Sbp_MaskRowsOp : Sbp_InternalOp<"mask_rows", [Sbp_RowWiseOpInterface]> {
  let summary = "zero the dropped rows of a token tensor";
  let arguments = (ins Sbp_F32Tensor:$input, Sbp_I32Tensor:$keep);
  let results = (outs Sbp_F32Tensor:$result);
}

def Sbp_GatherRowsOp : Sbp_InternalOp<"gather_rows"> {
  let summary = "[B, T, D] -> [B, K, D]: the kept rows (zeros for -1 padding)";
  let arguments = (ins Sbp_F32Tensor:$input, Sbp_I32Tensor:$keep);
  let results = (outs Sbp_F32Tensor:$result);
}

def Sbp_ScatterRowsOp : Sbp_InternalOp<"scatter_rows"> {
  let summary = "[B, K, D] -> [B, T, D]: kept rows in place, zeros elsewhere";
  let arguments = (ins Sbp_F32Tensor:$input, Sbp_I32Tensor:$keep);
  let results = (outs Sbp_F32Tensor:$result);
}

def Sbp_ScatterAddRowsOp : Sbp_InternalOp<"scatter_add_rows"> {
  let summary = "base [B, T, D] + the kept rows [B, K, D] added at their tokens";
  let arguments = (ins Sbp_F32Tensor:$base, Sbp_F32Tensor:$input, Sbp_I32Tensor:$keep);
  let results = (outs Sbp_F32Tensor:$result);
}

def Sbp_LinearGradInputOp : Sbp_InternalOp<"linear_grad_input", [Sbp_RowWiseOpInterface]> {
  let summary = "dx[..., K] = dy[..., N] W, W = [N, K]";
  let arguments = (ins Sbp_F32Tensor:$grad, Sbp_F32Tensor:$weight);
  let results = (outs Sbp_F32Tensor:$result);
}

def Sbp_LinearGradWeightOp : Sbp_InternalOp<"linear_grad_weight", [Sbp_RowWiseOpInterface]> {
  let summary = "dW[N, K] = sum over rows of dy[r, N]^T x[r, K]";
  let arguments = (ins Sbp_F32Tensor:$input, Sbp_F32Tensor:$grad);
  let results = (outs Sbp_F32Tensor:$result);
}

def Sbp_BiasGradOp : Sbp_InternalOp<"bias_grad", [Sbp_RowWiseOpInterface]> {
  let summary = "db[N] = sum over rows of dy[..., N]";
  let arguments = (ins Sbp_F32Tensor:$grad);
  let results = (outs Sbp_F32Tensor:$result);
}

def Sbp_PosGradOp : Sbp_InternalOp<"pos_grad"> {
  let summary = "dpos[1, T, D] = sum over the batch of dy[B, T, D]";
  let arguments = (ins Sbp_F32Tensor:$grad);
  let results = (outs Sbp_F32Tensor:$result);
}

def Sbp_GeluGradOp : Sbp_InternalOp<"gelu_grad", [Sbp_RowWiseOpInterface]> {
  let summary = "dx = dy * gelu'(x)";
  let arguments = (ins Sbp_F32Tensor:$input, Sbp_F32Tensor:$grad);
  let results = (outs Sbp_F32Tensor:$result);
}

def Sbp_ReluGradOp : Sbp_InternalOp<"relu_grad", [Sbp_RowWiseOpInterface]> {
  let summary = "dx = dy * (x > 0)";
  let arguments = (ins Sbp_F32Tensor:$input, Sbp_F32Tensor:$grad);
  let results = (outs Sbp_F32Tensor:$result);
}

def Sbp_LayerNormGradOp : Sbp_InternalOp<"layer_norm_grad", [Sbp_RowWiseOpInterface]> {
  let summary = "(dx, dweight, dbias) of LayerNorm, recomputing the statistics from x";
  let arguments = (ins Sbp_F32Tensor:$input, Sbp_F32Tensor:$weight, Sbp_F32Tensor:$grad,
                       DefaultValuedAttr<F64Attr, "1.0e-5">:$eps);
  let results = (outs Sbp_F32Tensor:$grad_input, Sbp_F32Tensor:$grad_weight, Sbp_F32Tensor:$grad_bias);
  let assemblyFormat = "$input `,` $weight `,` $grad attr-dict `:` functional-type(operands, results)";
}

def Sbp_ClsConcatGradOp : Sbp_InternalOp<"cls_concat_grad"> {
  let summary = "dx = dy at tokens 1..T, dcls = sum over the batch of dy at token 0";
  let arguments = (ins Sbp_F32Tensor:$grad);
  let results = (outs Sbp_F32Tensor:$grad_input, Sbp_F32Tensor:$grad_cls);
}

def Sbp_TakeTokenGradOp : Sbp_InternalOp<"take_token_grad"> {
  let summary = "dx [B, T, D]: dy [B, D] at token `index`, zeros elsewhere";
  let arguments = (ins Sbp_F32Tensor:$grad, I64Attr:$index);
  let results = (outs Sbp_F32Tensor:$result);
  let assemblyFormat = "$grad `index` $index attr-dict `:` functional-type(operands, results)";
}

def Sbp_AttentionGradOp : Sbp_Op<"attention_grad", [Pure]> {
  let summary = "dqkv of sbp.attention, recomputing the attention map from lse";
  let description = [{
    Operands `qkv`, `out`, `lse`, `grad` (dout) and, under SBP, `keep`:
    * no mode: every row and head, all [B, T, ...].
    * `drop_qkv`: all four are the kept rows [B, K, ...] (gathered), `keep`
      the keep indices whose -1 padding rows take no part; the result is the
      compact [B, K, 3D] gradient (zero at padding rows).
    * `drop_query`: `qkv` is full [B, T, 3D] (keys and values of every row),
      `out`, `lse`, `grad` are the kept query rows [B, K, ...]; the result is
      [B, T, 3D] with dq zero at rows not in `keep`.
    * `drop_head`: all full; `keep` lists the kept heads; dropped heads get
      zero dq, dk, dv.
  }];
  let arguments = (ins Sbp_F32Tensor:$qkv, Sbp_F32Tensor:$out, Sbp_F32Tensor:$lse,
                       Sbp_F32Tensor:$grad, Optional<Sbp_I32Tensor>:$keep, I64Attr:$heads,
                       OptionalAttr<Sbp_AttentionModeAttr>:$mode);
  let results = (outs Sbp_F32Tensor:$result);
  let assemblyFormat = [{
    $qkv `,` $out `,` $lse `,` $grad (`,` $keep^)? `heads` $heads (`mode` $mode^)? attr-dict `:`
    functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def Sbp_DwConvGradInputOp : Sbp_InternalOp<"dwconv_grad_input"> {
  let summary = "dx of sbp.dwconv: the convolution of dy with the flipped kernel";
  let arguments = (ins Sbp_F32Tensor:$grad, Sbp_F32Tensor:$weight, DenseI64ArrayAttr:$grid);
  let results = (outs Sbp_F32Tensor:$result);
  let assemblyFormat = "$grad `,` $weight `grid` $grid attr-dict `:` functional-type(operands, results)";
}

def Sbp_DwConvGradWeightOp : Sbp_InternalOp<"dwconv_grad_weight"> {
  let summary = "(dweight [C, 1, K, K], dbias [C]) of sbp.dwconv from dy and its input x";
  let arguments = (ins Sbp_F32Tensor:$grad, Sbp_F32Tensor:$input, DenseI64ArrayAttr:$grid);
  let results = (outs Sbp_F32Tensor:$grad_weight, Sbp_F32Tensor:$grad_bias);
  let assemblyFormat = "$grad `,` $input `grid` $grid attr-dict `:` functional-type(operands, results)";
}

def Sbp_LayerScaleGradOp : Sbp_InternalOp<"layer_scale_grad", [Sbp_RowWiseOpInterface]> {
  let summary = "dx = dy * gamma, dgamma = sum over rows of dy * x";
  let arguments = (ins Sbp_F32Tensor:$grad, Sbp_F32Tensor:$input, Sbp_F32Tensor:$gamma);
  let results = (outs Sbp_F32Tensor:$grad_input, Sbp_F32Tensor:$grad_gamma);
}

def Sbp_SpaceToDepthGradOp : Sbp_InternalOp<"space_to_depth_grad"> {
  let summary = "dx of sbp.space_to_depth (the inverse permutation); `grid` is the input's";
  let arguments = (ins Sbp_F32Tensor:$grad, DenseI64ArrayAttr:$grid, I64Attr:$block);
  let results = (outs Sbp_F32Tensor:$result);
  let assemblyFormat = "$grad `grid` $grid `block` $block attr-dict `:` type($grad) `->` type($result)";
}

def Sbp_MeanTokensGradOp : Sbp_InternalOp<"mean_tokens_grad"> {
  let summary = "dx[B, T, D] = dy[B, D] / T broadcast over tokens";
  let arguments = (ins Sbp_F32Tensor:$grad);
  let results = (outs Sbp_F32Tensor:$result);
}

def Sbp_CrossEntropyGradOp : Sbp_InternalOp<"cross_entropy_grad"> {
  let summary = "dlogits = (softmax(logits) - onehot(labels)) / B";
  let arguments = (ins Sbp_F32Tensor:$logits, Sbp_I32Tensor:$labels);
  let results = (outs Sbp_F32Tensor:$result);
}

def Sbp_ParamGradOp : Sbp_Op<"param_grad"> {
  let summary = "the gradient of the named parameter (written to the gradient buffer)";
  let arguments = (ins StrAttr:$name, Sbp_F32Tensor:$grad);
  let assemblyFormat = "$name `,` $grad attr-dict `:` type($grad)";
}

#endif // SBP_OPS_TD
