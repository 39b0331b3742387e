// The largest square grid a mask group may have (46340^2 < 2^31 tokens) at a
// stride of 50000: visiting every cell per start took ~10^14 steps; the
// closed form is instant. The keep indices' size is the group's capacity.
sbp.model @large_grid attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.9, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.00002 grid [46340, 46340]
  sbp.mask_group @r keep 0.75 grid [46340, 46340] prefix 1
  %k = sbp.keep_indices @m : tensor<46340xi32>
  %kr = sbp.keep_indices @r : tensor<1610546701xi32>
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %hw = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %hw : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}
