// ModelDescTest.cpp - validateModelDesc (TrainerLibrary.cpp) on the mask-group
// table: the checks a trainer's description passes before anything samples a
// mask, in particular heads groups and mask kinds from a later ABI.
#include "Error.h"
#include "TrainerLibrary.h"

#include <gtest/gtest.h>

#include <string>
#include <tuple>
#include <vector>

using namespace sbp::rt;

namespace {

int noStep(const sbp_step_args *, char *, size_t) { return 0; }

// A minimal valid description with the given mask groups.
struct Desc {
  sbp_param_desc param{"w", 1, {4, 1, 1, 1}, 4, 0, SBP_INIT_ZEROS, 0.0f, 0};
  std::vector<sbp_mask_group_desc> groups;
  sbp_model_desc d{};

  explicit Desc(std::vector<sbp_mask_group_desc> g) : groups(std::move(g)) {
    d.abi_version = SBP_ABI_VERSION;
    d.struct_size = sizeof(sbp_model_desc);
    d.model_name = "desc_test";
    d.target = "cpu";
    d.sbpc_version = "test";
    d.batch = 1;
    d.in_channels = d.in_height = d.in_width = 1;
    d.num_classes = 2;
    d.num_params = 1;
    d.params = &param;
    d.param_elements = 4;
    d.num_mask_groups = int32_t(groups.size());
    d.mask_groups = groups.data();
    d.train_step = noStep;
    d.eval_step = noStep;
  }
};

// The status and message validateModelDesc gives, SBP_OK and "" when it accepts.
std::pair<sbp_status, std::string> validate(const Desc &desc) {
  try {
    validateModelDesc(desc.d, "t.so");
    return {SBP_OK, ""};
  } catch (const Error &e) {
    return {e.status(), e.what()};
  }
}

bool contains(const std::string &text, const std::string &needle) {
  return text.find(needle) != std::string::npos;
}

/// A description with the one mask group `group` is refused, its message
/// naming the trainer and containing `needle`.
void expectRefused(const sbp_mask_group_desc &group, const char *needle) {
  auto [status, message] = validate(Desc({group}));
  EXPECT_EQ(status, SBP_ERROR_INVALID_ARGUMENT) << needle;
  EXPECT_TRUE(contains(message, needle)) << message;
  EXPECT_TRUE(contains(message, "trainer 't.so' has an invalid model description")) << message;
}

struct RefusedGroup {
  sbp_mask_group_desc group;
  const char *needle;
};
} // namespace

TEST(ModelDesc, AbiVersionFiveKnowsHeadsAndSamplesMasksTheExactStepImagesInTheArenaAndCells) {
  // 2: SBP_MASK_HEADS; 3: exact_train_step, sbp_plan; 4: images_in_arena;
  // 5: SBP_MASK_SAMPLES, mask group cell
  EXPECT_EQ(SBP_ABI_VERSION, 5u);
  EXPECT_EQ(int(SBP_MASK_HEADS), 2);
  EXPECT_EQ(int(SBP_MASK_SAMPLES), 3);
}

