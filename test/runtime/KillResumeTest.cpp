// KillResumeTest.cpp - sbp-train killed with SIGKILL at random moments of a
// short run with --save, then resumed: the checkpoint left behind always
// loads, the resumed run ends bit for bit where an uninterrupted one does, and
// no temporary file or duplicate log row remains.
//
// The moments are random (the seed is printed; SBP_KILL_TEST_SEED repeats a
// run). The run is the fake trainer on a 640-image dataset (10 steps an
// epoch), so most of its time is spent starting up and saving checkpoints,
// where a kill matters.
#include "TestFiles.h"

#include "sbp/trainer.h"

#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <random>
#include <spawn.h>
#include <sstream>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

extern char **environ;

using sbp::test::fakeTrainer;
using sbp::test::TempDir;

namespace {

constexpr int kTrials = 12;
constexpr int kEpochs = 40;

using Clock = std::chrono::steady_clock;

// sbp-train's command line for a run writing into dir.
std::vector<std::string> trainArgs(const std::string &data, const TempDir &dir, bool resume) {
  std::vector<std::string> args = {SBP_TRAIN_EXE, fakeTrainer(), "--data", data, "--epochs",
                                   std::to_string(kEpochs), "--threads", "1", "--seed", "5",
                                   "--save", dir.file("ckpt.safetensors"), "--log",
                                   dir.file("run.csv"), "--save-params",
                                   dir.file("final.safetensors")};
  if (resume) {
    args.push_back("--resume");
    args.push_back(dir.file("ckpt.safetensors"));
  }
  return args;
}

// Starts sbp-train with stdout and stderr to /dev/null; returns its pid.
pid_t spawn(const std::vector<std::string> &args) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
  std::vector<char *> argv;
  for (const std::string &a : args)
    argv.push_back(const_cast<char *>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  return rc == 0 ? pid : -1;
}

// Runs to the end; returns the exit status (128 + signal for a signal).
int runToEnd(const std::vector<std::string> &args) {
  pid_t pid = spawn(args);
  if (pid < 0)
    return -1;
  int raw = 0;
  ::waitpid(pid, &raw, 0);
  return WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
}

// The log's rows without the wall-clock column: epoch, step, losses, accuracy.
std::vector<std::string> logRows(const std::string &path) {
  std::istringstream in(sbp::test::readFile(path));
  std::vector<std::string> rows;
  for (std::string line; std::getline(in, line);)
    rows.push_back(line.substr(0, line.find_last_of(',')));
  return rows;
}

// The status of loading the checkpoint into a fresh trainer.
std::string loadCheckpoint(const std::string &path) {
  sbp_trainer *t = nullptr;
  if (sbp_trainer_create(fakeTrainer().c_str(), nullptr, &t) != SBP_OK)
    return std::string("create: ") + sbp_last_error();
  sbp_status status = sbp_trainer_load_checkpoint(t, path.c_str());
  std::string message = status == SBP_OK ? "" : sbp_trainer_last_error(t);
  sbp_trainer_release(t);
  return message;
}

uint64_t testSeed() {
  const char *env = std::getenv("SBP_KILL_TEST_SEED");
  return env && *env ? std::strtoull(env, nullptr, 10) : std::random_device{}();
}

} // namespace

TEST(SbpTrainKill, KilledAnywhereAndResumedEqualsAnUninterruptedRun) {
  TempDir data, reference;
  sbp::test::writeIdxDataset(data.path(), 640, 64);
  const auto start = Clock::now();
  ASSERT_EQ(runToEnd(trainArgs(data.path(), reference, false)), 0);
  const double run_seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const std::string final_params = sbp::test::readFile(reference.file("final.safetensors"));
  const std::vector<std::string> rows = logRows(reference.file("run.csv"));
  ASSERT_EQ(rows.size(), size_t(kEpochs + 1));

  const uint64_t seed = testSeed();
  std::cout << "kill moments from seed " << seed << " (SBP_KILL_TEST_SEED), run "
            << run_seconds << " s\n";
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> moment(0.0, 1.1 * run_seconds);
  int with_checkpoint = 0, with_temp = 0;
  for (int trial = 0; trial < kTrials; ++trial) {
    SCOPED_TRACE("trial " + std::to_string(trial) + ", seed " + std::to_string(seed));
    TempDir dir;
    pid_t pid = spawn(trainArgs(data.path(), dir, false));
    ASSERT_GT(pid, 0);
    std::this_thread::sleep_for(std::chrono::duration<double>(moment(rng)));
    ::kill(pid, SIGKILL);
    ASSERT_EQ(::waitpid(pid, nullptr, 0), pid);

    for (const std::string &name : dir.entries())
      with_temp += name.find(".tmp.") != std::string::npos;
    const bool has_checkpoint = sbp::test::fileExists(dir.file("ckpt.safetensors"));
    if (has_checkpoint) { // whatever the moment, the last checkpoint is whole
      ++with_checkpoint;
      EXPECT_EQ(loadCheckpoint(dir.file("ckpt.safetensors")), "");
    }
    ASSERT_EQ(runToEnd(trainArgs(data.path(), dir, has_checkpoint)), 0);

    EXPECT_TRUE(sbp::test::readFile(dir.file("final.safetensors")) == final_params)
        << "the resumed run's parameters differ from the uninterrupted run's";
    EXPECT_EQ(logRows(dir.file("run.csv")), rows); // every epoch once, same numbers
    EXPECT_EQ(dir.entries(), (std::vector<std::string>{"ckpt.safetensors", "final.safetensors",
                                                        "run.csv"}));
  }
  std::cout << kTrials << " kills: " << with_checkpoint << " left a checkpoint, " << with_temp
            << " a temporary file\n";
}
