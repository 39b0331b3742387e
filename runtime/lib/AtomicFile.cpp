// AtomicFile.cpp - temp file, fsync, rename.
#include "AtomicFile.h"

#include "Error.h"

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>

namespace sbp::rt {
namespace {

std::string directoryOf(const std::string &path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos)
    return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

} // namespace

AtomicFile::AtomicFile(std::string path)
    : path_(std::move(path)), temp_path_(path_ + ".tmp." + std::to_string(::getpid())) {
  file_ = std::fopen(temp_path_.c_str(), "wb");
  if (!file_) {
    int err = errno;
    fail(err == ENOENT ? SBP_ERROR_NOT_FOUND : SBP_ERROR_IO, "cannot write '{}': {}", path_,
         std::strerror(err));
  }
}

AtomicFile::~AtomicFile() {
  if (file_) {
    std::fclose(file_);
    std::remove(temp_path_.c_str());
  }
}

void AtomicFile::write(const void *data, size_t bytes) {
  if (bytes > 0 && std::fwrite(data, 1, bytes, file_) != bytes)
    fail(SBP_ERROR_IO, "cannot write '{}': {}", path_, std::strerror(errno));
}

void AtomicFile::commit() {
  if (std::fflush(file_) != 0 || ::fsync(::fileno(file_)) != 0)
    fail(SBP_ERROR_IO, "cannot write '{}': {}", path_, std::strerror(errno));
  std::FILE *file = file_;
  file_ = nullptr;
  if (std::fclose(file) != 0 || std::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    int err = errno;
    std::remove(temp_path_.c_str());
    fail(SBP_ERROR_IO, "cannot write '{}': {}", path_, std::strerror(err));
  }
  // Make the rename itself durable; a failure here loses nothing already written.
  int dir = ::open(directoryOf(path_).c_str(), O_RDONLY | O_DIRECTORY);
  if (dir >= 0) {
    ::fsync(dir);
    ::close(dir);
  }
}

} // namespace sbp::rt
