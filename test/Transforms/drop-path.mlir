// RUN: sbp-opt %s -sbp-decompose | FileCheck %s --check-prefix=DECOMPOSE
// RUN: sbp-opt %s -sbp-decompose -sbp-insert-masks=keep=0.5 | FileCheck %s --check-prefix=MASKS
// RUN: sbp-opt %s -sbp-decompose -sbp-insert-masks -sbp-autodiff | FileCheck %s --check-prefix=GRAD
// RUN: sbp-opt %s -sbp-decompose -sbp-insert-masks -sbp-autodiff -sbp-lower-to-kernels \
// RUN:   | FileCheck %s --check-prefix=KERNELS

// Stochastic depth through the passes. sbp-decompose puts sbp.drop_path on
// the block's branch after the layer scale, before the residual add (timm:
// x = shortcut + drop_path(gamma * mlp(...))).
// DECOMPOSE-LABEL: sbp.model @dp
// DECOMPOSE: %[[BR:.*]] = sbp.branch @s
// DECOMPOSE: %[[LS:.*]] = sbp.layer_scale
// DECOMPOSE-NEXT: sbp.yield %[[LS]]
// DECOMPOSE-NEXT: }
// DECOMPOSE-NEXT: %[[DP:.*]] = sbp.drop_path %[[BR]] group @dp1 rate 1.000000e-01
// DECOMPOSE-NEXT: sbp.add %{{.*}}, %[[DP]]
// DECOMPOSE: sbp.layer_scale
// DECOMPOSE-NEXT: sbp.drop_path %{{.*}} group @dp2 rate
// DECOMPOSE: sbp.layer_scale
// DECOMPOSE-NEXT: sbp.drop_path %{{.*}} group @shared rate
// DECOMPOSE: sbp.layer_scale
// DECOMPOSE-NEXT: sbp.drop_path %{{.*}} group @shared rate
// DECOMPOSE: sbp.layer_scale
// DECOMPOSE-NEXT: sbp.drop_path %{{.*}} group @zero rate 0.0
// DECOMPOSE: sbp.layer_scale
// DECOMPOSE-NEXT: sbp.add

// sbp-insert-masks: each drop path gets its group's keep indices; a group
// used by two ops becomes one per op (a draw per block, as timm); rate 0 is
// the identity and vanishes; the SBP keep override leaves samples groups.
// MASKS-DAG: %[[K1:.*]] = sbp.keep_indices @dp1 : tensor<2xi32>
// MASKS-DAG: %[[KS0:.*]] = sbp.keep_indices @shared.0 : tensor<2xi32>
// MASKS-DAG: %[[KS1:.*]] = sbp.keep_indices @shared.1 : tensor<2xi32>
// MASKS-DAG: sbp.mask_group @dp1 keep 9.000000e-01 samples [1, 2]
// MASKS-DAG: sbp.mask_group @shared.0 keep 8.000000e-01 samples [1, 2]
// MASKS-DAG: sbp.mask_group @shared.1 keep 8.000000e-01 samples [1, 2]
// MASKS-DAG: sbp.mask_group @s keep 5.000000e-01 grid [4, 4]
// MASKS: sbp.drop_path %{{.*}}, %[[K1]] group @dp1
// MASKS: sbp.drop_path %{{.*}}, %[[KS0]] group @shared.0
// MASKS: sbp.drop_path %{{.*}}, %[[KS1]] group @shared.1
// MASKS-NOT: sbp.drop_path
// MASKS-NOT: @shared rate

// The gradient is the same scaling of dy, with the same keep indices.
// GRAD: %[[K:.*]] = sbp.keep_indices @dp1
// GRAD: sbp.drop_path %{{.*}}, %[[K]] group @dp1 rate 1.000000e-01 :
// GRAD: sbp.drop_path %{{.*}}, %[[K]] group @dp1 rate 1.000000e-01 {sbp.bwd}

// The train graph calls the kernel (scale 1 / (1 - rate)) forward and
// backward; the eval graph has no drop path (the identity).
// KERNELS-LABEL: sbpk.graph @train
// KERNELS: sbpk.kernel "drop_path"(%{{.*}}, %{{.*}}) {batch = 2 : i64, kept = 2 : i64, n = 128 : i64, scale = 1.1111111111111112 : f64}
// KERNELS: sbpk.kernel "drop_path"(%{{.*}}, %{{.*}}) {batch = 2 : i64, bwd, kept = 2 : i64, n = 128 : i64, scale = 1.1111111111111112 : f64}
// KERNELS-LABEL: sbpk.graph @eval
// KERNELS-NOT: drop_path
// KERNELS: sbpk.return

sbp.model @dp attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @s keep 0.5 grid [4, 4]
  sbp.mask_group @dp1 keep 0.9 samples [1, 2]
  sbp.mask_group @dp2 keep 0.85 samples [1, 2]
  sbp.mask_group @shared keep 0.8 samples [1, 2]
  sbp.mask_group @zero keep 1.0 samples [1, 2]
  %images = sbp.input "images" : tensor<2x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "stem.0.weight" : tensor<8x3x4x4xf32> init<trunc_normal, 0.02>
  %tok = sbp.patchify %images patch 4 : tensor<2x3x16x16xf32> -> tensor<2x16x48xf32>
  %x0 = sbp.linear %tok, %w : (tensor<2x16x48xf32>, tensor<8x3x4x4xf32>) -> tensor<2x16x8xf32>
  %x1 = sbp.convnext_block "b1" %x0 grid [4, 4] hidden 32 mlp_sbp @s drop_path @dp1 rate 0.1 : tensor<2x16x8xf32>
  %x2 = sbp.convnext_block "b2" %x1 grid [4, 4] hidden 32 drop_path @dp2 rate 0.15 : tensor<2x16x8xf32>
  %x3 = sbp.convnext_block "b3" %x2 grid [4, 4] hidden 32 drop_path @shared rate 0.2 : tensor<2x16x8xf32>
  %x4 = sbp.convnext_block "b4" %x3 grid [4, 4] hidden 32 drop_path @shared rate 0.2 : tensor<2x16x8xf32>
  %x5 = sbp.convnext_block "b5" %x4 grid [4, 4] hidden 32 drop_path @zero rate 0.0 : tensor<2x16x8xf32>
  %x6 = sbp.convnext_block "b6" %x5 grid [4, 4] hidden 32 : tensor<2x16x8xf32>
  %pool = sbp.mean_tokens %x6 : (tensor<2x16x8xf32>) -> tensor<2x8xf32>
  %hw = sbp.param "head.fc.weight" : tensor<10x8xf32> init<trunc_normal, 0.02>
  %logits = sbp.linear %pool, %hw : (tensor<2x8xf32>, tensor<10x8xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}
