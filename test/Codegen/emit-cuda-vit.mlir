// RUN: sbpc %S/../numerics/Inputs/vit_small_qkv.mlir --target=cuda --emit=cpp | FileCheck %s --check-prefix=ROWS
// RUN: sbpc %S/../numerics/Inputs/vit_small_query.mlir --target=cuda --emit=cpp | FileCheck %s --check-prefix=QUERY
// RUN: sbpc %S/../numerics/Inputs/vit_small_head.mlir --target=cuda --emit=cpp | FileCheck %s --check-prefix=HEAD
// RUN: sbpc %S/../numerics/Inputs/vit_small_qkv.mlir --target=cuda --emit=cpp | FileCheck %s --check-prefix=GELU32
// RUN: sbpc %S/../numerics/Inputs/vit_small_qkv.mlir --target=cuda --emit=cpp --precision=bf16 | FileCheck %s --check-prefix=GELU16
// RUN: sbpc %S/../numerics/Inputs/vit_small_qkv.mlir --target=cuda --emit=cpp --precision=bf16 | FileCheck %s --check-prefix=DS16
// RUN: sbpc %S/../numerics/Inputs/vit_small_head.mlir --target=cuda --emit=cpp --precision=bf16 | FileCheck %s --check-prefix=DSHEAD16

// The CUDA trainer source of the small ViT (see emit-cpp-vit.mlir): the same
// kernel graph as the CPU trainer, calling sbp/cuda_kernels.h with the
// step's context first. K = 9 kept rows of 17; 3 heads of 8.

// ROWS:       #include <sbp/cuda_kernels.h>
// ROWS:       {"m", 5.000000e-01f, SBP_MASK_GRID, 4, 4, 1, 9, 1},
// ROWS-LABEL: int train_step(
// ROWS:         const int32_t *[[K:v[0-9]+]] = a->keep_idx[0];  // @m
// ROWS:         sbp::cuda::cls_concat(ctx, v{{[0-9]+}}, v{{[0-9]+}}, v{{[0-9]+}}, 4, 16, 24);
// ROWS:         sbp::cuda::attention_fwd(ctx, v{{[0-9]+}}, v{{[0-9]+}}, v{{[0-9]+}}, 4, 17, 3, 8, 3.535534e-01f, [[K]], 9);  // blocks.0.attn
// ROWS:         sbp::cuda::attention_fwd(ctx, v{{[0-9]+}}, v{{[0-9]+}}, v{{[0-9]+}}, 4, 17, 3, 8, 3.535534e-01f, [[K]], 9);  // blocks.1.attn
// ROWS:         sbp::cuda::take_token(ctx, v{{[0-9]+}}, v{{[0-9]+}}, 4, 17, 24, 0);
// ROWS:         sbp::cuda::take_token_grad(ctx, v{{[0-9]+}}, v{{[0-9]+}}, 4, 17, 24, 0);
// blocks.1's projection on the class token's 4 rows (sbp-sink-take-token), its
// dX placed at the class token for the compact map gradient.
// ROWS:         sbp::cuda::gemm(ctx, false, false, 4, 24, 24, {{.*}});  // backward, blocks.1.attn
// ROWS:         sbp::cuda::take_token_grad(ctx, v{{[0-9]+}}, v{{[0-9]+}}, 4, 17, 24, 0);
// ROWS:         sbp::cuda::attention_bwd(ctx, v{{[0-9]+}}, v{{[0-9]+}}, v{{[0-9]+}}, v{{[0-9]+}}, v{{[0-9]+}}, 4, 9, 3, 8, 3.535534e-01f, [[K]], nullptr, nullptr, 0);  // backward, blocks.1.attn
// ROWS:         sbp::cuda::gemm(ctx, false, false, 36, 24, 72, {{.*}});  // backward, blocks.1.attn
// ROWS:         fused_bias_grad_layer_norm_layer_norm_grad_{{[0-9]+}}(ctx, {{.*}});  // backward, blocks.1.attn
// ROWS:         sbp::cuda::gemm_row_chunks(ctx, 72, 24, 36, 2, {{.*}});  // backward, blocks.1.attn, v{{[0-9]+}} = the chunks' sum, after the backward
// ROWS:         sbp::cuda::attention_bwd(ctx, {{.*}}, 4, 9, 3, 8, 3.535534e-01f, [[K]], nullptr, nullptr, 0);  // backward, blocks.0.attn
// ROWS:         sbp::cuda::cls_concat_grad(ctx, v{{[0-9]+}}, v{{[0-9]+}}, v{{[0-9]+}}, 4, 16, 24);
// ROWS:         return sbp::cuda::last_error(err, err_len);
// ROWS-LABEL: int eval_step(
// ROWS-NOT:     keep_idx
// ROWS:         sbp::cuda::attention_fwd(ctx, {{.*}}, 4, 17, 3, 8, 3.535534e-01f, nullptr, 0);  // blocks.0.attn
// ROWS-NOT:     keep_idx
// ROWS:         sbp::cuda::attention_fwd(ctx, {{.*}}, 4, 17, 3, 8, 3.535534e-01f, nullptr, 0);  // blocks.1.attn
// ROWS:         sbp::cuda::take_token(ctx, v{{[0-9]+}}, v{{[0-9]+}}, 4, 17, 24, 0);
// ROWS:       SBP_ABI_VERSION, sizeof(sbp_model_desc), "vit_small", "cuda"

