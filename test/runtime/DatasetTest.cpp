// DatasetTest.cpp - the IDX and CIFAR-10 readers on small files the tests
// write (format checks), and on the real Fashion-MNIST when it is installed.
#include "Dataset.h"
#include "Error.h"
#include "TestFiles.h"

#include <gtest/gtest.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <numeric>
#include <set>
#include <sys/stat.h>

using namespace sbp::rt;
using sbp::test::TempDir;
using sbp::test::writeFile;

namespace {

std::string bigEndian(uint32_t v) {
  return {char(v >> 24), char((v >> 16) & 0xFF), char((v >> 8) & 0xFF), char(v & 0xFF)};
}

std::string idx(const std::vector<uint32_t> &dims, const std::vector<uint8_t> &data) {
  std::string bytes = bigEndian(0x0800u | uint32_t(dims.size()));
  for (uint32_t d : dims)
    bytes += bigEndian(d);
  return bytes + std::string(data.begin(), data.end());
}

void writeGzip(const std::string &path, const std::string &bytes) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(gzwrite(f, bytes.data(), unsigned(bytes.size())), int(bytes.size()));
  gzclose(f);
}

// n images of h x w whose pixel k of image i is (i * 7 + k * 3) % 256.
std::vector<uint8_t> pixels(int n, int h, int w) {
  std::vector<uint8_t> p(size_t(n * h * w));
  for (int i = 0; i < n; ++i)
    for (int k = 0; k < h * w; ++k)
      p[size_t(i * h * w + k)] = uint8_t((i * 7 + k * 3) % 256);
  return p;
}

// A tiny IDX dataset: 10 training images (plain files), 3 test images (gzip).
void writeTinyIdx(const TempDir &dir) {
  writeFile(dir.file("train-images-idx3-ubyte"), idx({10, 2, 3}, pixels(10, 2, 3)));
  writeFile(dir.file("train-labels-idx1-ubyte"), idx({10}, {0, 1, 2, 3, 4, 0, 1, 2, 3, 4}));
  writeGzip(dir.file("t10k-images-idx3-ubyte.gz"), idx({3, 2, 3}, pixels(3, 2, 3)));
  writeGzip(dir.file("t10k-labels-idx1-ubyte.gz"), idx({3}, {4, 3, 2}));
}

std::pair<sbp_status, std::string> openStatus(const std::string &dir) {
  try {
    Dataset::open(dir);
    return {SBP_OK, ""};
  } catch (const Error &e) {
    return {e.status(), e.what()};
  }
}

void expectOpenFails(const std::string &dir, sbp_status status, const std::string &needle) {
  auto [got, message] = openStatus(dir);
  EXPECT_EQ(got, status) << message;
  EXPECT_NE(message.find(needle), std::string::npos) << message;
}

} // namespace

TEST(Dataset, ReadsPlainAndGzipIdx) {
  TempDir dir;
  writeTinyIdx(dir);
  auto ds = Dataset::open(dir.path());
  EXPECT_EQ(ds->format(), "idx");
  EXPECT_EQ(ds->channels(), 1);
  EXPECT_EQ(ds->height(), 2);
  EXPECT_EQ(ds->width(), 3);
  EXPECT_EQ(ds->numClasses(), 5);
  EXPECT_EQ(ds->split(SBP_SPLIT_TRAIN).count(), 10);
  EXPECT_EQ(ds->split(SBP_SPLIT_TEST).count(), 3);
  EXPECT_EQ(ds->split(SBP_SPLIT_TEST).labels, (std::vector<int32_t>{4, 3, 2}));
}

