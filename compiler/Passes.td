//===- Passes.td - the sbpc pipeline's passes --------------*- tablegen -*-===//
//
// sbpc runs these in this order; sbp-opt exposes each one for lit tests.
//
//===----------------------------------------------------------------------===//
#ifndef SBP_PASSES_TD
#define SBP_PASSES_TD

include "mlir/Pass/PassBase.td"

def SbpDecompose : Pass<"sbp-decompose", "::mlir::ModuleOp"> {
  let summary = "Expand composite ops (ViT and ConvNeXt blocks) into parameters and primitive ops";
  let description = [{
    Each `sbp.vit_block` becomes timm's pre-norm Block: its parameters under
    timm's names and initialisers, LayerNorm, the qkv projection, an
    `sbp.attention` (an SBP map when the block has `attn_sbp`), the output
    projection and the residual add, then the MLP branch (inside an
    `sbp.branch` when the block has `mlp_sbp`) and its residual add.
    Each `sbp.convnext_block` becomes timm's ConvNeXtBlock (depth-wise 7x7
    convolution, then the MLP branch: LayerNorm, pw-conv1, GELU, pw-conv2,
    layer scale, inside an `sbp.branch` with `mlp_sbp`, and the residual
    add); each `sbp.convnext_downsample` its LayerNorm, 2x2 space-to-depth
    and linear reduction (an `sbp.branch` with `sbp`).
  }];
  let dependentDialects = ["::sbp::SbpDialect"];
}

