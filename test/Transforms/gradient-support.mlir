// RUN: sbp-opt %s -split-input-file -sbp-insert-masks -sbp-autodiff -sbp-check-gradient-support=annotate=true -verify-diagnostics | FileCheck %s
// RUN: sbp-opt %s -split-input-file -sbp-insert-masks -sbp-autodiff -sbp-check-gradient-support -verify-diagnostics | FileCheck %s --check-prefix=PLAIN

// Residual branches under @m: the gradients inside them are nonzero only at
// the rows @m keeps ("@m"); the residual stream, the head and the patch
// embedding see every row ("all"). Without annotate, no sbp.support.

// CHECK-LABEL: sbp.model @residual
// CHECK:         sbp.cross_entropy_grad {{.*}}sbp.support = "all"
// CHECK:         sbp.linear_grad_weight {{.*}}sbp.support = "all"} : (tensor<2x8xf32>, tensor<2x10xf32>) -> tensor<10x8xf32>
// CHECK:         %[[DX2:.*]] = sbp.mean_tokens_grad {{.*}}sbp.support = "all"
// CHECK-NEXT:    %[[D1:.*]] = sbp.mask_rows %[[DX2]], %{{.*}} {sbp.bwd, sbp.region = "blocks.1", sbp.support = "@m"}
// CHECK-NEXT:    sbp.linear_grad_input %[[D1]], {{.*}}sbp.support = "@m"
// CHECK-NEXT:    sbp.linear_grad_weight {{.*}}, %[[D1]] {{.*}}sbp.support = "@m"
// CHECK-NEXT:    sbp.relu_grad {{.*}}sbp.support = "@m"
// CHECK-NEXT:    sbp.linear_grad_input {{.*}}sbp.support = "@m"
// CHECK-NEXT:    sbp.linear_grad_weight {{.*}}sbp.support = "@m"} : (tensor<2x16x8xf32>, tensor<2x16x16xf32>) -> tensor<16x8xf32>
// The residual stream: dropped rows still get the identity path's gradient.
// CHECK-NEXT:    %[[DX1:.*]] = sbp.add %[[DX2]], {{.*}}sbp.support = "all"
// CHECK-NEXT:    sbp.mask_rows %[[DX1]], {{.*}}sbp.support = "@m"
// CHECK:         sbp.gelu_grad {{.*}}sbp.support = "@m"
// CHECK:         sbp.add {{.*}}sbp.region = "blocks.0", sbp.support = "all"
// CHECK-NEXT:    sbp.linear_grad_input {{.*}}sbp.support = "all"
// CHECK-NEXT:    sbp.linear_grad_weight {{.*}}sbp.support = "all"} : (tensor<2x16x4xf32>, tensor<2x16x8xf32>) -> tensor<8x4xf32>
// CHECK-NOT:     sbp.support = "@
// CHECK:         sbp.output

// PLAIN-LABEL: sbp.model @residual
// PLAIN-NOT:     sbp.support
// PLAIN:         sbp.output
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

// Two SBP branches in series, with no residual path: y = b(a(x)). The
// gradient of a's weight only flows through rows kept by both @a (grid) and
// @b (random), two distinct draws; at keep 0.5 + 0.5 they can be disjoint.

sbp.model @series_grid_random attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  // expected-note @+1 {{mask group here}}
  sbp.mask_group @a keep 0.5 grid [2, 2]
  // expected-note @+1 {{mask group here}}
  sbp.mask_group @b keep 0.5 random [2, 2]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  // expected-error @+1 {{gradient of parameter 'a.weight' vanishes: it only flows through the kept rows of @b & @a, whose kept token sets can be disjoint (Eq. 10); share one mask group}}
  %wa = sbp.param "a.weight" : tensor<16x16xf32> init<normal, 0.02>
  %hw = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %ya = sbp.branch @a (%tok) {name = "a"} : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32> {
  ^bb0(%x: tensor<2x4x16xf32>):
    %h = sbp.linear %x, %wa : (tensor<2x4x16xf32>, tensor<16x16xf32>) -> tensor<2x4x16xf32>
    sbp.yield %h : tensor<2x4x16xf32>
  }
  %yb = sbp.branch @b (%ya) {name = "b"} : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32> {
  ^bb0(%x: tensor<2x4x16xf32>):
    %r = sbp.relu %x : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32>
    sbp.yield %r : tensor<2x4x16xf32>
  }
  %pool = sbp.mean_tokens %yb : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %hw : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// Same, with two grid masks at keep 0.5 on different grids of 4 tokens
