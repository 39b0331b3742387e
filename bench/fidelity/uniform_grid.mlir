// Fashion-MNIST ViT of samples/vit_fmnist.mlir (depth 6, SBP on the MLP and attention (drop_qkv) of
// blocks 2-5, the paper's 2/3 of the blocks) for the gradient fidelity study (docs/fidelity.md):
// uniform keep 0.5, one grid mask shared by all SBP blocks.
sbp.model @vit_fmnist attributes {optimizer = #sbp.adamw<lr = 0.001, beta1 = 0.9, beta2 = 0.999, eps = 1.0e-8, weight_decay = 0.05>} {
  sbp.mask_group @m keep 0.5 grid [7, 7] prefix 1
  %images = sbp.input "images" : tensor<128x1x28x28xf32>
  %labels = sbp.input "labels" : tensor<128xi32>
  %pe_w = sbp.param "patch_embed.proj.weight" : tensor<128x1x4x4xf32> init<trunc_normal, 0.02>
  %pe_b = sbp.param "patch_embed.proj.bias" : tensor<128xf32> init<zeros>
  %cls = sbp.param "cls_token" : tensor<1x1x128xf32> init<normal, 1.0e-6>
  %pos = sbp.param "pos_embed" : tensor<1x50x128xf32> init<trunc_normal, 0.02>
  %nf_w = sbp.param "norm.weight" : tensor<128xf32> init<ones>
  %nf_b = sbp.param "norm.bias" : tensor<128xf32> init<zeros>
  %h_w = sbp.param "head.weight" : tensor<10x128xf32> init<trunc_normal, 0.02>
  %h_b = sbp.param "head.bias" : tensor<10xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<128x1x28x28xf32> -> tensor<128x49x16xf32>
  %e0 = sbp.linear %tok, %pe_w : (tensor<128x49x16xf32>, tensor<128x1x4x4xf32>) -> tensor<128x49x128xf32>
  %e1 = sbp.bias_add %e0, %pe_b : (tensor<128x49x128xf32>, tensor<128xf32>) -> tensor<128x49x128xf32>
  %e2 = sbp.cls_concat %e1, %cls : (tensor<128x49x128xf32>, tensor<1x1x128xf32>) -> tensor<128x50x128xf32>
  %x0 = sbp.pos_add %e2, %pos : (tensor<128x50x128xf32>, tensor<1x50x128xf32>) -> tensor<128x50x128xf32>
  %x1 = sbp.vit_block "blocks.0" %x0 heads 4 hidden 256 : tensor<128x50x128xf32>
  %x2 = sbp.vit_block "blocks.1" %x1 heads 4 hidden 256 : tensor<128x50x128xf32>
  %x3 = sbp.vit_block "blocks.2" %x2 heads 4 hidden 256 mlp_sbp @m attn_sbp @m drop_qkv : tensor<128x50x128xf32>
  %x4 = sbp.vit_block "blocks.3" %x3 heads 4 hidden 256 mlp_sbp @m attn_sbp @m drop_qkv : tensor<128x50x128xf32>
  %x5 = sbp.vit_block "blocks.4" %x4 heads 4 hidden 256 mlp_sbp @m attn_sbp @m drop_qkv : tensor<128x50x128xf32>
  %x6 = sbp.vit_block "blocks.5" %x5 heads 4 hidden 256 mlp_sbp @m attn_sbp @m drop_qkv : tensor<128x50x128xf32>
  %nf = sbp.layer_norm %x6, %nf_w, %nf_b {eps = 1.0e-6 : f64} : (tensor<128x50x128xf32>, tensor<128xf32>, tensor<128xf32>) -> tensor<128x50x128xf32>
  %pool = sbp.take_token %nf index 0 : (tensor<128x50x128xf32>) -> tensor<128x128xf32>
  %l0 = sbp.linear %pool, %h_w : (tensor<128x128xf32>, tensor<10x128xf32>) -> tensor<128x10xf32>
  %logits = sbp.bias_add %l0, %h_b : (tensor<128x10xf32>, tensor<10xf32>) -> tensor<128x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<128x10xf32>, tensor<128xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<128x10xf32>
}
