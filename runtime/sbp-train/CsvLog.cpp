// CsvLog.cpp - writing the per-epoch CSV, and trimming it on resume.
#include "CsvLog.h"

#include <cerrno>
#include <charconv>
#include <cstring>
#include <fmt/format.h>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <unistd.h>

namespace sbp::train {
namespace {

// The step of a row ("epoch,step,..."), or nullopt when it is not a row.
std::optional<int64_t> rowStep(const std::string &line) {
  size_t first = line.find(',');
  if (first == std::string::npos)
    return std::nullopt;
  size_t second = line.find(',', first + 1);
  if (second == std::string::npos)
    return std::nullopt;
  int64_t step = 0;
  const char *begin = line.data() + first + 1, *end = line.data() + second;
  auto [stop, ec] = std::from_chars(begin, end, step);
  if (ec != std::errc() || stop != end)
    return std::nullopt;
  return step;
}

} // namespace

void dropRowsAfterStep(const std::string &path, int64_t step, const std::string &header) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return; // no log yet: the run starts one
  std::ostringstream buffer;
  buffer << in.rdbuf();
  const std::string text = buffer.str();
  if (text.empty())
    return;
  size_t keep = 0; // bytes to keep
  for (size_t at = 0, number = 1; at < text.size(); ++number) {
    size_t newline = text.find('\n', at);
    if (newline == std::string::npos)
      break; // a torn last row: the run was killed while writing it
    std::string line = text.substr(at, newline - at);
    if (number == 1) {
      if (line != header)
        throw std::runtime_error(fmt::format("log '{}' is not an sbp-train log of this run: its "
                                             "first line is not '{}'",
                                             path, header));
    } else {
      std::optional<int64_t> row = rowStep(line);
      if (!row)
        throw std::runtime_error(
            fmt::format("log '{}', line {}: not a row of an sbp-train log", path, number));
      if (*row > step)
        break; // rows are in step order: this one and all after it are past the checkpoint
    }
    at = newline + 1;
    keep = at;
  }
  if (keep < text.size() && ::truncate(path.c_str(), off_t(keep)) != 0)
    throw std::runtime_error(
        fmt::format("cannot trim log '{}': {}", path, std::strerror(errno)));
}

CsvLog::CsvLog(const std::string &path, std::optional<int64_t> resume_step,
               std::vector<std::string> extra_columns)
    : path_(path), num_extras_(extra_columns.size()) {
  if (path.empty())
    return;
  std::string header = kCsvLogHeader;
  for (const std::string &column : extra_columns)
    header += "," + column;
  bool has_header = false;
  if (resume_step) {
    dropRowsAfterStep(path, *resume_step, header);
    if (std::FILE *old = std::fopen(path.c_str(), "r")) {
      has_header = std::fgetc(old) != EOF;
      std::fclose(old);
    }
  }
  file_ = std::fopen(path.c_str(), has_header ? "a" : "w");
  if (!file_)
    throw std::runtime_error(fmt::format("cannot write log '{}': {}", path, std::strerror(errno)));
  if (!has_header) {
    fmt::print(file_, "{}\n", header);
    std::fflush(file_);
  }
}

CsvLog::~CsvLog() {
  if (file_)
    std::fclose(file_);
}

void CsvLog::row(int64_t epoch, int64_t step, double train_loss, std::optional<double> test_loss,
                 std::optional<double> test_acc, double seconds,
                 const std::vector<double> &extras) {
  if (!file_)
    return;
  if (extras.size() != num_extras_)
    throw std::logic_error(fmt::format("log '{}': {} extra values for {} columns", path_,
                                       extras.size(), num_extras_));
  std::string loss = test_loss ? fmt::format("{:.6f}", *test_loss) : "";
  std::string acc = test_acc ? fmt::format("{:.4f}", *test_acc) : "";
  // One write of the whole row, so a kill leaves at most one torn line.
  std::string line = fmt::format("{},{},{:.6f},{},{},{:.3f}", epoch, step, train_loss, loss,
                                 acc, seconds);
  for (double value : extras)
    line += fmt::format(",{:.6g}", value);
  line += '\n';
  if (std::fwrite(line.data(), 1, line.size(), file_) != line.size() || std::fflush(file_) != 0)
    throw std::runtime_error(fmt::format("cannot write log '{}': {}", path_, std::strerror(errno)));
}

} // namespace sbp::train
