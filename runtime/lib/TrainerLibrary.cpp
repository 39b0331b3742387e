// TrainerLibrary.cpp - dlopen, the ABI handshake and model-description checks.
#include "TrainerLibrary.h"

#include "ElfFile.h"
#include "Error.h"
#include "Masks.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <dlfcn.h>
#include <set>
#include <sys/stat.h>
#include <vector>

namespace sbp::rt {
namespace {

[[noreturn]] void invalid(const std::string &path, const std::string &what) {
  fail(SBP_ERROR_INVALID_ARGUMENT, "trainer '{}' has an invalid model description: {}", path,
       what);
}

void validateParams(const sbp_model_desc &d, const std::string &path) {
  if (d.num_params < 0 || (d.num_params > 0 && !d.params) || d.param_elements < 0)
    invalid(path, "bad parameter table");
  std::set<std::string> names;
  std::vector<std::pair<int64_t, int64_t>> ranges;
  for (int32_t i = 0; i < d.num_params; ++i) {
    const sbp_param_desc &p = d.params[i];
    std::string name = p.name ? p.name : "";
    if (name.empty() || !names.insert(name).second)
      invalid(path, fmt::format("parameter {} has an empty or duplicate name '{}'", i, name));
    if (p.rank < 1 || p.rank > SBP_MAX_RANK)
      invalid(path, fmt::format("parameter '{}' has rank {}", name, p.rank));
    int64_t numel = 1;
    for (int32_t k = 0; k < p.rank; ++k) {
      if (p.shape[k] < 1 || numel > INT64_MAX / p.shape[k])
        invalid(path, fmt::format("parameter '{}' has a bad shape", name));
      numel *= p.shape[k];
    }
    if (numel != p.numel || p.offset < 0 || p.offset > d.param_elements - p.numel)
      invalid(path, fmt::format("parameter '{}' (numel {}, offset {}) does not fit its shape "
                                "or the {}-element buffer", name, p.numel, p.offset,
                                d.param_elements));
    if (p.init < SBP_INIT_ZEROS || p.init > SBP_INIT_CONSTANT || !std::isfinite(p.init_scale))
      invalid(path, fmt::format("parameter '{}' has init kind {} scale {}", name, p.init,
                                p.init_scale));
    if (p.weight_decay != 0 && p.weight_decay != 1)
      invalid(path, fmt::format("parameter '{}' has weight_decay {}", name, p.weight_decay));
    ranges.emplace_back(p.offset, p.offset + p.numel);
  }
  // The optimizer updates each parameter once: ranges must not overlap.
  std::sort(ranges.begin(), ranges.end());
  for (size_t k = 1; k < ranges.size(); ++k)
    if (ranges[k].first < ranges[k - 1].second)
      invalid(path, "two parameters overlap in the parameter buffer");
}

// A derived group (cell > 1) is drawn on the grid divided by cell (Masks.h).
void validateCell(const sbp_mask_group_desc &m, const std::string &name, const std::string &path) {
  if (m.cell < 1)
    invalid(path, fmt::format("mask group '{}' has cell {} (1 or more)", name, m.cell));
  if (m.cell == 1)
    return;
  if (m.kind == SBP_MASK_HEADS || m.kind == SBP_MASK_SAMPLES)
    invalid(path, fmt::format("{} mask group '{}' has cell {}; {} groups have cell 1",
                              maskKindName(m.kind), name, m.cell, maskKindName(m.kind)));
  if (m.grid_h % m.cell || m.grid_w % m.cell)
    invalid(path, fmt::format("mask group '{}' has cell {}, which does not divide its grid {}x{}",
                              name, m.cell, m.grid_h, m.grid_w));
  if (m.prefix_tokens != 0)
    invalid(path, fmt::format("mask group '{}' has cell {} and prefix {}; a group with cell above "
                              "1 has no prefix tokens",
                              name, m.cell, m.prefix_tokens));
}

void validateMaskGroups(const sbp_model_desc &d, const std::string &path) {
  if (d.num_mask_groups < 0 || (d.num_mask_groups > 0 && !d.mask_groups))
    invalid(path, "bad mask group table");
  for (int32_t g = 0; g < d.num_mask_groups; ++g) {
    const sbp_mask_group_desc &m = d.mask_groups[g];
    std::string name = m.name ? m.name : std::to_string(g);
    if (!(m.keep_ratio > 0.0f && m.keep_ratio <= 1.0f))
      invalid(path, fmt::format("mask group '{}' has keep ratio {} outside (0, 1]", name,
                                m.keep_ratio));
    // A kind from a later ABI must never reach the samplers (host or device).
    if (!isKnownMaskKind(m.kind))
      invalid(path, fmt::format("mask group '{}' has unknown kind {} (this runtime, ABI version "
                                "{}, knows grid {}, random {}, heads {} and samples {})",
                                name, m.kind, SBP_ABI_VERSION, int(SBP_MASK_GRID),
                                int(SBP_MASK_RANDOM), int(SBP_MASK_HEADS), int(SBP_MASK_SAMPLES)));
    if (m.grid_h < 1 || m.grid_w < 1 || m.grid_h > 65536 / m.grid_w || m.prefix_tokens < 0 ||
        m.capacity < 1)
      invalid(path, fmt::format("mask group '{}' has grid {}x{}, prefix {}, capacity {}", name,
                                m.grid_h, m.grid_w, m.prefix_tokens, m.capacity));
    if (m.kind == SBP_MASK_HEADS && (m.grid_h != 1 || m.prefix_tokens != 0))
      invalid(path, fmt::format("heads mask group '{}' has grid {}x{} and prefix {}; a heads "
                                "group has grid 1 x heads and no prefix",
                                name, m.grid_h, m.grid_w, m.prefix_tokens));
    if (m.kind == SBP_MASK_SAMPLES && (m.grid_h != 1 || m.prefix_tokens != 0 || m.grid_w != d.batch))
      invalid(path, fmt::format("samples mask group '{}' has grid {}x{} and prefix {}; a samples "
                                "group has grid 1 x batch ({}) and no prefix",
                                name, m.grid_h, m.grid_w, m.prefix_tokens, d.batch));
    validateCell(m, name, path);
    int32_t most = maxKeptTokens(MaskSpec::from(m));
    if (most > m.capacity)
      invalid(path, fmt::format("mask group '{}' keeps up to {} tokens but its capacity is {}",
                                name, most, m.capacity));
  }
}

} // namespace

void validateModelDesc(const sbp_model_desc &d, const std::string &path) {
  if (d.abi_version != SBP_ABI_VERSION)
    fail(SBP_ERROR_ABI_MISMATCH,
         "trainer '{}' was generated for ABI version {}, this runtime implements ABI version {}",
         path, d.abi_version, SBP_ABI_VERSION);
  if (d.struct_size < sizeof(sbp_model_desc))
    fail(SBP_ERROR_ABI_MISMATCH,
         "trainer '{}' describes its model in {} bytes, ABI version {} needs {}", path,
         d.struct_size, SBP_ABI_VERSION, sizeof(sbp_model_desc));
  if (!d.model_name || !*d.model_name || !d.target)
    invalid(path, "no model name or target");
  if (d.batch < 1 || d.in_channels < 1 || d.in_height < 1 || d.in_width < 1 || d.num_classes < 1)
    invalid(path, fmt::format("batch {} input {}x{}x{} classes {}", d.batch, d.in_channels,
                              d.in_height, d.in_width, d.num_classes));
  if (!d.train_step || !d.eval_step)
    invalid(path, "missing train_step or eval_step");
  if (d.report.train_arena_bytes < 0 || d.report.eval_arena_bytes < 0 || d.exact_arena_bytes < 0)
    invalid(path, "negative arena size");
  if (d.images_in_arena != 0 && d.images_in_arena != 1)
    invalid(path, fmt::format("images_in_arena is {} (0 or 1)", d.images_in_arena));
  // In double: the sizes come from the library and may be anything.
  const double image_bytes = double(d.batch) * d.in_channels * d.in_height * d.in_width * sizeof(float);
  if (d.images_in_arena &&
      double(std::min(d.report.train_arena_bytes, d.report.eval_arena_bytes)) < image_bytes)
    invalid(path, fmt::format("images planned in an arena of {} bytes, smaller than the batch ({} bytes)",
                              std::min(d.report.train_arena_bytes, d.report.eval_arena_bytes),
                              image_bytes));
  validateParams(d, path);
  validateMaskGroups(d, path);
}

TrainerLibrary::TrainerLibrary(const std::string &path) : path_(path) {
  struct stat st {};
  if (path.empty() || ::stat(path.c_str(), &st) != 0)
    fail(SBP_ERROR_NOT_FOUND, "trainer library '{}' does not exist", path);
  // dlopen would block on a FIFO and map a device; a directory gives a vague error.
  if (!S_ISREG(st.st_mode))
    fail(SBP_ERROR_INVALID_ARGUMENT, "trainer library '{}' is not a regular file", path);
  checkElfSharedLibrary(path);
  // A bare name would make dlopen search the library path: always mean the file.
  std::string file = path.find('/') == std::string::npos ? "./" + path : path;
  // RTLD_NODELETE: a trainer stays mapped after its last release. Unloading a
  // library that carries CUDA kernels and loading it again in a process that
  // has used CUDA was seen to hang on the H100 (sbp-cuda-kernels-tests,
  // TrainerLink then TrainerRun); keeping it mapped costs only its code pages.
  handle_ = ::dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
  if (!handle_) {
    const char *why = ::dlerror();
    fail(SBP_ERROR_INVALID_ARGUMENT, "cannot load trainer library '{}': {}", path,
         why ? why : "unknown dlopen error");
  }
  try {
    void *symbol = ::dlsym(handle_, SBP_TRAINER_ENTRY);
    if (!symbol)
      fail(SBP_ERROR_INVALID_ARGUMENT, "'{}' is not a trainer library: it exports no {}()", path,
           SBP_TRAINER_ENTRY);
    auto entry = reinterpret_cast<sbp_trainer_entry_fn>(symbol);
    char err[1024] = {0};
    desc_ = entry(SBP_ABI_VERSION, err, sizeof(err));
    err[sizeof(err) - 1] = '\0';
    if (!desc_)
      fail(SBP_ERROR_ABI_MISMATCH, "trainer '{}' refused this runtime (ABI version {}): {}", path,
           SBP_ABI_VERSION, *err ? err : "no reason given");
    validateModelDesc(*desc_, path);
  } catch (...) {
    ::dlclose(handle_);
    throw;
  }
}

TrainerLibrary::~TrainerLibrary() {
  if (handle_)
    ::dlclose(handle_);
}

} // namespace sbp::rt
