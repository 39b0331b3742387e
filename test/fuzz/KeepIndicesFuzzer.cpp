//===- KeepIndicesFuzzer.cpp - sbp-train's --keep-indices parser ----------===//
//
// The text is parsed as a file's contents; a malformed one must throw
// std::runtime_error naming the line, nothing else.
//
//===----------------------------------------------------------------------===//
#include "KeepIndicesFile.h"

#include <stdexcept>
#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string text(reinterpret_cast<const char *>(data), size);
  try {
    auto lines = sbp::train::parseKeepIndices(text, "fuzz.txt");
    if (lines.empty()) // documented: "no keep indices" is an error, never an empty result
      __builtin_trap();
  } catch (const std::runtime_error &) {
  }
  return 0;
}
