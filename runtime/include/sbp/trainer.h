/* sbp/trainer.h - the public C API of libsbprt, the sbpc training runtime.
 *
 * A trainer library (train.so, written by `sbpc`) holds one model's generated
 * kernels. libsbprt loads it and owns everything else: parameters, gradients,
 * optimizer state, the step's scratch arena, keep-mask sampling, checkpoints and
 * the bundled dataset readers.
 *
 * Conventions (IREE / TensorRT style):
 *  - Every call returns an sbp_status; SBP_OK is 0. On failure, the message is
 *    available from sbp_trainer_last_error(t) for calls on a trainer and from
 *    sbp_last_error() (thread-local) for every call, including creation.
 *  - Handles are opaque and released explicitly. Releasing NULL is a no-op.
 *  - Input and output structs carry `struct_size`; initialise them with the
 *    matching *_init function (or set struct_size = sizeof) so that later
 *    runtimes can extend them.
 *  - No call aborts or throws on bad input; a trainer is not thread-safe (use it
 *    from one thread at a time), distinct trainers are independent.
 *  - All pointers passed to step/eval are row-major float32/int32 in host
 *    memory; a "cuda" trainer also accepts images, labels and logits in its
 *    device's memory (cudaMalloc), which it copies device to device.
 *
 * This header compiles as C99 and as C++.
 */
#ifndef SBP_TRAINER_H
#define SBP_TRAINER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SBP_BUILDING_RUNTIME)
#define SBP_API __attribute__((visibility("default")))
#else
#define SBP_API
#endif

/* ---------------------------------------------------------------- status -- */

typedef enum sbp_status {
  SBP_OK = 0,
  SBP_ERROR_INVALID_ARGUMENT, /* bad argument, shape, label, option or request */
  SBP_ERROR_NOT_FOUND,        /* a file or directory does not exist */
  SBP_ERROR_IO,               /* reading or writing a file failed */
  SBP_ERROR_ABI_MISMATCH,     /* trainer and runtime were built for different ABIs */
  SBP_ERROR_CORRUPT_FILE,     /* a checkpoint, parameter or dataset file is malformed */
  SBP_ERROR_NUMERIC,          /* the loss is NaN or infinite */
  SBP_ERROR_UNSUPPORTED,      /* e.g. a CUDA trainer on a runtime built without CUDA */
  SBP_ERROR_INTERNAL,         /* a bug, or a failure inside the trainer's kernels */
  SBP_STATUS_MAX_ENUM = 0x7FFFFFFF /* keeps the type 32-bit; never returned */
} sbp_status;

/* Stable name of a status, e.g. "SBP_ERROR_NUMERIC". Never NULL. */
SBP_API const char *sbp_status_string(sbp_status status);

/* Message of the most recent failed call on this thread ("" if none). The
 * pointer stays valid until the next failing call on this thread. */
SBP_API const char *sbp_last_error(void);

/* SBP_ABI_VERSION of sbp/model_abi.h this runtime was built with. */
SBP_API uint32_t sbp_runtime_abi_version(void);

/* --------------------------------------------------------------- trainer -- */

typedef struct sbp_trainer sbp_trainer;

/* Options for sbp_trainer_create. An optimizer value of exactly -1 (what
 * sbp_trainer_options_init sets) keeps the model's default from the trainer
 * library; any other value must be in the option's domain (a negative lr,
 * weight decay, momentum, beta or eps is SBP_ERROR_INVALID_ARGUMENT). */
typedef struct sbp_trainer_options {
  uint32_t struct_size; /* sizeof(sbp_trainer_options) */
  uint64_t seed;        /* parameter init, keep masks (and dataset shuffles) derive from it */
  int32_t num_threads;  /* CPU threads for kernels and optimizer, at most 1024; 0 = OpenMP default */
  int32_t device;       /* CUDA device ordinal; ignored by CPU trainers */
  float lr;
  float weight_decay;
  float momentum; /* SGD */
  float beta1;    /* AdamW */
  float beta2;
  float eps;
  int32_t nesterov; /* SGD: 0 or 1; -1 = model default */
} sbp_trainer_options;

