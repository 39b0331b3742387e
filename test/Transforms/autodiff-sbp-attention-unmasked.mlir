// RUN: sbp-opt %s -split-input-file -sbp-autodiff -verify-diagnostics

// An SBP attention map gets its keep indices from sbp-insert-masks. Without
// them sbp-autodiff cannot apply the map's SBP rule; like a remaining
// sbp.branch ("run sbp-insert-masks before sbp-autodiff"), this must be an
// error, not the ordinary gradient of an op annotated as an SBP region.
sbp.model @unmasked attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.9, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.5 grid [4, 4]
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %qkv_w = sbp.param "qkv.weight" : tensor<72x48xf32> init<trunc_normal, 0.02>
  %h_w = sbp.param "head.weight" : tensor<10x24xf32> init<trunc_normal, 0.02>
  %tok = sbp.patchify %images patch 4 : tensor<4x3x16x16xf32> -> tensor<4x16x48xf32>
  %qkv = sbp.linear %tok, %qkv_w : (tensor<4x16x48xf32>, tensor<72x48xf32>) -> tensor<4x16x72xf32>
  // expected-error @+1 {{sbp-insert-masks}}
  %o, %lse = sbp.attention %qkv heads 3 sbp @m drop_qkv : (tensor<4x16x72xf32>) -> (tensor<4x16x24xf32>, tensor<4x16x3xf32>)
  %pool = sbp.mean_tokens %o : (tensor<4x16x24xf32>) -> tensor<4x24xf32>
  %logits = sbp.linear %pool, %h_w : (tensor<4x24xf32>, tensor<10x24xf32>) -> tensor<4x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}
