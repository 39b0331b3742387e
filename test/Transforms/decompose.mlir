// RUN: sbp-opt %s -split-input-file -sbp-decompose | FileCheck %s
// RUN: sbp-opt %s -split-input-file -sbp-decompose | FileCheck %s --check-prefix=NOBLOCK

// sbp-decompose expands each sbp.vit_block into timm's pre-norm Block:
//   x1 = x + proj(attention(qkv(norm1(x))))
//   x2 = x1 + fc2(gelu(fc1(norm2(x1))))
// with the block's parameters (before its ops, in timm's state_dict order,
// with timm's initialisers) under the block's name. The attention map is an
// SBP map (`sbp @g mode`) when the block has attn_sbp, and then the attention
// branch's ops are tagged with the region "<name>.attn"; the MLP is an
// sbp.branch named "<name>.mlp" when the block has mlp_sbp, else inline.

// NOBLOCK-NOT: sbp.vit_block

// One block with both SBP regions (drop_qkv), width 24, 3 heads, MLP 48, 17
// tokens (class token + 4x4).

// CHECK-LABEL: sbp.model @vit_sbp
// CHECK:         %[[X0:.*]] = sbp.cls_concat
// The parameters: norm1, attn.qkv [3D, D], attn.proj [D, D], norm2,
// mlp.fc1 [hidden, D], mlp.fc2 [D, hidden], each weight then bias.
// CHECK-NEXT:    %[[N1W:.*]] = sbp.param "blocks.0.norm1.weight" : tensor<24xf32> init <ones>{{$}}
// CHECK-NEXT:    %[[N1B:.*]] = sbp.param "blocks.0.norm1.bias" : tensor<24xf32> init <zeros>{{$}}
// CHECK-NEXT:    %[[QW:.*]] = sbp.param "blocks.0.attn.qkv.weight" : tensor<72x24xf32> init <trunc_normal, 2.000000e-02>{{$}}
// CHECK-NEXT:    %[[QB:.*]] = sbp.param "blocks.0.attn.qkv.bias" : tensor<72xf32> init <zeros>{{$}}
// CHECK-NEXT:    %[[PW:.*]] = sbp.param "blocks.0.attn.proj.weight" : tensor<24x24xf32> init <trunc_normal, 2.000000e-02>{{$}}
// CHECK-NEXT:    %[[PB:.*]] = sbp.param "blocks.0.attn.proj.bias" : tensor<24xf32> init <zeros>{{$}}
// CHECK-NEXT:    %[[N2W:.*]] = sbp.param "blocks.0.norm2.weight" : tensor<24xf32> init <ones>{{$}}
// CHECK-NEXT:    %[[N2B:.*]] = sbp.param "blocks.0.norm2.bias" : tensor<24xf32> init <zeros>{{$}}
// CHECK-NEXT:    %[[F1W:.*]] = sbp.param "blocks.0.mlp.fc1.weight" : tensor<48x24xf32> init <trunc_normal, 2.000000e-02>{{$}}
// CHECK-NEXT:    %[[F1B:.*]] = sbp.param "blocks.0.mlp.fc1.bias" : tensor<48xf32> init <zeros>{{$}}
// CHECK-NEXT:    %[[F2W:.*]] = sbp.param "blocks.0.mlp.fc2.weight" : tensor<24x48xf32> init <trunc_normal, 2.000000e-02>{{$}}
// CHECK-NEXT:    %[[F2B:.*]] = sbp.param "blocks.0.mlp.fc2.bias" : tensor<24xf32> init <zeros>{{$}}
// The attention branch, every op tagged with the region blocks.0.attn; the
// default eps is timm's 1e-6.
// CHECK-NEXT:    %[[N1:.*]] = sbp.layer_norm %[[X0]], %[[N1W]], %[[N1B]] {eps = 9.9999999999999995E-7 : f64, sbp.region = "blocks.0.attn"} : (tensor<4x17x24xf32>, tensor<24xf32>, tensor<24xf32>) -> tensor<4x17x24xf32>
// CHECK-NEXT:    %[[Q0:.*]] = sbp.linear %[[N1]], %[[QW]] {sbp.region = "blocks.0.attn"} : (tensor<4x17x24xf32>, tensor<72x24xf32>) -> tensor<4x17x72xf32>
// CHECK-NEXT:    %[[QKV:.*]] = sbp.bias_add %[[Q0]], %[[QB]] {sbp.region = "blocks.0.attn"} : (tensor<4x17x72xf32>, tensor<72xf32>) -> tensor<4x17x72xf32>
// CHECK-NEXT:    %[[O:.*]], %[[LSE:.*]] = sbp.attention %[[QKV]] heads 3 sbp @m drop_qkv {sbp.region = "blocks.0.attn"} : (tensor<4x17x72xf32>) -> (tensor<4x17x24xf32>, tensor<4x17x3xf32>)
// CHECK-NEXT:    %[[P0:.*]] = sbp.linear %[[O]], %[[PW]] {sbp.region = "blocks.0.attn"} : (tensor<4x17x24xf32>, tensor<24x24xf32>) -> tensor<4x17x24xf32>
// CHECK-NEXT:    %[[P1:.*]] = sbp.bias_add %[[P0]], %[[PB]] {sbp.region = "blocks.0.attn"} : (tensor<4x17x24xf32>, tensor<24xf32>) -> tensor<4x17x24xf32>
// The residual add is on the stream, not in the region.
// CHECK-NEXT:    %[[X1:.*]] = sbp.add %[[X0]], %[[P1]] : (tensor<4x17x24xf32>, tensor<4x17x24xf32>) -> tensor<4x17x24xf32>
// The MLP branch: an SBP region of @m named blocks.0.mlp.
// CHECK-NEXT:    %[[Y:.*]] = sbp.branch @m(%[[X1]]) {name = "blocks.0.mlp"} : (tensor<4x17x24xf32>) -> tensor<4x17x24xf32> {
// CHECK-NEXT:    ^bb0(%[[A:.*]]: tensor<4x17x24xf32>):
// CHECK-NEXT:      %[[N2:.*]] = sbp.layer_norm %[[A]], %[[N2W]], %[[N2B]] {eps = 9.9999999999999995E-7 : f64} : (tensor<4x17x24xf32>, tensor<24xf32>, tensor<24xf32>) -> tensor<4x17x24xf32>
// CHECK-NEXT:      %[[H0:.*]] = sbp.linear %[[N2]], %[[F1W]] : (tensor<4x17x24xf32>, tensor<48x24xf32>) -> tensor<4x17x48xf32>
// CHECK-NEXT:      %[[H1:.*]] = sbp.bias_add %[[H0]], %[[F1B]] : (tensor<4x17x48xf32>, tensor<48xf32>) -> tensor<4x17x48xf32>
// CHECK-NEXT:      %[[G:.*]] = sbp.gelu %[[H1]] : (tensor<4x17x48xf32>) -> tensor<4x17x48xf32>
// CHECK-NEXT:      %[[M0:.*]] = sbp.linear %[[G]], %[[F2W]] : (tensor<4x17x48xf32>, tensor<24x48xf32>) -> tensor<4x17x24xf32>
// CHECK-NEXT:      %[[M1:.*]] = sbp.bias_add %[[M0]], %[[F2B]] : (tensor<4x17x24xf32>, tensor<24xf32>) -> tensor<4x17x24xf32>
// CHECK-NEXT:      sbp.yield %[[M1]] : tensor<4x17x24xf32>
// CHECK-NEXT:    }
// CHECK-NEXT:    %[[X2:.*]] = sbp.add %[[X1]], %[[Y]] : (tensor<4x17x24xf32>, tensor<4x17x24xf32>) -> tensor<4x17x24xf32>
// CHECK-NEXT:    sbp.take_token %[[X2]] index 0
sbp.model @vit_sbp attributes {optimizer = #sbp.adamw<lr = 0.001, beta1 = 0.9, beta2 = 0.999, eps = 1.0e-8, weight_decay = 0.05>} {
  sbp.mask_group @m keep 0.5 grid [4, 4] prefix 1
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %pe_w = sbp.param "patch_embed.proj.weight" : tensor<24x3x4x4xf32> init<trunc_normal, 0.02>
  %cls = sbp.param "cls_token" : tensor<1x1x24xf32> init<normal, 1.0e-6>
  %h_w = sbp.param "head.weight" : tensor<10x24xf32> init<trunc_normal, 0.02>
  %tok = sbp.patchify %images patch 4 : tensor<4x3x16x16xf32> -> tensor<4x16x48xf32>
  %e0 = sbp.linear %tok, %pe_w : (tensor<4x16x48xf32>, tensor<24x3x4x4xf32>) -> tensor<4x16x24xf32>
  %x0 = sbp.cls_concat %e0, %cls : (tensor<4x16x24xf32>, tensor<1x1x24xf32>) -> tensor<4x17x24xf32>
  %x1 = sbp.vit_block "blocks.0" %x0 heads 3 hidden 48 mlp_sbp @m attn_sbp @m drop_qkv : tensor<4x17x24xf32>
  %pool = sbp.take_token %x1 index 0 : (tensor<4x17x24xf32>) -> tensor<4x24xf32>
  %logits = sbp.linear %pool, %h_w : (tensor<4x24xf32>, tensor<10x24xf32>) -> tensor<4x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// A block without SBP: a plain attention, the MLP inline, no region tag;
// the block's eps (2.5e-4) reaches both LayerNorms; 2 heads, MLP 96.

// CHECK-LABEL: sbp.model @vit_plain
// CHECK:         %[[X0:.*]] = sbp.cls_concat
// CHECK-NEXT:    %[[N1W:.*]] = sbp.param "b.norm1.weight" : tensor<24xf32> init <ones>
// CHECK-NEXT:    %[[N1B:.*]] = sbp.param "b.norm1.bias"
// CHECK-NEXT:    %[[QW:.*]] = sbp.param "b.attn.qkv.weight" : tensor<72x24xf32>
// CHECK-NEXT:    %[[QB:.*]] = sbp.param "b.attn.qkv.bias" : tensor<72xf32>
// CHECK-NEXT:    %[[PW:.*]] = sbp.param "b.attn.proj.weight" : tensor<24x24xf32>
// CHECK-NEXT:    %[[PB:.*]] = sbp.param "b.attn.proj.bias" : tensor<24xf32>
// CHECK-NEXT:    %[[N2W:.*]] = sbp.param "b.norm2.weight" : tensor<24xf32> init <ones>
// CHECK-NEXT:    %[[N2B:.*]] = sbp.param "b.norm2.bias"
// CHECK-NEXT:    %[[F1W:.*]] = sbp.param "b.mlp.fc1.weight" : tensor<96x24xf32>
// CHECK-NEXT:    %[[F1B:.*]] = sbp.param "b.mlp.fc1.bias" : tensor<96xf32>
// CHECK-NEXT:    %[[F2W:.*]] = sbp.param "b.mlp.fc2.weight" : tensor<24x96xf32>
// CHECK-NEXT:    %[[F2B:.*]] = sbp.param "b.mlp.fc2.bias" : tensor<24xf32>
// CHECK-NEXT:    %[[N1:.*]] = sbp.layer_norm %[[X0]], %[[N1W]], %[[N1B]] {eps = 2.500000e-04 : f64} :
// CHECK-NEXT:    %[[Q0:.*]] = sbp.linear %[[N1]], %[[QW]] :
// CHECK-NEXT:    %[[QKV:.*]] = sbp.bias_add %[[Q0]], %[[QB]] :
// CHECK-NEXT:    %[[O:.*]], %{{.*}} = sbp.attention %[[QKV]] heads 2 : (tensor<4x17x72xf32>) -> (tensor<4x17x24xf32>, tensor<4x17x2xf32>)
// CHECK-NEXT:    %[[P0:.*]] = sbp.linear %[[O]], %[[PW]] :
// CHECK-NEXT:    %[[P1:.*]] = sbp.bias_add %[[P0]], %[[PB]] :
// CHECK-NEXT:    %[[X1:.*]] = sbp.add %[[X0]], %[[P1]] :
// CHECK-NEXT:    %[[N2:.*]] = sbp.layer_norm %[[X1]], %[[N2W]], %[[N2B]] {eps = 2.500000e-04 : f64} :
// CHECK-NEXT:    %[[H0:.*]] = sbp.linear %[[N2]], %[[F1W]] : (tensor<4x17x24xf32>, tensor<96x24xf32>) -> tensor<4x17x96xf32>
// CHECK-NEXT:    %[[H1:.*]] = sbp.bias_add %[[H0]], %[[F1B]] :
// CHECK-NEXT:    %[[G:.*]] = sbp.gelu %[[H1]] :
// CHECK-NEXT:    %[[M0:.*]] = sbp.linear %[[G]], %[[F2W]] : (tensor<4x17x96xf32>, tensor<24x96xf32>) -> tensor<4x17x24xf32>
// CHECK-NEXT:    %[[M1:.*]] = sbp.bias_add %[[M0]], %[[F2B]] :
// CHECK-NEXT:    %[[X2:.*]] = sbp.add %[[X1]], %[[M1]] :
// CHECK-NEXT:    sbp.take_token %[[X2]] index 0
// CHECK-NOT:     sbp.branch
// CHECK:         sbp.output
sbp.model @vit_plain attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.9, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %pe_w = sbp.param "patch_embed.proj.weight" : tensor<24x3x4x4xf32> init<trunc_normal, 0.02>
  %cls = sbp.param "cls_token" : tensor<1x1x24xf32> init<normal, 1.0e-6>
  %h_w = sbp.param "head.weight" : tensor<10x24xf32> init<trunc_normal, 0.02>
  %tok = sbp.patchify %images patch 4 : tensor<4x3x16x16xf32> -> tensor<4x16x48xf32>
  %e0 = sbp.linear %tok, %pe_w : (tensor<4x16x48xf32>, tensor<24x3x4x4xf32>) -> tensor<4x16x24xf32>
  %x0 = sbp.cls_concat %e0, %cls : (tensor<4x16x24xf32>, tensor<1x1x24xf32>) -> tensor<4x17x24xf32>
  %x1 = sbp.vit_block "b" %x0 heads 2 hidden 96 {eps = 2.5e-4 : f64} : tensor<4x17x24xf32>
  %pool = sbp.take_token %x1 index 0 : (tensor<4x17x24xf32>) -> tensor<4x24xf32>
  %logits = sbp.linear %pool, %h_w : (tensor<4x24xf32>, tensor<10x24xf32>) -> tensor<4x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// Two blocks, each with one SBP region: blocks.0 only its attention map
// (drop_head under a heads group), blocks.1 only its MLP. Each block's
// parameters come right before its own ops, and the residual streams chain.

// CHECK-LABEL: sbp.model @vit_two
// CHECK:         %[[X0:.*]] = sbp.cls_concat
// CHECK-NEXT:    sbp.param "blocks.0.norm1.weight"
// CHECK-COUNT-11: sbp.param "blocks.0.
// CHECK-NEXT:    sbp.layer_norm %[[X0]], {{.*}}sbp.region = "blocks.0.attn"
// CHECK-NEXT:    sbp.linear {{.*}}{sbp.region = "blocks.0.attn"}
// CHECK-NEXT:    %[[QKV0:.*]] = sbp.bias_add {{.*}}{sbp.region = "blocks.0.attn"}
// CHECK-NEXT:    %[[O0:.*]], %{{.*}} = sbp.attention %[[QKV0]] heads 3 sbp @h drop_head {sbp.region = "blocks.0.attn"} :
// CHECK-NEXT:    sbp.linear %[[O0]], {{.*}}{sbp.region = "blocks.0.attn"}
// CHECK-NEXT:    %[[PB0:.*]] = sbp.bias_add {{.*}}{sbp.region = "blocks.0.attn"}
// CHECK-NEXT:    %[[X1:.*]] = sbp.add %[[X0]], %[[PB0]] :
// blocks.0's MLP is inline and untagged (its attention region ends at the add).
// CHECK-NEXT:    sbp.layer_norm %[[X1]], {{[^{]*}}{eps = 9.9999999999999995E-7 : f64} :
// CHECK-NEXT:    sbp.linear {{[^{]*}}: (tensor<4x17x24xf32>, tensor<48x24xf32>)
// CHECK-NEXT:    sbp.bias_add {{[^{]*}}:
// CHECK-NEXT:    sbp.gelu {{[^{]*}}:
// CHECK-NEXT:    sbp.linear {{[^{]*}}: (tensor<4x17x48xf32>, tensor<24x48xf32>)
// CHECK-NEXT:    %[[MB0:.*]] = sbp.bias_add {{[^{]*}}:
// CHECK-NEXT:    %[[X2:.*]] = sbp.add %[[X1]], %[[MB0]] :
// blocks.1: its parameters after blocks.0's ops; a plain attention, no tags.
// CHECK-NEXT:    sbp.param "blocks.1.norm1.weight"
// CHECK-COUNT-11: sbp.param "blocks.1.
// CHECK-NEXT:    sbp.layer_norm %[[X2]], {{[^{]*}}{eps = 9.9999999999999995E-7 : f64} :
// CHECK-NEXT:    sbp.linear {{[^{]*}}:
// CHECK-NEXT:    %[[QKV1:.*]] = sbp.bias_add {{[^{]*}}:
// CHECK-NEXT:    %[[O1:.*]], %{{.*}} = sbp.attention %[[QKV1]] heads 3 : (tensor<4x17x72xf32>)
// CHECK-NEXT:    sbp.linear %[[O1]], {{[^{]*}}:
// CHECK-NEXT:    %[[PB1:.*]] = sbp.bias_add {{[^{]*}}:
// CHECK-NEXT:    %[[X3:.*]] = sbp.add %[[X2]], %[[PB1]] :
// CHECK-NEXT:    %[[Y1:.*]] = sbp.branch @m(%[[X3]]) {name = "blocks.1.mlp"}
// CHECK:         sbp.yield
// CHECK-NEXT:    }
// CHECK-NEXT:    %[[X4:.*]] = sbp.add %[[X3]], %[[Y1]] :
// CHECK-NEXT:    sbp.take_token %[[X4]] index 0
// Only blocks.0's attention ops carry a region tag.
// CHECK-NOT:     sbp.region
// CHECK:         sbp.output
sbp.model @vit_two attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.9, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.5 grid [4, 4] prefix 1
  sbp.mask_group @h keep 0.5 heads [1, 3]
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %pe_w = sbp.param "patch_embed.proj.weight" : tensor<24x3x4x4xf32> init<trunc_normal, 0.02>
  %cls = sbp.param "cls_token" : tensor<1x1x24xf32> init<normal, 1.0e-6>
  %h_w = sbp.param "head.weight" : tensor<10x24xf32> init<trunc_normal, 0.02>
  %tok = sbp.patchify %images patch 4 : tensor<4x3x16x16xf32> -> tensor<4x16x48xf32>
  %e0 = sbp.linear %tok, %pe_w : (tensor<4x16x48xf32>, tensor<24x3x4x4xf32>) -> tensor<4x16x24xf32>
  %x0 = sbp.cls_concat %e0, %cls : (tensor<4x16x24xf32>, tensor<1x1x24xf32>) -> tensor<4x17x24xf32>
  %x1 = sbp.vit_block "blocks.0" %x0 heads 3 hidden 48 attn_sbp @h drop_head : tensor<4x17x24xf32>
  %x2 = sbp.vit_block "blocks.1" %x1 heads 3 hidden 48 mlp_sbp @m : tensor<4x17x24xf32>
  %pool = sbp.take_token %x2 index 0 : (tensor<4x17x24xf32>) -> tensor<4x24xf32>
  %logits = sbp.linear %pool, %h_w : (tensor<4x24xf32>, tensor<10x24xf32>) -> tensor<4x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// -----

// drop_query on the attention map: the mode passes through unchanged.

// CHECK-LABEL: sbp.model @vit_query
// CHECK:         sbp.attention %{{.*}} heads 3 sbp @m drop_query {sbp.region = "b.attn"} : (tensor<4x17x72xf32>)
// CHECK-NOT:     sbp.branch
sbp.model @vit_query attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.9, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.5 grid [4, 4] prefix 1
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %pe_w = sbp.param "patch_embed.proj.weight" : tensor<24x3x4x4xf32> init<trunc_normal, 0.02>
  %cls = sbp.param "cls_token" : tensor<1x1x24xf32> init<normal, 1.0e-6>
  %h_w = sbp.param "head.weight" : tensor<10x24xf32> init<trunc_normal, 0.02>
  %tok = sbp.patchify %images patch 4 : tensor<4x3x16x16xf32> -> tensor<4x16x48xf32>
  %e0 = sbp.linear %tok, %pe_w : (tensor<4x16x48xf32>, tensor<24x3x4x4xf32>) -> tensor<4x16x24xf32>
  %x0 = sbp.cls_concat %e0, %cls : (tensor<4x16x24xf32>, tensor<1x1x24xf32>) -> tensor<4x17x24xf32>
  %x1 = sbp.vit_block "b" %x0 heads 3 hidden 48 attn_sbp @m drop_query : tensor<4x17x24xf32>
  %pool = sbp.take_token %x1 index 0 : (tensor<4x17x24xf32>) -> tensor<4x24xf32>
  %logits = sbp.linear %pool, %h_w : (tensor<4x24xf32>, tensor<10x24xf32>) -> tensor<4x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}
