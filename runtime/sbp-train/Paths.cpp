// Paths.cpp - regular-file and writable-directory checks.
#include "Paths.h"

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <sys/stat.h>
#include <unistd.h>

namespace sbp::train {
namespace {

std::string directoryOf(const std::string &path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos)
    return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

[[noreturn]] void refuse(const std::string &option, const std::string &path,
                         const std::string &why) {
  throw std::runtime_error(option + " '" + path + "': " + why);
}

} // namespace

std::string nonRegularKind(const std::string &path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || S_ISREG(st.st_mode))
    return "";
  if (S_ISDIR(st.st_mode))
    return "a directory";
  if (S_ISFIFO(st.st_mode))
    return "a FIFO";
  if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))
    return "a device";
  if (S_ISSOCK(st.st_mode))
    return "a socket";
  return "not a regular file";
}

void checkInputFile(const std::string &option, const std::string &path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    refuse(option, path, std::strerror(errno));
  std::string kind = nonRegularKind(path);
  if (!kind.empty())
    refuse(option, path, "is " + kind + ", not a regular file");
}

void checkOutputPath(const std::string &option, const std::string &path, bool in_place) {
  if (path.empty())
    refuse(option, path, "empty path");
  if (path.back() == '/')
    refuse(option, path, "names a directory; give a file name");
  std::string kind = nonRegularKind(path);
  if (!kind.empty())
    refuse(option, path, "is " + kind + ", not a file that can be written");
  const std::string dir = directoryOf(path);
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0)
    refuse(option, path, "directory '" + dir + "' does not exist");
  if (!S_ISDIR(st.st_mode))
    refuse(option, path, "'" + dir + "' is not a directory");
  // The save writes a temporary file there and renames it over path.
  if (::access(dir.c_str(), W_OK | X_OK) != 0)
    refuse(option, path, "directory '" + dir + "' is not writable: " + std::strerror(errno));
  if (in_place && ::access(path.c_str(), F_OK) == 0 && ::access(path.c_str(), W_OK) != 0)
    refuse(option, path, std::string("cannot be written: ") + std::strerror(errno));
}

} // namespace sbp::train
