//===- FuzzSupport.cpp - helpers shared by the libFuzzer targets ----------===//
#include "FuzzSupport.h"

#include <cstdio>
#include <cstdlib>
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

namespace sbp::fuzz {

static void removeScratchDir();

const std::string &scratchDir() {
  static const std::string dir = [] {
    const char *tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp && *tmp ? tmp : "/tmp") + "/sbp-fuzz-XXXXXX";
    if (!mkdtemp(pattern.data())) {
      std::perror("sbp fuzz: mkdtemp");
      std::abort();
    }
    return pattern;
  }();
  static const bool cleanup = (std::atexit(removeScratchDir), true);
  (void)cleanup;
  return dir;
}

void clearScratchDir() {
  DIR *dir = opendir(scratchDir().c_str());
  if (!dir)
    return;
  while (dirent *entry = readdir(dir)) {
    std::string name = entry->d_name;
    if (name != "." && name != "..")
      unlink((scratchDir() + "/" + name).c_str());
  }
  closedir(dir);
}

static void removeScratchDir() {
  clearScratchDir();
  rmdir(scratchDir().c_str());
}

std::string writeScratchFile(const std::string &name, std::string_view bytes) {
  std::string path = scratchDir() + "/" + name;
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    std::perror("sbp fuzz: open");
    std::abort();
  }
  for (size_t done = 0; done < bytes.size();) {
    ssize_t n = write(fd, bytes.data() + done, bytes.size() - done);
    if (n <= 0) {
      std::perror("sbp fuzz: write");
      std::abort();
    }
    done += size_t(n);
  }
  close(fd);
  return path;
}

std::vector<std::string_view> splitInput(const uint8_t *data, size_t size) {
  std::string_view rest(reinterpret_cast<const char *>(data), size);
  std::vector<std::string_view> parts;
  for (size_t at; (at = rest.find(kSplitMarker)) != std::string_view::npos;) {
    parts.push_back(rest.substr(0, at));
    rest.remove_prefix(at + kSplitMarker.size());
  }
  parts.push_back(rest);
  return parts;
}

bool looksGzipped(std::string_view bytes) {
  return bytes.size() >= 2 && uint8_t(bytes[0]) == 0x1f && uint8_t(bytes[1]) == 0x8b;
}

} // namespace sbp::fuzz
