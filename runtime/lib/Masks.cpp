// Masks.cpp - grid, random and heads keep masks.
#include "Masks.h"

#include "Error.h"
#include "Philox.h"
#include "sbp/mask_rules.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace sbp::rt {

MaskSpec MaskSpec::from(const sbp_mask_group_desc &group) {
  MaskSpec spec;
  spec.kind = group.kind;
  spec.keep_ratio = group.keep_ratio;
  spec.grid_h = group.grid_h;
  spec.grid_w = group.grid_w;
  spec.prefix_tokens = group.prefix_tokens;
  spec.capacity = group.capacity;
  spec.cell = group.cell;
  return spec;
}

MaskSpec MaskSpec::drawnSpec() const {
  if (cell == 1)
    return *this;
  MaskSpec drawn = *this;
  drawn.grid_h = grid_h / cell;
  drawn.grid_w = grid_w / cell;
  drawn.cell = 1;
  drawn.prefix_tokens = 0; // a derived group has none (TrainerLibrary.cpp checks)
  drawn.capacity = drawn.gridSize();
  return drawn;
}

bool MaskSpec::sharesDrawWith(const MaskSpec &other) const {
  // A heads group is one block's draw (vit_sbp.py draws the heads of each
  // block anew); blocks that share a draw share the group.
  if (kind == SBP_MASK_HEADS || other.kind == SBP_MASK_HEADS || kind == SBP_MASK_SAMPLES ||
      other.kind == SBP_MASK_SAMPLES)
    return false;
  MaskSpec mine = drawnSpec(), theirs = other.drawnSpec();
  return kind == other.kind && keep_ratio == other.keep_ratio && mine.grid_h == theirs.grid_h &&
         mine.grid_w == theirs.grid_w;
}

bool isKnownMaskKind(int32_t kind) {
  return kind == SBP_MASK_GRID || kind == SBP_MASK_RANDOM || kind == SBP_MASK_HEADS ||
         kind == SBP_MASK_SAMPLES;
}

const char *maskKindName(int32_t kind) {
  switch (kind) {
  case SBP_MASK_GRID:
    return "grid";
  case SBP_MASK_RANDOM:
    return "random";
  case SBP_MASK_HEADS:
    return "heads";
  case SBP_MASK_SAMPLES:
    return "samples";
  default:
    return "unknown";
  }
}

// The arithmetic lives in sbp/mask_rules.h, shared with the compiler.
int32_t gridStride(float keep_ratio) { return sbp_grid_stride(keep_ratio); }

int32_t randomDropCount(float keep_ratio, int32_t grid_size) {
  return sbp_random_drop_count(keep_ratio, grid_size);
}

std::vector<int32_t> gridKeptPositions(const MaskSpec &spec, int32_t start) {
  int32_t stride = gridStride(spec.keep_ratio);
  bool keep_matching = sbp_grid_keeps_matching(spec.keep_ratio);
  std::vector<int32_t> kept;
  kept.reserve(spec.gridSize());
  for (int32_t i = 0; i < spec.grid_h; ++i)
    for (int32_t j = 0; j < spec.grid_w; ++j) {
      bool matches = stride > 0 && (i + j) % stride == start;
      if (stride == 0 || matches == keep_matching)
        kept.push_back(i * spec.grid_w + j);
    }
  return kept;
}

