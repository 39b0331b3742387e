// RUN: sbp-opt %s -split-input-file -sbp-insert-masks | FileCheck %s
// RUN: sbp-opt %s -split-input-file -sbp-insert-masks=keep=1.0 | FileCheck %s --check-prefix=DENSE
// RUN: not sbp-opt %s -split-input-file -sbp-insert-masks=keep=0.25 2>/dev/null | FileCheck %s --check-prefix=QUARTER
// RUN: not sbp-opt %s -split-input-file -sbp-insert-masks=keep=0.25 2>&1 >/dev/null | FileCheck %s --check-prefix=QUARTER-ERR
// RUN: not sbp-opt %s -split-input-file -sbp-insert-masks=keep=1.5 2>&1 | FileCheck %s --check-prefix=BADKEEP
// RUN: not sbp-opt %s -split-input-file -sbp-insert-masks=keep=0 2>&1 | FileCheck %s --check-prefix=ZEROKEEP

// Two residual branches under one mask group @m (keep 0.5 of a 4x4 grid:
// capacity 8) and one under @dense (keep 1.0). Every branch is inlined; @m
// gets one sbp.keep_indices, shared by its two branches, and each of its
// branches one sbp.grad_gate; @dense gets neither.

// CHECK-LABEL: sbp.model @two_blocks
// CHECK-NEXT:    %[[K:.*]] = sbp.keep_indices @m : tensor<8xi32>
// CHECK-NOT:     sbp.keep_indices
// CHECK-NEXT:    sbp.mask_group @m keep 5.000000e-01 grid [4, 4]
// CHECK-NEXT:    sbp.mask_group @dense keep 1.000000e+00 random [4, 4]
// CHECK:         %[[F0:.*]] = sbp.param "blocks.0.fc1.weight"
// CHECK-NEXT:    %[[G0:.*]] = sbp.param "blocks.0.fc2.weight"
// CHECK:         %[[X0:.*]] = sbp.linear %{{.*}}, %{{.*}} : (tensor<2x16x4xf32>, tensor<8x4xf32>) -> tensor<2x16x8xf32>
// CHECK-NEXT:    %[[H0:.*]] = sbp.linear %[[X0]], %[[F0]] {sbp.region = "blocks.0"}
// CHECK-NEXT:    %[[A0:.*]] = sbp.gelu %[[H0]] {sbp.region = "blocks.0"}
// CHECK-NEXT:    %[[O0:.*]] = sbp.linear %[[A0]], %[[G0]] {sbp.region = "blocks.0"}
// CHECK-NEXT:    %[[GATE0:.*]] = sbp.grad_gate %[[O0]], %[[K]] {sbp.region = "blocks.0"} : (tensor<2x16x8xf32>, tensor<8xi32>) -> tensor<2x16x8xf32>
// CHECK-NEXT:    %[[X1:.*]] = sbp.add %[[X0]], %[[GATE0]] :
// CHECK-NEXT:    %[[H1:.*]] = sbp.linear %[[X1]], %{{.*}} {sbp.region = "blocks.1"}
// CHECK-NEXT:    sbp.relu %[[H1]] {sbp.region = "blocks.1"}
// CHECK-NEXT:    %[[O1:.*]] = sbp.linear {{.*}} {sbp.region = "blocks.1"}
// CHECK-NEXT:    %[[GATE1:.*]] = sbp.grad_gate %[[O1]], %[[K]] {sbp.region = "blocks.1"}
// CHECK-NEXT:    %[[X2:.*]] = sbp.add %[[X1]], %[[GATE1]] :
// CHECK-NEXT:    %[[B2:.*]] = sbp.bias_add %[[X2]], %{{.*}} {sbp.region = "blocks.2"}
// CHECK-NEXT:    sbp.add %[[X2]], %[[B2]] :
// CHECK-NOT:     sbp.grad_gate
// CHECK-NOT:     sbp.branch
// CHECK-NOT:     sbp.yield
// CHECK:         sbp.output

// keep=1.0 overrides every group: no mask, no gate, and the ratios are set.
// DENSE-LABEL: sbp.model @two_blocks
// DENSE-NOT:     sbp.keep_indices
// DENSE:         sbp.mask_group @m keep 1.000000e+00 grid [4, 4]
// DENSE-NEXT:    sbp.mask_group @dense keep 1.000000e+00 random [4, 4]
// DENSE-NOT:     sbp.grad_gate
// DENSE-NOT:     sbp.branch
// DENSE:         sbp.output

// keep=0.25 also turns @dense into an SBP group: capacity 4 of 16 for both.
// QUARTER-LABEL: sbp.model @two_blocks
// QUARTER-DAG:     %[[KD:.*]] = sbp.keep_indices @dense : tensor<4xi32>
// QUARTER-DAG:     %[[KM:.*]] = sbp.keep_indices @m : tensor<4xi32>
// QUARTER:         sbp.mask_group @m keep 2.500000e-01 grid [4, 4]
// QUARTER-NEXT:    sbp.mask_group @dense keep 2.500000e-01 random [4, 4]
// QUARTER:         sbp.grad_gate %{{.*}}, %[[KM]] {sbp.region = "blocks.0"}
// QUARTER:         sbp.grad_gate %{{.*}}, %[[KM]] {sbp.region = "blocks.1"}
// QUARTER:         sbp.grad_gate %{{.*}}, %[[KD]] {sbp.region = "blocks.2"}

