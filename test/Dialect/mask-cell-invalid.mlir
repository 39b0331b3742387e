// RUN: sbp-opt %s -split-input-file -verify-diagnostics
//
// The verifier's checks of a mask group's `cell` N (SbpOps.cpp,
// MaskGroupOp::verifyCell): N >= 1, N divides the grid, no heads group, no
// prefix; the keep ratio's checks apply on the drawn grid.

// Cell 0.
sbp.model @cell_zero attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  // expected-error @+1 {{'sbp.mask_group' op cell must be >= 1, got 0}}
  sbp.mask_group @m keep 0.5 grid [4, 4] cell 0
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

// A negative cell.
sbp.model @cell_negative attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  // expected-error @+1 {{'sbp.mask_group' op cell must be >= 1, got -2}}
  sbp.mask_group @m keep 0.5 grid [4, 4] cell -2
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

// A cell that does not divide the grid (the width).
sbp.model @cell_not_dividing attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  // expected-error @+1 {{'sbp.mask_group' op cell 4 must divide the grid [8, 6]}}
  sbp.mask_group @m keep 0.5 grid [8, 6] cell 4
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

// A heads group with a cell.
sbp.model @cell_heads attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  // expected-error @+1 {{'sbp.mask_group' op a heads mask has no cell: its positions are attention heads, not a token grid}}
  sbp.mask_group @h keep 0.5 heads [1, 4] cell 2
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

// A derived group with a prefix (a class token has no place on the drawn grid).
sbp.model @cell_prefix attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  // expected-error @+1 {{'sbp.mask_group' op a derived group (cell 2) has no prefix: prefix tokens have no position on the drawn grid to repeat, got prefix 1}}
  sbp.mask_group @m keep 0.5 grid [4, 4] prefix 1 cell 2
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

// A grid stride that the 4x4 grid takes but its 2x2 drawn grid does not:
// stride 4 against the drawn grid's 3 diagonals.
sbp.model @cell_stride attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  // expected-error @+1 {{'sbp.mask_group' op keep ratio 2.500000e-01 gives a grid stride of 4, larger than the [2, 2] drawn grid's 3 diagonals: some steps would keep no token}}
  sbp.mask_group @m keep 0.25 grid [4, 4] cell 2
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}
