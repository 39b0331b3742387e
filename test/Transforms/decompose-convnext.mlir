// RUN: sbp-opt %s -sbp-decompose | FileCheck %s
// RUN: sbp-opt %s -sbp-decompose | FileCheck %s --check-prefix=NOCOMPOSITE

// sbp-decompose expands sbp.convnext_block into timm's ConvNeXtBlock,
//   x + gamma * fc2(gelu(fc1(norm(conv_dw(x)))))
// (norm .. gamma one sbp.branch "<name>.mlp" with mlp_sbp), and
// sbp.convnext_downsample into LayerNorm (.0), space_to_depth and the 2x2
// stride-2 conv as a linear (.1, weight [out, C, 2, 2]; an sbp.branch
// "<name>.reduction" with sbp). Parameters come first, in timm's state_dict
// order (gamma, the block's own parameter, before its children's), with
// timm's initialisers (gamma the constant 1e-6).

// NOCOMPOSITE-NOT: sbp.convnext_

sbp.model @convnext attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @s0 keep 0.5 grid [4, 4]
  sbp.mask_group @s1 keep 0.5 grid [2, 2]
  %images = sbp.input "images" : tensor<2x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "stem.0.weight" : tensor<8x3x4x4xf32> init<trunc_normal, 0.02>
  %tok = sbp.patchify %images patch 4 : tensor<2x3x16x16xf32> -> tensor<2x16x48xf32>
  %x0 = sbp.linear %tok, %w : (tensor<2x16x48xf32>, tensor<8x3x4x4xf32>) -> tensor<2x16x8xf32>
  %x1 = sbp.convnext_block "stages.0.blocks.0" %x0 grid [4, 4] hidden 32 mlp_sbp @s0 : tensor<2x16x8xf32>
  %x2 = sbp.convnext_downsample "stages.1.downsample" %x1 grid [4, 4] out 16 sbp @s1 : (tensor<2x16x8xf32>) -> tensor<2x4x16xf32>
  %x3 = sbp.convnext_block "stages.1.blocks.0" %x2 grid [2, 2] hidden 64 : tensor<2x4x16xf32>
  %x4 = sbp.convnext_downsample "stages.2.downsample" %x3 grid [2, 2] out 16 : (tensor<2x4x16xf32>) -> tensor<2x1x16xf32>
  %pool = sbp.mean_tokens %x4 : (tensor<2x1x16xf32>) -> tensor<2x16xf32>
  %hw = sbp.param "head.fc.weight" : tensor<10x16xf32> init<trunc_normal, 0.02>
  %logits = sbp.linear %pool, %hw : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// CHECK-LABEL: sbp.model @convnext
// CHECK:         %[[X0:.*]] = sbp.linear
// CHECK-NEXT:    %[[G:.*]] = sbp.param "stages.0.blocks.0.gamma" : tensor<8xf32> init <constant, 9.9999999999999995E-7>
// CHECK-NEXT:    %[[DWW:.*]] = sbp.param "stages.0.blocks.0.conv_dw.weight" : tensor<8x1x7x7xf32> init <trunc_normal, 2.000000e-02>
// CHECK-NEXT:    %[[DWB:.*]] = sbp.param "stages.0.blocks.0.conv_dw.bias" : tensor<8xf32> init <zeros>
// CHECK-NEXT:    %[[NW:.*]] = sbp.param "stages.0.blocks.0.norm.weight" : tensor<8xf32> init <ones>
// CHECK-NEXT:    %[[NB:.*]] = sbp.param "stages.0.blocks.0.norm.bias" : tensor<8xf32> init <zeros>
// CHECK-NEXT:    %[[F1W:.*]] = sbp.param "stages.0.blocks.0.mlp.fc1.weight" : tensor<32x8xf32> init <trunc_normal, 2.000000e-02>
// CHECK-NEXT:    %[[F1B:.*]] = sbp.param "stages.0.blocks.0.mlp.fc1.bias" : tensor<32xf32> init <zeros>
// CHECK-NEXT:    %[[F2W:.*]] = sbp.param "stages.0.blocks.0.mlp.fc2.weight" : tensor<8x32xf32> init <trunc_normal, 2.000000e-02>
// CHECK-NEXT:    %[[F2B:.*]] = sbp.param "stages.0.blocks.0.mlp.fc2.bias" : tensor<8xf32> init <zeros>
// CHECK-NEXT:    %[[DW:.*]] = sbp.dwconv %[[X0]], %[[DWW]], %[[DWB]] grid [4, 4] : (tensor<2x16x8xf32>, tensor<8x1x7x7xf32>, tensor<8xf32>) -> tensor<2x16x8xf32>
// CHECK-NEXT:    %[[BR:.*]] = sbp.branch @s0(%[[DW]]) {name = "stages.0.blocks.0.mlp"}
// CHECK-NEXT:    ^bb0(%[[A:.*]]: tensor<2x16x8xf32>):
// CHECK-NEXT:      %[[N:.*]] = sbp.layer_norm %[[A]], %[[NW]], %[[NB]] {eps = 9.9999999999999995E-7 : f64}
// CHECK-NEXT:      %[[H0:.*]] = sbp.linear %[[N]], %[[F1W]] : (tensor<2x16x8xf32>, tensor<32x8xf32>) -> tensor<2x16x32xf32>
// CHECK-NEXT:      %[[H1:.*]] = sbp.bias_add %[[H0]], %[[F1B]]
// CHECK-NEXT:      %[[H2:.*]] = sbp.gelu %[[H1]]
// CHECK-NEXT:      %[[H3:.*]] = sbp.linear %[[H2]], %[[F2W]] : (tensor<2x16x32xf32>, tensor<8x32xf32>) -> tensor<2x16x8xf32>
// CHECK-NEXT:      %[[H4:.*]] = sbp.bias_add %[[H3]], %[[F2B]]
// CHECK-NEXT:      %[[LS:.*]] = sbp.layer_scale %[[H4]], %[[G]] : (tensor<2x16x8xf32>, tensor<8xf32>) -> tensor<2x16x8xf32>
// CHECK-NEXT:      sbp.yield %[[LS]]
// CHECK-NEXT:    }
// CHECK-NEXT:    %[[X1:.*]] = sbp.add %[[X0]], %[[BR]]

