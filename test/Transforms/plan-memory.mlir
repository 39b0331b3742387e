// RUN: sbp-opt %s -split-input-file -sbp-insert-masks -sbp-autodiff -sbp-check-gradient-support -sbp-prune-backward -sbp-lower-to-kernels -sbp-plan-memory | FileCheck %s
// RUN: sbp-opt %s -split-input-file -sbp-insert-masks -sbp-autodiff -sbp-check-gradient-support -sbp-prune-backward -sbp-lower-to-kernels -sbp-plan-memory | FileCheck %s --check-prefix=ALL

// A hand-written graph (the sbp passes leave it alone). Live intervals, in op
// indices: images [0, 1], a [1, 2], b [2, 3], c [3, 7], d [5, 10], e [6, 10],
// g#0 [7, 10] (the return reads d, e and g#0). The images are pinned at
// offset 0 (the runtime copies the batch there: `images_in_arena`). Sizes
// round up to 256 bytes; e (400 bytes -> 512) is placed first, then the
// others at the lowest offset clear of every placed buffer live at the same
// time: e reuses the images' bytes (disjoint intervals), a goes above the
// images, b reuses the images' bytes, c goes above e, d above c, g#0 above d.
// The gradients g#1 and g#2 go to the gradient buffer (-1), not the arena.

// CHECK-LABEL: sbpk.graph @chain attributes {arena_bytes = 1280 : i64, images_in_arena} {
// CHECK-NEXT:    sbpk.input "images"
// CHECK-NEXT:    sbpk.kernel "relu"({{.*}}) {arena_offsets = array<i64: 256>, n = 64 : i64}
// CHECK-NEXT:    sbpk.kernel "relu"({{.*}}) {arena_offsets = array<i64: 0>, n = 64 : i64}
// CHECK-NEXT:    sbpk.kernel "relu"({{.*}}) {arena_offsets = array<i64: 512>, n = 64 : i64}
// CHECK-NEXT:    sbpk.param "w" at 0
// CHECK-NEXT:    sbpk.gemm {{.*}} {alpha = 1.000000e+00 : f64, arena_offsets = array<i64: 768>,
// CHECK-NEXT:    sbpk.kernel "relu"({{.*}}) {arena_offsets = array<i64: 0>, n = 100 : i64}
// CHECK-NEXT:    sbpk.kernel "layer_norm_grad"({{.*}}) {arena_offsets = array<i64: 1024, -1, -1>,
// CHECK-NEXT:    sbpk.grad_out "w" at 0
// CHECK-NEXT:    sbpk.grad_out "w2" at 64
// CHECK-NEXT:    sbpk.return
sbpk.graph @chain {
  %x = sbpk.input "images" : tensor<64xf32>
  %a = sbpk.kernel "relu"(%x) {n = 64 : i64} : (tensor<64xf32>) -> tensor<64xf32>
  %b = sbpk.kernel "relu"(%a) {n = 64 : i64} : (tensor<64xf32>) -> tensor<64xf32>
  %c = sbpk.kernel "relu"(%b) {n = 64 : i64} : (tensor<64xf32>) -> tensor<64xf32>
  %w = sbpk.param "w" at 0 : tensor<64xf32>
  %d = sbpk.gemm %c, %w {m = 1 : i64, n = 1 : i64, k = 64 : i64, trans_a = false, trans_b = false, alpha = 1.0 : f64, beta = 0.0 : f64} : (tensor<64xf32>, tensor<64xf32>) -> tensor<1xf32>
  %e = sbpk.kernel "relu"(%c) {n = 100 : i64} : (tensor<64xf32>) -> tensor<100xf32>
  %g:3 = sbpk.kernel "layer_norm_grad"(%c, %w, %c) {rows = 1 : i64, n = 64 : i64, eps = 1.0e-5 : f64} : (tensor<64xf32>, tensor<64xf32>, tensor<64xf32>) -> (tensor<64xf32>, tensor<64xf32>, tensor<64xf32>)
  sbpk.grad_out "w" at 0, %g#1 : tensor<64xf32>
  sbpk.grad_out "w2" at 64, %g#2 : tensor<64xf32>
  sbpk.return %e, %d, %g#0 : tensor<100xf32>, tensor<1xf32>, tensor<64xf32>
}

// -----

// The train and eval graphs of a model: each gets arena_bytes, every kernel
// and GEMM gets arena_offsets (one per result), parameter gradients get -1.

