// RUN: sbp-opt %s -split-input-file -verify-diagnostics
//
// One negative case per verifier message of the ConvNeXt ops (SbpOps.cpp):
// sbp.dwconv (grid, kernel size, weight shape, channels, bias), its gradient
// ops, sbp.layer_scale, sbp.space_to_depth (odd grid), a depth-wise conv
// inside an SBP branch, and the composites sbp.convnext_block and
// sbp.convnext_downsample (grid, mask group fit).

// dwconv: the grid covers the tokens.
%x = sbpk.input "x" : tensor<2x64x16xf32>
%w = sbpk.input "w" : tensor<16x1x7x7xf32>
%b = sbpk.input "b" : tensor<16xf32>
// expected-error @+1 {{'sbp.dwconv' op grid [8, 7] has 56 positions, but the input has 64 tokens}}
%y = sbp.dwconv %x, %w, %b grid [8, 7] : (tensor<2x64x16xf32>, tensor<16x1x7x7xf32>, tensor<16xf32>) -> tensor<2x64x16xf32>

// -----

// dwconv: the input is a token tensor.
%x = sbpk.input "x" : tensor<2x8x8x16xf32>
%w = sbpk.input "w" : tensor<16x1x7x7xf32>
%b = sbpk.input "b" : tensor<16xf32>
// expected-error @+1 {{'sbp.dwconv' op input must be a token tensor [B, H*W, C], got 'tensor<2x8x8x16xf32>'}}
%y = sbp.dwconv %x, %w, %b grid [8, 8] : (tensor<2x8x8x16xf32>, tensor<16x1x7x7xf32>, tensor<16xf32>) -> tensor<2x8x8x16xf32>

// -----

// dwconv: the grid is two positive sizes.
%x = sbpk.input "x" : tensor<2x64x16xf32>
%w = sbpk.input "w" : tensor<16x1x7x7xf32>
%b = sbpk.input "b" : tensor<16xf32>
// expected-error @+1 {{'sbp.dwconv' op grid must be two positive sizes [H, W], got [64]}}
%y = sbp.dwconv %x, %w, %b grid [64] : (tensor<2x64x16xf32>, tensor<16x1x7x7xf32>, tensor<16xf32>) -> tensor<2x64x16xf32>

// -----

// dwconv: an even kernel has no centre (padding K/2 would shift the grid).
%x = sbpk.input "x" : tensor<2x64x16xf32>
%w = sbpk.input "w" : tensor<16x1x6x6xf32>
%b = sbpk.input "b" : tensor<16xf32>
// expected-error @+1 {{'sbp.dwconv' op kernel size must be odd (padding K/2 keeps the grid), got 6}}
%y = sbp.dwconv %x, %w, %b grid [8, 8] : (tensor<2x64x16xf32>, tensor<16x1x6x6xf32>, tensor<16xf32>) -> tensor<2x64x16xf32>

// -----

// dwconv: the weight is a depth-wise Conv2d weight [C, 1, K, K] (square) ...
%x = sbpk.input "x" : tensor<2x64x16xf32>
%w = sbpk.input "w" : tensor<16x1x7x5xf32>
%b = sbpk.input "b" : tensor<16xf32>
// expected-error @+1 {{'sbp.dwconv' op depth-wise weight must be [C, 1, K, K], got [16, 1, 7, 5]}}
%y = sbp.dwconv %x, %w, %b grid [8, 8] : (tensor<2x64x16xf32>, tensor<16x1x7x5xf32>, tensor<16xf32>) -> tensor<2x64x16xf32>

// -----

// ... with one input channel per group (not a full convolution) ...
%x = sbpk.input "x" : tensor<2x64x16xf32>
%w = sbpk.input "w" : tensor<16x16x7x7xf32>
%b = sbpk.input "b" : tensor<16xf32>
// expected-error @+1 {{'sbp.dwconv' op depth-wise weight must be [C, 1, K, K], got [16, 16, 7, 7]}}
%y = sbp.dwconv %x, %w, %b grid [8, 8] : (tensor<2x64x16xf32>, tensor<16x16x7x7xf32>, tensor<16xf32>) -> tensor<2x64x16xf32>

// -----

// ... and the input's channels.
%x = sbpk.input "x" : tensor<2x64x16xf32>
%w = sbpk.input "w" : tensor<8x1x7x7xf32>
%b = sbpk.input "b" : tensor<16xf32>
// expected-error @+1 {{'sbp.dwconv' op depth-wise weight has 8 channels, the input 16}}
%y = sbp.dwconv %x, %w, %b grid [8, 8] : (tensor<2x64x16xf32>, tensor<8x1x7x7xf32>, tensor<16xf32>) -> tensor<2x64x16xf32>

// -----

// dwconv: one bias per channel.
%x = sbpk.input "x" : tensor<2x64x16xf32>
%w = sbpk.input "w" : tensor<16x1x7x7xf32>
%b = sbpk.input "b" : tensor<8xf32>
// expected-error @+1 {{'sbp.dwconv' op bias must have shape [16], got [8]}}
%y = sbp.dwconv %x, %w, %b grid [8, 8] : (tensor<2x64x16xf32>, tensor<16x1x7x7xf32>, tensor<8xf32>) -> tensor<2x64x16xf32>

