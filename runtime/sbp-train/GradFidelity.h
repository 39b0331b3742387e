// GradFidelity.h - sbp-train --grad-fidelity: how closely the SBP gradients
// follow the exact ones (the paper's Figs. 2, 3, 5), per parameter and batch.
#ifndef SBP_TRAIN_GRADFIDELITY_H
#define SBP_TRAIN_GRADFIDELITY_H

#include "sbp/trainer.hpp"

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace sbp::train {

inline constexpr const char *kFidelityCsvHeader =
    "batch,step,param,index,numel,cosine,norm_ratio,exact_norm,sbp_norm,exact_"
    "loss,sbp_loss";

// Cosine similarity and L2 norms of two gradients, in double. Cosine 1 when
// both are zero, 0 when only one is; the ratio ||sbp|| / ||exact|| is NaN
// when the exact gradient is zero.
struct GradientComparison {
  double cosine = 1.0, norm_ratio = 1.0, exact_norm = 0.0, sbp_norm = 0.0;
};
GradientComparison compareGradients(const float *exact, const float *sbp, int64_t n);

// L2 norm of every parameter's gradient as the trainer holds it now.
std::vector<double> gradientNorms(const sbp::Trainer &trainer);

// Column names of --log-grad-norms: grad_norm:<parameter name>.
std::vector<std::string> gradientNormColumns(const sbp::Trainer &trainer);

// A batch source: fills images and labels of batch `index` (0-based).
struct FidelityBatches {
  virtual ~FidelityBatches() = default;
  virtual void get(int64_t index, float *images, int32_t *labels) = 0;
};

// For each of `batches` batches at the trainer's current parameters: the SBP
// gradients with the masks of step (trainer step + batch) (groups the caller
// fixed keep theirs) and the exact gradients (every keep ratio 1.0); writes
// one CSV row per (batch, parameter) to `csv` and returns the mean cosine over
// batches per parameter. Leaves the parameters and the step unchanged.
std::vector<double> measureGradientFidelity(sbp::Trainer &trainer, FidelityBatches &source,
                                            int64_t batches, std::FILE *csv);

} // namespace sbp::train

#endif // SBP_TRAIN_GRADFIDELITY_H
