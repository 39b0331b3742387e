// RUN: sbp-opt %s -split-input-file -sbp-insert-masks -sbp-autodiff -sbp-prune-backward | FileCheck %s

// Two residual branches under @m (keep 0.5 of a 4x4 grid: K = 8 of T = 16
// rows). The backward of each branch runs on [B, K, D] = [2, 8, D]; the
// forward activations it reads are gathered right after they are computed;
// the compact gradient re-enters the residual stream with scatter_add_rows.

// CHECK-LABEL: sbp.model @residual
// CHECK:         %[[K:.*]] = sbp.keep_indices @m : tensor<8xi32>
// CHECK:         %[[TOK:.*]] = sbp.patchify
// CHECK-NEXT:    %[[X0:.*]] = sbp.linear %[[TOK]], %{{.*}} : (tensor<2x16x4xf32>, tensor<8x4xf32>) -> tensor<2x16x8xf32>
// CHECK-NEXT:    %[[X0K:.*]] = sbp.gather_rows %[[X0]], %[[K]] {sbp.region = "blocks.0"} : (tensor<2x16x8xf32>, tensor<8xi32>) -> tensor<2x8x8xf32>
// CHECK-NEXT:    %[[H0:.*]] = sbp.linear %[[X0]], %{{.*}} {sbp.region = "blocks.0"} : (tensor<2x16x8xf32>, tensor<16x8xf32>) -> tensor<2x16x16xf32>
// CHECK-NEXT:    %[[H0K:.*]] = sbp.gather_rows %[[H0]], %[[K]] {sbp.region = "blocks.0"} : (tensor<2x16x16xf32>, tensor<8xi32>) -> tensor<2x8x16xf32>
// CHECK-NEXT:    %[[A0:.*]] = sbp.gelu %[[H0]] {sbp.region = "blocks.0"}
// CHECK-NEXT:    %[[A0K:.*]] = sbp.gather_rows %[[A0]], %[[K]] {sbp.region = "blocks.0"} : (tensor<2x16x16xf32>, tensor<8xi32>) -> tensor<2x8x16xf32>
// CHECK-NEXT:    sbp.linear %[[A0]]
// The gate stays in the forward (lowered to nothing); no gather of the
// branch output (nothing reads it in the backward).
// CHECK-NEXT:    sbp.grad_gate
// CHECK-NEXT:    %[[X1:.*]] = sbp.add %[[X0]],
// CHECK-NEXT:    %[[X1K:.*]] = sbp.gather_rows %[[X1]], %[[K]] {sbp.region = "blocks.1"}
// CHECK-NEXT:    %[[H1:.*]] = sbp.linear %[[X1]]
// CHECK-NEXT:    %[[H1K:.*]] = sbp.gather_rows %[[H1]], %[[K]] {sbp.region = "blocks.1"}
// CHECK-NEXT:    %[[A1:.*]] = sbp.relu %[[H1]]
// CHECK-NEXT:    %[[A1K:.*]] = sbp.gather_rows %[[A1]], %[[K]] {sbp.region = "blocks.1"}
// CHECK:         %[[DX2:.*]] = sbp.mean_tokens_grad
//
// blocks.1: the gate's mask_rows becomes a gather of the incoming gradient;
// every GEMM of the region has 2 x 8 rows.
// CHECK-NEXT:    %[[D1:.*]] = sbp.gather_rows %[[DX2]], %[[K]] {sbp.bwd, sbp.region = "blocks.1"} : (tensor<2x16x8xf32>, tensor<8xi32>) -> tensor<2x8x8xf32>
// CHECK-NEXT:    %[[DA1:.*]] = sbp.linear_grad_input %[[D1]], %{{.*}} {sbp.bwd, sbp.region = "blocks.1"} : (tensor<2x8x8xf32>, tensor<8x16xf32>) -> tensor<2x8x16xf32>
// CHECK-NEXT:    sbp.linear_grad_weight %[[A1K]], %[[D1]] {sbp.bwd, sbp.region = "blocks.1"} : (tensor<2x8x16xf32>, tensor<2x8x8xf32>) -> tensor<8x16xf32>
// CHECK-NEXT:    %[[DH1:.*]] = sbp.relu_grad %[[H1K]], %[[DA1]] {sbp.bwd, sbp.region = "blocks.1"} : (tensor<2x8x16xf32>, tensor<2x8x16xf32>) -> tensor<2x8x16xf32>
// CHECK-NEXT:    %[[DXB1:.*]] = sbp.linear_grad_input %[[DH1]], %{{.*}} {sbp.bwd, sbp.region = "blocks.1"} : (tensor<2x8x16xf32>, tensor<16x8xf32>) -> tensor<2x8x8xf32>
// CHECK-NEXT:    sbp.linear_grad_weight %[[X1K]], %[[DH1]] {sbp.bwd, sbp.region = "blocks.1"} : (tensor<2x8x8xf32>, tensor<2x8x16xf32>) -> tensor<16x8xf32>
// CHECK-NEXT:    %[[DX1:.*]] = sbp.scatter_add_rows %[[DX2]], %[[DXB1]], %[[K]] {sbp.bwd, sbp.region = "blocks.1"} : (tensor<2x16x8xf32>, tensor<2x8x8xf32>, tensor<8xi32>) -> tensor<2x16x8xf32>
//
// blocks.0, the same way.
// CHECK-NEXT:    %[[D0:.*]] = sbp.gather_rows %[[DX1]], %[[K]] {sbp.bwd, sbp.region = "blocks.0"} : (tensor<2x16x8xf32>, tensor<8xi32>) -> tensor<2x8x8xf32>
// CHECK-NEXT:    %[[DA0:.*]] = sbp.linear_grad_input %[[D0]], {{.*}} -> tensor<2x8x16xf32>
// CHECK-NEXT:    sbp.linear_grad_weight %[[A0K]], %[[D0]] {{.*}} -> tensor<8x16xf32>
// CHECK-NEXT:    %[[DH0:.*]] = sbp.gelu_grad %[[H0K]], %[[DA0]] {{.*}} -> tensor<2x8x16xf32>
// CHECK-NEXT:    %[[DXB0:.*]] = sbp.linear_grad_input %[[DH0]], {{.*}} -> tensor<2x8x8xf32>
// CHECK-NEXT:    sbp.linear_grad_weight %[[X0K]], %[[DH0]] {{.*}} -> tensor<16x8xf32>
// CHECK-NEXT:    %[[DX0:.*]] = sbp.scatter_add_rows %[[DX1]], %[[DXB0]], %[[K]] {sbp.bwd, sbp.region = "blocks.0"}
//
// The patch embedding's weight gradient runs on all 16 rows; the gradient of
// the patchify output (the batch) is dead, so it is erased. No mask_rows
// remains.
// CHECK-NEXT:    sbp.linear_grad_weight %[[TOK]], %[[DX0]] {sbp.bwd} : (tensor<2x16x4xf32>, tensor<2x16x8xf32>) -> tensor<8x4xf32>
// CHECK-NEXT:    sbp.param_grad "patch_embed.weight"
// CHECK-NOT:     sbp.mask_rows
// CHECK:         sbp.output

