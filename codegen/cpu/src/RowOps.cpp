//===- RowOps.cpp - Token-row movement: patchify, SBP rows, class token ---===//
//
// SBP keeps a subset of token rows per step; idx lists the kept tokens
// (ascending, -1 = padding, one list for the whole batch). These kernels
// move whole D-float rows, parallel over (batch, row) pairs. The ViT class
// token (prepended row) and token pooling (one row per batch element) are
// row moves too.
//
//===----------------------------------------------------------------------===//

#include "KernelSupport.h"
#include "sbp/cpu_kernels.h"

#include <algorithm>
#include <cstring>

namespace sbp {
namespace cpu {
namespace {

using detail::kParallelMinElems;

inline bool isValid(int32_t i, int64_t T) { return i >= 0 && i < T; }

/// True when the valid entries of idx are strictly ascending, hence
/// distinct: scatters may then write rows in parallel without races.
bool validDistinctAscending(const int32_t *idx, int64_t K, int64_t T) {
  int64_t last = -1;
  for (int64_t k = 0; k < K; ++k) {
    if (!isValid(idx[k], T))
      continue;
    if (idx[k] <= last)
      return false;
    last = idx[k];
  }
  return true;
}

inline void copyRow(const float *src, float *dst, int64_t D) {
  std::memcpy(dst, src, sizeof(float) * size_t(D));
}
inline void zeroRow(float *dst, int64_t D) {
  std::memset(dst, 0, sizeof(float) * size_t(D));
}

/// Membership test of a token in idx: a binary search over the run of valid
/// entries when idx has the documented shape (padding only before or after
/// one strictly ascending run), a linear scan otherwise.
class KeepSet {
public:
  KeepSet(const int32_t *indices, int64_t count, int64_t tokens)
      : idx(indices), K(count), T(tokens) {
    int64_t k = 0;
    while (k < K && !isValid(idx[k], T))
      ++k;
    begin = k;
    while (k < K && isValid(idx[k], T) && (k == begin || idx[k] > idx[k - 1]))
      ++k;
    end = k;
    while (k < K && !isValid(idx[k], T))
      ++k;
    sortedRun = k == K;
  }
  bool contains(int64_t t) const {
    if (sortedRun)
      return std::binary_search(idx + begin, idx + end, int32_t(t));
    for (int64_t k = 0; k < K; ++k)
      if (idx[k] == t)
        return true;
    return false;
  }

private:
  const int32_t *idx;
  int64_t K, T, begin = 0, end = 0;
  bool sortedRun = false;
};

} // namespace

void patchify(const float *img, float *tokens, int64_t B, int64_t C, int64_t H,
              int64_t W, int64_t p) {
  const int64_t gh = H / p, gw = W / p, features = C * p * p;
#pragma omp parallel for collapse(2)                                           \
    schedule(static) if (B * C * H * W >= kParallelMinElems)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t i = 0; i < gh; ++i)
      for (int64_t j = 0; j < gw; ++j) {
        float *tok = tokens + ((b * gh + i) * gw + j) * features;
        for (int64_t c = 0; c < C; ++c)
          for (int64_t py = 0; py < p; ++py) {
            const float *src = img + ((b * C + c) * H + i * p + py) * W + j * p;
            copyRow(src, tok + (c * p + py) * p, p);
          }
      }
}

void gather_rows(const float *x, const int32_t *idx, float *out, int64_t B,
                 int64_t T, int64_t K, int64_t D) {
#pragma omp parallel for collapse(2)                                           \
    schedule(static) if (B * K * D >= kParallelMinElems)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = 0; k < K; ++k) {
      float *dst = out + (b * K + k) * D;
      if (isValid(idx[k], T))
        copyRow(x + (b * T + idx[k]) * D, dst, D);
      else
        zeroRow(dst, D);
    }
}

void scatter_rows_acc(const float *xk, const int32_t *idx, float *out,
                      int64_t B, int64_t T, int64_t K, int64_t D) {
  const bool parallel = B * K * D >= kParallelMinElems;
  if (validDistinctAscending(idx, K, T)) {
#pragma omp parallel for collapse(2) schedule(static) if (parallel)
    for (int64_t b = 0; b < B; ++b)
      for (int64_t k = 0; k < K; ++k) {
        if (!isValid(idx[k], T))
          continue;
        const float *src = xk + (b * K + k) * D;
        float *dst = out + (b * T + idx[k]) * D;
#pragma omp simd
        for (int64_t j = 0; j < D; ++j)
          dst[j] += src[j];
      }
    return;
  }
  // Repeated indices: one thread per batch element, rows in order.
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = 0; k < K; ++k) {
      if (!isValid(idx[k], T))
        continue;
      const float *src = xk + (b * K + k) * D;
      float *dst = out + (b * T + idx[k]) * D;
      for (int64_t j = 0; j < D; ++j)
        dst[j] += src[j];
    }
}

