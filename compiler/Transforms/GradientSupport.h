//===- GradientSupport.h - which token rows of a gradient can be non-zero -===//
//
// The support of a backward value is either every row, or the rows kept by
// every mask in a set (an intersection, Eq. 10 of the paper). For a value that
// is not a token tensor (a weight gradient) it is the set of rows it was
// summed over. Rules: sbp.mask_rows intersects with its mask; sbp.add unites;
// any other token-wise op intersects its gradient operands' supports; other
// ops (mean over tokens, position-embedding gradients) see every row.
//
//===----------------------------------------------------------------------===//
#ifndef SBP_COMPILER_GRADIENTSUPPORT_H
#define SBP_COMPILER_GRADIENTSUPPORT_H

#include "Sbp/SbpOps.h"
#include "llvm/ADT/DenseMap.h"

namespace sbp {

struct Support {
  /// Keep-index values (sbp.keep_indices results) whose kept sets intersect;
  /// empty means every row.
  llvm::SmallVector<mlir::Value, 2> keeps;
  bool isAll() const { return keeps.empty(); }
  bool operator==(const Support &o) const { return keeps == o.keeps; }
};

class GradientSupport {
public:
  explicit GradientSupport(ModelOp model);
  /// The support of a backward value (every row for forward values).
  Support lookup(mlir::Value v) const { return support.lookup(v); }
  /// True when the kept sets of `s` can have no token in common on some step.
  static bool canVanish(const Support &s);
  /// "all" or "@m0 & @m1", for diagnostics and annotations.
  static std::string describe(const Support &s);

private:
  llvm::DenseMap<mlir::Value, Support> support;
};

/// The mask group a keep-index value was drawn for.
MaskGroupOp getMaskGroup(mlir::Value keep);

} // namespace sbp

#endif // SBP_COMPILER_GRADIENTSUPPORT_H
