// RUN: sbp-opt %s -split-input-file -verify-diagnostics
//
// One negative case per verifier message of stochastic depth: the `samples`
// mask kind (sbp.mask_group), sbp.drop_path (rate, group kind, batch, keep
// ratio, keep indices) and the drop_path attribute of sbp.convnext_block.

// A samples group is one row over the batch.
sbp.model @samples_grid attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  // expected-error @+1 {{'sbp.mask_group' op a samples mask needs grid [1, batch] and no prefix, got [2, 2] prefix 0}}
  sbp.mask_group @dp keep 0.9 samples [2, 2]
  %labels = sbp.input "labels" : tensor<4xi32>
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %logits = sbp.param "logits" : tensor<4x10xf32> init<zeros>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

sbp.model @samples_prefix attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  // expected-error @+1 {{'sbp.mask_group' op a samples mask needs grid [1, batch] and no prefix, got [1, 4] prefix 1}}
  sbp.mask_group @dp keep 0.9 samples [1, 4] prefix 1
  %labels = sbp.input "labels" : tensor<4xi32>
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %logits = sbp.param "logits" : tensor<4x10xf32> init<zeros>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// The rate is in [0, 1): 1 would drop every sample and scale by 1/0.
%x = sbpk.input "x" : tensor<4x16x8xf32>
// expected-error @+1 {{'sbp.drop_path' op drop-path rate must be in [0, 1), got 1.000000e+00}}
%y = sbp.drop_path %x group @dp rate 1.0 : (tensor<4x16x8xf32>) -> tensor<4x16x8xf32>

// -----

%x = sbpk.input "x" : tensor<4x16x8xf32>
// expected-error @+1 {{'sbp.drop_path' op drop-path rate must be in [0, 1), got -1.000000e-01}}
%y = sbp.drop_path %x group @dp rate -0.1 : (tensor<4x16x8xf32>) -> tensor<4x16x8xf32>

// -----

%x = sbpk.input "x" : tensor<4x16x8xf32>
// expected-error @+1 {{'sbp.drop_path' op result must have shape [4, 16, 8], got [4, 16, 4]}}
%y = sbp.drop_path %x group @dp rate 0.1 : (tensor<4x16x8xf32>) -> tensor<4x16x4xf32>

// -----

// The group must draw samples, not tokens.
sbp.model @token_group attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.9 random [4, 4]
  %labels = sbp.input "labels" : tensor<4xi32>
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %x = sbp.param "x" : tensor<4x16x8xf32> init<zeros>
  %logits = sbp.param "logits" : tensor<4x10xf32> init<zeros>
  // expected-error @+1 {{'sbp.drop_path' op drop path needs a samples mask group, @m masks random}}
  %y = sbp.drop_path %x group @m rate 0.1 : (tensor<4x16x8xf32>) -> tensor<4x16x8xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// The group covers the batch of its op.
sbp.model @batch attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @dp keep 0.9 samples [1, 8]
  %labels = sbp.input "labels" : tensor<4xi32>
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %x = sbp.param "x" : tensor<4x16x8xf32> init<zeros>
  %logits = sbp.param "logits" : tensor<4x10xf32> init<zeros>
  // expected-error @+1 {{'sbp.drop_path' op has batch 4, but samples group @dp covers 8 samples}}
  %y = sbp.drop_path %x group @dp rate 0.1 : (tensor<4x16x8xf32>) -> tensor<4x16x8xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// The runtime draws with the group's keep ratio, the kernel scales by 1/(1 - rate): they agree.
sbp.model @ratio attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @dp keep 0.8 samples [1, 4]
  %labels = sbp.input "labels" : tensor<4xi32>
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %x = sbp.param "x" : tensor<4x16x8xf32> init<zeros>
  %logits = sbp.param "logits" : tensor<4x10xf32> init<zeros>
  // expected-error @+1 {{'sbp.drop_path' op drop-path rate 1.000000e-01 needs keep 9.000000e-01 in group @dp, which keeps 8.000000e-01}}
  %y = sbp.drop_path %x group @dp rate 0.1 : (tensor<4x16x8xf32>) -> tensor<4x16x8xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