// ([2, 2] and [4, 1]): distinct draws, so an error too.

sbp.model @series_two_grids attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  // expected-note @+1 {{mask group here}}
  sbp.mask_group @a keep 0.5 grid [2, 2]
  // expected-note @+1 {{mask group here}}
  sbp.mask_group @b keep 0.5 grid [4, 1]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  // expected-error @+1 {{gradient of parameter 'a.weight' vanishes: it only flows through the kept rows of @b & @a, whose kept token sets can be disjoint (Eq. 10); share one mask group}}
  %wa = sbp.param "a.weight" : tensor<16x16xf32> init<normal, 0.02>
  %hw = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %ya = sbp.branch @a (%tok) {name = "a"} : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32> {
  ^bb0(%x: tensor<2x4x16xf32>):
    %h = sbp.linear %x, %wa : (tensor<2x4x16xf32>, tensor<16x16xf32>) -> tensor<2x4x16xf32>
    sbp.yield %h : tensor<2x4x16xf32>
  }
  %yb = sbp.branch @b (%ya) {name = "b"} : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32> {
  ^bb0(%x: tensor<2x4x16xf32>):
    %r = sbp.relu %x : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32>
    sbp.yield %r : tensor<2x4x16xf32>
  }
  %pool = sbp.mean_tokens %yb : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %hw : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// At keep 0.75 + 0.75, sum(1 - r) = 0.5 < 1: every step keeps a common
// token, so there is no error. a's gradients have support "@b & @a".

// CHECK-LABEL: sbp.model @series_three_quarters
// CHECK:         sbp.mask_rows {{.*}}sbp.region = "b", sbp.support = "@b"
// CHECK:         sbp.mask_rows {{.*}}sbp.region = "a", sbp.support = "@b & @a"
// CHECK-NEXT:    sbp.linear_grad_input {{.*}}sbp.support = "@b & @a"
// CHECK-NEXT:    %[[DWA:.*]] = sbp.linear_grad_weight {{.*}}sbp.support = "@b & @a"
// CHECK:         sbp.param_grad "a.weight", %[[DWA]]
// PLAIN-LABEL: sbp.model @series_three_quarters
// PLAIN:         sbp.param_grad "a.weight"

sbp.model @series_three_quarters attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @a keep 0.75 grid [2, 2]
  sbp.mask_group @b keep 0.75 random [2, 2]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %wa = sbp.param "a.weight" : tensor<16x16xf32> init<normal, 0.02>
  %hw = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %ya = sbp.branch @a (%tok) {name = "a"} : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32> {
  ^bb0(%x: tensor<2x4x16xf32>):
    %h = sbp.linear %x, %wa : (tensor<2x4x16xf32>, tensor<16x16xf32>) -> tensor<2x4x16xf32>
    sbp.yield %h : tensor<2x4x16xf32>
  }
  %yb = sbp.branch @b (%ya) {name = "b"} : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32> {
  ^bb0(%x: tensor<2x4x16xf32>):
    %r = sbp.relu %x : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32>
    sbp.yield %r : tensor<2x4x16xf32>
  }
  %pool = sbp.mean_tokens %yb : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %hw : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// Two groups with the same kind, keep ratio and grid share one draw (the
// runtime draws once for both): their kept sets are equal, never disjoint.

// CHECK-LABEL: sbp.model @series_same_settings
// CHECK:         sbp.linear_grad_weight {{.*}}sbp.support = "@b & @a"
// CHECK:         sbp.param_grad "a.weight"

sbp.model @series_same_settings attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @a keep 0.5 random [2, 2]
  sbp.mask_group @b keep 0.5 random [2, 2]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %wa = sbp.param "a.weight" : tensor<16x16xf32> init<normal, 0.02>
  %hw = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %ya = sbp.branch @a (%tok) {name = "a"} : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32> {
  ^bb0(%x: tensor<2x4x16xf32>):
    %h = sbp.linear %x, %wa : (tensor<2x4x16xf32>, tensor<16x16xf32>) -> tensor<2x4x16xf32>
    sbp.yield %h : tensor<2x4x16xf32>
  }
  %yb = sbp.branch @b (%ya) {name = "b"} : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32> {
  ^bb0(%x: tensor<2x4x16xf32>):
    %r = sbp.relu %x : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32>
    sbp.yield %r : tensor<2x4x16xf32>
  }
  %pool = sbp.mean_tokens %yb : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %hw : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// With a prefix (class) token, every kept set holds it: no error.

