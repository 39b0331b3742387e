// RUN: sbpc %S/../numerics/Inputs/vit_small_qkv.mlir --emit=report | FileCheck %s --check-prefix=ROWS
// RUN: sbpc %S/../numerics/Inputs/vit_small_query.mlir --emit=report | FileCheck %s --check-prefix=QUERY
// RUN: sbpc %S/../numerics/Inputs/vit_small_head.mlir --emit=report | FileCheck %s --check-prefix=HEAD
// RUN: sbpc %S/../numerics/Inputs/vit_small_qkv.mlir --emit=report --keep=1.0 | FileCheck %s --check-prefix=DENSE
// RUN: sbpc %S/../numerics/Inputs/vit_small_qkv.mlir --emit=report | %python %S/../train/check_report.py --max-ratio 0.65 --skip blocks.1.mlp | FileCheck %s --check-prefix=RATIO
// RUN: sbpc %S/../numerics/Inputs/vit_small_qkv.mlir --emit=report | not %python %S/../train/check_report.py --max-ratio 0.65
// RUN: sbpc %S/../numerics/Inputs/vit_small_query.mlir --emit=report | not %python %S/../train/check_report.py --max-ratio 0.65

// The cost report of the small ViT (2 blocks, attention map and MLP of each
// an SBP region at keep 0.5: 9 of 17 rows). With drop_qkv the attention
// regions' backward costs about half (< 0.6x) and the SBP forward is cheaper
// too (kept queries attend over kept keys only); every region row is at most
// 0.65x. drop_query prunes only the map's and the output projection's
// backward, drop_head nothing on rows; the MLP regions halve in every mode,
// except the last block's: it runs on the class token's 4 rows with and
// without SBP (sbp-sink-take-token), so SBP has nothing left to prune there
// (1.000x; the checker is told to skip it, and fails without that).

// ROWS:      model vit_small: batch 4, 11650 parameters (46.60 KB)
// ROWS-NEXT: {{^ +}}with SBP    without SBP    ratio{{$}}
// ROWS-NEXT: {{^}}  forward FLOPs / step{{ +}}{{[0-9.]+ [KMG]?FLOP}}{{ +}}{{[0-9.]+ [KMG]?FLOP}}{{ +}}0.9{{[0-9][0-9]}}x{{$}}
// ROWS-NEXT: {{^}}  backward FLOPs / step{{ +}}{{[0-9.]+ [KMG]?FLOP}}{{ +}}{{[0-9.]+ [KMG]?FLOP}}{{ +}}0.{{[0-5][0-9][0-9]}}x{{$}}
// ROWS:      {{^}}SBP regions:{{$}}
// ROWS-NEXT: {{^}}  blocks.0.attn backward FLOPs{{ +}}{{[0-9.]+ [KMG]?FLOP}}{{ +}}{{[0-9.]+ [KMG]?FLOP}}{{ +}}0.{{[0-5][0-9][0-9]}}x{{$}}
// ROWS-NEXT: {{^}}  blocks.0.attn saved activations{{ +}}{{[0-9.]+ [KMG]?B}}{{ +}}{{[0-9.]+ [KMG]?B}}{{ +}}0.{{[0-6][0-9][0-9]}}x{{$}}
// ROWS-NEXT: {{^}}  blocks.0.mlp backward FLOPs{{ +}}{{[0-9.]+ [KMG]?FLOP}}{{ +}}{{[0-9.]+ [KMG]?FLOP}}{{ +}}0.{{(4[5-9]|5[0-5])[0-9]}}x{{$}}
// ROWS-NEXT: {{^}}  blocks.0.mlp saved activations{{ +}}{{[0-9.]+ [KMG]?B}}{{ +}}{{[0-9.]+ [KMG]?B}}{{ +}}0.{{(4[5-9]|5[0-5])[0-9]}}x{{$}}
// ROWS-NEXT: {{^}}  blocks.1.attn backward FLOPs{{ +}}{{[0-9.]+ [KMG]?FLOP}}{{ +}}{{[0-9.]+ [KMG]?FLOP}}{{ +}}0.{{[0-5][0-9][0-9]}}x{{$}}
// ROWS-NEXT: {{^}}  blocks.1.attn saved activations{{ +}}{{[0-9.]+ [KMG]?B}}{{ +}}{{[0-9.]+ [KMG]?B}}{{ +}}0.{{[0-6][0-9][0-9]}}x{{$}}
// ROWS-NEXT: {{^}}  blocks.1.mlp backward FLOPs{{ +}}[[M1:[0-9.]+ [KMG]?FLOP]]{{ +}}[[M1]]{{ +}}1.000x{{$}}
// ROWS-NEXT: {{^}}  blocks.1.mlp saved activations{{ +}}[[S1:[0-9.]+ [KMG]?B]]{{ +}}[[S1]]{{ +}}1.000x{{$}}
// ROWS-NOT:  {{.}}

