// SbpTrainTest.cpp - sbp-train: its schedule and keep-index parser, and the
// tool end to end with the fake trainer (exit codes, messages, files).
#include "CsvLog.h"
#include "KeepIndicesFile.h"
#include "Paths.h"
#include "Schedule.h"
#include "TestFiles.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sys/stat.h>
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
// A run that hangs (a FIFO read) is stopped after a minute: status 124.
ToolRun sbpTrain(const std::string &args) {
  ToolRun run;
  std::string command =
      "timeout -s KILL 60 " + std::string(SBP_TRAIN_EXE) + " " + args + " 2>&1 < /dev/null";
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

// A NUL byte in the file ended the message early; control bytes garbled it.
TEST(KeepIndicesFile, BinaryWordsAreShownEscaped) {
  try {
    parseKeepIndices(std::string("0 \xff\xfe\x00x 2\n", 9), "k.txt");
    FAIL();
  } catch (const std::runtime_error &e) {
    EXPECT_STREQ(e.what(), "k.txt:1: '\\xff\\xfe\\x00x' is not a token index");
  }
  try {
    parseKeepIndices(std::string(100, '7') + "x", "k.txt");
    FAIL();
  } catch (const std::runtime_error &e) {
    EXPECT_STREQ(e.what(), ("k.txt:1: '" + std::string(32, '7') + "...' is not a token index").c_str());
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

TEST(KeepIndicesFile, LinesMayNameTheirGroup) {
  auto lines = parseKeepIndexLines(
      "# drop_head per block\nm: 0 2 4\n\nh.blocks.0.attn: 0 2 # two heads\n h.blocks.1.attn :-\n",
      "k.txt");
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[0].group, "m");
  EXPECT_EQ(lines[0].line, 2);
  EXPECT_EQ(lines[0].indices, (std::vector<int32_t>{0, 2, 4}));
  EXPECT_EQ(lines[1].group, "h.blocks.0.attn");
  EXPECT_EQ(lines[1].line, 4);
  EXPECT_EQ(lines[2].group, "h.blocks.1.attn");
  EXPECT_EQ(lines[2].indices, std::vector<int32_t>{});
  EXPECT_EQ(parseKeepIndexLines("0 1\n", "k.txt")[0].group, "");
  auto error = [](const std::string &text) -> std::string {
    try {
      parseKeepIndexLines(text, "k.txt");
      return "";
    } catch (const std::runtime_error &e) {
      return e.what();
    }
  };
  EXPECT_EQ(error("m: 0 1\n0 2\n"),
            "k.txt:2: either every line names its mask group ('NAME: indices') or none does");
  EXPECT_EQ(error("0 2\nm: 0 1\n"),
            "k.txt:2: either every line names its mask group ('NAME: indices') or none does");
  EXPECT_EQ(error(": 0 1\n"), "k.txt:1: a mask group name must be one word before ':'");
  EXPECT_EQ(error("a b: 0 1\n"), "k.txt:1: a mask group name must be one word before ':'");
  EXPECT_EQ(error("m:\n"), "k.txt:1: mask group 'm' has no indices (write '-' for an empty list)");
  EXPECT_EQ(error("m: 0 x\n"), "k.txt:1: 'x' is not a token index");
}

// Named lines fix groups in any order; a wrong or missing name, a line without
// the class token, or an index out of range is refused with the file and line.
TEST(SbpTrainCli, KeepIndicesByNameAndLocatedRefusals) {
  TempDir dir;
  std::vector<float> images(64 * 784, 0.5f);
  std::vector<int32_t> labels(64, 3);
  sbp::test::writeBatchFile(dir.file("batch.safetensors"), {64, 1, 28, 28}, images, labels);
  auto dump = [&](const std::string &keep) {
    sbp::test::writeFile(dir.file("keep.txt"), keep);
    return sbpTrain(fakeTrainer("fake_trainer_heads") + " --batch " +
                    dir.file("batch.safetensors") + " --keep-indices " + dir.file("keep.txt") +
                    " --dump-grads " + dir.file("g.safetensors"));
  };
  ToolRun ok = dump("h0: 1 5\nm2: 0 3\nm0: 0 1 2\nm1: 0 4 9\n");
  EXPECT_EQ(ok.status, 0) << ok.output;
  std::string keep = dir.file("keep.txt");
  ToolRun unknown = dump("m0: 0 1\nm9: 0 1\n");
  EXPECT_EQ(unknown.status, 1);
  EXPECT_TRUE(contains(unknown.output, keep + ":2: the model has no mask group 'm9' (it has m0, "
                                       "m1, m2, h0)")) << unknown.output;
  ToolRun twice = dump("m0: 0 1\nm1: 0\nm0: 0 2\n");
  EXPECT_TRUE(contains(twice.output, keep + ":3: mask group 'm0' is already fixed on line 1"))
      << twice.output;
  ToolRun missing = dump("m0: 0 1\nm1: 0\nm2: 0\n");
  EXPECT_EQ(missing.status, 1);
  EXPECT_TRUE(contains(missing.output, "names no line for mask group 'h0'")) << missing.output;
  // Patch numbering (no class token) on m2's line, in either form.
  ToolRun patches = dump("m0: 0 1\nm1: 0\nm2: 1 3 4 6\nh0: 0\n");
  EXPECT_EQ(patches.status, 1);
  EXPECT_TRUE(contains(patches.output, keep + ":3: mask group 'm2': keep indices must start with "
                                       "token 0 (always kept: the class token), got 1 at entry 0"))
      << patches.output;
  ToolRun positional = dump("0 1\n0\n# a comment line\n2 3\n0\n");
  EXPECT_TRUE(contains(positional.output, keep + ":4: mask group 'm2': keep indices must start"))
      << positional.output;
  ToolRun head = dump("0 1\n0\n0\n0 12\n");
  EXPECT_TRUE(contains(head.output, keep + ":4: mask group 'h0': head index 12")) << head.output;
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
  EXPECT_TRUE(contains(unknown.output, "mask group 'm1' has unknown kind 4")) << unknown.output;
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

// ------------------------------------------------------ hostile inputs --

// Each was accepted: --threads 10000 reached OpenMP, --seed -1 wrapped to
// 2^64-1, a negative --lr or --weight-decay fell back to the model's value.
TEST(SbpTrainCli, OptionsOutsideTheirRangeAreUsageErrors) {
  const std::string t = fakeTrainer() + " --data x --steps 1 ";
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--threads 10000", "--threads must be in [0, 1024] (0: all), not 10000"},
      {"--threads -1", "--threads must be in [0, 1024]"},
      {"--seed -1", "--seed must be an integer in [0, 2^64-1], not '-1'"},
      {"--seed 18446744073709551616", "--seed must be an integer"},
      {"--seed 1x", "--seed must be an integer"},
      {"--lr -0.1", "--lr must be a finite number >= 0, not -0.1"},
      {"--lr nan", "--lr must be a finite number >= 0"},
      {"--lr inf", "--lr must be a finite number >= 0"},
      {"--weight-decay -1", "--weight-decay must be a finite number >= 0, not -1"},
      {"--epochs 9223372036854775808",
       "the argument ('9223372036854775808') for option '--epochs' is invalid"},
      {"--warmup-steps -3", "--warmup-steps must not be negative"}};
  for (const auto &[args, message] : cases) {
    ToolRun run = sbpTrain(t + args);
    EXPECT_EQ(run.status, 2) << args << "\n" << run.output;
    EXPECT_TRUE(contains(run.output, "sbp-train: error: " + message)) << args << "\n" << run.output;
  }
}

// An empty file name read as "not given": --resume '' started from scratch,
// --save '' saved nothing, both silently.
TEST(SbpTrainCli, EmptyFileNamesAreUsageErrors) {
  for (const char *option : {"--resume", "--save", "--params", "--log", "--save-params",
                             "--keep-indices", "--data"}) {
    const std::string data = std::string(option) == "--data" ? "" : " --data x";
    ToolRun run = sbpTrain(fakeTrainer() + data + " --steps 1 " + option + " ''");
    EXPECT_EQ(run.status, 2) << option << "\n" << run.output;
    EXPECT_TRUE(contains(run.output, std::string("sbp-train: error: ") + option +
                                         " needs a value, not an empty string"))
        << run.output;
  }
}

// --epochs 2^63-1 times the steps of an epoch overflowed: a negative step
// count was printed and the run "succeeded" without a step.
TEST(SbpTrainCli, EpochsTimesStepsPerEpochMustNotOverflow) {
  TempDir data;
  sbp::test::writeIdxDataset(data.path(), 640, 64);
  ToolRun run = sbpTrain(fakeTrainer() + " --data " + data.path() +
                         " --epochs 9223372036854775807");
  EXPECT_EQ(run.status, 2) << run.output;
  EXPECT_TRUE(contains(run.output, "sbp-train: error: --epochs 9223372036854775807 is too many: "
                                   "at 10 steps per epoch"))
      << run.output;
  EXPECT_FALSE(contains(run.output, "epoch 1/")) << run.output;
}

// --warmup-steps past the end of the run was accepted silently: the run ended
// still warming up, never at its base learning rate. As long as the run is fine.
TEST(SbpTrainCli, WarmupLongerThanTheRunIsAUsageError) {
  TempDir data;
  sbp::test::writeIdxDataset(data.path(), 640, 64); // 10 steps per epoch
  const std::string t = fakeTrainer() + " --data " + data.path() + " --threads 1 ";
  ToolRun run = sbpTrain(t + "--steps 10 --warmup-steps 11");
  EXPECT_EQ(run.status, 2) << run.output;
  EXPECT_TRUE(contains(run.output, "sbp-train: error: --warmup-steps 11 is longer than the run's "
                                   "10 steps: the learning rate would never reach its base value "
                                   "(give at most 10)"))
      << run.output;
  EXPECT_FALSE(contains(run.output, "epoch 1/")) << run.output;
  run = sbpTrain(t + "--epochs 2 --warmup-steps 21 --schedule constant");
  EXPECT_EQ(run.status, 2) << run.output;
  EXPECT_TRUE(contains(run.output, "--warmup-steps 21 is longer than the run's 20 steps"))
      << run.output;
  run = sbpTrain(t + "--epochs 2 --warmup-steps 20");
  EXPECT_EQ(run.status, 0) << run.output;
}

// A truncated trainer crashed sbp-train inside dlopen (SIGBUS, no message).
TEST(SbpTrainCli, TruncatedTrainerIsAnErrorNotASignal) {
  TempDir dir;
  const std::string whole = sbp::test::readFile(fakeTrainer());
  for (size_t length : {size_t(100), whole.size() / 3, whole.size() - 1}) {
    std::string path = dir.file("cut" + std::to_string(length) + ".so");
    sbp::test::writeFile(path, whole.substr(0, length));
    ToolRun run = sbpTrain(path + " --info");
    EXPECT_EQ(run.status, 1) << length << "\n" << run.output;
    EXPECT_TRUE(contains(run.output, "sbp-train: error: trainer library '" + path +
                                         "' is truncated or corrupt"))
        << run.output;
  }
}

// Every input: a FIFO blocked forever (the test would time out), a directory
// or a file in the wrong place gave a misleading message.
TEST(SbpTrainCli, InputsThatAreNotRegularFilesAreRefused) {
  TempDir dir, data;
  sbp::test::writeIdxDataset(data.path(), 128, 64);
  ASSERT_EQ(::mkfifo(dir.file("fifo").c_str(), 0600), 0);
  ASSERT_EQ(::mkdir(dir.file("sub").c_str(), 0700), 0);
  const std::string train = fakeTrainer() + " --steps 1 --data " + data.path();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {dir.file("fifo") + " --info", "trainer library '" + dir.file("fifo") +
                                         "' is not a regular file"},
      {dir.file("sub") + " --info", "is not a regular file"},
      {fakeTrainer() + " --steps 1 --data " + data.file("train-images-idx3-ubyte"),
       "is not a directory: give the directory that holds the dataset's files"},
      {train + " --params " + dir.file("fifo"), "--params '" + dir.file("fifo") + "': is a FIFO"},
      {train + " --resume " + dir.file("sub"), "--resume '" + dir.file("sub") +
                                                   "': is a directory, not a regular file"},
      {train + " --keep-indices " + dir.file("sub"), "--keep-indices '" + dir.file("sub") +
                                                         "': is a directory"},
      {train + " --keep-indices " + dir.file("fifo"), "--keep-indices '" + dir.file("fifo") +
                                                          "': is a FIFO"},
      {train + " --params " + dir.file("absent"), "--params '" + dir.file("absent") +
                                                      "': No such file or directory"}};
  for (const auto &[args, message] : cases) {
    ToolRun run = sbpTrain(args);
    EXPECT_EQ(run.status, 1) << args << "\n" << run.output;
    EXPECT_TRUE(contains(run.output, "sbp-train: error: ")) << run.output;
    EXPECT_TRUE(contains(run.output, message)) << args << "\n" << run.output;
  }
  EXPECT_EQ(::rmdir(dir.file("sub").c_str()), 0);
}

// --save and --save-params were first tried after an epoch or the whole run.
TEST(SbpTrainCli, OutputPathsAreCheckedBeforeTraining) {
  TempDir dir, data;
  sbp::test::writeIdxDataset(data.path(), 128, 64);
  ASSERT_EQ(::mkfifo(dir.file("fifo").c_str(), 0600), 0);
  const std::string train = fakeTrainer() + " --steps 2 --data " + data.path();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {" --save " + dir.file("no/ckpt"), "--save '" + dir.file("no/ckpt") + "': directory '" +
                                             dir.file("no") + "' does not exist"},
      {" --save " + dir.path(), "--save '" + dir.path() + "': is a directory"},
      {" --save " + dir.path() + "/", "--save '" + dir.path() + "/': names a directory"},
      {" --save-params " + dir.file("no/p"), "--save-params '" + dir.file("no/p") +
                                                 "': directory"},
      {" --log " + dir.file("fifo"), "--log '" + dir.file("fifo") + "': is a FIFO"},
      {" --save-params " + data.file("train-images-idx3-ubyte") + "/p",
       "--save-params '" + data.file("train-images-idx3-ubyte") + "/p': '" +
           data.file("train-images-idx3-ubyte") + "' is not a directory"}};
  for (const auto &[args, message] : cases) {
    ToolRun run = sbpTrain(train + args);
    EXPECT_EQ(run.status, 1) << args << "\n" << run.output;
    EXPECT_TRUE(contains(run.output, "sbp-train: error: " + message)) << args << "\n" << run.output;
    EXPECT_FALSE(contains(run.output, "epoch 1/1")) << "trained before failing: " << run.output;
  }
  ToolRun dump = sbpTrain(fakeTrainer() + " --data " + data.path() + " --dump-grads " +
                          dir.file("no/g"));
  EXPECT_EQ(dump.status, 1) << dump.output;
  EXPECT_TRUE(contains(dump.output, "--dump-grads")) << dump.output;
}