// An override can make a group invalid: @inner's [2, 2] grid has 3 diagonals,
// too few for the stride 4 of keep 0.25.
// QUARTER-ERR: error: 'sbp.mask_group' op keep ratio 2.500000e-01 gives a grid stride of 4, larger than the [2, 2] grid's 3 diagonals

// BADKEEP: error: keep ratio override must be in (0, 1], got 1.500000e+00
// ZEROKEEP: error: keep ratio override must be in (0, 1], got 0.000000e+00
sbp.model @two_blocks attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.9, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.5 grid [4, 4]
  sbp.mask_group @dense keep 1.0 random [4, 4]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %pe = sbp.param "patch_embed.weight" : tensor<8x4xf32> init<trunc_normal, 0.02>
  %f0 = sbp.param "blocks.0.fc1.weight" : tensor<16x8xf32> init<trunc_normal, 0.02>
  %g0 = sbp.param "blocks.0.fc2.weight" : tensor<8x16xf32> init<trunc_normal, 0.02>
  %f1 = sbp.param "blocks.1.fc1.weight" : tensor<16x8xf32> init<trunc_normal, 0.02>
  %g1 = sbp.param "blocks.1.fc2.weight" : tensor<8x16xf32> init<trunc_normal, 0.02>
  %b2 = sbp.param "blocks.2.bias" : tensor<8xf32> init<zeros>
  %hw = sbp.param "head.weight" : tensor<10x8xf32> init<trunc_normal, 0.02>
  %hb = sbp.param "head.bias" : tensor<10xf32> init<zeros>
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
  %y2 = sbp.branch @dense (%x2) {name = "blocks.2"} : (tensor<2x16x8xf32>) -> tensor<2x16x8xf32> {
  ^bb0(%x: tensor<2x16x8xf32>):
    %o = sbp.bias_add %x, %b2 : (tensor<2x16x8xf32>, tensor<8xf32>) -> tensor<2x16x8xf32>
    sbp.yield %o : tensor<2x16x8xf32>
  }
  %x3 = sbp.add %x2, %y2 : (tensor<2x16x8xf32>, tensor<2x16x8xf32>) -> tensor<2x16x8xf32>
  %pool = sbp.mean_tokens %x3 : (tensor<2x16x8xf32>) -> tensor<2x8xf32>
  %l0 = sbp.linear %pool, %hw : (tensor<2x8xf32>, tensor<10x8xf32>) -> tensor<2x10xf32>
  %logits = sbp.bias_add %l0, %hb : (tensor<2x10xf32>, tensor<10xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// Nested branches are inlined inner first. The inner branch is unnamed, so
// its op and its gate get no sbp.region of their own: inlining the named
// outer branch then tags them "outer". A branch with two results gets one
// gate per result.

// CHECK-LABEL: sbp.model @nested
// CHECK-DAG:     %[[KI:.*]] = sbp.keep_indices @inner : tensor<2xi32>
// CHECK-DAG:     %[[KO:.*]] = sbp.keep_indices @outer : tensor<3xi32>
// CHECK:         %[[X:.*]] = sbp.patchify
// CHECK-NEXT:    %[[R:.*]] = sbp.relu %[[X]] {sbp.region = "outer"}
// CHECK-NEXT:    %[[IN:.*]] = sbp.gelu %[[R]] {sbp.region = "outer"} : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32>
// CHECK-NEXT:    %[[GI:.*]] = sbp.grad_gate %[[IN]], %[[KI]] {sbp.region = "outer"}
// CHECK-NEXT:    %[[GO0:.*]] = sbp.grad_gate %[[GI]], %[[KO]] {sbp.region = "outer"}
// CHECK-NEXT:    %[[GO1:.*]] = sbp.grad_gate %[[R]], %[[KO]] {sbp.region = "outer"}
// CHECK-NEXT:    sbp.add %[[GO0]], %[[GO1]] : (tensor<2x4x16xf32>, tensor<2x4x16xf32>) -> tensor<2x4x16xf32>

// DENSE-LABEL: sbp.model @nested
// DENSE-NOT:     sbp.grad_gate
// DENSE:         sbp.output
sbp.model @nested attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.9, weight_decay = 0.0>} {
  sbp.mask_group @outer keep 0.75 random [2, 2]
  sbp.mask_group @inner keep 0.5 grid [2, 2]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %hw = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %y:2 = sbp.branch @outer (%tok) {name = "outer"} : (tensor<2x4x16xf32>) -> (tensor<2x4x16xf32>, tensor<2x4x16xf32>) {
  ^bb0(%x: tensor<2x4x16xf32>):
    %r = sbp.relu %x : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32>
    %in = sbp.branch @inner (%r) : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32> {
    ^bb0(%u: tensor<2x4x16xf32>):
      %g = sbp.gelu %u : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32>
      sbp.yield %g : tensor<2x4x16xf32>
    }
    sbp.yield %in, %r : tensor<2x4x16xf32>, tensor<2x4x16xf32>
  }
  %s = sbp.add %y#0, %y#1 : (tensor<2x4x16xf32>, tensor<2x4x16xf32>) -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %s : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %hw : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}
