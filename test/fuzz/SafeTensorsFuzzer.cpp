//===- SafeTensorsFuzzer.cpp - the runtime's safetensors reader -----------===//
//
// One input is one file: SafeTensorsReader validates the header and every
// entry, then each F32/I32 tensor is read back at the dtype and shape the
// header declares. A malformed file must throw sbp::rt::Error; anything else
// (a crash, a sanitizer report, another exception, a hang) is a bug.
//
//===----------------------------------------------------------------------===//
#include "Error.h"
#include "FuzzSupport.h"
#include "SafeTensors.h"

#include <cstdlib>
#include <vector>

using namespace sbp;

/// Reads every tensor the header declares, as the runtime's loaders do.
static void readAll(const rt::SafeTensorsReader &reader) {
  for (const rt::TensorEntry &entry : reader.tensors()) {
    if (entry.dtype != "F32" && entry.dtype != "I32")
      continue;
    // A validated entry's byte range holds it; bounded to keep each run fast.
    uint64_t bytes = entry.end - entry.begin;
    if (bytes > (64u << 20))
      continue;
    std::vector<uint8_t> dst(size_t(bytes) + 4);
    reader.read(entry.name, entry.dtype, entry.shape, dst.data());
  }
  (void)reader.meta("sbp.abi");
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string path = fuzz::writeScratchFile(
      "input.safetensors", std::string_view(reinterpret_cast<const char *>(data), size));
  try {
    rt::SafeTensorsReader reader(path);
    readAll(reader);
  } catch (const rt::Error &) {
    // A clear refusal: what a malformed file must give.
  }
  return 0;
}
