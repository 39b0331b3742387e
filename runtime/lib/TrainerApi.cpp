// TrainerApi.cpp - the C API over sbp::rt::Trainer: argument checks, struct
// versioning and the exception-to-status boundary.
#include "Checkpoint.h"
#include "Error.h"
#include "Masks.h"
#include "Trainer.h"

#include <algorithm>
#include <cstring>

struct sbp_trainer {
  std::unique_ptr<sbp::rt::Trainer> impl;
  mutable std::string last_error;
};

namespace {

using sbp::rt::fail;

template <typename Body> sbp_status onTrainer(const sbp_trainer *t, Body &&body) {
  if (!t)
    return sbp::rt::guard(nullptr, [] { fail(SBP_ERROR_INVALID_ARGUMENT, "trainer is NULL"); });
  return sbp::rt::guard(&t->last_error, [&] { body(*t->impl); });
}

const char *requirePath(const char *path) {
  if (!path || !*path)
    fail(SBP_ERROR_INVALID_ARGUMENT, "path is NULL or empty");
  return path;
}

void checkCount(int64_t count, int64_t numel, const char *name) {
  if (count != numel)
    fail(SBP_ERROR_INVALID_ARGUMENT, "parameter '{}' has {} elements, {} given", name, numel,
         count);
}

} // namespace

