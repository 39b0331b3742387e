// RUN: sbp-opt %s -split-input-file | sbp-opt -split-input-file | FileCheck %s
// RUN: sbp-opt %s -split-input-file -mlir-print-op-generic | sbp-opt -split-input-file | FileCheck %s

// Round trip (custom form, and generic form back to custom form) of the ViT
// ops and attributes: the `heads` mask kind, cls_concat, take_token, a
// Conv2d-shaped patch-embedding weight, sbp.attention plain and under each
// SBP mode (with and without its keep operand), sbp.vit_block with each
// combination of SBP annotations and an eps, and the gradient ops.
// (attention_grad with a mode or an attribute dictionary: see
// attention-grad-roundtrip.mlir.)

// CHECK-LABEL: sbp.model @vit_forward
// CHECK-NEXT:    sbp.mask_group @m keep 5.000000e-01 grid [2, 2] prefix 1
// CHECK-NEXT:    sbp.mask_group @h keep 5.000000e-01 heads [1, 2]{{$}}
// CHECK-NEXT:    %[[K:.*]] = sbp.keep_indices @m : tensor<3xi32>
// CHECK-NEXT:    %[[KH:.*]] = sbp.keep_indices @h : tensor<2xi32>
// CHECK-NEXT:    %[[IMG:.*]] = sbp.input "images" : tensor<2x3x8x8xf32>
// CHECK-NEXT:    %{{.*}} = sbp.input "labels"
// CHECK-NEXT:    %[[PE:.*]] = sbp.param "patch_embed.proj.weight" : tensor<8x3x4x4xf32> init <trunc_normal, 2.000000e-02>
// CHECK-NEXT:    %[[CLS:.*]] = sbp.param "cls_token" : tensor<1x1x8xf32> init <normal, 9.9999999999999995E-7>
// CHECK-NEXT:    %[[POS:.*]] = sbp.param "pos_embed" : tensor<1x5x8xf32>
// CHECK-NEXT:    %[[QW:.*]] = sbp.param "qkv.weight" : tensor<24x8xf32>
// CHECK-NEXT:    %[[HW:.*]] = sbp.param "head.weight"
// CHECK-NEXT:    %[[TOK:.*]] = sbp.patchify %[[IMG]] patch 4 : tensor<2x3x8x8xf32> -> tensor<2x4x48xf32>
// CHECK-NEXT:    %[[E0:.*]] = sbp.linear %[[TOK]], %[[PE]] : (tensor<2x4x48xf32>, tensor<8x3x4x4xf32>) -> tensor<2x4x8xf32>
// CHECK-NEXT:    %[[E1:.*]] = sbp.cls_concat %[[E0]], %[[CLS]] : (tensor<2x4x8xf32>, tensor<1x1x8xf32>) -> tensor<2x5x8xf32>
// CHECK-NEXT:    %[[X0:.*]] = sbp.pos_add %[[E1]], %[[POS]]
// CHECK-NEXT:    %[[QKV:.*]] = sbp.linear %[[X0]], %[[QW]] : (tensor<2x5x8xf32>, tensor<24x8xf32>) -> tensor<2x5x24xf32>
// CHECK-NEXT:    %{{.*}}, %{{.*}} = sbp.attention %[[QKV]] heads 2 : (tensor<2x5x24xf32>) -> (tensor<2x5x8xf32>, tensor<2x5x2xf32>)
// CHECK-NEXT:    %{{.*}}, %{{.*}} = sbp.attention %[[QKV]] heads 2 sbp @m drop_qkv : (tensor<2x5x24xf32>) -> (tensor<2x5x8xf32>, tensor<2x5x2xf32>)
// CHECK-NEXT:    %{{.*}}, %{{.*}} = sbp.attention %[[QKV]] heads 2 sbp @m drop_query : (tensor<2x5x24xf32>) -> (tensor<2x5x8xf32>, tensor<2x5x2xf32>)
// CHECK-NEXT:    %{{.*}}, %{{.*}} = sbp.attention %[[QKV]] heads 2 sbp @h drop_head : (tensor<2x5x24xf32>) -> (tensor<2x5x8xf32>, tensor<2x5x2xf32>)
// CHECK-NEXT:    %{{.*}}, %{{.*}} = sbp.attention %[[QKV]], %[[K]] heads 2 sbp @m drop_qkv : (tensor<2x5x24xf32>, tensor<3xi32>) -> (tensor<2x5x8xf32>, tensor<2x5x2xf32>)
// CHECK-NEXT:    %{{.*}}, %{{.*}} = sbp.attention %[[QKV]], %[[KH]] heads 2 sbp @h drop_head {sbp.region = "blocks.0.attn"} : (tensor<2x5x24xf32>, tensor<2xi32>) -> (tensor<2x5x8xf32>, tensor<2x5x2xf32>)
// CHECK-NEXT:    %[[X1:.*]] = sbp.vit_block "blocks.0" %[[X0]] heads 2 hidden 16 : tensor<2x5x8xf32>
// CHECK-NEXT:    %[[X2:.*]] = sbp.vit_block "blocks.1" %[[X1]] heads 2 hidden 16 mlp_sbp @m : tensor<2x5x8xf32>
// CHECK-NEXT:    %[[X3:.*]] = sbp.vit_block "blocks.2" %[[X2]] heads 2 hidden 16 attn_sbp @m drop_query {eps = 1.000000e-05 : f64} : tensor<2x5x8xf32>
// CHECK-NEXT:    %[[X4:.*]] = sbp.vit_block "blocks.3" %[[X3]] heads 2 hidden 16 mlp_sbp @m attn_sbp @h drop_head : tensor<2x5x8xf32>
// CHECK-NEXT:    %[[POOL:.*]] = sbp.take_token %[[X4]] index 0 : (tensor<2x5x8xf32>) -> tensor<2x8xf32>
// CHECK-NEXT:    sbp.take_token %[[X4]] index 4 : (tensor<2x5x8xf32>) -> tensor<2x8xf32>
// CHECK-NEXT:    %[[LOGITS:.*]] = sbp.linear %[[POOL]], %[[HW]]
sbp.model @vit_forward attributes {optimizer = #sbp.adamw<lr = 1.0e-3, beta1 = 0.9, beta2 = 0.999, eps = 1.0e-8, weight_decay = 0.05>} {
  sbp.mask_group @m keep 0.5 grid [2, 2] prefix 1
  sbp.mask_group @h keep 0.5 heads [1, 2]
  %k = sbp.keep_indices @m : tensor<3xi32>
  %kh = sbp.keep_indices @h : tensor<2xi32>
  %images = sbp.input "images" : tensor<2x3x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %pe_w = sbp.param "patch_embed.proj.weight" : tensor<8x3x4x4xf32> init<trunc_normal, 0.02>
  %cls = sbp.param "cls_token" : tensor<1x1x8xf32> init<normal, 1.0e-6>
  %pos = sbp.param "pos_embed" : tensor<1x5x8xf32> init<trunc_normal, 0.02>
  %qkv_w = sbp.param "qkv.weight" : tensor<24x8xf32> init<trunc_normal, 0.02>
  %h_w = sbp.param "head.weight" : tensor<10x8xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x3x8x8xf32> -> tensor<2x4x48xf32>
  %e0 = sbp.linear %tok, %pe_w : (tensor<2x4x48xf32>, tensor<8x3x4x4xf32>) -> tensor<2x4x8xf32>
  %e1 = sbp.cls_concat %e0, %cls : (tensor<2x4x8xf32>, tensor<1x1x8xf32>) -> tensor<2x5x8xf32>
  %x0 = sbp.pos_add %e1, %pos : (tensor<2x5x8xf32>, tensor<1x5x8xf32>) -> tensor<2x5x8xf32>
  %qkv = sbp.linear %x0, %qkv_w : (tensor<2x5x8xf32>, tensor<24x8xf32>) -> tensor<2x5x24xf32>
  %o0, %l0 = sbp.attention %qkv heads 2 : (tensor<2x5x24xf32>) -> (tensor<2x5x8xf32>, tensor<2x5x2xf32>)
  %o1, %l1 = sbp.attention %qkv heads 2 sbp @m drop_qkv : (tensor<2x5x24xf32>) -> (tensor<2x5x8xf32>, tensor<2x5x2xf32>)
  %o2, %l2 = sbp.attention %qkv heads 2 sbp @m drop_query : (tensor<2x5x24xf32>) -> (tensor<2x5x8xf32>, tensor<2x5x2xf32>)
  %o3, %l3 = sbp.attention %qkv heads 2 sbp @h drop_head : (tensor<2x5x24xf32>) -> (tensor<2x5x8xf32>, tensor<2x5x2xf32>)
  %o4, %l4 = sbp.attention %qkv, %k heads 2 sbp @m drop_qkv : (tensor<2x5x24xf32>, tensor<3xi32>) -> (tensor<2x5x8xf32>, tensor<2x5x2xf32>)
  %o5, %l5 = sbp.attention %qkv, %kh heads 2 sbp @h drop_head {sbp.region = "blocks.0.attn"} : (tensor<2x5x24xf32>, tensor<2xi32>) -> (tensor<2x5x8xf32>, tensor<2x5x2xf32>)
  %x1 = sbp.vit_block "blocks.0" %x0 heads 2 hidden 16 : tensor<2x5x8xf32>
  %x2 = sbp.vit_block "blocks.1" %x1 heads 2 hidden 16 mlp_sbp @m : tensor<2x5x8xf32>
  %x3 = sbp.vit_block "blocks.2" %x2 heads 2 hidden 16 attn_sbp @m drop_query {eps = 1.0e-5 : f64} : tensor<2x5x8xf32>
  %x4 = sbp.vit_block "blocks.3" %x3 heads 2 hidden 16 mlp_sbp @m attn_sbp @h drop_head : tensor<2x5x8xf32>
  %pool = sbp.take_token %x4 index 0 : (tensor<2x5x8xf32>) -> tensor<2x8xf32>
  %last = sbp.take_token %x4 index 4 : (tensor<2x5x8xf32>) -> tensor<2x8xf32>
  %logits = sbp.linear %pool, %h_w : (tensor<2x8xf32>, tensor<10x8xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// The gradient ops of the ViT ops (parameters stand in for activations).

// CHECK-LABEL: sbp.model @vit_internal
// CHECK:         %[[PE:.*]] = sbp.param "patch_embed.proj.weight" : tensor<8x3x4x4xf32>
// CHECK:         %[[QKV:.*]] = sbp.param "qkv"
// CHECK-NEXT:    %[[OUT:.*]] = sbp.param "out"
// CHECK-NEXT:    %[[LSE:.*]] = sbp.param "lse"
// CHECK-NEXT:    %[[DOUT:.*]] = sbp.param "dout"
// CHECK-NEXT:    %[[TOK:.*]] = sbp.patchify
// CHECK-NEXT:    %[[E0:.*]] = sbp.linear %[[TOK]], %[[PE]]
// CHECK-NEXT:    %[[POOL:.*]] = sbp.mean_tokens %[[E0]]
// CHECK-NEXT:    %[[LOGITS:.*]] = sbp.linear %[[POOL]]
// CHECK-NEXT:    sbp.attention_grad %[[QKV]], %[[OUT]], %[[LSE]], %[[DOUT]] heads 2 : (tensor<2x5x24xf32>, tensor<2x5x8xf32>, tensor<2x5x2xf32>, tensor<2x5x8xf32>) -> tensor<2x5x24xf32>
// CHECK-NEXT:    %{{.*}}, %[[DCLS:.*]] = sbp.cls_concat_grad %[[DOUT]] {sbp.bwd} : (tensor<2x5x8xf32>) -> (tensor<2x4x8xf32>, tensor<1x1x8xf32>)
// CHECK-NEXT:    sbp.take_token_grad %[[POOL]] index 3 {sbp.bwd} : (tensor<2x8xf32>) -> tensor<2x4x8xf32>
// CHECK-NEXT:    sbp.linear_grad_input %[[E0]], %[[PE]] {sbp.bwd} : (tensor<2x4x8xf32>, tensor<8x3x4x4xf32>) -> tensor<2x4x48xf32>
// CHECK-NEXT:    %[[DPE:.*]] = sbp.linear_grad_weight %[[TOK]], %[[E0]] {sbp.bwd} : (tensor<2x4x48xf32>, tensor<2x4x8xf32>) -> tensor<8x3x4x4xf32>
// CHECK-NEXT:    sbp.param_grad "patch_embed.proj.weight", %[[DPE]] {sbp.bwd} : tensor<8x3x4x4xf32>
// CHECK-NEXT:    sbp.param_grad "cls_token", %[[DCLS]] {sbp.bwd} : tensor<1x1x8xf32>
sbp.model @vit_internal attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.9, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x3x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %pe_w = sbp.param "patch_embed.proj.weight" : tensor<8x3x4x4xf32> init<trunc_normal, 0.02>
  %cls = sbp.param "cls_token" : tensor<1x1x8xf32> init<normal, 1.0e-6>
  %h_w = sbp.param "head.weight" : tensor<10x8xf32> init<zeros>
  %qkv = sbp.param "qkv" : tensor<2x5x24xf32> init<zeros>
  %out = sbp.param "out" : tensor<2x5x8xf32> init<zeros>
  %lse = sbp.param "lse" : tensor<2x5x2xf32> init<zeros>
  %dout = sbp.param "dout" : tensor<2x5x8xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x3x8x8xf32> -> tensor<2x4x48xf32>
  %e0 = sbp.linear %tok, %pe_w : (tensor<2x4x48xf32>, tensor<8x3x4x4xf32>) -> tensor<2x4x8xf32>
  %pool = sbp.mean_tokens %e0 : (tensor<2x4x8xf32>) -> tensor<2x8xf32>
  %logits = sbp.linear %pool, %h_w : (tensor<2x8xf32>, tensor<10x8xf32>) -> tensor<2x10xf32>
  %g0 = sbp.attention_grad %qkv, %out, %lse, %dout heads 2 : (tensor<2x5x24xf32>, tensor<2x5x8xf32>, tensor<2x5x2xf32>, tensor<2x5x8xf32>) -> tensor<2x5x24xf32>
  %dx, %dcls = sbp.cls_concat_grad %dout {sbp.bwd} : (tensor<2x5x8xf32>) -> (tensor<2x4x8xf32>, tensor<1x1x8xf32>)
  %tg = sbp.take_token_grad %pool index 3 {sbp.bwd} : (tensor<2x8xf32>) -> tensor<2x4x8xf32>
  %lgi = sbp.linear_grad_input %e0, %pe_w {sbp.bwd} : (tensor<2x4x8xf32>, tensor<8x3x4x4xf32>) -> tensor<2x4x48xf32>
  %lgw = sbp.linear_grad_weight %tok, %e0 {sbp.bwd} : (tensor<2x4x48xf32>, tensor<2x4x8xf32>) -> tensor<8x3x4x4xf32>
  sbp.param_grad "patch_embed.proj.weight", %lgw {sbp.bwd} : tensor<8x3x4x4xf32>
  sbp.param_grad "cls_token", %dcls {sbp.bwd} : tensor<1x1x8xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}
