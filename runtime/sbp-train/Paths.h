// Paths.h - sbp-train's checks of the files it is given, made before any work:
// an input that is a FIFO would block the read forever, and an output path
// that cannot be written was only found at the first save, after an epoch or
// the whole run.
#ifndef SBP_TRAIN_PATHS_H
#define SBP_TRAIN_PATHS_H

#include <string>

namespace sbp::train {

// "a directory", "a FIFO", ... for what is at `path` when it is not a regular
// file; "" for a regular file or nothing.
std::string nonRegularKind(const std::string &path);

// Throws std::runtime_error naming `option` unless `path` is an existing
// regular file.
void checkInputFile(const std::string &option, const std::string &path);

// Throws std::runtime_error naming `option` unless `path` can be written: its
// directory exists and is writable, and path itself is absent or a regular
// file (writable too when `in_place`, as a log appended to is).
void checkOutputPath(const std::string &option, const std::string &path, bool in_place = false);

} // namespace sbp::train

#endif // SBP_TRAIN_PATHS_H