// A test split of no images reported "test-acc 0.0%", as if the model were broken.
TEST(SbpTrainCli, AnEmptyTestSplitIsReportedAsNoTestData) {
  TempDir dir, data;
  sbp::test::writeIdxDataset(data.path(), 128, 0);
  ToolRun run = sbpTrain(fakeTrainer() + " --steps 2 --threads 1 --data " + data.path() +
                         " --log " + dir.file("run.csv"));
  EXPECT_EQ(run.status, 0) << run.output;
  EXPECT_TRUE(contains(run.output, "(no test data)")) << run.output;
  EXPECT_FALSE(contains(run.output, "test-acc")) << run.output;
  std::string csv = sbp::test::readFile(dir.file("run.csv"));
  EXPECT_TRUE(contains(csv, "\n1,2,")) << csv;
  EXPECT_TRUE(contains(csv, ",,,")) << csv; // empty test columns
}

// ---------------------------------------------------------- the CSV log --

TEST(CsvLog, ResumingDropsRowsPastTheCheckpointAndATornLine) {
  TempDir dir;
  const std::string path = dir.file("run.csv"), header = std::string(kCsvLogHeader) + "\n";
  sbp::test::writeFile(path, header + "1,10,0.5,,,1.0\n2,20,0.4,,,2.0\n3,30,0.3,,,3.0\n4,4");
  dropRowsAfterStep(path, 20);
  EXPECT_EQ(sbp::test::readFile(path), header + "1,10,0.5,,,1.0\n2,20,0.4,,,2.0\n");
  dropRowsAfterStep(path, 20); // nothing more to drop
  EXPECT_EQ(sbp::test::readFile(path), header + "1,10,0.5,,,1.0\n2,20,0.4,,,2.0\n");
  {
    CsvLog log(path, int64_t(10));
    log.row(2, 20, 0.25, 0.5, 87.5, 4.0);
  }
  EXPECT_EQ(sbp::test::readFile(path), header + "1,10,0.5,,,1.0\n2,20,0.250000,0.500000,87.5000,4.000\n");
  sbp::test::writeFile(path, "epoch,st"); // killed while writing the header
  dropRowsAfterStep(path, 0);
  EXPECT_EQ(sbp::test::readFile(path), "");
  dropRowsAfterStep(dir.file("absent.csv"), 5);
  EXPECT_FALSE(sbp::test::fileExists(dir.file("absent.csv")));
}

