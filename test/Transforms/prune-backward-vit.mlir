// RUN: sbp-opt %s -split-input-file -sbp-decompose -sbp-insert-masks -sbp-autodiff -sbp-check-gradient-support -sbp-prune-backward | FileCheck %s
// RUN: sbp-opt %s -split-input-file -sbp-decompose -sbp-insert-masks -sbp-autodiff -sbp-check-gradient-support -sbp-prune-backward | FileCheck %s --check-prefix=NOFULL

// Pruning a ViT block (batch 4, 17 tokens, width 24, 3 heads; @m keeps
// K = 9 rows: 8 of the 4x4 grid and the class token).
//
// drop_qkv: dq, dk, dv are zero outside the kept rows, so everything behind
// the attention map's gradient runs on [B, K, D]: the qkv projection's weight
// and input gradients, norm1's gradient, and the activations they read (the
// block input, norm1's output, qkv, lse) are gathered right after they are
// made, in the forward. The attention output stays full: the output
// projection's weight gradient reads it at every row (its incoming gradient
// is the full residual stream). The projection's input gradient only feeds
// the kept rows of the map's gradient, so it runs on K rows. The compact
// gradient re-enters the residual stream by scatter_add_rows.

// CHECK-LABEL: sbp.model @qkv
// CHECK:         %[[K:.*]] = sbp.keep_indices @m : tensor<9xi32>
// CHECK:         %[[X0:.*]] = sbp.cls_concat
// CHECK-NEXT:    %[[X0K:.*]] = sbp.gather_rows %[[X0]], %[[K]] {sbp.region = "blocks.0.attn"} : (tensor<4x17x24xf32>, tensor<9xi32>) -> tensor<4x9x24xf32>
// CHECK:         %[[N1:.*]] = sbp.layer_norm %[[X0]], {{.*}}sbp.region = "blocks.0.attn"
// CHECK-NEXT:    %[[N1K:.*]] = sbp.gather_rows %[[N1]], %[[K]] {sbp.region = "blocks.0.attn"} : (tensor<4x17x24xf32>, tensor<9xi32>) -> tensor<4x9x24xf32>
// CHECK-NEXT:    %[[Q0:.*]] = sbp.linear %[[N1]],
// CHECK-NEXT:    %[[QKV:.*]] = sbp.bias_add %[[Q0]],
// CHECK-NEXT:    %[[QKVK:.*]] = sbp.gather_rows %[[QKV]], %[[K]] {sbp.region = "blocks.0.attn"} : (tensor<4x17x72xf32>, tensor<9xi32>) -> tensor<4x9x72xf32>
// CHECK-NEXT:    %[[O:.*]], %[[LSE:.*]] = sbp.attention %[[QKV]], %[[K]] heads 3 sbp @m drop_qkv {sbp.region = "blocks.0.attn"}
// CHECK-NEXT:    %[[LSEK:.*]] = sbp.gather_rows %[[LSE]], %[[K]] {sbp.region = "blocks.0.attn"} : (tensor<4x17x3xf32>, tensor<9xi32>) -> tensor<4x9x3xf32>
// CHECK-NEXT:    sbp.linear %[[O]], %{{.*}} {sbp.region = "blocks.0.attn"} : (tensor<4x17x24xf32>, tensor<24x24xf32>) -> tensor<4x17x24xf32>
// The MLP branch's backward (pruned as for any token-wise branch), then the
// attention branch's.
// CHECK:         %[[DY:.*]] = sbp.scatter_add_rows %{{.*}}, %{{.*}}, %[[K]] {sbp.bwd, sbp.region = "blocks.0.mlp"} : (tensor<4x17x24xf32>, tensor<4x9x24xf32>, tensor<9xi32>) -> tensor<4x17x24xf32>
// CHECK-NEXT:    sbp.bias_grad %[[DY]] {sbp.bwd, sbp.region = "blocks.0.attn"} : (tensor<4x17x24xf32>) -> tensor<24xf32>
// CHECK-NEXT:    %[[DYK:.*]] = sbp.gather_rows %[[DY]], %[[K]] {sbp.bwd, sbp.region = "blocks.0.attn"} : (tensor<4x17x24xf32>, tensor<9xi32>) -> tensor<4x9x24xf32>
// CHECK-NEXT:    %[[DOK:.*]] = sbp.linear_grad_input %[[DYK]], %{{.*}} {sbp.bwd, sbp.region = "blocks.0.attn"} : (tensor<4x9x24xf32>, tensor<24x24xf32>) -> tensor<4x9x24xf32>
// CHECK-DAG:     sbp.linear_grad_weight %[[O]], %[[DY]] {sbp.bwd, sbp.region = "blocks.0.attn"} : (tensor<4x17x24xf32>, tensor<4x17x24xf32>) -> tensor<24x24xf32>
// CHECK-DAG:     %[[OK:.*]] = sbp.gather_rows %[[O]], %[[K]] {sbp.bwd, sbp.region = "blocks.0.attn"} : (tensor<4x17x24xf32>, tensor<9xi32>) -> tensor<4x9x24xf32>
// CHECK:         %[[DQKV:.*]] = sbp.attention_grad %[[QKVK]], %[[OK]], %[[LSEK]], %[[DOK]], %[[K]] heads 3 mode drop_qkv {sbp.bwd, sbp.region = "blocks.0.attn"} : (tensor<4x9x72xf32>, tensor<4x9x24xf32>, tensor<4x9x3xf32>, tensor<4x9x24xf32>, tensor<9xi32>) -> tensor<4x9x72xf32>
// CHECK-NEXT:    sbp.bias_grad %[[DQKV]] {sbp.bwd, sbp.region = "blocks.0.attn"} : (tensor<4x9x72xf32>) -> tensor<72xf32>
// CHECK-NEXT:    %[[DN1:.*]] = sbp.linear_grad_input %[[DQKV]], %{{.*}} {sbp.bwd, sbp.region = "blocks.0.attn"} : (tensor<4x9x72xf32>, tensor<72x24xf32>) -> tensor<4x9x24xf32>
// CHECK-NEXT:    sbp.linear_grad_weight %[[N1K]], %[[DQKV]] {sbp.bwd, sbp.region = "blocks.0.attn"} : (tensor<4x9x24xf32>, tensor<4x9x72xf32>) -> tensor<72x24xf32>
// CHECK-NEXT:    %[[DXK:.*]], %{{.*}}, %{{.*}} = sbp.layer_norm_grad %[[X0K]], %{{.*}}, %[[DN1]] {{.*}}sbp.region = "blocks.0.attn"} : (tensor<4x9x24xf32>, tensor<24xf32>, tensor<4x9x24xf32>) -> (tensor<4x9x24xf32>, tensor<24xf32>, tensor<24xf32>)
// CHECK-NEXT:    %[[DX0:.*]] = sbp.scatter_add_rows %[[DY]], %[[DXK]], %[[K]] {sbp.bwd, sbp.region = "blocks.0.attn"} : (tensor<4x17x24xf32>, tensor<4x9x24xf32>, tensor<9xi32>) -> tensor<4x17x24xf32>
// CHECK-NEXT:    sbp.cls_concat_grad %[[DX0]]
// CHECK:         sbp.output

