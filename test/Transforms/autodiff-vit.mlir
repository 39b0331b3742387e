// RUN: sbp-opt %s -split-input-file -sbp-decompose -sbp-insert-masks -sbp-autodiff | FileCheck %s

// Reverse mode through a ViT block (width 24, 3 heads of 8, 17 tokens) for
// each attention mode, the class token (cls_concat) and class-token pooling
// (take_token). The attention gradient recomputes the map from the saved
// output and lse (sbp.attention_grad):
// * plain: every row, every head;
// * drop_qkv: qkv, out, lse and dout gathered at the K = 9 kept rows, the
//   gradient of the restricted attention on [B, K, 3D], scattered back;
// * drop_query: keys and values of every row (full qkv), out, lse and dout
//   of the kept query rows;
// * drop_head: every row, plus the kept heads' indices.
// The gathers' relative order is not fixed (CHECK-DAG).

// CHECK-LABEL: sbp.model @plain
// CHECK:         sbp.cls_concat
// CHECK:         %[[QKV:.*]] = sbp.bias_add %{{.*}} : (tensor<4x17x72xf32>, tensor<72xf32>) -> tensor<4x17x72xf32>
// CHECK-NEXT:    %[[O:.*]], %[[LSE:.*]] = sbp.attention %[[QKV]] heads 3 :
// CHECK:         sbp.take_token
// The pooled gradient lands at token 0 of the last block's output.
// CHECK:         %[[DPOOL:.*]] = sbp.linear_grad_input %{{.*}} {sbp.bwd} : (tensor<4x10xf32>, tensor<10x24xf32>) -> tensor<4x24xf32>
// CHECK:         %[[DX1:.*]] = sbp.take_token_grad %[[DPOOL]] index 0 {sbp.bwd} : (tensor<4x24xf32>) -> tensor<4x17x24xf32>
// CHECK:         %[[DX1B:.*]] = sbp.add %[[DX1]], %{{.*}} {sbp.bwd}
// CHECK:         %[[DOUT:.*]] = sbp.linear_grad_input %[[DX1B]], %{{.*}} {sbp.bwd} : (tensor<4x17x24xf32>, tensor<24x24xf32>) -> tensor<4x17x24xf32>
// CHECK-NEXT:    sbp.linear_grad_weight %[[O]], %[[DX1B]]
// CHECK-NEXT:    %[[DQKV:.*]] = sbp.attention_grad %[[QKV]], %[[O]], %[[LSE]], %[[DOUT]] heads 3 {sbp.bwd} : (tensor<4x17x72xf32>, tensor<4x17x24xf32>, tensor<4x17x3xf32>, tensor<4x17x24xf32>) -> tensor<4x17x72xf32>
// CHECK-NEXT:    sbp.bias_grad %[[DQKV]] {sbp.bwd} : (tensor<4x17x72xf32>) -> tensor<72xf32>
// CHECK-NEXT:    sbp.linear_grad_input %[[DQKV]], %{{.*}} : (tensor<4x17x72xf32>, tensor<72x24xf32>) -> tensor<4x17x24xf32>
// CHECK-NEXT:    sbp.linear_grad_weight %{{.*}}, %[[DQKV]] {sbp.bwd} : (tensor<4x17x24xf32>, tensor<4x17x72xf32>) -> tensor<72x24xf32>
// CHECK:         %[[DX0:.*]] = sbp.add %[[DX1B]], %{{.*}} {sbp.bwd}
// The class token's gradient is token 0 summed over the batch; the patch
// tokens' gradient is tokens 1..16.
// CHECK-NEXT:    %[[DE:.*]], %[[DCLS:.*]] = sbp.cls_concat_grad %[[DX0]] {sbp.bwd} : (tensor<4x17x24xf32>) -> (tensor<4x16x24xf32>, tensor<1x1x24xf32>)
// CHECK-NEXT:    sbp.linear_grad_input %[[DE]]
// CHECK-NEXT:    %[[DPE:.*]] = sbp.linear_grad_weight %{{.*}}, %[[DE]] {sbp.bwd} : (tensor<4x16x48xf32>, tensor<4x16x24xf32>) -> tensor<24x3x4x4xf32>
// CHECK:         sbp.param_grad "patch_embed.proj.weight", %[[DPE]] : tensor<24x3x4x4xf32>
// CHECK-NEXT:    sbp.param_grad "cls_token", %[[DCLS]] : tensor<1x1x24xf32>
// CHECK-NOT:     sbp.gather_rows
// CHECK-NOT:     sbp.scatter_rows
// CHECK:         sbp.output

