// DatasetApi.cpp - the C API over sbp::rt::Dataset.
#include "Dataset.h"
#include "Error.h"

#include <algorithm>

struct sbp_dataset {
  std::unique_ptr<sbp::rt::Dataset> impl;
};

namespace {

using sbp::rt::fail;

const sbp::rt::Dataset &checked(const sbp_dataset *dataset, sbp_split split) {
  if (!dataset)
    fail(SBP_ERROR_INVALID_ARGUMENT, "dataset is NULL");
  if (split != SBP_SPLIT_TRAIN && split != SBP_SPLIT_TEST)
    fail(SBP_ERROR_INVALID_ARGUMENT, "unknown split {}", int(split));
  return *dataset->impl;
}

} // namespace

extern "C" {

SBP_API sbp_status sbp_dataset_open(const char *directory, sbp_dataset **out) {
  if (out)
    *out = nullptr;
  return sbp::rt::guard(nullptr, [&] {
    if (!directory || !out)
      fail(SBP_ERROR_INVALID_ARGUMENT, "directory and out must not be NULL");
    auto dataset = std::make_unique<sbp_dataset>();
    dataset->impl = sbp::rt::Dataset::open(directory);
    *out = dataset.release();
  });
}

SBP_API void sbp_dataset_release(sbp_dataset *dataset) { delete dataset; }

SBP_API sbp_status sbp_dataset_get_info(const sbp_dataset *dataset, sbp_dataset_info *info) {
  return sbp::rt::guard(nullptr, [&] {
    const sbp::rt::Dataset &d = checked(dataset, SBP_SPLIT_TRAIN);
    sbp_dataset_info full{};
    full.format = d.format().c_str();
    full.channels = d.channels();
    full.height = d.height();
    full.width = d.width();
    full.num_classes = d.numClasses();
    full.train_count = d.split(SBP_SPLIT_TRAIN).count();
    full.test_count = d.split(SBP_SPLIT_TEST).count();
    for (int32_t c = 0; c < std::min(d.channels(), 4); ++c) {
      full.mean[c] = d.mean(c);
      full.std[c] = d.stddev(c);
    }
    sbp::rt::fillSized(info, full, "info");
  });
}

SBP_API int64_t sbp_dataset_num_train_batches(const sbp_dataset *dataset, sbp_split split,
                                              int64_t batch_size) {
  if (!dataset || (split != SBP_SPLIT_TRAIN && split != SBP_SPLIT_TEST))
    return 0;
  return dataset->impl->numTrainBatches(split, batch_size);
}

SBP_API int64_t sbp_dataset_num_eval_batches(const sbp_dataset *dataset, sbp_split split,
                                             int64_t batch_size) {
  if (!dataset || (split != SBP_SPLIT_TRAIN && split != SBP_SPLIT_TEST))
    return 0;
  return dataset->impl->numEvalBatches(split, batch_size);
}

SBP_API sbp_status sbp_dataset_get_train_batch(sbp_dataset *dataset, sbp_split split,
                                               int64_t batch_size, uint64_t seed, int64_t epoch,
                                               int64_t index, float *images, int32_t *labels) {
  return sbp::rt::guard(nullptr, [&] {
    checked(dataset, split);
    if (!images || !labels)
      fail(SBP_ERROR_INVALID_ARGUMENT, "images and labels must not be NULL");
    dataset->impl->trainBatch(split, batch_size, seed, epoch, index, images, labels);
  });
}

SBP_API sbp_status sbp_dataset_get_eval_batch(const sbp_dataset *dataset, sbp_split split,
                                              int64_t batch_size, int64_t index, float *images,
                                              int32_t *labels, int64_t *valid) {
  return sbp::rt::guard(nullptr, [&] {
    const sbp::rt::Dataset &d = checked(dataset, split);
    if (!images || !labels)
      fail(SBP_ERROR_INVALID_ARGUMENT, "images and labels must not be NULL");
    int64_t real = d.evalBatch(split, batch_size, index, images, labels);
    if (valid)
      *valid = real;
  });
}

} // extern "C"
