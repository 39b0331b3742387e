// RUN: sbp-opt %s -split-input-file -verify-diagnostics
//
// One negative case per verifier message of the ViT ops (SbpOps.cpp): the
// `heads` mask kind, sbp.cls_concat, sbp.take_token, sbp.attention (shapes,
// SBP annotation, mask group fit), sbp.vit_block, the gradient ops
// sbp.attention_grad, sbp.cls_concat_grad, sbp.take_token_grad, and linear
// weights with more than two dimensions (a Conv2d patch-embedding weight).
//
// Value-level cases take their operands from `sbpk.input` at the top level (as
// invalid.mlir does); cases that need a mask group sit in a small model whose
// parameters stand in for activations (the model verifier exempts parameters
// from the batch-size rule).

// A heads mask lists the heads of one attention op: grid [1, heads].
sbp.model @heads_grid attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  // expected-error @+1 {{'sbp.mask_group' op a heads mask needs grid [1, heads] and no prefix, got [2, 3] prefix 0}}
  sbp.mask_group @h keep 0.5 heads [2, 3]
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %logits = sbp.param "logits" : tensor<4x10xf32> init<zeros>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// ... and no prefix: a class token is not a head.
sbp.model @heads_prefix attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  // expected-error @+1 {{'sbp.mask_group' op a heads mask needs grid [1, heads] and no prefix, got [1, 3] prefix 1}}
  sbp.mask_group @h keep 0.5 heads [1, 3] prefix 1
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %logits = sbp.param "logits" : tensor<4x10xf32> init<zeros>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// An SBP branch drops token rows: a heads group cannot drive it.
sbp.model @branch_heads attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @h keep 0.5 heads [1, 3]
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %logits = sbp.param "logits" : tensor<4x10xf32> init<zeros>
  %x = sbp.param "x" : tensor<4x3x24xf32> init<zeros>
  // expected-error @+1 {{'sbp.branch' op mask group @h masks attention heads, not tokens}}
  %y = sbp.branch @h (%x) : (tensor<4x3x24xf32>) -> tensor<4x3x24xf32> {
  ^bb0(%a: tensor<4x3x24xf32>):
    %g = sbp.gelu %a : (tensor<4x3x24xf32>) -> tensor<4x3x24xf32>
    sbp.yield %g : tensor<4x3x24xf32>
  }
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// cls_concat: the input is a token tensor.
%x = sbpk.input "x" : tensor<4x24xf32>
%cls = sbpk.input "cls" : tensor<1x1x24xf32>
// expected-error @+1 {{'sbp.cls_concat' op input must be a token tensor [B, T, D]}}
%y = sbp.cls_concat %x, %cls : (tensor<4x24xf32>, tensor<1x1x24xf32>) -> tensor<4x2x24xf32>

// -----

// cls_concat: one class token [1, 1, D] of the input's width ...
%x = sbpk.input "x" : tensor<4x16x24xf32>
%cls = sbpk.input "cls" : tensor<1x1x12xf32>
// expected-error @+1 {{'sbp.cls_concat' op class token must have shape [1, 1, 24], got [1, 1, 12]}}
%y = sbp.cls_concat %x, %cls : (tensor<4x16x24xf32>, tensor<1x1x12xf32>) -> tensor<4x17x24xf32>

// -----

// ... shared by the batch (not one per image) ...
%x = sbpk.input "x" : tensor<4x16x24xf32>
%cls = sbpk.input "cls" : tensor<4x1x24xf32>
// expected-error @+1 {{'sbp.cls_concat' op class token must have shape [1, 1, 24], got [4, 1, 24]}}
%y = sbp.cls_concat %x, %cls : (tensor<4x16x24xf32>, tensor<4x1x24xf32>) -> tensor<4x17x24xf32>

// -----

// ... and the result has one token more.
%x = sbpk.input "x" : tensor<4x16x24xf32>
%cls = sbpk.input "cls" : tensor<1x1x24xf32>
// expected-error @+1 {{'sbp.cls_concat' op result must have shape [4, 17, 24], got [4, 16, 24]}}
%y = sbp.cls_concat %x, %cls : (tensor<4x16x24xf32>, tensor<1x1x24xf32>) -> tensor<4x16x24xf32>

// -----