// No backward op of the attention region but the output projection's weight
// and bias gradients (on the full stream) touches 17 rows; dqkv is never
// scattered back to full rows.
// NOFULL-LABEL: sbp.model @qkv
// NOFULL:         sbp.cross_entropy_grad
// NOFULL-NOT:     sbp.{{linear_grad_input|attention_grad|layer_norm_grad|gelu_grad}} {{.*}}sbp.region = "blocks.0.{{attn|mlp}}"} : (tensor<4x17x
// NOFULL-NOT:     sbp.scatter_rows
// NOFULL-NOT:     sbp.mask_rows
// NOFULL:         sbp.output

sbp.model @qkv attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.9, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.5 grid [4, 4] prefix 1
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %pe_w = sbp.param "patch_embed.proj.weight" : tensor<24x3x4x4xf32> init<trunc_normal, 0.02>
  %cls = sbp.param "cls_token" : tensor<1x1x24xf32> init<normal, 1.0e-6>
  %h_w = sbp.param "head.weight" : tensor<10x24xf32> init<trunc_normal, 0.02>
  %tok = sbp.patchify %images patch 4 : tensor<4x3x16x16xf32> -> tensor<4x16x48xf32>
  %e0 = sbp.linear %tok, %pe_w : (tensor<4x16x48xf32>, tensor<24x3x4x4xf32>) -> tensor<4x16x24xf32>
  %x0 = sbp.cls_concat %e0, %cls : (tensor<4x16x24xf32>, tensor<1x1x24xf32>) -> tensor<4x17x24xf32>
  %x1 = sbp.vit_block "blocks.0" %x0 heads 3 hidden 48 mlp_sbp @m attn_sbp @m drop_qkv : tensor<4x17x24xf32>
  %pool = sbp.take_token %x1 index 0 : (tensor<4x17x24xf32>) -> tensor<4x24xf32>
  %logits = sbp.linear %pool, %h_w : (tensor<4x24xf32>, tensor<10x24xf32>) -> tensor<4x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// drop_query: dk and dv come from the kept queries but reach every row, so
