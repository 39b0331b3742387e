// RUN: sbp-opt %s -sbp-autodiff | FileCheck %s --check-prefix=GRAD
// RUN: sbp-opt %s -sbp-autodiff -sbp-lower-to-kernels | FileCheck %s

// The ConvNeXt ops' gradient rules and kernels: dwconv saves its input x
// (dwconv_grad_weight correlates dy with it; dwconv_grad_input needs only the
// weight), layer_scale saves x, space_to_depth saves nothing (its gradient is
// the inverse permutation). Each lowers to its kernel-table row with the
// image sizes (the input grid for space_to_depth and its gradient).

sbp.model @convnext attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "stem.0.weight" : tensor<8x3x4x4xf32> init<trunc_normal, 0.02>
  %dww = sbp.param "conv_dw.weight" : tensor<8x1x3x3xf32> init<trunc_normal, 0.02>
  %dwb = sbp.param "conv_dw.bias" : tensor<8xf32> init<zeros>
  %g = sbp.param "gamma" : tensor<8xf32> init<constant, 1.0e-6>
  %hw = sbp.param "head.fc.weight" : tensor<10x32xf32> init<trunc_normal, 0.02>
  %tok = sbp.patchify %images patch 4 : tensor<2x3x16x16xf32> -> tensor<2x16x48xf32>
  %x0 = sbp.linear %tok, %w : (tensor<2x16x48xf32>, tensor<8x3x4x4xf32>) -> tensor<2x16x8xf32>
  %x1 = sbp.dwconv %x0, %dww, %dwb grid [4, 4] : (tensor<2x16x8xf32>, tensor<8x1x3x3xf32>, tensor<8xf32>) -> tensor<2x16x8xf32>
  %x2 = sbp.layer_scale %x1, %g : (tensor<2x16x8xf32>, tensor<8xf32>) -> tensor<2x16x8xf32>
  %x3 = sbp.space_to_depth %x2 grid [4, 4] block 2 : tensor<2x16x8xf32> -> tensor<2x4x32xf32>
  %pool = sbp.mean_tokens %x3 : (tensor<2x4x32xf32>) -> tensor<2x32xf32>
  %logits = sbp.linear %pool, %hw : (tensor<2x32xf32>, tensor<10x32xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// GRAD:      %[[X0:.*]] = sbp.linear
// GRAD-NEXT: %[[X1:.*]] = sbp.dwconv %[[X0]], %[[DWW:.*]], %{{.*}} grid [4, 4]
// GRAD-NEXT: %[[X2:.*]] = sbp.layer_scale %[[X1]], %[[G:.*]] :
// GRAD-NEXT: sbp.space_to_depth %[[X2]] grid [4, 4] block 2
// GRAD:      %[[D2:.*]] = sbp.space_to_depth_grad %{{.*}} grid [4, 4] block 2 {sbp.bwd} : tensor<2x4x32xf32> -> tensor<2x16x8xf32>
// GRAD-NEXT: %[[D1:.*]], %[[DG:.*]] = sbp.layer_scale_grad %[[D2]], %[[X1]], %[[G]] {sbp.bwd}
// GRAD-NEXT: sbp.dwconv_grad_input %[[D1]], %[[DWW]] grid [4, 4] {sbp.bwd} : (tensor<2x16x8xf32>, tensor<8x1x3x3xf32>) -> tensor<2x16x8xf32>
// GRAD-NEXT: %[[DW:.*]], %[[DB:.*]] = sbp.dwconv_grad_weight %[[D1]], %[[X0]] grid [4, 4] {sbp.bwd} : (tensor<2x16x8xf32>, tensor<2x16x8xf32>) -> (tensor<8x1x3x3xf32>, tensor<8xf32>)
// GRAD:      sbp.param_grad "conv_dw.weight", %[[DW]]
// GRAD-NEXT: sbp.param_grad "conv_dw.bias", %[[DB]]
// GRAD-NEXT: sbp.param_grad "gamma", %[[DG]]

// CHECK-LABEL: sbpk.graph @train
// CHECK:      %[[K1:.*]] = sbpk.kernel "dwconv"(%{{.*}}) {batch = 2 : i64, channels = 8 : i64, height = 4 : i64, kernel = 3 : i64, width = 4 : i64}
// CHECK-NEXT: %[[K2:.*]] = sbpk.kernel "layer_scale"(%[[K1]], %{{.*}}) {n = 8 : i64, rows = 32 : i64}
// CHECK-NEXT: sbpk.kernel "space_to_depth"(%[[K2]]) {batch = 2 : i64, block = 2 : i64, channels = 8 : i64, height = 4 : i64, width = 4 : i64} : (tensor<2x16x8xf32>) -> tensor<2x4x32xf32>
// CHECK:      %[[B2:.*]] = sbpk.kernel "space_to_depth_grad"(%{{.*}}) {batch = 2 : i64, block = 2 : i64, bwd, channels = 8 : i64, height = 4 : i64, width = 4 : i64} : (tensor<2x4x32xf32>) -> tensor<2x16x8xf32>
// CHECK-NEXT: %[[B1:.*]]:2 = sbpk.kernel "layer_scale_grad"(%[[B2]], %[[K1]], %{{.*}}) {bwd, n = 8 : i64, rows = 32 : i64}
// CHECK-NEXT: sbpk.kernel "dwconv_grad_input"(%[[B1]]#0, %{{.*}}) {batch = 2 : i64, bwd, channels = 8 : i64, height = 4 : i64, kernel = 3 : i64, width = 4 : i64}
// CHECK-NEXT: sbpk.kernel "dwconv_grad_weight"(%[[B1]]#0, %{{.*}}) {batch = 2 : i64, bwd, channels = 8 : i64, height = 4 : i64, kernel = 3 : i64, width = 4 : i64} : (tensor<2x16x8xf32>, tensor<2x16x8xf32>) -> (tensor<8x1x3x3xf32>, tensor<8xf32>)
// CHECK-LABEL: sbpk.graph @eval
// CHECK:      sbpk.kernel "dwconv"
// CHECK-NEXT: sbpk.kernel "layer_scale"
// CHECK-NEXT: sbpk.kernel "space_to_depth"
// CHECK-NOT:  _grad