// take_token: the index is a token of the input (T = 17: 0..16).
%x = sbpk.input "x" : tensor<4x17x24xf32>
// expected-error @+1 {{'sbp.take_token' op token index 17 is outside [0, 17)}}
%y = sbp.take_token %x index 17 : (tensor<4x17x24xf32>) -> tensor<4x24xf32>

// -----

%x = sbpk.input "x" : tensor<4x17x24xf32>
// expected-error @+1 {{'sbp.take_token' op token index -1 is outside [0, 17)}}
%y = sbp.take_token %x index -1 : (tensor<4x17x24xf32>) -> tensor<4x24xf32>

// -----

// take_token: [B, T, D] -> [B, D].
%x = sbpk.input "x" : tensor<4x17x24xf32>
// expected-error @+1 {{'sbp.take_token' op result must have shape [4, 24], got [4, 17]}}
%y = sbp.take_token %x index 0 : (tensor<4x17x24xf32>) -> tensor<4x17xf32>

// -----

%x = sbpk.input "x" : tensor<4x24xf32>
// expected-error @+1 {{'sbp.take_token' op input must be a token tensor [B, T, D]}}
%y = sbp.take_token %x index 0 : (tensor<4x24xf32>) -> tensor<4x24xf32>

// -----

// attention: qkv is [B, T, 3 * D] ...
%qkv = sbpk.input "qkv" : tensor<4x17x70xf32>
// expected-error @+1 {{'sbp.attention' op qkv must be [B, T, 3 * D], got 'tensor<4x17x70xf32>'}}
%o, %l = sbp.attention %qkv heads 2 : (tensor<4x17x70xf32>) -> (tensor<4x17x23xf32>, tensor<4x17x2xf32>)

// -----

%qkv = sbpk.input "qkv" : tensor<68x72xf32>
// expected-error @+1 {{'sbp.attention' op qkv must be [B, T, 3 * D], got 'tensor<68x72xf32>'}}
%o, %l = sbp.attention %qkv heads 3 : (tensor<68x72xf32>) -> (tensor<68x24xf32>, tensor<68x3xf32>)

// -----

// ... and the heads divide the width D (24 = 3 * 8, not 5 * k).
%qkv = sbpk.input "qkv" : tensor<4x17x72xf32>
// expected-error @+1 {{'sbp.attention' op heads (5) must be positive and divide the width 24}}
%o, %l = sbp.attention %qkv heads 5 : (tensor<4x17x72xf32>) -> (tensor<4x17x24xf32>, tensor<4x17x5xf32>)

// -----

%qkv = sbpk.input "qkv" : tensor<4x17x72xf32>
// expected-error @+1 {{'sbp.attention' op heads (0) must be positive and divide the width 24}}
%o, %l = sbp.attention %qkv heads 0 : (tensor<4x17x72xf32>) -> (tensor<4x17x24xf32>, tensor<4x17x1xf32>)

// -----

// attention results: out [B, T, D] and lse [B, T, heads].
%qkv = sbpk.input "qkv" : tensor<4x17x72xf32>
// expected-error @+1 {{'sbp.attention' op result must have shape [4, 17, 24], got [4, 17, 72]}}
%o, %l = sbp.attention %qkv heads 3 : (tensor<4x17x72xf32>) -> (tensor<4x17x72xf32>, tensor<4x17x3xf32>)

// -----

%qkv = sbpk.input "qkv" : tensor<4x17x72xf32>
// expected-error @+1 {{'sbp.attention' op lse must have shape [4, 17, 3], got [4, 17, 1]}}
%o, %l = sbp.attention %qkv heads 3 : (tensor<4x17x72xf32>) -> (tensor<4x17x24xf32>, tensor<4x17x1xf32>)

// -----

// An SBP attention names a mask group and a mode together (the custom form
// cannot say one without the other; the generic form can).
%qkv = sbpk.input "qkv" : tensor<4x17x72xf32>
// expected-error @+1 {{'sbp.attention' op an SBP attention needs both a mask group and a mode}}
%o:2 = "sbp.attention"(%qkv) <{heads = 3 : i64, mask = @m}> : (tensor<4x17x72xf32>) -> (tensor<4x17x24xf32>, tensor<4x17x3xf32>)

// -----