/* Defaults: seed 0, default threads, device 0, every optimizer value from the model. */
SBP_API void sbp_trainer_options_init(sbp_trainer_options *options);

/* Loads the trainer library at `trainer_library_path`, checks its ABI, allocates
 * parameters (initialised from the seed), gradients, optimizer state and the
 * arena. `options` may be NULL (defaults). On failure *out is NULL and the
 * message is in sbp_last_error(). */
SBP_API sbp_status sbp_trainer_create(const char *trainer_library_path,
                                      const sbp_trainer_options *options,
                                      sbp_trainer **out);

SBP_API void sbp_trainer_release(sbp_trainer *trainer);

/* Message of the most recent failed call on this trainer ("" if none). */
SBP_API const char *sbp_trainer_last_error(const sbp_trainer *trainer);

/* One training step on a batch of `info.batch` images [batch, C, H, W]
 * (normalised) and labels [batch] in [0, num_classes): samples the keep masks
 * for the current step, runs forward + backward, checks the loss is finite,
 * applies the optimizer and advances the step. On SBP_ERROR_NUMERIC the
 * parameters and the step are unchanged. loss_out may be NULL. */
SBP_API sbp_status sbp_trainer_step(sbp_trainer *trainer, const float *images,
                                    const int32_t *labels, float *loss_out);

/* Forward + backward of the current step (same masks as sbp_trainer_step would
 * use), no update: the gradients are then readable and savable. */
SBP_API sbp_status sbp_trainer_compute_gradients(sbp_trainer *trainer, const float *images,
                                                 const int32_t *labels, float *loss_out);

/* Forward + backward with every keep ratio 1.0 (ordinary backprop: the
 * gradients SBP estimates) on the current parameters, no update; the step does
 * not advance and the gradients are then readable and savable like those of
 * compute_gradients. Needs a trainer built with `sbpc --exact-step`
 * (info.has_exact_step), else SBP_ERROR_UNSUPPORTED. Its arena
 * (info.exact_arena_bytes) is allocated on the first call. */
SBP_API sbp_status sbp_trainer_compute_exact_gradients(sbp_trainer *trainer, const float *images,
                                                       const int32_t *labels, float *loss_out);

/* Forward only, no SBP. logits_out (nullable) receives [batch, num_classes]. */
SBP_API sbp_status sbp_trainer_eval(sbp_trainer *trainer, const float *images,
                                    const int32_t *labels, float *loss_out, float *logits_out);

/* Fixes the keep indices of mask group `group` (-1: every group) to `idx`:
 * `count` ascending, unique token indices in [0, prefix_tokens + grid_h*grid_w),
 * count <= capacity (a "heads" group: head indices in [0, heads)); count may be
 * 0 with a non-NULL idx (nothing kept). The runtime pads with -1. idx == NULL
 * returns the group(s) to random sampling. */
SBP_API sbp_status sbp_trainer_set_keep_indices(sbp_trainer *trainer, int32_t group,
                                                const int32_t *idx, int32_t count);

/* Keep indices that step `step` uses for `group` (the fixed ones if set, else
 * the draw from (seed, step)): `capacity` entries, padded with -1, into out
 * (out_len >= the group's capacity). *kept (nullable) receives the count. */
SBP_API sbp_status sbp_trainer_get_keep_indices(const sbp_trainer *trainer, int32_t group,
                                                int64_t step, int32_t *out, int32_t out_len,
                                                int32_t *kept);

SBP_API sbp_status sbp_trainer_set_learning_rate(sbp_trainer *trainer, float lr);

/* Everything a user or tool wants to know about a loaded trainer. Strings and
 * keep_ratios are owned by the trainer and live as long as it. */
