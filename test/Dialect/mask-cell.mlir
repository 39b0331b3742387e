// RUN: sbp-opt %s -split-input-file | FileCheck %s

// Derived mask groups (`cell` N): drawn on [H/N, W/N], each drawn position an
// N x N cell of the group's grid. The capacity (the keep_indices size) is the
// drawn grid's most kept positions times N * N, which differs from the fine
// grid's own: 3x3 drawn at 0.5 keeps at most 5 (of one parity), so 20 of
// 6x6 where a cell-1 6x6 group keeps at most 18; random 0.3 drops int(0.7 * 4)
// of 2x2 drawn positions, so 2 cells of 9 = 18 where a cell-1 group keeps 11.
// Cell 1 is printed as nothing (the default).

// CHECK-LABEL: sbp.model @cells
// CHECK:      sbp.mask_group @s0 keep 5.000000e-01 grid [56, 56] cell 4
// CHECK-NEXT: sbp.mask_group @s1 keep 5.000000e-01 grid [28, 28] cell 2
// CHECK-NEXT: sbp.mask_group @s2 keep 5.000000e-01 grid [14, 14]{{$}}
// CHECK-NEXT: sbp.mask_group @g keep 5.000000e-01 grid [6, 6] cell 2
// CHECK-NEXT: sbp.mask_group @g1 keep 5.000000e-01 grid [6, 6]{{$}}
// CHECK-NEXT: sbp.mask_group @r keep 3.000000e-01 random [6, 6] cell 3
// CHECK-NEXT: sbp.mask_group @r1 keep 3.000000e-01 random [6, 6]{{$}}
sbp.model @cells attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @s0 keep 0.5 grid [56, 56] cell 4
  sbp.mask_group @s1 keep 0.5 grid [28, 28] cell 2
  sbp.mask_group @s2 keep 0.5 grid [14, 14] cell 1
  sbp.mask_group @g keep 0.5 grid [6, 6] cell 2
  sbp.mask_group @g1 keep 0.5 grid [6, 6]
  sbp.mask_group @r keep 0.3 random [6, 6] cell 3
  sbp.mask_group @r1 keep 0.3 random [6, 6]
  %k0 = sbp.keep_indices @s0 : tensor<1568xi32>
  %k1 = sbp.keep_indices @s1 : tensor<392xi32>
  %k2 = sbp.keep_indices @s2 : tensor<98xi32>
  %kg = sbp.keep_indices @g : tensor<20xi32>
  %kg1 = sbp.keep_indices @g1 : tensor<18xi32>
  %kr = sbp.keep_indices @r : tensor<18xi32>
  %kr1 = sbp.keep_indices @r1 : tensor<11xi32>
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}
