/* fake_trainer.c - a hand-written trainer library that stands in for sbpc
 * output in the runtime's tests: softmax regression on 1x28x28 images, with
 * the loss and gradients written out by hand.
 *
 * It also checks the runtime's side of the contract on every call (arena
 * alignment, keep-index arrays ascending and padded with -1) and records the
 * keep indices it was given, exported for the tests as fake_trainer_*.
 *
 * Variants are built from this one file (see CMakeLists.txt):
 *   FAKE_ABI_VERSION      ABI the trainer claims (default SBP_ABI_VERSION)
 *   FAKE_SKIP_ABI_CHECK   return the description even when the ABI differs
 *   FAKE_NAN_LOSS         train_step reports a NaN loss
 *   FAKE_TARGET           "cpu" (default) or "cuda"
 *   FAKE_SGD              SGD with momentum instead of AdamW, model fake_softmax_sgd
 *   FAKE_HEADS            a fourth mask group "h0": heads, keep 0.5, 12 heads
 *   FAKE_MASK_KIND        the kind of mask group m1 (default SBP_MASK_RANDOM), e.g. a
 *                         kind this runtime does not know
 */
#include "sbp/model_abi.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#ifndef FAKE_ABI_VERSION
#define FAKE_ABI_VERSION SBP_ABI_VERSION
#endif
#ifndef FAKE_TARGET
#define FAKE_TARGET "cpu"
#endif
#ifndef FAKE_MASK_KIND
#define FAKE_MASK_KIND SBP_MASK_RANDOM
#endif

#define EXPORT __attribute__((visibility("default")))

enum { B = 64, D = 28 * 28, K = 10, BIAS_OFFSET = 7856 /* a gap after the weight */ };

static const sbp_param_desc params[] = {
    {"head.weight", 2, {K, D, 1, 1}, K * D, 0, SBP_INIT_TRUNC_NORMAL, 0.01f, 1},
    {"head.bias", 1, {K, 1, 1, 1}, K, BIAS_OFFSET, SBP_INIT_ZEROS, 0.0f, 0},
};

/* m0 and m2 share settings (so one draw), m1 draws on its own. */
static const sbp_mask_group_desc masks[] = {
    {"m0", 0.5f, SBP_MASK_GRID, 14, 14, 1, 1 + 98, 1},
    {"m1", 0.25f, FAKE_MASK_KIND, 7, 7, 0, 13, 1},
    {"m2", 0.5f, SBP_MASK_GRID, 14, 14, 1, 1 + 98, 1},
#ifdef FAKE_HEADS
    {"h0", 0.5f, SBP_MASK_HEADS, 1, 12, 0, 12, 1},
#endif
};
#ifdef FAKE_HEADS
enum { NUM_MASKS = 4, MAX_CAPACITY = 99 };
#else
enum { NUM_MASKS = 3, MAX_CAPACITY = 99 };
#endif

static int32_t last_keep[NUM_MASKS][MAX_CAPACITY];
static int train_calls;

EXPORT int fake_trainer_train_calls(void) { return train_calls; }

/* Copies the keep indices of the last train_step for `group`; returns capacity. */
EXPORT int fake_trainer_last_keep(int group, int32_t *out) {
  memcpy(out, last_keep[group], sizeof(int32_t) * (size_t)masks[group].capacity);
  return masks[group].capacity;
}

static int fail(char *err, size_t err_len, const char *what) {
  snprintf(err, err_len, "fake trainer: %s", what);
  return 1;
}

static int check_keep(const sbp_step_args *a, char *err, size_t err_len) {
  for (int g = 0; g < NUM_MASKS; ++g) {
    const int32_t *idx = a->keep_idx[g];
    int n = 0;
    while (n < masks[g].capacity && idx[n] >= 0)
      ++n;
    for (int k = 0; k < masks[g].capacity; ++k) {
      if (k >= n && idx[k] != -1)
        return fail(err, err_len, "keep indices not padded with -1");
      if (k < n && idx[k] >= masks[g].prefix_tokens + masks[g].grid_h * masks[g].grid_w)
        return fail(err, err_len, "keep index beyond the group's tokens (or heads)");
      if (k > 0 && k < n && idx[k] <= idx[k - 1])
        return fail(err, err_len, "keep indices not ascending");
    }
    memcpy(last_keep[g], idx, sizeof(int32_t) * (size_t)masks[g].capacity);
  }
  return 0;
}

/* logits = W x + b into the arena; returns the mean cross-entropy and leaves
 * the softmax probabilities in probs. */
