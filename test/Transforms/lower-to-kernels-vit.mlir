// RUN: sbp-opt %s -split-input-file -sbp-decompose -sbp-insert-masks -sbp-autodiff -sbp-check-gradient-support -sbp-prune-backward -sbp-lower-to-kernels | FileCheck %s

// Kernels of a ViT block (batch 4, 17 tokens, width 24, 3 heads of 8: scale
// 1/sqrt(8)), per attention mode. @m keeps K = 9 of the 17 rows, so a pruned
// GEMM of the backward has B * K = 36 rows where a full one has B * T = 68.
// The SBP forward of drop_qkv (kept queries over kept keys) is only in the
// train graph: the eval graph never applies SBP.

// CHECK-LABEL: sbpk.graph @train
// CHECK-NEXT:    %[[K:.*]] = sbpk.keep_indices @m group 0 : tensor<9xi32>
// CHECK:         %[[QKV:.*]] = sbpk.kernel "bias_add"({{.*}}) {n = 72 : i64, region = "blocks.0.attn", rows = 68 : i64}
// CHECK-NEXT:    %[[QKVK:.*]] = sbpk.kernel "gather_rows"(%[[QKV]], %[[K]]) {batch = 4 : i64, kept = 9 : i64, n = 72 : i64, region = "blocks.0.attn", tokens = 17 : i64} : (tensor<4x17x72xf32>, tensor<9xi32>) -> tensor<4x9x72xf32>
// CHECK-NEXT:    %[[ATT:.*]]:2 = sbpk.kernel "attention_fwd_sbp"(%[[QKV]], %[[K]]) {batch = 4 : i64, head_dim = 8 : i64, heads = 3 : i64, kept = 9 : i64, region = "blocks.0.attn", scale = 0.35355339059327373 : f64, tokens = 17 : i64} : (tensor<4x17x72xf32>, tensor<9xi32>) -> (tensor<4x17x24xf32>, tensor<4x17x3xf32>)
// CHECK-NEXT:    %[[LSEK:.*]] = sbpk.kernel "gather_rows"(%[[ATT]]#1, %[[K]]) {batch = 4 : i64, kept = 9 : i64, n = 3 : i64, region = "blocks.0.attn", tokens = 17 : i64}
// The output projection's forward is full (m = 68).
// CHECK-NEXT:    sbpk.gemm %[[ATT]]#0, %{{.*}} {alpha = 1.000000e+00 : f64, beta = 0.000000e+00 : f64, k = 24 : i64, m = 68 : i64, n = 24 : i64, region = "blocks.0.attn", trans_a = false, trans_b = true}
// Backward of the attention branch: the projection's dX on 36 rows, its dW
// over all 68 (k = 68), dqkv of the kept rows (tokens = K = 9), then the qkv
// projection's dX (m = 36) and dW (k = 36), bias and LayerNorm on 36 rows.
// CHECK:         sbpk.kernel "bias_grad"(%[[DY:.*]]) {bwd, n = 24 : i64, region = "blocks.0.attn", rows = 68 : i64}
// CHECK-NEXT:    %[[DYK:.*]] = sbpk.kernel "gather_rows"(%[[DY]], %[[K]]) {batch = 4 : i64, bwd, kept = 9 : i64, n = 24 : i64, region = "blocks.0.attn", tokens = 17 : i64}
// CHECK-NEXT:    %[[DOK:.*]] = sbpk.gemm %[[DYK]], %{{.*}} {alpha = 1.000000e+00 : f64, beta = 0.000000e+00 : f64, bwd, k = 24 : i64, m = 36 : i64, n = 24 : i64, region = "blocks.0.attn", trans_a = false, trans_b = false} : (tensor<4x9x24xf32>, tensor<24x24xf32>) -> tensor<4x9x24xf32>
// CHECK-DAG:     sbpk.gemm %[[DY]], %[[ATT]]#0 {alpha = 1.000000e+00 : f64, beta = 0.000000e+00 : f64, bwd, k = 68 : i64, m = 24 : i64, n = 24 : i64, region = "blocks.0.attn", trans_a = true, trans_b = false} : (tensor<4x17x24xf32>, tensor<4x17x24xf32>) -> tensor<24x24xf32>
// CHECK-DAG:     %[[OK:.*]] = sbpk.kernel "gather_rows"(%[[ATT]]#0, %[[K]]) {batch = 4 : i64, bwd, kept = 9 : i64, n = 24 : i64, region = "blocks.0.attn", tokens = 17 : i64}
// CHECK:         %[[DQKV:.*]] = sbpk.kernel "attention_bwd_rows"(%[[QKVK]], %[[OK]], %[[LSEK]], %[[DOK]], %[[K]]) {batch = 4 : i64, bwd, head_dim = 8 : i64, heads = 3 : i64, region = "blocks.0.attn", scale = 0.35355339059327373 : f64, tokens = 9 : i64} : (tensor<4x9x72xf32>, tensor<4x9x24xf32>, tensor<4x9x3xf32>, tensor<4x9x24xf32>, tensor<9xi32>) -> tensor<4x9x72xf32>
// CHECK-NEXT:    sbpk.kernel "bias_grad"(%[[DQKV]]) {bwd, n = 72 : i64, region = "blocks.0.attn", rows = 36 : i64}
// CHECK-NEXT:    %[[DN1:.*]] = sbpk.gemm %[[DQKV]], %{{.*}} {alpha = 1.000000e+00 : f64, beta = 0.000000e+00 : f64, bwd, k = 72 : i64, m = 36 : i64, n = 24 : i64, region = "blocks.0.attn", trans_a = false, trans_b = false} : (tensor<4x9x72xf32>, tensor<72x24xf32>) -> tensor<4x9x24xf32>
// CHECK-NEXT:    sbpk.gemm %[[DQKV]], %{{.*}} {alpha = 1.000000e+00 : f64, beta = 0.000000e+00 : f64, bwd, k = 36 : i64, m = 72 : i64, n = 24 : i64, region = "blocks.0.attn", trans_a = true, trans_b = false} : (tensor<4x9x72xf32>, tensor<4x9x24xf32>) -> tensor<72x24xf32>
// CHECK-NEXT:    %[[LNG:.*]]:3 = sbpk.kernel "layer_norm_grad"(%{{.*}}, %{{.*}}, %[[DN1]]) {bwd, eps = 9.9999999999999995E-7 : f64, n = 24 : i64, region = "blocks.0.attn", rows = 36 : i64}
// CHECK-NEXT:    %[[DX:.*]] = sbpk.kernel "scatter_add_rows"(%[[DY]], %[[LNG]]#0, %[[K]]) {batch = 4 : i64, bwd, kept = 9 : i64, n = 24 : i64, region = "blocks.0.attn", tokens = 17 : i64}
// The class token: tokens = 16 without it.
// CHECK-NEXT:    %[[CG:.*]]:2 = sbpk.kernel "cls_concat_grad"(%[[DX]]) {batch = 4 : i64, bwd, n = 24 : i64, tokens = 16 : i64} : (tensor<4x17x24xf32>) -> (tensor<4x16x24xf32>, tensor<1x1x24xf32>)
// CHECK:         sbpk.grad_out "cls_token" at {{[0-9]+}}, %[[CG]]#1 : tensor<1x1x24xf32>
// CHECK:         sbpk.return
//
// CHECK-LABEL: sbpk.graph @eval
// CHECK-NOT:     keep_indices
// CHECK-NOT:     gather_rows
// CHECK:         sbpk.kernel "cls_concat"({{.*}}) {batch = 4 : i64, n = 24 : i64, tokens = 16 : i64} : (tensor<4x16x24xf32>, tensor<1x1x24xf32>) -> tensor<4x17x24xf32>
// CHECK-NOT:     gather_rows
// CHECK:         sbpk.kernel "attention_fwd"(%{{[0-9]+}}) {batch = 4 : i64, head_dim = 8 : i64, heads = 3 : i64, region = "blocks.0.attn", scale = 0.35355339059327373 : f64, tokens = 17 : i64} : (tensor<4x17x72xf32>) -> (tensor<4x17x24xf32>, tensor<4x17x3xf32>)
// CHECK-NOT:     gather_rows
// CHECK:         sbpk.kernel "take_token"({{.*}}) {batch = 4 : i64, index = 0 : i64, n = 24 : i64, tokens = 17 : i64} : (tensor<4x17x24xf32>) -> tensor<4x24xf32>
// CHECK-NOT:     bwd
// CHECK:         sbpk.return

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