namespace {

std::vector<int32_t> randomKeptPositions(const MaskSpec &spec, PhiloxStream &rng) {
  int32_t n = spec.gridSize();
  int32_t drop = randomDropCount(spec.keep_ratio, n);
  // Partial Fisher-Yates: the first `drop` entries become a uniform subset.
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  for (int32_t k = 0; k < drop; ++k)
    std::swap(order[k], order[k + int32_t(rng.below(uint32_t(n - k)))]);
  std::vector<char> dropped(n, 0);
  for (int32_t k = 0; k < drop; ++k)
    dropped[order[k]] = 1;
  std::vector<int32_t> kept;
  kept.reserve(n - drop);
  for (int32_t p = 0; p < n; ++p)
    if (!dropped[p])
      kept.push_back(p);
  return kept;
}

// Heads: head h is kept when the h-th uniform of the stream is below r (the
// reference's np.random.rand(H) <= r, strict here; r = 1 keeps all heads since
// u < 1). MaskDraw.h's headKeeps computes the same test from the same words.
std::vector<int32_t> headsKeptPositions(const MaskSpec &spec, PhiloxStream &rng) {
  std::vector<int32_t> kept;
  kept.reserve(size_t(spec.gridSize()));
  for (int32_t h = 0; h < spec.gridSize(); ++h)
    if (rng.uniform() < spec.keep_ratio)
      kept.push_back(h);
  return kept;
}

[[noreturn]] void unknownKind(const MaskSpec &spec) {
  fail(SBP_ERROR_INVALID_ARGUMENT, "unknown mask kind {} (this runtime draws grid {}, random {}, "
       "heads {}, samples {})", spec.kind, int(SBP_MASK_GRID), int(SBP_MASK_RANDOM), int(SBP_MASK_HEADS),
       int(SBP_MASK_SAMPLES));
}

// The draw on `spec`'s own grid (cell 1).
std::vector<int32_t> drawKeptPositions(const MaskSpec &spec, uint64_t seed, int64_t step,
                                       uint32_t draw) {
  PhiloxStream rng(seed, Purpose::Mask, uint64_t(step), draw);
  switch (spec.kind) {
  case SBP_MASK_RANDOM:
    return randomKeptPositions(spec, rng);
  case SBP_MASK_HEADS:
  case SBP_MASK_SAMPLES: // the same independent draw per position
    return headsKeptPositions(spec, rng);
  case SBP_MASK_GRID: {
    int32_t stride = gridStride(spec.keep_ratio);
    int32_t start = stride > 0 ? int32_t(rng.below(uint32_t(stride))) : 0;
    return gridKeptPositions(spec, start);
  }
  default:
    unknownKind(spec);
  }
}

} // namespace

std::vector<int32_t> expandDrawnPositions(const MaskSpec &spec, const std::vector<int32_t> &drawn) {
  if (spec.cell == 1)
    return drawn;
  const int32_t n = spec.cell, drawn_w = spec.grid_w / n;
  std::vector<char> kept(size_t(spec.drawnSpec().gridSize()), 0);
  for (int32_t q : drawn)
    kept[size_t(q)] = 1;
  // Row-major over the fine grid, so the positions come out ascending.
  std::vector<int32_t> fine;
  fine.reserve(drawn.size() * size_t(n) * size_t(n));
  for (int32_t i = 0; i < spec.grid_h; ++i)
    for (int32_t j = 0; j < spec.grid_w; ++j)
      if (kept[size_t((i / n) * drawn_w + j / n)])
        fine.push_back(i * spec.grid_w + j);
  return fine;
}

std::vector<int32_t> sampleDrawnPositions(const MaskSpec &spec, uint64_t seed, int64_t step,
                                          uint32_t draw) {
  return drawKeptPositions(spec.drawnSpec(), seed, step, draw);
}

std::vector<int32_t> sampleKeptPositions(const MaskSpec &spec, uint64_t seed, int64_t step,
                                         uint32_t draw) {
  return expandDrawnPositions(spec, sampleDrawnPositions(spec, seed, step, draw));
}

int32_t maxKeptTokens(const MaskSpec &spec) {
  size_t most = 0;
  if (!isKnownMaskKind(spec.kind))
    unknownKind(spec);
  const MaskSpec drawn = spec.drawnSpec();
  if (spec.kind == SBP_MASK_HEADS || spec.kind == SBP_MASK_SAMPLES) {
    most = size_t(sbp_heads_capacity(spec.gridSize())); // every head (sample) may be kept
  } else if (spec.kind == SBP_MASK_RANDOM) {
    most = size_t(drawn.gridSize() - randomDropCount(spec.keep_ratio, drawn.gridSize()));
  } else {
    int32_t starts = std::max(gridStride(spec.keep_ratio), 1);
    for (int32_t start = 0; start < starts; ++start)
      most = std::max(most, gridKeptPositions(drawn, start).size());
  }
  // Each kept drawn position keeps its whole cell.
  return spec.prefix_tokens + int32_t(most) * spec.cell * spec.cell;
}

