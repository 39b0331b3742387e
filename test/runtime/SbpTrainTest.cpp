// SbpTrainTest.cpp - sbp-train: its schedule and keep-index parser, and the
// tool end to end with the fake trainer (exit codes, messages, files).
#include "KeepIndicesFile.h"
#include "Schedule.h"
#include "TestFiles.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sys/wait.h>

using namespace sbp::train;
using sbp::test::fakeTrainer;
using sbp::test::TempDir;

namespace {

struct ToolRun {
  int status = -1;
  std::string output; // stdout and stderr together
};

// Runs sbp-train with `args` (a shell word list; the tests use plain paths).
ToolRun sbpTrain(const std::string &args) {
  ToolRun run;
  std::string command = std::string(SBP_TRAIN_EXE) + " " + args + " 2>&1 < /dev/null";
  std::FILE *pipe = ::popen(command.c_str(), "r");
  if (!pipe)
    return run;
  char buffer[4096];
  size_t got = 0;
  while ((got = std::fread(buffer, 1, sizeof(buffer), pipe)) > 0)
    run.output.append(buffer, got);
  int raw = ::pclose(pipe);
  run.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
  return run;
}

bool contains(const std::string &text, const std::string &needle) {
  return text.find(needle) != std::string::npos;
}

std::string fashionMnistOrSkip() { return sbp::test::fashionMnistDir(); }

} // namespace

TEST(Schedule, WarmupIsLinearThenCosineDecaysToZero) {
  LrSchedule s;
  s.base_lr = 1.0;
  s.warmup_steps = 10;
  s.total_steps = 110;
  EXPECT_DOUBLE_EQ(s.at(0), 0.1);
  EXPECT_DOUBLE_EQ(s.at(4), 0.5);
  EXPECT_DOUBLE_EQ(s.at(10), 1.0);
  EXPECT_NEAR(s.at(60), 0.5, 1e-12);
  EXPECT_NEAR(s.at(109), 0.5 * (1 + std::cos(M_PI * 0.99)), 1e-12);
  EXPECT_GE(s.at(500), 0.0);
  s.kind = ScheduleKind::Constant;
  EXPECT_DOUBLE_EQ(s.at(0), 0.1);
  EXPECT_DOUBLE_EQ(s.at(60), 1.0);
}

TEST(Schedule, DefaultWarmupAndNames) {
  EXPECT_EQ(defaultWarmupSteps(ScheduleKind::Cosine, 1000), 50);
  EXPECT_EQ(defaultWarmupSteps(ScheduleKind::Cosine, 100000), 500);
  EXPECT_EQ(defaultWarmupSteps(ScheduleKind::Constant, 1000), 0);
  EXPECT_EQ(parseScheduleKind("constant"), ScheduleKind::Constant);
  EXPECT_THROW(parseScheduleKind("linear"), std::invalid_argument);
}

TEST(KeepIndicesFile, OneLineOrOnePerGroupWithComments) {
  auto lines = parseKeepIndices("# kept tokens\n0 1 2   5\n\n  # nothing here\n0 3 # cls + one\n",
                                "k.txt");
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[0], (std::vector<int32_t>{0, 1, 2, 5}));
  EXPECT_EQ(lines[1], (std::vector<int32_t>{0, 3}));
}

TEST(KeepIndicesFile, ADashLineIsAnEmptyList) {
  auto lines = parseKeepIndices("0 1 2\n - # no head kept\n0 3\n", "k.txt");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[1], std::vector<int32_t>{});
  EXPECT_EQ(parseKeepIndices("-\n", "k.txt"), (std::vector<std::vector<int32_t>>{{}}));
  for (const char *bad : {"0 - 1\n", "- 1\n", "- -\n", "2 -\n"}) {
    try {
      parseKeepIndices(bad, "k.txt");
      FAIL() << bad;
    } catch (const std::runtime_error &e) {
      EXPECT_STREQ(e.what(), "k.txt:1: '-' (no indices) must stand alone on its line") << bad;
    }
  }
}

TEST(KeepIndicesFile, ErrorsNameTheLine) {
  try {
    parseKeepIndices("0 1\n2 x3\n", "k.txt");
    FAIL();
  } catch (const std::runtime_error &e) {
    EXPECT_STREQ(e.what(), "k.txt:2: 'x3' is not a token index");
  }
  EXPECT_THROW(parseKeepIndices("# only a comment\n", "k.txt"), std::runtime_error);
  EXPECT_THROW(parseKeepIndices("99999999999", "k.txt"), std::runtime_error);
  EXPECT_THROW(readKeepIndicesFile("/nonexistent/k.txt"), std::runtime_error);
}