// drop_query: the exact forward (attention_fwd, also in train), the
// backward of the kept queries over every key (attention_bwd_queries, kept =
// 9 of tokens = 17); the qkv projection's backward stays on 68 rows.

// CHECK-LABEL: sbpk.graph @train
// CHECK-NEXT:    %[[K:.*]] = sbpk.keep_indices @m group 0 : tensor<9xi32>
// CHECK:         %[[QKV:.*]] = sbpk.kernel "bias_add"({{.*}}) {n = 72 : i64, region = "blocks.0.attn", rows = 68 : i64}
// CHECK-NEXT:    %[[ATT:.*]]:2 = sbpk.kernel "attention_fwd"(%[[QKV]]) {batch = 4 : i64, head_dim = 8 : i64, heads = 3 : i64, region = "blocks.0.attn", scale = 0.35355339059327373 : f64, tokens = 17 : i64} : (tensor<4x17x72xf32>) -> (tensor<4x17x24xf32>, tensor<4x17x3xf32>)
// CHECK-NEXT:    %[[LSEK:.*]] = sbpk.kernel "gather_rows"(%[[ATT]]#1, %[[K]])
// CHECK:         %[[DOK:.*]] = sbpk.gemm {{.*}}bwd, k = 24 : i64, m = 36 : i64, n = 24 : i64, region = "blocks.0.attn", trans_a = false, trans_b = false}
// CHECK:         %[[OK:.*]] = sbpk.kernel "gather_rows"(%[[ATT]]#0, %[[K]])
// CHECK-NEXT:    %[[DQKV:.*]] = sbpk.kernel "attention_bwd_queries"(%[[QKV]], %[[K]], %[[OK]], %[[LSEK]], %[[DOK]]) {batch = 4 : i64, bwd, head_dim = 8 : i64, heads = 3 : i64, kept = 9 : i64, region = "blocks.0.attn", scale = 0.35355339059327373 : f64, tokens = 17 : i64} : (tensor<4x17x72xf32>, tensor<9xi32>, tensor<4x9x24xf32>, tensor<4x9x3xf32>, tensor<4x9x24xf32>) -> tensor<4x17x72xf32>
// CHECK-NEXT:    sbpk.kernel "bias_grad"(%[[DQKV]]) {bwd, n = 72 : i64, region = "blocks.0.attn", rows = 68 : i64}
// CHECK-NEXT:    sbpk.gemm %[[DQKV]], %{{.*}} {alpha = 1.000000e+00 : f64, beta = 0.000000e+00 : f64, bwd, k = 72 : i64, m = 68 : i64, n = 24 : i64, region = "blocks.0.attn", trans_a = false, trans_b = false}
// CHECK-NEXT:    sbpk.gemm %[[DQKV]], %{{.*}} {alpha = 1.000000e+00 : f64, beta = 0.000000e+00 : f64, bwd, k = 68 : i64, m = 72 : i64, n = 24 : i64, region = "blocks.0.attn", trans_a = true, trans_b = false}
// CHECK-NEXT:    sbpk.kernel "layer_norm_grad"({{.*}}rows = 68 : i64}
// CHECK-LABEL: sbpk.graph @eval
// CHECK-NOT:     keep_indices
// CHECK:         sbpk.kernel "attention_fwd"(%{{[0-9]+}}) {batch = 4 : i64, head_dim = 8 : i64, heads = 3 : i64, region = "blocks.0.attn", scale = 0.35355339059327373 : f64, tokens = 17 : i64}
// CHECK-NOT:     gather_rows
// CHECK:         sbpk.return

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

