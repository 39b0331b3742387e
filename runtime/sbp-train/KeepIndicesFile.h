// KeepIndicesFile.h - the text format of sbp-train --keep-indices.
//
// Whitespace-separated integers; '#' starts a comment that runs to the end of
// the line. A line may start with a mask group's name and a colon ("h.blocks.1.attn:
// 0 2"): then every non-empty line must name one group, each group of the model
// once. Without names, one non-empty line applies to every mask group and
// several give one group each, in the model's group order. A list holding only
// '-' is empty (a heads group that keeps no head).
#ifndef SBP_TRAIN_KEEPINDICESFILE_H
#define SBP_TRAIN_KEEPINDICESFILE_H

#include <cstdint>
#include <string>
#include <vector>

namespace sbp::train {

// One non-empty line of the file.
struct KeepIndexLine {
  int line = 0;         // 1-based line number in the file
  std::string group;    // the group the line names ("" when it names none)
  std::vector<int32_t> indices;
};

// One entry per non-empty line. Throws std::runtime_error naming source:line
// for anything that is not an int32, a misplaced '-' or an empty group name,
// and when some lines name a group and others do not.
std::vector<KeepIndexLine> parseKeepIndexLines(const std::string &text, const std::string &source);

// The index lists alone, in file order.
std::vector<std::vector<int32_t>> parseKeepIndices(const std::string &text,
                                                   const std::string &source);

// Reads and parses a file; throws std::runtime_error when it cannot be read.
std::vector<KeepIndexLine> readKeepIndicesFile(const std::string &path);

} // namespace sbp::train

#endif // SBP_TRAIN_KEEPINDICESFILE_H