// the qkv projection's backward stays on all rows; only lse (and the
// attention output, in the backward) is read at the kept query rows, and the
// output projection's input gradient runs on them.

// CHECK-LABEL: sbp.model @query
// CHECK:         %[[K:.*]] = sbp.keep_indices @m : tensor<9xi32>
// CHECK:         %[[X0:.*]] = sbp.cls_concat
// CHECK-NEXT:    sbp.param "blocks.0.norm1.weight"
// CHECK:         %[[N1:.*]] = sbp.layer_norm %[[X0]],
// CHECK-NEXT:    %[[Q0:.*]] = sbp.linear %[[N1]],
// CHECK-NEXT:    %[[QKV:.*]] = sbp.bias_add %[[Q0]],
// CHECK-NEXT:    %[[O:.*]], %[[LSE:.*]] = sbp.attention %[[QKV]], %[[K]] heads 3 sbp @m drop_query {sbp.region = "blocks.0.attn"}
// CHECK-NEXT:    %[[LSEK:.*]] = sbp.gather_rows %[[LSE]], %[[K]] {sbp.region = "blocks.0.attn"} : (tensor<4x17x3xf32>, tensor<9xi32>) -> tensor<4x9x3xf32>
// CHECK-NEXT:    sbp.linear %[[O]],
// CHECK:         %[[DOK:.*]] = sbp.linear_grad_input %{{.*}} {sbp.bwd, sbp.region = "blocks.0.attn"} : (tensor<4x9x24xf32>, tensor<24x24xf32>) -> tensor<4x9x24xf32>
// CHECK:         %[[DQKV:.*]] = sbp.attention_grad %[[QKV]], %{{.*}}, %[[LSEK]], %[[DOK]], %[[K]] heads 3 mode drop_query {sbp.bwd, sbp.region = "blocks.0.attn"} : (tensor<4x17x72xf32>, tensor<4x9x24xf32>, tensor<4x9x3xf32>, tensor<4x9x24xf32>, tensor<9xi32>) -> tensor<4x17x72xf32>
// CHECK-NEXT:    sbp.bias_grad %[[DQKV]] {sbp.bwd, sbp.region = "blocks.0.attn"} : (tensor<4x17x72xf32>) -> tensor<72xf32>
// CHECK-NEXT:    %[[DN1:.*]] = sbp.linear_grad_input %[[DQKV]], %{{.*}} {sbp.bwd, sbp.region = "blocks.0.attn"} : (tensor<4x17x72xf32>, tensor<72x24xf32>) -> tensor<4x17x24xf32>
// CHECK-NEXT:    sbp.linear_grad_weight %[[N1]], %[[DQKV]] {sbp.bwd, sbp.region = "blocks.0.attn"} : (tensor<4x17x24xf32>, tensor<4x17x72xf32>) -> tensor<72x24xf32>
// CHECK-NEXT:    %[[DX:.*]], %{{.*}}, %{{.*}} = sbp.layer_norm_grad %[[X0]], %{{.*}}, %[[DN1]] {{.*}} : (tensor<4x17x24xf32>, tensor<24xf32>, tensor<4x17x24xf32>)
// CHECK-NEXT:    sbp.add %{{.*}}, %[[DX]] {sbp.bwd, sbp.region = "blocks.0.attn"} : (tensor<4x17x24xf32>, tensor<4x17x24xf32>) -> tensor<4x17x24xf32>
// CHECK-NOT:     sbp.scatter_add_rows
// CHECK:         sbp.output

