// SafeTensors.cpp - safetensors parsing, validation and atomic writing.
#include "SafeTensors.h"

#include "AtomicFile.h"
#include "Error.h"
#include "Json.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this runtime assumes a little-endian host"
#endif

namespace sbp::rt {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100u << 20; // the limit of the reference implementation

// Bytes per element of every dtype the format defines; 0 for unknown.
size_t dtypeSize(const std::string &dtype) {
  static const std::map<std::string, size_t> sizes = {
      {"BOOL", 1}, {"U8", 1},   {"I8", 1},   {"F8_E5M2", 1}, {"F8_E4M3", 1},
      {"I16", 2},  {"U16", 2},  {"F16", 2},  {"BF16", 2},    {"I32", 4},
      {"U32", 4},  {"F32", 4},  {"F64", 8},  {"I64", 8},     {"U64", 8}};
  auto it = sizes.find(dtype);
  return it == sizes.end() ? 0 : it->second;
}

// Element count, or -1 on overflow.
int64_t numelOf(const Shape &shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d != 0 && n > INT64_MAX / d)
      return -1;
    n *= d;
  }
  return n;
}

void preadAll(int fd, void *dst, uint64_t bytes, uint64_t offset, const std::string &path) {
  auto *out = static_cast<char *>(dst);
  while (bytes > 0) {
    ssize_t got = ::pread(fd, out, bytes, off_t(offset));
    if (got < 0 && errno == EINTR)
      continue;
    if (got < 0)
      fail(SBP_ERROR_IO, "cannot read '{}': {}", path, std::strerror(errno));
    if (got == 0)
      fail(SBP_ERROR_CORRUPT_FILE, "'{}' is truncated", path);
    out += got;
    bytes -= uint64_t(got);
    offset += uint64_t(got);
  }
}

Shape parseShape(const JsonValue *value, const std::string &path, const std::string &name) {
  if (!value || !value->isArray())
    fail(SBP_ERROR_CORRUPT_FILE, "'{}': tensor '{}' has no \"shape\" array", path, name);
  Shape shape;
  for (const JsonValue &dim : value->items) {
    auto d = dim.asInt();
    if (!d || *d < 0)
      fail(SBP_ERROR_CORRUPT_FILE, "'{}': tensor '{}' has a bad dimension in its shape", path,
           name);
    shape.push_back(*d);
  }
  return shape;
}

TensorEntry parseEntry(const std::string &name, const JsonValue &value, const std::string &path,
                       uint64_t data_bytes) {
  if (!value.isObject())
    fail(SBP_ERROR_CORRUPT_FILE, "'{}': header entry '{}' is not an object", path, name);
  TensorEntry entry;
  entry.name = name;
  const JsonValue *dtype = value.find("dtype");
  if (!dtype || !dtype->isString() || dtypeSize(dtype->text) == 0)
    fail(SBP_ERROR_CORRUPT_FILE, "'{}': tensor '{}' has a missing or unknown dtype", path, name);
  entry.dtype = dtype->text;
  entry.shape = parseShape(value.find("shape"), path, name);
  const JsonValue *offsets = value.find("data_offsets");
  std::optional<int64_t> begin, end;
  if (offsets && offsets->isArray() && offsets->items.size() == 2) {
    begin = offsets->items[0].asInt();
    end = offsets->items[1].asInt();
  }
  if (!begin || !end || *begin < 0 || *end < *begin)
    fail(SBP_ERROR_CORRUPT_FILE, "'{}': tensor '{}' has bad \"data_offsets\"", path, name);
  entry.begin = uint64_t(*begin);
  entry.end = uint64_t(*end);
  if (entry.end > data_bytes)
    fail(SBP_ERROR_CORRUPT_FILE,
         "'{}': tensor '{}' data [{}, {}) runs past the end of the file (data section is {} bytes); "
         "the file is truncated or corrupt",
         path, name, entry.begin, entry.end, data_bytes);
  int64_t numel = numelOf(entry.shape);
  if (numel < 0 || uint64_t(numel) > UINT64_MAX / 8 ||
      uint64_t(numel) * dtypeSize(entry.dtype) != entry.end - entry.begin)
    fail(SBP_ERROR_CORRUPT_FILE,
         "'{}': tensor '{}' is {} {} but its data_offsets span {} bytes", path, name,
         entry.dtype, shapeString(entry.shape), entry.end - entry.begin);
  return entry;
}

} // namespace

std::string shapeString(const Shape &shape) {
  std::string s = "[";
  for (size_t k = 0; k < shape.size(); ++k)
    s += (k ? ", " : "") + std::to_string(shape[k]);
  return s + "]";
}

