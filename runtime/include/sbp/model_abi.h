/* sbp/model_abi.h - the contract between a generated trainer library and libsbprt.
 *
 * A trainer library (train.so, written by `sbpc`) holds the model's kernels and a
 * static description of the model; the runtime (libsbprt) holds everything that is
 * the same for every model: parameter storage and initialisation, optimizers, mask
 * sampling, data loading, checkpoints. The runtime dlopen()s the trainer and calls
 * its one exported entry point, SBP_TRAINER_ENTRY, which checks the ABI version on
 * the trainer's side; the runtime checks it again on its own side.
 *
 * Bump SBP_ABI_VERSION on any change to the structs or the meaning of a field.
 * Users embedding a trainer never include this file: they use sbp/trainer.h.
 *
 * History: 1 - grid and random masks. 2 - SBP_MASK_HEADS (a value of
 * sbp_mask_group_desc.kind that a version-1 runtime would not understand).
 * 3 - sbp_model_desc gains exact_train_step, exact_arena_bytes and sbp_plan.
 * 4 - sbp_model_desc gains images_in_arena.
 * 5 - sbp_mask_group_desc gains cell (derived mask groups); SBP_MASK_SAMPLES
 *     (drop-path draws of whole samples).
 */
#ifndef SBP_MODEL_ABI_H
#define SBP_MODEL_ABI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SBP_ABI_VERSION 5u
#define SBP_TRAINER_ENTRY "sbp_trainer_model"
#define SBP_MAX_RANK 4

/* How a parameter is initialised by the runtime (from the run's seed). */
typedef enum sbp_init_kind {
  SBP_INIT_ZEROS = 0,
  SBP_INIT_ONES = 1,
  SBP_INIT_NORMAL = 2,       /* N(0, scale^2) */
  SBP_INIT_TRUNC_NORMAL = 3, /* N(0, scale^2) truncated to [-2 scale, 2 scale] (timm) */
  SBP_INIT_UNIFORM = 4,      /* U(-scale, scale) */
  SBP_INIT_CONSTANT = 5      /* every element = scale (ConvNeXt layer scale) */
} sbp_init_kind;

typedef enum sbp_mask_kind {
  SBP_MASK_GRID = 0,   /* structured grid, see ARCHITECTURE.md "Masks" */
  SBP_MASK_RANDOM = 1, /* uniform random subset of kept tokens */
  SBP_MASK_HEADS = 2,  /* attention heads, each kept independently with probability
                          keep_ratio (ViT drop_head); grid_h = 1, grid_w = heads,
                          prefix_tokens = 0, capacity = heads. Since ABI version 2. */
  SBP_MASK_SAMPLES = 3 /* samples of the batch, drawn as heads (each kept with probability
                          keep_ratio): stochastic depth; grid 1 x batch, no prefix,
                          capacity = batch. Since ABI version 5. */
} sbp_mask_kind;

typedef enum sbp_optimizer_kind {
  SBP_OPT_SGD = 0,  /* SGD with (optionally Nesterov) momentum, coupled weight decay */
  SBP_OPT_ADAMW = 1 /* AdamW, decoupled weight decay, bias-corrected */
} sbp_optimizer_kind;

typedef struct sbp_param_desc {
  const char *name;             /* PyTorch/timm style, e.g. "blocks.0.mlp.fc1.weight" */
  int32_t rank;                 /* 1..SBP_MAX_RANK */
  int64_t shape[SBP_MAX_RANK];  /* row-major; unused dims are 1 */
  int64_t numel;
  int64_t offset;               /* in elements, into the parameter (and gradient) buffer */
  int32_t init;                 /* sbp_init_kind */
  float init_scale;
  int32_t weight_decay;         /* 1: the optimizer's weight decay applies (matrices) */
} sbp_param_desc;

typedef struct sbp_mask_group_desc {
  const char *name;        /* the mask group's symbol in the .mlir, e.g. "m0" */
  float keep_ratio;        /* in (0, 1] */
  int32_t kind;            /* sbp_mask_kind */
  int32_t grid_h, grid_w;  /* token grid of the group's tensors (heads: 1 x number of heads);
                              the mask is drawn on it when cell is 1 */
  int32_t prefix_tokens;   /* tokens before the grid that are always kept (ViT class token);
                              0 for heads */
  int32_t capacity;        /* entries in the keep-index array: the most tokens ever kept
                              (heads: the number of heads) */
  /* Since ABI version 5. */
  int32_t cell;            /* >= 1: the mask is drawn on the (grid_h/cell) x (grid_w/cell)
                              grid and each drawn position covers a cell x cell block of this
                              grid ((i, j) kept iff (i/cell, j/cell) is); cell divides the
                              grid, 1 for heads groups, prefix_tokens 0 when above 1 */
} sbp_mask_group_desc;

