// RUN: sbp-opt %s -split-input-file -sbp-decompose -sbp-insert-masks | FileCheck %s
// RUN: sbp-opt %s -split-input-file -sbp-decompose -sbp-insert-masks=keep=1.0 | FileCheck %s --check-prefix=DENSE
// RUN: sbp-opt %s -split-input-file -sbp-decompose -sbp-insert-masks=keep=0.25 | FileCheck %s --check-prefix=QUARTER

// sbp-insert-masks on ViT blocks: an SBP attention map reads its group's keep
// indices as its `keep` operand (it gets no gradient gate: its rule is the
// attention's own); the group's single sbp.keep_indices is shared with the
// MLP branches' gates. A group at keep 1.0 drops the annotation: a plain
// attention without keep indices.

// Two blocks, attention (drop_qkv) and MLP both under @m: keep 0.5 of the
// 4x4 grid plus the class token, capacity 8 + 1 = 9.

// CHECK-LABEL: sbp.model @vit_qkv
// CHECK-NEXT:    %[[K:.*]] = sbp.keep_indices @m : tensor<9xi32>
// CHECK-NOT:     sbp.keep_indices
// CHECK:         %[[O0:.*]], %{{.*}} = sbp.attention %{{.*}}, %[[K]] heads 3 sbp @m drop_qkv {sbp.region = "blocks.0.attn"} : (tensor<4x17x72xf32>, tensor<9xi32>) -> (tensor<4x17x24xf32>, tensor<4x17x3xf32>)
// CHECK-NEXT:    sbp.linear %[[O0]], %{{.*}} {sbp.region = "blocks.0.attn"}
// CHECK:         sbp.grad_gate %{{.*}}, %[[K]] {sbp.region = "blocks.0.mlp"} : (tensor<4x17x24xf32>, tensor<9xi32>) -> tensor<4x17x24xf32>
// CHECK:         %[[O1:.*]], %{{.*}} = sbp.attention %{{.*}}, %[[K]] heads 3 sbp @m drop_qkv {sbp.region = "blocks.1.attn"} : (tensor<4x17x72xf32>, tensor<9xi32>)
// CHECK-NEXT:    sbp.linear %[[O1]], %{{.*}} {sbp.region = "blocks.1.attn"}
// CHECK:         sbp.grad_gate %{{.*}}, %[[K]] {sbp.region = "blocks.1.mlp"}
// One gate per MLP branch, none for the attention branches.
// CHECK-NOT:     sbp.grad_gate
// CHECK-NOT:     sbp.branch
// CHECK:         sbp.output

// DENSE-LABEL: sbp.model @vit_qkv
// DENSE-NOT:     sbp.keep_indices
// DENSE:         sbp.mask_group @m keep 1.000000e+00 grid [4, 4] prefix 1
// DENSE-NOT:     sbp.keep_indices
// DENSE:         sbp.attention %{{[0-9]+}} heads 3 {sbp.region = "blocks.0.attn"} : (tensor<4x17x72xf32>) -> (tensor<4x17x24xf32>, tensor<4x17x3xf32>)
// DENSE:         sbp.attention %{{[0-9]+}} heads 3 {sbp.region = "blocks.1.attn"} : (tensor<4x17x72xf32>) -> (tensor<4x17x24xf32>, tensor<4x17x3xf32>)
// DENSE-NOT:     sbp.grad_gate
// DENSE-NOT:     sbp @m
// DENSE:         sbp.output

