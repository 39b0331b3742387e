// CsvLog.h - sbp-train --log: one CSV row per epoch,
// epoch,step,train_loss,test_loss,test_acc,seconds, then any extra columns
// (--log-grad-norms: grad_norm:<parameter>, the L2 norm of each parameter's
// gradient at the epoch's last step).
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
#include <vector>

namespace sbp::train {

inline constexpr const char *kCsvLogHeader = "epoch,step,train_loss,test_loss,test_acc,seconds";

// Cuts the log at `path` after its last complete row whose step is at most
// `step` (a torn last line goes too). Throws std::runtime_error when the file
// is not an sbp-train log, rather than cut someone else's file.
// `header` is the first line the log must have.
void dropRowsAfterStep(const std::string &path, int64_t step,
                       const std::string &header = kCsvLogHeader);

class CsvLog {
public:
  // No file when path is empty. With `resume_step`, keeps the rows up to that
  // step and appends; otherwise starts a new log.
  CsvLog(const std::string &path, std::optional<int64_t> resume_step,
         std::vector<std::string> extra_columns = {});
  ~CsvLog();
  CsvLog(const CsvLog &) = delete;
  CsvLog &operator=(const CsvLog &) = delete;

  // Empty test columns when test_loss is absent (not evaluated, or no test data).
  void row(int64_t epoch, int64_t step, double train_loss, std::optional<double> test_loss,
           std::optional<double> test_acc, double seconds,
           const std::vector<double> &extras = {});

private:
  std::string path_;
  std::FILE *file_ = nullptr;
  size_t num_extras_ = 0;
};

} // namespace sbp::train

#endif // SBP_TRAIN_CSVLOG_H
