// GradFidelity.cpp - exact against SBP gradients, and gradient norms.
#include "GradFidelity.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace sbp::train {

GradientComparison compareGradients(const float *exact, const float *sbp, int64_t n) {
  double dot = 0.0, ee = 0.0, ss = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    dot += double(exact[i]) * double(sbp[i]);
    ee += double(exact[i]) * double(exact[i]);
    ss += double(sbp[i]) * double(sbp[i]);
  }
  GradientComparison c;
  c.exact_norm = std::sqrt(ee);
  c.sbp_norm = std::sqrt(ss);
  if (ee == 0.0 && ss == 0.0)
    c.cosine = 1.0;
  else if (ee == 0.0 || ss == 0.0)
    c.cosine = 0.0;
  else
    c.cosine = dot / (c.exact_norm * c.sbp_norm);
  c.norm_ratio = ee == 0.0 ? std::numeric_limits<double>::quiet_NaN() : c.sbp_norm / c.exact_norm;
  return c;
}

namespace {

// Every parameter's gradient, concatenated in descriptor order.
std::vector<std::vector<float>> readGradients(const sbp::Trainer &trainer, int32_t num_params) {
  std::vector<std::vector<float>> grads;
  for (int32_t p = 0; p < num_params; ++p) {
    sbp_param_info pi{};
    pi.struct_size = sizeof(pi);
    sbp::detail::check(sbp_trainer_get_param_info(trainer.get(), p, &pi));
    std::vector<float> g(size_t(pi.numel));
    sbp::detail::check(sbp_trainer_read_gradient(trainer.get(), p, g.data(), pi.numel));
    grads.push_back(std::move(g));
  }
  return grads;
}

std::string paramName(const sbp::Trainer &trainer, int32_t p) {
  sbp_param_info pi{};
  pi.struct_size = sizeof(pi);
  sbp::detail::check(sbp_trainer_get_param_info(trainer.get(), p, &pi));
  return pi.name;
}

// Fixes every group that samples at random to its draw of `step`; returns the
// groups it fixed, which the caller returns to sampling.
std::vector<int32_t> fixMasksOfStep(const sbp::Trainer &trainer, int64_t step) {
  sbp_trainer_info info = trainer.info();
  std::vector<int32_t> fixed;
  for (int32_t g = 0; g < info.num_mask_groups; ++g) {
    sbp_mask_group_info m{};
    m.struct_size = sizeof(m);
    sbp::detail::check(sbp_trainer_get_mask_group_info(trainer.get(), g, &m));
    if (m.fixed)
      continue; // the user's --keep-indices
    std::vector<int32_t> idx(size_t(m.capacity));
    int32_t kept = 0;
    sbp::detail::check(sbp_trainer_get_keep_indices(trainer.get(), g, step, idx.data(),
                                                    int32_t(idx.size()), &kept));
    sbp::detail::check(sbp_trainer_set_keep_indices(const_cast<sbp_trainer *>(trainer.get()), g,
                                                    idx.data(), kept));
    fixed.push_back(g);
  }
  return fixed;
}

} // namespace

std::vector<double> gradientNorms(const sbp::Trainer &trainer) {
  std::vector<double> norms;
  for (const std::vector<float> &g : readGradients(trainer, trainer.info().num_params))
    norms.push_back(compareGradients(g.data(), g.data(), int64_t(g.size())).exact_norm);
  return norms;
}

std::vector<std::string> gradientNormColumns(const sbp::Trainer &trainer) {
  std::vector<std::string> columns;
  for (int32_t p = 0; p < trainer.info().num_params; ++p)
    columns.push_back("grad_norm:" + paramName(trainer, p));
  return columns;
}

std::vector<double> measureGradientFidelity(sbp::Trainer &trainer, FidelityBatches &source,
                                            int64_t batches, std::FILE *csv) {
  sbp_trainer_info info = trainer.info();
  if (!info.has_exact_step)
    throw std::runtime_error(fmt::format("trainer of model '{}' carries no exact-gradient step: "
                                         "compile it with `sbpc --exact-step`",
                                         info.model_name));
  std::vector<float> images(size_t(info.batch) * size_t(info.in_channels) * size_t(info.in_height) *
                            size_t(info.in_width));
  std::vector<int32_t> labels(size_t(info.batch));
  std::vector<std::string> names;
  for (int32_t p = 0; p < info.num_params; ++p)
    names.push_back(paramName(trainer, p));
  std::vector<double> mean_cosine(size_t(info.num_params), 0.0);
  fmt::print(csv, "{}\n", kFidelityCsvHeader);
  for (int64_t b = 0; b < batches; ++b) {
    source.get(b, images.data(), labels.data());
    const int64_t step = info.step + b;
    std::vector<int32_t> fixed = fixMasksOfStep(trainer, step);
    float sbp_loss = trainer.computeGradients(images.data(), labels.data());
    std::vector<std::vector<float>> sbp = readGradients(trainer, info.num_params);
    for (int32_t g : fixed)
      trainer.useRandomMasks(g); // back to sampling
    float exact_loss = trainer.computeExactGradients(images.data(), labels.data());
    std::vector<std::vector<float>> exact = readGradients(trainer, info.num_params);
    for (int32_t p = 0; p < info.num_params; ++p) {
      const std::vector<float> &e = exact[size_t(p)];
      GradientComparison c = compareGradients(e.data(), sbp[size_t(p)].data(), int64_t(e.size()));
      mean_cosine[size_t(p)] += c.cosine / double(batches);
      fmt::print(csv, "{},{},{},{},{},{:.9f},{:.9f},{:.9g},{:.9g},{:.7f},{:.7f}\n", b, step,
                 names[size_t(p)], p, e.size(), c.cosine, c.norm_ratio, c.exact_norm, c.sbp_norm,
                 exact_loss, sbp_loss);
    }
    std::fflush(csv);
  }
  return mean_cosine;
}

} // namespace sbp::train
