// embed_train.cpp - train a model compiled by sbpc from your own program.
//
//   sbp-embed-example TRAINER.so DATA_DIR [STEPS]
//
// Loads the trainer library, trains STEPS (default 30) steps on the dataset's
// training split and exits 0 only if the mean loss of the last 5 steps is
// clearly (at least 5%) below that of the first 5; a batch-to-batch wobble of
// the loss is far smaller than that. Only sbp/trainer.hpp is needed.
#include <sbp/trainer.hpp>

#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <vector>

namespace {

double mean(std::vector<float>::const_iterator first, std::vector<float>::const_iterator last) {
  return std::accumulate(first, last, 0.0) / double(last - first);
}

int train(const char *trainer_path, const char *data_dir, int steps) {
  sbp::Trainer trainer(trainer_path, sbp::TrainerOptions().withSeed(1));
  sbp::Dataset data(data_dir);
  const sbp_trainer_info model = trainer.info();
  const sbp_dataset_info images = data.info();
  if (images.channels != model.in_channels || images.height != model.in_height ||
      images.width != model.in_width) {
    std::fprintf(stderr, "the dataset's %dx%dx%d images do not fit the model's %dx%dx%d input\n",
                 images.channels, images.height, images.width, model.in_channels,
                 model.in_height, model.in_width);
    return 1;
  }
  std::printf("model %s (%lld parameters), batch %lld, %s dataset of %lld images\n",
              model.model_name, static_cast<long long>(model.param_elements),
              static_cast<long long>(model.batch), images.format,
              static_cast<long long>(images.train_count));

  // The runtime fills host buffers of the trainer's static batch shape.
  std::vector<float> batch_images(size_t(model.batch) * size_t(model.in_channels) *
                                  size_t(model.in_height) * size_t(model.in_width));
  std::vector<int32_t> batch_labels(size_t(model.batch));
  const int64_t per_epoch = data.numTrainBatches(model.batch);
  std::vector<float> losses;
  for (int step = 0; step < steps; ++step) {
    data.trainBatch(model.batch, /*seed=*/1, step / per_epoch, step % per_epoch,
                    batch_images.data(), batch_labels.data());
    losses.push_back(trainer.step(batch_images.data(), batch_labels.data()));
    std::printf("step %3d  loss %.4f\n", step + 1, double(losses.back()));
  }
  const double first = mean(losses.begin(), losses.begin() + 5);
  const double last = mean(losses.end() - 5, losses.end());
  std::printf("mean loss: first 5 steps %.4f, last 5 steps %.4f\n", first, last);
  if (!(last < 0.95 * first)) {
    std::fprintf(stderr, "the loss did not fall\n");
    return 1;
  }
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  if (argc < 3 || argc > 4) {
    std::fprintf(stderr, "usage: %s TRAINER.so DATA_DIR [STEPS]\n", argv[0]);
    return 2;
  }
  const int steps = argc == 4 ? std::atoi(argv[3]) : 30;
  if (steps < 10) {
    std::fprintf(stderr, "STEPS must be at least 10\n");
    return 2;
  }
  try {
    return train(argv[1], argv[2], steps);
  } catch (const sbp::Error &e) {
    std::fprintf(stderr, "error (%s): %s\n", sbp_status_string(e.status()), e.what());
    return 1;
  }
}
