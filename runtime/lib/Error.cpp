// Error.cpp - status names and the thread-local last error.
#include "Error.h"

#include "sbp/model_abi.h"

namespace sbp::rt {
namespace {
thread_local std::string thread_error;
} // namespace

void setThreadError(const std::string &message) { thread_error = message; }
const char *threadError() { return thread_error.c_str(); }

} // namespace sbp::rt

extern "C" {

SBP_API const char *sbp_status_string(sbp_status status) {
  switch (status) {
  case SBP_OK:
    return "SBP_OK";
  case SBP_ERROR_INVALID_ARGUMENT:
    return "SBP_ERROR_INVALID_ARGUMENT";
  case SBP_ERROR_NOT_FOUND:
    return "SBP_ERROR_NOT_FOUND";
  case SBP_ERROR_IO:
    return "SBP_ERROR_IO";
  case SBP_ERROR_ABI_MISMATCH:
    return "SBP_ERROR_ABI_MISMATCH";
  case SBP_ERROR_CORRUPT_FILE:
    return "SBP_ERROR_CORRUPT_FILE";
  case SBP_ERROR_NUMERIC:
    return "SBP_ERROR_NUMERIC";
  case SBP_ERROR_UNSUPPORTED:
    return "SBP_ERROR_UNSUPPORTED";
  case SBP_ERROR_INTERNAL:
    return "SBP_ERROR_INTERNAL";
  case SBP_STATUS_MAX_ENUM:
    break;
  }
  return "SBP_ERROR_UNKNOWN";
}

SBP_API const char *sbp_last_error(void) { return sbp::rt::threadError(); }

SBP_API uint32_t sbp_runtime_abi_version(void) { return SBP_ABI_VERSION; }

} // extern "C"
