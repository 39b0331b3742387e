// RUN: sbp-opt %s -sbp-autodiff -sbp-lower-to-kernels -sbp-assign-precision=precision=bf16 | FileCheck %s

// bf16 element types around ConvNeXt's depth-wise convolution, as autocast
// keeps them: the LayerNorm input gradient has the LayerNorm input's type
// (bf16 after the stem GEMM and the depth-wise convolution, float32 on the
// residual stream), and the depth-wise convolution reads a bf16 input: one
// cast of the float32 residual stream that its forward and its weight
// gradient share (the backward keeps the half-size copy).

sbp.model @convnext attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "stem.0.weight" : tensor<8x3x4x4xf32> init<trunc_normal, 0.02>
  %nw = sbp.param "stem.1.weight" : tensor<8xf32> init<ones>
  %nb = sbp.param "stem.1.bias" : tensor<8xf32> init<zeros>
  %dww = sbp.param "conv_dw.weight" : tensor<8x1x3x3xf32> init<trunc_normal, 0.02>
  %dwb = sbp.param "conv_dw.bias" : tensor<8xf32> init<zeros>
  %bw = sbp.param "norm.weight" : tensor<8xf32> init<ones>
  %bb = sbp.param "norm.bias" : tensor<8xf32> init<zeros>
  %g = sbp.param "gamma" : tensor<8xf32> init<constant, 1.0e-6>
  %dww2 = sbp.param "conv_dw2.weight" : tensor<8x1x3x3xf32> init<trunc_normal, 0.02>
  %dwb2 = sbp.param "conv_dw2.bias" : tensor<8xf32> init<zeros>
  %bw2 = sbp.param "norm2.weight" : tensor<8xf32> init<ones>
  %bb2 = sbp.param "norm2.bias" : tensor<8xf32> init<zeros>
  %hw = sbp.param "head.fc.weight" : tensor<10x8xf32> init<trunc_normal, 0.02>
  %tok = sbp.patchify %images patch 4 : tensor<2x3x16x16xf32> -> tensor<2x16x48xf32>
  %s0 = sbp.linear %tok, %w : (tensor<2x16x48xf32>, tensor<8x3x4x4xf32>) -> tensor<2x16x8xf32>
  %x0 = sbp.layer_norm %s0, %nw, %nb : (tensor<2x16x8xf32>, tensor<8xf32>, tensor<8xf32>) -> tensor<2x16x8xf32>
  %x1 = sbp.dwconv %x0, %dww, %dwb grid [4, 4] : (tensor<2x16x8xf32>, tensor<8x1x3x3xf32>, tensor<8xf32>) -> tensor<2x16x8xf32>
  %n1 = sbp.layer_norm %x1, %bw, %bb : (tensor<2x16x8xf32>, tensor<8xf32>, tensor<8xf32>) -> tensor<2x16x8xf32>
  %x2 = sbp.layer_scale %n1, %g : (tensor<2x16x8xf32>, tensor<8xf32>) -> tensor<2x16x8xf32>
  %x3 = sbp.add %x0, %x2 : (tensor<2x16x8xf32>, tensor<2x16x8xf32>) -> tensor<2x16x8xf32>
  %x4 = sbp.dwconv %x3, %dww2, %dwb2 grid [4, 4] : (tensor<2x16x8xf32>, tensor<8x1x3x3xf32>, tensor<8xf32>) -> tensor<2x16x8xf32>
  %x5 = sbp.add %x3, %x4 : (tensor<2x16x8xf32>, tensor<2x16x8xf32>) -> tensor<2x16x8xf32>
  %n5 = sbp.layer_norm %x5, %bw2, %bb2 : (tensor<2x16x8xf32>, tensor<8xf32>, tensor<8xf32>) -> tensor<2x16x8xf32>
  %pool = sbp.mean_tokens %n5 : (tensor<2x16x8xf32>) -> tensor<2x8xf32>
  %logits = sbp.linear %pool, %hw : (tensor<2x8xf32>, tensor<10x8xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// CHECK-LABEL: sbpk.graph @train
// CHECK:       %[[S0:.*]] = sbpk.gemm
// CHECK-NEXT:  %[[X0:.*]] = sbpk.kernel "layer_norm"(%[[S0]], {{.*}} -> tensor<2x16x8xbf16>
// CHECK-NEXT:  %[[Y1:.*]] = sbpk.kernel "dwconv"(%[[X0]], {{.*}} : (tensor<2x16x8xbf16>, {{.*}}) -> tensor<2x16x8xbf16>
// CHECK:       %[[X3:.*]] = sbpk.kernel "add"({{.*}} -> tensor<2x16x8xf32>
// CHECK-NEXT:  %[[X3B:.*]] = sbpk.kernel "cast"(%[[X3]]) {{.*}} -> tensor<2x16x8xbf16>
// CHECK-NEXT:  %{{.*}} = sbpk.kernel "dwconv"(%[[X3B]], {{.*}} : (tensor<2x16x8xbf16>, {{.*}}) -> tensor<2x16x8xbf16>
// CHECK-NEXT:  %[[X5:.*]] = sbpk.kernel "add"(%[[X3]], {{.*}} -> tensor<2x16x8xf32>
// The LayerNorm of the float32 residual stream: a float32 input gradient.
// CHECK:       %[[G5:.*]]:3 = sbpk.kernel "layer_norm_grad"(%[[X5]], {{.*}} -> (tensor<2x16x8xf32>, tensor<8xf32>, tensor<8xf32>)
// The weight gradient reads the forward's bf16 copy, not the float32 stream.
// CHECK:       "dwconv_grad_weight"(%[[G5]]#0, %[[X3B]]) {{.*}} : (tensor<2x16x8xf32>, tensor<2x16x8xbf16>)
// The block's LayerNorm reads the convolution's bf16 output: a bf16 dy for
// the convolution's backward.
// CHECK:       %[[G1:.*]]:3 = sbpk.kernel "layer_norm_grad"(%[[Y1]], {{.*}} -> (tensor<2x16x8xbf16>, tensor<8xf32>, tensor<8xf32>)
// CHECK-NEXT:  "dwconv_grad_input"(%[[G1]]#0, {{.*}} : (tensor<2x16x8xbf16>, {{.*}}) -> tensor<2x16x8xbf16>
// CHECK-NEXT:  "dwconv_grad_weight"(%[[G1]]#0, %[[X0]]) {{.*}} : (tensor<2x16x8xbf16>, tensor<2x16x8xbf16>)
// The stem's LayerNorm (after a bf16 GEMM) gives the stem's weight-gradient
// GEMM its bf16 dy without a cast.
// CHECK:       %[[G0:.*]]:3 = sbpk.kernel "layer_norm_grad"(%[[S0]], {{.*}} -> (tensor<2x16x8xbf16>, tensor<8xf32>, tensor<8xf32>)
// CHECK-NOT:   "cast"
// CHECK:       sbpk.gemm %[[G0]]#0, {{.*}} trans_a = true
