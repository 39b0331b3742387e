// RUN: sbp-opt %s -split-input-file -sbp-split-weight-grads | FileCheck %s --enable-var-scope
// RUN: sbp-opt %s -split-input-file -sbp-split-weight-grads=target=cpu | FileCheck %s --check-prefix=CPU
// RUN: sbp-opt %s -split-input-file -sbp-split-weight-grads -sbp-plan-memory | FileCheck %s --check-prefix=PLAN
// RUN: not sbp-opt %s -split-input-file -sbp-split-weight-grads=target=tpu 2>&1 | FileCheck %s --check-prefix=BAD

// Which GEMMs run as row-chunk products (dW = dy^T x in S chunks of the
// rows, S float32 partials in scratch, added by the deferred launch after
// the backward). Hand-written kernel graphs with the shapes of ViT-Tiny's
// backward (batch 256 x 197 tokens = 50432 rows, 99 kept tokens = 25344).

// fc2's weight gradient (192 x 768: 2 x 6 tiles of 128): one wave of the
// H100's 132 SMs wants 11 chunks, and 11 divides 25344 = 2^8 x 9 x 11. The
// partials are 11 x 192 x 768 floats. attn.proj's (192 x 192, 4 tiles) wants
// 33 chunks: the largest divisor of 50432 = 2^8 x 197 up to that is 32. The input
// gradient dX = dY W (no trans_a) reduces over 192 features: not a weight
// gradient, unchanged.
// CHECK-LABEL: sbpk.graph @vit_shapes
// CHECK:         %[[DW:.*]] = sbpk.gemm {{.*}} {alpha = 1.000000e+00 : f64, beta = 0.000000e+00 : f64, bwd, deferred_sums, k = 25344 : i64, m = 192 : i64, n = 768 : i64, row_chunks = 11 : i64, scratch_bytes = 6488064 : i64, trans_a = true, trans_b = false}
// CHECK:         sbpk.gemm {{.*}} {alpha = 1.000000e+00 : f64, beta = 0.000000e+00 : f64, bwd, deferred_sums, k = 50432 : i64, m = 192 : i64, n = 192 : i64, row_chunks = 32 : i64, scratch_bytes = 4718592 : i64, trans_a = true, trans_b = false}
// CHECK:         sbpk.gemm {{.*}} {alpha = 1.000000e+00 : f64, beta = 0.000000e+00 : f64, bwd, k = 192 : i64, m = 50432 : i64, n = 192 : i64, trans_a = false, trans_b = false}
// CHECK:         sbpk.grad_out "fc2.weight" at 0, %[[DW]]
// The CPU trainer keeps plain GEMMs.
// CPU-LABEL: sbpk.graph @vit_shapes
// CPU-NOT:     row_chunks
// CPU-NOT:     deferred_sums
// The partials get arena scratch (sbp-plan-memory keeps it live to the end
// of the step, where the deferred launch reads it).
// PLAN-LABEL: sbpk.graph @vit_shapes
// PLAN:         sbpk.gemm {{.*}}row_chunks = 11 : i64, scratch_bytes = 6488064 : i64, scratch_offset = [[A:[0-9]+]] : i64
// PLAN:         sbpk.gemm {{.*}}row_chunks = 32 : i64, scratch_bytes = 4718592 : i64, scratch_offset = [[B:[0-9]+]] : i64
// BAD: error: sbp-split-weight-grads: unknown target 'tpu' (cuda or cpu)
sbpk.graph @vit_shapes {
  %dy = sbpk.input "labels" : tensor<25344x192xbf16>
  %h = sbpk.input "images" : tensor<25344x768xbf16>
  %dyp = sbpk.input "labels" : tensor<50432x192xbf16>
  %x = sbpk.input "images" : tensor<50432x192xbf16>
  %w = sbpk.input "images" : tensor<192x192xbf16>
  %dw2 = sbpk.gemm %dy, %h {alpha = 1.0 : f64, beta = 0.0 : f64, bwd, k = 25344 : i64, m = 192 : i64, n = 768 : i64, trans_a = true, trans_b = false} : (tensor<25344x192xbf16>, tensor<25344x768xbf16>) -> tensor<192x768xf32>
  %dwp = sbpk.gemm %dyp, %x {alpha = 1.0 : f64, beta = 0.0 : f64, bwd, k = 50432 : i64, m = 192 : i64, n = 192 : i64, trans_a = true, trans_b = false} : (tensor<50432x192xbf16>, tensor<50432x192xbf16>) -> tensor<192x192xf32>
  %dx = sbpk.gemm %dyp, %w {alpha = 1.0 : f64, beta = 0.0 : f64, bwd, k = 192 : i64, m = 50432 : i64, n = 192 : i64, trans_a = false, trans_b = false} : (tensor<50432x192xbf16>, tensor<192x192xbf16>) -> tensor<50432x192xf32>
  sbpk.grad_out "fc2.weight" at 0, %dw2 : tensor<192x768xf32>
  sbpk.grad_out "proj.weight" at 147456, %dwp : tensor<192x192xf32>
  sbpk.return %dx : tensor<50432x192xf32>
}