TEST(SbpTrainCli, UsageErrorsExitWithTwo) {
  ToolRun help = sbpTrain("--help");
  EXPECT_EQ(help.status, 0);
  EXPECT_TRUE(contains(help.output, "--dump-grads")) << help.output;
  for (const std::string &args :
       {std::string(""), std::string("--bogus"), fakeTrainer() + " --epochs 1 --steps 2 --data x",
        fakeTrainer() + " --steps 0 --data x", fakeTrainer() + " --steps",
        fakeTrainer() + " --schedule linear --data x", fakeTrainer()}) {
    ToolRun run = sbpTrain(args);
    EXPECT_EQ(run.status, 2) << args << "\n" << run.output;
    EXPECT_TRUE(contains(run.output, "sbp-train: error: ")) << run.output;
  }
}

TEST(SbpTrainCli, RuntimeErrorsExitWithOne) {
  TempDir dir;
  ToolRun missing = sbpTrain(dir.file("absent.so") + " --info");
  EXPECT_EQ(missing.status, 1);
  EXPECT_TRUE(contains(missing.output, "sbp-train: error: trainer library")) << missing.output;
  ToolRun abi = sbpTrain(fakeTrainer("fake_trainer_abi_next") + " --info");
  EXPECT_EQ(abi.status, 1);
  EXPECT_TRUE(contains(abi.output, "ABI version")) << abi.output;
  ToolRun no_data = sbpTrain(fakeTrainer() + " --steps 1 --data " + dir.file("nothing"));
  EXPECT_EQ(no_data.status, 1);
  EXPECT_TRUE(contains(no_data.output, "does not exist")) << no_data.output;
}

TEST(SbpTrainCli, InfoPrintsTheModel) {
  ToolRun run = sbpTrain(fakeTrainer() + " --info");
  EXPECT_EQ(run.status, 0) << run.output;
  for (const char *needle : {"fake_softmax", "head.weight", "[10, 784]", "adamw", "m1",
                             "random keep 0.25", "arena"})
    EXPECT_TRUE(contains(run.output, needle)) << needle << "\n" << run.output;
}

TEST(SbpTrainCli, InfoPrintsHeadsGroupsAndRefusesUnknownKinds) {
  ToolRun run = sbpTrain(fakeTrainer("fake_trainer_heads") + " --info");
  EXPECT_EQ(run.status, 0) << run.output;
  for (const char *needle : {"mask groups    4", "h0", "heads keep 0.5  12 heads  capacity 12",
                             "random keep 0.25"})
    EXPECT_TRUE(contains(run.output, needle)) << needle << "\n" << run.output;
  ToolRun unknown = sbpTrain(fakeTrainer("fake_trainer_unknown_mask") + " --info");
  EXPECT_EQ(unknown.status, 1) << unknown.output;
  EXPECT_TRUE(contains(unknown.output, "sbp-train: error: ")) << unknown.output;
  EXPECT_TRUE(contains(unknown.output, "mask group 'm1' has unknown kind 3")) << unknown.output;
}

TEST(SbpTrainCli, KeepIndicesFixHeadsGroupsToo) {
  TempDir dir;
  std::vector<float> images(64 * 784, 0.25f);
  std::vector<int32_t> labels(64);
  for (size_t b = 0; b < labels.size(); ++b)
    labels[b] = int32_t(b % 10);
  sbp::test::writeBatchFile(dir.file("batch.safetensors"), {64, 1, 28, 28}, images, labels);
  auto dump = [&](const std::string &keep) {
    sbp::test::writeFile(dir.file("keep.txt"), keep);
    return sbpTrain(fakeTrainer("fake_trainer_heads") + " --batch " +
                    dir.file("batch.safetensors") + " --keep-indices " + dir.file("keep.txt") +
                    " --dump-grads " + dir.file("g.safetensors"));
  };
  // One line per group; the heads group keeps heads 0, 5 and 11, then none.
  for (const char *heads : {"0 5 11", "-"}) {
    ToolRun run = dump(std::string("0 1 2\n0 3\n0 4 9\n") + heads + "\n");
    EXPECT_EQ(run.status, 0) << heads << "\n" << run.output;
  }
  // A head index past the 12 heads names the group.
  ToolRun bad = dump("0 1 2\n0 3\n0 4 9\n0 12\n");
  EXPECT_EQ(bad.status, 1) << bad.output;
  EXPECT_TRUE(contains(bad.output, "mask group 'h0': head index 12")) << bad.output;
}

