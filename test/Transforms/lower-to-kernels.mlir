// RUN: sbp-opt %s -sbp-insert-masks -sbp-autodiff -sbp-check-gradient-support -sbp-prune-backward -sbp-lower-to-kernels | FileCheck %s
// RUN: sbp-opt %s -sbp-insert-masks -sbp-autodiff -sbp-check-gradient-support -sbp-prune-backward -sbp-lower-to-kernels | FileCheck %s --check-prefix=BWD
// RUN: sbp-opt %s -sbp-insert-masks=keep=1.0 -sbp-autodiff -sbp-check-gradient-support -sbp-prune-backward -sbp-lower-to-kernels | FileCheck %s --check-prefix=DENSE

// The small patch-MLP (batch 8, 4x4 = 16 tokens, width 16, hidden 32), both
// blocks under one grid mask at keep 0.5: K = 8 kept tokens, so the pruned
// backward GEMMs of the two SBP regions have B * K = 64 rows (m = 64 for an
// input gradient, k = 64 for a weight gradient) where the dense ones have
// B * T = 128. The loss and its gradient fuse into softmax_xent_grad.

// CHECK-LABEL: sbpk.graph @train {
// CHECK-NEXT:    %[[K:.*]] = sbpk.keep_indices @m group 0 : tensor<8xi32>
// CHECK-NEXT:    %[[IMG:.*]] = sbpk.input "images" : tensor<8x1x28x28xf32>
// CHECK-NEXT:    %[[LBL:.*]] = sbpk.input "labels" : tensor<8xi32>
// CHECK-NEXT:    %[[PEW:.*]] = sbpk.param "patch_embed.weight" at 0 : tensor<16x49xf32>
// CHECK-NEXT:    %[[PEB:.*]] = sbpk.param "patch_embed.bias" at 784 : tensor<16xf32>
// CHECK-NEXT:    %[[POS:.*]] = sbpk.param "pos_embed" at 800 : tensor<1x16x16xf32>
// CHECK:         %[[HW:.*]] = sbpk.param "head.weight" at 3296 : tensor<10x16xf32>
// CHECK-NEXT:    %[[HB:.*]] = sbpk.param "head.bias" at 3456 : tensor<10xf32>
// CHECK-NEXT:    %[[TOK:.*]] = sbpk.kernel "patchify"(%[[IMG]]) {batch = 8 : i64, channels = 1 : i64, height = 28 : i64, patch = 7 : i64, width = 28 : i64} : (tensor<8x1x28x28xf32>) -> tensor<8x16x49xf32>
// CHECK-NEXT:    %[[E0:.*]] = sbpk.gemm %[[TOK]], %[[PEW]] {alpha = 1.000000e+00 : f64, beta = 0.000000e+00 : f64, k = 49 : i64, m = 128 : i64, n = 16 : i64, trans_a = false, trans_b = true} : (tensor<8x16x49xf32>, tensor<16x49xf32>) -> tensor<8x16x16xf32>
// CHECK-NEXT:    %[[E1:.*]] = sbpk.kernel "bias_add"(%[[E0]], %[[PEB]]) {n = 16 : i64, rows = 128 : i64}
// CHECK-NEXT:    %[[X0:.*]] = sbpk.kernel "pos_add"(%[[E1]], %[[POS]]) {batch = 8 : i64, n = 16 : i64, tokens = 16 : i64}
// CHECK-NEXT:    %[[X0K:.*]] = sbpk.kernel "gather_rows"(%[[X0]], %[[K]]) {batch = 8 : i64, kept = 8 : i64, n = 16 : i64, region = "blocks.0.mlp", tokens = 16 : i64} : (tensor<8x16x16xf32>, tensor<8xi32>) -> tensor<8x8x16xf32>
// CHECK-NEXT:    sbpk.kernel "layer_norm"(%[[X0]], {{.*}}) {eps = 9.9999999999999995E-7 : f64, n = 16 : i64, region = "blocks.0.mlp", rows = 128 : i64}
//
// The forward of an SBP region is dense: all 128 rows.
// CHECK:         sbpk.gemm {{.*}} {alpha = 1.000000e+00 : f64, beta = 0.000000e+00 : f64, k = 16 : i64, m = 128 : i64, n = 32 : i64, region = "blocks.0.mlp", trans_a = false, trans_b = true}
// CHECK:         sbpk.kernel "gelu"({{.*}}) {n = 4096 : i64, region = "blocks.0.mlp"}
// CHECK:         sbpk.kernel "relu"({{.*}}) {n = 4096 : i64, region = "blocks.1.mlp"}
// CHECK:         %[[LOGITS:.*]] = sbpk.kernel "bias_add"(%{{.*}}, %[[HB]]) {n = 10 : i64, rows = 8 : i64}
//
// The loss and its gradient, fused:
// CHECK-NEXT:    %[[XENT:[0-9]+]]:2 = sbpk.kernel "softmax_xent_grad"(%[[LOGITS]], %[[LBL]]) {batch = 8 : i64, classes = 10 : i64} : (tensor<8x10xf32>, tensor<8xi32>) -> (tensor<f32>, tensor<8x10xf32>)
// CHECK-NOT:     xent
// CHECK-NEXT:    %[[DHB:.*]] = sbpk.kernel "bias_grad"(%[[XENT]]#1) {bwd, n = 10 : i64, rows = 8 : i64}
// CHECK-NEXT:    sbpk.gemm %[[XENT]]#1, %[[HW]] {alpha = 1.000000e+00 : f64, beta = 0.000000e+00 : f64, bwd, k = 10 : i64, m = 8 : i64, n = 16 : i64, trans_a = false, trans_b = false}
// CHECK-NEXT:    sbpk.gemm %[[XENT]]#1, %{{.*}} {alpha = 1.000000e+00 : f64, beta = 0.000000e+00 : f64, bwd, k = 8 : i64, m = 10 : i64, n = 16 : i64, trans_a = true, trans_b = false}
// CHECK-NEXT:    sbpk.kernel "mean_tokens_grad"
// CHECK-NEXT:    %[[LNG:[0-9]+]]:3 = sbpk.kernel "layer_norm_grad"({{.*}}) {bwd, eps = 9.9999999999999995E-7 : f64, n = 16 : i64, rows = 128 : i64}
//
// blocks.1.mlp, pruned: the incoming gradient's kept rows, then GEMMs on 64 rows.
// CHECK-NEXT:    %[[G1:.*]] = sbpk.kernel "gather_rows"(%[[LNG]]#0, %[[K]]) {batch = 8 : i64, bwd, kept = 8 : i64, n = 16 : i64, region = "blocks.1.mlp", tokens = 16 : i64} : (tensor<8x16x16xf32>, tensor<8xi32>) -> tensor<8x8x16xf32>
// CHECK-NEXT:    sbpk.kernel "bias_grad"(%[[G1]]) {bwd, n = 16 : i64, region = "blocks.1.mlp", rows = 64 : i64}
// CHECK-NEXT:    sbpk.gemm %[[G1]], %{{.*}} {alpha = 1.000000e+00 : f64, beta = 0.000000e+00 : f64, bwd, k = 16 : i64, m = 64 : i64, n = 32 : i64, region = "blocks.1.mlp", trans_a = false, trans_b = false} : (tensor<8x8x16xf32>, tensor<16x32xf32>) -> tensor<8x8x32xf32>
// CHECK-NEXT:    sbpk.gemm %[[G1]], %{{.*}} {alpha = 1.000000e+00 : f64, beta = 0.000000e+00 : f64, bwd, k = 64 : i64, m = 16 : i64, n = 32 : i64, region = "blocks.1.mlp", trans_a = true, trans_b = false} : (tensor<8x8x16xf32>, tensor<8x8x32xf32>) -> tensor<16x32xf32>
// CHECK-NEXT:    sbpk.kernel "relu_grad"({{.*}}) {bwd, n = 2048 : i64, region = "blocks.1.mlp"}
// CHECK-NEXT:    sbpk.kernel "bias_grad"({{.*}}) {bwd, n = 32 : i64, region = "blocks.1.mlp", rows = 64 : i64}
// CHECK-NEXT:    sbpk.gemm {{.*}}bwd, k = 32 : i64, m = 64 : i64, n = 16 : i64, region = "blocks.1.mlp", trans_a = false, trans_b = false}
// CHECK-NEXT:    sbpk.gemm {{.*}}bwd, k = 64 : i64, m = 32 : i64, n = 16 : i64, region = "blocks.1.mlp", trans_a = true, trans_b = false}
// CHECK-NEXT:    %[[LNG1:[0-9]+]]:3 = sbpk.kernel "layer_norm_grad"({{.*}}) {bwd, eps = 9.9999999999999995E-7 : f64, n = 16 : i64, region = "blocks.1.mlp", rows = 64 : i64}
// CHECK-NEXT:    %[[DX1:.*]] = sbpk.kernel "scatter_add_rows"(%[[LNG]]#0, %[[LNG1]]#0, %[[K]]) {batch = 8 : i64, bwd, kept = 8 : i64, n = 16 : i64, region = "blocks.1.mlp", tokens = 16 : i64} : (tensor<8x16x16xf32>, tensor<8x8x16xf32>, tensor<8xi32>) -> tensor<8x16x16xf32>
//
// blocks.0.mlp, pruned the same way.
// CHECK-NEXT:    sbpk.kernel "gather_rows"(%[[DX1]], %[[K]]) {{.*}}region = "blocks.0.mlp"
// CHECK-NEXT:    sbpk.kernel "bias_grad"({{.*}}rows = 64 : i64}
// CHECK-NEXT:    sbpk.gemm {{.*}}bwd, k = 16 : i64, m = 64 : i64, n = 32 : i64, region = "blocks.0.mlp"
// CHECK-NEXT:    sbpk.gemm {{.*}}bwd, k = 64 : i64, m = 16 : i64, n = 32 : i64, region = "blocks.0.mlp"
// CHECK-NEXT:    sbpk.kernel "gelu_grad"({{.*}}) {bwd, n = 2048 : i64, region = "blocks.0.mlp"}
// CHECK-NEXT:    sbpk.kernel "bias_grad"({{.*}}rows = 64 : i64}
// CHECK-NEXT:    sbpk.gemm {{.*}}bwd, k = 32 : i64, m = 64 : i64, n = 16 : i64, region = "blocks.0.mlp"
// CHECK-NEXT:    sbpk.gemm {{.*}}bwd, k = 64 : i64, m = 32 : i64, n = 16 : i64, region = "blocks.0.mlp"
// CHECK-NEXT:    %[[LNG0:[0-9]+]]:3 = sbpk.kernel "layer_norm_grad"(%[[X0K]], {{.*}}rows = 64 : i64}
// CHECK-NEXT:    %[[DX0:.*]] = sbpk.kernel "scatter_add_rows"(%[[DX1]], %[[LNG0]]#0, %[[K]])
//
// The patch embedding, outside the SBP regions: dense (k = 128).
// CHECK-NEXT:    %[[DPOS:.*]] = sbpk.kernel "pos_grad"(%[[DX0]]) {batch = 8 : i64, bwd, n = 16 : i64, tokens = 16 : i64}
// CHECK-NEXT:    %[[DPEB:.*]] = sbpk.kernel "bias_grad"(%[[DX0]]) {bwd, n = 16 : i64, rows = 128 : i64}
// CHECK-NEXT:    %[[DPEW:.*]] = sbpk.gemm %[[DX0]], %[[TOK]] {alpha = 1.000000e+00 : f64, beta = 0.000000e+00 : f64, bwd, k = 128 : i64, m = 16 : i64, n = 49 : i64, trans_a = true, trans_b = false} : (tensor<8x16x16xf32>, tensor<8x16x49xf32>) -> tensor<16x49xf32>
// CHECK-NEXT:    sbpk.grad_out "patch_embed.weight" at 0, %[[DPEW]] : tensor<16x49xf32>
// CHECK-NEXT:    sbpk.grad_out "patch_embed.bias" at 784, %[[DPEB]] : tensor<16xf32>
// CHECK-NEXT:    sbpk.grad_out "pos_embed" at 800, %[[DPOS]] : tensor<1x16x16xf32>
// CHECK-COUNT-15: sbpk.grad_out
// CHECK-NEXT:    sbpk.grad_out "head.bias" at 3456, %[[DHB]] : tensor<10xf32>
// CHECK-NEXT:    sbpk.return %[[XENT]]#0 : tensor<f32>
// CHECK-NEXT:  }
//
// eval: the forward slice of the loss and the logits; no mask, no gather,
// no backward.
// CHECK-LABEL: sbpk.graph @eval {
// CHECK-NOT:     keep_indices
// CHECK-NOT:     gather_rows
// CHECK-NOT:     bwd
// CHECK:         %[[ELOGITS:.*]] = sbpk.kernel "bias_add"({{.*}}) {n = 10 : i64, rows = 8 : i64}
// CHECK-NEXT:    %[[ELOSS:.*]] = sbpk.kernel "softmax_xent"(%[[ELOGITS]], %{{.*}}) {batch = 8 : i64, classes = 10 : i64} : (tensor<8x10xf32>, tensor<8xi32>) -> tensor<f32>
// CHECK-NEXT:    sbpk.return %[[ELOSS]], %[[ELOGITS]] : tensor<f32>, tensor<8x10xf32>
// CHECK-NEXT:  }