// drop_head: full rows; the backward takes the kept heads (group 1, @h).

// CHECK-LABEL: sbpk.graph @train
// CHECK-NEXT:    %[[KH:.*]] = sbpk.keep_indices @h group 1 : tensor<3xi32>
// CHECK:         %[[QKV:.*]] = sbpk.kernel "bias_add"({{.*}}) {n = 72 : i64, region = "blocks.0.attn", rows = 68 : i64}
// CHECK-NEXT:    %[[ATT:.*]]:2 = sbpk.kernel "attention_fwd"(%[[QKV]]) {batch = 4 : i64, head_dim = 8 : i64, heads = 3 : i64, region = "blocks.0.attn", scale = 0.35355339059327373 : f64, tokens = 17 : i64}
// CHECK:         %[[DO:.*]] = sbpk.gemm {{.*}}bwd, k = 24 : i64, m = 68 : i64, n = 24 : i64, region = "blocks.0.attn", trans_a = false, trans_b = false}
// CHECK:         %[[DQKV:.*]] = sbpk.kernel "attention_bwd_heads"(%[[QKV]], %[[ATT]]#0, %[[ATT]]#1, %[[DO]], %[[KH]]) {batch = 4 : i64, bwd, head_dim = 8 : i64, heads = 3 : i64, region = "blocks.0.attn", scale = 0.35355339059327373 : f64, tokens = 17 : i64} : (tensor<4x17x72xf32>, tensor<4x17x24xf32>, tensor<4x17x3xf32>, tensor<4x17x24xf32>, tensor<3xi32>) -> tensor<4x17x72xf32>
// CHECK-NEXT:    sbpk.kernel "bias_grad"(%[[DQKV]]) {bwd, n = 72 : i64, region = "blocks.0.attn", rows = 68 : i64}
// CHECK-NOT:     gather_rows
// CHECK-LABEL: sbpk.graph @eval
// CHECK-NOT:     keep_indices
// CHECK:         sbpk.kernel "attention_fwd"

