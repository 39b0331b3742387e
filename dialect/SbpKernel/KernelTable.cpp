//===- KernelTable.cpp - the fixed set of non-GEMM kernels ----------------===//
#include "SbpKernel/KernelTable.h"

#include "llvm/ADT/STLExtras.h"

using namespace sbpk;
using llvm::StringRef;

static const StringRef kN[] = {"n"};
static const StringRef kRowsN[] = {"rows", "n"};
static const StringRef kBTN[] = {"batch", "tokens", "n"};
static const StringRef kBTKN[] = {"batch", "tokens", "kept", "n"};
static const StringRef kBC[] = {"batch", "classes"};
static const StringRef kImage[] = {"batch", "channels", "height", "width", "patch"};
static const StringRef kMNK[] = {"m", "n", "k"};
static const StringRef kBTNI[] = {"batch", "tokens", "n", "index"};
static const StringRef kAttn[] = {"batch", "tokens", "heads", "head_dim"};
static const StringRef kAttnK[] = {"batch", "tokens", "heads", "head_dim", "kept"};

// clang-format off
static const KernelInfo kKernels[] = {
  // name               operands results size attributes  flops/element
  {"patchify",          1, 1, kImage, 0},
  {"add",               2, 1, kN,     1},
  {"bias_add",          2, 1, kRowsN, 1},
  {"bias_grad",         1, 1, kRowsN, 1},
  {"pos_add",           2, 1, kBTN,   1},
  {"pos_grad",          1, 1, kBTN,   1},
  {"gelu",              1, 1, kN,     8},
  {"gelu_grad",         2, 1, kN,     12},
  {"relu",              1, 1, kN,     1},
  {"relu_grad",         2, 1, kN,     1},
  {"layer_norm",        3, 1, kRowsN, 8},   // + attribute eps
  {"layer_norm_grad",   3, 3, kRowsN, 14},  // + attribute eps
  {"mean_tokens",       1, 1, kBTN,   1},
  {"mean_tokens_grad",  1, 1, kBTN,   1},
  {"softmax_xent",      2, 1, kBC,    6},   // loss
  {"softmax_xent_grad", 2, 2, kBC,    8},   // loss and dlogits, one pass
  {"mask_rows",         2, 1, kBTKN,  0},
  {"gather_rows",       2, 1, kBTKN,  0},
  {"scatter_rows",      2, 1, kBTKN,  0},
  {"scatter_add_rows",  3, 1, kBTKN,  1},
  {"fill",              0, 1, kN,     0},   // + attribute value
  {"cast",              1, 1, kN,     0},   // element type conversion (bf16 weight copies)
  // GEMMs with a cuBLASLt epilogue (+ bool attributes trans_a, trans_b); FLOPs 2mnk.
  {"gemm_bias",          3, 1, kMNK,  0},  // a, b, bias
  {"gemm_bias_residual", 4, 1, kMNK,  0},  // a, b, bias, x: a b + bias + x
  {"gemm_bgrad",         2, 2, kMNK,  0},  // a, b -> c = op(a) op(b), dbias[i] = sum_j op(a)[i, j]
  {"cls_concat",        2, 1, kBTN,   0},   // tokens: without the class token
  {"cls_concat_grad",   1, 2, kBTN,   0},
  {"take_token",        1, 1, kBTNI,  0},
  {"take_token_grad",   1, 1, kBTNI,  0},
  // Attention (+ attribute scale); FLOPs from the sizes, see attentionFlops.
  {"attention_fwd",         1, 2, kAttn,  0},  // qkv -> out, lse
  {"attention_fwd_sbp",     2, 2, kAttnK, 0},  // qkv, keep -> out, lse (drop_qkv)
  {"attention_bwd",         4, 1, kAttn,  0},  // qkv, out, lse, dout -> dqkv
  {"attention_bwd_rows",    5, 1, kAttn,  0},  // the same on kept rows, + keep (drop_qkv)
  {"attention_bwd_heads",   5, 1, kAttn,  0},  // + kept heads (drop_head)
  {"attention_bwd_queries", 5, 1, kAttnK, 0},  // qkv, keep, out_k, lse_k, dout_k (drop_query)
};
// clang-format on

const KernelInfo *sbpk::lookupKernel(StringRef name) {
  const KernelInfo *it = llvm::find_if(kKernels, [&](const KernelInfo &k) { return k.name == name; });
  return it == std::end(kKernels) ? nullptr : it;
}

llvm::ArrayRef<KernelInfo> sbpk::allKernels() { return kKernels; }
