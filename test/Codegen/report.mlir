// RUN: sbpc %s --emit=report | FileCheck %s
// RUN: sbpc %s --emit=report --keep=1.0 | FileCheck %s --check-prefix=DENSE
// RUN: sbpc %s --emit=report --keep=0.25 | FileCheck %s --check-prefix=QUARTER

// The compile-time cost report: SBP (keep 0.5 of 16 tokens) against the same
// model without SBP. The forward is unchanged; the backward of each SBP
// region costs about half; only kept rows of its activations are saved.

// CHECK:      model patch_mlp_small: batch 8, 3466 parameters (13.86 KB)
// CHECK-NEXT: {{^ +}}with SBP    without SBP    ratio{{$}}
// CHECK-NEXT: {{^}}  forward FLOPs / step{{ +}}[[FWD:[0-9]+\.[0-9][0-9] [KMG]?FLOP]]{{ +}}[[FWD]]{{ +}}1.000x{{$}}
// CHECK-NEXT: {{^}}  backward FLOPs / step{{ +}}{{[0-9]+\.[0-9][0-9] [KMG]?FLOP}}{{ +}}{{[0-9]+\.[0-9][0-9] [KMG]?FLOP}}{{ +}}0.{{[0-9][0-9][0-9]}}x{{$}}
// CHECK-NEXT: {{^}}  saved activations{{ +}}{{[0-9]+\.[0-9][0-9] [KMG]?B}}{{ +}}{{[0-9]+\.[0-9][0-9] [KMG]?B}}{{ +}}0.{{[0-9][0-9][0-9]}}x{{$}}
// CHECK-NEXT: {{^}}  planned peak (train arena){{ +}}{{[0-9]+\.[0-9][0-9] [KMG]?B}}{{ +}}{{[0-9]+\.[0-9][0-9] [KMG]?B}}{{ +}}0.{{[0-9][0-9][0-9]}}x{{$}}
// CHECK-NEXT: {{^}}  planned peak (eval arena){{ +}}[[EVAL:[0-9]+\.[0-9][0-9] [KMG]?B]]{{ +}}[[EVAL]]{{ +}}1.000x{{$}}
// CHECK-NEXT: {{^}}  planned training memory{{ +}}{{[0-9]+\.[0-9][0-9] [KMG]?B}}{{ +}}{{[0-9]+\.[0-9][0-9] [KMG]?B}}{{ +}}0.{{[0-9][0-9][0-9]}}x{{$}}
// CHECK-NEXT: {{^}}  (training memory: train arena + float32 parameters, gradients and optimizer state){{$}}
// CHECK-NEXT: {{^}}SBP regions:{{$}}
// Per region: the backward FLOPs and the saved bytes halve (ratio ~0.5). With
// sbp-recompute a region saves its input and the pre-activation only (the
// LayerNorm output and the activation are recomputed): 16 + 32 floats a row.
// CHECK-NEXT: {{^}}  blocks.0.mlp backward FLOPs{{ +}}{{[0-9]+\.[0-9][0-9] [KMG]?FLOP}}{{ +}}{{[0-9]+\.[0-9][0-9] [KMG]?FLOP}}{{ +}}0.{{(4[5-9]|5[0-5])[0-9]}}x{{$}}
// CHECK-NEXT: {{^}}  blocks.0.mlp saved activations{{ +}}12.29 KB{{ +}}24.58 KB{{ +}}0.500x{{$}}
// CHECK-NEXT: {{^}}  blocks.1.mlp backward FLOPs{{ +}}{{[0-9]+\.[0-9][0-9] [KMG]?FLOP}}{{ +}}{{[0-9]+\.[0-9][0-9] [KMG]?FLOP}}{{ +}}0.{{(4[5-9]|5[0-5])[0-9]}}x{{$}}
// CHECK-NEXT: {{^}}  blocks.1.mlp saved activations{{ +}}12.29 KB{{ +}}24.58 KB{{ +}}0.500x{{$}}
// CHECK-NOT:  {{.}}