TEST(CsvLog, AFileThatIsNotAnSbpTrainLogIsLeftAlone) {
  TempDir dir;
  const std::string path = dir.file("data.csv");
  sbp::test::writeFile(path, "name,value\na,1\n");
  EXPECT_THROW(dropRowsAfterStep(path, 0), std::runtime_error);
  EXPECT_EQ(sbp::test::readFile(path), "name,value\na,1\n");
  sbp::test::writeFile(path, std::string(kCsvLogHeader) + "\nnot,a row\n");
  EXPECT_THROW(dropRowsAfterStep(path, 0), std::runtime_error);
}

TEST(Paths, OutputAndInputChecks) {
  TempDir dir;
  sbp::test::writeFile(dir.file("f"), "x");
  EXPECT_NO_THROW(checkOutputPath("--save", dir.file("new")));
  EXPECT_NO_THROW(checkOutputPath("--save", dir.file("f")));
  EXPECT_NO_THROW(checkInputFile("--params", dir.file("f")));
  EXPECT_THROW(checkOutputPath("--save", dir.file("f/g")), std::runtime_error);
  EXPECT_THROW(checkOutputPath("--save", ""), std::runtime_error);
  EXPECT_THROW(checkInputFile("--params", dir.path()), std::runtime_error);
  EXPECT_EQ(nonRegularKind(dir.path()), "a directory");
  EXPECT_EQ(nonRegularKind("/dev/null"), "a device");
  EXPECT_EQ(nonRegularKind(dir.file("f")), "");
}