TEST(Dataset, StandardisesWithTheTrainingStatistics) {
  TempDir dir;
  writeTinyIdx(dir);
  auto ds = Dataset::open(dir.path());
  std::vector<uint8_t> train = pixels(10, 2, 3);
  double mean = 0, sq = 0;
  for (uint8_t p : train) {
    mean += p / 255.0;
    sq += (p / 255.0) * (p / 255.0);
  }
  mean /= double(train.size());
  double sd = std::sqrt(sq / double(train.size()) - mean * mean);
  EXPECT_NEAR(ds->mean(0), mean, 1e-6);
  EXPECT_NEAR(ds->stddev(0), sd, 1e-6);
  // Test images use the training statistics.
  std::vector<float> images(2 * 6);
  std::vector<int32_t> labels(2);
  EXPECT_EQ(ds->evalBatch(SBP_SPLIT_TEST, 2, 0, images.data(), labels.data()), 2);
  std::vector<uint8_t> test = pixels(3, 2, 3);
  for (int k = 0; k < 12; ++k)
    EXPECT_NEAR(images[size_t(k)], (test[size_t(k)] / 255.0 - mean) / sd, 1e-5);
}

TEST(Dataset, EvalBatchesPadTheLastBatchWithItsLastImage) {
  TempDir dir;
  writeTinyIdx(dir);
  auto ds = Dataset::open(dir.path());
  EXPECT_EQ(ds->numEvalBatches(SBP_SPLIT_TRAIN, 4), 3);
  std::vector<float> images(4 * 6);
  std::vector<int32_t> labels(4);
  EXPECT_EQ(ds->evalBatch(SBP_SPLIT_TRAIN, 4, 2, images.data(), labels.data()), 2);
  EXPECT_EQ(labels, (std::vector<int32_t>{3, 4, 4, 4}));
  for (int k = 0; k < 6; ++k) {
    EXPECT_EQ(images[size_t(12 + k)], images[size_t(6 + k)]);
    EXPECT_EQ(images[size_t(18 + k)], images[size_t(6 + k)]);
  }
  EXPECT_THROW(ds->evalBatch(SBP_SPLIT_TRAIN, 4, 3, images.data(), labels.data()), Error);
}

TEST(Dataset, TrainBatchesAreAShuffleThatDropsThePartialBatch) {
  TempDir dir;
  writeTinyIdx(dir);
  auto ds = Dataset::open(dir.path());
  EXPECT_EQ(ds->numTrainBatches(SBP_SPLIT_TRAIN, 4), 2);
  EXPECT_EQ(ds->numTrainBatches(SBP_SPLIT_TRAIN, 5), 2);
  // With batch 5 an epoch visits every image once: identify images by pixel 0.
  auto epochOrder = [&](uint64_t seed, int64_t epoch) {
    std::vector<float> images(5 * 6);
    std::vector<int32_t> labels(5);
    std::vector<float> firsts;
    for (int64_t b = 0; b < 2; ++b) {
      ds->trainBatch(SBP_SPLIT_TRAIN, 5, seed, epoch, b, images.data(), labels.data());
      for (int i = 0; i < 5; ++i)
        firsts.push_back(images[size_t(i * 6)]);
    }
    return firsts;
  };
  std::vector<float> e0 = epochOrder(1, 0);
  EXPECT_EQ(std::set<float>(e0.begin(), e0.end()).size(), 10u);
  EXPECT_EQ(epochOrder(1, 0), e0);
  EXPECT_NE(epochOrder(1, 1), e0);
  EXPECT_NE(epochOrder(2, 0), e0);
  std::vector<float> images(5 * 6);
  std::vector<int32_t> labels(5);
  EXPECT_THROW(ds->trainBatch(SBP_SPLIT_TRAIN, 5, 1, 0, 2, images.data(), labels.data()), Error);
}

TEST(Dataset, MissingDirectoryOrFilesAreNotFound) {
  TempDir dir;
  expectOpenFails(dir.file("absent"), SBP_ERROR_NOT_FOUND, "does not exist");
  expectOpenFails(dir.path(), SBP_ERROR_NOT_FOUND, "no dataset in");
  writeTinyIdx(dir);
  std::remove(dir.file("t10k-labels-idx1-ubyte.gz").c_str());
  expectOpenFails(dir.path(), SBP_ERROR_NOT_FOUND, "t10k-labels-idx1-ubyte");
}