// DENSE:      model patch_mlp_small: batch 8, 3466 parameters (13.86 KB)
// DENSE-COUNT-6: 1.000x{{$}}
// DENSE-NEXT: (training memory:
// DENSE-NEXT: SBP regions:
// DENSE-NEXT:   blocks.0.mlp backward FLOPs{{ +}}[[B0:[0-9.]+ [KMG]?FLOP]]{{ +}}[[B0]]{{ +}}1.000x
// DENSE-NEXT:   blocks.0.mlp saved activations {{.*}} 1.000x
// DENSE-NEXT:   blocks.1.mlp backward FLOPs {{.*}} 1.000x
// DENSE-NEXT:   blocks.1.mlp saved activations {{.*}} 1.000x

// keep 0.25: 4 of 16 tokens kept, a quarter of the region's saved rows.
// QUARTER:      blocks.0.mlp backward FLOPs {{.*}} 0.2{{[0-9][0-9]}}x
// QUARTER-NEXT: blocks.0.mlp saved activations{{ +}}6.14 KB{{ +}}24.58 KB{{ +}}0.250x

sbp.model @patch_mlp_small attributes {optimizer = #sbp.adamw<lr = 1.0e-3, beta1 = 0.9, beta2 = 0.999, eps = 1.0e-8, weight_decay = 0.05>} {
  sbp.mask_group @m keep 0.5 grid [4, 4]
  %images = sbp.input "images" : tensor<8x1x28x28xf32>
  %labels = sbp.input "labels" : tensor<8xi32>
  %pe_w = sbp.param "patch_embed.weight" : tensor<16x49xf32> init<trunc_normal, 0.02>
  %pe_b = sbp.param "patch_embed.bias" : tensor<16xf32> init<zeros>
  %pos = sbp.param "pos_embed" : tensor<1x16x16xf32> init<trunc_normal, 0.02>
  %n0_w = sbp.param "blocks.0.norm.weight" : tensor<16xf32> init<ones>
  %n0_b = sbp.param "blocks.0.norm.bias" : tensor<16xf32> init<zeros>
  %f0_w = sbp.param "blocks.0.mlp.fc1.weight" : tensor<32x16xf32> init<trunc_normal, 0.02>
  %f0_b = sbp.param "blocks.0.mlp.fc1.bias" : tensor<32xf32> init<zeros>
  %g0_w = sbp.param "blocks.0.mlp.fc2.weight" : tensor<16x32xf32> init<trunc_normal, 0.02>
  %g0_b = sbp.param "blocks.0.mlp.fc2.bias" : tensor<16xf32> init<zeros>
  %n1_w = sbp.param "blocks.1.norm.weight" : tensor<16xf32> init<ones>
  %n1_b = sbp.param "blocks.1.norm.bias" : tensor<16xf32> init<zeros>
  %f1_w = sbp.param "blocks.1.mlp.fc1.weight" : tensor<32x16xf32> init<trunc_normal, 0.02>
  %f1_b = sbp.param "blocks.1.mlp.fc1.bias" : tensor<32xf32> init<zeros>
  %g1_w = sbp.param "blocks.1.mlp.fc2.weight" : tensor<16x32xf32> init<trunc_normal, 0.02>
  %g1_b = sbp.param "blocks.1.mlp.fc2.bias" : tensor<16xf32> init<zeros>
  %nf_w = sbp.param "norm.weight" : tensor<16xf32> init<ones>
  %nf_b = sbp.param "norm.bias" : tensor<16xf32> init<zeros>
  %h_w = sbp.param "head.weight" : tensor<10x16xf32> init<trunc_normal, 0.02>
  %h_b = sbp.param "head.bias" : tensor<10xf32> init<zeros>

  %tok = sbp.patchify %images patch 7 : tensor<8x1x28x28xf32> -> tensor<8x16x49xf32>
  %e0 = sbp.linear %tok, %pe_w : (tensor<8x16x49xf32>, tensor<16x49xf32>) -> tensor<8x16x16xf32>
  %e1 = sbp.bias_add %e0, %pe_b : (tensor<8x16x16xf32>, tensor<16xf32>) -> tensor<8x16x16xf32>
  %x0 = sbp.pos_add %e1, %pos : (tensor<8x16x16xf32>, tensor<1x16x16xf32>) -> tensor<8x16x16xf32>

  %y0 = sbp.branch @m (%x0) {name = "blocks.0.mlp"} : (tensor<8x16x16xf32>) -> tensor<8x16x16xf32> {
  ^bb0(%x: tensor<8x16x16xf32>):
    %n = sbp.layer_norm %x, %n0_w, %n0_b {eps = 1.0e-6 : f64} : (tensor<8x16x16xf32>, tensor<16xf32>, tensor<16xf32>) -> tensor<8x16x16xf32>
    %h = sbp.linear %n, %f0_w : (tensor<8x16x16xf32>, tensor<32x16xf32>) -> tensor<8x16x32xf32>
    %hb = sbp.bias_add %h, %f0_b : (tensor<8x16x32xf32>, tensor<32xf32>) -> tensor<8x16x32xf32>
    %a = sbp.gelu %hb : (tensor<8x16x32xf32>) -> tensor<8x16x32xf32>
    %o = sbp.linear %a, %g0_w : (tensor<8x16x32xf32>, tensor<16x32xf32>) -> tensor<8x16x16xf32>
    %ob = sbp.bias_add %o, %g0_b : (tensor<8x16x16xf32>, tensor<16xf32>) -> tensor<8x16x16xf32>
    sbp.yield %ob : tensor<8x16x16xf32>
  }
  %x1 = sbp.add %x0, %y0 : (tensor<8x16x16xf32>, tensor<8x16x16xf32>) -> tensor<8x16x16xf32>

  %y1 = sbp.branch @m (%x1) {name = "blocks.1.mlp"} : (tensor<8x16x16xf32>) -> tensor<8x16x16xf32> {
  ^bb0(%x: tensor<8x16x16xf32>):
    %n = sbp.layer_norm %x, %n1_w, %n1_b {eps = 1.0e-6 : f64} : (tensor<8x16x16xf32>, tensor<16xf32>, tensor<16xf32>) -> tensor<8x16x16xf32>
    %h = sbp.linear %n, %f1_w : (tensor<8x16x16xf32>, tensor<32x16xf32>) -> tensor<8x16x32xf32>
    %hb = sbp.bias_add %h, %f1_b : (tensor<8x16x32xf32>, tensor<32xf32>) -> tensor<8x16x32xf32>
    %a = sbp.relu %hb : (tensor<8x16x32xf32>) -> tensor<8x16x32xf32>
    %o = sbp.linear %a, %g1_w : (tensor<8x16x32xf32>, tensor<16x32xf32>) -> tensor<8x16x16xf32>
    %ob = sbp.bias_add %o, %g1_b : (tensor<8x16x16xf32>, tensor<16xf32>) -> tensor<8x16x16xf32>
    sbp.yield %ob : tensor<8x16x16xf32>
  }
  %x2 = sbp.add %x1, %y1 : (tensor<8x16x16xf32>, tensor<8x16x16xf32>) -> tensor<8x16x16xf32>

  %nf = sbp.layer_norm %x2, %nf_w, %nf_b {eps = 1.0e-6 : f64} : (tensor<8x16x16xf32>, tensor<16xf32>, tensor<16xf32>) -> tensor<8x16x16xf32>
  %pool = sbp.mean_tokens %nf : (tensor<8x16x16xf32>) -> tensor<8x16xf32>
  %l0 = sbp.linear %pool, %h_w : (tensor<8x16xf32>, tensor<10x16xf32>) -> tensor<8x10xf32>
  %logits = sbp.bias_add %l0, %h_b : (tensor<8x10xf32>, tensor<10xf32>) -> tensor<8x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<8x10xf32>, tensor<8xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<8x10xf32>
}
