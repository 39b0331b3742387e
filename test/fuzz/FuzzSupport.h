//===- FuzzSupport.h - helpers shared by the libFuzzer targets --*- C++ -*-===//
//
// The runtime's readers take paths, so the targets write each input to a
// scratch directory of their own (one per process, removed at exit), and
// inputs that stand for several files are split at a marker.
//
//===----------------------------------------------------------------------===//
#ifndef SBP_TEST_FUZZ_FUZZSUPPORT_H
#define SBP_TEST_FUZZ_FUZZSUPPORT_H

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace sbp::fuzz {

/// Separates the files of a multi-file input (listed in the targets'
/// dictionaries, so that mutations keep it whole).
inline constexpr std::string_view kSplitMarker = "\n--sbp-fuzz-file--\n";

/// A directory private to this process, created on first use.
const std::string &scratchDir();

/// Replaces the regular files of scratchDir() by nothing.
void clearScratchDir();

/// Writes `bytes` to scratchDir()/name and returns the path.
std::string writeScratchFile(const std::string &name, std::string_view bytes);

/// The parts of `data` between split markers; always at least one.
std::vector<std::string_view> splitInput(const uint8_t *data, size_t size);

/// Whether `bytes` starts like a gzip stream (the readers then gunzip it).
bool looksGzipped(std::string_view bytes);

} // namespace sbp::fuzz

#endif // SBP_TEST_FUZZ_FUZZSUPPORT_H