void scatter_add_rows(const float *base, const float *xk, const int32_t *idx,
                      float *out, int64_t B, int64_t T, int64_t K, int64_t D) {
  copy(base, out, B * T * D); // a no-op when out is base
  scatter_rows_acc(xk, idx, out, B, T, K, D);
}

void scatter_rows(const float *xk, const int32_t *idx, float *out, int64_t B,
                  int64_t T, int64_t K, int64_t D) {
  const bool parallel = B * T * D >= kParallelMinElems;
  if (validDistinctAscending(idx, K, T)) {
    // Each output row written once: kept rows from xk, the rest zero.
    // Walk idx alongside t (both ascending) per batch element.
#pragma omp parallel for schedule(static) if (parallel)
    for (int64_t b = 0; b < B; ++b) {
      int64_t k = 0;
      for (int64_t t = 0; t < T; ++t) {
        while (k < K && (!isValid(idx[k], T) || idx[k] < t))
          ++k;
        float *dst = out + (b * T + t) * D;
        if (k < K && idx[k] == t)
          copyRow(xk + (b * K + k) * D, dst, D);
        else
          zeroRow(dst, D);
      }
    }
    return;
  }
  fill(out, 0.0f, B * T * D);
  // Repeated indices: the last one wins, as in a serial scatter.
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = 0; k < K; ++k)
      if (isValid(idx[k], T))
        copyRow(xk + (b * K + k) * D, out + (b * T + idx[k]) * D, D);
}

void mask_rows(const float *x, const int32_t *idx, float *out, int64_t B,
               int64_t T, int64_t K, int64_t D) {
  const KeepSet keep(idx, K, T);
#pragma omp parallel for collapse(2)                                           \
    schedule(static) if (B * T * D >= kParallelMinElems)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) {
      float *dst = out + (b * T + t) * D;
      if (!keep.contains(t))
        zeroRow(dst, D);
      else if (dst != x + (b * T + t) * D)
        copyRow(x + (b * T + t) * D, dst, D);
    }
}

void cls_concat(const float *x, const float *cls, float *y, int64_t B,
                int64_t T, int64_t D) {
#pragma omp parallel for collapse(2)                                           \
    schedule(static) if (B * (T + 1) * D >= kParallelMinElems)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t <= T; ++t)
      copyRow(t == 0 ? cls : x + (b * T + t - 1) * D, y + (b * (T + 1) + t) * D,
              D);
}

void cls_concat_grad(const float *dy, float *dx, float *dcls, int64_t B,
                     int64_t T, int64_t D) {
  const bool parallel = B * (T + 1) * D >= kParallelMinElems;
#pragma omp parallel for collapse(2) schedule(static) if (parallel)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t)
      copyRow(dy + (b * (T + 1) + t + 1) * D, dx + (b * T + t) * D, D);
  // dcls: the class rows, (T+1)*D apart, summed over the batch per column.
  const int64_t chunks = (D + detail::kColumnChunk - 1) / detail::kColumnChunk;
#pragma omp parallel for schedule(static) if (B * D >= kParallelMinElems)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t c0 = c * detail::kColumnChunk;
    const int64_t c1 = std::min(c0 + detail::kColumnChunk, D);
    detail::sumColumnChunk(dy, B, (T + 1) * D, c0, c1, 1.0, dcls);
  }
}

void take_token(const float *x, float *y, int64_t B, int64_t T, int64_t D,
                int64_t index) {
  // An index outside [0, T) is treated as padding: zero rows.
  const bool valid = index >= 0 && index < T;
#pragma omp parallel for schedule(static) if (B * D >= kParallelMinElems)
  for (int64_t b = 0; b < B; ++b) {
    if (valid)
      copyRow(x + (b * T + index) * D, y + b * D, D);
    else
      zeroRow(y + b * D, D);
  }
}

void take_token_grad(const float *dy, float *dx, int64_t B, int64_t T,
                     int64_t D, int64_t index) {
#pragma omp parallel for collapse(2)                                           \
    schedule(static) if (B * T * D >= kParallelMinElems)
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < T; ++t) {
      float *dst = dx + (b * T + t) * D;
      if (t == index)
        copyRow(dy + b * D, dst, D);
      else
        zeroRow(dst, D);
    }
}

} // namespace cpu
} // namespace sbp