// CHECK-LABEL: sbp.model @series_prefix
// CHECK:         sbp.linear_grad_weight {{.*}}sbp.support = "@b & @a"
// CHECK:         sbp.param_grad "a.weight"

sbp.model @series_prefix attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @a keep 0.5 grid [1, 3] prefix 1
  sbp.mask_group @b keep 0.5 random [1, 3] prefix 1
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %wa = sbp.param "a.weight" : tensor<16x16xf32> init<normal, 0.02>
  %hw = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %ya = sbp.branch @a (%tok) {name = "a"} : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32> {
  ^bb0(%x: tensor<2x4x16xf32>):
    %h = sbp.linear %x, %wa : (tensor<2x4x16xf32>, tensor<16x16xf32>) -> tensor<2x4x16xf32>
    sbp.yield %h : tensor<2x4x16xf32>
  }
  %yb = sbp.branch @b (%ya) {name = "b"} : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32> {
  ^bb0(%x: tensor<2x4x16xf32>):
    %r = sbp.relu %x : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32>
    sbp.yield %r : tensor<2x4x16xf32>
  }
  %pool = sbp.mean_tokens %yb : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %hw : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// A grid mask on a small grid can keep fewer tokens than its ratio: keep 0.75
// on [2, 2] has stride 4, and the start that drops the two positions with
// i + j = 1 keeps only 2 of 4. With a random mask keeping 2 of 4 in series,
// the kept sets can be disjoint although 0.75 + 0.5 > 1.

sbp.model @series_small_grid attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  // expected-note @+1 {{mask group here}}
  sbp.mask_group @a keep 0.75 grid [2, 2]
  // expected-note @+1 {{mask group here}}
  sbp.mask_group @b keep 0.5 random [2, 2]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  // expected-error @+1 {{gradient of parameter 'a.weight' vanishes}}
  %wa = sbp.param "a.weight" : tensor<16x16xf32> init<normal, 0.02>
  %hw = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %ya = sbp.branch @a (%tok) {name = "a"} : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32> {
  ^bb0(%x: tensor<2x4x16xf32>):
    %h = sbp.linear %x, %wa : (tensor<2x4x16xf32>, tensor<16x16xf32>) -> tensor<2x4x16xf32>
    sbp.yield %h : tensor<2x4x16xf32>
  }
  %yb = sbp.branch @b (%ya) {name = "b"} : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32> {
  ^bb0(%x: tensor<2x4x16xf32>):
    %r = sbp.relu %x : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32>
    sbp.yield %r : tensor<2x4x16xf32>
  }
  %pool = sbp.mean_tokens %yb : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %hw : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// The union of two different intersections (@a & @c from one path, @a & @b
// from the other) is every row: w0 gets gradient through @a & @c, which always
// overlap, so no error although @a & @b alone could vanish.

// CHECK-LABEL: sbp.model @union_of_supports
// CHECK:         %[[DN:.*]] = sbp.add {{.*}}sbp.support = "all"
// CHECK:         sbp.param_grad "w0"
// PLAIN-LABEL: sbp.model @union_of_supports
// PLAIN:         sbp.param_grad "w0"

sbp.model @union_of_supports attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @a keep 0.5 grid [2, 2]
  sbp.mask_group @b keep 0.5 random [2, 2]
  sbp.mask_group @c keep 0.75 random [2, 2]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w0 = sbp.param "w0" : tensor<16x16xf32> init<normal, 0.02>
  %wc = sbp.param "wc" : tensor<16x16xf32> init<normal, 0.02>
  %hw = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %y = sbp.branch @a (%tok) {name = "a"} : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32> {
  ^bb0(%x: tensor<2x4x16xf32>):
    %n = sbp.linear %x, %w0 : (tensor<2x4x16xf32>, tensor<16x16xf32>) -> tensor<2x4x16xf32>
    %z2 = sbp.branch @c (%n) {name = "c"} : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32> {
    ^bb0(%u: tensor<2x4x16xf32>):
      %l = sbp.linear %u, %wc : (tensor<2x4x16xf32>, tensor<16x16xf32>) -> tensor<2x4x16xf32>
      sbp.yield %l : tensor<2x4x16xf32>
    }
    %z1 = sbp.branch @b (%n) {name = "b"} : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32> {
    ^bb0(%u: tensor<2x4x16xf32>):
      %r = sbp.relu %u : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32>
      sbp.yield %r : tensor<2x4x16xf32>
    }
    %s = sbp.add %z2, %z1 : (tensor<2x4x16xf32>, tensor<2x4x16xf32>) -> tensor<2x4x16xf32>
    sbp.yield %s : tensor<2x4x16xf32>
  }
  %x1 = sbp.add %tok, %y : (tensor<2x4x16xf32>, tensor<2x4x16xf32>) -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %x1 : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %hw : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// A derived group (cell 2: drawn on 2x2, repeated over 2x2 cells of 4x4) and
