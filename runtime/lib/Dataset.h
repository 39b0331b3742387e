// Dataset.h - image classification datasets in their distribution formats.
//
// MNIST IDX (MNIST, Fashion-MNIST; gzip or plain) and CIFAR-10 binary. Images
// stay as bytes in memory (4x smaller than floats) and are converted per batch:
// scaled to [0, 1], then standardised per channel with the training split's
// mean and standard deviation.
#ifndef SBP_RUNTIME_DATASET_H
#define SBP_RUNTIME_DATASET_H

#include "sbp/trainer.h"

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace sbp::rt {

struct ImageSplit {
  std::vector<uint8_t> pixels; // [count, C, H, W]
  std::vector<int32_t> labels; // [count]
  int64_t count() const { return int64_t(labels.size()); }
};

class Dataset {
public:
  // Detects the format in `directory`; throws SBP_ERROR_NOT_FOUND for a missing
  // directory or file, SBP_ERROR_CORRUPT_FILE for a malformed one.
  static std::unique_ptr<Dataset> open(const std::string &directory);

  const std::string &format() const { return format_; }
  int32_t channels() const { return channels_; }
  int32_t height() const { return height_; }
  int32_t width() const { return width_; }
  int32_t numClasses() const { return num_classes_; }
  int64_t imageSize() const { return int64_t(channels_) * height_ * width_; }
  const ImageSplit &split(sbp_split which) const;
  float mean(int32_t c) const { return mean_[c]; }
  float stddev(int32_t c) const { return std_[c]; }

  int64_t numTrainBatches(sbp_split which, int64_t batch) const;
  int64_t numEvalBatches(sbp_split which, int64_t batch) const;
  // Batch `index` of epoch `epoch` in the order Philox(seed, epoch) shuffles.
  void trainBatch(sbp_split which, int64_t batch, uint64_t seed, int64_t epoch, int64_t index,
                  float *images, int32_t *labels);
  // Batch `index` in file order, the last padded; returns the real entries.
  int64_t evalBatch(sbp_split which, int64_t batch, int64_t index, float *images,
                    int32_t *labels) const;

  // Builds a dataset from already-read splits (computes classes and statistics).
  Dataset(std::string format, int32_t channels, int32_t height, int32_t width, ImageSplit train,
          ImageSplit test);

private:
  void computeStatistics();
  void copyImage(sbp_split which, int64_t image, float *dst) const;
  const std::vector<int64_t> &permutation(sbp_split which, uint64_t seed, int64_t epoch);

  std::string format_;
  int32_t channels_, height_, width_;
  int32_t num_classes_ = 0;
  ImageSplit train_, test_;
  std::array<float, 4> mean_{}, std_{};
  std::vector<std::array<float, 256>> lut_; // byte -> standardised value, per channel
  struct {
    sbp_split split = SBP_SPLIT_TRAIN;
    uint64_t seed = 0;
    int64_t epoch = -1;
    std::vector<int64_t> order;
  } shuffle_;
};

// A file read through zlib: gzip is inflated, a plain file read as it is.
class GzipReader {
public:
  // Throws SBP_ERROR_NOT_FOUND or SBP_ERROR_IO.
  explicit GzipReader(std::string path);
  ~GzipReader();
  GzipReader(const GzipReader &) = delete;
  GzipReader &operator=(const GzipReader &) = delete;

  // Reads up to `bytes`; fewer only at the end of the file. Throws
  // SBP_ERROR_CORRUPT_FILE on a damaged stream.
  size_t read(void *dst, size_t bytes);
  // Closes the file; throws SBP_ERROR_CORRUPT_FILE when the gzip stream ended
  // early (zlib tells only then).
  void close();

private:
  std::string path_;
  void *file_ = nullptr; // gzFile
};

// Reads a file, at most max_bytes of it, gunzipping it when it is gzip (zlib
// reads plain files through the same calls). Throws SBP_ERROR_CORRUPT_FILE on a
// damaged stream.
std::vector<uint8_t> readMaybeGzip(const std::string &path, uint64_t max_bytes = UINT64_MAX);

// The most bytes one dataset file may hold once inflated (4 GiB; EMNIST's
// largest file is 0.55 GB): a hostile header cannot ask for more memory.
constexpr uint64_t kMaxDatasetFileBytes = uint64_t(1) << 32;
// The most records a CIFAR-10 batch file may hold: the whole of CIFAR-10
// (60,000 images; a real batch holds 10,000). The format has no header, so
// this bounds what a small .gz that inflates without end can fill.
constexpr int64_t kMaxCifarRecordsPerFile = 60000;

// The bytes an IDX file of `rank` dimensions holds by its header (saturating at
// UINT64_MAX); the header's size alone when the header is cut off or of another
// kind. Reading stops there, however large the file or its gzip stream.
uint64_t idxFileBytes(const std::string &path, int rank);

// Parses IDX bytes: unsigned-byte data with `rank` dimensions; returns the
// dimensions and moves the payload into data.
std::vector<int64_t> parseIdx(std::vector<uint8_t> bytes, int rank, const std::string &path,
                              std::vector<uint8_t> &data);

} // namespace sbp::rt

#endif // SBP_RUNTIME_DATASET_H
