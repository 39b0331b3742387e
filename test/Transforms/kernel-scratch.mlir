// RUN: sbp-opt %s -split-input-file -sbp-kernel-scratch | FileCheck %s
// RUN: sbp-opt %s -split-input-file -sbp-kernel-scratch=target=cpu | FileCheck %s --check-prefix=CPU
// RUN: sbp-opt %s -split-input-file -sbp-kernel-scratch -sbp-plan-memory | FileCheck %s --check-prefix=PLAN
// RUN: not sbp-opt %s -split-input-file -sbp-kernel-scratch=target=tpu 2>&1 | FileCheck %s --check-prefix=BAD

// Which kernels get arena scratch. The bf16 attention backward (plain, kept
// rows, kept heads) gets its dS^T buffer, sbp_attention_ds_bytes = 2 bytes
// x batch x heads x tokens x tokens rounded up to 8: ViT-Tiny at batch 256,
// 2 x 256 x 3 x 197 x 200 = 60518400; SBP's compact 99 kept rows,
// 2 x 256 x 3 x 99 x 104 = 15814656; 4 x 17 tokens of 2 heads, 2 x 4 x 2 x
// 17 x 24 = 6528.
// CHECK-LABEL: sbpk.graph @bf16_backwards
// CHECK:         sbpk.kernel "attention_bwd"({{.*}}) {{{.*}}scratch_bytes = 60518400 : i64, scratch_optional, tokens = 197 : i64}
// CHECK:         sbpk.kernel "attention_bwd_rows"({{.*}}) {{{.*}}scratch_bytes = 15814656 : i64, scratch_optional, tokens = 99 : i64}
// CHECK:         sbpk.kernel "attention_bwd_heads"({{.*}}) {{{.*}}scratch_bytes = 6528 : i64, scratch_optional, tokens = 17 : i64}
// The CPU target: no scratch.
// CPU-LABEL: sbpk.graph @bf16_backwards
// CPU-NOT:     scratch_bytes
// The scratch is optional (the kernels run without it, recomputing dS):
// sbp-plan-memory grants it only in memory that is free anyway. Here every
// result stays live to the end, so the arena is the three results and
// nothing is free while the backwards run: each scratch would raise the
// peak, and is dropped (the emitted call passes nullptr, 0).
// PLAN-LABEL: sbpk.graph @bf16_backwards
// PLAN-SAME:    arena_bytes = 87299072
// PLAN-NOT:     scratch_
// PLAN-LABEL: sbpk.graph @no_scratch
// BAD: error: sbp-kernel-scratch: unknown target 'tpu' (cuda or cpu)
sbpk.graph @bf16_backwards {
  %qkv = sbpk.input "images" : tensor<256x197x576xbf16>
  %o = sbpk.input "images" : tensor<256x197x192xbf16>
  %lse = sbpk.input "images" : tensor<256x197x3xf32>
  %d = sbpk.kernel "attention_bwd"(%qkv, %o, %lse, %o) {batch = 256 : i64, bwd, head_dim = 64 : i64, heads = 3 : i64, scale = 0.125 : f64, tokens = 197 : i64} : (tensor<256x197x576xbf16>, tensor<256x197x192xbf16>, tensor<256x197x3xf32>, tensor<256x197x192xbf16>) -> tensor<256x197x576xbf16>
  %qkvk = sbpk.input "images" : tensor<256x99x576xbf16>
  %ok = sbpk.input "images" : tensor<256x99x192xbf16>
  %lsek = sbpk.input "images" : tensor<256x99x3xf32>
  %keep = sbpk.input "labels" : tensor<99xi32>
  %dk = sbpk.kernel "attention_bwd_rows"(%qkvk, %ok, %lsek, %ok, %keep) {batch = 256 : i64, bwd, head_dim = 64 : i64, heads = 3 : i64, scale = 0.125 : f64, tokens = 99 : i64} : (tensor<256x99x576xbf16>, tensor<256x99x192xbf16>, tensor<256x99x3xf32>, tensor<256x99x192xbf16>, tensor<99xi32>) -> tensor<256x99x576xbf16>
  %qkvh = sbpk.input "images" : tensor<4x17x32xbf16>
  %oh = sbpk.input "images" : tensor<4x17x16xbf16>
  %lseh = sbpk.input "images" : tensor<4x17x2xf32>
  %kh = sbpk.input "labels" : tensor<2xi32>
  %dh = sbpk.kernel "attention_bwd_heads"(%qkvh, %oh, %lseh, %oh, %kh) {batch = 4 : i64, bwd, head_dim = 8 : i64, heads = 2 : i64, scale = 0.35 : f64, tokens = 17 : i64} : (tensor<4x17x32xbf16>, tensor<4x17x16xbf16>, tensor<4x17x2xf32>, tensor<4x17x16xbf16>, tensor<2xi32>) -> tensor<4x17x32xbf16>
  sbpk.return %d, %dk, %dh : tensor<256x197x576xbf16>, tensor<256x99x576xbf16>, tensor<4x17x32xbf16>
}