// No backward op of a region is left on full rows: no GEMM of the region
// reads or writes a [2, 16, D] tensor.
// RUN: sbp-opt %s -split-input-file -sbp-insert-masks -sbp-autodiff -sbp-prune-backward | FileCheck %s --check-prefix=NOFULL
// NOFULL-LABEL: sbp.model @residual
// NOFULL:         sbp.mean_tokens_grad
// NOFULL-NOT:     sbp.{{linear_grad_input|linear_grad_weight|relu_grad|gelu_grad}} {{.*}}sbp.region = "blocks.{{[01]}}"} : {{.*}}tensor<2x16x
// NOFULL:         sbp.linear_grad_weight {{.*}} : (tensor<2x16x4xf32>, tensor<2x16x8xf32>) -> tensor<8x4xf32>
// NOFULL-NOT:     sbp.mask_rows
// NOFULL:         sbp.output
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

// -----

// Nested regions under different groups: the outer gate's gradient is kept
// at @a's rows; the inner ops need @b's and @c's rows, so the @a-compact
// gradient is scattered back (scatter_rows) and gathered again per group.
// The inner backward ops run on their group's rows; the outer op, fed by the
// sum of two differently-masked gradients, stays on all rows.

// CHECK-LABEL: sbp.model @nested
// CHECK-DAG:     %[[KA:.*]] = sbp.keep_indices @a : tensor<2xi32>
// CHECK-DAG:     %[[KB:.*]] = sbp.keep_indices @b : tensor<2xi32>
// CHECK-DAG:     %[[KC:.*]] = sbp.keep_indices @c : tensor<3xi32>
// CHECK:         %[[DY:.*]] = sbp.mean_tokens_grad
// CHECK-NEXT:    %[[GA:.*]] = sbp.gather_rows %[[DY]], %[[KA]] {sbp.bwd, sbp.region = "outer"} : (tensor<2x4x8xf32>, tensor<2xi32>) -> tensor<2x2x8xf32>
// CHECK-NEXT:    %[[FA:.*]] = sbp.scatter_rows %[[GA]], %[[KA]] {sbp.bwd, sbp.region = "outer"} : (tensor<2x2x8xf32>, tensor<2xi32>) -> tensor<2x4x8xf32>
// CHECK-NEXT:    %[[GC:.*]] = sbp.gather_rows %[[FA]], %[[KC]] {sbp.bwd, sbp.region = "inner_c"} : (tensor<2x4x8xf32>, tensor<3xi32>) -> tensor<2x3x8xf32>
// CHECK-NEXT:    %[[DC:.*]] = sbp.linear_grad_input %[[GC]], {{.*}} -> tensor<2x3x8xf32>
// CHECK-NEXT:    %[[FC:.*]] = sbp.scatter_rows %[[DC]], %[[KC]] {sbp.bwd, sbp.region = "inner_c"} : (tensor<2x3x8xf32>, tensor<3xi32>) -> tensor<2x4x8xf32>
// CHECK-NEXT:    sbp.linear_grad_weight {{.*}}, %[[GC]] {{.*}} : (tensor<2x3x8xf32>, tensor<2x3x8xf32>) -> tensor<8x8xf32>
// CHECK-NEXT:    %[[GB:.*]] = sbp.gather_rows %[[FA]], %[[KB]] {sbp.bwd, sbp.region = "inner_b"}
// CHECK-NEXT:    %[[DB:.*]] = sbp.relu_grad {{.*}}, %[[GB]] {{.*}} -> tensor<2x2x8xf32>
// CHECK-NEXT:    %[[FB:.*]] = sbp.scatter_rows %[[DB]], %[[KB]]
// CHECK-NEXT:    %[[DN:.*]] = sbp.add %[[FC]], %[[FB]] {{.*}} -> tensor<2x4x8xf32>
// CHECK-NEXT:    sbp.linear_grad_input %[[DN]], {{.*}} -> tensor<2x4x8xf32>
// CHECK-NEXT:    sbp.linear_grad_weight {{.*}}, %[[DN]] {{.*}} -> tensor<8x8xf32>
sbp.model @nested attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @a keep 0.5 grid [2, 2]
  sbp.mask_group @b keep 0.5 random [2, 2]
  sbp.mask_group @c keep 0.75 random [2, 2]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %pe = sbp.param "pe" : tensor<8x16xf32> init<normal, 0.02>
  %w0 = sbp.param "w0" : tensor<8x8xf32> init<normal, 0.02>
  %wc = sbp.param "wc" : tensor<8x8xf32> init<normal, 0.02>
  %hw = sbp.param "head" : tensor<10x8xf32> init<normal, 0.02>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %x0 = sbp.linear %tok, %pe : (tensor<2x4x16xf32>, tensor<8x16xf32>) -> tensor<2x4x8xf32>
  %y = sbp.branch @a (%x0) {name = "outer"} : (tensor<2x4x8xf32>) -> tensor<2x4x8xf32> {
  ^bb0(%x: tensor<2x4x8xf32>):
    %n = sbp.linear %x, %w0 : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
    %z1 = sbp.branch @b (%n) {name = "inner_b"} : (tensor<2x4x8xf32>) -> tensor<2x4x8xf32> {
    ^bb0(%u: tensor<2x4x8xf32>):
      %t = sbp.relu %u : (tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
      sbp.yield %t : tensor<2x4x8xf32>
    }
    %z2 = sbp.branch @c (%n) {name = "inner_c"} : (tensor<2x4x8xf32>) -> tensor<2x4x8xf32> {
    ^bb0(%u: tensor<2x4x8xf32>):
      %t = sbp.linear %u, %wc : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
      sbp.yield %t : tensor<2x4x8xf32>
    }
    %s = sbp.add %z1, %z2 : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
    sbp.yield %s : tensor<2x4x8xf32>
  }
  %x1 = sbp.add %x0, %y : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %pool = sbp.mean_tokens %x1 : (tensor<2x4x8xf32>) -> tensor<2x8xf32>
  %logits = sbp.linear %pool, %hw : (tensor<2x8xf32>, tensor<10x8xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// At keep 1.0 there is no gate: nothing to prune, only the dead gradient of
// the patchify output (the batch) is erased.

// CHECK-LABEL: sbp.model @dense
// CHECK-NOT:     sbp.gather_rows
// CHECK-NOT:     sbp.scatter
// CHECK:         sbp.linear_grad_input {{.*}} : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
// CHECK-NOT:     sbp.linear_grad_input {{.*}} -> tensor<2x4x16xf32>
// CHECK:         sbp.output
sbp.model @dense attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @a keep 1.0 grid [2, 2]
  sbp.mask_group @b keep 1.0 random [2, 2]
  sbp.mask_group @c keep 1.0 random [2, 2]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %pe = sbp.param "pe" : tensor<8x16xf32> init<normal, 0.02>
  %w0 = sbp.param "w0" : tensor<8x8xf32> init<normal, 0.02>
  %wc = sbp.param "wc" : tensor<8x8xf32> init<normal, 0.02>
  %hw = sbp.param "head" : tensor<10x8xf32> init<normal, 0.02>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %x0 = sbp.linear %tok, %pe : (tensor<2x4x16xf32>, tensor<8x16xf32>) -> tensor<2x4x8xf32>
  %y = sbp.branch @a (%x0) {name = "outer"} : (tensor<2x4x8xf32>) -> tensor<2x4x8xf32> {
  ^bb0(%x: tensor<2x4x8xf32>):
    %n = sbp.linear %x, %w0 : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
    %z1 = sbp.branch @b (%n) {name = "inner_b"} : (tensor<2x4x8xf32>) -> tensor<2x4x8xf32> {
    ^bb0(%u: tensor<2x4x8xf32>):
      %t = sbp.relu %u : (tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
      sbp.yield %t : tensor<2x4x8xf32>
    }
    %z2 = sbp.branch @c (%n) {name = "inner_c"} : (tensor<2x4x8xf32>) -> tensor<2x4x8xf32> {
    ^bb0(%u: tensor<2x4x8xf32>):
      %t = sbp.linear %u, %wc : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
      sbp.yield %t : tensor<2x4x8xf32>
    }
    %s = sbp.add %z1, %z2 : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
    sbp.yield %s : tensor<2x4x8xf32>
  }
  %x1 = sbp.add %x0, %y : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %pool = sbp.mean_tokens %x1 : (tensor<2x4x8xf32>) -> tensor<2x8xf32>
  %logits = sbp.linear %pool, %hw : (tensor<2x8xf32>, tensor<10x8xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}
