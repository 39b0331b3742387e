// RUN: sbp-opt %s -split-input-file -sbp-decompose -sbp-insert-masks -sbp-sink-take-token | FileCheck %s

// Class-token pooling reads one row of the last block's output: the
// take_token moves up through the token-wise ops that make it, so the block's
// output projection, residual adds, norm2 and MLP and the final norm run on
// the [4, 24] class-token rows. It stops at the attention (which mixes
// tokens) and at the residual stream before the block (norm1 reads it in
// full). The MLP branch's SBP gate goes: its group's prefix token (the class
// token) is kept at every step, so the gate is the identity on that row.
// CHECK-LABEL: sbp.model @vit
// CHECK:         %[[X0:.*]] = sbp.cls_concat
// CHECK:         %[[O:.*]], %{{.*}} = sbp.attention %{{.*}}, %{{.*}} heads 3 sbp @m  drop_qkv
// CHECK-NEXT:    %[[OT:.*]] = sbp.take_token %[[O]] index 0 : (tensor<4x17x24xf32>) -> tensor<4x24xf32>
// CHECK-NEXT:    %[[P:.*]] = sbp.linear %[[OT]], %{{.*}} {sbp.region = "blocks.0.attn"} : (tensor<4x24xf32>, tensor<24x24xf32>) -> tensor<4x24xf32>
// CHECK-NEXT:    %[[PB:.*]] = sbp.bias_add %[[P]]
// CHECK-NEXT:    %[[X0T:.*]] = sbp.take_token %[[X0]] index 0 : (tensor<4x17x24xf32>) -> tensor<4x24xf32>
// CHECK-NEXT:    %[[R1:.*]] = sbp.add %[[X0T]], %[[PB]] : (tensor<4x24xf32>, tensor<4x24xf32>) -> tensor<4x24xf32>
// CHECK-NEXT:    sbp.layer_norm %[[R1]], {{.*}} {eps = {{.*}}, sbp.region = "blocks.0.mlp"} : (tensor<4x24xf32>, tensor<24xf32>, tensor<24xf32>) -> tensor<4x24xf32>
// CHECK-NEXT:    sbp.linear {{.*}} -> tensor<4x48xf32>
// CHECK-NEXT:    sbp.bias_add {{.*}} -> tensor<4x48xf32>
// CHECK-NEXT:    sbp.gelu {{.*}} -> tensor<4x48xf32>
// CHECK-NEXT:    sbp.linear {{.*}} -> tensor<4x24xf32>
// CHECK-NEXT:    %[[M:.*]] = sbp.bias_add {{.*}} -> tensor<4x24xf32>
// CHECK-NEXT:    %[[R2:.*]] = sbp.add %[[R1]], %[[M]] : (tensor<4x24xf32>, tensor<4x24xf32>) -> tensor<4x24xf32>
// CHECK-NEXT:    %[[N:.*]] = sbp.layer_norm %[[R2]], {{.*}} -> tensor<4x24xf32>
// CHECK-NEXT:    sbp.linear %[[N]], %{{.*}} : (tensor<4x24xf32>, tensor<10x24xf32>) -> tensor<4x10xf32>
// CHECK-NOT:     sbp.grad_gate
// CHECK-NOT:     sbp.take_token
// CHECK:         sbp.output
sbp.model @vit attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.9, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.5 grid [4, 4] prefix 1
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %pe_w = sbp.param "patch_embed.proj.weight" : tensor<24x3x4x4xf32> init<trunc_normal, 0.02>
  %cls = sbp.param "cls_token" : tensor<1x1x24xf32> init<normal, 1.0e-6>
  %n_w = sbp.param "norm.weight" : tensor<24xf32> init<ones>
  %n_b = sbp.param "norm.bias" : tensor<24xf32> init<zeros>
  %h_w = sbp.param "head.weight" : tensor<10x24xf32> init<trunc_normal, 0.02>
  %tok = sbp.patchify %images patch 4 : tensor<4x3x16x16xf32> -> tensor<4x16x48xf32>
  %e0 = sbp.linear %tok, %pe_w : (tensor<4x16x48xf32>, tensor<24x3x4x4xf32>) -> tensor<4x16x24xf32>
  %x0 = sbp.cls_concat %e0, %cls : (tensor<4x16x24xf32>, tensor<1x1x24xf32>) -> tensor<4x17x24xf32>
  %x1 = sbp.vit_block "blocks.0" %x0 heads 3 hidden 48 mlp_sbp @m attn_sbp @m drop_qkv : tensor<4x17x24xf32>
  %x2 = sbp.layer_norm %x1, %n_w, %n_b {eps = 1.0e-6 : f64} : (tensor<4x17x24xf32>, tensor<24xf32>, tensor<24xf32>) -> tensor<4x17x24xf32>
  %pool = sbp.take_token %x2 index 0 : (tensor<4x17x24xf32>) -> tensor<4x24xf32>
  %logits = sbp.linear %pool, %h_w : (tensor<4x24xf32>, tensor<10x24xf32>) -> tensor<4x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// Without a prefix, token 0 is a patch token the mask may drop: the gate
