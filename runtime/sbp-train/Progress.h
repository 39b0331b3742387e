// Progress.h - sbp-train's per-epoch progress: a redrawn bar on a terminal,
// plain lines every 10% otherwise (logs, CI).
#ifndef SBP_TRAIN_PROGRESS_H
#define SBP_TRAIN_PROGRESS_H

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

namespace sbp::train {

class Progress {
public:
  Progress(std::FILE *out, bool terminal, std::string label, int64_t total);
  // `done` of `total` batches finished; mean loss so far; images per second.
  void update(int64_t done, double loss, double images_per_second);
  // Clears the bar (terminal) so the epoch summary line replaces it.
  void finish();

private:
  std::FILE *out_;
  bool terminal_;
  std::string label_;
  int64_t total_;
  int next_decile_ = 1;
  std::chrono::steady_clock::time_point last_draw_{};
  bool drawn_ = false;
};

} // namespace sbp::train

#endif // SBP_TRAIN_PROGRESS_H
