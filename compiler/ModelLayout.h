//===- ModelLayout.h - where parameters and masks live at run time -*- C++ -*-===//
//
// Shared by the lowering (sbpk.param offsets, keep_indices group numbers) and
// the emitters (the descriptor tables of the generated trainer), so both agree.
//
//===----------------------------------------------------------------------===//
#ifndef SBP_COMPILER_MODELLAYOUT_H
#define SBP_COMPILER_MODELLAYOUT_H

#include "Sbp/SbpOps.h"

namespace sbp {
struct ParamSlot {
  ParamOp op;
  int64_t offset; // elements into the parameter buffer
  int64_t numel;
};

/// Parameters in declaration order, each 16-element (64-byte) aligned.
std::vector<ParamSlot> layoutParams(ModelOp model);
/// Total elements of the parameter buffer.
int64_t paramBufferElements(ModelOp model);
/// Mask groups in declaration order; a keep_indices op's group number is its index.
std::vector<MaskGroupOp> maskGroups(ModelOp model);
} // namespace sbp

#endif