// A file where the directory belongs said "does not exist"; a FIFO among the
// dataset's files blocked the read forever.
TEST(Dataset, AFileForTheDirectoryOrAFifoForAFileIsRefused) {
  TempDir dir;
  writeTinyIdx(dir);
  expectOpenFails(dir.file("train-images-idx3-ubyte"), SBP_ERROR_INVALID_ARGUMENT,
                  "is not a directory: give the directory that holds the dataset's files");
  std::remove(dir.file("t10k-images-idx3-ubyte.gz").c_str());
  ASSERT_EQ(::mkfifo(dir.file("t10k-images-idx3-ubyte").c_str(), 0600), 0);
  expectOpenFails(dir.path(), SBP_ERROR_INVALID_ARGUMENT,
                  "t10k-images-idx3-ubyte' is not a regular file");
}

TEST(Dataset, BadMagicIsCorrupt) {
  TempDir dir;
  writeTinyIdx(dir);
  std::string bytes = idx({10}, std::vector<uint8_t>(10, 1));
  writeFile(dir.file("train-images-idx3-ubyte"), bytes); // a labels file where images belong
  expectOpenFails(dir.path(), SBP_ERROR_CORRUPT_FILE, "magic");
}

TEST(Dataset, TruncatedIdxIsCorrupt) {
  TempDir dir;
  writeTinyIdx(dir);
  std::string bytes = idx({10, 2, 3}, pixels(10, 2, 3));
  writeFile(dir.file("train-images-idx3-ubyte"), bytes.substr(0, bytes.size() - 7));
  expectOpenFails(dir.path(), SBP_ERROR_CORRUPT_FILE, "truncated");
  writeFile(dir.file("train-images-idx3-ubyte"), bytes.substr(0, 9));
  expectOpenFails(dir.path(), SBP_ERROR_CORRUPT_FILE, "truncated");
  // A product of dimensions past 2^64: over the size cap before it is read, and
  // parsed without overflow.
  writeFile(dir.file("train-images-idx3-ubyte"), idx({0xFFFFFFFFu, 0xFFFFFFFFu, 3}, {}));
  expectOpenFails(dir.path(), SBP_ERROR_CORRUPT_FILE, "promises more than the 4294967296 bytes");
  std::string header = idx({0xFFFFFFFFu, 0xFFFFFFFFu, 3}, {1, 2, 3});
  std::vector<uint8_t> data;
  try {
    parseIdx({header.begin(), header.end()}, 3, "x", data);
    ADD_FAILURE() << "parsed";
  } catch (const Error &e) {
    EXPECT_NE(std::string(e.what()).find("'x' is truncated"), std::string::npos) << e.what();
  }
}

// An IDX file is read only as far as its header says (and one byte more): a
// small .gz that inflates to gigabytes filled the memory before any check.
TEST(Dataset, IdxFilesAreReadNoFurtherThanTheirHeaderSays) {
  TempDir dir;
  writeTinyIdx(dir);
  const std::string images = idx({3, 2, 3}, pixels(3, 2, 3));
  writeGzip(dir.file("t10k-images-idx3-ubyte.gz"), images + std::string(8 << 20, '\0'));
  EXPECT_EQ(readMaybeGzip(dir.file("t10k-images-idx3-ubyte.gz"), images.size() + 1).size(),
            images.size() + 1);
  expectOpenFails(dir.path(), SBP_ERROR_CORRUPT_FILE,
                  "holds more than the 18 bytes of data its IDX header promises");
  // A bad magic: the 16 bytes of a header are read, not the 8 MiB after them.
  writeGzip(dir.file("t10k-images-idx3-ubyte.gz"), "\x00\x00\x08\x01" + std::string(8 << 20, 'x'));
  expectOpenFails(dir.path(), SBP_ERROR_CORRUPT_FILE, "is not an IDX file");
  EXPECT_EQ(idxFileBytes(dir.file("t10k-images-idx3-ubyte.gz"), 3), 16u);
  EXPECT_EQ(idxFileBytes(dir.file("train-images-idx3-ubyte"), 3), 16u + 10 * 2 * 3);
}

