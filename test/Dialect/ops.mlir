// RUN: sbp-opt %s -split-input-file | sbp-opt -split-input-file | FileCheck %s
// RUN: sbp-opt %s -split-input-file -mlir-print-op-generic | sbp-opt -split-input-file | FileCheck %s

// Round trip (custom form, and generic form back to custom form) of every op
// and attribute of the sbp dialect.

// The forward ops, SGD, every initializer kind, both mask kinds (one with a
// prefix), a named branch, an unnamed branch with two inputs and two results,
// and a nested branch.

// CHECK-LABEL: sbp.model @forward
// CHECK-SAME:    attributes {optimizer = #sbp.sgd<lr = 1.000000e-01, momentum = 9.000000e-01, weight_decay = 5.000000e-04, nesterov = true>}
// CHECK-NEXT:    sbp.mask_group @m keep 5.000000e-01 grid [2, 2]
// CHECK-NEXT:    sbp.mask_group @r keep 7.500000e-01 random [2, 2]{{$}}
// CHECK-NEXT:    sbp.mask_group @cls keep 2.500000e-01 random [2, 2] prefix 1
// CHECK-NEXT:    %[[IMG:.*]] = sbp.input "images" : tensor<2x1x8x8xf32>
// CHECK-NEXT:    %[[LBL:.*]] = sbp.input "labels" : tensor<2xi32>
// CHECK-NEXT:    %[[PE:.*]] = sbp.param "patch_embed.weight" : tensor<8x16xf32> init <trunc_normal, 2.000000e-02>
// CHECK-NEXT:    %[[PB:.*]] = sbp.param "patch_embed.bias" : tensor<8xf32> init <zeros>
// CHECK-NEXT:    %[[POS:.*]] = sbp.param "pos_embed" : tensor<1x4x8xf32> init <normal, 1.000000e+00>
// CHECK-NEXT:    %[[NW:.*]] = sbp.param "norm.weight" : tensor<8xf32> init <ones>
// CHECK-NEXT:    %[[NB:.*]] = sbp.param "norm.bias" : tensor<8xf32> init <zeros> {decay = true}
// CHECK-NEXT:    %[[FC:.*]] = sbp.param "fc.weight" : tensor<8x8xf32> init <uniform, 1.250000e-01> {decay = false}
// CHECK-NEXT:    %[[HW:.*]] = sbp.param "head.weight" : tensor<10x8xf32> init <trunc_normal>
// CHECK-NEXT:    %[[TOK:.*]] = sbp.patchify %[[IMG]] patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
// CHECK-NEXT:    %[[E0:.*]] = sbp.linear %[[TOK]], %[[PE]] : (tensor<2x4x16xf32>, tensor<8x16xf32>) -> tensor<2x4x8xf32>
// CHECK-NEXT:    %[[E1:.*]] = sbp.bias_add %[[E0]], %[[PB]] : (tensor<2x4x8xf32>, tensor<8xf32>) -> tensor<2x4x8xf32>
// CHECK-NEXT:    %[[X0:.*]] = sbp.pos_add %[[E1]], %[[POS]] : (tensor<2x4x8xf32>, tensor<1x4x8xf32>) -> tensor<2x4x8xf32>
// CHECK-NEXT:    %[[Y0:.*]] = sbp.branch @m(%[[X0]]) {name = "blocks.0"} : (tensor<2x4x8xf32>) -> tensor<2x4x8xf32> {
// CHECK-NEXT:    ^bb0(%[[A0:.*]]: tensor<2x4x8xf32>):
// CHECK-NEXT:      %[[N:.*]] = sbp.layer_norm %[[A0]], %[[NW]], %[[NB]] {eps = 9.9999999999999995E-7 : f64} : (tensor<2x4x8xf32>, tensor<8xf32>, tensor<8xf32>) -> tensor<2x4x8xf32>
// CHECK-NEXT:      %[[H:.*]] = sbp.linear %[[N]], %[[FC]] : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
// CHECK-NEXT:      %[[G:.*]] = sbp.gelu %[[H]] : (tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
// CHECK-NEXT:      %[[R:.*]] = sbp.relu %[[G]] : (tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
// CHECK-NEXT:      %[[IN:.*]] = sbp.branch @r(%[[R]]) : (tensor<2x4x8xf32>) -> tensor<2x4x8xf32> {
// CHECK-NEXT:      ^bb0(%[[A1:.*]]: tensor<2x4x8xf32>):
// CHECK-NEXT:        %[[D:.*]] = sbp.add %[[A1]], %[[A1]] : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
// CHECK-NEXT:        sbp.yield %[[D]] : tensor<2x4x8xf32>
// CHECK-NEXT:      }
// CHECK-NEXT:      sbp.yield %[[IN]] : tensor<2x4x8xf32>
// CHECK-NEXT:    }
// CHECK-NEXT:    %[[X1:.*]] = sbp.add %[[X0]], %[[Y0]] : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
// CHECK-NEXT:    %[[Y:[0-9]+]]:2 = sbp.branch @m(%[[X1]], %[[X0]]) : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> (tensor<2x4x8xf32>, tensor<2x4x8xf32>) {
// CHECK-NEXT:    ^bb0(%[[B0:.*]]: tensor<2x4x8xf32>, %[[B1:.*]]: tensor<2x4x8xf32>):
// CHECK-NEXT:      %[[LN:.*]] = sbp.layer_norm %[[B0]], %[[NW]], %[[NB]] : (tensor<2x4x8xf32>, tensor<8xf32>, tensor<8xf32>) -> tensor<2x4x8xf32>
// CHECK-NEXT:      sbp.yield %[[LN]], %[[B1]] : tensor<2x4x8xf32>, tensor<2x4x8xf32>
// CHECK-NEXT:    }
// CHECK-NEXT:    %[[X2:.*]] = sbp.add %[[Y]]#0, %[[Y]]#1 : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
// CHECK-NEXT:    %[[POOL:.*]] = sbp.mean_tokens %[[X2]] : (tensor<2x4x8xf32>) -> tensor<2x8xf32>
// CHECK-NEXT:    %[[LOGITS:.*]] = sbp.linear %[[POOL]], %[[HW]] : (tensor<2x8xf32>, tensor<10x8xf32>) -> tensor<2x10xf32>
// CHECK-NEXT:    %[[LOSS:.*]] = sbp.cross_entropy %[[LOGITS]], %[[LBL]] : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
// CHECK-NEXT:    sbp.output %[[LOSS]], %[[LOGITS]] : tensor<f32>, tensor<2x10xf32>
// CHECK-NEXT:  }
sbp.model @forward attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.9, weight_decay = 5.0e-4, nesterov = true>} {
  sbp.mask_group @m keep 0.5 grid [2, 2]
  sbp.mask_group @r keep 0.75 random [2, 2] prefix 0
  sbp.mask_group @cls keep 0.25 random [2, 2] prefix 1
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %pe_w = sbp.param "patch_embed.weight" : tensor<8x16xf32> init<trunc_normal, 0.02>
  %pe_b = sbp.param "patch_embed.bias" : tensor<8xf32> init<zeros>
  %pos = sbp.param "pos_embed" : tensor<1x4x8xf32> init<normal, 1.0>
  %n_w = sbp.param "norm.weight" : tensor<8xf32> init<ones>
  %n_b = sbp.param "norm.bias" : tensor<8xf32> init<zeros> {decay = true}
  %fc = sbp.param "fc.weight" : tensor<8x8xf32> init<uniform, 0.125> {decay = false}
  %h_w = sbp.param "head.weight" : tensor<10x8xf32> init<trunc_normal>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %e0 = sbp.linear %tok, %pe_w : (tensor<2x4x16xf32>, tensor<8x16xf32>) -> tensor<2x4x8xf32>
  %e1 = sbp.bias_add %e0, %pe_b : (tensor<2x4x8xf32>, tensor<8xf32>) -> tensor<2x4x8xf32>
  %x0 = sbp.pos_add %e1, %pos : (tensor<2x4x8xf32>, tensor<1x4x8xf32>) -> tensor<2x4x8xf32>
  %y0 = sbp.branch @m (%x0) {name = "blocks.0"} : (tensor<2x4x8xf32>) -> tensor<2x4x8xf32> {
  ^bb0(%x: tensor<2x4x8xf32>):
    %n = sbp.layer_norm %x, %n_w, %n_b {eps = 1.0e-6 : f64} : (tensor<2x4x8xf32>, tensor<8xf32>, tensor<8xf32>) -> tensor<2x4x8xf32>
    %h = sbp.linear %n, %fc : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
    %g = sbp.gelu %h : (tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
    %r = sbp.relu %g : (tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
    %inner = sbp.branch @r (%r) : (tensor<2x4x8xf32>) -> tensor<2x4x8xf32> {
    ^bb0(%u: tensor<2x4x8xf32>):
      %d = sbp.add %u, %u : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
      sbp.yield %d : tensor<2x4x8xf32>
    }
    sbp.yield %inner : tensor<2x4x8xf32>
  }
  %x1 = sbp.add %x0, %y0 : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %y:2 = sbp.branch @m (%x1, %x0) : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> (tensor<2x4x8xf32>, tensor<2x4x8xf32>) {
  ^bb0(%a: tensor<2x4x8xf32>, %b: tensor<2x4x8xf32>):
    %ln = sbp.layer_norm %a, %n_w, %n_b : (tensor<2x4x8xf32>, tensor<8xf32>, tensor<8xf32>) -> tensor<2x4x8xf32>
    sbp.yield %ln, %b : tensor<2x4x8xf32>, tensor<2x4x8xf32>
  }
  %x2 = sbp.add %y#0, %y#1 : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %pool = sbp.mean_tokens %x2 : (tensor<2x4x8xf32>) -> tensor<2x8xf32>
  %logits = sbp.linear %pool, %h_w : (tensor<2x8xf32>, tensor<10x8xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// AdamW, SGD's nesterov default (not printed), and the ops the passes add:
// keep indices, the gradient gate, row mask/gather/scatter and every gradient.

// CHECK-LABEL: sbp.model @internal
// CHECK-SAME:    attributes {optimizer = #sbp.adamw<lr = 1.000000e-03, beta1 = 9.000000e-01, beta2 = 8.750000e-01, eps = 1.000000e-08, weight_decay = 5.000000e-02>}
// CHECK:         %[[K:.*]] = sbp.keep_indices @m : tensor<2xi32>
// CHECK:         %[[LBL:.*]] = sbp.input "labels"
// CHECK:         %[[W:.*]] = sbp.param "w"
// CHECK:         %[[NW:.*]] = sbp.param "nw"
// CHECK:         %[[X:.*]] = sbp.linear %{{.*}}, %{{.*}} : (tensor<2x4x16xf32>, tensor<8x16xf32>) -> tensor<2x4x8xf32>
// CHECK-NEXT:    %[[POOL:.*]] = sbp.mean_tokens %[[X]]
// CHECK-NEXT:    %[[LOGITS:.*]] = sbp.linear %[[POOL]]
// CHECK-NEXT:    %[[GATE:.*]] = sbp.grad_gate %[[X]], %[[K]] : (tensor<2x4x8xf32>, tensor<2xi32>) -> tensor<2x4x8xf32>
// CHECK-NEXT:    %[[MR:.*]] = sbp.mask_rows %[[GATE]], %[[K]] {sbp.bwd} : (tensor<2x4x8xf32>, tensor<2xi32>) -> tensor<2x4x8xf32>
// CHECK-NEXT:    %[[GR:.*]] = sbp.gather_rows %[[MR]], %[[K]] {sbp.bwd} : (tensor<2x4x8xf32>, tensor<2xi32>) -> tensor<2x2x8xf32>
// CHECK-NEXT:    %[[SR:.*]] = sbp.scatter_rows %[[GR]], %[[K]] {sbp.bwd} : (tensor<2x2x8xf32>, tensor<2xi32>) -> tensor<2x4x8xf32>
// CHECK-NEXT:    %[[SA:.*]] = sbp.scatter_add_rows %[[SR]], %[[GR]], %[[K]] {sbp.bwd, sbp.region = "r"} : (tensor<2x4x8xf32>, tensor<2x2x8xf32>, tensor<2xi32>) -> tensor<2x4x8xf32>
// CHECK-NEXT:    %[[LGI:.*]] = sbp.linear_grad_input %[[SA]], %[[W]] {sbp.bwd} : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
// CHECK-NEXT:    %[[LGW:.*]] = sbp.linear_grad_weight %[[X]], %[[LGI]] {sbp.bwd} : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<8x8xf32>
// CHECK-NEXT:    %[[BG:.*]] = sbp.bias_grad %[[LGI]] {sbp.bwd} : (tensor<2x4x8xf32>) -> tensor<8xf32>
// CHECK-NEXT:    %[[PG:.*]] = sbp.pos_grad %[[LGI]] {sbp.bwd} : (tensor<2x4x8xf32>) -> tensor<1x4x8xf32>
// CHECK-NEXT:    %[[GG:.*]] = sbp.gelu_grad %[[X]], %[[LGI]] {sbp.bwd} : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
// CHECK-NEXT:    %[[RG:.*]] = sbp.relu_grad %[[X]], %[[GG]] {sbp.bwd} : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
// CHECK-NEXT:    %[[LNX:.*]], %[[LNW:.*]], %[[LNB:.*]] = sbp.layer_norm_grad %[[X]], %[[NW]], %[[RG]] {eps = 1.000000e-03 : f64, sbp.bwd} : (tensor<2x4x8xf32>, tensor<8xf32>, tensor<2x4x8xf32>) -> (tensor<2x4x8xf32>, tensor<8xf32>, tensor<8xf32>)
// CHECK-NEXT:    %{{.*}}, %{{.*}}, %{{.*}} = sbp.layer_norm_grad %[[X]], %[[NW]], %[[LNX]] {sbp.bwd} : (tensor<2x4x8xf32>, tensor<8xf32>, tensor<2x4x8xf32>) -> (tensor<2x4x8xf32>, tensor<8xf32>, tensor<8xf32>)
// CHECK-NEXT:    %[[MT:.*]] = sbp.mean_tokens_grad %[[POOL]] {sbp.bwd} : (tensor<2x8xf32>) -> tensor<2x4x8xf32>
// CHECK-NEXT:    %[[CE:.*]] = sbp.cross_entropy_grad %[[LOGITS]], %[[LBL]] {sbp.bwd} : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<2x10xf32>
// CHECK-NEXT:    sbp.param_grad "w", %[[LGW]] : tensor<8x8xf32>
// CHECK-NEXT:    sbp.param_grad "nw", %[[LNW]] {sbp.bwd} : tensor<8xf32>
// CHECK-NEXT:    %[[LOSS:.*]] = sbp.cross_entropy %[[LOGITS]], %[[LBL]]
// CHECK-NEXT:    sbp.output %[[LOSS]], %[[LOGITS]] : tensor<f32>, tensor<2x10xf32>
sbp.model @internal attributes {optimizer = #sbp.adamw<lr = 1.0e-3, beta1 = 0.9, beta2 = 0.875, eps = 1.0e-8, weight_decay = 0.05>} {
  %keep = sbp.keep_indices @m : tensor<2xi32>
  sbp.mask_group @m keep 0.5 grid [2, 2]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "w" : tensor<8x8xf32> init<normal, 0.02>
  %nw = sbp.param "nw" : tensor<8xf32> init<ones>
  %hw = sbp.param "hw" : tensor<10x8xf32> init<zeros>
  %w2 = sbp.param "w2" : tensor<8x16xf32> init<uniform, 0.5>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %x = sbp.linear %tok, %w2 : (tensor<2x4x16xf32>, tensor<8x16xf32>) -> tensor<2x4x8xf32>
  %pool = sbp.mean_tokens %x : (tensor<2x4x8xf32>) -> tensor<2x8xf32>
  %logits = sbp.linear %pool, %hw : (tensor<2x8xf32>, tensor<10x8xf32>) -> tensor<2x10xf32>
  %gate = sbp.grad_gate %x, %keep : (tensor<2x4x8xf32>, tensor<2xi32>) -> tensor<2x4x8xf32>
  %mr = sbp.mask_rows %gate, %keep {sbp.bwd} : (tensor<2x4x8xf32>, tensor<2xi32>) -> tensor<2x4x8xf32>
  %gr = sbp.gather_rows %mr, %keep {sbp.bwd} : (tensor<2x4x8xf32>, tensor<2xi32>) -> tensor<2x2x8xf32>
  %sr = sbp.scatter_rows %gr, %keep {sbp.bwd} : (tensor<2x2x8xf32>, tensor<2xi32>) -> tensor<2x4x8xf32>
  %sa = sbp.scatter_add_rows %sr, %gr, %keep {sbp.bwd, sbp.region = "r"} : (tensor<2x4x8xf32>, tensor<2x2x8xf32>, tensor<2xi32>) -> tensor<2x4x8xf32>
  %lgi = sbp.linear_grad_input %sa, %w {sbp.bwd} : (tensor<2x4x8xf32>, tensor<8x8xf32>) -> tensor<2x4x8xf32>
  %lgw = sbp.linear_grad_weight %x, %lgi {sbp.bwd} : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<8x8xf32>
  %bg = sbp.bias_grad %lgi {sbp.bwd} : (tensor<2x4x8xf32>) -> tensor<8xf32>
  %pg = sbp.pos_grad %lgi {sbp.bwd} : (tensor<2x4x8xf32>) -> tensor<1x4x8xf32>
  %gg = sbp.gelu_grad %x, %lgi {sbp.bwd} : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %rg = sbp.relu_grad %x, %gg {sbp.bwd} : (tensor<2x4x8xf32>, tensor<2x4x8xf32>) -> tensor<2x4x8xf32>
  %lnx, %lnw, %lnb = sbp.layer_norm_grad %x, %nw, %rg {eps = 1.0e-3 : f64, sbp.bwd} : (tensor<2x4x8xf32>, tensor<8xf32>, tensor<2x4x8xf32>) -> (tensor<2x4x8xf32>, tensor<8xf32>, tensor<8xf32>)
  %lnx2:3 = sbp.layer_norm_grad %x, %nw, %lnx {sbp.bwd} : (tensor<2x4x8xf32>, tensor<8xf32>, tensor<2x4x8xf32>) -> (tensor<2x4x8xf32>, tensor<8xf32>, tensor<8xf32>)
  %mt = sbp.mean_tokens_grad %pool {sbp.bwd} : (tensor<2x8xf32>) -> tensor<2x4x8xf32>
  %ce = sbp.cross_entropy_grad %logits, %labels {sbp.bwd} : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<2x10xf32>
  sbp.param_grad "w", %lgw : tensor<8x8xf32>
  sbp.param_grad "nw", %lnw {sbp.bwd} : tensor<8xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}
