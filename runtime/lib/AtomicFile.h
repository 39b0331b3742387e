// AtomicFile.h - write a file so that readers see the old or the new content,
// never a torn one: "<path>.tmp.<pid>", fflush + fsync, rename over path.
#ifndef SBP_RUNTIME_ATOMICFILE_H
#define SBP_RUNTIME_ATOMICFILE_H

#include <cstddef>
#include <cstdio>
#include <string>

namespace sbp::rt {

class AtomicFile {
public:
  // Removes temporary files of `path` left by dead processes (killed during a
  // save), then creates its own; throws SBP_ERROR_IO (SBP_ERROR_NOT_FOUND when
  // the directory does not exist).
  explicit AtomicFile(std::string path);
  // Without commit() the temporary file is removed: a failed save leaves the
  // old file as it was and no litter.
  ~AtomicFile();
  AtomicFile(const AtomicFile &) = delete;
  AtomicFile &operator=(const AtomicFile &) = delete;

  void write(const void *data, size_t bytes);
  // Flushes, fsyncs, renames over the final path (and fsyncs the directory).
  void commit();

  const std::string &tempPath() const { return temp_path_; }

private:
  std::string path_;
  std::string temp_path_;
  std::FILE *file_ = nullptr;
};

} // namespace sbp::rt

#endif // SBP_RUNTIME_ATOMICFILE_H