// A CIFAR file is checked record by record as it is read: garbage fails at
// its first bad label, not after the whole file is in memory.
TEST(Dataset, CifarRecordsAreCheckedAsTheyAreRead) {
  TempDir dir;
  const std::string record(3073, '\x01');
  for (int k = 1; k <= 5; ++k)
    writeFile(dir.file("data_batch_" + std::to_string(k) + ".bin"), record + record);
  writeFile(dir.file("test_batch.bin"), record);
  EXPECT_EQ(openStatus(dir.path()).first, SBP_OK) << openStatus(dir.path()).second;
  writeGzip(dir.file("data_batch_3.bin"), record + "\x0c" + std::string(8 << 20, '\x0c'));
  expectOpenFails(dir.path(), SBP_ERROR_CORRUPT_FILE,
                  "data_batch_3.bin': label 12 of record 1 is not a CIFAR-10 class");
  writeFile(dir.file("data_batch_3.bin"), record + record.substr(0, 100));
  expectOpenFails(dir.path(), SBP_ERROR_CORRUPT_FILE,
                  "3173 bytes is not a multiple of the 3073-byte record");
  writeFile(dir.file("data_batch_3.bin"), "");
  expectOpenFails(dir.path(), SBP_ERROR_CORRUPT_FILE, "data_batch_3.bin' is not a CIFAR-10 batch: it is empty");
  writeFile(dir.file("data_batch_3.bin"), record);
  std::string gz;
  writeGzip(dir.file("test_batch.bin"), record + record);
  gz = sbp::test::readFile(dir.file("test_batch.bin"));
  writeFile(dir.file("test_batch.bin"), gz.substr(0, gz.size() - 10));
  expectOpenFails(dir.path(), SBP_ERROR_CORRUPT_FILE, "test_batch.bin' is corrupt or truncated");
}

// A small .gz inflates ~1000x: what a dataset file may hold once inflated is
// bounded by its header (IDX) and by an absolute cap, so a hostile file fails
// with a message naming it instead of filling the memory.
TEST(Dataset, InflatedSizeIsCappedByTheHeaderAndAnAbsoluteLimit) {
  TempDir dir;
  writeTinyIdx(dir);
  // 65535 x 65536 x 65536 images: 2^48 bytes promised, refused before reading.
  writeGzip(dir.file("t10k-images-idx3-ubyte.gz"),
            idx({65535, 65536, 65536}, {}) + std::string(1 << 20, '\0'));
  expectOpenFails(dir.path(), SBP_ERROR_CORRUPT_FILE,
                  "t10k-images-idx3-ubyte.gz': its IDX header promises more than the "
                  "4294967296 bytes (4 GiB) a dataset file may hold");
  // 4 GiB of pixels and the 16-byte header: just over the cap, refused too.
  writeGzip(dir.file("t10k-images-idx3-ubyte.gz"), idx({65536, 256, 256}, {}));
  expectOpenFails(dir.path(), SBP_ERROR_CORRUPT_FILE, "promises more than the 4294967296 bytes");
  // Just under 4 GiB is allowed: this header is read on, and the file is short.
  writeGzip(dir.file("t10k-images-idx3-ubyte.gz"), idx({65536, 256, 256 - 1}, {}) + "\x01");
  expectOpenFails(dir.path(), SBP_ERROR_CORRUPT_FILE, "is truncated");

  // CIFAR has no header: a batch stops at kMaxCifarRecordsPerFile records. A
  // 180 KB .gz of zero records (label 0, black images) inflating to 184 MB.
  TempDir cifar;
  const std::string record(3073, '\0');
  for (int k = 1; k <= 5; ++k)
    writeFile(cifar.file("data_batch_" + std::to_string(k) + ".bin"), record);
  writeFile(cifar.file("test_batch.bin"), record);
  gzFile f = gzopen(cifar.file("data_batch_2.bin").c_str(), "wb");
  ASSERT_NE(f, nullptr);
  for (int64_t r = 0; r <= kMaxCifarRecordsPerFile; ++r)
    ASSERT_EQ(gzwrite(f, record.data(), unsigned(record.size())), int(record.size()));
  gzclose(f);
  EXPECT_LT(sbp::test::readFile(cifar.file("data_batch_2.bin")).size(), 1u << 20);
  expectOpenFails(cifar.path(), SBP_ERROR_CORRUPT_FILE,
                  "data_batch_2.bin' is not a CIFAR-10 batch: it holds more than 60000 records");
}