sbp.model @head attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.9, weight_decay = 0.0>} {
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
  %x1 = sbp.vit_block "blocks.0" %x0 heads 3 hidden 48 attn_sbp @h drop_head : tensor<4x17x24xf32>
  %pool = sbp.take_token %x1 index 0 : (tensor<4x17x24xf32>) -> tensor<4x24xf32>
  %logits = sbp.linear %pool, %h_w : (tensor<4x24xf32>, tensor<10x24xf32>) -> tensor<4x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// No SBP: the plain backward, attention_bwd with four operands.

// CHECK-LABEL: sbpk.graph @train
// CHECK-NOT:     keep_indices
// CHECK:         %[[QKV:.*]] = sbpk.kernel "bias_add"({{.*}}) {n = 72 : i64, rows = 68 : i64}
// CHECK-NEXT:    %[[ATT:.*]]:2 = sbpk.kernel "attention_fwd"(%[[QKV]]) {batch = 4 : i64, head_dim = 8 : i64, heads = 3 : i64, scale = 0.35355339059327373 : f64, tokens = 17 : i64}
// CHECK:         sbpk.kernel "attention_bwd"(%[[QKV]], %[[ATT]]#0, %[[ATT]]#1, %{{[0-9]+}}) {batch = 4 : i64, bwd, head_dim = 8 : i64, heads = 3 : i64, scale = 0.35355339059327373 : f64, tokens = 17 : i64} : (tensor<4x17x72xf32>, tensor<4x17x24xf32>, tensor<4x17x3xf32>, tensor<4x17x24xf32>) -> tensor<4x17x72xf32>

sbp.model @plain attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.9, weight_decay = 0.0>} {
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
