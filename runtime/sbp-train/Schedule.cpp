// Schedule.cpp - warm-up + cosine / constant learning rate.
#include "Schedule.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

namespace sbp::train {

ScheduleKind parseScheduleKind(const std::string &name) {
  if (name == "cosine")
    return ScheduleKind::Cosine;
  if (name == "constant")
    return ScheduleKind::Constant;
  throw std::invalid_argument("--schedule must be 'cosine' or 'constant', not '" + name + "'");
}

double LrSchedule::at(int64_t step) const {
  if (step < warmup_steps)
    return base_lr * double(step + 1) / double(warmup_steps);
  if (kind == ScheduleKind::Constant)
    return base_lr;
  int64_t decay_steps = std::max<int64_t>(total_steps - warmup_steps, 1);
  double t = std::min(double(step - warmup_steps) / double(decay_steps), 1.0);
  return base_lr * 0.5 * (1.0 + std::cos(M_PI * t));
}

int64_t defaultWarmupSteps(ScheduleKind kind, int64_t total_steps) {
  if (kind == ScheduleKind::Constant)
    return 0;
  return std::min<int64_t>(total_steps / 20, 500);
}

} // namespace sbp::train
