/* fake_cuda_trainer.cu - the CUDA twin of fake_trainer.c: a hand-written
 * "cuda" trainer library (softmax regression on 1x28x28 images, loss and
 * gradients by hand) that stands in for sbpc output in the CUDA runtime tests.
 *
 * It follows the contract a generated CUDA step gets from libsbprt:
 *  - every pointer in sbp_step_args is device memory, except keep_idx, a host
 *    array of per-group device pointers; the same pointers on every call;
 *  - all work goes on args->stream, asynchronously: no synchronisation, no
 *    reading device data on the host, so the runtime can capture the step in
 *    a CUDA graph;
 *  - the first call is never captured: like a cuBLASLt handle, this trainer
 *    allocates a workspace on its first call (cudaMalloc would break a capture).
 *
 * The arithmetic is fake_trainer.c's operation by operation (sequential float
 * sums, _rn intrinsics against FMA contraction, exp/log in double), so the two
 * agree to float rounding. Exported for the tests: the host calls of
 * train_step (a replayed graph makes none), the keep indices the last
 * train_step read (recorded on the device) and malformed keep arrays seen.
 *
 * Variants (see CMakeLists.txt): FAKE_NAN_LOSS (train_step reports a NaN
 * loss), FAKE_SGD (SGD with momentum, model fake_softmax_sgd, as fake_trainer.c),
 * FAKE_SYNC_IN_STEP (train_step synchronises its stream: it cannot be captured),
 * FAKE_HEADS (a fourth mask group "h0": heads, keep 0.5, 12 heads, as fake_trainer.c).
 */
#include "sbp/model_abi.h"

#include <cuda_runtime_api.h>

#include <math.h>
#include <stdio.h>

#define EXPORT extern "C" __attribute__((visibility("default")))

enum { B = 64, D = 28 * 28, K = 10, BIAS_OFFSET = 7856 /* a gap after the weight */ };

static const sbp_param_desc params[] = {
    {"head.weight", 2, {K, D, 1, 1}, K * D, 0, SBP_INIT_TRUNC_NORMAL, 0.01f, 1},
    {"head.bias", 1, {K, 1, 1, 1}, K, BIAS_OFFSET, SBP_INIT_ZEROS, 0.0f, 0},
};

/* As fake_trainer.c: m0 and m2 share settings (one draw), m1 draws on its own. */
static const sbp_mask_group_desc masks[] = {
    {"m0", 0.5f, SBP_MASK_GRID, 14, 14, 1, 1 + 98, 1},
    {"m1", 0.25f, SBP_MASK_RANDOM, 7, 7, 0, 13, 1},
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

__device__ int32_t d_last_keep[NUM_MASKS][MAX_CAPACITY];
__device__ int d_keep_errors;

static int train_calls;
static float *workspace; /* made on the first call, as a cuBLASLt handle would be */

static int fail(char *err, size_t err_len, const char *what) {
  snprintf(err, err_len, "fake cuda trainer: %s", what);
  return 1;
}

static int cuda_fail(char *err, size_t err_len, const char *what, cudaError_t rc) {
  snprintf(err, err_len, "fake cuda trainer: %s: %s", what, cudaGetErrorString(rc));
  return 1;
}

static bool on_device(const void *p) {
  cudaPointerAttributes a;
  if (cudaPointerGetAttributes(&a, p) != cudaSuccess) {
    cudaGetLastError();
    return false;
  }
  return a.type == cudaMemoryTypeDevice;
}

/* The first call checks what the runtime promises (it is never captured). */
static int first_call(const sbp_step_args *a, bool train, char *err, size_t err_len) {
  if (workspace)
    return 0;
  cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
  cudaError_t rc = cudaStreamIsCapturing((cudaStream_t)a->stream, &capturing);
  if (rc != cudaSuccess)
    return cuda_fail(err, err_len, "cudaStreamIsCapturing", rc);
  if (capturing != cudaStreamCaptureStatusNone)
    return fail(err, err_len, "the first call is being captured");
  if (!a->stream)
    return fail(err, err_len, "no stream");
  if (!on_device(a->params) || !on_device(a->images) || !on_device(a->labels) ||
      !on_device(a->arena) || !on_device(a->loss) || (train && !on_device(a->grads)))
    return fail(err, err_len, "a buffer is not device memory");
  for (int g = 0; g < NUM_MASKS; ++g)
    if (!on_device(a->keep_idx[g]))
      return fail(err, err_len, "a keep-index array is not device memory");
  rc = cudaMalloc(&workspace, 256);
  if (rc != cudaSuccess)
    return cuda_fail(err, err_len, "cudaMalloc", rc);
  return 0;
}

/* One block per group: copies the keep indices and counts malformed arrays
 * (not ascending, not padded with -1). */
__global__ void record_keep(const int32_t *k0, const int32_t *k1, const int32_t *k2,
                            const int32_t *k3) {
  const int g = blockIdx.x;
  const int32_t *idx = g == 0 ? k0 : g == 1 ? k1 : g == 2 ? k2 : k3;
  const int capacity = g == 1 ? 13 : g == 3 ? 12 : MAX_CAPACITY;
  for (int k = threadIdx.x; k < capacity; k += blockDim.x) {
    d_last_keep[g][k] = idx[k];
    bool bad = k > 0 && idx[k] >= 0 && (idx[k - 1] < 0 || idx[k] <= idx[k - 1]);
    bad = bad || idx[k] < -1;
    if (bad)
      atomicAdd(&d_keep_errors, 1);
  }
}

/* logits = W x + b, one thread per (b, k), summed in fake_trainer.c's order. */
__global__ void logits_kernel(const float *params, const float *images, float *probs,
                              float *logits) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= B * K)
    return;
  const int b = t / K, k = t % K;
  const float *w = params + k * D, *x = images + (size_t)b * D;
  float s = params[BIAS_OFFSET + k];
  for (int d = 0; d < D; ++d)
    s = __fadd_rn(s, __fmul_rn(w[d], x[d]));
  probs[t] = s;
  if (logits)
    logits[t] = s;
}

