// ParamInit.h - deterministic parameter initialisation from (seed, param index).
#ifndef SBP_RUNTIME_PARAMINIT_H
#define SBP_RUNTIME_PARAMINIT_H

#include "sbp/model_abi.h"

#include <cstdint>

namespace sbp::rt {

// Fills dst[0, param.numel) per param.init / init_scale. The values depend only
// on (seed, index), so adding a parameter does not change the others.
void initParam(const sbp_param_desc &param, int32_t index, uint64_t seed, float *dst);

} // namespace sbp::rt

#endif // SBP_RUNTIME_PARAMINIT_H