// The downsampling: LayerNorm on every position, then the 2x2 cells, then
// the reduction (an SBP branch on the 2x2 output grid, no residual).
// CHECK-NEXT:    %[[DNW:.*]] = sbp.param "stages.1.downsample.0.weight" : tensor<8xf32> init <ones>
// CHECK-NEXT:    %[[DNB:.*]] = sbp.param "stages.1.downsample.0.bias" : tensor<8xf32> init <zeros>
// CHECK-NEXT:    %[[DCW:.*]] = sbp.param "stages.1.downsample.1.weight" : tensor<16x8x2x2xf32> init <trunc_normal, 2.000000e-02>
// CHECK-NEXT:    %[[DCB:.*]] = sbp.param "stages.1.downsample.1.bias" : tensor<16xf32> init <zeros>
// CHECK-NEXT:    %[[DN:.*]] = sbp.layer_norm %[[X1]], %[[DNW]], %[[DNB]] {eps = 9.9999999999999995E-7 : f64}
// CHECK-NEXT:    %[[S2D:.*]] = sbp.space_to_depth %[[DN]] grid [4, 4] block 2 : tensor<2x16x8xf32> -> tensor<2x4x32xf32>
// CHECK-NEXT:    %[[X2:.*]] = sbp.branch @s1(%[[S2D]]) {name = "stages.1.downsample.reduction"} : (tensor<2x4x32xf32>) -> tensor<2x4x16xf32>
// CHECK-NEXT:    ^bb0(%[[B:.*]]: tensor<2x4x32xf32>):
// CHECK-NEXT:      %[[R0:.*]] = sbp.linear %[[B]], %[[DCW]] : (tensor<2x4x32xf32>, tensor<16x8x2x2xf32>) -> tensor<2x4x16xf32>
// CHECK-NEXT:      %[[R1:.*]] = sbp.bias_add %[[R0]], %[[DCB]]
// CHECK-NEXT:      sbp.yield %[[R1]]
// CHECK-NEXT:    }

// Without SBP annotations, the same ops inline.
// CHECK:         %[[DW1:.*]] = sbp.dwconv %[[X2]], %{{.*}}, %{{.*}} grid [2, 2]
// CHECK-NEXT:    %{{.*}} = sbp.layer_norm %[[DW1]]
// CHECK-COUNT-5: sbp.
// CHECK-NEXT:    %[[LS1:.*]] = sbp.layer_scale
// CHECK-NEXT:    %[[X3:.*]] = sbp.add %[[X2]], %[[LS1]]
// CHECK-COUNT-4: sbp.param "stages.2.downsample.
// CHECK-NEXT:    %[[DN2:.*]] = sbp.layer_norm %[[X3]]
// CHECK-NEXT:    %[[S2:.*]] = sbp.space_to_depth %[[DN2]] grid [2, 2] block 2 : tensor<2x4x16xf32> -> tensor<2x1x64xf32>
// CHECK-NEXT:    %{{.*}} = sbp.linear %[[S2]], %{{.*}} : (tensor<2x1x64xf32>, tensor<16x16x2x2xf32>) -> tensor<2x1x16xf32>
// CHECK-NEXT:    sbp.bias_add
// CHECK-NEXT:    sbp.mean_tokens
