// The daemon as a process: mounting (foreground and background), bad
// configuration, concurrent readers, and a crash in the middle of a download.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <functional>
#include <future>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

// Only for the library version originfs is built against.
#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 34
#endif
#include <fuse3/fuse_lowlevel.h>

#include "tests/e2e/mount_fixture.h"

namespace originfs::e2e {
namespace {

class LifecycleTest : public MountTest {};

TEST_F(LifecycleTest, MountsAsFuseOriginfs) {
  ASSERT_NO_FATAL_FAILURE(Mount());
  auto mounts = FindMounts(mnt_);
  ASSERT_EQ(mounts.size(), 1u);
  EXPECT_EQ(mounts[0].fstype, "fuse.originfs");
  struct stat st {};
  ASSERT_EQ(StatErr(mnt_, &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
}

TEST_F(LifecycleTest, ForegroundDaemonExitsOnUnmount) {
  ASSERT_NO_FATAL_FAILURE(Mount());
  pid_t pid = mount_->pid();
  ASSERT_GT(pid, 0);
  auto r = RunCommand({"fusermount3", "-u", mnt_}, 10s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  int status = 0;
  ASSERT_TRUE(WaitPid(pid, 5s, &status)) << "originfs -f still running 5 s after fusermount3 -u";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  EXPECT_FALSE(IsMounted(mnt_));
}

TEST_F(LifecycleTest, BackgroundModeReturnsWithTheMountUsable) {
  origin_.SetFile("/bg.txt", "background");
  // Make the daemonised process our child once its parent exits, so teardown
  // can wait for it (and, if it hangs, kill exactly that pid).
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  auto started = mount_->StartBackground(Defaults());
  prctl(PR_SET_CHILD_SUBREAPER, 0);
  ASSERT_TRUE(started);
  EXPECT_EQ(mount_->fstype(), "fuse.originfs");
  // Usable immediately, without polling.
  auto r = ReadAll(M("bg.txt"));
  EXPECT_EQ(r.err, 0) << r.stage << ": " << ErrnoName(r.err);
  EXPECT_EQ(r.data, "background");
  pid_t pid = mount_->pid();
  EXPECT_GT(pid, 0) << "daemon process not found among our children";
  ASSERT_TRUE(mount_->Unmount());
  if (pid > 0) {
    EXPECT_NE(kill(pid, 0), 0) << "daemon still alive after unmount";
  }
}

TEST_F(LifecycleTest, ConcurrentReadersShareOneGet) {
  const std::string body = PatternBytes(3 * 1024 * 1024 + 11, 10);
  testing::Behavior b;
  b.body = body;
  b.delay_ms = 300;  // so every reader arrives while the download runs
  origin_.Set("/popular.bin", b);
  ASSERT_NO_FATAL_FAILURE(Mount());

  constexpr int kReaders = 16;
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::future<ReadResult>> results;
  for (int i = 0; i < kReaders; ++i) {
    results.push_back(std::async(std::launch::async, [&] {
      ready++;
      while (!go) std::this_thread::yield();
      return ReadAll(M("popular.bin"));
    }));
  }
  while (ready < kReaders) std::this_thread::yield();
  go = true;
  for (int i = 0; i < kReaders; ++i) {
    ASSERT_EQ(results[i].wait_for(20s), std::future_status::ready) << "reader " << i << " hangs";
    auto r = results[i].get();
    EXPECT_EQ(r.err, 0) << "reader " << i << ": " << r.stage << ": " << ErrnoName(r.err);
    EXPECT_EQ(r.data.size(), body.size()) << "reader " << i;
    EXPECT_TRUE(r.data == body) << "reader " << i << " got different bytes";
  }
  EXPECT_EQ(origin_.GetCount("/popular.bin"), 1) << ::testing::PrintToString(origin_.Log());
  EXPECT_EQ(origin_.TotalCount(), 1) << ::testing::PrintToString(origin_.Log());
}

// Reads of different keys (named by key_of) download in parallel.
void ReadManyKeysInParallel(testing::TestOrigin& origin, const std::string& mnt,
                            const std::function<std::string(int)>& key_of) {
  constexpr int kKeys = 8;
  std::vector<std::string> bodies;
  for (int i = 0; i < kKeys; ++i) {
    bodies.push_back(PatternBytes(256 * 1024 + i, 20 + i));
    testing::Behavior b;
    b.body = bodies.back();
    b.delay_ms = 250;
    origin.Set("/" + key_of(i), b);
  }
  std::vector<std::future<ReadResult>> results;
  for (int i = 0; i < kKeys; ++i) {
    std::string path = mnt + "/" + key_of(i);
    results.push_back(std::async(std::launch::async, [path] { return ReadAll(path); }));
  }
  for (int i = 0; i < kKeys; ++i) {
    ASSERT_EQ(results[i].wait_for(20s), std::future_status::ready);
    auto r = results[i].get();
    EXPECT_EQ(r.err, 0) << key_of(i) << ": " << r.stage << ": " << ErrnoName(r.err);
    EXPECT_TRUE(r.data == bodies[i]) << key_of(i);
  }
  // Serialised lookups would reach the origin one at a time; each request
  // waits 250 ms, so readers that start together overlap at the origin.
  EXPECT_GE(origin.MaxConcurrent(), 2) << "downloads of different keys were serialised";
}

TEST_F(LifecycleTest, ConcurrentReadersOfKeysInDifferentDirectories) {
  origin_.SetNginxDirectories(true);
  ASSERT_NO_FATAL_FAILURE(Mount());
  ReadManyKeysInParallel(origin_, mnt_,
                         [](int i) { return "d" + std::to_string(i) + "/k" + std::to_string(i); });
}

TEST_F(LifecycleTest, ConcurrentReadersOfKeysInOneDirectory) {
  // libfuse before 3.17 never passes FUSE_PARALLEL_DIROPS to the kernel;
  // fs/kernel_channel.cc sets it in the INIT reply, so these lookups run in
  // parallel instead of one at a time behind the directory's lock.
  ASSERT_NO_FATAL_FAILURE(Mount());
  ReadManyKeysInParallel(origin_, mnt_, [](int i) { return "k" + std::to_string(i); });
}

TEST_F(LifecycleTest, KillDuringDownloadLeavesNoPartialFile) {
  const std::string body = PatternBytes(8 * 1024 * 1024, 11);
  testing::Behavior b;
  b.body = body;
  b.stall_ms = 3000;  // half the body, then a pause
  origin_.Set("/big.bin", b);
  ASSERT_NO_FATAL_FAILURE(Mount());

  auto reader = std::async(std::launch::async, [this] { return ReadAll(M("big.bin")); });
  // Wait until the GET is running and the first half had time to arrive.
  EventuallyRequested(origin_, "/big.bin");
  ASSERT_EQ(origin_.GetCount("/big.bin"), 1);
  std::this_thread::sleep_for(500ms);
  EXPECT_FALSE(Exists(B("big.bin"))) << "object visible in the bucket before it is complete";

  mount_->Kill();
  ASSERT_EQ(reader.wait_for(10s), std::future_status::ready)
      << "reader still blocked after the daemon died";
  auto r = reader.get();
  EXPECT_NE(r.err, 0) << "read completed although the daemon was killed mid-download";
  EXPECT_FALSE(Exists(B("big.bin"))) << "partial object left in the bucket";
  EXPECT_TRUE(StagingFiles(bucket_).empty()) << ::testing::PrintToString(StagingFiles(bucket_));

  // The dead mount answers ENOTCONN (for a name the kernel has not cached);
  // unmount it and start again.
  EXPECT_EQ(StatErr(M("after-death.txt")), ENOTCONN);
  ASSERT_TRUE(mount_->Unmount());
  origin_.SetFile("/big.bin", body);  // no more stalling
  ASSERT_NO_FATAL_FAILURE(Mount(last_options_));
  auto again = ReadAll(M("big.bin"));
  ASSERT_EQ(again.err, 0) << again.stage << ": " << ErrnoName(again.err);
  EXPECT_EQ(again.data.size(), body.size());
  EXPECT_TRUE(again.data == body);
  ASSERT_TRUE(EventuallyExists(B("big.bin")));
  EXPECT_TRUE(ReadAll(B("big.bin")).data == body);
  EXPECT_EQ(origin_.GetCount("/big.bin"), 2);
  EXPECT_TRUE(StagingFiles(bucket_).empty());
}

struct BadRules {
  const char* name;
  const char* toml;  // "%s" is replaced by a valid origin URL
};

class BadRulesTest : public MountTest, public ::testing::WithParamInterface<BadRules> {};

TEST_P(BadRulesTest, ExitsNonZeroNamingTheRuleAndMountsNothing) {
  std::string toml = GetParam().toml;
  if (auto pos = toml.find("%s"); pos != std::string::npos) toml.replace(pos, 2, origin_.url());
  std::string rules = root_ + "/bad.toml";
  ASSERT_EQ(WriteAll(rules, toml), 0);
  auto r = RunCommand(
      {ORIGINFS_BINARY, bucket_, mnt_, "-o", "rules=" + rules + ",log_level=debug", "-f"}, 10s);
  EXPECT_FALSE(r.timed_out) << "originfs kept running with a bad rules file";
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("rule #"), std::string::npos) << "stderr does not name the rule:\n" << r.err;
  EXPECT_FALSE(IsMounted(mnt_));
  EXPECT_EQ(origin_.TotalCount(), 0);
}

const BadRules kBadRules[] = {
    {"NonHttpOrigin",
     "[[rule]]\nprefix = \"a/\"\norigin = \"%s\"\n\n[[rule]]\nprefix = \"\"\norigin = "
     "\"ftp://example.com\"\n"},
    {"UnknownKey", "[[rule]]\nprefix = \"\"\norigin = \"%s\"\ncolour = \"blue\"\n"},
    {"BadDirsMode", "[[rule]]\nprefix = \"\"\norigin = \"%s\"\ndirs = \"sometimes\"\n"},
    {"WritebackNotABool", "[[rule]]\nprefix = \"\"\norigin = \"%s\"\nwriteback = \"yes\"\n"},
    {"DuplicatePrefix",
     "[[rule]]\nprefix = \"x/\"\norigin = \"%s\"\n\n[[rule]]\nprefix = \"x/\"\norigin = "
     "\"http://127.0.0.1:1\"\n"},
};

INSTANTIATE_TEST_SUITE_P(Rules, BadRulesTest, ::testing::ValuesIn(kBadRules),
                         [](const ::testing::TestParamInfo<BadRules>& info) {
                           return info.param.name;
                         });

TEST_F(LifecycleTest, UnparsableRulesFileFails) {
  std::string rules = root_ + "/garbage.toml";
  ASSERT_EQ(WriteAll(rules, "[[rule]\nprefix = \n"), 0);
  auto r = RunCommand({ORIGINFS_BINARY, bucket_, mnt_, "-o", "rules=" + rules, "-f"}, 10s);
  EXPECT_FALSE(r.timed_out);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_FALSE(r.err.empty());
  EXPECT_FALSE(IsMounted(mnt_));
}

}  // namespace
}  // namespace originfs::e2e
