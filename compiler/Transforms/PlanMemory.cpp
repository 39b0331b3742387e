//===- PlanMemory.cpp - static arena placement of kernel-graph values -----===//
#include "Passes.h"

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
      int64_t last = op.hasAttr("deferred_sums") ? int64_t(index.size()) - 1 : index[&op];
      buffers.push_back({Value(), &op, size, index[&op], last});
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

/// Largest first, each at the lowest offset clear of every placed buffer
/// whose interval overlaps its own. Returns the arena size.
static int64_t place(std::vector<Buffer> &buffers) {
  std::vector<Buffer *> order;
  for (Buffer &b : buffers)
    order.push_back(&b);
  llvm::stable_sort(order, [](Buffer *a, Buffer *b) { return a->size > b->size; });
  std::vector<Buffer *> placed;
  int64_t arena = 0;
  for (Buffer *buf : order) {
    std::vector<Buffer *> live;
    for (Buffer *p : placed)
      if (overlaps(*p, *buf))
        live.push_back(p);
    llvm::sort(live, [](Buffer *a, Buffer *b) { return a->offset < b->offset; });
    int64_t offset = 0;
    for (Buffer *p : live) {
      if (p->offset >= offset + buf->size)
        break; // fits in the gap before p
      offset = std::max(offset, p->offset + p->size);
    }
    buf->offset = offset;
    arena = std::max(arena, offset + buf->size);
    placed.push_back(buf);
  }
  return arena;
}

struct PlanMemoryPass : sbp::impl::SbpPlanMemoryBase<PlanMemoryPass> {
  void runOnOperation() override {
    for (sbpk::GraphOp graph : getOperation().getOps<sbpk::GraphOp>()) {
      std::vector<Buffer> buffers = collectBuffers(graph);
      int64_t arena = place(buffers);
      llvm::DenseMap<Value, int64_t> offsetOf;
      Builder builder(&getContext());
      for (const Buffer &b : buffers) {
        if (b.value)
          offsetOf[b.value] = b.offset;
        else
          b.owner->setAttr(sbpk::kScratchOffsetAttr, builder.getI64IntegerAttr(b.offset));
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
    }
  }
};
} // namespace
