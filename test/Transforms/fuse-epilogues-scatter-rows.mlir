// RUN: sbp-opt %s -split-input-file -sbp-fuse-epilogues | FileCheck %s --enable-var-scope

// sbp-fuse-epilogues folds SBP scatters into their readers. The backward of
// a ConvNeXt block under SBP: the MLP branch's input gradient exists on the
// kept rows (2 of the 4x4 = 16 positions here), and scatter_rows writes it out in full for the depth-wise
// conv's two gradient kernels. When those are the scatter's only readers,
// they read the kept rows through the keep indices instead (`_rows`, with the
// scatter's `kept`), and the scatter goes.

// CHECK-LABEL: sbpk.graph @fold
// CHECK-NOT:     "scatter_rows"
// CHECK:         %[[DX:.*]] = sbpk.kernel "dwconv_grad_input_rows"(%[[DK:.*]], %[[K:.*]], %{{.*}}) {batch = 2 : i64, bwd, channels = 8 : i64, height = 4 : i64, kept = 2 : i64, kernel = 3 : i64, region = "b.mlp", width = 4 : i64} : (tensor<2x2x8xf32>, tensor<2xi32>, tensor<8x1x3x3xf32>) -> tensor<2x16x8xf32>
// CHECK-NEXT:    %[[DW:.*]]:2 = sbpk.kernel "dwconv_grad_weight_rows"(%[[DK]], %[[K]], %{{.*}}) {batch = 2 : i64, bwd, channels = 8 : i64, height = 4 : i64, kept = 2 : i64, kernel = 3 : i64, width = 4 : i64} : (tensor<2x2x8xf32>, tensor<2xi32>, tensor<2x16x8xf32>) -> (tensor<8x1x3x3xf32>, tensor<8xf32>)
// CHECK-NOT:     "scatter_rows"
// CHECK:         sbpk.grad_out "w" at 0, %[[DW]]#0
// CHECK:         sbpk.return %[[DX]]
sbpk.graph @fold {
  %k = sbpk.keep_indices @m group 0 : tensor<2xi32>
  %x = sbpk.input "images" : tensor<2x16x8xf32>
  %w = sbpk.param "w" at 0 : tensor<8x1x3x3xf32>
  %dk = sbpk.input "labels" : tensor<2x2x8xf32>
  %d = sbpk.kernel "scatter_rows"(%dk, %k) {batch = 2 : i64, bwd, kept = 2 : i64, n = 8 : i64, tokens = 16 : i64} : (tensor<2x2x8xf32>, tensor<2xi32>) -> tensor<2x16x8xf32>
  %dx = sbpk.kernel "dwconv_grad_input"(%d, %w) {batch = 2 : i64, bwd, channels = 8 : i64, height = 4 : i64, kernel = 3 : i64, region = "b.mlp", width = 4 : i64} : (tensor<2x16x8xf32>, tensor<8x1x3x3xf32>) -> tensor<2x16x8xf32>
  %dw:2 = sbpk.kernel "dwconv_grad_weight"(%d, %x) {batch = 2 : i64, bwd, channels = 8 : i64, height = 4 : i64, kernel = 3 : i64, width = 4 : i64} : (tensor<2x16x8xf32>, tensor<2x16x8xf32>) -> (tensor<8x1x3x3xf32>, tensor<8xf32>)
  sbpk.grad_out "w" at 0, %dw#0 : tensor<8x1x3x3xf32>
  sbpk.grad_out "b" at 72, %dw#1 : tensor<8xf32>
  sbpk.return %dx : tensor<2x16x8xf32>
}

// -----

// The full gradient has another reader (here the graph's result): it must be
// written anyway, so the scatter stays and the convolution reads it.
// CHECK-LABEL: sbpk.graph @other_reader
// CHECK:         %[[D:.*]] = sbpk.kernel "scatter_rows"
// CHECK:         sbpk.kernel "dwconv_grad_input"(%[[D]],
// CHECK:         sbpk.kernel "dwconv_grad_weight"(%[[D]],
// CHECK-NOT:     _rows"
sbpk.graph @other_reader {
  %k = sbpk.keep_indices @m group 0 : tensor<2xi32>
  %x = sbpk.input "images" : tensor<2x16x8xf32>
  %w = sbpk.param "w" at 0 : tensor<8x1x3x3xf32>
  %dk = sbpk.input "labels" : tensor<2x2x8xf32>
  %d = sbpk.kernel "scatter_rows"(%dk, %k) {batch = 2 : i64, bwd, kept = 2 : i64, n = 8 : i64, tokens = 16 : i64} : (tensor<2x2x8xf32>, tensor<2xi32>) -> tensor<2x16x8xf32>
  %dx = sbpk.kernel "dwconv_grad_input"(%d, %w) {batch = 2 : i64, bwd, channels = 8 : i64, height = 4 : i64, kernel = 3 : i64, width = 4 : i64} : (tensor<2x16x8xf32>, tensor<8x1x3x3xf32>) -> tensor<2x16x8xf32>
  %dw:2 = sbpk.kernel "dwconv_grad_weight"(%d, %x) {batch = 2 : i64, bwd, channels = 8 : i64, height = 4 : i64, kernel = 3 : i64, width = 4 : i64} : (tensor<2x16x8xf32>, tensor<2x16x8xf32>) -> (tensor<8x1x3x3xf32>, tensor<8xf32>)
  sbpk.grad_out "w" at 0, %dw#0 : tensor<8x1x3x3xf32>
  sbpk.return %dx, %d : tensor<2x16x8xf32>, tensor<2x16x8xf32>
}

// -----

