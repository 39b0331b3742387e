// ElfFile.h - a trainer library's ELF structure checked against its file size
// before dlopen maps it: the loader trusts the headers, and a segment that
// extends past the end of a truncated file faults (SIGBUS) on first touch
// instead of failing with a message.
#ifndef SBP_RUNTIME_ELFFILE_H
#define SBP_RUNTIME_ELFFILE_H

#include <string>

namespace sbp::rt {

// Throws SBP_ERROR_INVALID_ARGUMENT when `path` is not a regular file or not a
// shared library for this machine (magic, class, byte order, type, machine),
// SBP_ERROR_CORRUPT_FILE when its program or section header table, a PT_LOAD
// or PT_DYNAMIC segment or a section's bytes lie outside the file.
void checkElfSharedLibrary(const std::string &path);

} // namespace sbp::rt

#endif // SBP_RUNTIME_ELFFILE_H