void writeKeepIndices(const MaskSpec &spec, const std::vector<int32_t> &positions, int32_t *out) {
  int64_t tokens = int64_t(spec.prefix_tokens) + int64_t(positions.size());
  if (tokens > spec.capacity)
    fail(SBP_ERROR_INTERNAL,
         "{} mask keeps {} {} but its capacity is {} (keep ratio {}, grid {}x{})",
         maskKindName(spec.kind), tokens,
         spec.kind == SBP_MASK_HEADS ? "heads" : spec.kind == SBP_MASK_SAMPLES ? "samples" : "tokens",
         spec.capacity, spec.keep_ratio, spec.grid_h, spec.grid_w);
  int32_t n = 0;
  for (int32_t t = 0; t < spec.prefix_tokens; ++t)
    out[n++] = t;
  for (int32_t p : positions)
    out[n++] = spec.prefix_tokens + p;
  std::fill(out + n, out + spec.capacity, -1);
}

std::vector<int32_t> checkedFixedIndices(const MaskSpec &spec, const char *group_name,
                                         const int32_t *idx, int32_t count) {
  const char *name = group_name ? group_name : "(unnamed)";
  // Heads groups keep head indices, in [0, H) (their prefix is 0).
  const char *what = spec.kind == SBP_MASK_HEADS ? "head" : spec.kind == SBP_MASK_SAMPLES ? "sample" : "keep";
  if (count < 0 || count > spec.capacity)
    fail(SBP_ERROR_INVALID_ARGUMENT, "mask group '{}': {} {} indices given, capacity is {}",
         name, count, what, spec.capacity);
  if (count > 0 && !idx)
    fail(SBP_ERROR_INVALID_ARGUMENT, "mask group '{}': {} {} indices given but no array",
         name, count, what);
  for (int32_t k = 0; k < count; ++k) {
    if (idx[k] < 0 || idx[k] >= spec.tokenCount())
      fail(SBP_ERROR_INVALID_ARGUMENT,
           "mask group '{}': {} index {} (entry {}) is outside [0, {})", name, what, idx[k],
           k, spec.tokenCount());
    if (k > 0 && idx[k] <= idx[k - 1])
      fail(SBP_ERROR_INVALID_ARGUMENT,
           "mask group '{}': {} indices must be ascending and unique ({} follows {} at entry {})",
           name, what, idx[k], idx[k - 1], k);
  }
  // The prefix tokens (the ViT class token) are always kept, as every draw
  // keeps them; a list without them is most likely patch numbering.
  for (int32_t t = 0; t < spec.prefix_tokens; ++t)
    if (count <= t || idx[t] != t)
      fail(SBP_ERROR_INVALID_ARGUMENT,
           "mask group '{}': keep indices must start with {} (always kept: {}), got {}; "
           "indices count tokens, so grid position p is token {} + p",
           name, spec.prefix_tokens == 1 ? std::string("token 0")
                                         : fmt::format("tokens 0..{}", spec.prefix_tokens - 1),
           spec.prefix_tokens == 1 ? "the class token" : "the prefix tokens",
           count <= t ? fmt::format("{} indices", count) : fmt::format("{} at entry {}", idx[t], t),
           spec.prefix_tokens);
  std::vector<int32_t> padded(size_t(spec.capacity), -1);
  std::copy(idx, idx + count, padded.begin());
  return padded;
}

MaskSampler::MaskSampler(std::vector<MaskSpec> specs) : specs_(std::move(specs)) {
  for (size_t g = 0; g < specs_.size(); ++g) {
    uint32_t draw = uint32_t(g);
    for (size_t h = 0; h < g; ++h)
      if (specs_[h].sharesDrawWith(specs_[g])) {
        draw = draw_of_[h];
        break;
      }
    draw_of_.push_back(draw);
  }
}

void MaskSampler::sample(uint64_t seed, int64_t step,
                         std::vector<std::vector<int32_t>> &out) const {
  out.resize(specs_.size());
  std::vector<std::vector<int32_t>> draws(specs_.size());
  for (size_t g = 0; g < specs_.size(); ++g) {
    uint32_t draw = draw_of_[g];
    if (draw == g) // the first group with these settings draws for all of them
      draws[g] = sampleDrawnPositions(specs_[g], seed, step, draw);
    out[g].resize(size_t(specs_[g].capacity));
    // Each group repeats the shared draw over its own cells.
    writeKeepIndices(specs_[g], expandDrawnPositions(specs_[g], draws[draw]), out[g].data());
  }
}

} // namespace sbp::rt