// The scattered tensor is the convolution's x, not its dy: dwconv_grad_weight
// correlates dy with x, and x's zeros are not skippable. No fold.
// CHECK-LABEL: sbpk.graph @scatter_is_x
// CHECK:         %[[D:.*]] = sbpk.kernel "scatter_rows"
// CHECK:         sbpk.kernel "dwconv_grad_weight"(%{{.*}}, %[[D]])
sbpk.graph @scatter_is_x {
  %k = sbpk.keep_indices @m group 0 : tensor<2xi32>
  %dy = sbpk.input "images" : tensor<2x16x8xf32>
  %dk = sbpk.input "labels" : tensor<2x2x8xf32>
  %d = sbpk.kernel "scatter_rows"(%dk, %k) {batch = 2 : i64, bwd, kept = 2 : i64, n = 8 : i64, tokens = 16 : i64} : (tensor<2x2x8xf32>, tensor<2xi32>) -> tensor<2x16x8xf32>
  %dw:2 = sbpk.kernel "dwconv_grad_weight"(%dy, %d) {batch = 2 : i64, bwd, channels = 8 : i64, height = 4 : i64, kernel = 3 : i64, width = 4 : i64} : (tensor<2x16x8xf32>, tensor<2x16x8xf32>) -> (tensor<8x1x3x3xf32>, tensor<8xf32>)
  sbpk.grad_out "w" at 0, %dw#0 : tensor<8x1x3x3xf32>
  sbpk.return
}

// -----

// The scatter's rows are not the convolution's positions (16 tokens of 8
// features read as a 2x2 grid of 32 channels): no fold.
// CHECK-LABEL: sbpk.graph @other_shape
// CHECK:         %[[D:.*]] = sbpk.kernel "scatter_rows"
// CHECK:         sbpk.kernel "dwconv_grad_input"(%[[D]],
sbpk.graph @other_shape {
  %k = sbpk.keep_indices @m group 0 : tensor<2xi32>
  %w = sbpk.param "w" at 0 : tensor<32x1x3x3xf32>
  %dk = sbpk.input "labels" : tensor<2x2x8xf32>
  %d = sbpk.kernel "scatter_rows"(%dk, %k) {batch = 2 : i64, bwd, kept = 2 : i64, n = 8 : i64, tokens = 16 : i64} : (tensor<2x2x8xf32>, tensor<2xi32>) -> tensor<2x16x8xf32>
  %dx = sbpk.kernel "dwconv_grad_input"(%d, %w) {batch = 2 : i64, bwd, channels = 32 : i64, height = 2 : i64, kernel = 3 : i64, width = 2 : i64} : (tensor<2x16x8xf32>, tensor<32x1x3x3xf32>) -> tensor<2x16x8xf32>
  sbpk.return %dx : tensor<2x16x8xf32>
}

// -----

// A downsampling layer under SBP: its reduction's input gradient exists on the
// kept rows of the 2x2 grid of cells (1 of 4 here), and the space-to-depth
// gradient reads them through the keep indices (the scatter goes).
// CHECK-LABEL: sbpk.graph @downsample
// CHECK-NOT:     "scatter_rows"
// CHECK:         %[[DX:.*]] = sbpk.kernel "space_to_depth_grad_rows"(%{{.*}}, %{{.*}}) {batch = 2 : i64, block = 2 : i64, bwd, channels = 8 : i64, height = 4 : i64, kept = 1 : i64, width = 4 : i64} : (tensor<2x1x32xf32>, tensor<1xi32>) -> tensor<2x16x8xf32>
// CHECK:         sbpk.return %[[DX]]
sbpk.graph @downsample {
  %k = sbpk.keep_indices @m group 0 : tensor<1xi32>
  %dk = sbpk.input "labels" : tensor<2x1x32xf32>
  %d = sbpk.kernel "scatter_rows"(%dk, %k) {batch = 2 : i64, bwd, kept = 1 : i64, n = 32 : i64, tokens = 4 : i64} : (tensor<2x1x32xf32>, tensor<1xi32>) -> tensor<2x4x32xf32>
  %dx = sbpk.kernel "space_to_depth_grad"(%d) {batch = 2 : i64, block = 2 : i64, bwd, channels = 8 : i64, height = 4 : i64, width = 4 : i64} : (tensor<2x4x32xf32>) -> tensor<2x16x8xf32>
  sbpk.return %dx : tensor<2x16x8xf32>
}

// -----

// The cells are not the scattered rows (4 tokens of 32 features read as 2x2
// cells of a 4x8 grid): no fold.
// CHECK-LABEL: sbpk.graph @downsample_other_grid
// CHECK:         %[[D:.*]] = sbpk.kernel "scatter_rows"
// CHECK:         sbpk.kernel "space_to_depth_grad"(%[[D]])
sbpk.graph @downsample_other_grid {
  %k = sbpk.keep_indices @m group 0 : tensor<1xi32>
  %dk = sbpk.input "labels" : tensor<2x1x32xf32>
  %d = sbpk.kernel "scatter_rows"(%dk, %k) {batch = 2 : i64, bwd, kept = 1 : i64, n = 32 : i64, tokens = 4 : i64} : (tensor<2x1x32xf32>, tensor<1xi32>) -> tensor<2x4x32xf32>
  %dx = sbpk.kernel "space_to_depth_grad"(%d) {batch = 2 : i64, block = 2 : i64, bwd, channels = 4 : i64, height = 4 : i64, width = 8 : i64} : (tensor<2x4x32xf32>) -> tensor<2x32x4xf32>
  sbpk.return %dx : tensor<2x32x4xf32>
}
