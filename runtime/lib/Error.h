// Error.h - the runtime's internal error type, the guard that turns it into a
// status at the C boundary, and the boundary's struct versioning.
#ifndef SBP_RUNTIME_ERROR_H
#define SBP_RUNTIME_ERROR_H

#include "sbp/trainer.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <utility>

namespace sbp::rt {

// Internals report failures by throwing Error; only the C API functions catch,
// so no exception ever crosses the C boundary.
class Error : public std::runtime_error {
public:
  Error(sbp_status status, const std::string &message)
      : std::runtime_error(message), status_(status) {}
  sbp_status status() const { return status_; }

private:
  sbp_status status_;
};

template <typename... Args>
[[noreturn]] void fail(sbp_status status, fmt::format_string<Args...> format, Args &&...args) {
  throw Error(status, fmt::format(format, std::forward<Args>(args)...));
}

// Records `message` as this thread's last error.
void setThreadError(const std::string &message);
const char *threadError();

// Runs body, mapping every exception to a status; the message goes to the
// thread's last error and, when non-null, to *trainer_error.
template <typename Body>
sbp_status guard(std::string *trainer_error, Body &&body) noexcept {
  sbp_status status = SBP_OK;
  std::string message;
  try {
    body();
    return SBP_OK;
  } catch (const Error &e) {
    status = e.status();
    message = e.what();
  } catch (const std::bad_alloc &) {
    status = SBP_ERROR_INTERNAL;
    message = "out of memory";
  } catch (const std::exception &e) {
    status = SBP_ERROR_INTERNAL;
    message = std::string("internal error: ") + e.what();
  } catch (...) {
    status = SBP_ERROR_INTERNAL;
    message = "internal error: unknown exception";
  }
  try {
    setThreadError(message);
    if (trainer_error)
      *trainer_error = message;
  } catch (...) {
    // Out of memory while recording the message: the status still tells.
  }
  return status;
}

// Copies `full` into the caller's output struct, as much of it as the caller's
// struct_size says it has (callers built against older headers know fewer fields).
template <typename T> void fillSized(T *out, T full, const char *type) {
  if (!out || out->struct_size < sizeof(uint32_t))
    fail(SBP_ERROR_INVALID_ARGUMENT, "{} is NULL or its struct_size is not set", type);
  full.struct_size = std::min<uint32_t>(out->struct_size, sizeof(T));
  std::memcpy(out, &full, full.struct_size);
}

} // namespace sbp::rt

#endif // SBP_RUNTIME_ERROR_H
