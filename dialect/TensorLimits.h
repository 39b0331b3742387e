//===- TensorLimits.h - the sizes a model may have --------------*- C++ -*-===//
//
// Limits on the static sizes of the sbp and sbpk dialects, checked by their
// verifiers so that no pass or emitter meets a size it cannot compute with:
// a zero or dynamic dimension (divisions by a size), or a tensor whose
// element count does not fit the kernels' 32-bit sizes (cuBLAS GEMM sizes,
// i32 keep indices).
//
//===----------------------------------------------------------------------===//
#ifndef SBP_DIALECT_TENSORLIMITS_H
#define SBP_DIALECT_TENSORLIMITS_H

#include "mlir/IR/OpDefinition.h"

#include <cstdint>
#include <limits>

namespace sbp {
/// The most elements one tensor may hold.
inline constexpr int64_t kMaxTensorElements = std::numeric_limits<int32_t>::max();
/// The most tokens a mask group may cover (prefix + H * W): token indices are i32.
inline constexpr int64_t kMaxTokens = std::numeric_limits<int32_t>::max();

/// Every ranked tensor operand and result of `op` has static, positive sizes
/// and at most kMaxTensorElements elements; emits an error at `op` if not.
mlir::LogicalResult verifyTensorSizes(mlir::Operation *op);

/// The op trait that applies verifyTensorSizes before the op's own verifier,
/// so no verifier needs to guard against zero, dynamic or huge sizes.
template <typename ConcreteType>
class SizedTensors : public mlir::OpTrait::TraitBase<ConcreteType, SizedTensors> {
public:
  static mlir::LogicalResult verifyTrait(mlir::Operation *op) { return verifyTensorSizes(op); }
};
} // namespace sbp

#endif // SBP_DIALECT_TENSORLIMITS_H