/* Softmax and the mean cross-entropy, one thread per image; thread 0 sums. */
__global__ void softmax_loss_kernel(const int32_t *labels, float *probs, float *loss,
                                    int nan_loss) {
  __shared__ double row_loss[B];
  const int b = threadIdx.x;
  float *p = probs + b * K;
  float top = -INFINITY;
  for (int k = 0; k < K; ++k)
    top = p[k] > top ? p[k] : top;
  double sum = 0.0;
  for (int k = 0; k < K; ++k)
    sum += exp((double)p[k] - top);
  row_loss[b] = top + log(sum) - p[labels[b]];
  for (int k = 0; k < K; ++k)
    p[k] = (float)(exp((double)p[k] - top) / sum);
  __syncthreads();
  if (b == 0) {
    double total = 0.0;
    for (int i = 0; i < B; ++i)
      total += row_loss[i];
    *loss = nan_loss ? NAN : (float)(total / B);
  }
}

/* gW[k, d] = sum_b delta(b, k) x[b, d]; gb[k] = sum_b delta(b, k). */
__global__ void grad_kernel(const float *probs, const int32_t *labels, const float *images,
                            float *grads) {
  const int t = blockIdx.x * blockDim.x + threadIdx.x;
  if (t < K * D) {
    const int k = t / D, d = t % D;
    float acc = 0.0f;
    for (int b = 0; b < B; ++b) {
      float delta = __fdiv_rn(__fsub_rn(probs[b * K + k], labels[b] == k ? 1.0f : 0.0f), B);
      acc = __fadd_rn(acc, __fmul_rn(delta, images[(size_t)b * D + d]));
    }
    grads[t] = acc;
  } else if (t < K * D + K) {
    const int k = t - K * D;
    float acc = 0.0f;
    for (int b = 0; b < B; ++b)
      acc = __fadd_rn(acc, __fdiv_rn(__fsub_rn(probs[b * K + k], labels[b] == k ? 1.0f : 0.0f), B));
    grads[BIAS_OFFSET + k] = acc;
  }
}

static int launched(char *err, size_t err_len) {
  cudaError_t rc = cudaGetLastError();
  return rc == cudaSuccess ? 0 : cuda_fail(err, err_len, "kernel launch", rc);
}