typedef struct sbp_trainer_info {
  uint32_t struct_size; /* sizeof(sbp_trainer_info), set by the caller */
  const char *model_name;
  const char *target; /* "cpu" or "cuda" */
  const char *sbpc_version;
  int64_t batch;
  int32_t in_channels, in_height, in_width;
  int32_t num_classes;
  int32_t num_params;     /* parameter tensors */
  int64_t param_elements; /* parameter count (floats) */
  int32_t num_mask_groups;
  const float *keep_ratios; /* num_mask_groups entries */
  const char *optimizer;    /* "sgd" or "adamw" */
  float lr, weight_decay, momentum, beta1, beta2, eps; /* in effect now */
  int32_t nesterov;
  uint64_t seed;
  int32_t num_threads;
  /* compile-time report of the trainer */
  double forward_flops, backward_flops;
  int64_t saved_activation_bytes;
  int64_t train_arena_bytes, eval_arena_bytes;
  /* what the runtime allocated */
  int64_t arena_bytes;
  int64_t state_bytes; /* parameters + gradients + optimizer state */
  int64_t step;        /* optimizer steps taken */
  /* where the trainer runs */
  int32_t device;          /* CUDA device ordinal; -1 for "cpu" trainers */
  const char *device_name; /* e.g. "NVIDIA H100 80GB HBM3"; "host" for "cpu" trainers */
  /* since ABI version 3 */
  int32_t has_exact_step;    /* 1: sbp_trainer_compute_exact_gradients works */
  int64_t exact_arena_bytes; /* its arena, allocated on first use (0 without it) */
  const char *sbp_plan;      /* how the SBP configuration was chosen (sbpc --memory-budget); "" */
} sbp_trainer_info;

SBP_API sbp_status sbp_trainer_get_info(const sbp_trainer *trainer, sbp_trainer_info *info);

typedef struct sbp_param_info {
  uint32_t struct_size; /* sizeof(sbp_param_info), set by the caller */
  const char *name;     /* PyTorch/timm name, owned by the trainer */
  int32_t rank;
  int64_t shape[4];
  int64_t numel;
  int32_t weight_decay; /* 1: weight decay applies */
} sbp_param_info;

typedef struct sbp_mask_group_info {
  uint32_t struct_size; /* sizeof(sbp_mask_group_info), set by the caller */
  const char *name;
  float keep_ratio;
  const char *kind; /* "grid", "random" or "heads" (grid 1 x heads, no prefix) */
  int32_t grid_h, grid_w, prefix_tokens, capacity;
  int32_t fixed; /* 1 when set_keep_indices fixed this group's mask */
  int32_t cell;  /* the mask is drawn on grid_h/cell x grid_w/cell, each drawn position a
                    cell x cell block of the grid (1: drawn on the grid itself); added at the
                    end, so a caller's smaller struct_size stops before it */
} sbp_mask_group_info;

SBP_API sbp_status sbp_trainer_get_param_info(const sbp_trainer *trainer, int32_t index,
                                              sbp_param_info *info);
/* Index of the parameter called `name`; SBP_ERROR_NOT_FOUND if none. */
SBP_API sbp_status sbp_trainer_find_param(const sbp_trainer *trainer, const char *name,
                                          int32_t *index);
SBP_API sbp_status sbp_trainer_get_mask_group_info(const sbp_trainer *trainer, int32_t group,
                                                   sbp_mask_group_info *info);

/* Copy one parameter (or its gradient from the last step) out of / into the
 * trainer; count must equal the parameter's numel. */
SBP_API sbp_status sbp_trainer_read_param(const sbp_trainer *trainer, int32_t index, float *dst,
                                          int64_t count);
SBP_API sbp_status sbp_trainer_write_param(sbp_trainer *trainer, int32_t index,
                                           const float *src, int64_t count);
SBP_API sbp_status sbp_trainer_read_gradient(const sbp_trainer *trainer, int32_t index,
                                             float *dst, int64_t count);

