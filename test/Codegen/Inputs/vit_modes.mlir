// A tiny ViT whose three blocks use the three attention modes (drop_qkv,
// drop_query, drop_head), each with an SBP MLP branch: 8x8x3 images, 4x4
// patches (2x2 tokens + class token), width 12, 3 heads, MLP 24, batch 2.
sbp.model @vit_modes attributes {optimizer = #sbp.adamw<lr = 0.001, beta1 = 0.9, beta2 = 0.999, eps = 1.0e-8, weight_decay = 0.05>} {
  sbp.mask_group @m keep 0.5 grid [2, 2] prefix 1
  sbp.mask_group @h keep 0.5 heads [1, 3]
  %images = sbp.input "images" : tensor<2x3x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %pe_w = sbp.param "patch_embed.proj.weight" : tensor<12x3x4x4xf32> init<trunc_normal, 0.02>
  %pe_b = sbp.param "patch_embed.proj.bias" : tensor<12xf32> init<zeros>
  %cls = sbp.param "cls_token" : tensor<1x1x12xf32> init<normal, 1.0e-6>
  %pos = sbp.param "pos_embed" : tensor<1x5x12xf32> init<trunc_normal, 0.02>
  %nf_w = sbp.param "norm.weight" : tensor<12xf32> init<ones>
  %nf_b = sbp.param "norm.bias" : tensor<12xf32> init<zeros>
  %h_w = sbp.param "head.weight" : tensor<10x12xf32> init<trunc_normal, 0.02>
  %h_b = sbp.param "head.bias" : tensor<10xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x3x8x8xf32> -> tensor<2x4x48xf32>
  %e0 = sbp.linear %tok, %pe_w : (tensor<2x4x48xf32>, tensor<12x3x4x4xf32>) -> tensor<2x4x12xf32>
  %e1 = sbp.bias_add %e0, %pe_b : (tensor<2x4x12xf32>, tensor<12xf32>) -> tensor<2x4x12xf32>
  %e2 = sbp.cls_concat %e1, %cls : (tensor<2x4x12xf32>, tensor<1x1x12xf32>) -> tensor<2x5x12xf32>
  %x0 = sbp.pos_add %e2, %pos : (tensor<2x5x12xf32>, tensor<1x5x12xf32>) -> tensor<2x5x12xf32>
  %x1 = sbp.vit_block "blocks.0" %x0 heads 3 hidden 24 mlp_sbp @m attn_sbp @m drop_qkv : tensor<2x5x12xf32>
  %x2 = sbp.vit_block "blocks.1" %x1 heads 3 hidden 24 mlp_sbp @m attn_sbp @m drop_query : tensor<2x5x12xf32>
  %x3 = sbp.vit_block "blocks.2" %x2 heads 3 hidden 24 mlp_sbp @m attn_sbp @h drop_head : tensor<2x5x12xf32>
  %nf = sbp.layer_norm %x3, %nf_w, %nf_b {eps = 1.0e-6 : f64} : (tensor<2x5x12xf32>, tensor<12xf32>, tensor<12xf32>) -> tensor<2x5x12xf32>
  %pool = sbp.take_token %nf index 0 : (tensor<2x5x12xf32>) -> tensor<2x12xf32>
  %l0 = sbp.linear %pool, %h_w : (tensor<2x12xf32>, tensor<10x12xf32>) -> tensor<2x10xf32>
  %logits = sbp.bias_add %l0, %h_b : (tensor<2x10xf32>, tensor<10xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}
