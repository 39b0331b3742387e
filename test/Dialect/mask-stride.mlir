// RUN: sbp-opt %s -split-input-file -verify-diagnostics | FileCheck %s

// Grid strides as the reference implementation (mask_ops.py, vit_sbp.py)
// computes them: numpy's round, half to even, of 1/r (r <= 0.5) or 1/(1 - r).
// At r = 0.4 and r = 0.6 the quotient is 2.5, so the stride is 2 and both keep
// half of the grid: a group's capacity (prefix + the most positions any start
// keeps) is 1 + 98 on 14x14 and 1 + 25 on 7x7 (diagonals of 4 cells: 25 or 24).
// Before, 0.6 as a float gave 1/(1 - r) just above 2.5 and a stride of 3.

// CHECK-LABEL: sbp.model @half_even
// CHECK: sbp.keep_indices @k04 : tensor<99xi32>
// CHECK: sbp.keep_indices @k06 : tensor<99xi32>
// CHECK: sbp.keep_indices @s04 : tensor<26xi32>
// CHECK: sbp.keep_indices @s06 : tensor<26xi32>
sbp.model @half_even attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @k04 keep 0.4 grid [14, 14] prefix 1
  sbp.mask_group @k06 keep 0.6 grid [14, 14] prefix 1
  sbp.mask_group @s04 keep 0.4 grid [7, 7] prefix 1
  sbp.mask_group @s06 keep 0.6 grid [7, 7] prefix 1
  %a = sbp.keep_indices @k04 : tensor<99xi32>
  %b = sbp.keep_indices @k06 : tensor<99xi32>
  %c = sbp.keep_indices @s04 : tensor<26xi32>
  %d = sbp.keep_indices @s06 : tensor<26xi32>
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// The stride-3 capacity of 0.6 (1 + 196 - 65) is refused: the check can fail.
sbp.model @not_stride_three attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @k06 keep 0.6 grid [14, 14] prefix 1
  // expected-error @+1 {{keep indices must have shape [99], got [132]}}
  %b = sbp.keep_indices @k06 : tensor<132xi32>
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// Other ties: 1/0.08 = 12.5 -> 12 (half to even). 1/(1 - 0.92) is
// 12.500000000000005 in double, as in the reference's float64 arithmetic: 13.
// 14x14 keeps at most 18 cells at stride 12 and drops at least 15 at stride 13.

// CHECK-LABEL: sbp.model @other_ties
// CHECK: sbp.keep_indices @k008 : tensor<19xi32>
// CHECK: sbp.keep_indices @k092 : tensor<182xi32>
sbp.model @other_ties attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @k008 keep 0.08 grid [14, 14] prefix 1
  sbp.mask_group @k092 keep 0.92 grid [14, 14] prefix 1
  %a = sbp.keep_indices @k008 : tensor<19xi32>
  %b = sbp.keep_indices @k092 : tensor<182xi32>
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// `shared` belongs to heads groups: a token group is one draw anyway.
sbp.model @shared_tokens attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  // expected-error @+1 {{`shared` applies to heads groups (a token group is always one draw shared by its regions), got a grid group}}
  sbp.mask_group @m keep 0.5 grid [4, 4] shared
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// CHECK-LABEL: sbp.model @shared_heads
// CHECK: sbp.mask_group @h keep 5.000000e-01 heads [1, 3] shared
sbp.model @shared_heads attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @h keep 0.5 heads [1, 3] shared
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}