/* ------------------------------------------------------------ files -------
 * All files are safetensors; tensor names are the parameters' names. Every
 * write goes to "<path>.tmp.<pid>", is fsync'ed and renamed over path. */

/* Parameters only. Loading needs every parameter with its exact shape (F32);
 * other tensors are an error unless they are optimizer state ("optimizer.*"),
 * so a checkpoint also loads as parameters. */
SBP_API sbp_status sbp_trainer_save_params(const sbp_trainer *trainer, const char *path);
SBP_API sbp_status sbp_trainer_load_params(sbp_trainer *trainer, const char *path);

/* Parameters, optimizer state, step and seed; refuses a checkpoint of another
 * model or optimizer. Loading is all-or-nothing. */
SBP_API sbp_status sbp_trainer_save_checkpoint(const sbp_trainer *trainer, const char *path);
SBP_API sbp_status sbp_trainer_load_checkpoint(sbp_trainer *trainer, const char *path);

/* Gradients of the last step / compute_gradients call. */
SBP_API sbp_status sbp_trainer_save_gradients(const sbp_trainer *trainer, const char *path);

/* Reads a batch file: tensors `images` F32 [batch, C, H, W] and `labels` I32
 * [batch] matching this trainer, into images (batch*C*H*W floats) and labels. */
SBP_API sbp_status sbp_trainer_read_batch_file(const sbp_trainer *trainer, const char *path,
                                               float *images, int32_t *labels);

/* --------------------------------------------------------------- dataset --
 * Image classification datasets in their distribution formats: MNIST IDX
 * (train-images-idx3-ubyte[.gz], ...: MNIST, Fashion-MNIST) and the CIFAR-10
 * binary version (data_batch_1..5.bin, test_batch.bin). Images come out as
 * float [batch, C, H, W], scaled to [0, 1] and standardised per channel with the
 * training split's mean and standard deviation. */

typedef struct sbp_dataset sbp_dataset;

typedef enum sbp_split {
  SBP_SPLIT_TRAIN = 0,
  SBP_SPLIT_TEST = 1,
  SBP_SPLIT_MAX_ENUM = 0x7FFFFFFF /* any int32 is a value of the type; unknown ones are refused */
} sbp_split;

typedef struct sbp_dataset_info {
  uint32_t struct_size; /* sizeof(sbp_dataset_info), set by the caller */
  const char *format;   /* "idx" or "cifar10" */
  int32_t channels, height, width;
  int32_t num_classes; /* largest training label + 1 */
  int64_t train_count, test_count;
  float mean[4], std[4]; /* per channel, of the training images in [0, 1] */
} sbp_dataset_info;

SBP_API sbp_status sbp_dataset_open(const char *directory, sbp_dataset **out);
SBP_API void sbp_dataset_release(sbp_dataset *dataset);
SBP_API sbp_status sbp_dataset_get_info(const sbp_dataset *dataset, sbp_dataset_info *info);

/* Training batches: the split shuffled by Philox(seed, epoch); the last partial
 * batch is dropped, so there are floor(count / batch_size). */
SBP_API int64_t sbp_dataset_num_train_batches(const sbp_dataset *dataset, sbp_split split,
                                              int64_t batch_size);
SBP_API sbp_status sbp_dataset_get_train_batch(sbp_dataset *dataset, sbp_split split,
                                               int64_t batch_size, uint64_t seed, int64_t epoch,
                                               int64_t index, float *images, int32_t *labels);

/* Evaluation batches: the split in file order, ceil(count / batch_size) of
 * them; the last one is padded by repeating its last image, and *valid
 * (nullable) says how many leading entries are real. */
SBP_API int64_t sbp_dataset_num_eval_batches(const sbp_dataset *dataset, sbp_split split,
                                             int64_t batch_size);
SBP_API sbp_status sbp_dataset_get_eval_batch(const sbp_dataset *dataset, sbp_split split,
                                              int64_t batch_size, int64_t index, float *images,
                                              int32_t *labels, int64_t *valid);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* SBP_TRAINER_H */