// -----

// What gets none: the float32 attention backward (its CUDA kernels recompute
// dS and take no scratch), and drop_query's attention_bwd_queries (its dQ
// pass keeps the recomputing kernel).
// CHECK-LABEL: sbpk.graph @no_scratch
// CHECK-NOT:     scratch_bytes
sbpk.graph @no_scratch {
  %qkv = sbpk.input "images" : tensor<4x17x72xf32>
  %o = sbpk.input "images" : tensor<4x17x24xf32>
  %lse = sbpk.input "images" : tensor<4x17x3xf32>
  %d = sbpk.kernel "attention_bwd"(%qkv, %o, %lse, %o) {batch = 4 : i64, bwd, head_dim = 8 : i64, heads = 3 : i64, scale = 0.35 : f64, tokens = 17 : i64} : (tensor<4x17x72xf32>, tensor<4x17x24xf32>, tensor<4x17x3xf32>, tensor<4x17x24xf32>) -> tensor<4x17x72xf32>
  %qkvb = sbpk.input "images" : tensor<4x17x72xbf16>
  %keep = sbpk.input "labels" : tensor<9xi32>
  %okb = sbpk.input "images" : tensor<4x9x24xbf16>
  %lsek = sbpk.input "images" : tensor<4x9x3xf32>
  %dq = sbpk.kernel "attention_bwd_queries"(%qkvb, %keep, %okb, %lsek, %okb) {batch = 4 : i64, bwd, head_dim = 8 : i64, heads = 3 : i64, kept = 9 : i64, scale = 0.35 : f64, tokens = 17 : i64} : (tensor<4x17x72xbf16>, tensor<9xi32>, tensor<4x9x24xbf16>, tensor<4x9x3xf32>, tensor<4x9x24xbf16>) -> tensor<4x17x72xbf16>
  sbpk.return %d, %dq : tensor<4x17x72xf32>, tensor<4x17x72xbf16>
}

// -----

// Granted where memory is free: a 4 MiB temporary dies at the GELU, which
// sets the peak (its input and output, 8 MiB); the attention backward after
// it runs beside the GELU's 4 MiB output only, and its 6528-byte scratch
// takes the dead temporary's place, below the peak.
// CHECK-LABEL: sbpk.graph @fits_below_the_peak
// CHECK:         scratch_bytes = 6528 : i64, scratch_optional
// PLAN-LABEL: sbpk.graph @fits_below_the_peak
// PLAN-SAME:    arena_bytes = 8388608
// PLAN:         sbpk.kernel "attention_bwd_heads"({{.*}}scratch_bytes = 6528 : i64, scratch_offset = {{[0-9]+}} : i64, scratch_optional
sbpk.graph @fits_below_the_peak {
  %t = sbpk.kernel "fill"() {n = 1048576 : i64, value = 0.0 : f32} : () -> tensor<1048576xf32>
  %u = sbpk.kernel "gelu"(%t) {n = 1048576 : i64} : (tensor<1048576xf32>) -> tensor<1048576xf32>
  %qkvh = sbpk.input "labels" : tensor<4x17x32xbf16>
  %oh = sbpk.input "labels" : tensor<4x17x16xbf16>
  %lseh = sbpk.input "labels" : tensor<4x17x2xf32>
  %kh = sbpk.input "labels" : tensor<2xi32>
  %dh = sbpk.kernel "attention_bwd_heads"(%qkvh, %oh, %lseh, %oh, %kh) {batch = 4 : i64, bwd, head_dim = 8 : i64, heads = 2 : i64, scale = 0.35 : f64, tokens = 17 : i64} : (tensor<4x17x32xbf16>, tensor<4x17x16xbf16>, tensor<4x17x2xf32>, tensor<4x17x16xbf16>, tensor<2xi32>) -> tensor<4x17x32xbf16>
  sbpk.return %u, %dh : tensor<1048576xf32>, tensor<4x17x32xbf16>
}