// a group drawn on the 4x4 grid itself are distinct draws although their
// grids match: at keep 0.5 + 0.5 their kept sets can be disjoint.

sbp.model @series_cell_and_fine attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  // expected-note @+1 {{mask group here}}
  sbp.mask_group @a keep 0.5 grid [4, 4] cell 2
  // expected-note @+1 {{mask group here}}
  sbp.mask_group @b keep 0.5 grid [4, 4]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  // expected-error @+1 {{gradient of parameter 'a.weight' vanishes: it only flows through the kept rows of @b & @a}}
  %wa = sbp.param "a.weight" : tensor<4x4xf32> init<normal, 0.02>
  %hw = sbp.param "head.weight" : tensor<10x4xf32> init<zeros>
  %tok = sbp.patchify %images patch 2 : tensor<2x1x8x8xf32> -> tensor<2x16x4xf32>
  %ya = sbp.branch @a (%tok) {name = "a"} : (tensor<2x16x4xf32>) -> tensor<2x16x4xf32> {
  ^bb0(%x: tensor<2x16x4xf32>):
    %h = sbp.linear %x, %wa : (tensor<2x16x4xf32>, tensor<4x4xf32>) -> tensor<2x16x4xf32>
    sbp.yield %h : tensor<2x16x4xf32>
  }
  %yb = sbp.branch @b (%ya) {name = "b"} : (tensor<2x16x4xf32>) -> tensor<2x16x4xf32> {
  ^bb0(%x: tensor<2x16x4xf32>):
    %r = sbp.relu %x : (tensor<2x16x4xf32>) -> tensor<2x16x4xf32>
    sbp.yield %r : tensor<2x16x4xf32>
  }
  %pool = sbp.mean_tokens %yb : (tensor<2x16x4xf32>) -> tensor<2x4xf32>
  %logits = sbp.linear %pool, %hw : (tensor<2x4xf32>, tensor<10x4xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// Two derived groups with the same kind, ratio and drawn grid share the draw:
// no error.

// CHECK-LABEL: sbp.model @series_same_cells
// CHECK:         sbp.linear_grad_weight {{.*}}sbp.support = "@b & @a"
// CHECK:         sbp.param_grad "a.weight"

sbp.model @series_same_cells attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @a keep 0.5 grid [4, 4] cell 2
  sbp.mask_group @b keep 0.5 grid [4, 4] cell 2
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %wa = sbp.param "a.weight" : tensor<4x4xf32> init<normal, 0.02>
  %hw = sbp.param "head.weight" : tensor<10x4xf32> init<zeros>
  %tok = sbp.patchify %images patch 2 : tensor<2x1x8x8xf32> -> tensor<2x16x4xf32>
  %ya = sbp.branch @a (%tok) {name = "a"} : (tensor<2x16x4xf32>) -> tensor<2x16x4xf32> {
  ^bb0(%x: tensor<2x16x4xf32>):
    %h = sbp.linear %x, %wa : (tensor<2x16x4xf32>, tensor<4x4xf32>) -> tensor<2x16x4xf32>
    sbp.yield %h : tensor<2x16x4xf32>
  }
  %yb = sbp.branch @b (%ya) {name = "b"} : (tensor<2x16x4xf32>) -> tensor<2x16x4xf32> {
  ^bb0(%x: tensor<2x16x4xf32>):
    %r = sbp.relu %x : (tensor<2x16x4xf32>) -> tensor<2x16x4xf32>
    sbp.yield %r : tensor<2x16x4xf32>
  }
  %pool = sbp.mean_tokens %yb : (tensor<2x16x4xf32>) -> tensor<2x4xf32>
  %logits = sbp.linear %pool, %hw : (tensor<2x4xf32>, tensor<10x4xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}
