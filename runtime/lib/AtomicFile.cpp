// AtomicFile.cpp - temp file, fsync, rename.
#include "AtomicFile.h"

#include "Error.h"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace sbp::rt {
namespace {

std::string directoryOf(const std::string &path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos)
    return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string baseNameOf(const std::string &path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// The pid in "<base>.tmp.<pid>", or 0 when `name` is not exactly that.
pid_t tempOwner(const std::string &name, const std::string &base) {
  const std::string prefix = base + ".tmp.";
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0)
    return 0;
  const std::string digits = name.substr(prefix.size());
  if (digits.size() > 9 || digits.find_first_not_of("0123456789") != std::string::npos)
    return 0;
  return pid_t(std::stol(digits));
}

// A process killed during a save (SIGKILL, power loss) leaves its temporary
// file behind. Removes those of `path` whose process is gone: only the exact
// name pattern, only regular files, never one of a live process (which may be
// saving the same path right now). Best effort: a failure here is no reason
// to fail the save.
void removeStaleTemps(const std::string &path) {
  DIR *dir = ::opendir(directoryOf(path).c_str());
  if (!dir)
    return;
  const std::string base = baseNameOf(path);
  while (dirent *entry = ::readdir(dir)) {
    pid_t owner = tempOwner(entry->d_name, base);
    if (owner <= 0 || owner == ::getpid())
      continue;
    if (::kill(owner, 0) == 0 || errno != ESRCH)
      continue; // alive, or not ours to judge (EPERM: alive under another user)
    struct stat st {};
    if (::fstatat(::dirfd(dir), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISREG(st.st_mode))
      ::unlinkat(::dirfd(dir), entry->d_name, 0);
  }
  ::closedir(dir);
}

} // namespace

AtomicFile::AtomicFile(std::string path)
    : path_(std::move(path)), temp_path_(path_ + ".tmp." + std::to_string(::getpid())) {
  removeStaleTemps(path_);
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
