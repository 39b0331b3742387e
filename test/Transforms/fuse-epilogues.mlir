// RUN: sbp-opt %s -sbp-insert-masks -sbp-autodiff -sbp-prune-backward -sbp-lower-to-kernels -sbp-fuse-epilogues | FileCheck %s

// sbp-fuse-epilogues: each linear layer's GEMM takes its bias in the cuBLASLt
// epilogue, and fc2 also the residual add (beta = 1 with the stream as C). No
// bias_add or add kernel is left in the forward; the backward GEMMs stay plain.

// CHECK-LABEL: sbpk.graph @train
// CHECK:         %[[E:.*]] = sbpk.kernel "gemm_bias"(%{{.*}}, %{{.*}}, %{{.*}}) {k = 49 : i64, m = 128 : i64, n = 16 : i64, trans_a = false, trans_b = true} : (tensor<8x16x49xf32>, tensor<16x49xf32>, tensor<16xf32>) -> tensor<8x16x16xf32>
// CHECK:         %[[X0:.*]] = sbpk.kernel "pos_add"(%[[E]],
// CHECK:         sbpk.kernel "gemm_bias"({{.*}}) {k = 16 : i64, m = 128 : i64, n = 32 : i64, region = "blocks.0.mlp", {{.*}} -> tensor<8x16x32xf32>
// CHECK:         %[[X1:.*]] = sbpk.kernel "gemm_bias_residual"(%{{.*}}, %{{.*}}, %{{.*}}, %[[X0]]) {k = 32 : i64, m = 128 : i64, n = 16 : i64, {{.*}} -> tensor<8x16x16xf32>
// CHECK:         sbpk.kernel "gemm_bias_residual"(%{{.*}}, %{{.*}}, %{{.*}}, %[[X1]])
// The head: its bias too; its result is the logits.
// CHECK:         sbpk.kernel "gemm_bias"({{.*}}) {k = 16 : i64, m = 8 : i64, n = 10 : i64, {{.*}} -> tensor<8x10xf32>
// CHECK-NOT:     "bias_add"
// CHECK:         sbpk.gemm {{.*}} bwd
// CHECK-LABEL: sbpk.graph @eval
// CHECK-NOT:     "bias_add"
// CHECK-NOT:     "add"
// CHECK:         sbpk.return