// The images are pinned at offset 0, so the patchify that reads them writes
// elsewhere.
// CHECK-LABEL: sbpk.graph @train attributes {arena_bytes = {{[1-9][0-9]*}} : i64, images_in_arena} {
// CHECK:         sbpk.kernel "patchify"({{.*}}) {arena_offsets = array<i64: {{[1-9][0-9]*}}>,
// CHECK:         sbpk.kernel "gather_rows"({{.*}}) {arena_offsets = array<i64: {{[0-9]+}}>,
// CHECK:         %[[XENT:[0-9]+]]:2 = sbpk.kernel "softmax_xent_grad"({{.*}}) {arena_offsets = array<i64: {{[0-9]+}}, {{[0-9]+}}>,
// Weight gradients are written straight into the gradient buffer.
// CHECK:         %[[DHW:.*]] = sbpk.gemm %[[XENT]]#1, {{.*}}arena_offsets = array<i64: -1>, {{.*}}trans_a = true
// CHECK:         sbpk.gemm {{.*}}arena_offsets = array<i64: -1>, {{.*}}region = "blocks.1", trans_a = true
// CHECK:         sbpk.kernel "scatter_add_rows"({{.*}}) {arena_offsets = array<i64: {{[0-9]+}}>,
// CHECK:         sbpk.gemm {{.*}}arena_offsets = array<i64: -1>, {{.*}}region = "blocks.0", trans_a = true
// CHECK:         sbpk.grad_out "head.weight" at {{[0-9]+}}, %[[DHW]]
// CHECK:         sbpk.return
// CHECK-LABEL: sbpk.graph @eval attributes {arena_bytes = {{[1-9][0-9]*}} : i64, images_in_arena} {
// CHECK:         sbpk.kernel "softmax_xent"({{.*}}) {arena_offsets = array<i64: {{[0-9]+}}>,
// CHECK:         sbpk.return

// No kernel or GEMM of either graph lacks arena_offsets (its attribute
// dictionary starts with it; a GEMM's with alpha, then it); eval has no
// gradient, so no -1.
// ALL-LABEL: sbpk.graph @train
// ALL-NOT:     sbpk.kernel "{{[a-z_]+}}"({{[^)]*}}) {{{[^a]}}
// ALL-NOT:     sbpk.gemm {{[^{]*}}{alpha = {{[^,]*}}, {{[^a]}}
// ALL:         sbpk.return
// ALL-LABEL: sbpk.graph @eval
// ALL-NOT:     sbpk.kernel "{{[a-z_]+}}"({{[^)]*}}) {{{[^a]}}
// ALL-NOT:     sbpk.gemm {{[^{]*}}{alpha = {{[^,]*}}, {{[^a]}}
// ALL-NOT:     array<i64: -1>
// ALL:         sbpk.return
sbp.model @model attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.9, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.5 grid [4, 4]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %pe = sbp.param "patch_embed.weight" : tensor<8x4xf32> init<trunc_normal, 0.02>
  %f0 = sbp.param "blocks.0.fc1.weight" : tensor<16x8xf32> init<trunc_normal, 0.02>
  %g0 = sbp.param "blocks.0.fc2.weight" : tensor<8x16xf32> init<trunc_normal, 0.02>
  %f1 = sbp.param "blocks.1.fc1.weight" : tensor<16x8xf32> init<trunc_normal, 0.02>
  %g1 = sbp.param "blocks.1.fc2.weight" : tensor<8x16xf32> init<trunc_normal, 0.02>
  %hw = sbp.param "head.weight" : tensor<10x8xf32> init<trunc_normal, 0.02>
  %tok = sbp.patchify %images patch 2 : tensor<2x1x8x8xf32> -> tensor<2x16x4xf32>
  %x0 = sbp.linear %tok, %pe : (tensor<2x16x4xf32>, tensor<8x4xf32>) -> tensor<2x16x8xf32>
  %y0 = sbp.branch @m (%x0) {name = "blocks.0"} : (tensor<2x16x8xf32>) -> tensor<2x16x8xf32> {
  ^bb0(%x: tensor<2x16x8xf32>):
    %h = sbp.linear %x, %f0 : (tensor<2x16x8xf32>, tensor<16x8xf32>) -> tensor<2x16x16xf32>
    %a = sbp.gelu %h : (tensor<2x16x16xf32>) -> tensor<2x16x16xf32>
    %o = sbp.linear %a, %g0 : (tensor<2x16x16xf32>, tensor<8x16xf32>) -> tensor<2x16x8xf32>
    sbp.yield %o : tensor<2x16x8xf32>
  }
  %x1 = sbp.add %x0, %y0 : (tensor<2x16x8xf32>, tensor<2x16x8xf32>) -> tensor<2x16x8xf32>
  %y1 = sbp.branch @m (%x1) {name = "blocks.1"} : (tensor<2x16x8xf32>) -> tensor<2x16x8xf32> {
  ^bb0(%x: tensor<2x16x8xf32>):
    %h = sbp.linear %x, %f1 : (tensor<2x16x8xf32>, tensor<16x8xf32>) -> tensor<2x16x16xf32>
    %a = sbp.relu %h : (tensor<2x16x16xf32>) -> tensor<2x16x16xf32>
    %o = sbp.linear %a, %g1 : (tensor<2x16x16xf32>, tensor<8x16xf32>) -> tensor<2x16x8xf32>
    sbp.yield %o : tensor<2x16x8xf32>
  }
  %x2 = sbp.add %x1, %y1 : (tensor<2x16x8xf32>, tensor<2x16x8xf32>) -> tensor<2x16x8xf32>
  %pool = sbp.mean_tokens %x2 : (tensor<2x16x8xf32>) -> tensor<2x8xf32>
  %logits = sbp.linear %pool, %hw : (tensor<2x8xf32>, tensor<10x8xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}
