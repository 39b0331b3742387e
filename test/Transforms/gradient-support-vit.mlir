// RUN: sbp-opt %s -split-input-file -sbp-decompose -sbp-insert-masks -sbp-autodiff -sbp-check-gradient-support=annotate=true | FileCheck %s

// Gradient support through an SBP attention map. drop_qkv: the map's
// gradient is the scatter of the kept rows' dqkv, so it and everything the
// qkv projection's backward computes from it is non-zero at @m's kept rows
// only; the output projection's gradients, upstream of the map, are full.
// drop_query: dk and dv reach every row, so the support stays "all".

// CHECK-LABEL: sbp.model @qkv
// CHECK:         sbp.linear_grad_weight %result, %{{.*}} {sbp.bwd, sbp.region = "blocks.0.attn", sbp.support = "all"}
// CHECK:         sbp.attention_grad {{.*}} drop_qkv {sbp.bwd, sbp.region = "blocks.0.attn", sbp.support = "all"}
// CHECK-NEXT:    %[[DQKV:.*]] = sbp.scatter_rows {{.*}} {sbp.bwd, sbp.region = "blocks.0.attn", sbp.support = "@m"}
// CHECK-NEXT:    sbp.bias_grad %[[DQKV]] {sbp.bwd, sbp.region = "blocks.0.attn", sbp.support = "@m"}
// CHECK-NEXT:    sbp.linear_grad_input %[[DQKV]], %{{.*}} {sbp.bwd, sbp.region = "blocks.0.attn", sbp.support = "@m"}
// CHECK-NEXT:    sbp.linear_grad_weight %{{.*}}, %[[DQKV]] {sbp.bwd, sbp.region = "blocks.0.attn", sbp.support = "@m"}
// CHECK-NEXT:    sbp.layer_norm_grad {{.*}}sbp.support = "@m"}
// The residual stream: full again.
// CHECK-NEXT:    sbp.add {{.*}}sbp.support = "all"}

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
// CHECK:         %[[DQKV:.*]] = sbp.attention_grad {{.*}} drop_query {sbp.bwd, sbp.region = "blocks.0.attn", sbp.support = "all"}
// CHECK-NEXT:    sbp.bias_grad %[[DQKV]] {sbp.bwd, sbp.region = "blocks.0.attn", sbp.support = "all"}
// CHECK-NOT:     sbp.support = "@m"
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