sbp.model @plain attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.9, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.5 grid [4, 4] prefix 1
  sbp.mask_group @h keep 0.5 heads [1, 3]
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %pe_w = sbp.param "patch_embed.proj.weight" : tensor<24x3x4x4xf32> init<trunc_normal, 0.02>
  %cls = sbp.param "cls_token" : tensor<1x1x24xf32> init<normal, 1.0e-6>
  %h_w = sbp.param "head.weight" : tensor<10x24xf32> init<trunc_normal, 0.02>
  %tok = sbp.patchify %images patch 4 : tensor<4x3x16x16xf32> -> tensor<4x16x48xf32>
  %e0 = sbp.linear %tok, %pe_w : (tensor<4x16x48xf32>, tensor<24x3x4x4xf32>) -> tensor<4x16x24xf32>
  %x0 = sbp.cls_concat %e0, %cls : (tensor<4x16x24xf32>, tensor<1x1x24xf32>) -> tensor<4x17x24xf32>
  %x1 = sbp.vit_block "blocks.0" %x0 heads 3 hidden 48 : tensor<4x17x24xf32>
  %pool = sbp.take_token %x1 index 0 : (tensor<4x17x24xf32>) -> tensor<4x24xf32>
  %logits = sbp.linear %pool, %h_w : (tensor<4x24xf32>, tensor<10x24xf32>) -> tensor<4x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// CHECK-LABEL: sbp.model @qkv
// CHECK:         %[[K:.*]] = sbp.keep_indices @m : tensor<9xi32>
// CHECK:         %[[QKV:.*]] = sbp.bias_add %{{.*}} : (tensor<4x17x72xf32>, tensor<72xf32>) -> tensor<4x17x72xf32>
// CHECK-NEXT:    %[[O:.*]], %[[LSE:.*]] = sbp.attention %[[QKV]], %[[K]] heads 3 sbp @m drop_qkv
// CHECK:         %[[DOUT:.*]] = sbp.linear_grad_input %{{.*}} {sbp.bwd, sbp.region = "blocks.0.attn"} : (tensor<4x17x24xf32>, tensor<24x24xf32>) -> tensor<4x17x24xf32>
// The projection's weight gradient reads the full attention output.
// CHECK-NEXT:    sbp.linear_grad_weight %[[O]], %{{.*}} {sbp.bwd, sbp.region = "blocks.0.attn"} : (tensor<4x17x24xf32>, tensor<4x17x24xf32>) -> tensor<24x24xf32>
// CHECK-DAG:     %[[QKVK:.*]] = sbp.gather_rows %[[QKV]], %[[K]] {sbp.bwd, sbp.region = "blocks.0.attn"} : (tensor<4x17x72xf32>, tensor<9xi32>) -> tensor<4x9x72xf32>
// CHECK-DAG:     %[[OK:.*]] = sbp.gather_rows %[[O]], %[[K]] {sbp.bwd, sbp.region = "blocks.0.attn"} : (tensor<4x17x24xf32>, tensor<9xi32>) -> tensor<4x9x24xf32>
// CHECK-DAG:     %[[LSEK:.*]] = sbp.gather_rows %[[LSE]], %[[K]] {sbp.bwd, sbp.region = "blocks.0.attn"} : (tensor<4x17x3xf32>, tensor<9xi32>) -> tensor<4x9x3xf32>
// CHECK-DAG:     %[[DOUTK:.*]] = sbp.gather_rows %[[DOUT]], %[[K]] {sbp.bwd, sbp.region = "blocks.0.attn"} : (tensor<4x17x24xf32>, tensor<9xi32>) -> tensor<4x9x24xf32>
// CHECK:         %[[DQKVK:.*]] = sbp.attention_grad %[[QKVK]], %[[OK]], %[[LSEK]], %[[DOUTK]], %[[K]] heads 3 mode drop_qkv {sbp.bwd, sbp.region = "blocks.0.attn"} : (tensor<4x9x72xf32>, tensor<4x9x24xf32>, tensor<4x9x3xf32>, tensor<4x9x24xf32>, tensor<9xi32>) -> tensor<4x9x72xf32>
// CHECK-NEXT:    %[[DQKV:.*]] = sbp.scatter_rows %[[DQKVK]], %[[K]] {sbp.bwd, sbp.region = "blocks.0.attn"} : (tensor<4x9x72xf32>, tensor<9xi32>) -> tensor<4x17x72xf32>
// CHECK-NEXT:    sbp.bias_grad %[[DQKV]] {sbp.bwd, sbp.region = "blocks.0.attn"}
// CHECK-NEXT:    sbp.linear_grad_input %[[DQKV]], %{{.*}} {sbp.bwd, sbp.region = "blocks.0.attn"}
// CHECK-NEXT:    sbp.linear_grad_weight %{{.*}}, %[[DQKV]] {sbp.bwd, sbp.region = "blocks.0.attn"}
// CHECK-NEXT:    sbp.layer_norm_grad {{.*}}sbp.bwd, sbp.region = "blocks.0.attn"
// CHECK-NOT:     sbp.attention_grad
// CHECK:         sbp.output

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
  %x1 = sbp.vit_block "blocks.0" %x0 heads 3 hidden 48 attn_sbp @m drop_qkv : tensor<4x17x24xf32>
  %pool = sbp.take_token %x1 index 0 : (tensor<4x17x24xf32>) -> tensor<4x24xf32>
  %logits = sbp.linear %pool, %h_w : (tensor<4x24xf32>, tensor<10x24xf32>) -> tensor<4x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// CHECK-LABEL: sbp.model @query
