// RUN: sbp-opt %s -split-input-file -sbp-autodiff -verify-diagnostics

// The attention's lse output is saved for its backward only; a loss that
// depends on it has no gradient rule.
sbp.model @lse_loss attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.9, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %qkv_w = sbp.param "qkv.weight" : tensor<72x48xf32> init<trunc_normal, 0.02>
  %h_w = sbp.param "head.weight" : tensor<10x3xf32> init<trunc_normal, 0.02>
  %tok = sbp.patchify %images patch 4 : tensor<4x3x16x16xf32> -> tensor<4x16x48xf32>
  %qkv = sbp.linear %tok, %qkv_w : (tensor<4x16x48xf32>, tensor<72x48xf32>) -> tensor<4x16x72xf32>
  // expected-error @+1 {{'sbp.attention' op lse is saved for the backward only: it must not feed the loss}}
  %o, %lse = sbp.attention %qkv heads 3 : (tensor<4x16x72xf32>) -> (tensor<4x16x24xf32>, tensor<4x16x3xf32>)
  %pool = sbp.mean_tokens %lse : (tensor<4x16x3xf32>) -> tensor<4x3xf32>
  %logits = sbp.linear %pool, %h_w : (tensor<4x3xf32>, tensor<10x3xf32>) -> tensor<4x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}
