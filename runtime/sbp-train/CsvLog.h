// CsvLog.h - sbp-train --log: one CSV row per epoch,
// epoch,step,train_loss,test_loss,test_acc,seconds.
//
// A resumed run appends, after dropping the rows of steps past the checkpoint
// it resumes from: a run killed after writing an epoch's row but before that
// epoch's checkpoint was saved would otherwise hold the row twice.
#ifndef SBP_TRAIN_CSVLOG_H
#define SBP_TRAIN_CSVLOG_H

#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>

namespace sbp::train {

inline constexpr const char *kCsvLogHeader = "epoch,step,train_loss,test_loss,test_acc,seconds";

// Cuts the log at `path` after its last complete row whose step is at most
// `step` (a torn last line goes too). Throws std::runtime_error when the file
// is not an sbp-train log, rather than cut someone else's file.
void dropRowsAfterStep(const std::string &path, int64_t step);

class CsvLog {
public:
  // No file when path is empty. With `resume_step`, keeps the rows up to that
  // step and appends; otherwise starts a new log.
  CsvLog(const std::string &path, std::optional<int64_t> resume_step);
  ~CsvLog();
  CsvLog(const CsvLog &) = delete;
  CsvLog &operator=(const CsvLog &) = delete;

  // Empty test columns when test_loss is absent (not evaluated, or no test data).
  void row(int64_t epoch, int64_t step, double train_loss, std::optional<double> test_loss,
           std::optional<double> test_acc, double seconds);

private:
  std::string path_;
  std::FILE *file_ = nullptr;
};

} // namespace sbp::train

#endif // SBP_TRAIN_CSVLOG_H
