// KeepIndicesFile.h - the text format of sbp-train --keep-indices.
//
// Whitespace-separated integers; '#' starts a comment that runs to the end of
// the line. One non-empty line applies to every mask group; several non-empty
// lines give one group each, in the model's group order. A line holding only
// '-' is an empty list (a heads group that keeps no head).
#ifndef SBP_TRAIN_KEEPINDICESFILE_H
#define SBP_TRAIN_KEEPINDICESFILE_H

#include <cstdint>
#include <string>
#include <vector>

namespace sbp::train {

// One entry per non-empty line. Throws std::runtime_error naming source:line
// for anything that is not an int32.
std::vector<std::vector<int32_t>> parseKeepIndices(const std::string &text,
                                                   const std::string &source);

// Reads and parses a file; throws std::runtime_error when it cannot be read.
std::vector<std::vector<int32_t>> readKeepIndicesFile(const std::string &path);

} // namespace sbp::train

#endif // SBP_TRAIN_KEEPINDICESFILE_H
