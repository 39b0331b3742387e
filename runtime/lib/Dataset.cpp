// Dataset.cpp - IDX and CIFAR-10 readers, statistics, batches.
#include "Dataset.h"

#include "Error.h"
#include "Philox.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <numeric>
#include <sys/stat.h>
#include <zlib.h>

namespace sbp::rt {
namespace {

// True for a regular file, false when nothing is there; anything else (a
// FIFO would block the read, a directory fail obscurely) is an error.
bool isFile(const std::string &path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    return false;
  if (!S_ISREG(st.st_mode))
    fail(SBP_ERROR_INVALID_ARGUMENT, "dataset file '{}' is not a regular file", path);
  return true;
}

// `base` or `base.gz` in dir, or "" when neither exists.
std::string findMaybeGzip(const std::string &dir, const std::string &base) {
  for (const std::string &name : {base, base + ".gz"})
    if (isFile(dir + "/" + name))
      return dir + "/" + name;
  return "";
}

uint32_t bigEndian32(const uint8_t *p) {
  return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | uint32_t(p[3]);
}

} // namespace

uint64_t idxFileBytes(const std::string &path, int rank) {
  const size_t header = 4 + 4 * size_t(rank);
  std::vector<uint8_t> head = readMaybeGzip(path, header);
  if (head.size() < header || bigEndian32(head.data()) != (0x0800u | uint32_t(rank)))
    return header; // parseIdx says what is wrong
  uint64_t bytes = 1;
  for (int d = 0; d < rank; ++d) {
    uint64_t dim = bigEndian32(head.data() + 4 + 4 * d);
    bytes = dim != 0 && bytes > (UINT64_MAX - header - 1) / dim ? UINT64_MAX - header - 1
                                                                : bytes * dim;
  }
  return header + bytes;
}

namespace {

// Reads no more of the file than its header asks for (and one byte to see
// there is no more): a small .gz that inflates to gigabytes, a stray huge
// file, fails after that many bytes instead of filling the memory first.
// A header that promises more than kMaxDatasetFileBytes fails before any data
// is read.
std::vector<int64_t> readIdx(const std::string &path, int rank, std::vector<uint8_t> &data) {
  const uint64_t bytes = idxFileBytes(path, rank);
  if (bytes > kMaxDatasetFileBytes)
    fail(SBP_ERROR_CORRUPT_FILE, "'{}': its IDX header promises more than the {} bytes (4 GiB) "
         "a dataset file may hold", path, kMaxDatasetFileBytes);
  return parseIdx(readMaybeGzip(path, bytes + 1), rank, path, data);
}

ImageSplit readIdxSplit(const std::string &dir, const std::string &prefix,
                        std::array<int32_t, 2> &hw) {
  std::string images_path = findMaybeGzip(dir, prefix + "-images-idx3-ubyte");
  std::string labels_path = findMaybeGzip(dir, prefix + "-labels-idx1-ubyte");
  if (images_path.empty() || labels_path.empty())
    fail(SBP_ERROR_NOT_FOUND, "dataset '{}' lacks {}-{}-idx{}-ubyte[.gz]", dir, prefix,
         images_path.empty() ? "images" : "labels", images_path.empty() ? 3 : 1);
  ImageSplit split;
  std::vector<int64_t> dims = readIdx(images_path, 3, split.pixels);
  std::vector<uint8_t> labels;
  std::vector<int64_t> label_dims = readIdx(labels_path, 1, labels);
  if (label_dims[0] != dims[0])
    fail(SBP_ERROR_CORRUPT_FILE, "'{}' has {} labels but '{}' has {} images", labels_path,
         label_dims[0], images_path, dims[0]);
  if (dims[1] <= 0 || dims[2] <= 0 || dims[1] > 65536 || dims[2] > 65536)
    fail(SBP_ERROR_CORRUPT_FILE, "'{}': bad image size {}x{}", images_path, dims[1], dims[2]);
  split.labels.assign(labels.begin(), labels.end());
  hw = {int32_t(dims[1]), int32_t(dims[2])};
  return split;
}

std::unique_ptr<Dataset> openIdx(const std::string &dir) {
  std::array<int32_t, 2> train_hw{}, test_hw{};
  ImageSplit train = readIdxSplit(dir, "train", train_hw);
  ImageSplit test = readIdxSplit(dir, "t10k", test_hw);
  if (train_hw != test_hw)
    fail(SBP_ERROR_CORRUPT_FILE, "dataset '{}': training images are {}x{}, test images {}x{}", dir,
         train_hw[0], train_hw[1], test_hw[0], test_hw[1]);
  return std::make_unique<Dataset>("idx", 1, train_hw[0], train_hw[1], std::move(train),
                                   std::move(test));
}

// CIFAR-10 binary: records of 1 label byte + 3x32x32 channel-major bytes.
constexpr int64_t kCifarImage = 3 * 32 * 32;

// Record by record, checking each label as it arrives: a file that is not a
// CIFAR batch fails at its first record, not after all of it is in memory, and
// one that inflates without end after kMaxCifarRecordsPerFile records.
void appendCifarFile(const std::string &path, ImageSplit &split) {
  GzipReader in(path);
  std::vector<uint8_t> record(kCifarImage + 1);
  int64_t records = 0;
  for (;; ++records) {
    size_t got = in.read(record.data(), record.size());
    if (got == 0)
      break;
    if (records == kMaxCifarRecordsPerFile)
      fail(SBP_ERROR_CORRUPT_FILE, "'{}' is not a CIFAR-10 batch: it holds more than {} records "
           "(all of CIFAR-10)", path, kMaxCifarRecordsPerFile);
    if (got < record.size())
      fail(SBP_ERROR_CORRUPT_FILE,
           "'{}' is not a CIFAR-10 batch: {} bytes is not a multiple of the 3073-byte record",
           path, uint64_t(records) * record.size() + got);
    if (record[0] > 9)
      fail(SBP_ERROR_CORRUPT_FILE, "'{}': label {} of record {} is not a CIFAR-10 class", path,
           record[0], records);
    split.labels.push_back(record[0]);
    split.pixels.insert(split.pixels.end(), record.begin() + 1, record.end());
  }
  in.close();
  if (records == 0)
    fail(SBP_ERROR_CORRUPT_FILE, "'{}' is not a CIFAR-10 batch: it is empty", path);
}

std::unique_ptr<Dataset> openCifar(const std::string &dir) {
  ImageSplit train, test;
  for (int k = 1; k <= 5; ++k) {
    std::string path = dir + "/data_batch_" + std::to_string(k) + ".bin";
    if (!isFile(path))
      fail(SBP_ERROR_NOT_FOUND, "CIFAR-10 dataset '{}' lacks data_batch_{}.bin", dir, k);
    appendCifarFile(path, train);
  }
  if (!isFile(dir + "/test_batch.bin"))
    fail(SBP_ERROR_NOT_FOUND, "CIFAR-10 dataset '{}' lacks test_batch.bin", dir);
  appendCifarFile(dir + "/test_batch.bin", test);
  return std::make_unique<Dataset>("cifar10", 3, 32, 32, std::move(train), std::move(test));
}

} // namespace

GzipReader::GzipReader(std::string path) : path_(std::move(path)) {
  file_ = gzopen(path_.c_str(), "rb");
  if (!file_)
    fail(errno == ENOENT ? SBP_ERROR_NOT_FOUND : SBP_ERROR_IO, "cannot open '{}': {}", path_,
         std::strerror(errno));
}

GzipReader::~GzipReader() {
  if (file_)
    gzclose(static_cast<gzFile>(file_));
}

void GzipReader::close() {
  int closed = gzclose(static_cast<gzFile>(file_));
  file_ = nullptr;
  if (closed != Z_OK)
    fail(SBP_ERROR_CORRUPT_FILE, "'{}' is corrupt or truncated: unexpected end of the compressed "
         "stream", path_);
}

size_t GzipReader::read(void *dst, size_t bytes) {
  auto file = static_cast<gzFile>(file_);
  size_t total = 0;
  while (total < bytes) {
    unsigned want = unsigned(std::min<size_t>(bytes - total, 1u << 30));
    int got = gzread(file, static_cast<char *>(dst) + total, want);
    if (got < 0) {
      int err = Z_OK;
      fail(SBP_ERROR_CORRUPT_FILE, "'{}' is corrupt or truncated: {}", path_, gzerror(file, &err));
    }
    if (got == 0)
      break;
    total += size_t(got);
  }
  // zlib reports a stream cut inside a gzip member as a plain end of file.
  if (total < bytes && !gzdirect(file)) {
    int err = Z_OK;
    const char *what = gzerror(file, &err);
    if (err != Z_OK && err != Z_STREAM_END)
      fail(SBP_ERROR_CORRUPT_FILE, "'{}' is corrupt or truncated: {}", path_, what);
  }
  return total;
}

std::vector<uint8_t> readMaybeGzip(const std::string &path, uint64_t max_bytes) {
  GzipReader in(path);
  std::vector<uint8_t> bytes;
  std::vector<uint8_t> chunk(1 << 20);
  while (bytes.size() < max_bytes) {
    size_t got = in.read(chunk.data(), size_t(std::min<uint64_t>(chunk.size(), max_bytes - bytes.size())));
    bytes.insert(bytes.end(), chunk.begin(), chunk.begin() + long(got));
    if (got == 0)
      break;
  }
  in.close();
  return bytes;
}

std::vector<int64_t> parseIdx(std::vector<uint8_t> bytes, int rank, const std::string &path,
                              std::vector<uint8_t> &data) {
  const uint32_t magic = 0x0800u | uint32_t(rank);
  if (bytes.size() < 4 || bigEndian32(bytes.data()) != magic)
    fail(SBP_ERROR_CORRUPT_FILE, "'{}' is not an IDX file of unsigned bytes with {} dimension{} "
         "(expected magic 0x{:08x})", path, rank, rank > 1 ? "s" : "", magic);
  size_t header = 4 + 4 * size_t(rank);
  if (bytes.size() < header)
    fail(SBP_ERROR_CORRUPT_FILE, "'{}' is truncated inside its IDX header", path);
  std::vector<int64_t> dims;
  uint64_t payload = 1;
  const uint64_t available = bytes.size() - header;
  for (int d = 0; d < rank; ++d) {
    uint64_t dim = bigEndian32(bytes.data() + 4 + 4 * d);
    dims.push_back(int64_t(dim));
    if (dim != 0 && payload > available / dim) // more than the file holds (and no overflow)
      fail(SBP_ERROR_CORRUPT_FILE, "'{}' is truncated: its IDX header promises more data than "
           "the file's {} bytes", path, available);
    payload *= dim;
  }
  if (available > payload)
    fail(SBP_ERROR_CORRUPT_FILE, "'{}' holds more than the {} bytes of data its IDX header "
         "promises", path, payload);
  if (available != payload)
    fail(SBP_ERROR_CORRUPT_FILE, "'{}' is truncated: its header promises {} bytes of data, "
         "the file holds {}", path, payload, available);
  bytes.erase(bytes.begin(), bytes.begin() + long(header));
  data = std::move(bytes);
  return dims;
}

std::unique_ptr<Dataset> Dataset::open(const std::string &directory) {
  struct stat st {};
  if (::stat(directory.c_str(), &st) != 0)
    fail(SBP_ERROR_NOT_FOUND, "dataset directory '{}' does not exist", directory);
  if (!S_ISDIR(st.st_mode))
    fail(SBP_ERROR_INVALID_ARGUMENT,
         "dataset '{}' is not a directory: give the directory that holds the dataset's files "
         "(train-images-idx3-ubyte[.gz], ... or data_batch_1.bin, ...)",
         directory);
  if (!findMaybeGzip(directory, "train-images-idx3-ubyte").empty())
    return openIdx(directory);
  if (isFile(directory + "/data_batch_1.bin"))
    return openCifar(directory);
  if (isFile(directory + "/cifar-10-batches-bin/data_batch_1.bin"))
    return openCifar(directory + "/cifar-10-batches-bin");
  fail(SBP_ERROR_NOT_FOUND,
       "no dataset in '{}': expected MNIST IDX files (train-images-idx3-ubyte[.gz], "
       "train-labels-idx1-ubyte[.gz], t10k-...) or CIFAR-10 binary batches (data_batch_1.bin ...)",
       directory);
}

Dataset::Dataset(std::string format, int32_t channels, int32_t height, int32_t width,
                 ImageSplit train, ImageSplit test)
    : format_(std::move(format)), channels_(channels), height_(height), width_(width),
      train_(std::move(train)), test_(std::move(test)) {
  if (train_.count() == 0)
    fail(SBP_ERROR_CORRUPT_FILE, "dataset has no training images");
  for (const ImageSplit *s : {&train_, &test_})
    for (int32_t label : s->labels)
      num_classes_ = std::max(num_classes_, label + 1);
  computeStatistics();
}

// Exact per-channel mean and standard deviation from byte histograms.
void Dataset::computeStatistics() {
  const int64_t plane = int64_t(height_) * width_;
  lut_.resize(size_t(channels_));
  for (int32_t c = 0; c < channels_; ++c) {
    std::array<int64_t, 256> histogram{};
    for (int64_t i = 0; i < train_.count(); ++i) {
      const uint8_t *p = train_.pixels.data() + (i * channels_ + c) * plane;
      for (int64_t k = 0; k < plane; ++k)
        ++histogram[p[k]];
    }
    double n = 0, sum = 0, sum_sq = 0;
    for (int v = 0; v < 256; ++v) {
      double x = v / 255.0;
      n += double(histogram[size_t(v)]);
      sum += x * double(histogram[size_t(v)]);
      sum_sq += x * x * double(histogram[size_t(v)]);
    }
    double mean = sum / n;
    double sd = std::sqrt(std::max(sum_sq / n - mean * mean, 0.0));
    if (sd < 1e-6)
      sd = 1.0; // a constant channel: centring alone
    mean_[size_t(c)] = float(mean);
    std_[size_t(c)] = float(sd);
    for (int v = 0; v < 256; ++v)
      lut_[size_t(c)][size_t(v)] = float((v / 255.0 - mean) / sd);
  }
}

const ImageSplit &Dataset::split(sbp_split which) const {
  return which == SBP_SPLIT_TEST ? test_ : train_;
}

int64_t Dataset::numTrainBatches(sbp_split which, int64_t batch) const {
  return batch > 0 ? split(which).count() / batch : 0;
}

int64_t Dataset::numEvalBatches(sbp_split which, int64_t batch) const {
  return batch > 0 ? (split(which).count() + batch - 1) / batch : 0;
}

void Dataset::copyImage(sbp_split which, int64_t image, float *dst) const {
  const int64_t plane = int64_t(height_) * width_;
  const uint8_t *src = split(which).pixels.data() + image * imageSize();
  for (int32_t c = 0; c < channels_; ++c) {
    const auto &lut = lut_[size_t(c)];
    for (int64_t k = 0; k < plane; ++k)
      dst[c * plane + k] = lut[src[c * plane + k]];
  }
}

const std::vector<int64_t> &Dataset::permutation(sbp_split which, uint64_t seed, int64_t epoch) {
  if (shuffle_.split == which && shuffle_.seed == seed && shuffle_.epoch == epoch)
    return shuffle_.order;
  const int64_t n = split(which).count();
  std::vector<int64_t> &order = shuffle_.order;
  order.resize(size_t(n));
  std::iota(order.begin(), order.end(), 0);
  PhiloxStream rng(seed, Purpose::Shuffle, uint64_t(epoch), uint32_t(which));
  for (int64_t k = n - 1; k > 0; --k)
    std::swap(order[size_t(k)], order[rng.below(uint32_t(k + 1))]);
  shuffle_.split = which;
  shuffle_.seed = seed;
  shuffle_.epoch = epoch;
  return order;
}

void Dataset::trainBatch(sbp_split which, int64_t batch, uint64_t seed, int64_t epoch,
                         int64_t index, float *images, int32_t *labels) {
  if (batch <= 0 || index < 0 || index >= numTrainBatches(which, batch) || epoch < 0)
    fail(SBP_ERROR_INVALID_ARGUMENT,
         "training batch {} of size {} (epoch {}) does not exist: the split has {} full batches",
         index, batch, epoch, numTrainBatches(which, batch));
  const std::vector<int64_t> &order = permutation(which, seed, epoch);
  for (int64_t b = 0; b < batch; ++b) {
    int64_t image = order[size_t(index * batch + b)];
    copyImage(which, image, images + b * imageSize());
    labels[b] = split(which).labels[size_t(image)];
  }
}

int64_t Dataset::evalBatch(sbp_split which, int64_t batch, int64_t index, float *images,
                           int32_t *labels) const {
  const int64_t count = split(which).count();
  if (batch <= 0 || index < 0 || index >= numEvalBatches(which, batch))
    fail(SBP_ERROR_INVALID_ARGUMENT, "evaluation batch {} of size {} does not exist: the split has {}",
         index, batch, numEvalBatches(which, batch));
  const int64_t first = index * batch;
  const int64_t valid = std::min(batch, count - first);
  for (int64_t b = 0; b < batch; ++b) {
    int64_t image = first + std::min(b, valid - 1); // padding repeats the last image
    copyImage(which, image, images + b * imageSize());
    labels[b] = split(which).labels[size_t(image)];
  }
  return valid;
}

} // namespace sbp::rt