// -----

// What stays a plain GEMM:
// - a weight gradient that the step also reads (returned here): its sum
//   cannot wait for the end of the step;
// - one that adds to a C input (beta 1): the partials would drop it;
// - a bf16 result (not a parameter gradient's float32);
// - too few rows to split: 31 rows is under two chunks of 16, and 97 (prime)
//   has no divisor up to the 6 chunks its rows allow;
// - a weight so large that its tiles alone fill the GPU (4096 x 4096);
// - a product with op(B) = B^T (no weight gradient has it).
// A small product still splits where its rows allow: 68 = 4 x 17 rows.
// CHECK-LABEL: sbpk.graph @stays_plain
// CHECK:         sbpk.gemm %{{.*}} {alpha = 1.000000e+00 : f64, beta = 0.000000e+00 : f64, bwd, k = 128 : i64, m = 16 : i64, n = 16 : i64, trans_a = true, trans_b = false}
// CHECK:         sbpk.gemm %{{.*}} {alpha = 1.000000e+00 : f64, beta = 1.000000e+00 : f64, bwd, k = 128 : i64, m = 16 : i64, n = 16 : i64, trans_a = true, trans_b = false}
// CHECK:         sbpk.gemm %{{.*}} {alpha = 1.000000e+00 : f64, beta = 0.000000e+00 : f64, bwd, k = 128 : i64, m = 16 : i64, n = 16 : i64, trans_a = true, trans_b = false} : {{.*}} -> tensor<16x16xbf16>
// CHECK:         sbpk.gemm %{{.*}} {alpha = 1.000000e+00 : f64, beta = 0.000000e+00 : f64, bwd, k = 31 : i64, m = 16 : i64, n = 16 : i64, trans_a = true, trans_b = false}
// CHECK:         sbpk.gemm %{{.*}} {alpha = 1.000000e+00 : f64, beta = 0.000000e+00 : f64, bwd, k = 97 : i64, m = 16 : i64, n = 16 : i64, trans_a = true, trans_b = false}
// CHECK:         sbpk.gemm %{{.*}} {alpha = 1.000000e+00 : f64, beta = 0.000000e+00 : f64, bwd, k = 8192 : i64, m = 4096 : i64, n = 4096 : i64, trans_a = true, trans_b = false}
// CHECK:         sbpk.gemm %{{.*}} {alpha = 1.000000e+00 : f64, beta = 0.000000e+00 : f64, bwd, k = 128 : i64, m = 16 : i64, n = 16 : i64, trans_a = true, trans_b = true}
// CHECK:         sbpk.gemm %{{.*}} {alpha = 1.000000e+00 : f64, beta = 0.000000e+00 : f64, bwd, deferred_sums, k = 68 : i64, m = 16 : i64, n = 16 : i64, row_chunks = 4 : i64, scratch_bytes = 4096 : i64, trans_a = true, trans_b = false}
sbpk.graph @stays_plain {
  %a = sbpk.input "labels" : tensor<128x16xbf16>
  %b = sbpk.input "images" : tensor<128x16xbf16>
  %bt = sbpk.input "images" : tensor<16x128xbf16>
  %c = sbpk.input "images" : tensor<16x16xf32>
  %a31 = sbpk.input "labels" : tensor<31x16xbf16>
  %a97 = sbpk.input "labels" : tensor<97x16xbf16>
  %a68 = sbpk.input "labels" : tensor<68x16xbf16>
  %big = sbpk.input "labels" : tensor<8192x4096xbf16>
  %read = sbpk.gemm %a, %b {alpha = 1.0 : f64, beta = 0.0 : f64, bwd, k = 128 : i64, m = 16 : i64, n = 16 : i64, trans_a = true, trans_b = false} : (tensor<128x16xbf16>, tensor<128x16xbf16>) -> tensor<16x16xf32>
  %acc = sbpk.gemm %a, %b, %c {alpha = 1.0 : f64, beta = 1.0 : f64, bwd, k = 128 : i64, m = 16 : i64, n = 16 : i64, trans_a = true, trans_b = false} : (tensor<128x16xbf16>, tensor<128x16xbf16>, tensor<16x16xf32>) -> tensor<16x16xf32>
  %half = sbpk.gemm %a, %b {alpha = 1.0 : f64, beta = 0.0 : f64, bwd, k = 128 : i64, m = 16 : i64, n = 16 : i64, trans_a = true, trans_b = false} : (tensor<128x16xbf16>, tensor<128x16xbf16>) -> tensor<16x16xbf16>
  %few = sbpk.gemm %a31, %a31 {alpha = 1.0 : f64, beta = 0.0 : f64, bwd, k = 31 : i64, m = 16 : i64, n = 16 : i64, trans_a = true, trans_b = false} : (tensor<31x16xbf16>, tensor<31x16xbf16>) -> tensor<16x16xf32>
  %prime = sbpk.gemm %a97, %a97 {alpha = 1.0 : f64, beta = 0.0 : f64, bwd, k = 97 : i64, m = 16 : i64, n = 16 : i64, trans_a = true, trans_b = false} : (tensor<97x16xbf16>, tensor<97x16xbf16>) -> tensor<16x16xf32>
  %wide = sbpk.gemm %big, %big {alpha = 1.0 : f64, beta = 0.0 : f64, bwd, k = 8192 : i64, m = 4096 : i64, n = 4096 : i64, trans_a = true, trans_b = false} : (tensor<8192x4096xbf16>, tensor<8192x4096xbf16>) -> tensor<4096x4096xf32>
  %tb = sbpk.gemm %a, %bt {alpha = 1.0 : f64, beta = 0.0 : f64, bwd, k = 128 : i64, m = 16 : i64, n = 16 : i64, trans_a = true, trans_b = true} : (tensor<128x16xbf16>, tensor<16x128xbf16>) -> tensor<16x16xf32>
  %small = sbpk.gemm %a68, %a68 {alpha = 1.0 : f64, beta = 0.0 : f64, bwd, k = 68 : i64, m = 16 : i64, n = 16 : i64, trans_a = true, trans_b = false} : (tensor<68x16xbf16>, tensor<68x16xbf16>) -> tensor<16x16xf32>
  sbpk.grad_out "read" at 0, %read : tensor<16x16xf32>
  sbpk.grad_out "acc" at 256, %acc : tensor<16x16xf32>
  sbpk.grad_out "few" at 512, %few : tensor<16x16xf32>
  sbpk.grad_out "prime" at 768, %prime : tensor<16x16xf32>
  sbpk.grad_out "wide" at 1024, %wide : tensor<4096x4096xf32>
  sbpk.grad_out "tb" at 16778240, %tb : tensor<16x16xf32>
  sbpk.grad_out "small" at 16778496, %small : tensor<16x16xf32>
  sbpk.return %read, %half : tensor<16x16xf32>, tensor<16x16xbf16>
}