// -----

// dwconv: stride 1, the result has the input's shape.
%x = sbpk.input "x" : tensor<2x64x16xf32>
%w = sbpk.input "w" : tensor<16x1x7x7xf32>
%b = sbpk.input "b" : tensor<16xf32>
// expected-error @+1 {{'sbp.dwconv' op result must have shape [2, 64, 16], got [2, 16, 16]}}
%y = sbp.dwconv %x, %w, %b grid [8, 8] : (tensor<2x64x16xf32>, tensor<16x1x7x7xf32>, tensor<16xf32>) -> tensor<2x16x16xf32>

// -----

// dwconv_grad_input: the weight fits the gradient's channels.
%dy = sbpk.input "dy" : tensor<2x64x16xf32>
%w = sbpk.input "w" : tensor<12x1x7x7xf32>
// expected-error @+1 {{'sbp.dwconv_grad_input' op depth-wise weight has 12 channels, the input 16}}
%dx = sbp.dwconv_grad_input %dy, %w grid [8, 8] : (tensor<2x64x16xf32>, tensor<12x1x7x7xf32>) -> tensor<2x64x16xf32>

// -----

// dwconv_grad_weight: x is the forward input, of dy's shape.
%dy = sbpk.input "dy" : tensor<2x64x16xf32>
%x = sbpk.input "x" : tensor<2x64x8xf32>
// expected-error @+1 {{'sbp.dwconv_grad_weight' op input must have shape [2, 64, 16], got [2, 64, 8]}}
%dw, %db = sbp.dwconv_grad_weight %dy, %x grid [8, 8] : (tensor<2x64x16xf32>, tensor<2x64x8xf32>) -> (tensor<16x1x7x7xf32>, tensor<16xf32>)

// -----

// dwconv_grad_weight: dbias is [C].
%dy = sbpk.input "dy" : tensor<2x64x16xf32>
%x = sbpk.input "x" : tensor<2x64x16xf32>
// expected-error @+1 {{'sbp.dwconv_grad_weight' op bias gradient must have shape [16], got [7]}}
%dw, %db = sbp.dwconv_grad_weight %dy, %x grid [8, 8] : (tensor<2x64x16xf32>, tensor<2x64x16xf32>) -> (tensor<16x1x7x7xf32>, tensor<7xf32>)

// -----

// layer_scale: one gamma per channel.
%x = sbpk.input "x" : tensor<2x64x16xf32>
%g = sbpk.input "g" : tensor<32xf32>
// expected-error @+1 {{'sbp.layer_scale' op gamma must have shape [16], got [32]}}
%y = sbp.layer_scale %x, %g : (tensor<2x64x16xf32>, tensor<32xf32>) -> tensor<2x64x16xf32>

// -----

// layer_scale_grad: dgamma is [C].
%dy = sbpk.input "dy" : tensor<2x64x16xf32>
%x = sbpk.input "x" : tensor<2x64x16xf32>
%g = sbpk.input "g" : tensor<16xf32>
// expected-error @+1 {{'sbp.layer_scale_grad' op gamma gradient must have shape [16], got [2, 16]}}
%dx, %dg = sbp.layer_scale_grad %dy, %x, %g : (tensor<2x64x16xf32>, tensor<2x64x16xf32>, tensor<16xf32>) -> (tensor<2x64x16xf32>, tensor<2x16xf32>)

// -----

// space_to_depth: 2x2 cells need an even grid.
%x = sbpk.input "x" : tensor<2x49x16xf32>
// expected-error @+1 {{'sbp.space_to_depth' op block 2 must be positive and divide the grid [7, 7] (downsampling needs an even grid)}}
%y = sbp.space_to_depth %x grid [7, 7] block 2 : tensor<2x49x16xf32> -> tensor<2x12x64xf32>

// -----

// space_to_depth: the result is [B, T/4, 4C].
%x = sbpk.input "x" : tensor<2x64x16xf32>
// expected-error @+1 {{'sbp.space_to_depth' op result must have shape [2, 16, 64], got [2, 16, 16]}}
%y = sbp.space_to_depth %x grid [8, 8] block 2 : tensor<2x64x16xf32> -> tensor<2x16x16xf32>

// -----

// space_to_depth_grad: the gradient of the output grid's shape.
%dy = sbpk.input "dy" : tensor<2x16x32xf32>
// expected-error @+1 {{'sbp.space_to_depth_grad' op gradient must have shape [2, 16, 64], got [2, 16, 32]}}
%dx = sbp.space_to_depth_grad %dy grid [8, 8] block 2 : tensor<2x16x32xf32> -> tensor<2x64x16xf32>

// -----