static int train_step(const sbp_step_args *a, char *err, size_t err_len) {
  if (((uintptr_t)a->arena % 256) != 0)
    return fail(err, err_len, "arena is not 256-byte aligned");
  if (!a->params || !a->grads || !a->images || !a->labels || !a->loss || !a->keep_idx)
    return fail(err, err_len, "a required pointer is NULL");
  if (first_call(a, true, err, err_len))
    return 1;
  ++train_calls;
  cudaStream_t s = (cudaStream_t)a->stream;
  float *probs = (float *)a->arena;
#ifdef FAKE_HEADS
  const int32_t *k3 = a->keep_idx[3];
#else
  const int32_t *k3 = nullptr;
#endif
  record_keep<<<NUM_MASKS, 128, 0, s>>>(a->keep_idx[0], a->keep_idx[1], a->keep_idx[2], k3);
  logits_kernel<<<(B * K + 127) / 128, 128, 0, s>>>(a->params, a->images, probs, nullptr);
#ifdef FAKE_NAN_LOSS
  softmax_loss_kernel<<<1, B, 0, s>>>(a->labels, probs, a->loss, 1);
#else
  softmax_loss_kernel<<<1, B, 0, s>>>(a->labels, probs, a->loss, 0);
#endif
  grad_kernel<<<(K * D + K + 255) / 256, 256, 0, s>>>(probs, a->labels, a->images, a->grads);
#ifdef FAKE_SYNC_IN_STEP
  cudaError_t rc = cudaStreamSynchronize(s);
  if (rc != cudaSuccess)
    return cuda_fail(err, err_len, "cudaStreamSynchronize", rc);
#endif
  return launched(err, err_len);
}

static int eval_step(const sbp_step_args *a, char *err, size_t err_len) {
  if (((uintptr_t)a->arena % 256) != 0)
    return fail(err, err_len, "arena is not 256-byte aligned");
  if (!a->params || !a->images || !a->labels || !a->loss)
    return fail(err, err_len, "a required pointer is NULL");
  if (first_call(a, false, err, err_len))
    return 1;
  cudaStream_t s = (cudaStream_t)a->stream;
  float *probs = (float *)a->arena;
  logits_kernel<<<(B * K + 127) / 128, 128, 0, s>>>(a->params, a->images, probs, a->logits);
  softmax_loss_kernel<<<1, B, 0, s>>>(a->labels, probs, a->loss, 0);
  return launched(err, err_len);
}

EXPORT int fake_cuda_train_calls(void) { return train_calls; }

/* The keep indices of group `group` the last train_step read; returns capacity. */
EXPORT int fake_cuda_last_keep(int group, int32_t *out) {
  int32_t all[NUM_MASKS][MAX_CAPACITY];
  if (cudaMemcpyFromSymbol(all, d_last_keep, sizeof(all)) != cudaSuccess)
    return -1;
  int capacity = masks[group].capacity;
  for (int k = 0; k < capacity; ++k)
    out[k] = all[group][k];
  return capacity;
}

EXPORT int fake_cuda_keep_errors(void) {
  int errors = -1;
  if (cudaMemcpyFromSymbol(&errors, d_keep_errors, sizeof(errors)) != cudaSuccess)
    return -1;
  return errors;
}

static sbp_model_desc make_desc() {
  sbp_model_desc d = {};
  d.abi_version = SBP_ABI_VERSION;
  d.struct_size = sizeof(sbp_model_desc);
#ifdef FAKE_SGD
  d.model_name = "fake_softmax_sgd";
  d.optimizer = {SBP_OPT_SGD, 0.05f, 0.9f, 0, 0.0f, 0.0f, 0.0f, 1e-4f};
#else
#ifdef FAKE_HEADS
  d.model_name = "fake_softmax_heads";
#else
  d.model_name = "fake_softmax";
#endif
  d.optimizer = {SBP_OPT_ADAMW, 0.01f, 0.0f, 0, 0.9f, 0.999f, 1e-8f, 0.05f};
#endif
  d.target = "cuda";
  d.sbpc_version = "test";
  d.batch = B;
  d.in_channels = 1;
  d.in_height = 28;
  d.in_width = 28;
  d.num_classes = K;
  d.num_params = 2;
  d.params = params;
  d.param_elements = BIAS_OFFSET + K;
  d.num_mask_groups = NUM_MASKS;
  d.mask_groups = masks;
  d.report = {2.0 * B * K * D, 4.0 * B * K * D, 0, B * K * 4, B * K * 4};
  d.train_step = train_step;
  d.eval_step = eval_step;
  return d;
}

static const sbp_model_desc desc = make_desc();

EXPORT const sbp_model_desc *sbp_trainer_model(uint32_t runtime_abi, char *err, size_t err_len) {
  if (runtime_abi != SBP_ABI_VERSION) {
    snprintf(err, err_len, "trainer generated for sbp ABI version %u, runtime has ABI version %u",
             (unsigned)SBP_ABI_VERSION, (unsigned)runtime_abi);
    return NULL;
  }
  return &desc;
}
