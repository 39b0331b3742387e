// TrainerLibrary.h - loading a trainer library and checking its model
// description before anything trusts it.
#ifndef SBP_RUNTIME_TRAINERLIBRARY_H
#define SBP_RUNTIME_TRAINERLIBRARY_H

#include "sbp/model_abi.h"

#include <string>

namespace sbp::rt {

class TrainerLibrary {
public:
  // Checks path is a regular file and a sane ELF shared library of its size
  // (ElfFile.h), dlopen()s it (RTLD_NOW | RTLD_LOCAL), calls its
  // SBP_TRAINER_ENTRY with this runtime's ABI version and validates the
  // description. Throws SBP_ERROR_NOT_FOUND, SBP_ERROR_CORRUPT_FILE,
  // SBP_ERROR_ABI_MISMATCH or SBP_ERROR_INVALID_ARGUMENT.
  explicit TrainerLibrary(const std::string &path);
  ~TrainerLibrary();
  TrainerLibrary(const TrainerLibrary &) = delete;
  TrainerLibrary &operator=(const TrainerLibrary &) = delete;

  const sbp_model_desc &desc() const { return *desc_; }
  const std::string &path() const { return path_; }

private:
  std::string path_;
  void *handle_ = nullptr;
  const sbp_model_desc *desc_ = nullptr;
};

// Throws SBP_ERROR_ABI_MISMATCH / SBP_ERROR_INVALID_ARGUMENT with the first
// inconsistency found in a model description.
void validateModelDesc(const sbp_model_desc &desc, const std::string &path);

} // namespace sbp::rt

#endif // SBP_RUNTIME_TRAINERLIBRARY_H