// CHECK:         %[[K:.*]] = sbp.keep_indices @m : tensor<9xi32>
// CHECK:         %[[QKV:.*]] = sbp.bias_add %{{.*}} : (tensor<4x17x72xf32>, tensor<72xf32>) -> tensor<4x17x72xf32>
// CHECK-NEXT:    %[[O:.*]], %[[LSE:.*]] = sbp.attention %[[QKV]], %[[K]] heads 3 sbp @m drop_query
// CHECK:         %[[DOUT:.*]] = sbp.linear_grad_input %{{.*}} {sbp.bwd, sbp.region = "blocks.0.attn"} : (tensor<4x17x24xf32>, tensor<24x24xf32>) -> tensor<4x17x24xf32>
// CHECK-NEXT:    sbp.linear_grad_weight %[[O]], %{{.*}} {sbp.bwd, sbp.region = "blocks.0.attn"} : (tensor<4x17x24xf32>, tensor<4x17x24xf32>) -> tensor<24x24xf32>
// CHECK-DAG:     %[[OK:.*]] = sbp.gather_rows %[[O]], %[[K]] {sbp.bwd, sbp.region = "blocks.0.attn"} : (tensor<4x17x24xf32>, tensor<9xi32>) -> tensor<4x9x24xf32>
// CHECK-DAG:     %[[LSEK:.*]] = sbp.gather_rows %[[LSE]], %[[K]] {sbp.bwd, sbp.region = "blocks.0.attn"} : (tensor<4x17x3xf32>, tensor<9xi32>) -> tensor<4x9x3xf32>
// CHECK-DAG:     %[[DOUTK:.*]] = sbp.gather_rows %[[DOUT]], %[[K]] {sbp.bwd, sbp.region = "blocks.0.attn"} : (tensor<4x17x24xf32>, tensor<9xi32>) -> tensor<4x9x24xf32>
// Keys and values of all 17 rows: qkv is not gathered, and dqkv is full.
// CHECK:         %[[DQKV:.*]] = sbp.attention_grad %[[QKV]], %[[OK]], %[[LSEK]], %[[DOUTK]], %[[K]] heads 3 mode drop_query {sbp.bwd, sbp.region = "blocks.0.attn"} : (tensor<4x17x72xf32>, tensor<4x9x24xf32>, tensor<4x9x3xf32>, tensor<4x9x24xf32>, tensor<9xi32>) -> tensor<4x17x72xf32>
// CHECK-NEXT:    sbp.bias_grad %[[DQKV]] {sbp.bwd, sbp.region = "blocks.0.attn"}
// CHECK-NEXT:    sbp.linear_grad_input %[[DQKV]], %{{.*}} {sbp.bwd, sbp.region = "blocks.0.attn"} : (tensor<4x17x72xf32>, tensor<72x24xf32>) -> tensor<4x17x24xf32>
// CHECK-NOT:     sbp.scatter_rows
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

// CHECK-LABEL: sbp.model @head
// CHECK:         %[[KH:.*]] = sbp.keep_indices @h : tensor<3xi32>
// CHECK:         %[[QKV:.*]] = sbp.bias_add %{{.*}} : (tensor<4x17x72xf32>, tensor<72xf32>) -> tensor<4x17x72xf32>
// CHECK-NEXT:    %[[O:.*]], %[[LSE:.*]] = sbp.attention %[[QKV]], %[[KH]] heads 3 sbp @h drop_head
// CHECK:         %[[DOUT:.*]] = sbp.linear_grad_input %{{.*}} {sbp.bwd, sbp.region = "blocks.0.attn"} : (tensor<4x17x24xf32>, tensor<24x24xf32>) -> tensor<4x17x24xf32>
// CHECK-NEXT:    sbp.linear_grad_weight %[[O]]
// CHECK-NEXT:    %[[DQKV:.*]] = sbp.attention_grad %[[QKV]], %[[O]], %[[LSE]], %[[DOUT]], %[[KH]] heads 3 mode drop_head {sbp.bwd, sbp.region = "blocks.0.attn"} : (tensor<4x17x72xf32>, tensor<4x17x24xf32>, tensor<4x17x3xf32>, tensor<4x17x24xf32>, tensor<3xi32>) -> tensor<4x17x72xf32>
// CHECK-NEXT:    sbp.bias_grad %[[DQKV]] {sbp.bwd, sbp.region = "blocks.0.attn"}
// CHECK-NOT:     sbp.gather_rows
// CHECK-NOT:     sbp.scatter_rows
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
