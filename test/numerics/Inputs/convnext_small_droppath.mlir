// The small ConvNeXt of convnext_small.mlir (same parameters), dense, with timm's stochastic depth
// at drop_path_rate 0.3: linspace(0, 0.3, 4) over the four blocks gives rates 0, 0.1, 0.2, 0.3, so
// blocks 1-3 each have a samples mask group (@dp.<block>, keep 1 - rate, one draw per block) and an
// sbp.drop_path after the layer scale. timm: ConvNeXt(..., drop_path_rate=0.3).
sbp.model @convnext_small_droppath attributes {optimizer = #sbp.adamw<lr = 0.001, beta1 = 0.9, beta2 = 0.999, eps = 1.0e-8, weight_decay = 0.05>} {
  sbp.mask_group @dp.stages.0.blocks.1 keep 0.9 samples [1, 4]
  sbp.mask_group @dp.stages.1.blocks.0 keep 0.8 samples [1, 4]
  sbp.mask_group @dp.stages.1.blocks.1 keep 0.7 samples [1, 4]
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
  %x1 = sbp.convnext_block "stages.0.blocks.0" %x0 grid [8, 8] hidden 64 : tensor<4x64x16xf32>
  %x2 = sbp.convnext_block "stages.0.blocks.1" %x1 grid [8, 8] hidden 64 drop_path @dp.stages.0.blocks.1 rate 0.1 : tensor<4x64x16xf32>
  %x3 = sbp.convnext_downsample "stages.1.downsample" %x2 grid [8, 8] out 32 : (tensor<4x64x16xf32>) -> tensor<4x16x32xf32>
  %x4 = sbp.convnext_block "stages.1.blocks.0" %x3 grid [4, 4] hidden 128 drop_path @dp.stages.1.blocks.0 rate 0.2 : tensor<4x16x32xf32>
  %x5 = sbp.convnext_block "stages.1.blocks.1" %x4 grid [4, 4] hidden 128 drop_path @dp.stages.1.blocks.1 rate 0.3 : tensor<4x16x32xf32>
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
