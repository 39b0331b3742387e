// Masks.h - per-step SBP keep masks (ARCHITECTURE.md "Masks").
//
// Tokens lie on a grid_h x grid_w grid; position (i, j) is token
// prefix_tokens + i * grid_w + j, and the prefix tokens (ViT class token) are
// always kept. A heads mask (SBP_MASK_HEADS) has attention heads for positions:
// grid 1 x H, no prefix, each head kept independently with probability r; a
// samples mask (SBP_MASK_SAMPLES, drop path) is drawn the same way over the
// batch's samples (grid 1 x B).
// A derived group (cell N > 1, ConvNeXt's finer stages) is drawn on the
// grid_h/N x grid_w/N grid and each drawn position covers an N x N cell:
// (i, j) is kept iff drawn position (i / N, j / N) is.
// A mask is a pure function of (seed, step, draw): no history.
#ifndef SBP_RUNTIME_MASKS_H
#define SBP_RUNTIME_MASKS_H

#include "sbp/model_abi.h"

#include <cstdint>
#include <vector>

namespace sbp::rt {

struct MaskSpec {
  int32_t kind = SBP_MASK_GRID; // sbp_mask_kind
  float keep_ratio = 1.0f;
  int32_t grid_h = 1, grid_w = 1;
  int32_t prefix_tokens = 0;
  int32_t capacity = 1;
  int32_t cell = 1; // N: drawn on grid_h/N x grid_w/N, each position an N x N cell

  static MaskSpec from(const sbp_mask_group_desc &group);
  int32_t gridSize() const { return grid_h * grid_w; }
  int32_t tokenCount() const { return prefix_tokens + gridSize(); }
  // The spec the draw is made on: grid_h/N x grid_w/N, cell 1 (itself when N
  // is 1), capacity unbounded by this group's.
  MaskSpec drawnSpec() const;
  // Groups with the same kind, keep ratio and drawn grid share one draw per
  // step (heads groups never do).
  bool sharesDrawWith(const MaskSpec &other) const;
};

// Grid stride for a grid mask: round(1/r) for r <= 0.5, round(1/(1-r)) above;
// 0 when r == 1 (nothing dropped).
int32_t gridStride(float keep_ratio);
// Grid positions a random mask drops: int((1 - r) * N), computed so that ratios
// like 0.9 of N = 10 drop exactly 1 despite float rounding.
int32_t randomDropCount(float keep_ratio, int32_t grid_size);

// Whether `kind` is a mask kind this runtime draws (grid, random, heads, samples).
bool isKnownMaskKind(int32_t kind);
// "grid", "random", "heads", "samples", or "unknown".
const char *maskKindName(int32_t kind);

// Kept grid positions (ascending, in [0, N)) of a grid mask with this start.
std::vector<int32_t> gridKeptPositions(const MaskSpec &spec, int32_t start);
// The positions of the group's grid covered by the kept positions of its
// drawn grid (`drawn`, ascending): ascending; `drawn` itself when cell is 1.
std::vector<int32_t> expandDrawnPositions(const MaskSpec &spec, const std::vector<int32_t> &drawn);
// The step's draw on the drawn grid (spec.drawnSpec()): its ascending kept
// positions (heads: kept head indices, possibly none); groups that share the
// draw share these. Throws SBP_ERROR_INVALID_ARGUMENT for an unknown kind.
std::vector<int32_t> sampleDrawnPositions(const MaskSpec &spec, uint64_t seed, int64_t step,
                                          uint32_t draw);
// The step's ascending kept positions of the group's grid: the draw expanded.
std::vector<int32_t> sampleKeptPositions(const MaskSpec &spec, uint64_t seed, int64_t step,
                                         uint32_t draw);
// Most tokens (prefix included) any draw of this spec keeps.
int32_t maxKeptTokens(const MaskSpec &spec);

// Writes the keep-index array: prefix tokens, then prefix + position for each
// kept position, padded with -1 to capacity. Throws SBP_ERROR_INTERNAL when the
// tokens exceed the capacity.
void writeKeepIndices(const MaskSpec &spec, const std::vector<int32_t> &positions, int32_t *out);

// Validates user-given keep indices (ascending, unique, in range, count <=
// capacity; heads groups: head indices in [0, H)) and returns them padded with
// -1 to capacity. Throws SBP_ERROR_INVALID_ARGUMENT naming the group.
std::vector<int32_t> checkedFixedIndices(const MaskSpec &spec, const char *group_name,
                                         const int32_t *idx, int32_t count);

// The masks of every group of a model for any step.
class MaskSampler {
public:
  explicit MaskSampler(std::vector<MaskSpec> specs);

  int32_t numGroups() const { return int32_t(specs_.size()); }
  const MaskSpec &spec(int32_t group) const { return specs_[group]; }
  // Index of the draw the group uses: the first group with the same settings.
  uint32_t drawOf(int32_t group) const { return draw_of_[group]; }
  // Padded keep indices of every group for `step`, one array per group.
  void sample(uint64_t seed, int64_t step, std::vector<std::vector<int32_t>> &out) const;

private:
  std::vector<MaskSpec> specs_;
  std::vector<uint32_t> draw_of_;
};

} // namespace sbp::rt

#endif // SBP_RUNTIME_MASKS_H