%qkv = sbpk.input "qkv" : tensor<4x17x72xf32>
// expected-error @+1 {{'sbp.attention' op an SBP attention needs both a mask group and a mode}}
%o:2 = "sbp.attention"(%qkv) <{heads = 3 : i64, mode = #sbp<attention_mode drop_qkv>}> : (tensor<4x17x72xf32>) -> (tensor<4x17x24xf32>, tensor<4x17x3xf32>)

// -----

// Keep indices only make sense with an SBP mode.
%qkv = sbpk.input "qkv" : tensor<4x17x72xf32>
%k = sbpk.input "k" : tensor<9xi32>
// expected-error @+1 {{'sbp.attention' op keep indices need an SBP mode}}
%o, %l = sbp.attention %qkv, %k heads 3 : (tensor<4x17x72xf32>, tensor<9xi32>) -> (tensor<4x17x24xf32>, tensor<4x17x3xf32>)

// -----

sbp.model @attn_keep_rank attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.5 grid [4, 4] prefix 1
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %logits = sbp.param "logits" : tensor<4x10xf32> init<zeros>
  %qkv = sbp.param "qkv" : tensor<4x17x72xf32> init<zeros>
  %k = sbp.keep_indices @m : tensor<3x3xi32>
  // expected-error @+1 {{'sbp.attention' op keep indices must be [K]}}
  %o, %l = sbp.attention %qkv, %k heads 3 sbp @m drop_qkv : (tensor<4x17x72xf32>, tensor<3x3xi32>) -> (tensor<4x17x24xf32>, tensor<4x17x3xf32>)
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// The mask group of an SBP attention must exist ...
sbp.model @attn_unknown attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %logits = sbp.param "logits" : tensor<4x10xf32> init<zeros>
  %qkv = sbp.param "qkv" : tensor<4x17x72xf32> init<zeros>
  // expected-error @+1 {{'sbp.attention' op refers to an unknown mask group @nope}}
  %o, %l = sbp.attention %qkv heads 3 sbp @nope drop_qkv : (tensor<4x17x72xf32>) -> (tensor<4x17x24xf32>, tensor<4x17x3xf32>)
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// ... drop_head needs a heads group, not a token group ...
sbp.model @drop_head_token_group attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.5 grid [4, 4] prefix 1
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %logits = sbp.param "logits" : tensor<4x10xf32> init<zeros>
  %qkv = sbp.param "qkv" : tensor<4x17x72xf32> init<zeros>
  // expected-error @+1 {{'sbp.attention' op drop_head needs a heads mask group of 3 heads (sbp.mask_group @m keep r heads [1, 3])}}
  %o, %l = sbp.attention %qkv heads 3 sbp @m drop_head : (tensor<4x17x72xf32>) -> (tensor<4x17x24xf32>, tensor<4x17x3xf32>)
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// ... of the op's head count ...
sbp.model @drop_head_count attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @h4 keep 0.5 heads [1, 4]
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %logits = sbp.param "logits" : tensor<4x10xf32> init<zeros>
  %qkv = sbp.param "qkv" : tensor<4x17x72xf32> init<zeros>
  // expected-error @+1 {{'sbp.attention' op drop_head needs a heads mask group of 3 heads (sbp.mask_group @h4 keep r heads [1, 3])}}
  %o, %l = sbp.attention %qkv heads 3 sbp @h4 drop_head : (tensor<4x17x72xf32>) -> (tensor<4x17x24xf32>, tensor<4x17x3xf32>)
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// ... the token modes need a token group ...
sbp.model @drop_qkv_heads_group attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @h keep 0.5 heads [1, 3]
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %logits = sbp.param "logits" : tensor<4x10xf32> init<zeros>
  %qkv = sbp.param "qkv" : tensor<4x17x72xf32> init<zeros>
  // expected-error @+1 {{'sbp.attention' op mode drop_qkv needs a token mask group, @h masks heads}}
  %o, %l = sbp.attention %qkv heads 3 sbp @h drop_qkv : (tensor<4x17x72xf32>) -> (tensor<4x17x24xf32>, tensor<4x17x3xf32>)
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

sbp.model @drop_query_heads_group attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @h keep 0.5 heads [1, 3]
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %logits = sbp.param "logits" : tensor<4x10xf32> init<zeros>
  %qkv = sbp.param "qkv" : tensor<4x17x72xf32> init<zeros>
  // expected-error @+1 {{'sbp.attention' op mode drop_query needs a token mask group, @h masks heads}}
  %o, %l = sbp.attention %qkv heads 3 sbp @h drop_query : (tensor<4x17x72xf32>) -> (tensor<4x17x24xf32>, tensor<4x17x3xf32>)
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// ... covering the op's tokens: 17 = class token + 4x4, not a 4x4 grid alone.
sbp.model @attn_tokens attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @g keep 0.5 grid [4, 4]
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %logits = sbp.param "logits" : tensor<4x10xf32> init<zeros>
  %qkv = sbp.param "qkv" : tensor<4x17x72xf32> init<zeros>
  // expected-error @+1 {{'sbp.attention' op has 17 tokens, but mask group @g covers 16 (prefix 0 + grid [4, 4])}}
  %o, %l = sbp.attention %qkv heads 3 sbp @g drop_qkv : (tensor<4x17x72xf32>) -> (tensor<4x17x24xf32>, tensor<4x17x3xf32>)
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// The keep operand is the group's keep indices: [capacity] = [9] for keep
// 0.5 of 4x4 plus the class token, here the 8 of another group.
sbp.model @attn_keep_shape attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.5 grid [4, 4] prefix 1
  sbp.mask_group @g keep 0.5 grid [4, 4]
  %k = sbp.keep_indices @g : tensor<8xi32>
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %logits = sbp.param "logits" : tensor<4x10xf32> init<zeros>
  %qkv = sbp.param "qkv" : tensor<4x17x72xf32> init<zeros>
  // expected-error @+1 {{'sbp.attention' op keep indices must have shape [9], got [8]}}
  %o, %l = sbp.attention %qkv, %k heads 3 sbp @m drop_qkv : (tensor<4x17x72xf32>, tensor<8xi32>) -> (tensor<4x17x24xf32>, tensor<4x17x3xf32>)
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// drop_head's keep operand lists heads: [3], not the 9 token indices.
sbp.model @attn_keep_heads attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.5 grid [4, 4] prefix 1
  sbp.mask_group @h keep 0.5 heads [1, 3]
  %k = sbp.keep_indices @m : tensor<9xi32>
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %logits = sbp.param "logits" : tensor<4x10xf32> init<zeros>
  %qkv = sbp.param "qkv" : tensor<4x17x72xf32> init<zeros>
  // expected-error @+1 {{'sbp.attention' op keep indices must have shape [3], got [9]}}
  %o, %l = sbp.attention %qkv, %k heads 3 sbp @h drop_head : (tensor<4x17x72xf32>, tensor<9xi32>) -> (tensor<4x17x24xf32>, tensor<4x17x3xf32>)
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// vit_block: a token tensor in, ...
sbp.model @block_rank attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %logits = sbp.param "logits" : tensor<4x10xf32> init<zeros>
  %x = sbp.param "x" : tensor<4x24xf32> init<zeros>
  // expected-error @+1 {{'sbp.vit_block' op input must be a token tensor [B, T, D]}}
  %y = sbp.vit_block "blocks.0" %x heads 3 hidden 48 : tensor<4x24xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// ... heads that divide the width ...
sbp.model @block_heads attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %logits = sbp.param "logits" : tensor<4x10xf32> init<zeros>
  %x = sbp.param "x" : tensor<4x17x24xf32> init<zeros>
  // expected-error @+1 {{'sbp.vit_block' op heads (5) must be positive and divide the width 24}}
  %y = sbp.vit_block "blocks.0" %x heads 5 hidden 48 : tensor<4x17x24xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// ... a positive MLP width ...
sbp.model @block_hidden attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %logits = sbp.param "logits" : tensor<4x10xf32> init<zeros>
  %x = sbp.param "x" : tensor<4x17x24xf32> init<zeros>
  // expected-error @+1 {{'sbp.vit_block' op hidden must be positive}}
  %y = sbp.vit_block "blocks.0" %x heads 3 hidden 0 : tensor<4x17x24xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// ... a positive LayerNorm eps ...
sbp.model @block_eps attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %logits = sbp.param "logits" : tensor<4x10xf32> init<zeros>
  %x = sbp.param "x" : tensor<4x17x24xf32> init<zeros>
  // expected-error @+1 {{'sbp.vit_block' op eps must be > 0}}
  %y = sbp.vit_block "blocks.0" %x heads 3 hidden 48 {eps = 0.0 : f64} : tensor<4x17x24xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// ... a parameter name prefix ...
sbp.model @block_name attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %logits = sbp.param "logits" : tensor<4x10xf32> init<zeros>
  %x = sbp.param "x" : tensor<4x17x24xf32> init<zeros>
  // expected-error @+1 {{'sbp.vit_block' op needs a parameter name prefix}}
  %y = sbp.vit_block "" %x heads 3 hidden 48 : tensor<4x17x24xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// ... attn_sbp with both a group and a mode (generic form) ...
sbp.model @block_attn_mode attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.5 grid [4, 4] prefix 1
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %logits = sbp.param "logits" : tensor<4x10xf32> init<zeros>
  %x = sbp.param "x" : tensor<4x17x24xf32> init<zeros>
  // expected-error @+1 {{'sbp.vit_block' op attn_sbp needs both a mask group and a mode}}
  %y = "sbp.vit_block"(%x) <{attn_mask = @m, heads = 3 : i64, hidden = 48 : i64, name = "blocks.0"}> : (tensor<4x17x24xf32>) -> tensor<4x17x24xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// ... the residual block keeps its type (generic form) ...
sbp.model @block_type attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %logits = sbp.param "logits" : tensor<4x10xf32> init<zeros>
  %x = sbp.param "x" : tensor<4x17x24xf32> init<zeros>
  // expected-error @+1 {{'sbp.vit_block' op failed to verify that all of {input, result} have same type}}
  %y = "sbp.vit_block"(%x) <{heads = 3 : i64, hidden = 48 : i64, name = "blocks.0"}> : (tensor<4x17x24xf32>) -> tensor<4x16x24xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// ... and it is a model-level op: not inside an SBP branch.
sbp.model @block_in_branch attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.5 grid [4, 4] prefix 1
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %logits = sbp.param "logits" : tensor<4x10xf32> init<zeros>
  %x = sbp.param "x" : tensor<4x17x24xf32> init<zeros>
  %y = sbp.branch @m (%x) : (tensor<4x17x24xf32>) -> tensor<4x17x24xf32> {
  ^bb0(%a: tensor<4x17x24xf32>):
    // expected-error @+1 {{'sbp.vit_block' op expects parent op 'sbp.model'}}
    %b = sbp.vit_block "blocks.0" %a heads 3 hidden 48 : tensor<4x17x24xf32>
    sbp.yield %b : tensor<4x17x24xf32>
  }
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// vit_block's MLP branch needs a token group over the block's tokens ...
sbp.model @block_mlp_heads attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @h keep 0.5 heads [1, 3]
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %logits = sbp.param "logits" : tensor<4x10xf32> init<zeros>
  %x = sbp.param "x" : tensor<4x17x24xf32> init<zeros>
  // expected-error @+1 {{'sbp.vit_block' op mlp_sbp needs a token mask group over 17 tokens, @h is not one}}
  %y = sbp.vit_block "blocks.0" %x heads 3 hidden 48 mlp_sbp @h : tensor<4x17x24xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

sbp.model @block_mlp_tokens attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @g keep 0.5 grid [4, 4]
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %logits = sbp.param "logits" : tensor<4x10xf32> init<zeros>
  %x = sbp.param "x" : tensor<4x17x24xf32> init<zeros>
  // expected-error @+1 {{'sbp.vit_block' op mlp_sbp needs a token mask group over 17 tokens, @g is not one}}
  %y = sbp.vit_block "blocks.0" %x heads 3 hidden 48 mlp_sbp @g : tensor<4x17x24xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

sbp.model @block_mlp_unknown attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %logits = sbp.param "logits" : tensor<4x10xf32> init<zeros>
  %x = sbp.param "x" : tensor<4x17x24xf32> init<zeros>
  // expected-error @+1 {{'sbp.vit_block' op refers to an unknown mask group @nope}}
  %y = sbp.vit_block "blocks.0" %x heads 3 hidden 48 mlp_sbp @nope : tensor<4x17x24xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// ... and its attention map the group its mode needs, as sbp.attention.
sbp.model @block_attn_head_mode attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.5 grid [4, 4] prefix 1
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %logits = sbp.param "logits" : tensor<4x10xf32> init<zeros>
  %x = sbp.param "x" : tensor<4x17x24xf32> init<zeros>
  // expected-error @+1 {{'sbp.vit_block' op drop_head needs a heads mask group of 3 heads (sbp.mask_group @m keep r heads [1, 3])}}
  %y = sbp.vit_block "blocks.0" %x heads 3 hidden 48 mlp_sbp @m attn_sbp @m drop_head : tensor<4x17x24xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

sbp.model @block_attn_token_mode attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.5 grid [4, 4] prefix 1
  sbp.mask_group @h keep 0.5 heads [1, 3]
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %logits = sbp.param "logits" : tensor<4x10xf32> init<zeros>
  %x = sbp.param "x" : tensor<4x17x24xf32> init<zeros>
  // expected-error @+1 {{'sbp.vit_block' op mode drop_qkv needs a token mask group, @h masks heads}}
  %y = sbp.vit_block "blocks.0" %x heads 3 hidden 48 mlp_sbp @m attn_sbp @h drop_qkv : tensor<4x17x24xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

sbp.model @block_attn_tokens attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @g keep 0.5 grid [4, 4]
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %logits = sbp.param "logits" : tensor<4x10xf32> init<zeros>
  %x = sbp.param "x" : tensor<4x17x24xf32> init<zeros>
  // expected-error @+1 {{'sbp.vit_block' op has 17 tokens, but mask group @g covers 16 (prefix 0 + grid [4, 4])}}
  %y = sbp.vit_block "blocks.0" %x heads 3 hidden 48 attn_sbp @g drop_query : tensor<4x17x24xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// attention_grad: keep indices and a mode go together (the custom form
// without a mode; the mode in the generic form).
%qkv = sbpk.input "qkv" : tensor<4x17x72xf32>
%o = sbpk.input "o" : tensor<4x17x24xf32>
%l = sbpk.input "l" : tensor<4x17x3xf32>
%d = sbpk.input "d" : tensor<4x17x24xf32>
%k = sbpk.input "k" : tensor<9xi32>
// expected-error @+1 {{'sbp.attention_grad' op keep indices and an SBP mode go together}}
%g = sbp.attention_grad %qkv, %o, %l, %d, %k heads 3 : (tensor<4x17x72xf32>, tensor<4x17x24xf32>, tensor<4x17x3xf32>, tensor<4x17x24xf32>, tensor<9xi32>) -> tensor<4x17x72xf32>

// -----

%qkv = sbpk.input "qkv" : tensor<4x17x72xf32>
%o = sbpk.input "o" : tensor<4x17x24xf32>
%l = sbpk.input "l" : tensor<4x17x3xf32>
%d = sbpk.input "d" : tensor<4x17x24xf32>
// expected-error @+1 {{'sbp.attention_grad' op keep indices and an SBP mode go together}}
%g = "sbp.attention_grad"(%qkv, %o, %l, %d) <{heads = 3 : i64, mode = #sbp<attention_mode drop_head>}> : (tensor<4x17x72xf32>, tensor<4x17x24xf32>, tensor<4x17x3xf32>, tensor<4x17x24xf32>) -> tensor<4x17x72xf32>

// -----

// attention_grad drop_qkv runs on the K gathered rows: qkv [4, 9, 72].
%qkv = sbpk.input "qkv" : tensor<4x17x72xf32>
%o = sbpk.input "o" : tensor<4x9x24xf32>
%l = sbpk.input "l" : tensor<4x9x3xf32>
%d = sbpk.input "d" : tensor<4x9x24xf32>
%k = sbpk.input "k" : tensor<9xi32>
// expected-error @+1 {{'sbp.attention_grad' op drop_qkv gradient works on the kept rows: qkv must have 9 rows}}
%g = "sbp.attention_grad"(%qkv, %o, %l, %d, %k) <{heads = 3 : i64, mode = #sbp<attention_mode drop_qkv>}> : (tensor<4x17x72xf32>, tensor<4x9x24xf32>, tensor<4x9x3xf32>, tensor<4x9x24xf32>, tensor<9xi32>) -> tensor<4x17x72xf32>

// -----

// attention_grad drop_query: full qkv, but out, lse and dout at the K kept
// query rows.
%qkv = sbpk.input "qkv" : tensor<4x17x72xf32>
%o = sbpk.input "o" : tensor<4x17x24xf32>
%l = sbpk.input "l" : tensor<4x9x3xf32>
%d = sbpk.input "d" : tensor<4x9x24xf32>
%k = sbpk.input "k" : tensor<9xi32>
// expected-error @+1 {{'sbp.attention_grad' op out must have shape [4, 9, 24], got [4, 17, 24]}}
%g = "sbp.attention_grad"(%qkv, %o, %l, %d, %k) <{heads = 3 : i64, mode = #sbp<attention_mode drop_query>}> : (tensor<4x17x72xf32>, tensor<4x17x24xf32>, tensor<4x9x3xf32>, tensor<4x9x24xf32>, tensor<9xi32>) -> tensor<4x17x72xf32>

// -----

// attention_grad drop_head: the keep indices list the heads.
%qkv = sbpk.input "qkv" : tensor<4x17x72xf32>
%o = sbpk.input "o" : tensor<4x17x24xf32>
%l = sbpk.input "l" : tensor<4x17x3xf32>
%d = sbpk.input "d" : tensor<4x17x24xf32>
%k = sbpk.input "k" : tensor<9xi32>
// expected-error @+1 {{'sbp.attention_grad' op drop_head keep indices must list 3 heads}}
%g = "sbp.attention_grad"(%qkv, %o, %l, %d, %k) <{heads = 3 : i64, mode = #sbp<attention_mode drop_head>}> : (tensor<4x17x72xf32>, tensor<4x17x24xf32>, tensor<4x17x3xf32>, tensor<4x17x24xf32>, tensor<9xi32>) -> tensor<4x17x72xf32>

// -----

// attention_grad (plain): lse [B, T, heads], dout like out, dqkv like qkv.
%qkv = sbpk.input "qkv" : tensor<4x17x72xf32>
%o = sbpk.input "o" : tensor<4x17x24xf32>
%l = sbpk.input "l" : tensor<4x17x24xf32>
%d = sbpk.input "d" : tensor<4x17x24xf32>
// expected-error @+1 {{'sbp.attention_grad' op lse must have shape [4, 17, 3], got [4, 17, 24]}}
%g = sbp.attention_grad %qkv, %o, %l, %d heads 3 : (tensor<4x17x72xf32>, tensor<4x17x24xf32>, tensor<4x17x24xf32>, tensor<4x17x24xf32>) -> tensor<4x17x72xf32>

// -----

%qkv = sbpk.input "qkv" : tensor<4x17x72xf32>
%o = sbpk.input "o" : tensor<4x17x24xf32>
%l = sbpk.input "l" : tensor<4x17x3xf32>
%d = sbpk.input "d" : tensor<4x16x24xf32>
// expected-error @+1 {{'sbp.attention_grad' op grad must have shape [4, 17, 24], got [4, 16, 24]}}
%g = sbp.attention_grad %qkv, %o, %l, %d heads 3 : (tensor<4x17x72xf32>, tensor<4x17x24xf32>, tensor<4x17x3xf32>, tensor<4x16x24xf32>) -> tensor<4x17x72xf32>

// -----

%qkv = sbpk.input "qkv" : tensor<4x17x72xf32>
%o = sbpk.input "o" : tensor<4x17x24xf32>
%l = sbpk.input "l" : tensor<4x17x3xf32>
%d = sbpk.input "d" : tensor<4x17x24xf32>
// expected-error @+1 {{'sbp.attention_grad' op result must have shape [4, 17, 72], got [4, 17, 24]}}
%g = sbp.attention_grad %qkv, %o, %l, %d heads 3 : (tensor<4x17x72xf32>, tensor<4x17x24xf32>, tensor<4x17x3xf32>, tensor<4x17x24xf32>) -> tensor<4x17x24xf32>

// -----

%qkv = sbpk.input "qkv" : tensor<4x17x72xf32>
%o = sbpk.input "o" : tensor<4x17x24xf32>
%l = sbpk.input "l" : tensor<4x17x5xf32>
%d = sbpk.input "d" : tensor<4x17x24xf32>
// expected-error @+1 {{'sbp.attention_grad' op heads (5) must be positive and divide the width 24}}
%g = sbp.attention_grad %qkv, %o, %l, %d heads 5 : (tensor<4x17x72xf32>, tensor<4x17x24xf32>, tensor<4x17x5xf32>, tensor<4x17x24xf32>) -> tensor<4x17x72xf32>

// -----

// cls_concat_grad: dy [B, T + 1, D] -> dx [B, T, D], dcls [1, 1, D].
%dy = sbpk.input "dy" : tensor<4x24xf32>
// expected-error @+1 {{'sbp.cls_concat_grad' op gradient must be a token tensor [B, T + 1, D]}}
%dx, %dc = sbp.cls_concat_grad %dy : (tensor<4x24xf32>) -> (tensor<4x24xf32>, tensor<1x1x24xf32>)

// -----

%dy = sbpk.input "dy" : tensor<4x1x24xf32>
// expected-error @+1 {{'sbp.cls_concat_grad' op gradient must be a token tensor [B, T + 1, D]}}
%dx, %dc = sbp.cls_concat_grad %dy : (tensor<4x1x24xf32>) -> (tensor<4x1x24xf32>, tensor<1x1x24xf32>)

// -----

%dy = sbpk.input "dy" : tensor<4x17x24xf32>
// expected-error @+1 {{'sbp.cls_concat_grad' op input gradient must have shape [4, 16, 24], got [4, 17, 24]}}
%dx, %dc = sbp.cls_concat_grad %dy : (tensor<4x17x24xf32>) -> (tensor<4x17x24xf32>, tensor<1x1x24xf32>)

// -----

%dy = sbpk.input "dy" : tensor<4x17x24xf32>
// expected-error @+1 {{'sbp.cls_concat_grad' op class token gradient must have shape [1, 1, 24], got [4, 1, 24]}}
%dx, %dc = sbp.cls_concat_grad %dy : (tensor<4x17x24xf32>) -> (tensor<4x16x24xf32>, tensor<4x1x24xf32>)

// -----

// take_token_grad: dy [B, D] -> dx [B, T, D] with the token inside T.
%dy = sbpk.input "dy" : tensor<4x24xf32>
// expected-error @+1 {{'sbp.take_token_grad' op result must be [B, T, D] for a gradient [B, D]}}
%dx = sbp.take_token_grad %dy index 0 : (tensor<4x24xf32>) -> tensor<4x17x12xf32>

// -----

%dy = sbpk.input "dy" : tensor<4x24xf32>
// expected-error @+1 {{'sbp.take_token_grad' op token index 17 is outside [0, 17)}}
%dx = sbp.take_token_grad %dy index 17 : (tensor<4x24xf32>) -> tensor<4x17x24xf32>

// -----

// A linear weight may be a Conv2d weight [D, C, p, p] over patchify tokens
// (in = C * p * p = 48): accepted. One whose C * p * p is not the token width
// is not.
%tok = sbpk.input "tok" : tensor<4x16x48xf32>
%w = sbpk.input "w" : tensor<24x3x4x4xf32>
%w3 = sbpk.input "w3" : tensor<24x3x3x3xf32>
%e = sbp.linear %tok, %w : (tensor<4x16x48xf32>, tensor<24x3x4x4xf32>) -> tensor<4x16x24xf32>
// expected-error @+1 {{'sbp.linear' op input features (48) must equal the weight's in (27)}}
%bad = sbp.linear %tok, %w3 : (tensor<4x16x48xf32>, tensor<24x3x3x3xf32>) -> tensor<4x16x24xf32>

// -----

// Its gradients: dx [B, T, C*p*p] ...
%dy = sbpk.input "dy" : tensor<4x16x24xf32>
%w = sbpk.input "w" : tensor<24x3x4x4xf32>
%dx = sbp.linear_grad_input %dy, %w : (tensor<4x16x24xf32>, tensor<24x3x4x4xf32>) -> tensor<4x16x48xf32>
// expected-error @+1 {{'sbp.linear_grad_input' op result must have shape [4, 16, 48], got [4, 16, 3]}}
%bad = sbp.linear_grad_input %dy, %w : (tensor<4x16x24xf32>, tensor<24x3x4x4xf32>) -> tensor<4x16x3xf32>

// -----

// ... and dW in the weight's own shape, whose in-features match the input.
%x = sbpk.input "x" : tensor<4x16x48xf32>
%dy = sbpk.input "dy" : tensor<4x16x24xf32>
%dw = sbp.linear_grad_weight %x, %dy : (tensor<4x16x48xf32>, tensor<4x16x24xf32>) -> tensor<24x3x4x4xf32>
// expected-error @+1 {{'sbp.linear_grad_weight' op result must have shape [24, 48], got [24, 3, 3, 3]}}
%bad = sbp.linear_grad_weight %x, %dy : (tensor<4x16x48xf32>, tensor<4x16x24xf32>) -> tensor<24x3x3x3xf32>
