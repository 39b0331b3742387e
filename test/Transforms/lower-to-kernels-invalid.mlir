// RUN: sbp-opt %s -split-input-file -sbp-lower-to-kernels -verify-diagnostics

// sbp-lower-to-kernels needs the masks inserted (no sbp.branch left).
sbp.model @branch_left attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.5 grid [2, 2]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "w" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  // expected-error @+1 {{'sbp.branch' op cannot be lowered to kernels (run sbp-insert-masks and sbp-autodiff first)}}
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

// A parameter gradient must name a parameter of the model.
sbp.model @stray_grad attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "w" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %t = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %t, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  %dl = sbp.cross_entropy_grad %logits, %labels {sbp.bwd} : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<2x10xf32>
  %dw = sbp.linear_grad_weight %t, %dl {sbp.bwd} : (tensor<2x16xf32>, tensor<2x10xf32>) -> tensor<10x16xf32>
  // expected-error @+1 {{'sbp.param_grad' op names no parameter}}
  sbp.param_grad "v", %dw : tensor<10x16xf32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}