// RATIO-DAG: OK   blocks.0.attn backward FLOPs
// RATIO-DAG: OK   blocks.1.attn backward FLOPs
// RATIO-DAG: OK   blocks.0.attn saved activations
// RATIO-DAG: OK   blocks.1.attn saved activations
// RATIO-NOT: blocks.1.mlp
// RATIO:     6 of 6 region rows at most 0.65x

// QUERY:      {{^}}  forward FLOPs / step{{ +}}[[FWD:[0-9.]+ [KMG]?FLOP]]{{ +}}[[FWD]]{{ +}}1.000x{{$}}
// QUERY:      {{^}}  blocks.0.attn backward FLOPs{{ +}}{{[0-9.]+ [KMG]?FLOP}}{{ +}}{{[0-9.]+ [KMG]?FLOP}}{{ +}}0.{{[6-9][0-9][0-9]}}x{{$}}
// QUERY-NEXT: {{^}}  blocks.0.attn saved activations{{ +}}{{[0-9.]+ [KMG]?B}}{{ +}}{{[0-9.]+ [KMG]?B}}{{ +}}0.{{[0-9][0-9][0-9]}}x{{$}}
// QUERY-NEXT: {{^}}  blocks.0.mlp backward FLOPs{{ +}}{{[0-9.]+ [KMG]?FLOP}}{{ +}}{{[0-9.]+ [KMG]?FLOP}}{{ +}}0.{{(4[5-9]|5[0-5])[0-9]}}x{{$}}

// HEAD:      {{^}}  forward FLOPs / step{{ +}}[[FWD:[0-9.]+ [KMG]?FLOP]]{{ +}}[[FWD]]{{ +}}1.000x{{$}}
// HEAD:      {{^}}  blocks.0.attn backward FLOPs{{ +}}{{[0-9.]+ [KMG]?FLOP}}{{ +}}{{[0-9.]+ [KMG]?FLOP}}{{ +}}{{0\.[0-9]{3}|1\.000}}x{{$}}
// HEAD:      {{^}}  blocks.0.mlp backward FLOPs{{ +}}{{[0-9.]+ [KMG]?FLOP}}{{ +}}{{[0-9.]+ [KMG]?FLOP}}{{ +}}0.{{(4[5-9]|5[0-5])[0-9]}}x{{$}}

// DENSE:      model vit_small: batch 4, 11650 parameters (46.60 KB)
// DENSE:      SBP regions:
// DENSE-NEXT:   blocks.0.attn backward FLOPs{{ +}}[[B0:[0-9.]+ [KMG]?FLOP]]{{ +}}[[B0]]{{ +}}1.000x
// DENSE-NEXT:   blocks.0.attn saved activations{{ +}}[[S0:[0-9.]+ [KMG]?B]]{{ +}}[[S0]]{{ +}}1.000x
// DENSE-COUNT-6: 1.000x