TEST(Dataset, TruncatedGzipIsCorrupt) {
  TempDir dir;
  writeTinyIdx(dir);
  std::string gz = sbp::test::readFile(dir.file("t10k-images-idx3-ubyte.gz"));
  writeFile(dir.file("t10k-images-idx3-ubyte.gz"), gz.substr(0, gz.size() / 2));
  expectOpenFails(dir.path(), SBP_ERROR_CORRUPT_FILE, "t10k-images-idx3-ubyte.gz");
}

TEST(Dataset, LabelCountMustMatchImageCount) {
  TempDir dir;
  writeTinyIdx(dir);
  writeFile(dir.file("train-labels-idx1-ubyte"), idx({9}, std::vector<uint8_t>(9, 0)));
  expectOpenFails(dir.path(), SBP_ERROR_CORRUPT_FILE, "9 labels");
}

TEST(Dataset, ReadsCifar10Binary) {
  TempDir dir;
  const int record = 1 + 3 * 32 * 32;
  for (int b = 1; b <= 6; ++b) {
    std::string bytes;
    for (int r = 0; r < 2; ++r) {
      bytes += char((b + r) % 10);
      for (int c = 0; c < 3; ++c)
        bytes += std::string(32 * 32, char(c * 100 + r)); // channel c is constant-ish
    }
    ASSERT_EQ(int(bytes.size()), 2 * record);
    writeFile(dir.file(b <= 5 ? "data_batch_" + std::to_string(b) + ".bin" : "test_batch.bin"),
              bytes);
  }
  auto ds = Dataset::open(dir.path());
  EXPECT_EQ(ds->format(), "cifar10");
  EXPECT_EQ(ds->channels(), 3);
  EXPECT_EQ(ds->split(SBP_SPLIT_TRAIN).count(), 10);
  EXPECT_EQ(ds->split(SBP_SPLIT_TEST).count(), 2);
  EXPECT_NEAR(ds->mean(1), 100.5 / 255.0, 1e-6);
  EXPECT_NEAR(ds->stddev(2), 0.5 / 255.0, 1e-6);
  writeFile(dir.file("test_batch.bin"), std::string(record + 1, '\0'));
  expectOpenFails(dir.path(), SBP_ERROR_CORRUPT_FILE, "3073-byte record");
}

TEST(Dataset, FashionMnist) {
  std::string dir = sbp::test::fashionMnistDir();
  if (dir.empty())
    GTEST_SKIP() << "Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)";
  auto ds = Dataset::open(dir);
  EXPECT_EQ(ds->format(), "idx");
  EXPECT_EQ(ds->split(SBP_SPLIT_TRAIN).count(), 60000);
  EXPECT_EQ(ds->split(SBP_SPLIT_TEST).count(), 10000);
  EXPECT_EQ(ds->height(), 28);
  EXPECT_EQ(ds->width(), 28);
  EXPECT_EQ(ds->numClasses(), 10);
  // The published statistics of Fashion-MNIST's training images.
  EXPECT_NEAR(ds->mean(0), 0.2860, 5e-4);
  EXPECT_NEAR(ds->stddev(0), 0.3530, 5e-4);
  // Balanced: 6000 training and 1000 test images per class.
  for (sbp_split split : {SBP_SPLIT_TRAIN, SBP_SPLIT_TEST}) {
    std::vector<int64_t> counts(10, 0);
    for (int32_t label : ds->split(split).labels)
      ++counts[size_t(label)];
    for (int64_t c : counts)
      EXPECT_EQ(c, split == SBP_SPLIT_TRAIN ? 6000 : 1000);
  }
  EXPECT_EQ(ds->split(SBP_SPLIT_TRAIN).labels[0], 9); // the first image is an ankle boot
  // A standardised training batch has mean ~0 and standard deviation ~1.
  std::vector<float> images(256 * 784);
  std::vector<int32_t> labels(256);
  ds->trainBatch(SBP_SPLIT_TRAIN, 256, 0, 0, 0, images.data(), labels.data());
  double mean = std::accumulate(images.begin(), images.end(), 0.0) / double(images.size());
  EXPECT_NEAR(mean, 0.0, 0.1);
}
