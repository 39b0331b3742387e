//===- ModelLayout.cpp - where parameters and masks live at run time ------===//
#include "ModelLayout.h"

using namespace sbp;

std::vector<ParamSlot> sbp::layoutParams(ModelOp model) {
  std::vector<ParamSlot> slots;
  int64_t offset = 0;
  for (ParamOp p : model.getBlock().getOps<ParamOp>()) {
    int64_t numel = mlir::cast<mlir::RankedTensorType>(p.getResult().getType()).getNumElements();
    slots.push_back({p, offset, numel});
    offset += (numel + 15) / 16 * 16;
  }
  return slots;
}

int64_t sbp::paramBufferElements(ModelOp model) {
  auto slots = layoutParams(model);
  return slots.empty() ? 0 : (slots.back().offset + slots.back().numel + 15) / 16 * 16;
}

std::vector<MaskGroupOp> sbp::maskGroups(ModelOp model) {
  auto ops = model.getBlock().getOps<MaskGroupOp>();
  return {ops.begin(), ops.end()};
}