// A depth-wise conv mixes neighbouring tokens: it cannot be an SBP region.
sbp.model @dwconv_in_branch attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.5 grid [4, 4]
  %labels = sbp.input "labels" : tensor<2xi32>
  %images = sbp.input "images" : tensor<2x3x16x16xf32>
  %x = sbp.param "x" : tensor<2x16x8xf32> init<zeros>
  %w = sbp.param "w" : tensor<8x1x3x3xf32> init<zeros>
  %b = sbp.param "b" : tensor<8xf32> init<zeros>
  %logits = sbp.param "logits" : tensor<2x10xf32> init<zeros>
  // expected-note @+1 {{SBP on a depth-wise conv is not supported (each output token reads its neighbours); put the branch after it, as convnext_sbp.py does}}
  %y = sbp.branch @m (%x) : (tensor<2x16x8xf32>) -> tensor<2x16x8xf32> {
  ^bb0(%a: tensor<2x16x8xf32>):
    // expected-error @+1 {{'sbp.dwconv' op is not token-wise, so it cannot be inside an SBP branch}}
    %c = sbp.dwconv %a, %w, %b grid [4, 4] : (tensor<2x16x8xf32>, tensor<8x1x3x3xf32>, tensor<8xf32>) -> tensor<2x16x8xf32>
    sbp.yield %c : tensor<2x16x8xf32>
  }
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// convnext_block: the grid covers the tokens.
sbp.model @block_grid attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %labels = sbp.input "labels" : tensor<2xi32>
  %images = sbp.input "images" : tensor<2x3x16x16xf32>
  %x = sbp.param "x" : tensor<2x16x8xf32> init<zeros>
  %logits = sbp.param "logits" : tensor<2x10xf32> init<zeros>
  // expected-error @+1 {{'sbp.convnext_block' op grid [4, 5] has 20 positions, but the input has 16 tokens}}
  %y = sbp.convnext_block "stages.0.blocks.0" %x grid [4, 5] hidden 32 : tensor<2x16x8xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// convnext_block: an odd kernel size.
sbp.model @block_kernel attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %labels = sbp.input "labels" : tensor<2xi32>
  %images = sbp.input "images" : tensor<2x3x16x16xf32>
  %x = sbp.param "x" : tensor<2x16x8xf32> init<zeros>
  %logits = sbp.param "logits" : tensor<2x10xf32> init<zeros>
  // expected-error @+1 {{'sbp.convnext_block' op kernel size must be odd, got 4}}
  %y = sbp.convnext_block "stages.0.blocks.0" %x grid [4, 4] hidden 32 {kernel = 4 : i64} : tensor<2x16x8xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// convnext_block: the MLP branch's mask group is on the block's grid.
sbp.model @block_group attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.5 grid [2, 2]
  %labels = sbp.input "labels" : tensor<2xi32>
  %images = sbp.input "images" : tensor<2x3x16x16xf32>
  %x = sbp.param "x" : tensor<2x16x8xf32> init<zeros>
  %logits = sbp.param "logits" : tensor<2x10xf32> init<zeros>
  // expected-error @+1 {{'sbp.convnext_block' op mlp_sbp needs a token mask group over 16 tokens, @m covers 4}}
  %y = sbp.convnext_block "stages.0.blocks.0" %x grid [4, 4] hidden 32 mlp_sbp @m : tensor<2x16x8xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// convnext_downsample: a 2x2 stride-2 conv needs an even grid.
sbp.model @downsample_odd attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %labels = sbp.input "labels" : tensor<2xi32>
  %images = sbp.input "images" : tensor<2x3x16x16xf32>
  %x = sbp.param "x" : tensor<2x49x8xf32> init<zeros>
  %logits = sbp.param "logits" : tensor<2x10xf32> init<zeros>
  // expected-error @+1 {{'sbp.convnext_downsample' op block 2 must be positive and divide the grid [7, 7] (downsampling needs an even grid)}}
  %y = sbp.convnext_downsample "stages.1.downsample" %x grid [7, 7] out 16 : (tensor<2x49x8xf32>) -> tensor<2x12x16xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// convnext_downsample: the result is [B, T/4, out].
sbp.model @downsample_out attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %labels = sbp.input "labels" : tensor<2xi32>
  %images = sbp.input "images" : tensor<2x3x16x16xf32>
  %x = sbp.param "x" : tensor<2x16x8xf32> init<zeros>
  %logits = sbp.param "logits" : tensor<2x10xf32> init<zeros>
  // expected-error @+1 {{'sbp.convnext_downsample' op result must have shape [2, 4, 16], got [2, 4, 32]}}
  %y = sbp.convnext_downsample "stages.1.downsample" %x grid [4, 4] out 16 : (tensor<2x16x8xf32>) -> tensor<2x4x32xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// convnext_downsample: its SBP group is on the output (coarser) grid.
sbp.model @downsample_group attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.5 grid [4, 4]
  %labels = sbp.input "labels" : tensor<2xi32>
  %images = sbp.input "images" : tensor<2x3x16x16xf32>
  %x = sbp.param "x" : tensor<2x16x8xf32> init<zeros>
  %logits = sbp.param "logits" : tensor<2x10xf32> init<zeros>
  // expected-error @+1 {{'sbp.convnext_downsample' op sbp needs a token mask group over 4 tokens, @m covers 16}}
  %y = sbp.convnext_downsample "stages.1.downsample" %x grid [4, 4] out 16 sbp @m : (tensor<2x16x8xf32>) -> tensor<2x4x16xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}
