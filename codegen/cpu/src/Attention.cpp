//===- Attention.cpp - Scaled dot-product attention, forward and backward -===//
//
// Layout [B,T,H,Dh]: the row of token t, head h is contiguous (Dh floats) and
// tokens are H*Dh floats apart, so q, k, v can point straight into the
// columns of a qkv projection output.
//
// Forward: per (batch, head, query tile) an online softmax over key tiles
// (running max m, running sum l, rescaled accumulator), as FlashAttention:
// at most one kQTile x kKTile tile of scores exists at a time. The backward
// recomputes P = exp(scale * q.k - lse) from the saved lse and uses
// dS = P * (dO.v - rowsum(dO * O)); it runs one (batch, head) per task, so the
// dk, dv rows a task accumulates belong to it alone.
//
//===----------------------------------------------------------------------===//

#include "KernelSupport.h"
#include "VecMath.h"
#include "sbp/cpu_kernels.h"

#include <cmath>
#include <limits>

namespace sbp {
namespace cpu {
namespace {

constexpr int64_t kQTile = 16;
constexpr int64_t kKTile = 64;

inline float dot(const float *a, const float *b, int64_t n) {
  float s = 0.0f;
#pragma omp simd reduction(+ : s)
  for (int64_t d = 0; d < n; ++d)
    s += a[d] * b[d];
  return s;
}

inline void axpy(float alpha, const float *x, float *y, int64_t n) {
#pragma omp simd
  for (int64_t d = 0; d < n; ++d)
    y[d] += alpha * x[d];
}

inline bool worthParallel(int64_t B, int64_t H, int64_t Tq, int64_t Tk,
                          int64_t Dh) {
  return B * H * Tq * Tk * Dh >= detail::kParallelMinElems * 4;
}

} // namespace

void attention_fwd(const float *q, const float *k, const float *v, float *o,
                   float *lse, int64_t B, int64_t H, int64_t Tq, int64_t Tk,
                   int64_t Dh, float scale) {
  const int64_t ld = H * Dh;
  const int64_t qTiles = (Tq + kQTile - 1) / kQTile;
  const float negInf = -std::numeric_limits<float>::infinity();
#pragma omp parallel for collapse(3)                                           \
    schedule(static) if (worthParallel(B, H, Tq, Tk, Dh))
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t qt = 0; qt < qTiles; ++qt) {
        const int64_t i0 = qt * kQTile;
        const int64_t nq = Tq - i0 < kQTile ? Tq - i0 : kQTile;
        float scores[kQTile * kKTile];
        float m[kQTile], l[kQTile];
        float *acc = detail::threadWorkspace<float>(size_t(kQTile * Dh));
        for (int64_t ii = 0; ii < nq; ++ii) {
          m[ii] = negInf;
          l[ii] = 0.0f;
        }
        for (int64_t e = 0; e < nq * Dh; ++e)
          acc[e] = 0.0f;
        const float *kb = k + (b * Tk * H + h) * Dh;
        const float *vb = v + (b * Tk * H + h) * Dh;
        for (int64_t j0 = 0; j0 < Tk; j0 += kKTile) {
          const int64_t nk = Tk - j0 < kKTile ? Tk - j0 : kKTile;
          for (int64_t ii = 0; ii < nq; ++ii) {
            const float *qi = q + ((b * Tq + i0 + ii) * H + h) * Dh;
            float *s = scores + ii * kKTile;
            float rowMax = negInf;
            for (int64_t jj = 0; jj < nk; ++jj) {
              s[jj] = scale * dot(qi, kb + (j0 + jj) * ld, Dh);
              rowMax = s[jj] > rowMax ? s[jj] : rowMax;
            }
            const float mNew = m[ii] > rowMax ? m[ii] : rowMax;
            const float rescale = std::exp(m[ii] - mNew); // 0 on the 1st tile
            float *a = acc + ii * Dh;
            if (rescale != 1.0f) {
              l[ii] *= rescale;
              for (int64_t d = 0; d < Dh; ++d)
                a[d] *= rescale;
            }
            float tileSum = 0.0f;
#pragma omp simd reduction(+ : tileSum)
            for (int64_t jj = 0; jj < nk; ++jj) {
              s[jj] = detail::expApprox(s[jj] - mNew);
              tileSum += s[jj];
            }
            l[ii] += tileSum;
            for (int64_t jj = 0; jj < nk; ++jj)
              axpy(s[jj], vb + (j0 + jj) * ld, a, Dh);
            m[ii] = mNew;
          }
        }
        for (int64_t ii = 0; ii < nq; ++ii) {
          float *oi = o + ((b * Tq + i0 + ii) * H + h) * Dh;
          const float inv = l[ii] > 0.0f ? 1.0f / l[ii] : 0.0f;
          for (int64_t d = 0; d < Dh; ++d)
            oi[d] = acc[ii * Dh + d] * inv;
          if (lse)
            lse[(b * H + h) * Tq + i0 + ii] =
                l[ii] > 0.0f ? m[ii] + std::log(l[ii]) : negInf;
        }
      }
}

void attention_bwd(const float *q, const float *k, const float *v,
                   const float *o, const float *lse, const float *dout,
                   float *dq, float *dk, float *dv, int64_t B, int64_t H,
                   int64_t Tq, int64_t Tk, int64_t Dh, float scale) {
  const int64_t ld = H * Dh;
#pragma omp parallel for collapse(2)                                           \
    schedule(static) if (worthParallel(B, H, Tq, Tk, Dh))
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h) {
      const int64_t headK = (b * Tk * H + h) * Dh; // token 0 of k, v, dk, dv
      const int64_t headQ = (b * Tq * H + h) * Dh; // token 0 of q, o, dq
      const float *lseBH = lse + (b * H + h) * Tq;
      for (int64_t j = 0; j < Tk; ++j)
        for (int64_t d = 0; d < Dh; ++d) {
          dk[headK + j * ld + d] = 0.0f;
          dv[headK + j * ld + d] = 0.0f;
        }
      for (int64_t i = 0; i < Tq; ++i) {
        const float *qi = q + headQ + i * ld;
        const float *doi = dout + headQ + i * ld;
        float *dqi = dq + headQ + i * ld;
        const float rowDot = dot(doi, o + headQ + i * ld, Dh); // rowsum(dO*O)
        for (int64_t d = 0; d < Dh; ++d)
          dqi[d] = 0.0f;
        for (int64_t j = 0; j < Tk; ++j) {
          const float *kj = k + headK + j * ld;
          const float *vj = v + headK + j * ld;
          const float p = detail::expApprox(scale * dot(qi, kj, Dh) - lseBH[i]);
          const float dS = p * (dot(doi, vj, Dh) - rowDot) * scale;
          axpy(p, doi, dv + headK + j * ld, Dh);
          axpy(dS, qi, dk + headK + j * ld, Dh);
          axpy(dS, kj, dqi, Dh);
        }
      }
    }
}

} // namespace cpu
} // namespace sbp
