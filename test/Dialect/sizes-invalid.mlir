// RUN: sbp-opt %s -split-input-file -verify-diagnostics -allow-unregistered-dialect
//
// Sizes every op must reject before a pass computes with them (issue 11):
// zero and dynamic dimensions (the lowering divides by sizes), rank-0
// tensors where an op reads a dimension (verifiers indexed them), tensors
// and mask grids too large for the kernels' 32-bit sizes. Values come from
// an unregistered "test.source" op, so each error is the consuming op's.

// A zero-size token dimension: sbp.mean_tokens would divide by T = 0.
%x = "test.source"() : () -> tensor<2x0x8xf32>
// expected-error @+1 {{'sbp.mean_tokens' op operand #0 has a dimension of size 0 ('tensor<2x0x8xf32>'): every size must be positive}}
%y = sbp.mean_tokens %x : (tensor<2x0x8xf32>) -> tensor<2x8xf32>

// -----

// A zero-size feature dimension in a linear layer's weight.
%x = "test.source"() : () -> tensor<2x8xf32>
%w = "test.source"() : () -> tensor<0x8xf32>
// expected-error @+1 {{'sbp.linear' op operand #1 has a dimension of size 0 ('tensor<0x8xf32>'): every size must be positive}}
%y = sbp.linear %x, %w : (tensor<2x8xf32>, tensor<0x8xf32>) -> tensor<2x0xf32>

// -----

// Attention on a zero-width qkv (sbpc exited 1 with an empty stderr).
%qkv = "test.source"() : () -> tensor<2x4x0xf32>
// expected-error @+1 {{'sbp.attention' op operand #0 has a dimension of size 0 ('tensor<2x4x0xf32>'): every size must be positive}}
%o, %l = sbp.attention %qkv heads 1 : (tensor<2x4x0xf32>) -> (tensor<2x4x0xf32>, tensor<2x4x1xf32>)

// -----

// A zero-size result is rejected as well as a zero-size operand.
%x = "test.source"() : () -> tensor<2x4x8xf32>
// expected-error @+1 {{'sbp.gelu' op result #0 has a dimension of size 0 ('tensor<2x0x8xf32>'): every size must be positive}}
%y = sbp.gelu %x : (tensor<2x4x8xf32>) -> tensor<2x0x8xf32>

// -----

// The same rule holds in the kernel graph.
// expected-error @+1 {{'sbpk.input' op result #0 has a dimension of size 0 ('tensor<0x4xf32>'): every size must be positive}}
%x = sbpk.input "x" : tensor<0x4xf32>

// -----

// A zero batch in a model: the input's own check, not a division later.
sbp.model @zero_batch attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  // expected-error @+1 {{'sbp.input' op result #0 has a dimension of size 0 ('tensor<0x1x8x8xf32>'): every size must be positive}}
  %images = sbp.input "images" : tensor<0x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<0xi32>
}

// -----

// A tensor of 2^32 elements does not fit the kernels' sizes.
%x = "test.source"() : () -> tensor<65536x65536xf32>
// expected-error @+1 {{'sbp.relu' op operand #0 'tensor<65536x65536xf32>' has more than 2147483647 elements, the most a tensor may hold}}
%y = sbp.relu %x : (tensor<65536x65536xf32>) -> tensor<65536x65536xf32>

// -----

// Sizes whose product overflows int64 are caught before they are multiplied.
%x = "test.source"() : () -> tensor<4611686018427387904x4611686018427387904xf32>
// expected-error @+1 {{'sbp.relu' op operand #0 'tensor<4611686018427387904x4611686018427387904xf32>' has more than 2147483647 elements}}
%y = sbp.relu %x : (tensor<4611686018427387904x4611686018427387904xf32>) -> tensor<4611686018427387904x4611686018427387904xf32>

// -----

// Rank-0 operands where an op reads the feature dimension (SIGSEGV before).
%x = "test.source"() : () -> tensor<f32>
%w = "test.source"() : () -> tensor<4x8xf32>
// expected-error @+1 {{'sbp.linear' op input must have rank >= 1, got 'tensor<f32>'}}
%y = sbp.linear %x, %w : (tensor<f32>, tensor<4x8xf32>) -> tensor<4xf32>

// -----

%x = "test.source"() : () -> tensor<f32>
%b = "test.source"() : () -> tensor<8xf32>
// expected-error @+1 {{'sbp.bias_add' op input must have rank >= 1, got 'tensor<f32>'}}
%y = sbp.bias_add %x, %b : (tensor<f32>, tensor<8xf32>) -> tensor<f32>

// -----

%x = "test.source"() : () -> tensor<f32>
%w = "test.source"() : () -> tensor<8xf32>
// expected-error @+1 {{'sbp.layer_norm' op input must have rank >= 1, got 'tensor<f32>'}}
%y = sbp.layer_norm %x, %w, %w : (tensor<f32>, tensor<8xf32>, tensor<8xf32>) -> tensor<f32>

// -----

%dy = "test.source"() : () -> tensor<f32>
%w = "test.source"() : () -> tensor<4x8xf32>
// expected-error @+1 {{'sbp.linear_grad_input' op gradient must have rank >= 1, got 'tensor<f32>'}}
%dx = sbp.linear_grad_input %dy, %w : (tensor<f32>, tensor<4x8xf32>) -> tensor<8xf32>

// -----

%x = "test.source"() : () -> tensor<f32>
%dy = "test.source"() : () -> tensor<2x4xf32>
// expected-error @+1 {{'sbp.linear_grad_weight' op input must have rank >= 1, got 'tensor<f32>'}}
%dw = sbp.linear_grad_weight %x, %dy : (tensor<f32>, tensor<2x4xf32>) -> tensor<4x8xf32>

