// ConvNeXt for 32x32x3 images: stem patch 4 (8x8 grid), stages dims 16/32, depths 2/2, 7x7
// depth-wise convs, MLP ratio 4, a 2x2 stride-2 downsampling between the stages (4x4 grid), global
// average pool, LayerNorm, head. timm: ConvNeXt(in_chans=3, num_classes=10, depths=(2, 2),
// dims=(16, 32), patch_size=4). SBP: keep 0.5 (grid mask) on the MLP branches of stage 0 (@s0,
// on the 8x8 grid) and stage 1 (@s1, 4x4), and on stage 1's downsampling reduction (@s1). As
// sbp-zoo writes a ConvNeXt, @s0 is derived (cell 2): a trainer draws it on the 4x4 grid, one draw
// with @s1. The numerics tests fix each group's keep indices (any positions of its own grid).
sbp.model @convnext_small attributes {optimizer = #sbp.adamw<lr = 0.001, beta1 = 0.9, beta2 = 0.999, eps = 1.0e-8, weight_decay = 0.05>} {
  sbp.mask_group @s0 keep 0.5 grid [8, 8] cell 2
  sbp.mask_group @s1 keep 0.5 grid [4, 4]
  %images = sbp.input "images" : tensor<4x3x32x32xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %stem_w = sbp.param "stem.0.weight" : tensor<16x3x4x4xf32> init<trunc_normal, 0.02>
  %stem_b = sbp.param "stem.0.bias" : tensor<16xf32> init<zeros>
  %stem_nw = sbp.param "stem.1.weight" : tensor<16xf32> init<ones>
  %stem_nb = sbp.param "stem.1.bias" : tensor<16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<4x3x32x32xf32> -> tensor<4x64x48xf32>
  %s0 = sbp.linear %tok, %stem_w : (tensor<4x64x48xf32>, tensor<16x3x4x4xf32>) -> tensor<4x64x16xf32>
  %s1 = sbp.bias_add %s0, %stem_b : (tensor<4x64x16xf32>, tensor<16xf32>) -> tensor<4x64x16xf32>
  %x0 = sbp.layer_norm %s1, %stem_nw, %stem_nb {eps = 1.0e-6 : f64} : (tensor<4x64x16xf32>, tensor<16xf32>, tensor<16xf32>) -> tensor<4x64x16xf32>
  %x1 = sbp.convnext_block "stages.0.blocks.0" %x0 grid [8, 8] hidden 64 mlp_sbp @s0 : tensor<4x64x16xf32>
  %x2 = sbp.convnext_block "stages.0.blocks.1" %x1 grid [8, 8] hidden 64 mlp_sbp @s0 : tensor<4x64x16xf32>
  %x3 = sbp.convnext_downsample "stages.1.downsample" %x2 grid [8, 8] out 32 sbp @s1 : (tensor<4x64x16xf32>) -> tensor<4x16x32xf32>
  %x4 = sbp.convnext_block "stages.1.blocks.0" %x3 grid [4, 4] hidden 128 mlp_sbp @s1 : tensor<4x16x32xf32>
  %x5 = sbp.convnext_block "stages.1.blocks.1" %x4 grid [4, 4] hidden 128 mlp_sbp @s1 : tensor<4x16x32xf32>
  %head_nw = sbp.param "head.norm.weight" : tensor<32xf32> init<ones>
  %head_nb = sbp.param "head.norm.bias" : tensor<32xf32> init<zeros>
  %head_w = sbp.param "head.fc.weight" : tensor<10x32xf32> init<trunc_normal, 0.02>
  %head_b = sbp.param "head.fc.bias" : tensor<10xf32> init<zeros>
  %pool = sbp.mean_tokens %x5 : (tensor<4x16x32xf32>) -> tensor<4x32xf32>
  %hn = sbp.layer_norm %pool, %head_nw, %head_nb {eps = 1.0e-6 : f64} : (tensor<4x32xf32>, tensor<32xf32>, tensor<32xf32>) -> tensor<4x32xf32>
  %l0 = sbp.linear %hn, %head_w : (tensor<4x32xf32>, tensor<10x32xf32>) -> tensor<4x10xf32>
  %logits = sbp.bias_add %l0, %head_b : (tensor<4x10xf32>, tensor<10xf32>) -> tensor<4x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}
