// SafeTensors.h - reader and writer for the safetensors format
// (https://github.com/huggingface/safetensors): an 8-byte little-endian header
// length N, N bytes of JSON header, then the raw little-endian tensor data.
//
// Errors: a file that breaks the format is SBP_ERROR_CORRUPT_FILE; a valid file
// whose tensors do not fit the request (missing, other dtype or shape) is
// SBP_ERROR_INVALID_ARGUMENT. Messages name the file and the tensor.
#ifndef SBP_RUNTIME_SAFETENSORS_H
#define SBP_RUNTIME_SAFETENSORS_H

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

namespace sbp::rt {

using Shape = std::vector<int64_t>;

std::string shapeString(const Shape &shape);

struct TensorEntry {
  std::string name;
  std::string dtype; // "F32", "I32", ... as in the header
  Shape shape;
  uint64_t begin = 0, end = 0; // byte offsets into the data section
};

class SafeTensorsReader {
public:
  // Opens and validates the header and every entry; reads no tensor data.
  // The tensors must tile the data section exactly, as the reference
  // implementation requires: no gap, no overlap, no byte after the last one.
  explicit SafeTensorsReader(std::string path);
  ~SafeTensorsReader();
  SafeTensorsReader(const SafeTensorsReader &) = delete;
  SafeTensorsReader &operator=(const SafeTensorsReader &) = delete;

  const std::string &path() const { return path_; }
  const std::vector<TensorEntry> &tensors() const { return tensors_; }
  const std::map<std::string, std::string> &metadata() const { return metadata_; }
  const TensorEntry *find(const std::string &name) const;
  // The metadata value for key, or "" when absent.
  std::string meta(const std::string &key) const;

  // Reads tensor `name`, which must exist with this dtype ("F32" or "I32") and
  // shape, into dst (numel elements).
  void read(const std::string &name, const std::string &dtype, const Shape &shape,
            void *dst) const;

private:
  void parseHeader(const std::string &header, uint64_t data_bytes);
  void checkDataLayout(uint64_t data_bytes) const;

  std::string path_;
  int fd_ = -1;
  uint64_t data_start_ = 0;
  std::vector<TensorEntry> tensors_;
  std::unordered_map<std::string, size_t> index_; // name -> tensors_ position
  std::map<std::string, std::string> metadata_;
};

struct TensorData {
  std::string name;
  std::string dtype; // "F32" or "I32"
  Shape shape;
  const void *data; // numel elements of dtype
};

// Writes a safetensors file atomically (see AtomicFile.h).
void writeSafeTensors(const std::string &path, const std::map<std::string, std::string> &metadata,
                      const std::vector<TensorData> &tensors);

} // namespace sbp::rt

#endif // SBP_RUNTIME_SAFETENSORS_H
