// ParamInit.cpp - zeros, ones, normal, truncated normal and uniform init.
#include "ParamInit.h"

#include "Error.h"
#include "Philox.h"

#include <algorithm>

namespace sbp::rt {

void initParam(const sbp_param_desc &param, int32_t index, uint64_t seed, float *dst) {
  const float scale = param.init_scale;
  const int64_t n = param.numel;
  PhiloxStream rng(seed, Purpose::ParamInit, uint64_t(index));
  switch (param.init) {
  case SBP_INIT_ZEROS:
    std::fill(dst, dst + n, 0.0f);
    return;
  case SBP_INIT_ONES:
    std::fill(dst, dst + n, 1.0f);
    return;
  case SBP_INIT_NORMAL:
    for (int64_t k = 0; k < n; ++k)
      dst[k] = scale * rng.normal();
    return;
  case SBP_INIT_TRUNC_NORMAL:
    // Rejection keeps the exact truncated law; about 95% of draws are accepted.
    for (int64_t k = 0; k < n; ++k) {
      float z = rng.normal();
      while (z < -2.0f || z > 2.0f)
        z = rng.normal();
      dst[k] = scale * z;
    }
    return;
  case SBP_INIT_UNIFORM:
    for (int64_t k = 0; k < n; ++k)
      dst[k] = scale * (2.0f * rng.uniform() - 1.0f);
    return;
  case SBP_INIT_CONSTANT:
    std::fill(dst, dst + n, scale);
    return;
  }
  fail(SBP_ERROR_INVALID_ARGUMENT, "parameter '{}' has unknown init kind {}", param.name,
       param.init);
}

} // namespace sbp::rt