sbp.model @unknown attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %labels = sbp.input "labels" : tensor<4xi32>
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %x = sbp.param "x" : tensor<4x16x8xf32> init<zeros>
  %logits = sbp.param "logits" : tensor<4x10xf32> init<zeros>
  // expected-error @+1 {{'sbp.drop_path' op refers to an unknown mask group @dp}}
  %y = sbp.drop_path %x group @dp rate 0.1 : (tensor<4x16x8xf32>) -> tensor<4x16x8xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// Keep indices are one list [K].
%x = sbpk.input "x" : tensor<4x16x8xf32>
%k = sbpk.input "k" : tensor<2x2xi32>
// expected-error @+1 {{'sbp.drop_path' op keep indices must be [K]}}
%y = sbp.drop_path %x, %k group @dp rate 0.1 : (tensor<4x16x8xf32>, tensor<2x2xi32>) -> tensor<4x16x8xf32>

// -----

// A samples group is not a token mask: no SBP branch under it.
sbp.model @branch attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @dp keep 0.9 samples [1, 4]
  %labels = sbp.input "labels" : tensor<4xi32>
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %x = sbp.param "x" : tensor<4x4x8xf32> init<zeros>
  %logits = sbp.param "logits" : tensor<4x10xf32> init<zeros>
  // expected-error @+1 {{'sbp.branch' op mask group @dp masks samples, not tokens}}
  %y = sbp.branch @dp (%x) : (tensor<4x4x8xf32>) -> tensor<4x4x8xf32> {
  ^bb0(%a: tensor<4x4x8xf32>):
    %g = sbp.gelu %a : (tensor<4x4x8xf32>) -> tensor<4x4x8xf32>
    sbp.yield %g : tensor<4x4x8xf32>
  }
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// convnext_block: drop_path needs a samples group.
sbp.model @block_group attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.9 grid [4, 4]
  %labels = sbp.input "labels" : tensor<2xi32>
  %images = sbp.input "images" : tensor<2x3x16x16xf32>
  %x = sbp.param "x" : tensor<2x16x8xf32> init<zeros>
  %logits = sbp.param "logits" : tensor<2x10xf32> init<zeros>
  // expected-error @+1 {{'sbp.convnext_block' op drop path needs a samples mask group, @m masks grid}}
  %y = sbp.convnext_block "stages.0.blocks.0" %x grid [4, 4] hidden 32 drop_path @m rate 0.1 : tensor<2x16x8xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

sbp.model @block_rate attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @dp keep 0.5 samples [1, 2]
  %labels = sbp.input "labels" : tensor<2xi32>
  %images = sbp.input "images" : tensor<2x3x16x16xf32>
  %x = sbp.param "x" : tensor<2x16x8xf32> init<zeros>
  %logits = sbp.param "logits" : tensor<2x10xf32> init<zeros>
  // expected-error @+1 {{'sbp.convnext_block' op drop-path rate must be in [0, 1), got 1.500000e+00}}
  %y = sbp.convnext_block "stages.0.blocks.0" %x grid [4, 4] hidden 32 drop_path @dp rate 1.5 : tensor<2x16x8xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

sbp.model @block_batch attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @dp keep 0.9 samples [1, 4]
  %labels = sbp.input "labels" : tensor<2xi32>
  %images = sbp.input "images" : tensor<2x3x16x16xf32>
  %x = sbp.param "x" : tensor<2x16x8xf32> init<zeros>
  %logits = sbp.param "logits" : tensor<2x10xf32> init<zeros>
  // expected-error @+1 {{'sbp.convnext_block' op has batch 2, but samples group @dp covers 4 samples}}
  %y = sbp.convnext_block "stages.0.blocks.0" %x grid [4, 4] hidden 32 drop_path @dp rate 0.1 : tensor<2x16x8xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}