TEST(ModelDesc, SamplesGroupsCoverTheBatchInOneRowWithoutPrefix) {
  Desc ok({{"dp", 0.9f, SBP_MASK_SAMPLES, 1, 8, 0, 8, 1}});
  ok.d.batch = 8;
  EXPECT_EQ(validate(ok).first, SBP_OK) << validate(ok).second;
  for (sbp_mask_group_desc g : {sbp_mask_group_desc{"dp", 0.9f, SBP_MASK_SAMPLES, 1, 4, 0, 4, 1},
                                sbp_mask_group_desc{"dp", 0.9f, SBP_MASK_SAMPLES, 2, 4, 0, 8, 1},
                                sbp_mask_group_desc{"dp", 0.9f, SBP_MASK_SAMPLES, 1, 8, 1, 9, 1}}) {
    Desc bad({g});
    bad.d.batch = 8;
    auto [status, message] = validate(bad);
    EXPECT_EQ(status, SBP_ERROR_INVALID_ARGUMENT) << g.grid_h << "x" << g.grid_w;
    EXPECT_TRUE(contains(message, "samples mask group 'dp' has grid")) << message;
  }
  Desc small({{"dp", 0.9f, SBP_MASK_SAMPLES, 1, 8, 0, 7, 1}}); // every sample may be kept
  small.d.batch = 8;
  auto [status, message] = validate(small);
  EXPECT_EQ(status, SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(contains(message, "keeps up to 8 tokens but its capacity is 7")) << message;
  Desc celled({{"dp", 0.9f, SBP_MASK_SAMPLES, 1, 8, 0, 8, 2}});
  celled.d.batch = 8;
  auto [cstatus, cmessage] = validate(celled);
  EXPECT_EQ(cstatus, SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(contains(cmessage, "samples groups have cell 1")) << cmessage;
}

TEST(ModelDesc, ImagesInAnArenaTooSmallForTheBatchAreRefused) {
  Desc desc({});
  desc.d.batch = 8;
  desc.d.in_channels = 3;
  desc.d.in_height = desc.d.in_width = 4; // 8 * 3 * 4 * 4 floats = 1536 bytes
  desc.d.report.train_arena_bytes = 4096;
  desc.d.report.eval_arena_bytes = 1024;
  desc.d.images_in_arena = 1;
  auto [status, message] = validate(desc);
  EXPECT_EQ(status, SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(contains(message, "smaller than the batch (1536 bytes)")) << message;
  desc.d.report.eval_arena_bytes = 1536;
  EXPECT_EQ(validate(desc).first, SBP_OK) << validate(desc).second;
  desc.d.images_in_arena = 2;
  std::tie(status, message) = validate(desc);
  EXPECT_EQ(status, SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(contains(message, "images_in_arena is 2")) << message;
}

TEST(ModelDesc, ANegativeExactArenaIsRefused) {
  Desc desc({{"m0", 0.5f, SBP_MASK_GRID, 14, 14, 1, 99, 1}});
  desc.d.exact_arena_bytes = -1;
  auto [status, message] = validate(desc);
  EXPECT_EQ(status, SBP_ERROR_INVALID_ARGUMENT);
  EXPECT_TRUE(contains(message, "negative arena size")) << message;
}

TEST(ModelDesc, HeadsGroupsAreAccepted) {
  Desc desc({{"m0", 0.5f, SBP_MASK_GRID, 14, 14, 1, 99, 1},
             {"h0", 0.5f, SBP_MASK_HEADS, 1, 12, 0, 12, 1},
             {"h1", 1.0f, SBP_MASK_HEADS, 1, 1, 0, 1, 1},
             {"h2", 0.25f, SBP_MASK_HEADS, 1, 6, 0, 8, 1}}); // spare capacity is allowed
  auto [status, message] = validate(desc);
  EXPECT_EQ(status, SBP_OK) << message;
}

TEST(ModelDesc, HeadsGroupsNeedOneRowNoPrefixAndEveryHeadsCapacity) {
  for (const RefusedGroup &c : {
           RefusedGroup{{"h0", 0.5f, SBP_MASK_HEADS, 2, 6, 0, 12, 1}, "heads mask group 'h0' has grid 2x6"},
           RefusedGroup{{"h0", 0.5f, SBP_MASK_HEADS, 1, 12, 1, 13, 1}, "and prefix 1"},
           RefusedGroup{{"h0", 0.5f, SBP_MASK_HEADS, 1, 12, 0, 11, 1},
                "keeps up to 12 tokens but its capacity is 11"},
           RefusedGroup{{"h0", 0.5f, SBP_MASK_HEADS, 1, 0, 0, 1, 1}, "has grid 1x0"},
           RefusedGroup{{"h0", 0.0f, SBP_MASK_HEADS, 1, 12, 0, 12, 1}, "keep ratio 0 outside (0, 1]"},
       })
    expectRefused(c.group, c.needle);
}

TEST(ModelDesc, UnknownMaskKindsAreRefusedWithTheGroupAndKnownKinds) {
  for (int32_t kind : {4, 42, -1}) {
    auto [status, message] = validate(Desc({{"m0", 0.5f, SBP_MASK_GRID, 14, 14, 1, 99, 1},
                                            {"future", 0.5f, kind, 1, 12, 0, 12, 1}}));
    EXPECT_EQ(status, SBP_ERROR_INVALID_ARGUMENT);
    EXPECT_TRUE(contains(message, "mask group 'future' has unknown kind " + std::to_string(kind)))
        << message;
    EXPECT_TRUE(contains(message, "heads 2")) << message;
  }
}

TEST(ModelDesc, AnOlderAbiIsAMismatch) {
  Desc desc({{"h0", 0.5f, SBP_MASK_HEADS, 1, 12, 0, 12, 1}});
  desc.d.abi_version = 1;
  auto [status, message] = validate(desc);
  EXPECT_EQ(status, SBP_ERROR_ABI_MISMATCH);
  EXPECT_TRUE(contains(message, "ABI version 1")) << message;
  EXPECT_TRUE(contains(message, "ABI version 5")) << message;
}

// Derived groups (ConvNeXt's finer stages): drawn on the grid divided by cell.
TEST(ModelDesc, DerivedGroupsAreAccepted) {
  Desc desc({{"s0", 0.5f, SBP_MASK_GRID, 56, 56, 0, 98 * 16, 4},
             {"s1", 0.5f, SBP_MASK_GRID, 28, 28, 0, 98 * 4, 2},
             {"s2", 0.5f, SBP_MASK_GRID, 14, 14, 0, 98, 1},
             {"r0", 0.25f, SBP_MASK_RANDOM, 8, 12, 0, 6 * 4, 2}}); // 4x6 drawn, 6 kept
  auto [status, message] = validate(desc);
  EXPECT_EQ(status, SBP_OK) << message;
}

TEST(ModelDesc, CellsMustBePositiveDivideTheGridAndSkipHeadsAndPrefixes) {
  for (const RefusedGroup &c : {
           RefusedGroup{{"s0", 0.5f, SBP_MASK_GRID, 56, 56, 0, 3136, 0}, "mask group 's0' has cell 0"},
           RefusedGroup{{"s0", 0.5f, SBP_MASK_GRID, 56, 56, 0, 3136, -2}, "has cell -2 (1 or more)"},
           RefusedGroup{{"s0", 0.5f, SBP_MASK_GRID, 56, 56, 0, 3136, 3},
                "mask group 's0' has cell 3, which does not divide its grid 56x56"},
           RefusedGroup{{"s0", 0.5f, SBP_MASK_RANDOM, 8, 6, 0, 48, 4}, "does not divide its grid 8x6"},
           RefusedGroup{{"h0", 0.5f, SBP_MASK_HEADS, 1, 12, 0, 12, 2},
                "heads mask group 'h0' has cell 2; heads groups have cell 1"},
           RefusedGroup{{"m0", 0.5f, SBP_MASK_GRID, 14, 14, 1, 1 + 98, 2},
                "mask group 'm0' has cell 2 and prefix 1"},
           // The capacity counts whole cells: 98 drawn positions of 4 fine ones each.
           RefusedGroup{{"s1", 0.5f, SBP_MASK_GRID, 28, 28, 0, 391, 2},
                "mask group 's1' keeps up to 392 tokens but its capacity is 391"},
       })
    expectRefused(c.group, c.needle);
}
