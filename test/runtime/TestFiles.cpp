// TestFiles.cpp - scratch directories and small files for the runtime tests.
#include "TestFiles.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <dirent.h>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <sys/stat.h>
#include <unistd.h>

namespace sbp::test {

TempDir::TempDir() {
  const char *base = std::getenv("TMPDIR");
  std::string pattern = std::string(base && *base ? base : "/tmp") + "/sbprt-test-XXXXXX";
  if (!::mkdtemp(pattern.data()))
    throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

TempDir::~TempDir() {
  for (const std::string &name : entries())
    std::remove(file(name).c_str());
  ::rmdir(path_.c_str());
}

std::vector<std::string> TempDir::entries() const {
  std::vector<std::string> names;
  if (DIR *dir = ::opendir(path_.c_str())) {
    while (dirent *e = ::readdir(dir)) {
      std::string name = e->d_name;
      if (name != "." && name != "..")
        names.push_back(name);
    }
    ::closedir(dir);
  }
  std::sort(names.begin(), names.end());
  return names;
}

void writeFile(const std::string &path, const std::string &bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), std::streamsize(bytes.size()));
  if (!out)
    throw std::runtime_error("cannot write " + path);
}

std::string readFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

bool fileExists(const std::string &path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

void writeBatchFile(const std::string &path, const std::vector<int64_t> &image_shape,
                    const std::vector<float> &images, const std::vector<int32_t> &labels) {
  std::string shape;
  for (int64_t d : image_shape)
    shape += (shape.empty() ? "" : ",") + std::to_string(d);
  size_t image_bytes = images.size() * 4, label_bytes = labels.size() * 4;
  std::string header = "{\"images\":{\"dtype\":\"F32\",\"shape\":[" + shape +
                       "],\"data_offsets\":[0," + std::to_string(image_bytes) +
                       "]},\"labels\":{\"dtype\":\"I32\",\"shape\":[" +
                       std::to_string(labels.size()) + "],\"data_offsets\":[" +
                       std::to_string(image_bytes) + "," +
                       std::to_string(image_bytes + label_bytes) + "]}}";
  std::string bytes(8, '\0');
  for (int k = 0; k < 8; ++k)
    bytes[size_t(k)] = char((uint64_t(header.size()) >> (8 * k)) & 0xFF);
  bytes += header;
  bytes.append(reinterpret_cast<const char *>(images.data()), image_bytes);
  bytes.append(reinterpret_cast<const char *>(labels.data()), label_bytes);
  writeFile(path, bytes);
}

namespace {

std::string bigEndian32(uint32_t v) {
  return {char(v >> 24), char((v >> 16) & 0xFF), char((v >> 8) & 0xFF), char(v & 0xFF)};
}

void writeIdxSplit(const std::string &dir, const std::string &prefix, uint32_t count) {
  std::string images = bigEndian32(0x0803) + bigEndian32(count) + bigEndian32(28) +
                       bigEndian32(28);
  std::string labels = bigEndian32(0x0801) + bigEndian32(count);
  for (uint32_t i = 0; i < count; ++i) {
    uint32_t label = i % 10;
    labels += char(label);
    for (uint32_t k = 0; k < 28 * 28; ++k)
      images += char((k * (label + 1) + i) % 251);
  }
  writeFile(dir + "/" + prefix + "-images-idx3-ubyte", images);
  writeFile(dir + "/" + prefix + "-labels-idx1-ubyte", labels);
}

} // namespace

void writeIdxDataset(const std::string &dir, uint32_t train, uint32_t test) {
  writeIdxSplit(dir, "train", train);
  writeIdxSplit(dir, "t10k", test);
}

std::string fakeTrainer(const std::string &variant) {
  return std::string(SBP_FAKE_TRAINER_DIR) + "/" + variant + ".so";
}

std::string fashionMnistDir() {
  const char *env = std::getenv("SBP_FASHION_MNIST_DIR");
  std::string dir = env && *env ? env : SBP_FASHION_MNIST_DIR;
  return fileExists(dir + "/train-images-idx3-ubyte.gz") ||
                 fileExists(dir + "/train-images-idx3-ubyte")
             ? dir
             : "";
}

} // namespace sbp::test