static float forward(const sbp_step_args *a, float *probs) {
  const float *w = a->params, *bias = a->params + BIAS_OFFSET;
  double loss = 0.0;
  for (int b = 0; b < B; ++b) {
    const float *x = a->images + (size_t)b * D;
    float *p = probs + b * K;
    float top = -INFINITY;
    for (int k = 0; k < K; ++k) {
      float s = bias[k];
      for (int d = 0; d < D; ++d)
        s += w[k * D + d] * x[d];
      p[k] = s;
      top = s > top ? s : top;
    }
    if (a->logits)
      memcpy(a->logits + b * K, p, sizeof(float) * K);
    double sum = 0.0;
    for (int k = 0; k < K; ++k)
      sum += exp((double)p[k] - top);
    loss += top + log(sum) - p[a->labels[b]];
    for (int k = 0; k < K; ++k)
      p[k] = (float)(exp((double)p[k] - top) / sum);
  }
  return (float)(loss / B);
}

static int check_common(const sbp_step_args *a, char *err, size_t err_len) {
  if (((uintptr_t)a->arena % 256) != 0)
    return fail(err, err_len, "arena is not 256-byte aligned");
  if (!a->params || !a->images || !a->labels || !a->loss || !a->keep_idx)
    return fail(err, err_len, "a required pointer is NULL");
  return 0;
}

static int train_step(const sbp_step_args *a, char *err, size_t err_len) {
  if (check_common(a, err, err_len) || check_keep(a, err, err_len))
    return 1;
  if (!a->grads)
    return fail(err, err_len, "grads is NULL");
  ++train_calls;
  float *probs = (float *)a->arena;
  float loss = forward(a, probs);
  float *gw = a->grads, *gb = a->grads + BIAS_OFFSET;
  memset(gw, 0, sizeof(float) * K * D);
  memset(gb, 0, sizeof(float) * K);
  for (int b = 0; b < B; ++b) {
    const float *x = a->images + (size_t)b * D;
    for (int k = 0; k < K; ++k) {
      float delta = (probs[b * K + k] - (a->labels[b] == k ? 1.0f : 0.0f)) / B;
      gb[k] += delta;
      for (int d = 0; d < D; ++d)
        gw[k * D + d] += delta * x[d];
    }
  }
#ifdef FAKE_NAN_LOSS
  loss = NAN;
#endif
  *a->loss = loss;
  return 0;
}

static int eval_step(const sbp_step_args *a, char *err, size_t err_len) {
  if (check_common(a, err, err_len))
    return 1;
  *a->loss = forward(a, (float *)a->arena);
  return 0;
}

static const sbp_model_desc desc = {
    .abi_version = FAKE_ABI_VERSION,
    .struct_size = sizeof(sbp_model_desc),
#ifdef FAKE_SGD
    .model_name = "fake_softmax_sgd",
#elif defined(FAKE_HEADS)
    .model_name = "fake_softmax_heads",
#else
    .model_name = "fake_softmax",
#endif
    .target = FAKE_TARGET,
    .sbpc_version = "test",
    .batch = B,
    .in_channels = 1,
    .in_height = 28,
    .in_width = 28,
    .num_classes = K,
    .num_params = 2,
    .params = params,
    .param_elements = BIAS_OFFSET + K,
    .num_mask_groups = NUM_MASKS,
    .mask_groups = masks,
#ifdef FAKE_SGD
    .optimizer = {SBP_OPT_SGD, 0.05f, 0.9f, 0, 0.0f, 0.0f, 0.0f, 1e-4f},
#else
    .optimizer = {SBP_OPT_ADAMW, 0.01f, 0.0f, 0, 0.9f, 0.999f, 1e-8f, 0.05f},
#endif
    .report = {2.0 * B * K * D, 4.0 * B * K * D, 0, B * K * 4, B * K * 4},
    .train_step = train_step,
    .eval_step = eval_step,
};

EXPORT const sbp_model_desc *sbp_trainer_model(uint32_t runtime_abi, char *err, size_t err_len) {
#ifndef FAKE_SKIP_ABI_CHECK
  if (runtime_abi != FAKE_ABI_VERSION) {
    snprintf(err, err_len, "trainer generated for sbp ABI version %u, runtime has ABI version %u",
             (unsigned)FAKE_ABI_VERSION, (unsigned)runtime_abi);
    return NULL;
  }
#else
  (void)runtime_abi;
  (void)err;
  (void)err_len;
#endif
  return &desc;
}