// The small patch-MLP of make_patch_mlp_fixtures.py: 28x28 images, 7x7 patches
// (a 4x4 token grid), width 16, two residual MLP blocks (GELU, then ReLU),
// both SBP regions under one grid mask at keep 0.5.
sbp.model @patch_mlp_small attributes {optimizer = #sbp.adamw<lr = 1.0e-3, beta1 = 0.9, beta2 = 0.999, eps = 1.0e-8, weight_decay = 0.05>} {
  sbp.mask_group @m keep 0.5 grid [4, 4]
  %images = sbp.input "images" : tensor<8x1x28x28xf32>
  %labels = sbp.input "labels" : tensor<8xi32>
  %pe_w = sbp.param "patch_embed.weight" : tensor<16x49xf32> init<trunc_normal, 0.02>
  %pe_b = sbp.param "patch_embed.bias" : tensor<16xf32> init<zeros>
  %pos = sbp.param "pos_embed" : tensor<1x16x16xf32> init<trunc_normal, 0.02>
  %n0_w = sbp.param "blocks.0.norm.weight" : tensor<16xf32> init<ones>
  %n0_b = sbp.param "blocks.0.norm.bias" : tensor<16xf32> init<zeros>
  %f0_w = sbp.param "blocks.0.mlp.fc1.weight" : tensor<32x16xf32> init<trunc_normal, 0.02>
  %f0_b = sbp.param "blocks.0.mlp.fc1.bias" : tensor<32xf32> init<zeros>
  %g0_w = sbp.param "blocks.0.mlp.fc2.weight" : tensor<16x32xf32> init<trunc_normal, 0.02>
  %g0_b = sbp.param "blocks.0.mlp.fc2.bias" : tensor<16xf32> init<zeros>
  %n1_w = sbp.param "blocks.1.norm.weight" : tensor<16xf32> init<ones>
  %n1_b = sbp.param "blocks.1.norm.bias" : tensor<16xf32> init<zeros>
  %f1_w = sbp.param "blocks.1.mlp.fc1.weight" : tensor<32x16xf32> init<trunc_normal, 0.02>
  %f1_b = sbp.param "blocks.1.mlp.fc1.bias" : tensor<32xf32> init<zeros>
  %g1_w = sbp.param "blocks.1.mlp.fc2.weight" : tensor<16x32xf32> init<trunc_normal, 0.02>
  %g1_b = sbp.param "blocks.1.mlp.fc2.bias" : tensor<16xf32> init<zeros>
  %nf_w = sbp.param "norm.weight" : tensor<16xf32> init<ones>
  %nf_b = sbp.param "norm.bias" : tensor<16xf32> init<zeros>
  %h_w = sbp.param "head.weight" : tensor<10x16xf32> init<trunc_normal, 0.02>
  %h_b = sbp.param "head.bias" : tensor<10xf32> init<zeros>

  %tok = sbp.patchify %images patch 7 : tensor<8x1x28x28xf32> -> tensor<8x16x49xf32>
  %e0 = sbp.linear %tok, %pe_w : (tensor<8x16x49xf32>, tensor<16x49xf32>) -> tensor<8x16x16xf32>
  %e1 = sbp.bias_add %e0, %pe_b : (tensor<8x16x16xf32>, tensor<16xf32>) -> tensor<8x16x16xf32>
  %x0 = sbp.pos_add %e1, %pos : (tensor<8x16x16xf32>, tensor<1x16x16xf32>) -> tensor<8x16x16xf32>

  %y0 = sbp.branch @m (%x0) {name = "blocks.0.mlp"} : (tensor<8x16x16xf32>) -> tensor<8x16x16xf32> {
  ^bb0(%x: tensor<8x16x16xf32>):
    %n = sbp.layer_norm %x, %n0_w, %n0_b {eps = 1.0e-6 : f64} : (tensor<8x16x16xf32>, tensor<16xf32>, tensor<16xf32>) -> tensor<8x16x16xf32>
    %h = sbp.linear %n, %f0_w : (tensor<8x16x16xf32>, tensor<32x16xf32>) -> tensor<8x16x32xf32>
    %hb = sbp.bias_add %h, %f0_b : (tensor<8x16x32xf32>, tensor<32xf32>) -> tensor<8x16x32xf32>
    %a = sbp.gelu %hb : (tensor<8x16x32xf32>) -> tensor<8x16x32xf32>
    %o = sbp.linear %a, %g0_w : (tensor<8x16x32xf32>, tensor<16x32xf32>) -> tensor<8x16x16xf32>
    %ob = sbp.bias_add %o, %g0_b : (tensor<8x16x16xf32>, tensor<16xf32>) -> tensor<8x16x16xf32>
    sbp.yield %ob : tensor<8x16x16xf32>
  }
  %x1 = sbp.add %x0, %y0 : (tensor<8x16x16xf32>, tensor<8x16x16xf32>) -> tensor<8x16x16xf32>

  %y1 = sbp.branch @m (%x1) {name = "blocks.1.mlp"} : (tensor<8x16x16xf32>) -> tensor<8x16x16xf32> {
  ^bb0(%x: tensor<8x16x16xf32>):
    %n = sbp.layer_norm %x, %n1_w, %n1_b {eps = 1.0e-6 : f64} : (tensor<8x16x16xf32>, tensor<16xf32>, tensor<16xf32>) -> tensor<8x16x16xf32>
    %h = sbp.linear %n, %f1_w : (tensor<8x16x16xf32>, tensor<32x16xf32>) -> tensor<8x16x32xf32>
    %hb = sbp.bias_add %h, %f1_b : (tensor<8x16x32xf32>, tensor<32xf32>) -> tensor<8x16x32xf32>
    %a = sbp.relu %hb : (tensor<8x16x32xf32>) -> tensor<8x16x32xf32>
    %o = sbp.linear %a, %g1_w : (tensor<8x16x32xf32>, tensor<16x32xf32>) -> tensor<8x16x16xf32>
    %ob = sbp.bias_add %o, %g1_b : (tensor<8x16x16xf32>, tensor<16xf32>) -> tensor<8x16x16xf32>
    sbp.yield %ob : tensor<8x16x16xf32>
  }
  %x2 = sbp.add %x1, %y1 : (tensor<8x16x16xf32>, tensor<8x16x16xf32>) -> tensor<8x16x16xf32>

  %nf = sbp.layer_norm %x2, %nf_w, %nf_b {eps = 1.0e-6 : f64} : (tensor<8x16x16xf32>, tensor<16xf32>, tensor<16xf32>) -> tensor<8x16x16xf32>
  %pool = sbp.mean_tokens %nf : (tensor<8x16x16xf32>) -> tensor<8x16xf32>
  %l0 = sbp.linear %pool, %h_w : (tensor<8x16xf32>, tensor<10x16xf32>) -> tensor<8x10xf32>
  %logits = sbp.bias_add %l0, %h_b : (tensor<8x10xf32>, tensor<10xf32>) -> tensor<8x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<8x10xf32>, tensor<8xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<8x10xf32>
}
