// TestFiles.h - scratch directories and small files for the runtime tests.
#ifndef SBP_TEST_RUNTIME_TESTFILES_H
#define SBP_TEST_RUNTIME_TESTFILES_H

#include <cstdint>
#include <string>
#include <vector>

namespace sbp::test {

// A fresh directory under $TMPDIR, removed with its contents at destruction.
class TempDir {
public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir &) = delete;
  TempDir &operator=(const TempDir &) = delete;
  const std::string &path() const { return path_; }
  std::string file(const std::string &name) const { return path_ + "/" + name; }
  // Names of the entries in the directory, sorted.
  std::vector<std::string> entries() const;

private:
  std::string path_;
};

void writeFile(const std::string &path, const std::string &bytes);
std::string readFile(const std::string &path);
bool fileExists(const std::string &path);

// A safetensors file with `images` F32 [B, C, H, W] and `labels` I32 [B],
// written by hand so the API tests do not use the runtime's own writer.
void writeBatchFile(const std::string &path, const std::vector<int64_t> &image_shape,
                    const std::vector<float> &images, const std::vector<int32_t> &labels);

// A small MNIST-format dataset in dir (plain IDX files): `train` and `test`
// 28x28 images with labels cycling through 0..9, pixels a function of
// (image, pixel) so that the fake trainer has something to learn.
void writeIdxDataset(const std::string &dir, uint32_t train, uint32_t test);

// Path of a fake trainer library variant built by test/runtime/CMakeLists.txt.
std::string fakeTrainer(const std::string &variant = "fake_trainer");

// The Fashion-MNIST directory, or "" when it is not installed.
std::string fashionMnistDir();

} // namespace sbp::test

#endif // SBP_TEST_RUNTIME_TESTFILES_H
