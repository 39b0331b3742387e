//===- PlanMemory.cpp - static arena placement of kernel-graph values -----===//
#include "Passes.h"

#include <optional>

namespace sbp {
#define GEN_PASS_DEF_SBPPLANMEMORY
#include "Passes.h.inc"
} // namespace sbp

using namespace mlir;

namespace {
constexpr int64_t kAlignment = 256;

struct Buffer {
  Value value;        // null: the scratch of `owner`
  Operation *owner;
  int64_t size;       // bytes, aligned
  int64_t first, last; // op indices of the live interval, inclusive
  int64_t offset = -1;
  bool optional = false; // scratch the kernel can run without (kScratchOptionalAttr)
};

static bool overlaps(const Buffer &a, const Buffer &b) { return a.first <= b.last && b.first <= a.last; }

/// Ops whose results live in the arena.
static bool producesBuffers(Operation &op) { return isa<sbpk::KernelOp, sbpk::GemmOp, sbpk::FusedOp>(op); }

/// The arena buffers of a graph: results of kernels, GEMMs and fusion
/// groups, except the parameter gradients, which the producing kernel writes
/// in place; and the scratch an op asks for, live while it runs.
static std::vector<Buffer> collectBuffers(sbpk::GraphOp graph) {
  llvm::DenseMap<Operation *, int64_t> index;
  for (Operation &op : graph.getBlock())
    index[&op] = index.size();
  std::vector<Buffer> buffers;
  for (Operation &op : graph.getBlock()) {
    if (!producesBuffers(op))
      continue;
    if (auto scratch = op.getAttrOfType<IntegerAttr>(sbpk::kScratchBytesAttr)) {
      int64_t size = (scratch.getInt() + kAlignment - 1) / kAlignment * kAlignment;
      // Deferred column sums are read again at the end of the step.
      int64_t last = op.hasAttr(sbpk::kDeferredSumsAttr) ? int64_t(index.size()) - 1 : index[&op];
      buffers.push_back({Value(), &op, size, index[&op], last, -1, op.hasAttr(sbpk::kScratchOptionalAttr)});
    }
    for (Value r : op.getResults()) {
      if (sbpk::getGradOutUser(r))
        continue;
      int64_t last = index[&op];
      for (Operation *user : r.getUsers())
        last = std::max(last, index[user]);
      int64_t size = (sbpk::byteSize(r.getType()) + kAlignment - 1) / kAlignment * kAlignment;
      buffers.push_back({r, &op, size, index[&op], last});
    }
  }
  return buffers;
}

/// The batch images as an arena buffer pinned at offset 0, live until their
/// last reader (the patchify at the start of the forward). The runtime copies
/// the batch there (`sbp_model_desc.images_in_arena`) instead of into a
/// buffer of its own: the region is free again for the rest of the step,
/// where the peak is, so the batch costs no memory of its own.
static std::optional<Buffer> pinnedImages(sbpk::GraphOp graph) {
  int64_t index = 0, first = -1, last = -1;
  Value images;
  for (Operation &op : graph.getBlock()) {
    if (auto in = dyn_cast<sbpk::InputOp>(op); in && in.getName() == "images") {
      images = in.getResult();
      first = last = index;
    }
    if (images && llvm::is_contained(op.getOperands(), images))
      last = index;
    ++index;
  }
  if (!images)
    return std::nullopt;
  int64_t size = (sbpk::byteSize(images.getType()) + kAlignment - 1) / kAlignment * kAlignment;
  return Buffer{images, images.getDefiningOp(), size, first, last, /*offset=*/0};
}

/// The lowest offset at which `buf` is clear of every placed buffer whose
/// interval overlaps its own.
static int64_t lowestFreeOffset(const Buffer &buf, llvm::ArrayRef<Buffer *> placed) {
  std::vector<Buffer *> live;
  for (Buffer *p : placed)
    if (overlaps(*p, buf))
      live.push_back(p);
  llvm::sort(live, [](Buffer *a, Buffer *b) { return a->offset < b->offset; });
  int64_t offset = 0;
  for (Buffer *p : live) {
    if (p->offset >= offset + buf.size)
      break; // fits in the gap before p
    offset = std::max(offset, p->offset + p->size);
  }
  return offset;
}

static std::vector<Buffer *> largestFirst(std::vector<Buffer> &buffers, bool optional) {
  std::vector<Buffer *> order;
  for (Buffer &b : buffers)
    if (b.optional == optional)
      order.push_back(&b);
  llvm::stable_sort(order, [](Buffer *a, Buffer *b) { return a->size > b->size; });
  return order;
}

/// The required buffers largest first, each at its lowest free offset;
/// `pinned` buffers keep their offsets. Then the optional scratch, largest
/// first, where it fits below that arena size; the rest keep offset -1.
/// Returns the arena size.
static int64_t place(std::vector<Buffer> &buffers, std::vector<Buffer> &pinned) {
  std::vector<Buffer *> placed;
  int64_t arena = 0;
  for (Buffer &p : pinned) {
    placed.push_back(&p);
    arena = std::max(arena, p.offset + p.size);
  }
  for (Buffer *buf : largestFirst(buffers, /*optional=*/false)) {
    buf->offset = lowestFreeOffset(*buf, placed);
    arena = std::max(arena, buf->offset + buf->size);
    placed.push_back(buf);
  }
  for (Buffer *buf : largestFirst(buffers, /*optional=*/true)) {
    const int64_t offset = lowestFreeOffset(*buf, placed);
    if (offset + buf->size > arena)
      continue; // would raise the peak: the kernel runs without it
    buf->offset = offset;
    placed.push_back(buf);
  }
  return arena;
}

/// Whether two placed buffers live at the same time share bytes (the plan's
/// invariant, checked after placement: a violation is a compiler bug that
/// would corrupt a tensor silently at run time).
static const Buffer *firstClash(const std::vector<Buffer> &buffers, const std::vector<Buffer> &pinned,
                                const Buffer *&other) {
  std::vector<const Buffer *> all;
  for (const Buffer &b : buffers)
    if (b.offset >= 0)
      all.push_back(&b);
  for (const Buffer &b : pinned)
    all.push_back(&b);
  for (size_t i = 0; i < all.size(); ++i)
    for (size_t j = i + 1; j < all.size(); ++j) {
      const Buffer &a = *all[i], &b = *all[j];
      if (overlaps(a, b) && a.offset < b.offset + b.size && b.offset < a.offset + a.size) {
        other = &b;
        return &a;
      }
    }
  return nullptr;
}

struct PlanMemoryPass : sbp::impl::SbpPlanMemoryBase<PlanMemoryPass> {
  void runOnOperation() override {
    for (sbpk::GraphOp graph : getOperation().getOps<sbpk::GraphOp>()) {
      std::vector<Buffer> buffers = collectBuffers(graph);
      std::vector<Buffer> pinned;
      if (std::optional<Buffer> images = pinnedImages(graph))
        pinned.push_back(*images);
      int64_t arena = place(buffers, pinned);
      const Buffer *other = nullptr;
      if (const Buffer *clash = firstClash(buffers, pinned, other)) {
        clash->owner->emitError("internal compiler error: sbp-plan-memory placed two live buffers over each other "
                                "(with one of ")
            << other->owner->getName() << "); please report this input";
        return signalPassFailure();
      }
      llvm::DenseMap<Value, int64_t> offsetOf;
      Builder builder(&getContext());
      for (const Buffer &b : buffers) {
        if (b.value) {
          offsetOf[b.value] = b.offset;
        } else if (b.offset < 0) { // optional scratch that did not fit
          b.owner->removeAttr(sbpk::kScratchBytesAttr);
          b.owner->removeAttr(sbpk::kScratchOptionalAttr);
        } else {
          b.owner->setAttr(sbpk::kScratchOffsetAttr, builder.getI64IntegerAttr(b.offset));
        }
      }
      for (Operation &op : graph.getBlock()) {
        if (!producesBuffers(op))
          continue;
        SmallVector<int64_t> offsets;
        for (Value r : op.getResults())
          offsets.push_back(offsetOf.count(r) ? offsetOf[r] : -1); // -1: in the gradient buffer
        op.setAttr(sbpk::kArenaOffsetsAttr, builder.getDenseI64ArrayAttr(offsets));
      }
      graph.setArenaBytesAttr(builder.getI64IntegerAttr(arena));
      if (!pinned.empty())
        graph->setAttr(sbpk::kImagesInArenaAttr, builder.getUnitAttr());
    }
  }
};
} // namespace
