// RUN: sbp-opt %s -split-input-file | sbp-opt -split-input-file | FileCheck %s
// RUN: sbp-opt %S/../numerics/Inputs/vit_small_qkv.mlir -sbp-decompose -sbp-insert-masks -sbp-autodiff | sbp-opt -sbp-check-gradient-support -sbp-prune-backward | FileCheck %s --check-prefix=SPLIT

// sbp.attention_grad's custom form must parse what it prints: with an SBP
// mode (`heads 3 mode drop_qkv`) and with an attribute dictionary but no mode
// (`heads 3 {sbp.bwd}`, which must not be read as the mode). The input is the
// generic form; the first sbp-opt prints the custom form, the second parses
// it back.

// CHECK-LABEL: sbp.model @attention_grad_forms
// CHECK:         sbp.attention_grad %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} heads 3 {sbp.bwd} : (tensor<4x17x72xf32>, tensor<4x17x24xf32>, tensor<4x17x3xf32>, tensor<4x17x24xf32>) -> tensor<4x17x72xf32>
// CHECK-NEXT:    sbp.attention_grad %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} heads 3 mode drop_qkv {sbp.bwd, sbp.region = "blocks.0.attn"} : (tensor<4x9x72xf32>, tensor<4x9x24xf32>, tensor<4x9x3xf32>, tensor<4x9x24xf32>, tensor<9xi32>) -> tensor<4x9x72xf32>
// CHECK-NEXT:    sbp.attention_grad %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} heads 3 mode drop_query : (tensor<4x17x72xf32>, tensor<4x9x24xf32>, tensor<4x9x3xf32>, tensor<4x9x24xf32>, tensor<9xi32>) -> tensor<4x17x72xf32>
// CHECK-NEXT:    sbp.attention_grad %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} heads 3 mode drop_head : (tensor<4x17x72xf32>, tensor<4x17x24xf32>, tensor<4x17x3xf32>, tensor<4x17x24xf32>, tensor<3xi32>) -> tensor<4x17x72xf32>
sbp.model @attention_grad_forms attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.9, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.5 grid [4, 4] prefix 1
  sbp.mask_group @h keep 0.5 heads [1, 3]
  %k = sbp.keep_indices @m : tensor<9xi32>
  %kh = sbp.keep_indices @h : tensor<3xi32>
  %images = sbp.input "images" : tensor<4x3x16x16xf32>
  %labels = sbp.input "labels" : tensor<4xi32>
  %logits = sbp.param "logits" : tensor<4x10xf32> init<zeros>
  %qkv = sbp.param "qkv" : tensor<4x17x72xf32> init<zeros>
  %o = sbp.param "o" : tensor<4x17x24xf32> init<zeros>
  %l = sbp.param "l" : tensor<4x17x3xf32> init<zeros>
  %d = sbp.param "d" : tensor<4x17x24xf32> init<zeros>
  %qkv_k = sbp.param "qkv_k" : tensor<4x9x72xf32> init<zeros>
  %o_k = sbp.param "o_k" : tensor<4x9x24xf32> init<zeros>
  %l_k = sbp.param "l_k" : tensor<4x9x3xf32> init<zeros>
  %d_k = sbp.param "d_k" : tensor<4x9x24xf32> init<zeros>
  %g0 = "sbp.attention_grad"(%qkv, %o, %l, %d) <{heads = 3 : i64}> {sbp.bwd} : (tensor<4x17x72xf32>, tensor<4x17x24xf32>, tensor<4x17x3xf32>, tensor<4x17x24xf32>) -> tensor<4x17x72xf32>
  %g1 = "sbp.attention_grad"(%qkv_k, %o_k, %l_k, %d_k, %k) <{heads = 3 : i64, mode = #sbp<attention_mode drop_qkv>}> {sbp.bwd, sbp.region = "blocks.0.attn"} : (tensor<4x9x72xf32>, tensor<4x9x24xf32>, tensor<4x9x3xf32>, tensor<4x9x24xf32>, tensor<9xi32>) -> tensor<4x9x72xf32>
  %g2 = "sbp.attention_grad"(%qkv, %o_k, %l_k, %d_k, %k) <{heads = 3 : i64, mode = #sbp<attention_mode drop_query>}> : (tensor<4x17x72xf32>, tensor<4x9x24xf32>, tensor<4x9x3xf32>, tensor<4x9x24xf32>, tensor<9xi32>) -> tensor<4x17x72xf32>
  %g3 = "sbp.attention_grad"(%qkv, %o, %l, %d, %kh) <{heads = 3 : i64, mode = #sbp<attention_mode drop_head>}> : (tensor<4x17x72xf32>, tensor<4x17x24xf32>, tensor<4x17x3xf32>, tensor<4x17x24xf32>, tensor<3xi32>) -> tensor<4x17x72xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<4x10xf32>, tensor<4xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<4x10xf32>
}

// Each pass runs alone in sbp-opt (README, "Every stage can be inspected"):
// the joint graph printed after sbp-autodiff reads back in, and the rest of
// the pipeline gives the pruned drop_qkv backward.
// SPLIT-LABEL: sbp.model @vit_small
// SPLIT:         sbp.attention_grad {{.*}} heads 3 mode drop_qkv {{.*}} -> tensor<4x9x72xf32>
// SPLIT:         sbp.attention_grad {{.*}} heads 3 mode drop_qkv {{.*}} -> tensor<4x9x72xf32>
// SPLIT-NOT:     sbp.scatter_rows
