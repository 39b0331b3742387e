//===- DatasetFuzzer.cpp - the runtime's IDX and CIFAR-10 readers ---------===//
//
// One input stands for a dataset directory: its parts (split at
// kSplitMarker) become the files the reader looks for, gzipped where they
// start like gzip. SBP_FUZZ_CIFAR selects the format at compile time (two
// targets, so each corpus stays in one format). An opened dataset then gives
// a training and an evaluation batch, as sbp-train would ask.
//
//===----------------------------------------------------------------------===//
#include "Dataset.h"
#include "Error.h"
#include "FuzzSupport.h"

#include <algorithm>
#include <string>
#include <vector>

using namespace sbp;

#ifdef SBP_FUZZ_CIFAR
static const char *const kFiles[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                     "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};
#else
static const char *const kFiles[] = {"train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                     "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"};
#endif

/// A batch of each split, as a trainer's first step and evaluation read them.
static void readBatches(rt::Dataset &dataset) {
  int64_t batch = std::min<int64_t>(4, dataset.split(SBP_SPLIT_TRAIN).count());
  std::vector<float> images(static_cast<size_t>(batch * dataset.imageSize()));
  std::vector<int32_t> labels(static_cast<size_t>(batch));
  if (dataset.numTrainBatches(SBP_SPLIT_TRAIN, batch) > 0)
    dataset.trainBatch(SBP_SPLIT_TRAIN, batch, 1, 0, 0, images.data(), labels.data());
  if (dataset.numEvalBatches(SBP_SPLIT_TEST, batch) > 0)
    dataset.evalBatch(SBP_SPLIT_TEST, batch, 0, images.data(), labels.data());
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz::clearScratchDir();
  std::vector<std::string_view> parts = fuzz::splitInput(data, size);
  for (size_t i = 0; i < std::size(kFiles) && i < parts.size(); ++i)
    fuzz::writeScratchFile(std::string(kFiles[i]) + (fuzz::looksGzipped(parts[i]) ? ".gz" : ""), parts[i]);
  try {
    auto dataset = rt::Dataset::open(fuzz::scratchDir());
    readBatches(*dataset);
  } catch (const rt::Error &) {
  }
  return 0;
}