// -----

%x = "test.source"() : () -> tensor<2x8xf32>
%dy = "test.source"() : () -> tensor<f32>
// expected-error @+1 {{'sbp.linear_grad_weight' op gradient must have rank >= 1, got 'tensor<f32>'}}
%dw = sbp.linear_grad_weight %x, %dy : (tensor<2x8xf32>, tensor<f32>) -> tensor<4x8xf32>

// -----

%dy = "test.source"() : () -> tensor<f32>
// expected-error @+1 {{'sbp.bias_grad' op gradient must have rank >= 1, got 'tensor<f32>'}}
%db = sbp.bias_grad %dy : (tensor<f32>) -> tensor<1xf32>

// -----

%x = "test.source"() : () -> tensor<f32>
%w = "test.source"() : () -> tensor<8xf32>
// expected-error @+1 {{'sbp.layer_norm_grad' op input must have rank >= 1, got 'tensor<f32>'}}
%a, %b, %c = sbp.layer_norm_grad %x, %w, %x : (tensor<f32>, tensor<8xf32>, tensor<f32>) -> (tensor<f32>, tensor<8xf32>, tensor<8xf32>)

// -----

// layer_norm_grad: the bias gradient is [features] too (it was not checked).
%x = "test.source"() : () -> tensor<2x4x8xf32>
%w = "test.source"() : () -> tensor<8xf32>
// expected-error @+1 {{'sbp.layer_norm_grad' op bias gradient must have shape [8], got [4]}}
%a, %b, %c = sbp.layer_norm_grad %x, %w, %x : (tensor<2x4x8xf32>, tensor<8xf32>, tensor<2x4x8xf32>) -> (tensor<2x4x8xf32>, tensor<8xf32>, tensor<4xf32>)

// -----

// cross_entropy_grad reads [B, classes] logits and [B] labels.
%l = "test.source"() : () -> tensor<f32>
%t = "test.source"() : () -> tensor<2xi32>
// expected-error @+1 {{'sbp.cross_entropy_grad' op logits must be [B, classes]}}
%y = sbp.cross_entropy_grad %l, %t : (tensor<f32>, tensor<2xi32>) -> tensor<f32>

// -----

%l = "test.source"() : () -> tensor<2x10xf32>
%t = "test.source"() : () -> tensor<3xi32>
// expected-error @+1 {{'sbp.cross_entropy_grad' op labels must have shape [2], got [3]}}
%y = sbp.cross_entropy_grad %l, %t : (tensor<2x10xf32>, tensor<3xi32>) -> tensor<2x10xf32>

// -----

// grad_gate: a token tensor and [K] keep indices (it had no verifier).
%x = "test.source"() : () -> tensor<2x4x8xf32>
%k = "test.source"() : () -> tensor<i32>
// expected-error @+1 {{'sbp.grad_gate' op keep indices must be [K]}}
%y = sbp.grad_gate %x, %k : (tensor<2x4x8xf32>, tensor<i32>) -> tensor<2x4x8xf32>

// -----

%x = "test.source"() : () -> tensor<2x4x8xf32>
%k = "test.source"() : () -> tensor<2xi32>
// expected-error @+1 {{'sbp.grad_gate' op result must have shape [2, 4, 8], got [2, 4, 4]}}
%y = sbp.grad_gate %x, %k : (tensor<2x4x8xf32>, tensor<2xi32>) -> tensor<2x4x4xf32>

// -----

// A GEMM size over 2^31 - 1 (its products overflowed int64 before).
%a = "test.source"() : () -> tensor<2x2xf32>
// expected-error @+1 {{'sbpk.gemm' op sizes must be at most 2147483647}}
%c = sbpk.gemm %a, %a {m = 4611686018427387904 : i64, n = 2 : i64, k = 4611686018427387904 : i64, trans_a = false, trans_b = false, alpha = 1.0 : f64, beta = 0.0 : f64} : (tensor<2x2xf32>, tensor<2x2xf32>) -> tensor<2x2xf32>

// -----

// Mask grids: 65536 x 65536 positions (its capacity took 40 s to compute).
sbp.model @huge_grid attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  // expected-error @+1 {{'sbp.mask_group' op prefix + H * W must be at most 2147483647 tokens, got prefix 0 and grid [65536, 65536]}}
  sbp.mask_group @m keep 0.5 grid [65536, 65536]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
}

// -----

// 2^62 x 2^62: H * W overflows int64 (it looped forever).
sbp.model @overflow_grid attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  // expected-error @+1 {{'sbp.mask_group' op prefix + H * W must be at most 2147483647 tokens, got prefix 0 and grid [4611686018427387904, 4611686018427387904]}}
  sbp.mask_group @m keep 0.5 grid [4611686018427387904, 4611686018427387904]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
}

// -----

// The prefix counts towards the tokens too.
sbp.model @huge_prefix attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  // expected-error @+1 {{'sbp.mask_group' op prefix + H * W must be at most 2147483647 tokens, got prefix 9223372036854775807 and grid [2, 2]}}
  sbp.mask_group @m keep 0.5 grid [2, 2] prefix 9223372036854775807
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
}

// -----

// vit_block: a hidden width whose [B, T, hidden] activation cannot exist.
sbp.model @huge_hidden attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %logits = sbp.param "logits" : tensor<2x10xf32> init<zeros>
  %x = sbp.param "x" : tensor<2x5x8xf32> init<zeros>
  // expected-error @+1 {{'sbp.vit_block' op hidden 1099511627776 and width 8 give [B, T, hidden] or [B, T, 3 * D] activations of more than 2147483647 elements}}
  %y = sbp.vit_block "blocks.0" %x heads 2 hidden 1099511627776 : tensor<2x5x8xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}