// bf16: the attention backward gets its dS^T scratch in the arena
// (sbp-kernel-scratch): 2 x 4 x 3 x 9 x 16 bytes at the compact 9 rows
// (rows of 16 = 9 rounded up to 8), 2 x 4 x 3 x 17 x 24 at the 17 of drop_head;
// fp32 (above) passes none.
// DS16-LABEL: int train_step(
// DS16:         sbp::cuda::attention_bwd(ctx, {{.*}}, 4, 9, 3, 8, 3.535534e-01f, v{{[0-9]+}}, nullptr, arena + {{[0-9]+}}, 3456);  // backward, blocks.1.attn
// DS16:         sbp::cuda::attention_bwd(ctx, {{.*}}, 4, 9, 3, 8, 3.535534e-01f, v{{[0-9]+}}, nullptr, arena + {{[0-9]+}}, 3456);  // backward, blocks.0.attn
// DSHEAD16-LABEL: int train_step(
// DSHEAD16:       sbp::cuda::attention_bwd(ctx, {{.*}}, 4, 17, 3, 8, 3.535534e-01f, nullptr, v{{[0-9]+}}, arena + {{[0-9]+}}, 9792);  // backward, blocks.1.attn

// QUERY-LABEL: int train_step(
// QUERY:         const int32_t *[[K:v[0-9]+]] = a->keep_idx[0];  // @m
// QUERY:         sbp::cuda::attention_fwd(ctx, {{.*}}, 4, 17, 3, 8, 3.535534e-01f, nullptr, 0);  // blocks.0.attn
// QUERY:         sbp::cuda::attention_bwd_queries(ctx, v{{[0-9]+}}, [[K]], 9, v{{[0-9]+}}, v{{[0-9]+}}, v{{[0-9]+}}, v{{[0-9]+}}, 4, 17, 3, 8, 3.535534e-01f);  // backward, blocks.1.attn
// QUERY:         sbp::cuda::gemm(ctx, false, false, 68, 24, 72, {{.*}});  // backward, blocks.1.attn
// QUERY:         sbp::cuda::attention_bwd_queries(ctx, v{{[0-9]+}}, [[K]], 9, {{.*}}, 4, 17, 3, 8, 3.535534e-01f);  // backward, blocks.0.attn
// QUERY-NOT:     sbp::cuda::attention_bwd(
// QUERY-LABEL: int eval_step(

// drop_head: one heads group per block (sbpc splits @h), each block's
// backward reads its own.
// HEAD:        {"h.blocks.0.attn", 5.294120e-01f, SBP_MASK_HEADS, 1, 3, 0, 3, 1},
// HEAD-NEXT:   {"h.blocks.1.attn", 5.294120e-01f, SBP_MASK_HEADS, 1, 3, 0, 3, 1},
// HEAD-LABEL: int train_step(
// HEAD-DAG:      const int32_t *[[KH0:v[0-9]+]] = a->keep_idx[1];  // @h.blocks.0.attn
// HEAD-DAG:      const int32_t *[[KH1:v[0-9]+]] = a->keep_idx[2];  // @h.blocks.1.attn
// HEAD:          sbp::cuda::attention_fwd(ctx, {{.*}}, 4, 17, 3, 8, 3.535534e-01f, nullptr, 0);  // blocks.0.attn
// HEAD:          sbp::cuda::attention_bwd(ctx, v{{[0-9]+}}, v{{[0-9]+}}, v{{[0-9]+}}, v{{[0-9]+}}, v{{[0-9]+}}, 4, 17, 3, 8, 3.535534e-01f, nullptr, [[KH1]], nullptr, 0);  // backward, blocks.1.attn
// HEAD:          sbp::cuda::attention_bwd(ctx, {{.*}}, 4, 17, 3, 8, 3.535534e-01f, nullptr, [[KH0]], nullptr, 0);  // backward, blocks.0.attn
// HEAD-LABEL: int eval_step(
// HEAD-NOT:      keep_idx
// HEAD:          sbp::cuda::attention_fwd(ctx, {{.*}}, nullptr, 0);  // blocks.0.attn

// GELU in the generated groups: float results keep x Phi(x) (normcdff: relative
// accuracy in the far negative tail); bf16 results take PyTorch's formula,
// 0.5 x (1 + erf(x / sqrt 2)), as the library's bf16 GELU does, so that the
// backward's recomputed GELU matches the forward's bits.
// GELU32:     const float t1 = sbp::fused::gelu(a0[v]);
// GELU32:     const float t0 = sbp::fused::gelu(a0[v]);
// GELU32-NEXT: const float t1 = sbp::fused::gelu_grad(a0[v], a1[v]);
// GELU32-NOT: gelu_erf
// GELU16:     const float t1 = sbp::fused::gelu_erf(a0[v]);
// GELU16:     const float t0 = sbp::fused::gelu_erf(a0[v]);
// GELU16-NEXT: const float t1 = sbp::fused::gelu_erf_grad(a0[v], a1[v]);
// GELU16-NOT: sbp::fused::gelu(
