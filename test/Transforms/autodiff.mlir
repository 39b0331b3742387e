// RUN: sbp-opt %s -split-input-file -sbp-autodiff -verify-diagnostics | FileCheck %s

// The input is what sbp-insert-masks produces: the branch body inlined, its
// result gated. The backward is appended before sbp.output, in reverse op
// order; each backward op carries sbp.bwd, and the sbp.region of the forward
// op it differentiates.

// CHECK-LABEL: sbp.model @block
// CHECK:         %[[K:.*]] = sbp.keep_indices @m : tensor<8xi32>
// CHECK:         %[[LABELS:.*]] = sbp.input "labels"
// CHECK-NEXT:    %[[PE:.*]] = sbp.param "patch_embed.weight"
// CHECK-NEXT:    %[[PB:.*]] = sbp.param "patch_embed.bias"
// CHECK-NEXT:    %[[POS:.*]] = sbp.param "pos_embed"
// CHECK-NEXT:    %[[NW:.*]] = sbp.param "blocks.0.norm.weight"
// CHECK-NEXT:    %[[NB:.*]] = sbp.param "blocks.0.norm.bias"
// CHECK-NEXT:    %[[F0:.*]] = sbp.param "blocks.0.fc1.weight"
// CHECK-NEXT:    %[[G0:.*]] = sbp.param "blocks.0.fc2.weight"
// CHECK-NEXT:    %[[HW:.*]] = sbp.param "head.weight"
// CHECK-NEXT:    %[[HB:.*]] = sbp.param "head.bias"
// CHECK-NEXT:    %[[TOK:.*]] = sbp.patchify
// CHECK-NEXT:    %[[E0:.*]] = sbp.linear %[[TOK]], %[[PE]]
// CHECK-NEXT:    %[[E1:.*]] = sbp.bias_add %[[E0]], %[[PB]]
// CHECK-NEXT:    %[[X0:.*]] = sbp.pos_add %[[E1]], %[[POS]]
// CHECK-NEXT:    %[[N:.*]] = sbp.layer_norm %[[X0]], %[[NW]], %[[NB]]
// CHECK-NEXT:    %[[H:.*]] = sbp.linear %[[N]], %[[F0]]
// CHECK-NEXT:    %[[A:.*]] = sbp.gelu %[[H]]
// CHECK-NEXT:    %[[R:.*]] = sbp.relu %[[A]]
// CHECK-NEXT:    %[[O:.*]] = sbp.linear %[[R]], %[[G0]]
// CHECK-NEXT:    %[[GATE:.*]] = sbp.grad_gate %[[O]], %[[K]]
// CHECK-NEXT:    %[[X1:.*]] = sbp.add %[[X0]], %[[GATE]]
// CHECK-NEXT:    %[[POOL:.*]] = sbp.mean_tokens %[[X1]]
// CHECK-NEXT:    %[[L0:.*]] = sbp.linear %[[POOL]], %[[HW]]
// CHECK-NEXT:    %[[LOGITS:.*]] = sbp.bias_add %[[L0]], %[[HB]]
// CHECK-NEXT:    %[[LOSS:.*]] = sbp.cross_entropy %[[LOGITS]], %[[LABELS]]
//
// The loss and the head:
// CHECK-NEXT:    %[[DLOGITS:.*]] = sbp.cross_entropy_grad %[[LOGITS]], %[[LABELS]] {sbp.bwd} : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<2x10xf32>
// CHECK-NEXT:    %[[DHB:.*]] = sbp.bias_grad %[[DLOGITS]] {sbp.bwd} : (tensor<2x10xf32>) -> tensor<10xf32>
// CHECK-NEXT:    %[[DPOOL:.*]] = sbp.linear_grad_input %[[DLOGITS]], %[[HW]] {sbp.bwd} : (tensor<2x10xf32>, tensor<10x8xf32>) -> tensor<2x8xf32>
// CHECK-NEXT:    %[[DHW:.*]] = sbp.linear_grad_weight %[[POOL]], %[[DLOGITS]] {sbp.bwd} : (tensor<2x8xf32>, tensor<2x10xf32>) -> tensor<10x8xf32>
// CHECK-NEXT:    %[[DX1:.*]] = sbp.mean_tokens_grad %[[DPOOL]] {sbp.bwd} : (tensor<2x8xf32>) -> tensor<2x16x8xf32>
//
// The residual add passes dx1 to both operands; the gate masks it.
// CHECK-NEXT:    %[[DO:.*]] = sbp.mask_rows %[[DX1]], %[[K]] {sbp.bwd, sbp.region = "blocks.0"} : (tensor<2x16x8xf32>, tensor<8xi32>) -> tensor<2x16x8xf32>
// CHECK-NEXT:    %[[DR:.*]] = sbp.linear_grad_input %[[DO]], %[[G0]] {sbp.bwd, sbp.region = "blocks.0"} : (tensor<2x16x8xf32>, tensor<8x16xf32>) -> tensor<2x16x16xf32>
// CHECK-NEXT:    %[[DG0:.*]] = sbp.linear_grad_weight %[[R]], %[[DO]] {sbp.bwd, sbp.region = "blocks.0"} : (tensor<2x16x16xf32>, tensor<2x16x8xf32>) -> tensor<8x16xf32>
// CHECK-NEXT:    %[[DA:.*]] = sbp.relu_grad %[[A]], %[[DR]] {sbp.bwd, sbp.region = "blocks.0"}
// CHECK-NEXT:    %[[DH:.*]] = sbp.gelu_grad %[[H]], %[[DA]] {sbp.bwd, sbp.region = "blocks.0"}
// CHECK-NEXT:    %[[DN:.*]] = sbp.linear_grad_input %[[DH]], %[[F0]] {sbp.bwd, sbp.region = "blocks.0"}
// CHECK-NEXT:    %[[DF0:.*]] = sbp.linear_grad_weight %[[N]], %[[DH]] {sbp.bwd, sbp.region = "blocks.0"} : (tensor<2x16x8xf32>, tensor<2x16x16xf32>) -> tensor<16x8xf32>
// CHECK-NEXT:    %[[DXN:.*]], %[[DNW:.*]], %[[DNB:.*]] = sbp.layer_norm_grad %[[X0]], %[[NW]], %[[DN]] {eps = 9.9999999999999995E-7 : f64, sbp.bwd, sbp.region = "blocks.0"}
//
// x0 is used twice (layer_norm and the residual add): its gradients are summed.
// CHECK-NEXT:    %[[DX0:.*]] = sbp.add %[[DX1]], %[[DXN]] {sbp.bwd, sbp.region = "blocks.0"} : (tensor<2x16x8xf32>, tensor<2x16x8xf32>) -> tensor<2x16x8xf32>
// CHECK-NEXT:    %[[DPOS:.*]] = sbp.pos_grad %[[DX0]] {sbp.bwd} : (tensor<2x16x8xf32>) -> tensor<1x16x8xf32>
// CHECK-NEXT:    %[[DPB:.*]] = sbp.bias_grad %[[DX0]] {sbp.bwd} : (tensor<2x16x8xf32>) -> tensor<8xf32>
// CHECK-NEXT:    sbp.linear_grad_input %[[DX0]], %[[PE]] {sbp.bwd}
// CHECK-NEXT:    %[[DPE:.*]] = sbp.linear_grad_weight %[[TOK]], %[[DX0]] {sbp.bwd} : (tensor<2x16x4xf32>, tensor<2x16x8xf32>) -> tensor<8x4xf32>
//
// patchify has no gradient (its input is the batch); then one param_grad per
// parameter, in parameter order.
// CHECK-NOT:     patchify
// CHECK-NEXT:    sbp.param_grad "patch_embed.weight", %[[DPE]] : tensor<8x4xf32>
// CHECK-NEXT:    sbp.param_grad "patch_embed.bias", %[[DPB]] : tensor<8xf32>
// CHECK-NEXT:    sbp.param_grad "pos_embed", %[[DPOS]] : tensor<1x16x8xf32>
// CHECK-NEXT:    sbp.param_grad "blocks.0.norm.weight", %[[DNW]] : tensor<8xf32>
// CHECK-NEXT:    sbp.param_grad "blocks.0.norm.bias", %[[DNB]] : tensor<8xf32>
// CHECK-NEXT:    sbp.param_grad "blocks.0.fc1.weight", %[[DF0]] : tensor<16x8xf32>
// CHECK-NEXT:    sbp.param_grad "blocks.0.fc2.weight", %[[DG0]] : tensor<8x16xf32>
// CHECK-NEXT:    sbp.param_grad "head.weight", %[[DHW]] : tensor<10x8xf32>
// CHECK-NEXT:    sbp.param_grad "head.bias", %[[DHB]] : tensor<10xf32>
// CHECK-NEXT:    sbp.output %[[LOSS]], %[[LOGITS]]
sbp.model @block attributes {optimizer = #sbp.adamw<lr = 1.0e-3, beta1 = 0.9, beta2 = 0.5, eps = 1.0e-8, weight_decay = 0.05>} {
  %keep = sbp.keep_indices @m : tensor<8xi32>
  sbp.mask_group @m keep 0.5 grid [4, 4]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %pe = sbp.param "patch_embed.weight" : tensor<8x4xf32> init<trunc_normal, 0.02>
  %pb = sbp.param "patch_embed.bias" : tensor<8xf32> init<zeros>
  %pos = sbp.param "pos_embed" : tensor<1x16x8xf32> init<trunc_normal, 0.02>
  %nw = sbp.param "blocks.0.norm.weight" : tensor<8xf32> init<ones>
  %nb = sbp.param "blocks.0.norm.bias" : tensor<8xf32> init<zeros>
  %f0 = sbp.param "blocks.0.fc1.weight" : tensor<16x8xf32> init<trunc_normal, 0.02>
  %g0 = sbp.param "blocks.0.fc2.weight" : tensor<8x16xf32> init<trunc_normal, 0.02>
  %hw = sbp.param "head.weight" : tensor<10x8xf32> init<trunc_normal, 0.02>
  %hb = sbp.param "head.bias" : tensor<10xf32> init<zeros>
  %tok = sbp.patchify %images patch 2 : tensor<2x1x8x8xf32> -> tensor<2x16x4xf32>
  %e0 = sbp.linear %tok, %pe : (tensor<2x16x4xf32>, tensor<8x4xf32>) -> tensor<2x16x8xf32>
  %e1 = sbp.bias_add %e0, %pb : (tensor<2x16x8xf32>, tensor<8xf32>) -> tensor<2x16x8xf32>
  %x0 = sbp.pos_add %e1, %pos : (tensor<2x16x8xf32>, tensor<1x16x8xf32>) -> tensor<2x16x8xf32>
  %n = sbp.layer_norm %x0, %nw, %nb {eps = 1.0e-6 : f64, sbp.region = "blocks.0"} : (tensor<2x16x8xf32>, tensor<8xf32>, tensor<8xf32>) -> tensor<2x16x8xf32>
  %h = sbp.linear %n, %f0 {sbp.region = "blocks.0"} : (tensor<2x16x8xf32>, tensor<16x8xf32>) -> tensor<2x16x16xf32>
  %a = sbp.gelu %h {sbp.region = "blocks.0"} : (tensor<2x16x16xf32>) -> tensor<2x16x16xf32>
  %r = sbp.relu %a {sbp.region = "blocks.0"} : (tensor<2x16x16xf32>) -> tensor<2x16x16xf32>
  %o = sbp.linear %r, %g0 {sbp.region = "blocks.0"} : (tensor<2x16x16xf32>, tensor<8x16xf32>) -> tensor<2x16x8xf32>
  %gate = sbp.grad_gate %o, %keep {sbp.region = "blocks.0"} : (tensor<2x16x8xf32>, tensor<8xi32>) -> tensor<2x16x8xf32>
  %x1 = sbp.add %x0, %gate : (tensor<2x16x8xf32>, tensor<2x16x8xf32>) -> tensor<2x16x8xf32>
  %pool = sbp.mean_tokens %x1 : (tensor<2x16x8xf32>) -> tensor<2x8xf32>
  %l0 = sbp.linear %pool, %hw : (tensor<2x8xf32>, tensor<10x8xf32>) -> tensor<2x10xf32>
  %logits = sbp.bias_add %l0, %hb : (tensor<2x10xf32>, tensor<10xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// A parameter off the path to the loss gets a warning and no param_grad; a
// value feeding both operands of one add gets the sum of the two gradients.

// CHECK-LABEL: sbp.model @unused
// CHECK:         %[[W:.*]] = sbp.param "w"
// CHECK:         %[[T:.*]] = sbp.mean_tokens
// CHECK-NEXT:    %[[D:.*]] = sbp.add %[[T]], %[[T]]
// CHECK:         %[[DD:.*]] = sbp.linear_grad_input %{{.*}}, %[[W]] {sbp.bwd}
// CHECK-NEXT:    sbp.linear_grad_weight %[[D]]
// CHECK-NEXT:    %[[DT:.*]] = sbp.add %[[DD]], %[[DD]] {sbp.bwd} : (tensor<2x16xf32>, tensor<2x16xf32>) -> tensor<2x16xf32>
// CHECK-NEXT:    sbp.mean_tokens_grad %[[DT]] {sbp.bwd}
// CHECK-NEXT:    sbp.param_grad "w"
// CHECK-NOT:     sbp.param_grad
// CHECK:         sbp.output
sbp.model @unused attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "w" : tensor<10x16xf32> init<zeros>
  // expected-warning @+1 {{parameter 'unused' gets no gradient; it is left unchanged}}
  %u = sbp.param "unused" : tensor<16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %t = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %d = sbp.add %t, %t : (tensor<2x16xf32>, tensor<2x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %d, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// expected-error @+1 {{run sbp-insert-masks before sbp-autodiff: sbp.branch remains}}
sbp.model @branch_left attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.5 grid [2, 2]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "w" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %y = sbp.branch @m (%tok) : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32> {
  ^bb0(%x: tensor<2x4x16xf32>):
    %r = sbp.relu %x : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32>
    sbp.yield %r : tensor<2x4x16xf32>
  }
  %t = sbp.mean_tokens %y : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %t, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// expected-error @+1 {{model is already differentiated}}
sbp.model @twice attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "w" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %t = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %t, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  %dl = sbp.cross_entropy_grad %logits, %labels {sbp.bwd} : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<2x10xf32>
  %dw = sbp.linear_grad_weight %t, %dl {sbp.bwd} : (tensor<2x16xf32>, tensor<2x10xf32>) -> tensor<10x16xf32>
  sbp.param_grad "w", %dw : tensor<10x16xf32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// A forward op without a gradient rule on the path to the loss.
sbp.model @no_rule attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %keep = sbp.keep_indices @m : tensor<2xi32>
  sbp.mask_group @m keep 0.5 grid [2, 2]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "w" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  // expected-error @+1 {{'sbp.gather_rows' op has no gradient rule}}
  %g = sbp.gather_rows %tok, %keep : (tensor<2x4x16xf32>, tensor<2xi32>) -> tensor<2x2x16xf32>
  %t = sbp.mean_tokens %g : (tensor<2x2x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %t, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}
