// ElfFile.cpp - header and size checks of an ELF shared library.
#include "ElfFile.h"

#include "Error.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <elf.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace sbp::rt {
namespace {

#if defined(__x86_64__)
constexpr uint16_t kHostMachine = EM_X86_64;
#elif defined(__aarch64__)
constexpr uint16_t kHostMachine = EM_AARCH64;
#else
#error "ElfFile.cpp: add this host's ELF machine"
#endif
static_assert(sizeof(void *) == 8, "trainer libraries are ELF64");

[[noreturn]] void notALibrary(const std::string &path, const std::string &why) {
  fail(SBP_ERROR_INVALID_ARGUMENT, "'{}' is not a trainer library: {}", path, why);
}

[[noreturn]] void corrupt(const std::string &path, uint64_t size, const std::string &why) {
  fail(SBP_ERROR_CORRUPT_FILE,
       "trainer library '{}' is truncated or corrupt: {} (the file has {} bytes)", path, why,
       size);
}

// True when [offset, offset + count * entry) lies inside a file of `size`
// bytes, without overflow.
bool inside(uint64_t offset, uint64_t count, uint64_t entry, uint64_t size) {
  if (offset > size || (entry != 0 && count > (size - offset) / entry))
    return false;
  return true;
}

class File {
public:
  explicit File(const std::string &path) : path_(path) {
    // O_NONBLOCK: a FIFO that slipped past the check must not block open().
    fd_ = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd_ < 0)
      fail(errno == ENOENT ? SBP_ERROR_NOT_FOUND : SBP_ERROR_IO,
           "cannot open trainer library '{}': {}", path, std::strerror(errno));
  }
  ~File() { ::close(fd_); }
  File(const File &) = delete;
  File &operator=(const File &) = delete;

  // Reads exactly `bytes` at `offset` (callers checked they lie in the file).
  void read(void *dst, uint64_t bytes, uint64_t offset) const {
    auto *out = static_cast<char *>(dst);
    while (bytes > 0) {
      ssize_t got = ::pread(fd_, out, bytes, off_t(offset));
      if (got < 0 && errno == EINTR)
        continue;
      if (got <= 0)
        fail(SBP_ERROR_IO, "cannot read trainer library '{}': {}", path_,
             got < 0 ? std::strerror(errno) : "it shrank while being read");
      out += got;
      bytes -= uint64_t(got);
      offset += uint64_t(got);
    }
  }
  uint64_t size() const {
    struct stat st {};
    if (::fstat(fd_, &st) != 0)
      fail(SBP_ERROR_IO, "cannot stat trainer library '{}': {}", path_, std::strerror(errno));
    if (!S_ISREG(st.st_mode))
      notALibrary(path_, "not a regular file");
    return uint64_t(st.st_size);
  }

private:
  std::string path_;
  int fd_ = -1;
};

Elf64_Ehdr readHeader(const File &file, const std::string &path, uint64_t size) {
  Elf64_Ehdr h{};
  file.read(&h, std::min<uint64_t>(size, sizeof(h)), 0);
  if (size < SELFMAG || std::memcmp(h.e_ident, ELFMAG, SELFMAG) != 0)
    notALibrary(path, "not an ELF file");
  if (size < sizeof(h))
    corrupt(path, size, "the ELF header is cut off");
  if (h.e_ident[EI_CLASS] != ELFCLASS64 || h.e_ident[EI_DATA] != ELFDATA2LSB)
    notALibrary(path, "not a 64-bit little-endian ELF file");
  if (h.e_type != ET_DYN)
    notALibrary(path, "not an ELF shared library");
  if (h.e_machine != kHostMachine)
    notALibrary(path, fmt::format("built for ELF machine {}, this machine is {}", h.e_machine,
                                  kHostMachine));
  return h;
}

void checkSegments(const File &file, const Elf64_Ehdr &h, const std::string &path,
                   uint64_t size) {
  if (h.e_phnum == 0 || h.e_phentsize != sizeof(Elf64_Phdr))
    corrupt(path, size, "bad program header table");
  if (!inside(h.e_phoff, h.e_phnum, sizeof(Elf64_Phdr), size))
    corrupt(path, size, "the program header table lies past the end of the file");
  std::vector<Elf64_Phdr> segments(h.e_phnum);
  file.read(segments.data(), segments.size() * sizeof(Elf64_Phdr), h.e_phoff);
  for (size_t k = 0; k < segments.size(); ++k) {
    const Elf64_Phdr &p = segments[k];
    if (p.p_type != PT_LOAD && p.p_type != PT_DYNAMIC)
      continue;
    if (!inside(p.p_offset, p.p_filesz, 1, size))
      corrupt(path, size, fmt::format("segment {} ({}) ends at byte {}", k,
                                      p.p_type == PT_LOAD ? "PT_LOAD" : "PT_DYNAMIC",
                                      p.p_offset + p.p_filesz));
    if (p.p_type == PT_LOAD && p.p_filesz > p.p_memsz)
      corrupt(path, size, fmt::format("segment {} holds more file bytes than memory", k));
  }
}

void checkSections(const File &file, const Elf64_Ehdr &h, const std::string &path,
                   uint64_t size) {
  if (h.e_shoff == 0)
    return; // no section headers: allowed, the loader does not need them
  if (h.e_shentsize != sizeof(Elf64_Shdr))
    corrupt(path, size, "bad section header table");
  uint64_t count = h.e_shnum;
  if (count == 0) { // more than SHN_LORESERVE sections: the count is in section 0
    if (!inside(h.e_shoff, 1, sizeof(Elf64_Shdr), size))
      corrupt(path, size, "the section header table lies past the end of the file");
    Elf64_Shdr first{};
    file.read(&first, sizeof(first), h.e_shoff);
    count = first.sh_size;
  }
  if (!inside(h.e_shoff, count, sizeof(Elf64_Shdr), size))
    corrupt(path, size, "the section header table lies past the end of the file");
  std::vector<Elf64_Shdr> sections(count);
  file.read(sections.data(), count * sizeof(Elf64_Shdr), h.e_shoff);
  for (size_t k = 0; k < sections.size(); ++k) {
    const Elf64_Shdr &s = sections[k];
    if (s.sh_type != SHT_NULL && s.sh_type != SHT_NOBITS && !inside(s.sh_offset, s.sh_size, 1, size))
      corrupt(path, size, fmt::format("section {} ends at byte {}", k, s.sh_offset + s.sh_size));
  }
}

} // namespace

void checkElfSharedLibrary(const std::string &path) {
  File file(path);
  const uint64_t size = file.size();
  Elf64_Ehdr header = readHeader(file, path, size);
  checkSegments(file, header, path, size);
  checkSections(file, header, path, size);
}

} // namespace sbp::rt