extern "C" {

SBP_API void sbp_trainer_options_init(sbp_trainer_options *options) {
  if (!options)
    return;
  std::memset(options, 0, sizeof(*options));
  options->struct_size = sizeof(*options);
  options->lr = options->weight_decay = options->momentum = -1.0f;
  options->beta1 = options->beta2 = options->eps = -1.0f;
  options->nesterov = -1;
}

SBP_API sbp_status sbp_trainer_create(const char *trainer_library_path,
                                      const sbp_trainer_options *options, sbp_trainer **out) {
  if (out)
    *out = nullptr;
  return sbp::rt::guard(nullptr, [&] {
    if (!out)
      fail(SBP_ERROR_INVALID_ARGUMENT, "out is NULL");
    sbp_trainer_options effective;
    sbp_trainer_options_init(&effective);
    if (options) {
      if (options->struct_size < sizeof(uint32_t))
        fail(SBP_ERROR_INVALID_ARGUMENT,
             "options.struct_size is not set: call sbp_trainer_options_init first");
      std::memcpy(&effective, options, std::min<size_t>(options->struct_size, sizeof(effective)));
    }
    auto trainer = std::make_unique<sbp_trainer>();
    trainer->impl = std::make_unique<sbp::rt::Trainer>(requirePath(trainer_library_path), effective);
    *out = trainer.release();
  });
}

SBP_API void sbp_trainer_release(sbp_trainer *trainer) { delete trainer; }

SBP_API const char *sbp_trainer_last_error(const sbp_trainer *trainer) {
  return trainer ? trainer->last_error.c_str() : "trainer is NULL";
}

SBP_API sbp_status sbp_trainer_step(sbp_trainer *trainer, const float *images,
                                    const int32_t *labels, float *loss_out) {
  return onTrainer(trainer, [&](sbp::rt::Trainer &t) { t.step(images, labels, loss_out); });
}

SBP_API sbp_status sbp_trainer_compute_gradients(sbp_trainer *trainer, const float *images,
                                                 const int32_t *labels, float *loss_out) {
  return onTrainer(trainer,
                   [&](sbp::rt::Trainer &t) { t.computeGradients(images, labels, loss_out); });
}

SBP_API sbp_status sbp_trainer_compute_exact_gradients(sbp_trainer *trainer, const float *images,
                                                       const int32_t *labels, float *loss_out) {
  return onTrainer(trainer, [&](sbp::rt::Trainer &t) {
    t.computeExactGradients(images, labels, loss_out);
  });
}

SBP_API sbp_status sbp_trainer_eval(sbp_trainer *trainer, const float *images,
                                    const int32_t *labels, float *loss_out, float *logits_out) {
  return onTrainer(trainer,
                   [&](sbp::rt::Trainer &t) { t.eval(images, labels, loss_out, logits_out); });
}

SBP_API sbp_status sbp_trainer_set_keep_indices(sbp_trainer *trainer, int32_t group,
                                                const int32_t *idx, int32_t count) {
  return onTrainer(trainer, [&](sbp::rt::Trainer &t) { t.setKeepIndices(group, idx, count); });
}

SBP_API sbp_status sbp_trainer_get_keep_indices(const sbp_trainer *trainer, int32_t group,
                                                int64_t step, int32_t *out, int32_t out_len,
                                                int32_t *kept) {
  return onTrainer(trainer, [&](const sbp::rt::Trainer &t) {
    std::vector<int32_t> idx = t.keepIndices(group, step);
    if (!out || out_len < int32_t(idx.size()))
      fail(SBP_ERROR_INVALID_ARGUMENT, "out holds {} entries, mask group {} needs {}",
           out ? out_len : 0, group, idx.size());
    std::copy(idx.begin(), idx.end(), out);
    if (kept)
      *kept = int32_t(std::count_if(idx.begin(), idx.end(), [](int32_t i) { return i >= 0; }));
  });
}

SBP_API sbp_status sbp_trainer_set_learning_rate(sbp_trainer *trainer, float lr) {
  return onTrainer(trainer, [&](sbp::rt::Trainer &t) { t.setLearningRate(lr); });
}

SBP_API sbp_status sbp_trainer_get_info(const sbp_trainer *trainer, sbp_trainer_info *info) {
  return onTrainer(trainer, [&](const sbp::rt::Trainer &t) {
    sbp_trainer_info full{};
    t.info(full);
    sbp::rt::fillSized(info, full, "info");
  });
}

SBP_API sbp_status sbp_trainer_get_param_info(const sbp_trainer *trainer, int32_t index,
                                              sbp_param_info *info) {
  return onTrainer(trainer, [&](const sbp::rt::Trainer &t) {
    const sbp_param_desc &p = t.param(index);
    sbp_param_info full{};
    full.name = p.name;
    full.rank = p.rank;
    std::copy(p.shape, p.shape + SBP_MAX_RANK, full.shape);
    full.numel = p.numel;
    full.weight_decay = p.weight_decay;
    sbp::rt::fillSized(info, full, "info");
  });
}

SBP_API sbp_status sbp_trainer_find_param(const sbp_trainer *trainer, const char *name,
                                          int32_t *index) {
  return onTrainer(trainer, [&](const sbp::rt::Trainer &t) {
    if (!name || !index)
      fail(SBP_ERROR_INVALID_ARGUMENT, "name and index must not be NULL");
    *index = t.findParam(name);
    if (*index < 0)
      fail(SBP_ERROR_NOT_FOUND, "model '{}' has no parameter '{}'", t.desc().model_name, name);
  });
}

SBP_API sbp_status sbp_trainer_get_mask_group_info(const sbp_trainer *trainer, int32_t group,
                                                   sbp_mask_group_info *info) {
  return onTrainer(trainer, [&](const sbp::rt::Trainer &t) {
    const sbp_mask_group_desc &m = t.maskGroup(group);
    sbp_mask_group_info full{};
    full.name = m.name ? m.name : "";
    full.keep_ratio = m.keep_ratio;
    full.kind = sbp::rt::maskKindName(m.kind);
    full.grid_h = m.grid_h;
    full.grid_w = m.grid_w;
    full.prefix_tokens = m.prefix_tokens;
    full.capacity = m.capacity;
    full.fixed = t.isFixed(group) ? 1 : 0;
    full.cell = m.cell;
    sbp::rt::fillSized(info, full, "info");
  });
}

SBP_API sbp_status sbp_trainer_read_param(const sbp_trainer *trainer, int32_t index, float *dst,
                                          int64_t count) {
  return onTrainer(trainer, [&](const sbp::rt::Trainer &t) {
    checkCount(count, t.param(index).numel, t.param(index).name);
    if (!dst)
      fail(SBP_ERROR_INVALID_ARGUMENT, "dst is NULL");
    t.readParam(index, dst);
  });
}

SBP_API sbp_status sbp_trainer_write_param(sbp_trainer *trainer, int32_t index, const float *src,
                                           int64_t count) {
  return onTrainer(trainer, [&](sbp::rt::Trainer &t) {
    checkCount(count, t.param(index).numel, t.param(index).name);
    if (!src)
      fail(SBP_ERROR_INVALID_ARGUMENT, "src is NULL");
    t.writeParam(index, src);
  });
}

SBP_API sbp_status sbp_trainer_read_gradient(const sbp_trainer *trainer, int32_t index,
                                             float *dst, int64_t count) {
  return onTrainer(trainer, [&](const sbp::rt::Trainer &t) {
    checkCount(count, t.param(index).numel, t.param(index).name);
    if (!dst)
      fail(SBP_ERROR_INVALID_ARGUMENT, "dst is NULL");
    t.readGradient(index, dst);
  });
}

SBP_API sbp_status sbp_trainer_save_params(const sbp_trainer *trainer, const char *path) {
  return onTrainer(trainer,
                   [&](const sbp::rt::Trainer &t) { sbp::rt::saveParams(t, requirePath(path)); });
}

SBP_API sbp_status sbp_trainer_load_params(sbp_trainer *trainer, const char *path) {
  return onTrainer(trainer,
                   [&](sbp::rt::Trainer &t) { sbp::rt::loadParams(t, requirePath(path)); });
}

SBP_API sbp_status sbp_trainer_save_checkpoint(const sbp_trainer *trainer, const char *path) {
  return onTrainer(trainer, [&](const sbp::rt::Trainer &t) {
    sbp::rt::saveCheckpoint(t, requirePath(path));
  });
}

SBP_API sbp_status sbp_trainer_load_checkpoint(sbp_trainer *trainer, const char *path) {
  return onTrainer(trainer,
                   [&](sbp::rt::Trainer &t) { sbp::rt::loadCheckpoint(t, requirePath(path)); });
}

SBP_API sbp_status sbp_trainer_save_gradients(const sbp_trainer *trainer, const char *path) {
  return onTrainer(trainer, [&](const sbp::rt::Trainer &t) {
    sbp::rt::saveGradients(t, requirePath(path));
  });
}

SBP_API sbp_status sbp_trainer_read_batch_file(const sbp_trainer *trainer, const char *path,
                                               float *images, int32_t *labels) {
  return onTrainer(trainer, [&](const sbp::rt::Trainer &t) {
    sbp::rt::readBatchFile(t, requirePath(path), images, labels);
  });
}

} // extern "C"
