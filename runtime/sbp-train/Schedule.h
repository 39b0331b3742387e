// Schedule.h - sbp-train's learning-rate schedule: linear warm-up, then cosine
// decay to zero (or constant).
#ifndef SBP_TRAIN_SCHEDULE_H
#define SBP_TRAIN_SCHEDULE_H

#include <cstdint>
#include <string>

namespace sbp::train {

enum class ScheduleKind { Cosine, Constant };

// "cosine" or "constant"; throws std::invalid_argument otherwise.
ScheduleKind parseScheduleKind(const std::string &name);

struct LrSchedule {
  ScheduleKind kind = ScheduleKind::Cosine;
  double base_lr = 0.0;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;

  // Learning rate of step `step` (0-based): base * (step + 1) / warmup during
  // the warm-up, then base * (1 + cos(pi * t)) / 2 with t the fraction of the
  // remaining steps done (cosine), or base (constant).
  double at(int64_t step) const;
};

// Warm-up used when the user gives none: 5% of the run, at most 500 steps, for
// the cosine schedule; none for the constant one.
int64_t defaultWarmupSteps(ScheduleKind kind, int64_t total_steps);

} // namespace sbp::train

#endif // SBP_TRAIN_SCHEDULE_H
