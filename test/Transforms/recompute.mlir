// RUN: sbp-opt %s -split-input-file -sbp-insert-masks -sbp-autodiff -sbp-prune-backward -sbp-recompute | FileCheck %s
// RUN: sbp-opt %s -split-input-file -sbp-insert-masks=keep=1.0 -sbp-autodiff -sbp-prune-backward -sbp-recompute | FileCheck %s --check-prefix=DENSE

// sbp-recompute: an activation whose input is saved for the backward anyway
// is recomputed there instead of saved. Two SBP branches (K = 8 of 16 rows):
// the forward saves the kept rows of the pre-activations only, and the
// backward recomputes GELU / ReLU on them before the fc2 weight gradient.

// CHECK-LABEL: sbp.model @residual
// CHECK:         %[[K:.*]] = sbp.keep_indices @m : tensor<8xi32>
// CHECK:         %[[H0:[^ ]*]] = sbp.linear {{.*}}"blocks.0"{{.*}} -> tensor<2x16x16xf32>
// CHECK-NEXT:    %[[H0K:[^ ]*]] = sbp.gather_rows %[[H0]], %[[K]] {sbp.region = "blocks.0"}
// CHECK-NEXT:    %[[A0:[^ ]*]] = sbp.gelu %[[H0]] {sbp.region = "blocks.0"}
// The activation itself is no longer gathered (saved) in the forward.
// CHECK-NOT:     sbp.gather_rows %[[A0]]
// CHECK:         %[[H1:[^ ]*]] = sbp.linear {{.*}}"blocks.1"{{.*}} -> tensor<2x16x16xf32>
// CHECK-NEXT:    %[[H1K:[^ ]*]] = sbp.gather_rows %[[H1]], %[[K]] {sbp.region = "blocks.1"}
// CHECK-NEXT:    %[[A1:[^ ]*]] = sbp.relu %[[H1]] {sbp.region = "blocks.1"}
// CHECK-NOT:     sbp.gather_rows %[[A1]]
// CHECK:         %[[R1:[^ ]*]] = sbp.relu %[[H1K]] {sbp.bwd, sbp.region = "blocks.1"} : (tensor<2x8x16xf32>) -> tensor<2x8x16xf32>
// CHECK-NEXT:    sbp.linear_grad_weight %[[R1]], %{{.*}} {sbp.bwd, sbp.region = "blocks.1"} : (tensor<2x8x16xf32>, tensor<2x8x8xf32>) -> tensor<8x16xf32>
// CHECK-NEXT:    sbp.relu_grad %[[H1K]],
// CHECK:         %[[R0:[^ ]*]] = sbp.gelu %[[H0K]] {sbp.bwd, sbp.region = "blocks.0"} : (tensor<2x8x16xf32>) -> tensor<2x8x16xf32>
// CHECK-NEXT:    sbp.linear_grad_weight %[[R0]],
// CHECK-NEXT:    sbp.gelu_grad %[[H0K]],

// Without SBP the same on full rows: the backward reads the forward's
// pre-activation and its own GELU of it, never the forward's GELU output.
// DENSE-LABEL: sbp.model @residual
// DENSE:         %[[H0:[^ ]*]] = sbp.linear {{.*}} -> tensor<2x16x16xf32>
// DENSE-NEXT:    %[[A0:[^ ]*]] = sbp.gelu %[[H0]]
// DENSE:         %[[R0:[^ ]*]] = sbp.gelu %[[H0]] {sbp.bwd, sbp.region = "blocks.0"} : (tensor<2x16x16xf32>) -> tensor<2x16x16xf32>
// DENSE-NEXT:    sbp.linear_grad_weight %[[R0]],
// DENSE-NOT:     %[[A0]]
sbp.model @residual attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.9, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.5 grid [4, 4]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %pe = sbp.param "patch_embed.weight" : tensor<8x4xf32> init<trunc_normal, 0.02>
  %f0 = sbp.param "blocks.0.fc1.weight" : tensor<16x8xf32> init<trunc_normal, 0.02>
  %g0 = sbp.param "blocks.0.fc2.weight" : tensor<8x16xf32> init<trunc_normal, 0.02>
  %f1 = sbp.param "blocks.1.fc1.weight" : tensor<16x8xf32> init<trunc_normal, 0.02>
  %g1 = sbp.param "blocks.1.fc2.weight" : tensor<8x16xf32> init<trunc_normal, 0.02>
  %hw = sbp.param "head.weight" : tensor<10x8xf32> init<trunc_normal, 0.02>
  %tok = sbp.patchify %images patch 2 : tensor<2x1x8x8xf32> -> tensor<2x16x4xf32>
  %x0 = sbp.linear %tok, %pe : (tensor<2x16x4xf32>, tensor<8x4xf32>) -> tensor<2x16x8xf32>
  %y0 = sbp.branch @m (%x0) {name = "blocks.0"} : (tensor<2x16x8xf32>) -> tensor<2x16x8xf32> {
  ^bb0(%x: tensor<2x16x8xf32>):
    %h = sbp.linear %x, %f0 : (tensor<2x16x8xf32>, tensor<16x8xf32>) -> tensor<2x16x16xf32>
    %a = sbp.gelu %h : (tensor<2x16x16xf32>) -> tensor<2x16x16xf32>
    %o = sbp.linear %a, %g0 : (tensor<2x16x16xf32>, tensor<8x16xf32>) -> tensor<2x16x8xf32>
    sbp.yield %o : tensor<2x16x8xf32>
  }
  %x1 = sbp.add %x0, %y0 : (tensor<2x16x8xf32>, tensor<2x16x8xf32>) -> tensor<2x16x8xf32>
  %y1 = sbp.branch @m (%x1) {name = "blocks.1"} : (tensor<2x16x8xf32>) -> tensor<2x16x8xf32> {
  ^bb0(%x: tensor<2x16x8xf32>):
    %h = sbp.linear %x, %f1 : (tensor<2x16x8xf32>, tensor<16x8xf32>) -> tensor<2x16x16xf32>
    %a = sbp.relu %h : (tensor<2x16x16xf32>) -> tensor<2x16x16xf32>
    %o = sbp.linear %a, %g1 : (tensor<2x16x16xf32>, tensor<8x16xf32>) -> tensor<2x16x8xf32>
    sbp.yield %o : tensor<2x16x8xf32>
  }
  %x2 = sbp.add %x1, %y1 : (tensor<2x16x8xf32>, tensor<2x16x8xf32>) -> tensor<2x16x8xf32>
  %pool = sbp.mean_tokens %x2 : (tensor<2x16x8xf32>) -> tensor<2x8xf32>
  %logits = sbp.linear %pool, %hw : (tensor<2x8xf32>, tensor<10x8xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}