sbp.model @query attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.9, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.5 grid [4, 4] prefix 1
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %pe_w = sbp.param "patch_embed.proj.weight" : tensor<24x3x4x4xf32> init<trunc_normal, 0.02>
  %cls = sbp.param "cls_token" : tensor<1x1x24xf32> init<normal, 1.0e-6>
  %h_w = sbp.param "head.weight" : tensor<10x24xf32> init<trunc_normal, 0.02>
  %tok = sbp.patchify %images patch 4 : tensor<4x3x16x16xf32> -> tensor<4x16x48xf32>
  %e0 = sbp.linear %tok, %pe_w : (tensor<4x16x48xf32>, tensor<24x3x4x4xf32>) -> tensor<4x16x24xf32>
  %x0 = sbp.cls_concat %e0, %cls : (tensor<4x16x24xf32>, tensor<1x1x24xf32>) -> tensor<4x17x24xf32>
  %x1 = sbp.vit_block "blocks.0" %x0 heads 3 hidden 48 attn_sbp @m drop_query : tensor<4x17x24xf32>
  %pool = sbp.take_token %x1 index 0 : (tensor<4x17x24xf32>) -> tensor<4x24xf32>
  %logits = sbp.linear %pool, %h_w : (tensor<4x24xf32>, tensor<10x24xf32>) -> tensor<4x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// drop_head keeps every row: nothing to prune, nothing gathered.

// CHECK-LABEL: sbp.model @head
// CHECK-NOT:     sbp.gather_rows
// CHECK:         %[[O:.*]], %[[LSE:.*]] = sbp.attention %[[QKV:[0-9]+]], %[[KH:[0-9]+]] heads 3 sbp @h drop_head
// CHECK-NOT:     sbp.gather_rows
// CHECK:         sbp.attention_grad %[[QKV]], %[[O]], %[[LSE]], %{{.*}}, %[[KH]] heads 3 mode drop_head {{.*}} : (tensor<4x17x72xf32>, tensor<4x17x24xf32>, tensor<4x17x3xf32>, tensor<4x17x24xf32>, tensor<3xi32>) -> tensor<4x17x72xf32>
// CHECK-NOT:     sbp.gather_rows
// CHECK-NOT:     sbp.scatter_add_rows
// CHECK:         sbp.output

sbp.model @head attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.9, weight_decay = 0.0>} {
  sbp.mask_group @h keep 0.5 heads [1, 3]
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %pe_w = sbp.param "patch_embed.proj.weight" : tensor<24x3x4x4xf32> init<trunc_normal, 0.02>
  %cls = sbp.param "cls_token" : tensor<1x1x24xf32> init<normal, 1.0e-6>
  %h_w = sbp.param "head.weight" : tensor<10x24xf32> init<trunc_normal, 0.02>
  %tok = sbp.patchify %images patch 4 : tensor<4x3x16x16xf32> -> tensor<4x16x48xf32>
  %e0 = sbp.linear %tok, %pe_w : (tensor<4x16x48xf32>, tensor<24x3x4x4xf32>) -> tensor<4x16x24xf32>
  %x0 = sbp.cls_concat %e0, %cls : (tensor<4x16x24xf32>, tensor<1x1x24xf32>) -> tensor<4x17x24xf32>
  %x1 = sbp.vit_block "blocks.0" %x0 heads 3 hidden 48 attn_sbp @h drop_head : tensor<4x17x24xf32>
  %pool = sbp.take_token %x1 index 0 : (tensor<4x17x24xf32>) -> tensor<4x24xf32>
  %logits = sbp.linear %pool, %h_w : (tensor<4x24xf32>, tensor<10x24xf32>) -> tensor<4x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}
