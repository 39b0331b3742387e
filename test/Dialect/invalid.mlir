// RUN: sbp-opt %s -split-input-file -verify-diagnostics
//
// One negative case per verifier of the sbp dialect (SbpOps.cpp): attribute
// verifiers, structure ops, forward ops, and the ops the passes add. Each
// expected-error quotes the message the verifier emits.

// A negative initializer scale.
sbp.model @init_scale attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  // expected-error @+1 {{initializer scale must be finite and >= 0, got -1.000000e+00}}
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<normal, -1.0>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// SGD: the learning rate must be positive.
// expected-error @+1 {{lr must be > 0, got -1.000000e-01}}
sbp.model @sgd_lr attributes {optimizer = #sbp.sgd<lr = -0.1, momentum = 0.9, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// SGD: a zero learning rate is rejected too.
// expected-error @+1 {{lr must be > 0, got 0.000000e+00}}
sbp.model @sgd_lr_zero attributes {optimizer = #sbp.sgd<lr = 0.0, momentum = 0.9, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// SGD: momentum 1 is out of [0, 1).
// expected-error @+1 {{momentum must be in [0, 1), got 1.000000e+00}}
sbp.model @sgd_momentum attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 1.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// SGD: negative weight decay.
// expected-error @+1 {{weight_decay must be >= 0, got -5.000000e-01}}
sbp.model @sgd_wd attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.9, weight_decay = -0.5>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// AdamW: beta1 = 1 is out of [0, 1).
// expected-error @+1 {{beta1 must be in [0, 1), got 1.000000e+00}}
sbp.model @adamw_beta1 attributes {optimizer = #sbp.adamw<lr = 1.0e-3, beta1 = 1.0, beta2 = 0.999, eps = 1.0e-8, weight_decay = 0.05>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// AdamW: beta2 > 1.
// expected-error @+1 {{beta2 must be in [0, 1), got 1.500000e+00}}
sbp.model @adamw_beta2 attributes {optimizer = #sbp.adamw<lr = 1.0e-3, beta1 = 0.9, beta2 = 1.5, eps = 1.0e-8, weight_decay = 0.05>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// AdamW: negative learning rate.
// expected-error @+1 {{lr must be > 0, got -1.000000e-03}}
sbp.model @adamw_lr attributes {optimizer = #sbp.adamw<lr = -1.0e-3, beta1 = 0.9, beta2 = 0.999, eps = 1.0e-8, weight_decay = 0.05>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// AdamW: eps must be positive.
// expected-error @+1 {{eps must be > 0, got 0.000000e+00}}
sbp.model @adamw_eps attributes {optimizer = #sbp.adamw<lr = 1.0e-3, beta1 = 0.9, beta2 = 0.999, eps = 0.0, weight_decay = 0.05>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// The optimizer must be #sbp.sgd or #sbp.adamw.
// expected-error @+1 {{'sbp.model' op attribute 'optimizer' failed to satisfy constraint}}
sbp.model @bad_optimizer attributes {optimizer = 1.0 : f64} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// Two parameters with one name.
sbp.model @dup_param attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  // expected-note @+1 {{first defined here}}
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  // expected-error @+1 {{'sbp.param' op redefines parameter 'head.weight'}}
  %w2 = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// Two "images" inputs.
sbp.model @dup_input attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  // expected-error @+1 {{'sbp.input' op redefines input 'images'}}
  %images2 = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// A model needs both inputs.
// expected-error @+1 {{'sbp.model' op needs both inputs: sbp.input "images" and sbp.input "labels"}}
sbp.model @no_labels attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %lbl = sbpk.input "labels" : tensor<2xi32>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %lbl : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// The labels must have the batch size of the images.
sbp.model @labels_batch attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  // expected-error @+1 {{'sbp.input' op labels must have the batch size of the images (2)}}
  %labels = sbp.input "labels" : tensor<3xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<3xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// Every activation has the batch size as its first dimension.
sbp.model @activation_batch attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %v = sbp.param "v" : tensor<3x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  // expected-error @+1 {{'sbp.linear' op result must have the batch size 2 as its first dimension, got 'tensor<3x10xf32>'}}
  %bad = sbp.linear %v, %w : (tensor<3x16xf32>, tensor<10x16xf32>) -> tensor<3x10xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// An unknown input name (standing in for the labels).
sbp.model @unknown_input attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  // expected-error @+1 {{'sbp.input' op unknown input 'targets': expected "images" or "labels"}}
  %labels = sbp.input "targets" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// The labels must be i32.
sbp.model @labels_f32 attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  // expected-error @+1 {{'sbp.input' op labels must be i32 [batch], got 'tensor<2xf32>'}}
  %labels = sbp.input "labels" : tensor<2xf32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %l = sbpk.input "l" : tensor<2xi32>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %l : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// The images must be [B, C, H, W].
sbp.model @images_rank attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  // expected-error @+1 {{'sbp.input' op images must be f32 [batch, channels, height, width], got 'tensor<2x8x8xf32>'}}
  %images = sbp.input "images" : tensor<2x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbpk.input "tok" : tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// Inputs have static shapes.
sbp.model @input_dynamic attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  // expected-error @+1 {{'sbp.input' op needs a static shape, got 'tensor<2x?x8x8xf32>'}}
  %images = sbp.input "images" : tensor<2x?x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbpk.input "tok" : tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// A parameter of rank 0.
sbp.model @param_rank0 attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  // expected-error @+1 {{'sbp.param' op parameter needs a static shape of rank 1 to 4, got 'tensor<f32>'}}
  %s = sbp.param "scale" : tensor<f32> init<ones>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// A parameter of rank 5.
sbp.model @param_rank5 attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  // expected-error @+1 {{'sbp.param' op parameter needs a static shape of rank 1 to 4, got 'tensor<1x1x1x1x1xf32>'}}
  %s = sbp.param "scale" : tensor<1x1x1x1x1xf32> init<ones>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// A parameter needs a name.
sbp.model @param_noname attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  // expected-error @+1 {{'sbp.param' op parameter needs a name}}
  %w = sbp.param "" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// Keep ratio 0.0.
sbp.model @keep_zero attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  // expected-error @+1 {{'sbp.mask_group' op keep ratio must be in (0, 1], got 0.000000e+00}}
  sbp.mask_group @m keep 0.0 grid [2, 2]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// Keep ratio 1.5.
sbp.model @keep_high attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  // expected-error @+1 {{'sbp.mask_group' op keep ratio must be in (0, 1], got 1.500000e+00}}
  sbp.mask_group @m keep 1.5 grid [2, 2]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// Keep ratio -0.5.
sbp.model @keep_negative attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  // expected-error @+1 {{'sbp.mask_group' op keep ratio must be in (0, 1], got -5.000000e-01}}
  sbp.mask_group @m keep -0.5 grid [2, 2]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// A grid needs two sizes.
sbp.model @grid_rank attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  // expected-error @+1 {{'sbp.mask_group' op grid must be two positive sizes [H, W], got [4]}}
  sbp.mask_group @m keep 0.5 grid [4]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// Grid sizes must be positive.
sbp.model @grid_zero attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  // expected-error @+1 {{'sbp.mask_group' op grid must be two positive sizes [H, W], got [2, 0]}}
  sbp.mask_group @m keep 0.5 random [2, 0]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// A random mask drops int((1 - r) * H * W) tokens: all of them when 1 - r rounds to 1.
sbp.model @random_keeps_nothing attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  // expected-error @+1 {{'sbp.mask_group' op keep ratio 1.000000e-20 keeps no token of the [2, 2] grid}}
  sbp.mask_group @m keep 1.0e-20 random [2, 2]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// An unknown mask kind.
sbp.model @mask_kind attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  // expected-error @+2 {{custom op 'sbp.mask_group' expected ::sbp::MaskKind to be one of: grid, random}}
  // expected-error @+1 {{custom op 'sbp.mask_group' failed to parse Sbp_MaskKindAttr parameter 'value' which is to be a `::sbp::MaskKind`}}
  sbp.mask_group @m keep 0.5 checkerboard [2, 2]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// A branch refers to an unknown mask group.
sbp.model @unknown_group attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.5 grid [2, 2]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  // expected-error @+1 {{'sbp.branch' op refers to an unknown mask group @nope}}
  %y = sbp.branch @nope (%tok) : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32> {
  ^bb0(%x: tensor<2x4x16xf32>):
    %h = sbp.relu %x : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32>
    sbp.yield %h : tensor<2x4x16xf32>
  }
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// Branch tensors must have the group's token count (prefix + H * W = 1 + 2 * 2).
sbp.model @branch_tokens attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @cls keep 0.5 grid [2, 2] prefix 1
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  // expected-error @+1 {{'sbp.branch' op tensors must be [batch, 5, features] to match mask group @cls (prefix 1 + grid [2, 2]), got 'tensor<2x4x16xf32>'}}
  %y = sbp.branch @cls (%tok) : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32> {
  ^bb0(%x: tensor<2x4x16xf32>):
    %h = sbp.relu %x : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32>
    sbp.yield %h : tensor<2x4x16xf32>
  }
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// Branch tensors must be token tensors.
sbp.model @branch_rank attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.5 grid [2, 2]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  // expected-error @+1 {{'sbp.branch' op tensors must be [batch, 4, features] to match mask group @m (prefix 0 + grid [2, 2]), got 'tensor<2x16xf32>'}}
  %y = sbp.branch @m (%pool) : (tensor<2x16xf32>) -> tensor<2x16xf32> {
  ^bb0(%x: tensor<2x16xf32>):
    %h = sbp.relu %x : (tensor<2x16xf32>) -> tensor<2x16xf32>
    sbp.yield %h : tensor<2x16xf32>
  }
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// mean_tokens mixes tokens: it cannot be inside an SBP branch.
sbp.model @branch_not_tokenwise attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.5 grid [2, 2]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  // expected-note @+1 {{SBP branch here}}
  %y = sbp.branch @m (%tok) : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32> {
  ^bb0(%x: tensor<2x4x16xf32>):
    // expected-error @+1 {{'sbp.mean_tokens' op is not token-wise, so it cannot be inside an SBP branch}}
    %m = sbp.mean_tokens %x : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
    sbp.yield %x : tensor<2x4x16xf32>
  }
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// pos_add is not token-wise either (its embedding depends on the token index).
sbp.model @branch_pos_add attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.5 grid [2, 2]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %pos = sbp.param "pos" : tensor<1x4x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  // expected-note @+1 {{SBP branch here}}
  %y = sbp.branch @m (%tok) : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32> {
  ^bb0(%x: tensor<2x4x16xf32>):
    // expected-error @+1 {{'sbp.pos_add' op is not token-wise, so it cannot be inside an SBP branch}}
    %h = sbp.pos_add %x, %pos : (tensor<2x4x16xf32>, tensor<1x4x16xf32>) -> tensor<2x4x16xf32>
    sbp.yield %h : tensor<2x4x16xf32>
  }
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// The body takes one argument per input.
sbp.model @branch_args attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.5 grid [2, 2]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  // expected-error @+1 {{'sbp.branch' op body must take one argument per input}}
  %y = sbp.branch @m (%tok) : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32> {
  ^bb0(%x: tensor<2x4x16xf32>, %x2: tensor<2x4x16xf32>):
    sbp.yield %x : tensor<2x4x16xf32>
  }
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// Body argument types are the input types.
sbp.model @branch_arg_type attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.5 grid [2, 2]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  // expected-error @+1 {{'sbp.branch' op body argument type 'tensor<2x4x8xf32>' differs from input 'tensor<2x4x16xf32>'}}
  %y = sbp.branch @m (%tok) : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32> {
  ^bb0(%x: tensor<2x4x8xf32>):
    sbp.yield %tok : tensor<2x4x16xf32>
  }
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// The yielded types are the result types.
sbp.model @branch_yield attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.5 grid [2, 2]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  // expected-error @+1 {{'sbp.branch' op yielded types must match the results}}
  %y = sbp.branch @m (%tok) : (tensor<2x4x16xf32>) -> tensor<2x4x16xf32> {
  ^bb0(%x: tensor<2x4x16xf32>):
    sbp.yield %x, %x : tensor<2x4x16xf32>, tensor<2x4x16xf32>
  }
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// sbp.yield only terminates a branch.
sbp.model @yield_parent attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  // expected-error @+1 {{'sbp.yield' op expects parent op 'sbp.branch'}}
  sbp.yield %tok : tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// The patch size must divide the image size.
sbp.model @patch_divides attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  // expected-error @+1 {{'sbp.patchify' op patch size 3 must divide the image size 8x8}}
  %tok = sbp.patchify %images patch 3 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// patchify result shape: [B, (H/p)(W/p), C*p*p].
sbp.model @patch_result attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  // expected-error @+1 {{'sbp.patchify' op result must have shape [2, 16, 4], got [2, 4, 16]}}
  %tok = sbp.patchify %images patch 2 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// linear: the input features must equal the weight's in.
sbp.model @linear_in attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x8xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  // expected-error @+1 {{'sbp.linear' op input features (16) must equal the weight's in (8)}}
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x8xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// linear: the result has the weight's out features.
sbp.model @linear_out attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  // expected-error @+1 {{'sbp.linear' op result must have shape [2, 10], got [2, 12]}}
  %l0 = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x12xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// linear: the weight is [out, in].
sbp.model @linear_weight_rank attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %v = sbp.param "v" : tensor<16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  // expected-error @+1 {{'sbp.linear' op weight must be [out, in] (or [out, in...]), got 'tensor<16xf32>'}}
  %bad = sbp.linear %pool, %v : (tensor<2x16xf32>, tensor<16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// bias_add: the bias is [features].
sbp.model @bias_shape attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %b = sbp.param "head.bias" : tensor<16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  // expected-error @+1 {{'sbp.bias_add' op bias must have shape [10], got [16]}}
  %lb = sbp.bias_add %logits, %b : (tensor<2x10xf32>, tensor<16xf32>) -> tensor<2x10xf32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// pos_add: the embedding is [1, T, D].
sbp.model @pos_shape attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %pos = sbp.param "pos_embed" : tensor<2x4x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  // expected-error @+1 {{'sbp.pos_add' op position embedding must have shape [1, 4, 16], got [2, 4, 16]}}
  %x = sbp.pos_add %tok, %pos : (tensor<2x4x16xf32>, tensor<2x4x16xf32>) -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// pos_add needs a token tensor.
sbp.model @pos_rank attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %pos = sbp.param "pos_embed" : tensor<1x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  // expected-error @+1 {{'sbp.pos_add' op input must be a token tensor [B, T, D]}}
  %x = sbp.pos_add %pool, %pos : (tensor<2x16xf32>, tensor<1x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// gelu keeps the shape.
sbp.model @gelu_shape attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  // expected-error @+1 {{'sbp.gelu' op result must have shape [2, 4, 16], got [2, 4, 8]}}
  %g = sbp.gelu %tok : (tensor<2x4x16xf32>) -> tensor<2x4x8xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// relu keeps the shape.
sbp.model @relu_shape attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  // expected-error @+1 {{'sbp.relu' op result must have shape [2, 4, 16], got [2, 16, 4]}}
  %g = sbp.relu %tok : (tensor<2x4x16xf32>) -> tensor<2x16x4xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// add: both operands have one shape.
sbp.model @add_shape attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  // expected-error @+1 {{'sbp.add' op rhs must have shape [2, 4, 16], got [2, 16]}}
  %s = sbp.add %tok, %pool : (tensor<2x4x16xf32>, tensor<2x16xf32>) -> tensor<2x4x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// layer_norm: the weight is [features].
sbp.model @ln_weight attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %nw = sbp.param "norm.weight" : tensor<8xf32> init<ones>
  %nb = sbp.param "norm.bias" : tensor<16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  // expected-error @+1 {{'sbp.layer_norm' op weight must have shape [16], got [8]}}
  %n = sbp.layer_norm %tok, %nw, %nb : (tensor<2x4x16xf32>, tensor<8xf32>, tensor<16xf32>) -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// layer_norm: the bias is [features].
sbp.model @ln_bias attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %nw = sbp.param "norm.weight" : tensor<16xf32> init<ones>
  %nb = sbp.param "norm.bias" : tensor<1x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  // expected-error @+1 {{'sbp.layer_norm' op bias must have shape [16], got [1, 16]}}
  %n = sbp.layer_norm %tok, %nw, %nb : (tensor<2x4x16xf32>, tensor<16xf32>, tensor<1x16xf32>) -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// layer_norm: eps must be positive.
sbp.model @ln_eps attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %nw = sbp.param "norm.weight" : tensor<16xf32> init<ones>
  %nb = sbp.param "norm.bias" : tensor<16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  // expected-error @+1 {{'sbp.layer_norm' op eps must be > 0}}
  %n = sbp.layer_norm %tok, %nw, %nb {eps = 0.0 : f64} : (tensor<2x4x16xf32>, tensor<16xf32>, tensor<16xf32>) -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// mean_tokens needs a token tensor.
sbp.model @mean_rank attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  // expected-error @+1 {{'sbp.mean_tokens' op input must be a token tensor [B, T, D]}}
  %m = sbp.mean_tokens %pool : (tensor<2x16xf32>) -> tensor<2xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// mean_tokens: [B, T, D] -> [B, D].
sbp.model @mean_result attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  // expected-error @+1 {{'sbp.mean_tokens' op result must have shape [2, 16], got [2, 4]}}
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x4xf32>
  %p2 = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %p2, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// cross_entropy: the labels are i32.
sbp.model @ce_labels_type attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %fl = sbpk.input "float_labels" : tensor<2xf32>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  // expected-error @+1 {{'sbp.cross_entropy' op operand #1 must be ranked tensor of 32-bit signless integer values, but got 'tensor<2xf32>'}}
  %loss = sbp.cross_entropy %logits, %fl : (tensor<2x10xf32>, tensor<2xf32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// cross_entropy: one label per row of logits.
sbp.model @ce_labels_shape attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %l3 = sbpk.input "l3" : tensor<2x1xi32>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  // expected-error @+1 {{'sbp.cross_entropy' op labels must have shape [2], got [2, 1]}}
  %loss = sbp.cross_entropy %logits, %l3 : (tensor<2x10xf32>, tensor<2x1xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// cross_entropy: the logits are [B, classes].
sbp.model @ce_logits_rank attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  // expected-error @+1 {{'sbp.cross_entropy' op logits must be [B, classes]}}
  %l0 = sbp.cross_entropy %tok, %labels : (tensor<2x4x16xf32>, tensor<2xi32>) -> tensor<f32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// The loss must come from sbp.cross_entropy.
sbp.model @output_loss attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %fake = sbpk.input "loss" : tensor<f32>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  // expected-error @+1 {{'sbp.output' op the loss must be the result of sbp.cross_entropy}}
  sbp.output %fake, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// The logits are [B, classes].
sbp.model @output_logits attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  // expected-error @+1 {{'sbp.output' op logits must be [batch, classes], got 'tensor<2x4x16xf32>'}}
  sbp.output %loss, %tok : tensor<f32>, tensor<2x4x16xf32>
}

// -----

// The loss is a scalar.
sbp.model @output_scalar attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  // expected-error @+1 {{'sbp.output' op operand #0 must be 0D tensor of 32-bit float values, but got 'tensor<2x10xf32>'}}
  sbp.output %logits, %logits : tensor<2x10xf32>, tensor<2x10xf32>
}

// -----

// keep_indices: [K], K = the group capacity (2 of a [2, 2] grid at keep 0.5).
sbp.model @keep_capacity attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.5 grid [2, 2]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  // expected-error @+1 {{'sbp.keep_indices' op keep indices must have shape [2], got [3]}}
  %k = sbp.keep_indices @m : tensor<3xi32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// keep_indices: an unknown mask group.
sbp.model @keep_unknown attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  sbp.mask_group @m keep 0.5 grid [2, 2]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
  %w = sbp.param "head.weight" : tensor<10x16xf32> init<zeros>
  %tok = sbp.patchify %images patch 4 : tensor<2x1x8x8xf32> -> tensor<2x4x16xf32>
  // expected-error @+1 {{'sbp.keep_indices' op refers to an unknown mask group @g}}
  %k = sbp.keep_indices @g : tensor<2xi32>
  %pool = sbp.mean_tokens %tok : (tensor<2x4x16xf32>) -> tensor<2x16xf32>
  %logits = sbp.linear %pool, %w : (tensor<2x16xf32>, tensor<10x16xf32>) -> tensor<2x10xf32>
  %loss = sbp.cross_entropy %logits, %labels : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<f32>
  sbp.output %loss, %logits : tensor<f32>, tensor<2x10xf32>
}

// -----

// mask_rows needs a token tensor.
%x = sbpk.input "x" : tensor<8x16xf32>
%k = sbpk.input "k" : tensor<2xi32>
// expected-error @+1 {{'sbp.mask_rows' op input must be a token tensor [B, T, D]}}
%y = sbp.mask_rows %x, %k : (tensor<8x16xf32>, tensor<2xi32>) -> tensor<8x16xf32>

// -----

// gather_rows: [B, T, D] -> [B, K, D].
%x = sbpk.input "x" : tensor<2x4x8xf32>
%k = sbpk.input "k" : tensor<2xi32>
// expected-error @+1 {{'sbp.gather_rows' op result must have shape [2, 2, 8], got [2, 4, 8]}}
%y = sbp.gather_rows %x, %k : (tensor<2x4x8xf32>, tensor<2xi32>) -> tensor<2x4x8xf32>

// -----

// scatter_rows: the input has K rows.
%x = sbpk.input "x" : tensor<2x3x8xf32>
%k = sbpk.input "k" : tensor<2xi32>
// expected-error @+1 {{'sbp.scatter_rows' op input [2, 3, 8] does not scatter into [2, 4, 8]}}
%y = sbp.scatter_rows %x, %k : (tensor<2x3x8xf32>, tensor<2xi32>) -> tensor<2x4x8xf32>

// -----

// scatter_add_rows: input and base features agree.
%b = sbpk.input "b" : tensor<2x4x8xf32>
%x = sbpk.input "x" : tensor<2x2x4xf32>
%k = sbpk.input "k" : tensor<2xi32>
// expected-error @+1 {{'sbp.scatter_add_rows' op input [2, 2, 4] does not scatter into [2, 4, 8]}}
%y = sbp.scatter_add_rows %b, %x, %k : (tensor<2x4x8xf32>, tensor<2x2x4xf32>, tensor<2xi32>) -> tensor<2x4x8xf32>

// -----

// scatter_add_rows needs token tensors.
%b = sbpk.input "b" : tensor<8x8xf32>
%x = sbpk.input "x" : tensor<2x2x8xf32>
%k = sbpk.input "k" : tensor<2xi32>
// expected-error @+1 {{'sbp.scatter_add_rows' op needs token tensors}}
%y = sbp.scatter_add_rows %b, %x, %k : (tensor<8x8xf32>, tensor<2x2x8xf32>, tensor<2xi32>) -> tensor<8x8xf32>

// -----

// linear_grad_input: dy features = W out.
%dy = sbpk.input "dy" : tensor<2x4x8xf32>
%w = sbpk.input "w" : tensor<16x8xf32>
// expected-error @+1 {{'sbp.linear_grad_input' op gradient features must equal the weight's out}}
%y = sbp.linear_grad_input %dy, %w : (tensor<2x4x8xf32>, tensor<16x8xf32>) -> tensor<2x4x8xf32>

// -----

// linear_grad_input: dx = dy W is [..., in].
%dy = sbpk.input "dy" : tensor<2x4x8xf32>
%w = sbpk.input "w" : tensor<8x16xf32>
// expected-error @+1 {{'sbp.linear_grad_input' op result must have shape [2, 4, 16], got [2, 4, 8]}}
%y = sbp.linear_grad_input %dy, %w : (tensor<2x4x8xf32>, tensor<8x16xf32>) -> tensor<2x4x8xf32>

// -----

// linear_grad_weight: x and dy have the same rows.
%x = sbpk.input "x" : tensor<2x2x16xf32>
%dy = sbpk.input "dy" : tensor<2x4x8xf32>
// expected-error @+1 {{'sbp.linear_grad_weight' op input and gradient must have the same rows}}
%y = sbp.linear_grad_weight %x, %dy : (tensor<2x2x16xf32>, tensor<2x4x8xf32>) -> tensor<8x16xf32>

// -----

// linear_grad_weight: dW is [out, in].
%x = sbpk.input "x" : tensor<2x4x16xf32>
%dy = sbpk.input "dy" : tensor<2x4x8xf32>
// expected-error @+1 {{'sbp.linear_grad_weight' op result must have shape [8, 16], got [16, 8]}}
%y = sbp.linear_grad_weight %x, %dy : (tensor<2x4x16xf32>, tensor<2x4x8xf32>) -> tensor<16x8xf32>

// -----

// bias_grad: [features].
%dy = sbpk.input "dy" : tensor<2x4x8xf32>
// expected-error @+1 {{'sbp.bias_grad' op result must have shape [8], got [4]}}
%y = sbp.bias_grad %dy : (tensor<2x4x8xf32>) -> tensor<4xf32>

// -----

// pos_grad needs a token tensor.
%dy = sbpk.input "dy" : tensor<2x8xf32>
// expected-error @+1 {{'sbp.pos_grad' op gradient must be a token tensor}}
%y = sbp.pos_grad %dy : (tensor<2x8xf32>) -> tensor<1x8xf32>

// -----

// pos_grad: [1, T, D].
%dy = sbpk.input "dy" : tensor<2x4x8xf32>
// expected-error @+1 {{'sbp.pos_grad' op result must have shape [1, 4, 8], got [2, 4, 8]}}
%y = sbp.pos_grad %dy : (tensor<2x4x8xf32>) -> tensor<2x4x8xf32>

// -----

// gelu_grad: x and dy have one shape.
%x = sbpk.input "x" : tensor<2x4x8xf32>
%dy = sbpk.input "dy" : tensor<2x2x8xf32>
// expected-error @+1 {{'sbp.gelu_grad' op gradient must have shape [2, 4, 8], got [2, 2, 8]}}
%y = sbp.gelu_grad %x, %dy : (tensor<2x4x8xf32>, tensor<2x2x8xf32>) -> tensor<2x4x8xf32>

// -----

// relu_grad: x and dy have one shape.
%x = sbpk.input "x" : tensor<2x4x8xf32>
%dy = sbpk.input "dy" : tensor<2x4x4xf32>
// expected-error @+1 {{'sbp.relu_grad' op gradient must have shape [2, 4, 8], got [2, 4, 4]}}
%y = sbp.relu_grad %x, %dy : (tensor<2x4x8xf32>, tensor<2x4x4xf32>) -> tensor<2x4x8xf32>

// -----

// layer_norm_grad: x and dy have one shape.
%x = sbpk.input "x" : tensor<2x4x8xf32>
%w = sbpk.input "w" : tensor<8xf32>
%dy = sbpk.input "dy" : tensor<2x2x8xf32>
// expected-error @+1 {{'sbp.layer_norm_grad' op gradient must have shape [2, 4, 8], got [2, 2, 8]}}
%a, %b, %c = sbp.layer_norm_grad %x, %w, %dy : (tensor<2x4x8xf32>, tensor<8xf32>, tensor<2x2x8xf32>) -> (tensor<2x4x8xf32>, tensor<8xf32>, tensor<8xf32>)

// -----

// layer_norm_grad: the weight gradient is [features].
%x = sbpk.input "x" : tensor<2x4x8xf32>
%w = sbpk.input "w" : tensor<8xf32>
%dy = sbpk.input "dy" : tensor<2x4x8xf32>
// expected-error @+1 {{'sbp.layer_norm_grad' op weight gradient must have shape [8], got [4]}}
%a, %b, %c = sbp.layer_norm_grad %x, %w, %dy : (tensor<2x4x8xf32>, tensor<8xf32>, tensor<2x4x8xf32>) -> (tensor<2x4x8xf32>, tensor<4xf32>, tensor<8xf32>)

// -----

// mean_tokens_grad: [B, D] -> [B, T, D].
%dy = sbpk.input "dy" : tensor<2x8xf32>
// expected-error @+1 {{'sbp.mean_tokens_grad' op result must be [B, T, D] for a gradient [B, D]}}
%y = sbp.mean_tokens_grad %dy : (tensor<2x8xf32>) -> tensor<2x4x16xf32>

// -----

// cross_entropy_grad: dlogits has the shape of the logits.
%l = sbpk.input "l" : tensor<2x10xf32>
%t = sbpk.input "t" : tensor<2xi32>
// expected-error @+1 {{'sbp.cross_entropy_grad' op result must have shape [2, 10], got [2, 5]}}
%y = sbp.cross_entropy_grad %l, %t : (tensor<2x10xf32>, tensor<2xi32>) -> tensor<2x5xf32>

// -----

// Every op needs static shapes (TensorLimits.h): here the first one, sbpk.input.
// expected-error @+1 {{'sbpk.input' op result #0 needs a static shape, got 'tensor<?x8xf32>'}}
%g = sbpk.input "g" : tensor<?x8xf32>
sbp.param_grad "w", %g : tensor<?x8xf32>

// -----

// Rank-0 images: reported by the input's verifier, not a crash in the model's.
sbp.model @rank0_images attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  // expected-error @+1 {{images must be f32 [batch, channels, height, width], got 'tensor<f32>'}}
  %images = sbp.input "images" : tensor<f32>
  %labels = sbp.input "labels" : tensor<2xi32>
}

// -----

// A negative prefix.
sbp.model @negative_prefix attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  // expected-error @+1 {{prefix must be >= 0}}
  sbp.mask_group @m keep 0.5 grid [2, 3] prefix -2
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
}

// -----

// A grid stride larger than the grid's diagonals would keep no token on some
// steps (and a tiny keep ratio must not hang the compiler).
sbp.model @tiny_grid_keep attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  // expected-error @+1 {{keep ratio 1.000000e-12 gives a grid stride of 2147483647, larger than the [2, 2] grid's 3 diagonals}}
  sbp.mask_group @m keep 1.0e-12 grid [2, 2]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
}

// -----

sbp.model @sparse_grid_keep attributes {optimizer = #sbp.sgd<lr = 0.1, momentum = 0.0, weight_decay = 0.0>} {
  // expected-error @+1 {{keep ratio 1.000000e-01 gives a grid stride of 10, larger than the [2, 2] grid's 3 diagonals}}
  sbp.mask_group @m keep 0.1 grid [2, 2]
  %images = sbp.input "images" : tensor<2x1x8x8xf32>
  %labels = sbp.input "labels" : tensor<2xi32>
}
