// Attention over a zero-width qkv: sbpc exited 1 with an empty stderr.
sbp.model @zero_qkv attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.9, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %wq = sbp.param "qkv.weight" : tensor<0x16xf32> init<zeros>
  %hw = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %qkv = sbp.linear %tok, %wq : (tensor<2x4x16xf32>, tensor<0x16xf32>) -> tensor<2x4x0xf32>
  %o, %l = sbp.attention %qkv heads 1 : (tensor<2x4x0xf32>) -> (tensor<2x4x0xf32>, tensor<2x4x1xf32>)
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %hw : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}
