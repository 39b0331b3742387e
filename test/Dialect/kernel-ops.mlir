// RUN: sbp-opt %s -split-input-file | sbp-opt -split-input-file | FileCheck %s
// RUN: sbp-opt %s -split-input-file -mlir-print-op-generic | sbp-opt -split-input-file | FileCheck %s

// Round trip of the sbpk kernel-graph ops.

// CHECK-LABEL: sbpk.graph @train attributes {arena_bytes = 4096 : i64} {
// CHECK-NEXT:    %[[K:.*]] = sbpk.keep_indices @m group 0 : tensor<2xi32>
// CHECK-NEXT:    %[[IMG:.*]] = sbpk.input "images" : tensor<2x1x8x8xf32>
// CHECK-NEXT:    %[[LBL:.*]] = sbpk.input "labels" : tensor<2xi32>
// CHECK-NEXT:    %[[W:.*]] = sbpk.param "w" at 0 : tensor<8x16xf32>
// CHECK-NEXT:    %[[B:.*]] = sbpk.param "b" at 128 : tensor<8xf32>
// CHECK-NEXT:    %[[TOK:.*]] = sbpk.kernel "patchify"(%[[IMG]]) {arena_offsets = array<i64: 0>, batch = 2 : i64, channels = 1 : i64, height = 8 : i64, patch = 4 : i64, width = 8 : i64} : (tensor<2x1x8x8xf32>) -> tensor<2x4x16xf32>
// CHECK-NEXT:    %[[Y:.*]] = sbpk.gemm %[[TOK]], %[[W]] {alpha = 1.000000e+00 : f64, beta = 0.000000e+00 : f64, k = 16 : i64, m = 8 : i64, n = 8 : i64, trans_a = false, trans_b = true} : (tensor<2x4x16xf32>, tensor<8x16xf32>) -> tensor<2x4x8xf32>
// CHECK-NEXT:    %[[ACC:.*]] = sbpk.gemm %[[TOK]], %[[W]], %[[Y]] {alpha = 5.000000e-01 : f64, beta = 1.000000e+00 : f64, bwd, k = 16 : i64, m = 8 : i64, n = 8 : i64, region = "r", trans_a = false, trans_b = true} : (tensor<2x4x16xf32>, tensor<8x16xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
// CHECK-NEXT:    %[[G:.*]] = sbpk.kernel "gather_rows"(%[[ACC]], %[[K]]) {batch = 2 : i64, kept = 2 : i64, n = 8 : i64, tokens = 4 : i64} : (tensor<2x4x8xf32>, tensor<2xi32>) -> tensor<2x2x8xf32>
// CHECK-NEXT:    %[[LN:[0-9]+]]:3 = sbpk.kernel "layer_norm_grad"(%[[G]], %[[B]], %[[G]]) {arena_offsets = array<i64: 256, -1, -1>, eps = 1.000000e-05 : f64, n = 8 : i64, rows = 4 : i64} : (tensor<2x2x8xf32>, tensor<8xf32>, tensor<2x2x8xf32>) -> (tensor<2x2x8xf32>, tensor<8xf32>, tensor<8xf32>)
// CHECK-NEXT:    %[[F:.*]] = sbpk.kernel "fill"() {n = 1 : i64, value = 0.000000e+00 : f64} : () -> tensor<f32>
// CHECK-NEXT:    sbpk.grad_out "b" at 128, %[[LN]]#1 : tensor<8xf32>
// CHECK-NEXT:    sbpk.return %[[F]] : tensor<f32>
// CHECK-NEXT:  }
sbpk.graph @train attributes {arena_bytes = 4096 : i64} {
  %keep = sbpk.keep_indices @m group 0 : tensor<2xi32>
  %images = sbpk.input "images" : tensor<2x1x8x8xf32>
  %labels = sbpk.input "labels" : tensor<2xi32>
  %w = sbpk.param "w" at 0 : tensor<8x16xf32>
  %b = sbpk.param "b" at 128 : tensor<8xf32>
  %tok = sbpk.kernel "patchify"(%images) {arena_offsets = array<i64: 0>, batch = 2 : i64, channels = 1 : i64, height = 8 : i64, width = 8 : i64, patch = 4 : i64} : (tensor<2x1x8x8xf32>) -> tensor<2x4x16xf32>
  %y = sbpk.gemm %tok, %w {m = 8 : i64, n = 8 : i64, k = 16 : i64, trans_a = false, trans_b = true, alpha = 1.0 : f64, beta = 0.0 : f64} : (tensor<2x4x16xf32>, tensor<8x16xf32>) -> tensor<2x4x8xf32>
  %acc = sbpk.gemm %tok, %w, %y {m = 8 : i64, n = 8 : i64, k = 16 : i64, trans_a = false, trans_b = true, alpha = 0.5 : f64, beta = 1.0 : f64, bwd, region = "r"} : (tensor<2x4x16xf32>, tensor<8x16xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %g = sbpk.kernel "gather_rows"(%acc, %keep) {batch = 2 : i64, tokens = 4 : i64, kept = 2 : i64, n = 8 : i64} : (tensor<2x4x8xf32>, tensor<2xi32>) -> tensor<2x2x8xf32>
  %ln:3 = sbpk.kernel "layer_norm_grad"(%g, %b, %g) {arena_offsets = array<i64: 256, -1, -1>, rows = 4 : i64, n = 8 : i64, eps = 1.0e-5 : f64} : (tensor<2x2x8xf32>, tensor<8xf32>, tensor<2x2x8xf32>) -> (tensor<2x2x8xf32>, tensor<8xf32>, tensor<8xf32>)
  %f = sbpk.kernel "fill"() {n = 1 : i64, value = 0.0 : f64} : () -> tensor<f32>
  sbpk.grad_out "b" at 128, %ln#1 : tensor<8xf32>
  sbpk.return %f : tensor<f32>
}

// -----

// A graph without arena size; an empty sbpk.return is implicit (elided when
// printed).

// CHECK-LABEL: sbpk.graph @eval {
// CHECK-NEXT:    sbpk.input "labels" : tensor<2xi32>
// CHECK-NEXT:  }
sbpk.graph @eval {
  %labels = sbpk.input "labels" : tensor<2xi32>
  sbpk.return
}