SafeTensorsReader::SafeTensorsReader(std::string path) : path_(std::move(path)) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer; fstat refuses it below.
  fd_ = ::open(path_.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd_ < 0) {
    int err = errno;
    fail(err == ENOENT ? SBP_ERROR_NOT_FOUND : SBP_ERROR_IO, "cannot open '{}': {}", path_,
         std::strerror(err));
  }
  try {
    struct stat st {};
    if (::fstat(fd_, &st) != 0)
      fail(SBP_ERROR_IO, "cannot stat '{}': {}", path_, std::strerror(errno));
    if (!S_ISREG(st.st_mode))
      fail(SBP_ERROR_INVALID_ARGUMENT, "'{}' is not a regular file", path_);
    uint64_t file_size = uint64_t(st.st_size);
    if (file_size < 8)
      fail(SBP_ERROR_CORRUPT_FILE,
           "'{}' is truncated: {} bytes, too short for a safetensors header", path_, file_size);
    unsigned char len_bytes[8];
    preadAll(fd_, len_bytes, 8, 0, path_);
    uint64_t header_len = 0;
    for (int k = 7; k >= 0; --k)
      header_len = (header_len << 8) | len_bytes[k];
    if (header_len > file_size - 8 || header_len > kMaxHeaderBytes)
      fail(SBP_ERROR_CORRUPT_FILE,
           "'{}' is not a valid safetensors file: header length {} exceeds the file size {}",
           path_, header_len, file_size);
    std::string header(header_len, '\0');
    preadAll(fd_, header.data(), header_len, 8, path_);
    data_start_ = 8 + header_len;
    parseHeader(header, file_size - data_start_);
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

SafeTensorsReader::~SafeTensorsReader() {
  if (fd_ >= 0)
    ::close(fd_);
}

void SafeTensorsReader::parseHeader(const std::string &header, uint64_t data_bytes) {
  // Entry by entry, as the parser reads them: the tree of a large header would
  // take ten times its size in memory.
  auto visit = [&](std::string name, JsonValue value) {
    if (name != "__metadata__") {
      index_.emplace(name, tensors_.size());
      tensors_.push_back(parseEntry(name, value, path_, data_bytes));
      return;
    }
    if (!value.isObject())
      fail(SBP_ERROR_CORRUPT_FILE, "'{}': __metadata__ is not an object", path_);
    for (const auto &[key, text] : value.members) {
      if (!text.isString())
        fail(SBP_ERROR_CORRUPT_FILE, "'{}': __metadata__ value '{}' is not a string", path_, key);
      metadata_[key] = text.text;
    }
  };
  try {
    parseJsonObjectMembers(header, visit);
  } catch (const JsonError &e) {
    fail(SBP_ERROR_CORRUPT_FILE, "'{}': bad safetensors header: {}", path_, e.what());
  }
  checkDataLayout(data_bytes);
}

// A header length off by a few bytes (its JSON still parses when the cut falls
// in the padding) shifts every tensor: only an exact tiling catches it.
void SafeTensorsReader::checkDataLayout(uint64_t data_bytes) const {
  std::vector<const TensorEntry *> order;
  for (const TensorEntry &t : tensors_)
    order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const TensorEntry *a, const TensorEntry *b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t covered = 0;
  for (size_t k = 0; k < order.size(); ++k) {
    if (order[k]->begin < covered)
      fail(SBP_ERROR_CORRUPT_FILE, "'{}': tensors '{}' and '{}' overlap", path_,
           order[k - 1]->name, order[k]->name);
    if (order[k]->begin > covered)
      fail(SBP_ERROR_CORRUPT_FILE,
           "'{}': bytes [{}, {}) of the data section belong to no tensor (before tensor '{}')",
           path_, covered, order[k]->begin, order[k]->name);
    covered = order[k]->end;
  }
  if (covered != data_bytes)
    fail(SBP_ERROR_CORRUPT_FILE,
         "'{}': {} bytes follow the last tensor's data (the data section is {} bytes, the "
         "tensors cover {}): the header length or the file is wrong",
         path_, data_bytes - covered, data_bytes, covered);
}

const TensorEntry *SafeTensorsReader::find(const std::string &name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

std::string SafeTensorsReader::meta(const std::string &key) const {
  auto it = metadata_.find(key);
  return it == metadata_.end() ? std::string() : it->second;
}

void SafeTensorsReader::read(const std::string &name, const std::string &dtype,
                             const Shape &shape, void *dst) const {
  const TensorEntry *entry = find(name);
  if (!entry)
    fail(SBP_ERROR_INVALID_ARGUMENT, "'{}' has no tensor '{}'", path_, name);
  if (entry->dtype != dtype)
    fail(SBP_ERROR_INVALID_ARGUMENT, "'{}': tensor '{}' has dtype {}, expected {}", path_, name,
         entry->dtype, dtype);
  if (entry->shape != shape)
    fail(SBP_ERROR_INVALID_ARGUMENT, "'{}': tensor '{}' has shape {}, expected {}", path_, name,
         shapeString(entry->shape), shapeString(shape));
  preadAll(fd_, dst, entry->end - entry->begin, data_start_ + entry->begin, path_);
}

void writeSafeTensors(const std::string &path, const std::map<std::string, std::string> &metadata,
                      const std::vector<TensorData> &tensors) {
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto &[key, value] : metadata) {
      header += (first ? "" : ",") + jsonQuote(key) + ":" + jsonQuote(value);
      first = false;
    }
    header += "}";
  }
  std::vector<uint64_t> sizes;
  uint64_t offset = 0;
  for (const TensorData &t : tensors) {
    uint64_t bytes = uint64_t(numelOf(t.shape)) * dtypeSize(t.dtype);
    std::string shape = shapeString(t.shape);
    shape.erase(std::remove(shape.begin(), shape.end(), ' '), shape.end());
    header += (header.size() > 1 ? "," : "") + jsonQuote(t.name) + ":{\"dtype\":" +
              jsonQuote(t.dtype) + ",\"shape\":" + shape + ",\"data_offsets\":[" +
              std::to_string(offset) + "," + std::to_string(offset + bytes) + "]}";
    sizes.push_back(bytes);
    offset += bytes;
  }
  header += "}";
  header.append((8 - header.size() % 8) % 8, ' '); // keeps the data 8-byte aligned
  unsigned char len_bytes[8];
  for (int k = 0; k < 8; ++k)
    len_bytes[k] = static_cast<unsigned char>(uint64_t(header.size()) >> (8 * k));
  AtomicFile file(path);
  file.write(len_bytes, 8);
  file.write(header.data(), header.size());
  for (size_t k = 0; k < tensors.size(); ++k)
    file.write(tensors[k].data, sizes[k]);
  file.commit();
}

} // namespace sbp::rt
