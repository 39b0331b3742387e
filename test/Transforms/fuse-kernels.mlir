// RUN: sbp-opt %s -split-input-file -sbp-fuse-kernels | FileCheck %s --enable-var-scope

// What joins a fusion group and what does not. Hand-written kernel graphs,
// each the shape that sbp-lower-to-kernels / sbp-assign-precision produce.

// A LayerNorm backward: the recompute of the same rows (same x, gamma, eps),
// the gradient, the residual add of dx and the bf16 copy of the sum form one
// rowwise group. Its outputs are what is read outside: the recomputed rows
// (for the weight-gradient GEMM), the sum, its copy, dgamma and dbeta. The
// column sums get arena scratch for their per-block partials; as they only
// become parameter gradients, they may be finished after the backward.
// CHECK-LABEL: sbpk.graph @rowwise
// CHECK:         %[[F:.*]]:5 = sbpk.fused "fused_layer_norm_layer_norm_grad_add_cast" "rowwise"(%[[X:.*]], %[[G:.*]], %[[B:.*]], %[[DY:.*]], %[[R:.*]]) {bwd, chunks = 2 : i64, deferred_sums, scratch_bytes = 512 : i64}
// CHECK-NEXT:    ^bb0(
// CHECK:           sbpk.kernel "layer_norm"
// CHECK:           sbpk.kernel "layer_norm_grad"
// CHECK:           sbpk.kernel "add"
// CHECK:           sbpk.kernel "cast"
// CHECK:           sbpk.yield
// CHECK-NOT:     sbpk.kernel "layer_norm
// CHECK:         sbpk.gemm %{{.*}}, %[[F]]#0
// CHECK:         sbpk.grad_out "g" at 0, %[[F]]#1
// CHECK:         sbpk.grad_out "b" at 16, %[[F]]#2
// CHECK:         sbpk.return %[[F]]#3, %[[F]]#4
sbpk.graph @rowwise {
  %x = sbpk.input "images" : tensor<2x64x16xf32>
  %g = sbpk.param "g" at 0 : tensor<16xf32>
  %b = sbpk.param "b" at 16 : tensor<16xf32>
  %dy = sbpk.input "labels" : tensor<2x64x16xbf16>
  %res = sbpk.input "images" : tensor<2x64x16xf32>
  %dyb = sbpk.input "labels" : tensor<2x64x4xbf16>
  %y = sbpk.kernel "layer_norm"(%x, %g, %b) {bwd, eps = 1.0e-6 : f64, n = 16 : i64, rows = 128 : i64} : (tensor<2x64x16xf32>, tensor<16xf32>, tensor<16xf32>) -> tensor<2x64x16xbf16>
  %dw = sbpk.gemm %dyb, %y {alpha = 1.0 : f64, beta = 0.0 : f64, bwd, k = 128 : i64, m = 4 : i64, n = 16 : i64, trans_a = true, trans_b = false} : (tensor<2x64x4xbf16>, tensor<2x64x16xbf16>) -> tensor<4x16xf32>
  %d:3 = sbpk.kernel "layer_norm_grad"(%x, %g, %dy) {bwd, eps = 1.0e-6 : f64, n = 16 : i64, rows = 128 : i64} : (tensor<2x64x16xf32>, tensor<16xf32>, tensor<2x64x16xbf16>) -> (tensor<2x64x16xf32>, tensor<16xf32>, tensor<16xf32>)
  %s = sbpk.kernel "add"(%res, %d#0) {bwd, n = 2048 : i64} : (tensor<2x64x16xf32>, tensor<2x64x16xf32>) -> tensor<2x64x16xf32>
  %c = sbpk.kernel "cast"(%s) {bwd, n = 2048 : i64} : (tensor<2x64x16xf32>) -> tensor<2x64x16xbf16>
  sbpk.grad_out "g" at 0, %d#1 : tensor<16xf32>
  sbpk.grad_out "b" at 16, %d#2 : tensor<16xf32>
  sbpk.return %s, %c, %dw : tensor<2x64x16xf32>, tensor<2x64x16xbf16>, tensor<4x16xf32>
}

// -----

// A recompute with another gamma normalises other rows: not a sibling.
// Its column sums are returned (read inside the step): not deferred.
// CHECK-LABEL: sbpk.graph @rowwise_other_gamma
// CHECK:         sbpk.kernel "layer_norm"(
// CHECK:         sbpk.fused "fused_layer_norm_grad_add" "rowwise"({{.*}}) {bwd, chunks = 1 : i64, scratch_bytes = 128 : i64}
sbpk.graph @rowwise_other_gamma {
  %x = sbpk.input "images" : tensor<4x8xf32>
  %g = sbpk.param "g" at 0 : tensor<8xf32>
  %g2 = sbpk.param "g2" at 8 : tensor<8xf32>
  %b = sbpk.param "b" at 16 : tensor<8xf32>
  %dy = sbpk.input "labels" : tensor<4x8xf32>
  %y = sbpk.kernel "layer_norm"(%x, %g2, %b) {bwd, eps = 1.0e-6 : f64, n = 8 : i64, rows = 4 : i64} : (tensor<4x8xf32>, tensor<8xf32>, tensor<8xf32>) -> tensor<4x8xf32>
  %d:3 = sbpk.kernel "layer_norm_grad"(%x, %g, %dy) {bwd, eps = 1.0e-6 : f64, n = 8 : i64, rows = 4 : i64} : (tensor<4x8xf32>, tensor<8xf32>, tensor<4x8xf32>) -> (tensor<4x8xf32>, tensor<8xf32>, tensor<8xf32>)
  %s = sbpk.kernel "add"(%dy, %d#0) {bwd, n = 32 : i64} : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
  sbpk.return %s, %y, %d#1, %d#2 : tensor<4x8xf32>, tensor<4x8xf32>, tensor<8xf32>, tensor<8xf32>
}

// -----

// GELU in the backward: the recompute (for the weight gradient) and the
// gradient read the same pre-activation: one elementwise group, two outputs.
// The forward GELU of the same tensor stays out: a group never mixes forward
// and backward (it would keep the recompute alive from the forward on).
// CHECK-LABEL: sbpk.graph @gelu_siblings
// CHECK:         %[[FWD:.*]] = sbpk.kernel "gelu"(%[[H:.*]]) {n = 64 : i64}
// CHECK:         %[[G:.*]]:2 = sbpk.fused "fused_gelu_gelu_grad" "elementwise"(%[[H]], %{{.*}}) {bwd}
// CHECK:           sbpk.kernel "gelu"
// CHECK:           sbpk.kernel "gelu_grad"
// CHECK:           sbpk.yield
sbpk.graph @gelu_siblings {
  %h = sbpk.input "images" : tensor<8x8xbf16>
  %dg = sbpk.input "labels" : tensor<8x8xbf16>
  %f = sbpk.kernel "gelu"(%h) {n = 64 : i64} : (tensor<8x8xbf16>) -> tensor<8x8xbf16>
  %r = sbpk.kernel "gelu"(%h) {bwd, n = 64 : i64} : (tensor<8x8xbf16>) -> tensor<8x8xbf16>
  %d = sbpk.kernel "gelu_grad"(%h, %dg) {bwd, n = 64 : i64} : (tensor<8x8xbf16>, tensor<8x8xbf16>) -> tensor<8x8xbf16>
  sbpk.return %f, %r, %d : tensor<8x8xbf16>, tensor<8x8xbf16>, tensor<8x8xbf16>
}

// -----

// A chain that passes through a GEMM is not fused: the GEMM depends on the
// first add and feeds the second, so one launch for both would be a cycle.
// A lone kernel stays a library call.
// CHECK-LABEL: sbpk.graph @cycle
// CHECK-NOT:     sbpk.fused
// CHECK:         sbpk.kernel "add"
// CHECK:         sbpk.gemm
// CHECK:         sbpk.kernel "add"
sbpk.graph @cycle {
  %a = sbpk.input "images" : tensor<4x4xf32>
  %w = sbpk.param "w" at 0 : tensor<4x4xf32>
  %s = sbpk.kernel "add"(%a, %a) {n = 16 : i64} : (tensor<4x4xf32>, tensor<4x4xf32>) -> tensor<4x4xf32>
  %m = sbpk.gemm %s, %w {alpha = 1.0 : f64, beta = 0.0 : f64, k = 4 : i64, m = 4 : i64, n = 4 : i64, trans_a = false, trans_b = true} : (tensor<4x4xf32>, tensor<4x4xf32>) -> tensor<4x4xf32>
  %t = sbpk.kernel "add"(%s, %m) {n = 16 : i64} : (tensor<4x4xf32>, tensor<4x4xf32>) -> tensor<4x4xf32>
  sbpk.return %t : tensor<4x4xf32>
}

// -----

// A bias gradient beside the weight gradient of the same rows folds into it
// (gemm_bgrad), also through the bf16 copy of dy. A GEMM that reduces over
// other rows (k != rows) does not take it.
// CHECK-LABEL: sbpk.graph @bias_grad
// CHECK:         %[[C:.*]] = sbpk.kernel "cast"
// CHECK:         %[[W:.*]]:2 = sbpk.kernel "gemm_bgrad"(%[[C]], %{{.*}}) {bwd, k = 32 : i64, m = 4 : i64, n = 6 : i64, trans_a = true, trans_b = false}
// CHECK:         sbpk.grad_out "fc.weight" at 0, %[[W]]#0
// CHECK:         sbpk.grad_out "fc.bias" at 24, %[[W]]#1
// CHECK:         sbpk.kernel "bias_grad"
// CHECK:         sbpk.gemm
sbpk.graph @bias_grad {
  %dy = sbpk.input "images" : tensor<32x4xf32>
  %x = sbpk.input "labels" : tensor<32x6xbf16>
  %dyc = sbpk.kernel "cast"(%dy) {bwd, n = 128 : i64} : (tensor<32x4xf32>) -> tensor<32x4xbf16>
  %db = sbpk.kernel "bias_grad"(%dy) {bwd, n = 4 : i64, rows = 32 : i64} : (tensor<32x4xf32>) -> tensor<4xf32>
  %dw = sbpk.gemm %dyc, %x {alpha = 1.0 : f64, beta = 0.0 : f64, bwd, k = 32 : i64, m = 4 : i64, n = 6 : i64, trans_a = true, trans_b = false} : (tensor<32x4xbf16>, tensor<32x6xbf16>) -> tensor<4x6xf32>
  sbpk.grad_out "fc.weight" at 0, %dw : tensor<4x6xf32>
  sbpk.grad_out "fc.bias" at 24, %db : tensor<4xf32>
  %dy2 = sbpk.input "images" : tensor<16x4xf32>
  %x2 = sbpk.input "labels" : tensor<4x2xf32>
  %db2 = sbpk.kernel "bias_grad"(%dy2) {bwd, n = 4 : i64, rows = 16 : i64} : (tensor<16x4xf32>) -> tensor<4xf32>
  %p = sbpk.gemm %dy2, %x2 {alpha = 1.0 : f64, beta = 0.0 : f64, bwd, k = 4 : i64, m = 16 : i64, n = 2 : i64, trans_a = false, trans_b = false} : (tensor<16x4xf32>, tensor<4x2xf32>) -> tensor<16x2xf32>
  sbpk.return %db2, %p : tensor<4xf32>, tensor<16x2xf32>
}

// -----

// The float32 -> bf16 copies of the parameters: one multi_cast launch.
// CHECK-LABEL: sbpk.graph @param_casts
// CHECK:         %[[P:.*]]:2 = sbpk.fused "fused_cast_params" "multi_cast"(%{{.*}}, %{{.*}}) : (tensor<4x4xf32>, tensor<4xf32>) -> (tensor<4x4xbf16>, tensor<4xbf16>)
// CHECK:           sbpk.yield
// CHECK-NEXT:    }
// CHECK-NOT:     sbpk.kernel "cast"
sbpk.graph @param_casts {
  %w = sbpk.param "w" at 0 : tensor<4x4xf32>
  %b = sbpk.param "b" at 16 : tensor<4xf32>
  %wc = sbpk.kernel "cast"(%w) {n = 16 : i64} : (tensor<4x4xf32>) -> tensor<4x4xbf16>
  %bc = sbpk.kernel "cast"(%b) {n = 4 : i64} : (tensor<4xf32>) -> tensor<4xbf16>
  sbpk.return %wc, %bc : tensor<4x4xbf16>, tensor<4xbf16>
}

// -----

// SBP's row maps in the backward: the branch gradient on the kept rows added
// back into the residual gradient (scatter_add_rows), the kept rows of the
// sum for the next branch down (gather_rows) and both bf16 copies form one
// elementwise group over the full rows of one index list. A gather of
// another tensor through the same index list is no sibling (every gather of
// a mask group reads it): it stays a library call, so that its input is not
// kept alive up to the group.
// CHECK-LABEL: sbpk.graph @row_maps
// CHECK:         %[[K:.*]] = sbpk.keep_indices @m group 0
// CHECK:         %[[F:.*]]:3 = sbpk.fused "fused_scatter_add_rows_gather_rows_cast" "elementwise"(%{{.*}}, %{{.*}}, %[[K]]) {bwd}
// CHECK:           sbpk.kernel "scatter_add_rows"
// CHECK:           sbpk.kernel "gather_rows"
// CHECK:           sbpk.kernel "cast"
// CHECK:           sbpk.kernel "cast"
// CHECK:           sbpk.yield
// CHECK-SAME:        tensor<2x8x4xf32>, tensor<2x3x4xbf16>, tensor<2x8x4xbf16>
// CHECK:         sbpk.kernel "gather_rows"(%{{.*}}, %[[K]]) {batch = 2 : i64, bwd
sbpk.graph @row_maps {
  %k = sbpk.keep_indices @m group 0 : tensor<3xi32>
  %full = sbpk.input "images" : tensor<2x8x4xf32>
  %kept = sbpk.input "labels" : tensor<2x3x4xf32>
  %other = sbpk.input "images" : tensor<2x8x4xf32>
  %s = sbpk.kernel "scatter_add_rows"(%full, %kept, %k) {batch = 2 : i64, bwd, kept = 3 : i64, n = 4 : i64, tokens = 8 : i64} : (tensor<2x8x4xf32>, tensor<2x3x4xf32>, tensor<3xi32>) -> tensor<2x8x4xf32>
  %g = sbpk.kernel "gather_rows"(%s, %k) {batch = 2 : i64, bwd, kept = 3 : i64, n = 4 : i64, tokens = 8 : i64} : (tensor<2x8x4xf32>, tensor<3xi32>) -> tensor<2x3x4xf32>
  %gc = sbpk.kernel "cast"(%g) {bwd, n = 24 : i64} : (tensor<2x3x4xf32>) -> tensor<2x3x4xbf16>
  %sc = sbpk.kernel "cast"(%s) {bwd, n = 64 : i64} : (tensor<2x8x4xf32>) -> tensor<2x8x4xbf16>
  %o = sbpk.kernel "gather_rows"(%other, %k) {batch = 2 : i64, bwd, kept = 3 : i64, n = 4 : i64, tokens = 8 : i64} : (tensor<2x8x4xf32>, tensor<3xi32>) -> tensor<2x3x4xf32>
  sbpk.return %s, %gc, %sc, %o : tensor<2x8x4xf32>, tensor<2x3x4xbf16>, tensor<2x8x4xbf16>, tensor<2x3x4xf32>
}

// -----

// In the forward, the GELU and the gather of the kept rows of its input (the
// pre-activation saved for the backward's recompute) read the same tensor;
// an op on the gathered rows joins as the kept domain. A gather whose index
// list keeps every token (keep 1.0: the kept and full domains have one size)
// never joins, nor does one of another index list.
// CHECK-LABEL: sbpk.graph @row_map_siblings
// CHECK:         %[[F:.*]]:3 = sbpk.fused "fused_gather_rows_gelu" "elementwise"
// CHECK:           sbpk.kernel "gather_rows"
// CHECK:           sbpk.kernel "gelu"{{.*}} -> tensor<2x8x4xbf16>
// CHECK:           sbpk.kernel "gelu"{{.*}} -> tensor<2x3x4xbf16>
// CHECK:           sbpk.yield
// CHECK-NOT:     sbpk.fused
// CHECK:         sbpk.kernel "gather_rows"(%{{.*}}, %{{.*}}) {batch = 2 : i64, kept = 8
// CHECK:         sbpk.kernel "gelu"
// CHECK:         sbpk.kernel "gather_rows"(%{{.*}}, %{{.*}}) {batch = 2 : i64, kept = 2
sbpk.graph @row_map_siblings {
  %k = sbpk.keep_indices @m group 0 : tensor<3xi32>
  %all = sbpk.keep_indices @a group 1 : tensor<8xi32>
  %two = sbpk.keep_indices @b group 2 : tensor<2xi32>
  %h = sbpk.input "images" : tensor<2x8x4xbf16>
  %h2 = sbpk.input "labels" : tensor<2x8x4xbf16>
  %h3 = sbpk.input "labels" : tensor<2x8x4xbf16>
  %g = sbpk.kernel "gather_rows"(%h, %k) {batch = 2 : i64, kept = 3 : i64, n = 4 : i64, tokens = 8 : i64} : (tensor<2x8x4xbf16>, tensor<3xi32>) -> tensor<2x3x4xbf16>
  %a = sbpk.kernel "gelu"(%h) {n = 64 : i64} : (tensor<2x8x4xbf16>) -> tensor<2x8x4xbf16>
  %g2 = sbpk.kernel "gather_rows"(%h2, %all) {batch = 2 : i64, kept = 8 : i64, n = 4 : i64, tokens = 8 : i64} : (tensor<2x8x4xbf16>, tensor<8xi32>) -> tensor<2x8x4xbf16>
  %a2 = sbpk.kernel "gelu"(%h2) {n = 64 : i64} : (tensor<2x8x4xbf16>) -> tensor<2x8x4xbf16>
  %g3 = sbpk.kernel "gather_rows"(%h3, %two) {batch = 2 : i64, kept = 2 : i64, n = 4 : i64, tokens = 8 : i64} : (tensor<2x8x4xbf16>, tensor<2xi32>) -> tensor<2x2x4xbf16>
  %a3 = sbpk.kernel "gelu"(%g) {n = 24 : i64} : (tensor<2x3x4xbf16>) -> tensor<2x3x4xbf16>
  sbpk.return %g, %a, %g2, %a2, %g3, %a3 : tensor<2x3x4xbf16>, tensor<2x8x4xbf16>, tensor<2x8x4xbf16>, tensor<2x8x4xbf16>, tensor<2x2x4xbf16>, tensor<2x3x4xbf16>
}

// -----

// A forward LayerNorm with the gather of its input's kept rows (an SBP
// branch saving them for its backward): one rowwise pass over the rows. It
// has no column sums, so no scratch; its row chunks are for the CPU loop.
// CHECK-LABEL: sbpk.graph @forward_rowwise
// CHECK:         %[[F:.*]]:2 = sbpk.fused "fused_layer_norm_gather_rows" "rowwise"({{.*}}) {chunks = 1 : i64}
// CHECK:           sbpk.kernel "layer_norm"
// CHECK:           sbpk.kernel "gather_rows"
// CHECK:           sbpk.yield
sbpk.graph @forward_rowwise {
  %k = sbpk.keep_indices @m group 0 : tensor<3xi32>
  %x = sbpk.input "images" : tensor<2x8x4xf32>
  %g = sbpk.param "g" at 0 : tensor<4xf32>
  %b = sbpk.param "b" at 4 : tensor<4xf32>
  %y = sbpk.kernel "layer_norm"(%x, %g, %b) {eps = 1.0e-6 : f64, n = 4 : i64, rows = 16 : i64} : (tensor<2x8x4xf32>, tensor<4xf32>, tensor<4xf32>) -> tensor<2x8x4xbf16>
  %s = sbpk.kernel "gather_rows"(%x, %k) {batch = 2 : i64, kept = 3 : i64, n = 4 : i64, tokens = 8 : i64} : (tensor<2x8x4xf32>, tensor<3xi32>) -> tensor<2x3x4xf32>
  sbpk.return %y, %s : tensor<2x8x4xbf16>, tensor<2x3x4xf32>
}

// -----

// Bias gradients from the group that produces dy, not the GEMM epilogue:
// the sum of the residual add is the dy of the projection before (fc2,
// attn.proj); its column sum joins the LayerNorm backward group. The bias
// gradient of the layer whose input gradient flows into the group (qkv: dy'
// -> gemm(dy', W) -> layer_norm_grad; dy' from a library kernel that no group
// reads) joins too, as 32 / 16 = 2 column slices. Scratch: 2 chunks x
// (dgamma, dbeta, the fc2 bias, 2 qkv slices) x 16 doubles; all sums are only
// parameter gradients: deferred. The weight-gradient GEMMs become plain GEMMs.
// CHECK-LABEL: sbpk.graph @bias_grad_rowwise
// CHECK:         %[[F:.*]]:6 = sbpk.fused "fused_layer_norm_layer_norm_grad_add_bias_grad_cast" "rowwise"({{.*}}) {bwd, chunks = 2 : i64, deferred_sums, scratch_bytes = 1280 : i64}
// CHECK:           sbpk.kernel "layer_norm_grad"
// CHECK:           %[[S:.*]] = sbpk.kernel "add"
// CHECK:           sbpk.kernel "bias_grad"(%[[S]]) {bwd, n = 16 : i64, rows = 128 : i64}
// CHECK:           sbpk.kernel "bias_grad"(%arg{{.*}}) {bwd, n = 32 : i64, rows = 128 : i64}
// CHECK:           sbpk.yield
// CHECK-NOT:     gemm_bgrad
// CHECK:         sbpk.gemm %[[F]]#4, %{{.*}} {{.*}}trans_a = true
// CHECK-NOT:     gemm_bgrad
// CHECK:         sbpk.grad_out "fc2.bias" at 32, %[[F]]#3
// CHECK:         sbpk.grad_out "qkv.bias" at 48, %[[F]]#5
sbpk.graph @bias_grad_rowwise {
  %x = sbpk.input "images" : tensor<2x64x16xf32>
  %g = sbpk.param "g" at 0 : tensor<16xf32>
  %b = sbpk.param "b" at 16 : tensor<16xf32>
  %dqkv = sbpk.input "labels" : tensor<2x64x32xbf16>
  %w = sbpk.input "labels" : tensor<32x16xbf16>
  %res = sbpk.input "images" : tensor<2x64x16xf32>
  %act = sbpk.input "labels" : tensor<2x64x8xbf16>
  %dy = sbpk.gemm %dqkv, %w {alpha = 1.0 : f64, beta = 0.0 : f64, bwd, k = 32 : i64, m = 128 : i64, n = 16 : i64, trans_a = false, trans_b = false} : (tensor<2x64x32xbf16>, tensor<32x16xbf16>) -> tensor<2x64x16xbf16>
  %y = sbpk.kernel "layer_norm"(%x, %g, %b) {bwd, eps = 1.0e-6 : f64, n = 16 : i64, rows = 128 : i64} : (tensor<2x64x16xf32>, tensor<16xf32>, tensor<16xf32>) -> tensor<2x64x16xbf16>
  %d:3 = sbpk.kernel "layer_norm_grad"(%x, %g, %dy) {bwd, eps = 1.0e-6 : f64, n = 16 : i64, rows = 128 : i64} : (tensor<2x64x16xf32>, tensor<16xf32>, tensor<2x64x16xbf16>) -> (tensor<2x64x16xf32>, tensor<16xf32>, tensor<16xf32>)
  %s = sbpk.kernel "add"(%res, %d#0) {bwd, n = 2048 : i64} : (tensor<2x64x16xf32>, tensor<2x64x16xf32>) -> tensor<2x64x16xf32>
  %db = sbpk.kernel "bias_grad"(%s) {bwd, n = 16 : i64, rows = 128 : i64} : (tensor<2x64x16xf32>) -> tensor<16xf32>
  %c = sbpk.kernel "cast"(%s) {bwd, n = 2048 : i64} : (tensor<2x64x16xf32>) -> tensor<2x64x16xbf16>
  %dw = sbpk.gemm %c, %act {alpha = 1.0 : f64, beta = 0.0 : f64, bwd, k = 128 : i64, m = 16 : i64, n = 8 : i64, trans_a = true, trans_b = false} : (tensor<2x64x16xbf16>, tensor<2x64x8xbf16>) -> tensor<16x8xf32>
  %dbq = sbpk.kernel "bias_grad"(%dqkv) {bwd, n = 32 : i64, rows = 128 : i64} : (tensor<2x64x32xbf16>) -> tensor<32xf32>
  sbpk.grad_out "g" at 0, %d#1 : tensor<16xf32>
  sbpk.grad_out "b" at 16, %d#2 : tensor<16xf32>
  sbpk.grad_out "fc2.bias" at 32, %db : tensor<16xf32>
  sbpk.grad_out "qkv.bias" at 48, %dbq : tensor<32xf32>
  sbpk.return %y, %dw : tensor<2x64x16xbf16>, tensor<16x8xf32>
}

// -----

// fc1's bias gradient: the column sum of the GELU gradient, in the
// elementwise group that computes it (dy in registers, never re-read). One
// chunk of 8 rows, 8 doubles of scratch; deferred (only a parameter gradient).
// CHECK-LABEL: sbpk.graph @bias_grad_elementwise
// CHECK:         %[[F:.*]]:3 = sbpk.fused "fused_gelu_gelu_grad_bias_grad" "elementwise"({{.*}}) {bwd, chunks = 1 : i64, deferred_sums, scratch_bytes = 64 : i64}
// CHECK:           %[[D:.*]] = sbpk.kernel "gelu_grad"
// CHECK:           sbpk.kernel "bias_grad"(%[[D]])
// CHECK:           sbpk.yield
// CHECK:         sbpk.gemm %[[F]]#1, %{{.*}} {{.*}}trans_a = true
// CHECK:         sbpk.grad_out "fc1.bias" at 0, %[[F]]#2
sbpk.graph @bias_grad_elementwise {
  %h = sbpk.input "images" : tensor<8x8xbf16>
  %dg = sbpk.input "labels" : tensor<8x8xbf16>
  %x = sbpk.input "labels" : tensor<8x4xbf16>
  %r = sbpk.kernel "gelu"(%h) {bwd, n = 64 : i64} : (tensor<8x8xbf16>) -> tensor<8x8xbf16>
  %d = sbpk.kernel "gelu_grad"(%h, %dg) {bwd, n = 64 : i64} : (tensor<8x8xbf16>, tensor<8x8xbf16>) -> tensor<8x8xbf16>
  %db = sbpk.kernel "bias_grad"(%d) {bwd, n = 8 : i64, rows = 8 : i64} : (tensor<8x8xbf16>) -> tensor<8xf32>
  %dw = sbpk.gemm %d, %x {alpha = 1.0 : f64, beta = 0.0 : f64, bwd, k = 8 : i64, m = 8 : i64, n = 4 : i64, trans_a = true, trans_b = false} : (tensor<8x8xbf16>, tensor<8x4xbf16>) -> tensor<8x4xf32>
  sbpk.grad_out "fc1.bias" at 0, %db : tensor<8xf32>
  sbpk.return %r, %dw : tensor<8x8xbf16>, tensor<8x4xf32>
}

// -----

// Few wide rows (ConvNeXt-T's last stage: 6272 rows of 3072 columns) are split
// into 256 chunks of ~25 rows, not one per 64 rows (98 blocks would leave a
// third of an H100 idle): 256 x 3072 doubles of scratch.
// CHECK-LABEL: sbpk.graph @bias_grad_wide_rows
// CHECK:         sbpk.fused "fused_gelu_gelu_grad_bias_grad" "elementwise"({{.*}}) {bwd, chunks = 256 : i64, deferred_sums, scratch_bytes = 6291456 : i64}
sbpk.graph @bias_grad_wide_rows {
  %h = sbpk.input "images" : tensor<6272x3072xbf16>
  %dg = sbpk.input "labels" : tensor<6272x3072xbf16>
  %x = sbpk.input "labels" : tensor<6272x768xbf16>
  %r = sbpk.kernel "gelu"(%h) {bwd, n = 19267584 : i64} : (tensor<6272x3072xbf16>) -> tensor<6272x3072xbf16>
  %d = sbpk.kernel "gelu_grad"(%h, %dg) {bwd, n = 19267584 : i64} : (tensor<6272x3072xbf16>, tensor<6272x3072xbf16>) -> tensor<6272x3072xbf16>
  %db = sbpk.kernel "bias_grad"(%d) {bwd, n = 3072 : i64, rows = 6272 : i64} : (tensor<6272x3072xbf16>) -> tensor<3072xf32>
  %dw = sbpk.gemm %d, %x {alpha = 1.0 : f64, beta = 0.0 : f64, bwd, k = 6272 : i64, m = 3072 : i64, n = 768 : i64, trans_a = true, trans_b = false} : (tensor<6272x3072xbf16>, tensor<6272x768xbf16>) -> tensor<3072x768xf32>
  sbpk.grad_out "fc1.bias" at 0, %db : tensor<3072xf32>
  sbpk.return %r, %dw : tensor<6272x3072xbf16>, tensor<3072x768xf32>
}

// -----

// What does not join. The upstream dy' (12 columns) is not a whole number of
// the group's 8-column slices: its bias gradient goes to the GEMM epilogue
// (gemm_bgrad). A bias gradient read inside the step (returned) joins, but
// the group's sums are then finished by its own launch: no deferred_sums. The
// dy' of an elementwise kernel (a GELU gradient) is summed in that kernel's
// group, not in the LayerNorm backward its GEMM feeds.
// CHECK-LABEL: sbpk.graph @bias_grad_not_joined
// CHECK:         sbpk.fused "fused_layer_norm_grad_add_bias_grad" "rowwise"({{.*}}) {bwd, chunks = 1 : i64, scratch_bytes = 192 : i64}
// CHECK:         sbpk.kernel "gemm_bgrad"(%{{.*}}, %{{.*}}) {bwd, k = 4 : i64, m = 12 : i64, n = 6 : i64
// CHECK:         sbpk.fused "fused_gelu_grad_bias_grad" "elementwise"
// CHECK:         sbpk.fused "fused_layer_norm_grad_add" "rowwise"({{.*}}) {bwd, chunks = 1 : i64, deferred_sums, scratch_bytes = 128 : i64}
sbpk.graph @bias_grad_not_joined {
  %x = sbpk.input "images" : tensor<4x8xf32>
  %g = sbpk.param "g" at 0 : tensor<8xf32>
  %up = sbpk.input "labels" : tensor<4x12xf32>
  %w = sbpk.input "images" : tensor<12x8xf32>
  %act = sbpk.input "labels" : tensor<4x6xf32>
  %res = sbpk.input "images" : tensor<4x8xf32>
  %dy = sbpk.gemm %up, %w {alpha = 1.0 : f64, beta = 0.0 : f64, bwd, k = 12 : i64, m = 4 : i64, n = 8 : i64, trans_a = false, trans_b = false} : (tensor<4x12xf32>, tensor<12x8xf32>) -> tensor<4x8xf32>
  %d:3 = sbpk.kernel "layer_norm_grad"(%x, %g, %dy) {bwd, eps = 1.0e-6 : f64, n = 8 : i64, rows = 4 : i64} : (tensor<4x8xf32>, tensor<8xf32>, tensor<4x8xf32>) -> (tensor<4x8xf32>, tensor<8xf32>, tensor<8xf32>)
  %s = sbpk.kernel "add"(%res, %d#0) {bwd, n = 32 : i64} : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
  %db = sbpk.kernel "bias_grad"(%s) {bwd, n = 8 : i64, rows = 4 : i64} : (tensor<4x8xf32>) -> tensor<8xf32>
  %dbu = sbpk.kernel "bias_grad"(%up) {bwd, n = 12 : i64, rows = 4 : i64} : (tensor<4x12xf32>) -> tensor<12xf32>
  %dwu = sbpk.gemm %up, %act {alpha = 1.0 : f64, beta = 0.0 : f64, bwd, k = 4 : i64, m = 12 : i64, n = 6 : i64, trans_a = true, trans_b = false} : (tensor<4x12xf32>, tensor<4x6xf32>) -> tensor<12x6xf32>
  %h = sbpk.input "images" : tensor<4x16xf32>
  %dh = sbpk.input "labels" : tensor<4x16xf32>
  %w2 = sbpk.input "images" : tensor<16x8xf32>
  %dgl = sbpk.kernel "gelu_grad"(%h, %dh) {bwd, n = 64 : i64} : (tensor<4x16xf32>, tensor<4x16xf32>) -> tensor<4x16xf32>
  %dbg = sbpk.kernel "bias_grad"(%dgl) {bwd, n = 16 : i64, rows = 4 : i64} : (tensor<4x16xf32>) -> tensor<16xf32>
  %dy2 = sbpk.gemm %dgl, %w2 {alpha = 1.0 : f64, beta = 0.0 : f64, bwd, k = 16 : i64, m = 4 : i64, n = 8 : i64, trans_a = false, trans_b = false} : (tensor<4x16xf32>, tensor<16x8xf32>) -> tensor<4x8xf32>
  %e:3 = sbpk.kernel "layer_norm_grad"(%x, %g, %dy2) {bwd, eps = 1.0e-6 : f64, n = 8 : i64, rows = 4 : i64} : (tensor<4x8xf32>, tensor<8xf32>, tensor<4x8xf32>) -> (tensor<4x8xf32>, tensor<8xf32>, tensor<8xf32>)
  %s2 = sbpk.kernel "add"(%res, %e#0) {bwd, n = 32 : i64} : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
  sbpk.grad_out "g" at 0, %e#1 : tensor<8xf32>
  sbpk.grad_out "b" at 8, %e#2 : tensor<8xf32>
  sbpk.grad_out "u.bias" at 16, %dbu : tensor<12xf32>
  sbpk.grad_out "u.weight" at 28, %dwu : tensor<12x6xf32>
  sbpk.grad_out "f.bias" at 100, %dbg : tensor<16xf32>
  sbpk.return %s, %db, %d#1, %d#2, %s2 : tensor<4x8xf32>, tensor<8xf32>, tensor<8xf32>, tensor<8xf32>, tensor<4x8xf32>
}

// -----

// An elementwise group with a row map (SBP's kept rows) takes the bias
// gradient of a value over its full rows: its kernel runs over them. One of
// another column count does not join (the sums are the map's rows of n).
// CHECK-LABEL: sbpk.graph @bias_grad_row_map
// CHECK:         sbpk.fused "fused_scatter_add_rows_cast_bias_grad" "elementwise"
// CHECK-SAME:      chunks = 1 : i64, deferred_sums, scratch_bytes = 32 : i64
// CHECK:           sbpk.kernel "bias_grad"{{.*}}rows = 16
// CHECK:           sbpk.yield
// CHECK:         sbpk.kernel "bias_grad"{{.*}}n = 8 : i64, rows = 8
sbpk.graph @bias_grad_row_map {
  %k = sbpk.keep_indices @m group 0 : tensor<3xi32>
  %full = sbpk.input "images" : tensor<2x8x4xf32>
  %kept = sbpk.input "labels" : tensor<2x3x4xf32>
  %s = sbpk.kernel "scatter_add_rows"(%full, %kept, %k) {batch = 2 : i64, bwd, kept = 3 : i64, n = 4 : i64, tokens = 8 : i64} : (tensor<2x8x4xf32>, tensor<2x3x4xf32>, tensor<3xi32>) -> tensor<2x8x4xf32>
  %sc = sbpk.kernel "cast"(%s) {bwd, n = 64 : i64} : (tensor<2x8x4xf32>) -> tensor<2x8x4xbf16>
  %db = sbpk.kernel "bias_grad"(%s) {bwd, n = 4 : i64, rows = 16 : i64} : (tensor<2x8x4xf32>) -> tensor<4xf32>
  %dbw = sbpk.kernel "bias_grad"(%s) {bwd, n = 8 : i64, rows = 8 : i64} : (tensor<2x8x4xf32>) -> tensor<8xf32>
  sbpk.grad_out "p.bias" at 0, %db : tensor<4xf32>
  sbpk.grad_out "q.bias" at 4, %dbw : tensor<8xf32>
  sbpk.return %sc : tensor<2x8x4xbf16>
}

// -----

// A CUDA block adds a group's column sums in shared memory (a double per
// column): a bias gradient whose sums would pass 40 KiB (6144 columns: 48
// KiB) stays out of the group.
// CHECK-LABEL: sbpk.graph @bias_grad_too_wide
// CHECK:         sbpk.fused "fused_gelu_gelu_grad" "elementwise"
// CHECK-NOT:       bias_grad
// CHECK:           sbpk.yield
// CHECK:         sbpk.kernel "bias_grad"
sbpk.graph @bias_grad_too_wide {
  %h = sbpk.input "images" : tensor<2x6144xf32>
  %dg = sbpk.input "labels" : tensor<2x6144xf32>
  %r = sbpk.kernel "gelu"(%h) {bwd, n = 12288 : i64} : (tensor<2x6144xf32>) -> tensor<2x6144xf32>
  %d = sbpk.kernel "gelu_grad"(%h, %dg) {bwd, n = 12288 : i64} : (tensor<2x6144xf32>, tensor<2x6144xf32>) -> tensor<2x6144xf32>
  %db = sbpk.kernel "bias_grad"(%d) {bwd, n = 6144 : i64, rows = 2 : i64} : (tensor<2x6144xf32>) -> tensor<6144xf32>
  sbpk.grad_out "fc1.bias" at 0, %db : tensor<6144xf32>
  sbpk.return %r, %d : tensor<2x6144xf32>, tensor<2x6144xf32>
}

// -----

// ConvNeXt's layer scale in the forward: x * gamma (gamma one value per
// column, a parameter) and the residual add after it form one elementwise
// group; the kept rows of the scale's input (saved by an SBP branch) join it
// through the row map, whose rows have the scale's column count.
// CHECK-LABEL: sbpk.graph @layer_scale_forward
// CHECK:         %[[K:.*]] = sbpk.keep_indices @m group 0
// CHECK:         %[[F:.*]]:2 = sbpk.fused "fused_gather_rows_layer_scale_add" "elementwise"(%[[X:.*]], %[[K]], %[[G:.*]], %[[R:.*]]) {region = "b.mlp"}
// CHECK:           sbpk.kernel "gather_rows"
// CHECK:           sbpk.kernel "layer_scale"
// CHECK:           sbpk.kernel "add"
// CHECK:           sbpk.yield
// CHECK-SAME:        tensor<2x3x4xbf16>, tensor<2x8x4xf32>
// CHECK-NOT:     sbpk.kernel
sbpk.graph @layer_scale_forward {
  %k = sbpk.keep_indices @m group 0 : tensor<3xi32>
  %x = sbpk.input "images" : tensor<2x8x4xbf16>
  %g = sbpk.param "gamma" at 0 : tensor<4xf32>
  %r = sbpk.input "images" : tensor<2x8x4xf32>
  %saved = sbpk.kernel "gather_rows"(%x, %k) {batch = 2 : i64, kept = 3 : i64, n = 4 : i64, region = "b.mlp", tokens = 8 : i64} : (tensor<2x8x4xbf16>, tensor<3xi32>) -> tensor<2x3x4xbf16>
  %y = sbpk.kernel "layer_scale"(%x, %g) {n = 4 : i64, region = "b.mlp", rows = 16 : i64} : (tensor<2x8x4xbf16>, tensor<4xf32>) -> tensor<2x8x4xbf16>
  %s = sbpk.kernel "add"(%r, %y) {n = 64 : i64} : (tensor<2x8x4xf32>, tensor<2x8x4xbf16>) -> tensor<2x8x4xf32>
  sbpk.return %saved, %s : tensor<2x3x4xbf16>, tensor<2x8x4xf32>
}

// -----

// ConvNeXt's layer scale in the backward: dx = gamma * dy with dgamma, the
// column sums of dy * x, and the bias gradient of the layer before (fc2:
// the column sums of dx) in one elementwise group, instead of a library
// kernel and a GEMM's bias-gradient epilogue. The residual add that makes dy
// joins as its producer. Both sums only become parameter gradients: deferred.
// CHECK-LABEL: sbpk.graph @layer_scale_backward
// CHECK:         %[[F:.*]]:4 = sbpk.fused "fused_add_layer_scale_grad_bias_grad" "elementwise"({{.*}}) {bwd, chunks = 1 : i64, deferred_sums, region = "b.mlp", scratch_bytes = 64 : i64}
// CHECK:           sbpk.kernel "add"
// CHECK:           sbpk.kernel "layer_scale_grad"
// CHECK:           sbpk.kernel "bias_grad"
// CHECK:           sbpk.yield
// CHECK:         sbpk.gemm %[[F]]#1, %{{.*}} {alpha
// CHECK:         sbpk.grad_out "gamma" at 0, %[[F]]#2
// CHECK:         sbpk.grad_out "fc2.bias" at 4, %[[F]]#3
sbpk.graph @layer_scale_backward {
  %dr = sbpk.input "images" : tensor<2x8x4xf32>
  %dc = sbpk.input "images" : tensor<2x8x4xbf16>
  %x = sbpk.input "labels" : tensor<2x8x4xbf16>
  %g = sbpk.param "gamma" at 0 : tensor<4xf32>
  %w = sbpk.param "fc2.weight" at 8 : tensor<4x6xbf16>
  %dy = sbpk.kernel "add"(%dr, %dc) {bwd, n = 64 : i64} : (tensor<2x8x4xf32>, tensor<2x8x4xbf16>) -> tensor<2x8x4xf32>
  %d:2 = sbpk.kernel "layer_scale_grad"(%dy, %x, %g) {bwd, n = 4 : i64, region = "b.mlp", rows = 16 : i64} : (tensor<2x8x4xf32>, tensor<2x8x4xbf16>, tensor<4xf32>) -> (tensor<2x8x4xbf16>, tensor<4xf32>)
  %db = sbpk.kernel "bias_grad"(%d#0) {bwd, n = 4 : i64, region = "b.mlp", rows = 16 : i64} : (tensor<2x8x4xbf16>) -> tensor<4xf32>
  %dh = sbpk.gemm %d#0, %w {alpha = 1.0 : f64, beta = 0.0 : f64, bwd, k = 4 : i64, m = 16 : i64, n = 6 : i64, trans_a = false, trans_b = false} : (tensor<2x8x4xbf16>, tensor<4x6xbf16>) -> tensor<2x8x6xbf16>
  sbpk.grad_out "gamma" at 0, %d#1 : tensor<4xf32>
  sbpk.grad_out "fc2.bias" at 4, %db : tensor<4xf32>
  sbpk.return %dy, %dh : tensor<2x8x4xf32>, tensor<2x8x6xbf16>
}

// -----

// With SBP the layer scale's gradient runs on the kept rows that a gather
// takes from the residual gradient. It joins the gather's group with its
// column sums over the kept rows (dgamma, fc2's bias gradient): one pass
// over the full rows writes the residual gradient, and at each kept row the
// branch's dx, adding the kept rows' sums. The gathered float rows are never
// written. The chunks split the full rows (16 of them here: one chunk).
// CHECK-LABEL: sbpk.graph @layer_scale_backward_row_map
// CHECK:         %[[F:.*]]:4 = sbpk.fused "fused_add_gather_rows_layer_scale_grad_bias_grad" "elementwise"({{.*}}) {bwd, chunks = 1 : i64, deferred_sums, region = "b.mlp", scratch_bytes = 64 : i64} : {{.*}} -> (tensor<2x8x4xf32>, tensor<2x3x4xbf16>, tensor<4xf32>, tensor<4xf32>)
// CHECK:           sbpk.kernel "gather_rows"
// CHECK:           sbpk.kernel "layer_scale_grad"
// CHECK:           sbpk.kernel "bias_grad"
// CHECK:           sbpk.yield
// CHECK-NOT:     sbpk.kernel
// CHECK:         sbpk.grad_out "gamma" at 0, %[[F]]#2
sbpk.graph @layer_scale_backward_row_map {
  %k = sbpk.keep_indices @m group 0 : tensor<3xi32>
  %dr = sbpk.input "images" : tensor<2x8x4xf32>
  %dc = sbpk.input "images" : tensor<2x8x4xbf16>
  %x = sbpk.input "labels" : tensor<2x3x4xbf16>
  %g = sbpk.param "gamma" at 0 : tensor<4xf32>
  %dy = sbpk.kernel "add"(%dr, %dc) {bwd, n = 64 : i64} : (tensor<2x8x4xf32>, tensor<2x8x4xbf16>) -> tensor<2x8x4xf32>
  %dyk = sbpk.kernel "gather_rows"(%dy, %k) {batch = 2 : i64, bwd, kept = 3 : i64, n = 4 : i64, region = "b.mlp", tokens = 8 : i64} : (tensor<2x8x4xf32>, tensor<3xi32>) -> tensor<2x3x4xf32>
  %d:2 = sbpk.kernel "layer_scale_grad"(%dyk, %x, %g) {bwd, n = 4 : i64, region = "b.mlp", rows = 6 : i64} : (tensor<2x3x4xf32>, tensor<2x3x4xbf16>, tensor<4xf32>) -> (tensor<2x3x4xbf16>, tensor<4xf32>)
  %db = sbpk.kernel "bias_grad"(%d#0) {bwd, n = 4 : i64, region = "b.mlp", rows = 6 : i64} : (tensor<2x3x4xbf16>) -> tensor<4xf32>
  sbpk.grad_out "gamma" at 0, %d#1 : tensor<4xf32>
  sbpk.grad_out "fc2.bias" at 4, %db : tensor<4xf32>
  sbpk.return %dy, %d#0 : tensor<2x8x4xf32>, tensor<2x3x4xbf16>
}

// -----

// A group nothing outside reads (a dead branch of the model: a block whose
// output is unused) still returns its last value, so that every generated
// kernel has a result to size it by (a result-less group crashed the emitter).
// CHECK-LABEL: sbpk.graph @dead_group
// CHECK:         %{{.*}} = sbpk.fused "fused_gelu_add" "elementwise"(%{{.*}}) : (tensor<8x8xbf16>) -> tensor<8x8xbf16>
// CHECK:           sbpk.kernel "gelu"
// CHECK:           %[[S:.*]] = sbpk.kernel "add"
// CHECK:           sbpk.yield %[[S]] : tensor<8x8xbf16>
sbpk.graph @dead_group {
  %h = sbpk.input "images" : tensor<8x8xbf16>
  %g = sbpk.kernel "gelu"(%h) {n = 64 : i64} : (tensor<8x8xbf16>) -> tensor<8x8xbf16>
  %s = sbpk.kernel "add"(%g, %h) {n = 64 : i64} : (tensor<8x8xbf16>, tensor<8x8xbf16>) -> tensor<8x8xbf16>
  sbpk.return %h : tensor<8x8xbf16>
}
