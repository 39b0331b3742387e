// RUN: not sbpc %s --emit=kernels 2>&1 | FileCheck %s
// RUN: not sbp-opt %s 2>&1 | FileCheck %s

// A bad input that is its own test: the error names this file, the line of
// the bad attribute, and its column.

sbp.model @inline attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.9, weight_decay = 0.0>} {
  // The mask kind must be grid or random.
  // CHECK: {{^}}{{.*}}parse-error-inline.mlir:[[@LINE+1]]:30: error: custom op 'sbp.mask_group' expected ::sbp::MaskKind to be one of: grid, random
  sbp.mask_group @m keep 0.5 stripes [2, 2]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
}
// CHECK-NOT: sbpk.graph