// stays, and with it the MLP branch on every row; the take_token stops at
// the gate (and at the stream before it, which norm2 reads in full).
// CHECK-LABEL: sbp.model @no_prefix
// CHECK:         %[[G:.*]] = sbp.grad_gate %{{.*}}, %{{.*}} {sbp.region = "blocks.0.mlp"} : (tensor<4x16x24xf32>, tensor<8xi32>) -> tensor<4x16x24xf32>
// CHECK-NEXT:    %[[A:.*]] = sbp.take_token %{{.*}} index 0 : (tensor<4x16x24xf32>) -> tensor<4x24xf32>
// CHECK-NEXT:    %[[B:.*]] = sbp.take_token %[[G]] index 0 : (tensor<4x16x24xf32>) -> tensor<4x24xf32>
// CHECK-NEXT:    sbp.add %[[A]], %[[B]] : (tensor<4x24xf32>, tensor<4x24xf32>) -> tensor<4x24xf32>

sbp.model @no_prefix attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.9, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.5 grid [4, 4]
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %pe_w = sbp.param "patch_embed.proj.weight" : tensor<24x3x4x4xf32> init<trunc_normal, 0.02>
  %h_w = sbp.param "head.weight" : tensor<10x24xf32> init<trunc_normal, 0.02>
  %tok = sbp.patchify %images patch 4 : tensor<4x3x16x16xf32> -> tensor<4x16x48xf32>
  %x0 = sbp.linear %tok, %pe_w : (tensor<4x16x48xf32>, tensor<24x3x4x4xf32>) -> tensor<4x16x24xf32>
  %x1 = sbp.vit_block "blocks.0" %x0 heads 3 hidden 48 mlp_sbp @m : tensor<4x16x24xf32>
  %pool = sbp.take_token %x1 index 0 : (tensor<4x16x24xf32>) -> tensor<4x24xf32>
  %logits = sbp.linear %pool, %h_w : (tensor<4x24xf32>, tensor<10x24xf32>) -> tensor<4x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// A value that another op reads in full (here mean pooling beside class-token
// pooling) keeps its rows: the take_token stays where it is.
// CHECK-LABEL: sbp.model @read_in_full
// CHECK:         %[[GE:.*]] = sbp.gelu %{{.*}} : (tensor<4x16x24xf32>) -> tensor<4x16x24xf32>
// CHECK-NEXT:    sbp.take_token %[[GE]] index 0
// CHECK-NEXT:    sbp.mean_tokens %[[GE]]

sbp.model @read_in_full attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.9, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %pe_w = sbp.param "patch_embed.proj.weight" : tensor<24x3x4x4xf32> init<trunc_normal, 0.02>
  %h_w = sbp.param "head.weight" : tensor<10x24xf32> init<trunc_normal, 0.02>
  %tok = sbp.patchify %images patch 4 : tensor<4x3x16x16xf32> -> tensor<4x16x48xf32>
  %x0 = sbp.linear %tok, %pe_w : (tensor<4x16x48xf32>, tensor<24x3x4x4xf32>) -> tensor<4x16x24xf32>
  %x1 = sbp.gelu %x0 : (tensor<4x16x24xf32>) -> tensor<4x16x24xf32>
  %pool = sbp.take_token %x1 index 0 : (tensor<4x16x24xf32>) -> tensor<4x24xf32>
  %avg = sbp.mean_tokens %x1 : (tensor<4x16x24xf32>) -> tensor<4x24xf32>
  %both = sbp.add %pool, %avg : (tensor<4x24xf32>, tensor<4x24xf32>) -> tensor<4x24xf32>
  %logits = sbp.linear %both, %h_w : (tensor<4x24xf32>, tensor<10x24xf32>) -> tensor<4x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}
