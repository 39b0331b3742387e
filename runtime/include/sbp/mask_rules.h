/* sbp/mask_rules.h - the arithmetic of keep masks, shared by sbpc and libsbprt.
 *
 * The compiler sizes keep-index arrays (a mask group's capacity) and the
 * runtime draws the masks; both must agree to the token, so both compute from
 * the keep ratio as the descriptor stores it (a float) with these functions.
 */
#ifndef SBP_MASK_RULES_H
#define SBP_MASK_RULES_H

#include <math.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The keep ratio as the user wrote it: the float the descriptor carries snapped
 * to the nearest multiple of 1e-7, i.e. the double nearest the decimal for any
 * ratio written with at most 7 decimals (a float is within 3e-8 of it). The
 * grid rules below compute from this double, as the reference implementation
 * (models/vit_sbp.py, mask_ops.py) computes from its Python float. */
static inline double sbp_keep_ratio_decimal(float keep_ratio) {
  return floor((double)keep_ratio * 1e7 + 0.5) / 1e7;
}

/* Round half to even (numpy's np.round and Python's round): 2.5 -> 2, 3.5 -> 4. */
static inline double sbp_round_half_even(double x) {
  double f = floor(x), d = x - f;
  if (d > 0.5 || (d == 0.5 && fmod(f, 2.0) != 0.0))
    f += 1.0;
  return f;
}

/* Grid masks, as the reference: stride s = round(1/r) for r <= 0.5 (keep
 * (i + j) mod s == start), s = round(1/(1 - r)) for r > 0.5 (drop (i + j) mod
 * s == start); 0 for r >= 1. `round` is numpy's, half to even, on the double
 * quotient: 1/0.4 = 2.5 -> 2 and 1/(1 - 0.6) = 2.5 -> 2 (both keep half the
 * grid); ties only arise at such ratios (0.08 -> 12.5 -> 12), and where the
 * reference's float64 arithmetic misses the tie so does this (1/(1 - 0.92) is
 * 12.500000000000005 in double: 13). */
static inline int sbp_grid_keeps_matching(float keep_ratio) {
  return sbp_keep_ratio_decimal(keep_ratio) <= 0.5;
}

static inline int32_t sbp_grid_stride(float keep_ratio) {
  double r = sbp_keep_ratio_decimal(keep_ratio), s;
  if (!(keep_ratio > 0.0f))
    return 0; /* not a valid ratio (verifiers refuse it) */
  if (r >= 1.0)
    return 0;
  if (r <= 0.0) /* below 5e-8: a stride beyond any grid */
    return INT32_MAX;
  s = sbp_round_half_even(r <= 0.5 ? 1.0 / r : 1.0 / (1.0 - r));
  return s >= (double)INT32_MAX ? INT32_MAX : (int32_t)s;
}

/* Grid positions (i, j) of an h x w grid with (i + j) mod s == start: the
 * most and the fewest over the starts 0 .. s-1, in O(1) (a group's capacity
 * must not cost a visit of every cell: grids may be large). With
 * h = qh*s + rh and w = qw*s + rw, the count for start c is
 * h*qw + qh*rw + |{c - rh + 1, ..., c} (mod s) intersected with [0, rw)|: a
 * window of rh residues against rw of them, which overlaps by at most
 * min(rh, rw) and at least max(0, rh + rw - s) as c takes every value. */
static inline int64_t sbp_grid_matches_base(int64_t h, int64_t w, int64_t s) {
  return h * (w / s) + (h / s) * (w % s);
}
static inline int64_t sbp_grid_matches_max(int64_t h, int64_t w, int64_t s) {
  int64_t rh = h % s, rw = w % s;
  return sbp_grid_matches_base(h, w, s) + (rh < rw ? rh : rw);
}
static inline int64_t sbp_grid_matches_min(int64_t h, int64_t w, int64_t s) {
  int64_t excess = h % s + w % s - s;
  return sbp_grid_matches_base(h, w, s) + (excess > 0 ? excess : 0);
}

/* Random masks: int((1 - r) * n) positions dropped (1e-6 absorbs float error). */
static inline int32_t sbp_random_drop_count(float keep_ratio, int32_t grid_size) {
  double drop = floor((1.0 - (double)keep_ratio) * grid_size + 1e-6);
  return drop < 0 ? 0 : drop > grid_size ? grid_size : (int32_t)drop;
}

/* Heads masks (SBP_MASK_HEADS): each of the H heads (grid 1 x H, no prefix) is
 * kept independently when a uniform u in [0, 1) of the mask stream is below r,
 * so any draw keeps between 0 and H heads and the keep array holds H entries. */
static inline int32_t sbp_heads_capacity(int32_t num_heads) { return num_heads; }

/* The test u < r on the Philox word x the uniform is made of (u = (x >> 8) * 2^-24,
 * exact): a head is kept iff (x >> 8) < sbp_heads_keep_threshold(r), the count of
 * 24-bit values v with v * 2^-24 < r, i.e. ceil(r * 2^24) (the product is exact in
 * double). 2^24 for r = 1 (every head), 0 for r <= 0 or NaN. */
static inline uint32_t sbp_heads_keep_threshold(float keep_ratio) {
  double t = ceil((double)keep_ratio * 16777216.0);
  if (!(t > 0.0))
    return 0u;
  return t >= 16777216.0 ? 16777216u : (uint32_t)t;
}

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* SBP_MASK_RULES_H */