typedef struct sbp_optimizer_desc {
  int32_t kind; /* sbp_optimizer_kind */
  float lr;
  float momentum; /* SGD */
  int32_t nesterov;
  float beta1, beta2, eps; /* AdamW */
  float weight_decay;
} sbp_optimizer_desc;

/* Compile-time figures, also printed by `sbpc --emit=report`. */
typedef struct sbp_model_report {
  double forward_flops;      /* one training step, whole batch */
  double backward_flops;
  int64_t saved_activation_bytes; /* live from the forward into the backward */
  int64_t train_arena_bytes;      /* planned peak of the step's scratch memory */
  int64_t eval_arena_bytes;
} sbp_model_report;

/* Arguments of one step. Every buffer is on the trainer's target (host memory for
 * "cpu", device memory for "cuda"); `keep_idx` itself is a host array holding one
 * such pointer per mask group, read by the step's host-side launcher. */
typedef struct sbp_step_args {
  const float *params;             /* param_elements floats, laid out by sbp_param_desc.offset */
  float *grads;                    /* same layout; written (not accumulated) by train_step */
  const float *images;             /* [batch, in_channels, in_height, in_width], normalised */
  const int32_t *labels;           /* [batch], in [0, num_classes) */
  const int32_t *const *keep_idx;  /* per mask group: `capacity` ascending token indices
                                      (heads groups: head indices, possibly none),
                                      padded at the end with -1 */
  void *arena;                     /* train/eval_arena_bytes, 256-byte aligned */
  float *loss;                     /* out: mean cross-entropy over the batch (one float) */
  float *logits;                   /* out, eval_step only, may be NULL: [batch, num_classes] */
  int32_t num_threads;             /* cpu: OpenMP threads, 0 = default */
  void *stream;                    /* cuda: cudaStream_t, NULL = default stream */
} sbp_step_args;

/* A step returns 0 on success, else non-zero with a message in err. */
typedef int (*sbp_step_fn)(const sbp_step_args *args, char *err, size_t err_len);

typedef struct sbp_model_desc {
  uint32_t abi_version;     /* SBP_ABI_VERSION the trainer was generated for */
  uint32_t struct_size;     /* sizeof(sbp_model_desc) on the trainer's side */
  const char *model_name;
  const char *target;       /* "cpu" or "cuda" */
  const char *sbpc_version;
  int64_t batch;            /* static batch size */
  int32_t in_channels, in_height, in_width;
  int32_t num_classes;
  int32_t num_params;
  const sbp_param_desc *params;
  int64_t param_elements;   /* total floats in the parameter buffer */
  int32_t num_mask_groups;
  const sbp_mask_group_desc *mask_groups;
  sbp_optimizer_desc optimizer; /* defaults from the model; runtime options may override */
  sbp_model_report report;
  sbp_step_fn train_step;   /* forward + backward: loss and gradients, no update */
  sbp_step_fn eval_step;    /* forward only: loss and logits, no SBP */
  /* Since ABI version 3. */
  sbp_step_fn exact_train_step; /* forward + backward with every keep ratio 1.0 (ordinary
                                   backprop: the gradients SBP estimates), no update; reads no
                                   keep_idx; NULL unless built with `sbpc --exact-step` */
  int64_t exact_arena_bytes;    /* arena of exact_train_step (0 without it) */
  const char *sbp_plan;         /* how the SBP configuration was chosen, e.g. by
                                   `sbpc --memory-budget`; "" when as written in the model */
  /* Since ABI version 4. */
  int32_t images_in_arena;      /* 1: train_step and eval_step read nothing of the arena's
                                   first batch*C*H*W floats but the images, and write none of it
                                   before their last read of them: a runtime may copy the batch
                                   to `arena` and pass that as `images` (no buffer of its own).
                                   0: `images` must not overlap the arena. */
} sbp_model_desc;

/* The one symbol every trainer library exports. Returns NULL, with a message in err,
 * when runtime_abi differs from the ABI the trainer was generated for. */
typedef const sbp_model_desc *(*sbp_trainer_entry_fn)(uint32_t runtime_abi, char *err,
                                                        size_t err_len);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* SBP_MODEL_ABI_H */
