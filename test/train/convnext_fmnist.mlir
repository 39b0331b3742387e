// RUN: sbpc %s --target=cpu -o %t.so
// RUN: sbp-train %t.so --data %fashion_mnist --steps 1 --seed 1 > %t.short 2>&1
// RUN: sbp-train %t.so --data %fashion_mnist --steps 60 --seed 1 > %t.long 2>&1
// RUN: %python %S/check_loss_falls.py %t.short %t.long
// REQUIRES: fashion-mnist
//
// A small ConvNeXt trains on Fashion-MNIST on the CPU: stem patch 2 (28x28 -> 14x14 grid), one
// block of width 16, 2x2 downsampling (14x14 -> 7x7) with an SBP reduction, one block of width 32,
// SBP keep 0.5 on both MLP branches: one grid mask drawn on the 7x7 grid per step, repeated over
// 2x2 cells of the 14x14 grid (@s0 cell 2), as sbp-zoo writes a ConvNeXt. The loss stays finite
// and falls.
sbp.model @convnext_fmnist attributes {optimizer = #sbp.adamw<lr = 0.002, beta1 = 0.9, beta2 = 0.999, eps = 1.0e-8, weight_decay = 0.05>} {
  sbp.mask_group @s0 keep 0.5 grid [14, 14] cell 2
  sbp.mask_group @s1 keep 0.5 grid [7, 7]
  %images = sbp.input "images" : tensor<32x1x28x28xf32>
  %labels = sbp.input "labels" : tensor<32xi32>
  %stem_w = sbp.param "stem.0.weight" : tensor<16x1x2x2xf32> init<trunc_normal, 0.02>
  %stem_b = sbp.param "stem.0.bias" : tensor<16xf32> init<zeros>
  %stem_nw = sbp.param "stem.1.weight" : tensor<16xf32> init<ones>
  %stem_nb = sbp.param "stem.1.bias" : tensor<16xf32> init<zeros>
  %tok = sbp.patchify %images patch 2 : tensor<32x1x28x28xf32> -> tensor<32x196x4xf32>
  %s0 = sbp.linear %tok, %stem_w : (tensor<32x196x4xf32>, tensor<16x1x2x2xf32>) -> tensor<32x196x16xf32>
  %s1 = sbp.bias_add %s0, %stem_b : (tensor<32x196x16xf32>, tensor<16xf32>) -> tensor<32x196x16xf32>
  %x0 = sbp.layer_norm %s1, %stem_nw, %stem_nb {eps = 1.0e-6 : f64} : (tensor<32x196x16xf32>, tensor<16xf32>, tensor<16xf32>) -> tensor<32x196x16xf32>
  %x1 = sbp.convnext_block "stages.0.blocks.0" %x0 grid [14, 14] hidden 64 mlp_sbp @s0 : tensor<32x196x16xf32>
  %x2 = sbp.convnext_downsample "stages.1.downsample" %x1 grid [14, 14] out 32 sbp @s1 : (tensor<32x196x16xf32>) -> tensor<32x49x32xf32>
  %x3 = sbp.convnext_block "stages.1.blocks.0" %x2 grid [7, 7] hidden 128 mlp_sbp @s1 : tensor<32x49x32xf32>
  %head_nw = sbp.param "head.norm.weight" : tensor<32xf32> init<ones>
  %head_nb = sbp.param "head.norm.bias" : tensor<32xf32> init<zeros>
  %head_w = sbp.param "head.fc.weight" : tensor<10x32xf32> init<trunc_normal, 0.02>
  %head_b = sbp.param "head.fc.bias" : tensor<10xf32> init<zeros>
  %pool = sbp.mean_tokens %x3 : (tensor<32x49x32xf32>) -> tensor<32x32xf32>
  %hn = sbp.layer_norm %pool, %head_nw, %head_nb {eps = 1.0e-6 : f64} : (tensor<32x32xf32>, tensor<32xf32>, tensor<32xf32>) -> tensor<32x32xf32>
  %l0 = sbp.linear %hn, %head_w : (tensor<32x32xf32>, tensor<10x32xf32>) -> tensor<32x10xf32>
  %logits = sbp.bias_add %l0, %head_b : (tensor<32x10xf32>, tensor<10xf32>) -> tensor<32x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<32x10xf32>, tensor<32xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<32x10xf32>
}
