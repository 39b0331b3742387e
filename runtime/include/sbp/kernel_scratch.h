/* sbp/kernel_scratch.h - arena scratch of library kernels, shared by sbpc and the CUDA library.
 *
 * Some library calls run faster with a scratch buffer larger than the
 * context's fixed scratch (8 MiB). sbpc plans such a buffer in the step's
 * arena (`scratch_bytes` on the kernel, live only while it runs: the
 * `sbp-kernel-scratch` pass; optional, so only where it does not raise the
 * planned peak) and passes it with its size (the table's SBP_ARG_SCRATCH),
 * or nullptr, 0; the library checks the size against the same function.
 */
#ifndef SBP_KERNEL_SCRATCH_H
#define SBP_KERNEL_SCRATCH_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Row stride, in elements, of the bf16 attention backward's dS^T buffer: the
 * queries rounded up to 8 (16-byte rows). */
static inline int64_t sbp_attention_ds_stride(int64_t tokens) { return (tokens + 7) / 8 * 8; }

/* Bytes of the bf16 attention backward's dS^T buffer (attention_bwd's
 * ds_scratch): one bf16 row per (batch, head, key) of
 * sbp_attention_ds_stride(tokens) queries. The dK/dV kernel writes dS^T
 * there as it makes it, and the dQ kernel reads dQ = dS K from it instead of
 * recomputing S, P, dP and dS. */
static inline int64_t sbp_attention_ds_bytes(int64_t batch, int64_t tokens, int64_t heads) {
  return 2 * batch * heads * tokens * sbp_attention_ds_stride(tokens);
}

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* SBP_KERNEL_SCRATCH_H */