// No backward GEMM of an SBP region keeps the dense row count.
// BWD-LABEL: sbpk.graph @train
// BWD:         softmax_xent_grad
// BWD-NOT:     sbpk.gemm {{.*}}bwd, k = {{[0-9]+}} : i64, m = 128 : i64{{.*}}region =
// BWD-NOT:     sbpk.gemm {{.*}}bwd, k = 128 : i64{{.*}}region =
// BWD:         sbpk.gemm {{.*}}bwd, k = 128 : i64, m = 16 : i64, n = 49 : i64, trans_a = true
// BWD:         sbpk.return
// BWD-LABEL: sbpk.graph @eval

// Without SBP (keep 1.0), the same GEMMs have all 128 rows.
// DENSE-LABEL: sbpk.graph @train
// DENSE-NOT:     keep_indices
// DENSE-NOT:     gather_rows
// DENSE:         softmax_xent_grad
// DENSE:         sbpk.gemm {{.*}}bwd, k = 16 : i64, m = 128 : i64, n = 32 : i64, region = "blocks.1.mlp", trans_a = false, trans_b = false}
// DENSE-NEXT:    sbpk.gemm {{.*}}bwd, k = 128 : i64, m = 16 : i64, n = 32 : i64, region = "blocks.1.mlp", trans_a = true, trans_b = false}
// DENSE:         sbpk.gemm {{.*}}bwd, k = 128 : i64, m = 32 : i64, n = 16 : i64, region = "blocks.0.mlp", trans_a = true, trans_b = false}
// DENSE-NOT:     scatter_add_rows
// DENSE:         sbpk.return

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