// keep 0.25: stride 4 over the 7 diagonals of 4x4, 4 positions each: K = 5.
// QUARTER-LABEL: sbp.model @vit_qkv
// QUARTER-NEXT:    %[[K:.*]] = sbp.keep_indices @m : tensor<5xi32>
// QUARTER:         sbp.attention %{{.*}}, %[[K]] heads 3 sbp @m drop_qkv {{.*}}: (tensor<4x17x72xf32>, tensor<5xi32>)
// QUARTER:         sbp.grad_gate %{{.*}}, %[[K]] {{.*}}: (tensor<4x17x24xf32>, tensor<5xi32>)
sbp.model @vit_qkv attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.9, weight_decay = 0.0>} {
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
  %x2 = sbp.vit_block "blocks.1" %x1 heads 3 hidden 48 mlp_sbp @m attn_sbp @m drop_qkv : tensor<4x17x24xf32>
  %pool = sbp.take_token %x2 index 0 : (tensor<4x17x24xf32>) -> tensor<4x24xf32>
  %logits = sbp.linear %pool, %h_w : (tensor<4x24xf32>, tensor<10x24xf32>) -> tensor<4x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// drop_head: @h is drawn per block (vit_sbp.py draws each block's heads
// anew): each attention op gets a copy of @h named after its region, in
// program order where @h stood, and reads that copy's keep indices, [heads] =
// [3] (each head kept independently: any number up to all three); the MLP
// gates read @m's.

// CHECK-LABEL: sbp.model @vit_head
// CHECK-DAG:     %[[KM:.*]] = sbp.keep_indices @m : tensor<9xi32>
// CHECK-DAG:     %[[KH0:.*]] = sbp.keep_indices @h.blocks.0.attn : tensor<3xi32>
// CHECK-DAG:     %[[KH1:.*]] = sbp.keep_indices @h.blocks.1.attn : tensor<3xi32>
// CHECK:         sbp.mask_group @m keep 5.000000e-01 grid [4, 4] prefix 1
// CHECK-NEXT:    sbp.mask_group @h.blocks.0.attn keep 5.000000e-01 heads [1, 3]{{$}}
// CHECK-NEXT:    sbp.mask_group @h.blocks.1.attn keep 5.000000e-01 heads [1, 3]{{$}}
// CHECK-NOT:     sbp.mask_group
// CHECK:         sbp.attention %{{.*}}, %[[KH0]] heads 3 sbp @h.blocks.0.attn drop_head {sbp.region = "blocks.0.attn"} : (tensor<4x17x72xf32>, tensor<3xi32>) -> (tensor<4x17x24xf32>, tensor<4x17x3xf32>)
// CHECK:         sbp.grad_gate %{{.*}}, %[[KM]] {sbp.region = "blocks.0.mlp"}
// CHECK:         sbp.attention %{{.*}}, %[[KH1]] heads 3 sbp @h.blocks.1.attn drop_head {sbp.region = "blocks.1.attn"} : (tensor<4x17x72xf32>, tensor<3xi32>)
// CHECK:         sbp.grad_gate %{{.*}}, %[[KM]] {sbp.region = "blocks.1.mlp"}
// CHECK-NOT:     sbp.grad_gate

// At keep 1.0 nothing is drawn, so nothing is split.
// DENSE-LABEL: sbp.model @vit_head
// DENSE-NOT:     sbp.keep_indices
// DENSE:         sbp.mask_group @h keep 1.000000e+00 heads [1, 3]
// DENSE:         sbp.attention %{{[0-9]+}} heads 3 {sbp.region = "blocks.0.attn"} : (tensor<4x17x72xf32>) ->
// DENSE:         sbp.attention %{{[0-9]+}} heads 3 {sbp.region = "blocks.1.attn"} : (tensor<4x17x72xf32>) ->
// DENSE-NOT:     sbp @h

// The heads group's capacity is its head count at any keep ratio below 1.
// QUARTER-LABEL: sbp.model @vit_head
// QUARTER-DAG:     %[[KM:.*]] = sbp.keep_indices @m : tensor<5xi32>
// QUARTER-DAG:     %[[KH:.*]] = sbp.keep_indices @h.blocks.0.attn : tensor<3xi32>
// QUARTER:         sbp.attention %{{.*}}, %[[KH]] heads 3 sbp @h.blocks.0.attn drop_head {{.*}}: (tensor<4x17x72xf32>, tensor<3xi32>)
// QUARTER:         sbp.grad_gate %{{.*}}, %[[KM]] {{.*}}: (tensor<4x17x24xf32>, tensor<5xi32>)
sbp.model @vit_head attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.9, weight_decay = 0.0>} {
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
  %x1 = sbp.vit_block "blocks.0" %x0 heads 3 hidden 48 mlp_sbp @m attn_sbp @h drop_head : tensor<4x17x24xf32>
  %x2 = sbp.vit_block "blocks.1" %x1 heads 3 hidden 48 mlp_sbp @m attn_sbp @h drop_head : tensor<4x17x24xf32>
  %pool = sbp.take_token %x2 index 0 : (tensor<4x17x24xf32>) -> tensor<4x24xf32>
  %logits = sbp.linear %pool, %h_w : (tensor<4x24xf32>, tensor<10x24xf32>) -> tensor<4x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// `shared`: one heads draw for every block that uses the group, as before
// per-block draws; nothing is split.

// CHECK-LABEL: sbp.model @vit_head_shared
// CHECK-NEXT:    %[[KH:.*]] = sbp.keep_indices @h : tensor<3xi32>
// CHECK-NOT:     sbp.keep_indices
// CHECK:         sbp.mask_group @h keep 5.000000e-01 heads [1, 3] shared
// CHECK-NOT:     sbp.mask_group
// CHECK:         sbp.attention %{{.*}}, %[[KH]] heads 3 sbp @h drop_head {sbp.region = "blocks.0.attn"}
// CHECK:         sbp.attention %{{.*}}, %[[KH]] heads 3 sbp @h drop_head {sbp.region = "blocks.1.attn"}

// A group used by one block keeps its name; a name that is taken gets a
// suffix (SymbolTable's renaming), so every copy is a distinct symbol.

// CHECK-LABEL: sbp.model @vit_head_names
// CHECK-DAG:     sbp.keep_indices @one : tensor<3xi32>
// CHECK-DAG:     sbp.keep_indices @two.blocks.1.attn : tensor<3xi32>
// CHECK-DAG:     sbp.keep_indices @two.blocks.2.attn_{{[0-9]+}} : tensor<3xi32>
// CHECK:         sbp.attention %{{.*}} sbp @one drop_head {sbp.region = "blocks.0.attn"}
// CHECK:         sbp.attention %{{.*}} sbp @two.blocks.1.attn drop_head {sbp.region = "blocks.1.attn"}
// CHECK:         sbp.attention %{{.*}} sbp @two.blocks.2.attn_{{[0-9]+}} drop_head {sbp.region = "blocks.2.attn"}
sbp.model @vit_head_shared attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.9, weight_decay = 0.0>} {
  sbp.mask_group @h keep 0.5 heads [1, 3] shared
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %pe_w = sbp.param "patch_embed.proj.weight" : tensor<24x3x4x4xf32> init<trunc_normal, 0.02>
  %cls = sbp.param "cls_token" : tensor<1x1x24xf32> init<normal, 1.0e-6>
  %h_w = sbp.param "head.weight" : tensor<10x24xf32> init<trunc_normal, 0.02>
  %tok = sbp.patchify %images patch 4 : tensor<4x3x16x16xf32> -> tensor<4x16x48xf32>
  %e0 = sbp.linear %tok, %pe_w : (tensor<4x16x48xf32>, tensor<24x3x4x4xf32>) -> tensor<4x16x24xf32>
  %x0 = sbp.cls_concat %e0, %cls : (tensor<4x16x24xf32>, tensor<1x1x24xf32>) -> tensor<4x17x24xf32>
  %x1 = sbp.vit_block "blocks.0" %x0 heads 3 hidden 48 attn_sbp @h drop_head : tensor<4x17x24xf32>
  %x2 = sbp.vit_block "blocks.1" %x1 heads 3 hidden 48 attn_sbp @h drop_head : tensor<4x17x24xf32>
  %pool = sbp.take_token %x2 index 0 : (tensor<4x17x24xf32>) -> tensor<4x24xf32>
  %logits = sbp.linear %pool, %h_w : (tensor<4x24xf32>, tensor<10x24xf32>) -> tensor<4x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

sbp.model @vit_head_names attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.9, weight_decay = 0.0>} {
  sbp.mask_group @one keep 0.5 heads [1, 3]
  sbp.mask_group @two keep 0.5 heads [1, 3]
  sbp.mask_group @two.blocks.2.attn keep 0.75 heads [1, 3]
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %pe_w = sbp.param "patch_embed.proj.weight" : tensor<24x3x4x4xf32> init<trunc_normal, 0.02>
  %cls = sbp.param "cls_token" : tensor<1x1x24xf32> init<normal, 1.0e-6>
  %h_w = sbp.param "head.weight" : tensor<10x24xf32> init<trunc_normal, 0.02>
  %tok = sbp.patchify %images patch 4 : tensor<4x3x16x16xf32> -> tensor<4x16x48xf32>
  %e0 = sbp.linear %tok, %pe_w : (tensor<4x16x48xf32>, tensor<24x3x4x4xf32>) -> tensor<4x16x24xf32>
  %x0 = sbp.cls_concat %e0, %cls : (tensor<4x16x24xf32>, tensor<1x1x24xf32>) -> tensor<4x17x24xf32>
  %x1 = sbp.vit_block "blocks.0" %x0 heads 3 hidden 48 attn_sbp @one drop_head : tensor<4x17x24xf32>
  %x2 = sbp.vit_block "blocks.1" %x1 heads 3 hidden 48 attn_sbp @two drop_head : tensor<4x17x24xf32>
  %x3 = sbp.vit_block "blocks.2" %x2 heads 3 hidden 48 attn_sbp @two drop_head : tensor<4x17x24xf32>
  %pool = sbp.take_token %x3 index 0 : (tensor<4x17x24xf32>) -> tensor<4x24xf32>
  %logits = sbp.linear %pool, %h_w : (tensor<4x24xf32>, tensor<10x24xf32>) -> tensor<4x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}