def SbpInsertMasks : Pass<"sbp-insert-masks", "::mlir::ModuleOp"> {
  let summary = "Replace sbp.branch regions by their body, a keep mask and a gradient gate";
  let description = [{
    For each mask group used with a keep ratio below 1, adds one
    `sbp.keep_indices` (drawn once per step, shared by the group's branches);
    inlines every `sbp.branch` body and gates its results with
    `sbp.grad_gate`, whose gradient is zero at dropped rows. Inlined ops are
    tagged with the branch's name (`sbp.region`) for reports. An SBP
    `sbp.attention` gets its group's keep indices as its `keep` operand. A
    group at keep 1.0 adds no gate and no keep operand: the gradient is then
    exactly the ordinary one. A `heads` group without `shared` used by
    several attention ops is drawn per op (vit_sbp.py draws each block's heads
    anew): each op gets a copy of the group, `@<group>.<region>` (e.g.
    `@h.blocks.1.attn`), in program order where the group stood.
  }];
  let options = [
    Option<"keepOverride", "keep", "double", "-1.0",
           "If in (0, 1], overrides the keep ratio of every mask group">
  ];
  let dependentDialects = ["::sbp::SbpDialect"];
}

def SbpSinkTakeToken : Pass<"sbp-sink-take-token", "::mlir::ModuleOp"> {
  let summary = "Run the token-wise ops before a class-token read on that token's row only";
  let description = [{
    Moves each `sbp.take_token` up through the token-wise ops that produce
    its input (linear, bias_add, add, layer_norm, gelu, relu; an
    `sbp.grad_gate` whose mask group always keeps the token), while every
    reader of the value takes the same token: in a ViT with class-token
    pooling the last block's output projection, residual adds, norm2 and MLP
    then run on [B, D] instead of [B, T, D], forward and backward. It stops at
    the attention and at values read in full. Values and gradients are
    unchanged.
  }];
  let dependentDialects = ["::sbp::SbpDialect"];
}

def SbpAutodiff : Pass<"sbp-autodiff", "::mlir::ModuleOp"> {
  let summary = "Append the reverse-mode backward of the loss to each model";
  let description = [{
    Walks the forward ops in reverse and asks each op's GradientOpInterface
    for its operands' gradients, summing gradients of values used more than
    once. Ends with one `sbp.param_grad` per parameter. Backward ops carry the
    `sbp.bwd` attribute, and the `sbp.region` of the forward op they came from.
  }];
}

def SbpCheckGradientSupport : Pass<"sbp-check-gradient-support", "::mlir::ModuleOp"> {
  let summary = "Compute which token rows of each gradient can be non-zero; diagnose vanishing gradients";
  let description = [{
    Propagates gradient support (all rows, or the kept rows of a set of mask
    groups) through the backward. A gradient that passes the gates of mask
    groups whose kept sets can be disjoint (Eq. 10 of the paper: the keep
    ratios r_i satisfy sum(1 - r_i) >= 1, so some steps keep no common token)
    is an error: the parameters behind it would get no gradient. With
    `annotate`, each backward op gets an `sbp.support` attribute.
  }];
  let options = [
    Option<"annotate", "annotate", "bool", "false", "Attach sbp.support to backward ops">
  ];
}

def SbpPruneBackward : Pass<"sbp-prune-backward", "::mlir::ModuleOp"> {
  let summary = "Run backward computations on kept rows only, and save activations at kept rows only";
  let description = [{
    Every backward op whose gradient operand is zero outside the kept rows
    (per gradient support) and that is token-wise (RowWiseOpInterface) is
    rebuilt on the compact rows [B, K, D]; the forward activations it reads
    are gathered (`sbp.gather_rows`) right after they are computed, so only
    the kept rows stay live into the backward. Compact gradients re-enter the
    residual stream with `sbp.scatter_add_rows`.
  }];
}

def SbpRecompute : Pass<"sbp-recompute", "::mlir::ModuleOp"> {
  let summary = "Recompute cheap activations in the backward instead of saving them";
  let description = [{
    A forward `sbp.gelu`, `sbp.relu` or `sbp.layer_norm` whose output the
    backward reads is cloned into the backward, right before its first
    backward reader, when its input is saved for the backward anyway (GELU's
    and LayerNorm's gradients read their inputs). Its output then dies in the
    forward. Under SBP the clone runs on the saved kept rows of the input.
  }];
}

def SbpLowerToKernels : Pass<"sbp-lower-to-kernels", "::mlir::ModuleOp"> {
  let summary = "Lower each sbp.model to sbpk.graph @train and @eval kernel graphs";
  let description = [{
    One sbpk op per kernel launch with static sizes: linears and their
    gradients become `sbpk.gemm` (m, n, k, transposes), the rest
    `sbpk.kernel` calls of the kernel table; the loss and its gradient fuse
    into one `softmax_xent_grad`. The eval graph is the forward slice of the
    loss and the logits, without SBP.
  }];
  let dependentDialects = ["::sbpk::SbpkDialect"];
}

def SbpFuseEpilogues : Pass<"sbp-fuse-epilogues", "::mlir::ModuleOp"> {
  let summary = "Fold bias and residual adds into GEMMs, SBP row scatters into depth-wise conv gradients";
  let description = [{
    `sbpk.gemm` followed by a `bias_add` kernel that is its only reader becomes
    one `gemm_bias` kernel (cuBLASLt's bias epilogue); when the biased result
    only feeds an `add`, that residual add folds in too (`gemm_bias_residual`,
    C = A B + bias + x through beta = 1). Each fold saves a full read and write
    of the activation.

    A `scatter_rows` whose only readers are the dy operands of
    `dwconv_grad_input` / `dwconv_grad_weight` (a ConvNeXt block's SBP branch
    gradient) or of `space_to_depth_grad` (a downsampling's) folds into them:
    they become their `_rows` forms, reading the kept rows through the keep
    indices, and the full zero-filled gradient is never written.
  }];
}

def SbpFuseKernels : Pass<"sbp-fuse-kernels", "::mlir::ModuleOp"> {
  let summary = "Group memory-bound kernels into fusion groups generated as one kernel each";
  let description = [{
    Runs on the kernel graph after `sbp-assign-precision`. Folds each
    `bias_grad` into the weight-gradient GEMM that reduces over the same rows
    (`gemm_bgrad`: dW and the bias gradient in one call, cuBLASLt's
    bias-gradient epilogue on the GPU). Then outlines `sbpk.fused` groups:

    - `rowwise`: a `layer_norm_grad` with the `layer_norm` recomputing the
      same rows and the ops on its dx (the residual `add`, the bf16 `cast`);
    - `elementwise`: connected `add`/`cast`/`gelu`/`gelu_grad`/`relu`/
      `relu_grad` kernels of one element count, consumers and siblings that
      read the same tensor (the GELU recompute beside the GELU gradient);
    - `multi_cast`: every float32 -> bf16 parameter copy in one launch.

    A group that would create a cycle (an outside op depending on one member
    and feeding another) is shrunk until it does not; lone kernels stay
    library calls. The emitters generate each group as one kernel
    (`--emit=cpp` shows them next to the step).
  }];
}

def SbpAssignPrecision : Pass<"sbp-assign-precision", "::mlir::ModuleOp"> {
  let summary = "Choose the element type of every kernel-graph value (fp32, or bf16 mixed precision)";
  let description = [{
    `precision=fp32` leaves the graph as lowered. `precision=bf16` stores
    activations and activation gradients in bfloat16 and keeps float32 where
    PyTorch autocast does: parameters and their gradients, the loss and the
    logits, the residual stream and its gradient, attention log-sum-exps; a
    LayerNorm input gradient has its input's type (autocast's gradient of a
    bf16 tensor is bf16). GEMM operands and the depth-wise convolution's input
    are bfloat16 (a `cast` kernel makes the step's bf16 copy of each weight,
    and of a float32 activation such as the residual stream that a depth-wise
    convolution reads); GEMMs accumulate in float32.
  }];
  let options = [
    Option<"precision", "precision", "std::string", "\"fp32\"", "fp32 or bf16">
  ];
}

def SbpSplitWeightGrads : Pass<"sbp-split-weight-grads", "::mlir::ModuleOp"> {
  let summary = "Run weight-gradient GEMMs as row-chunk products that the deferred sum launch adds";
  let description = [{
    Runs after `sbp-fuse-kernels`, before `sbp-plan-memory`. A `sbpk.gemm`
    that is only a parameter gradient (dW = dy^T x: `trans_a`, not
    `trans_b`, no C input, beta 0, float32) gets `row_chunks` = S (the
    largest divisor of K up to one wave of 128 x 128 tiles on 132 SMs, at
    most 64, at least 16 rows a chunk), `scratch_bytes` for S float32
    partial products and `deferred_sums`. The CUDA trainer runs it as one
    strided-batched cuBLASLt call without split-K (`gemm_row_chunks`) and
    adds the partials in chunk order in the step's deferred column-sum
    launch: one launch per weight gradient instead of cuBLASLt's split-K
    kernel and its reduction kernel. `target=cpu` leaves the graph alone.
  }];
  let options = [
    Option<"target", "target", "std::string", "\"cuda\"", "cuda, or cpu (no change)">
  ];
}

def SbpKernelScratch : Pass<"sbp-kernel-scratch", "::mlir::ModuleOp"> {
  let summary = "Give the library kernels that use a large scratch buffer their arena scratch";
  let description = [{
    Runs before `sbp-plan-memory`, which places the scratch in the arena,
    live only while its kernel runs; the emitter passes it as the kernel
    table's `SBP_ARG_SCRATCH` argument. On the CUDA target a bf16
    `attention_bwd` (and its `_rows` / `_heads` variants) gets
    `scratch_bytes` = `sbp_attention_ds_bytes(batch, tokens, heads)`
    (sbp/kernel_scratch.h): the dK/dV kernel stores dS^T there and the dQ
    kernel reads dQ = dS K from it instead of recomputing the scores. The
    kernel also runs without it, so the scratch is `scratch_optional`:
    `sbp-plan-memory` grants it only where it fits below the peak the rest
    of the plan needs, and drops it (the call gets nullptr, 0) where it would
    raise the peak. Float32 kernels and `target=cpu` get nothing.
  }];
  let options = [
    Option<"target", "target", "std::string", "\"cuda\"", "cuda, or cpu (no change)">
  ];
}

def SbpPlanMemory : Pass<"sbp-plan-memory", "::mlir::ModuleOp"> {
  let summary = "Place every kernel-graph value in one arena (live intervals, best fit)";
  let description = [{
    XLA heap-simulator style: each value's live interval runs from its
    defining op to its last use; values are placed largest first at the lowest
    256-byte-aligned offset that overlaps no placed value live at the same
    time. Sets `arena_offsets` on each op and `arena_bytes` on the graph.
    Parameter gradients are written straight into the gradient buffer.
    Scratch marked `scratch_optional` is placed last, only where it fits
    below the arena size the other buffers need; where it does not, the op
    loses `scratch_bytes` (its kernel runs without the scratch).
  }];
}

#endif // SBP_PASSES_TD
