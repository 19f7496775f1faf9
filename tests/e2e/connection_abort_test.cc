// The FUSE connection aborted (fusectl, or the kernel tearing it down) while
// lookups wait for their origin's heads: the replies then fail, libfuse frees
// each request anyway, and the daemon must not touch one after its reply. It
// died of SIGSEGV on every try.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <future>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/mount_fixture.h"

namespace originfs::e2e {
namespace {

class ConnectionAbortTest : public MountTest {};

TEST_F(ConnectionAbortTest, RepliesAfterAnAbortDoNotCrashTheDaemon) {
  // The abort lands from a few ms to 0.3 s before the heads.
  const int delay_ms = 400;
  const int abort_after_ms[] = {395, 385, 370, 340, 250, 100};
  for (int round = 0; round < 6; ++round) {
    SCOPED_TRACE(round);
    for (int i = 0; i < 40; ++i) {
      testing::Behavior b;
      b.body = "file " + std::to_string(i) + "\n";
      b.delay_ms = delay_ms;  // every head arrives together, after the abort
      origin_.Set("/r" + std::to_string(round) + "-f" + std::to_string(i), b);
    }
    ASSERT_NO_FATAL_FAILURE(Mount());
    ASSERT_GT(mount_->pid(), 0);
    std::vector<std::future<int>> lookups;
    for (int i = 0; i < 40; ++i) {
      std::string path = M("r" + std::to_string(round) + "-f" + std::to_string(i));
      lookups.push_back(std::async(std::launch::async, [path] { return StatErr(path); }));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(abort_after_ms[round]));
    AbortConnection(mnt_);
    for (auto& l : lookups) EXPECT_NE(l.get(), 0) << "a lookup succeeded on an aborted connection";
    int status = 0;
    ASSERT_TRUE(mount_->WaitExit(10s, &status)) << "the daemon did not stop after the abort";
    EXPECT_FALSE(WIFSIGNALED(status)) << "the daemon died of signal " << WTERMSIG(status) << "\n"
                                      << mount_->Log().substr(0, 4000);
    ASSERT_NO_FATAL_FAILURE(Unmount());
  }
}

}  // namespace
}  // namespace originfs::e2e