TEST(SbpTrainCli, DumpGradsOfABatchFileWithFixedMasks) {
  TempDir dir;
  std::vector<float> images(64 * 784);
  std::vector<int32_t> labels(64);
  for (size_t k = 0; k < images.size(); ++k)
    images[k] = float(k % 13) / 13.0f;
  for (size_t b = 0; b < labels.size(); ++b)
    labels[b] = int32_t(b % 10);
  sbp::test::writeBatchFile(dir.file("batch.safetensors"), {64, 1, 28, 28}, images, labels);
  sbp::test::writeFile(dir.file("keep.txt"), "# cls and four patches\n0 1 2 3 4\n");
  ToolRun run = sbpTrain(fakeTrainer() + " --batch " + dir.file("batch.safetensors") +
                     " --keep-indices " + dir.file("keep.txt") + " --dump-grads " +
                     dir.file("g.safetensors") + " --save-params " + dir.file("p.safetensors"));
  EXPECT_EQ(run.status, 0) << run.output;
  EXPECT_TRUE(contains(run.output, "gradients of 2 parameters written")) << run.output;
  EXPECT_TRUE(sbp::test::fileExists(dir.file("g.safetensors")));
  EXPECT_TRUE(sbp::test::fileExists(dir.file("p.safetensors")));
  // Two lines for a model with three groups is an error.
  sbp::test::writeFile(dir.file("keep.txt"), "0 1\n0 2\n");
  ToolRun bad = sbpTrain(fakeTrainer() + " --batch " + dir.file("batch.safetensors") +
                     " --keep-indices " + dir.file("keep.txt") + " --dump-grads " +
                     dir.file("g.safetensors"));
  EXPECT_EQ(bad.status, 1);
  EXPECT_TRUE(contains(bad.output, "3 mask groups")) << bad.output;
}

TEST(SbpTrainCli, TrainsLogsSavesAndResumes) {
  std::string data = fashionMnistOrSkip();
  if (data.empty())
    GTEST_SKIP() << "Fashion-MNIST is not installed";
  TempDir dir;
  std::string common = fakeTrainer() + " --data " + data + " --threads 1 --log " +
                       dir.file("run.csv") + " --save " + dir.file("ckpt.safetensors");
  ToolRun first = sbpTrain(common + " --steps 40 --seed 3");
  ASSERT_EQ(first.status, 0) << first.output;
  EXPECT_TRUE(contains(first.output, "epoch 1/1  loss ")) << first.output;
  EXPECT_TRUE(contains(first.output, "test-acc ")) << first.output;
  EXPECT_TRUE(contains(first.output, " img/s")) << first.output;
  EXPECT_TRUE(contains(first.output, "100%")) << first.output; // plain progress lines
  ToolRun second = sbpTrain(common + " --steps 60 --resume " + dir.file("ckpt.safetensors") +
                        " --save-params " + dir.file("final.safetensors"));
  ASSERT_EQ(second.status, 0) << second.output;
  EXPECT_TRUE(contains(second.output, "at step 40")) << second.output;
  std::string csv = sbp::test::readFile(dir.file("run.csv"));
  EXPECT_EQ(csv.rfind("epoch,step,train_loss,test_loss,test_acc,seconds\n", 0), 0u) << csv;
  EXPECT_TRUE(contains(csv, "\n1,40,")) << csv;
  EXPECT_TRUE(contains(csv, "\n1,60,")) << csv;
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 3) << csv;
  EXPECT_TRUE(sbp::test::fileExists(dir.file("final.safetensors")));
  ToolRun done = sbpTrain(common + " --steps 60 --resume " + dir.file("ckpt.safetensors"));
  EXPECT_EQ(done.status, 0) << done.output;
  EXPECT_TRUE(contains(done.output, "nothing to do")) << done.output;
}

TEST(SbpTrainCli, NanLossStopsTheRun) {
  std::string data = fashionMnistOrSkip();
  if (data.empty())
    GTEST_SKIP() << "Fashion-MNIST is not installed";
  TempDir dir;
  ToolRun run = sbpTrain(fakeTrainer("fake_trainer_nan") + " --data " + data + " --steps 5 --save " +
                     dir.file("ckpt.safetensors"));
  EXPECT_EQ(run.status, 1) << run.output;
  EXPECT_TRUE(contains(run.output, "sbp-train: error: training stopped in epoch 1, batch 1: "
                                   "loss is NaN at step 0"))
      << run.output;
  EXPECT_FALSE(sbp::test::fileExists(dir.file("ckpt.safetensors")));
}
