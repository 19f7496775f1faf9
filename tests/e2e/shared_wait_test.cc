// A shared bucket (several hosts): a host waiting for another host's key
// lock follows that host's download. When that host hangs (frozen here with
// SIGSTOP), the waiting host must still stop when told to: SIGTERM or
// unmount ended the wait only once the lock was released, which a frozen
// host never does.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <chrono>
#include <future>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "tests/support/mount_fixture.h"

namespace originfs::e2e {
namespace {

class SharedWaitTest : public MountTest {};

TEST_F(SharedWaitTest, AWaitingHostStopsWhileTheLockHolderIsFrozen) {
  testing::Behavior b;
  b.body = PatternBytes(4 * 1024 * 1024, 9);
  b.stall_at = 256 * 1024;
  b.stall_ms = 30000;  // the holder is mid-download when it freezes
  origin_.Set("/slow.bin", b);
  DaemonOptions o = Defaults();
  o.extra_opts.push_back("shared=on");
  o.extra_opts.push_back("state_dir=" + root_ + "/stateA");
  o.watchdog = 60s;
  ASSERT_NO_FATAL_FAILURE(Mount(o));  // host A at mnt_

  const std::string mnt_b = root_ + "/mntB";
  ASSERT_EQ(mkdir(mnt_b.c_str(), 0755), 0);
  OriginfsMount host_b(bucket_, mnt_b, root_ + "/rulesB.toml", root_ + "/originfsB.log");
  DaemonOptions ob = o;
  ob.extra_opts = {"shared=on", "state_dir=" + root_ + "/stateB"};
  ASSERT_TRUE(host_b.Start(ob));

  // A takes the key's lock and starts downloading; then it freezes.
  auto a_reader = std::async(std::launch::async, [&] { return ReadAll(M("slow.bin")); });
  ASSERT_TRUE(EventuallyRequested(origin_, "/slow.bin"));
  std::this_thread::sleep_for(300ms);
  ASSERT_EQ(kill(mount_->pid(), SIGSTOP), 0);

  // B waits for A's lock.
  auto b_reader = std::async(std::launch::async, [&] { return StatErr(mnt_b + "/slow.bin"); });
  std::this_thread::sleep_for(500ms);
  ASSERT_EQ(origin_.GetCount("/slow.bin"), 1) << "B did not wait for A's lock";
  ASSERT_EQ(kill(host_b.pid(), SIGTERM), 0);
  int status = 0;
  bool stopped = host_b.WaitExit(15s, &status);
  EXPECT_TRUE(stopped) << "SIGTERM did not stop a host waiting for a frozen host's key lock";
  if (!stopped) host_b.Kill();
  AbortConnection(mnt_b);
  (void)b_reader.get();
  EXPECT_TRUE(host_b.Unmount());

  kill(mount_->pid(), SIGCONT);
  mount_->Kill();  // A's transfer stalls for 30 s more; not what is tested
  AbortConnection(mnt_);
  (void)a_reader.get();
}

}  // namespace
}  // namespace originfs::e2e
