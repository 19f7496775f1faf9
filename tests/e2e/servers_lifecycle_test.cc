// originfs on servers: the daemon under a service manager — a clean SIGTERM
// with a download in flight, and systemd's Type=notify readiness protocol.
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <future>

#include <gtest/gtest.h>

#include "tests/support/servers_support.h"

namespace originfs::e2e {
namespace {

class ServersDaemonTest : public ServersTest {};

TEST_F(ServersDaemonTest, SigtermWithStalledDownloadExitsZeroAndLeavesNothing) {
  testing::Behavior b;
  b.body = PatternBytes(4 * 1024 * 1024, 60);
  b.stall_ms = 60000;  // half the body, then silence (cut short when the origin goes away)
  origin_.Set("/stalled.bin", b);
  ASSERT_NO_FATAL_FAILURE(Mount());
  pid_t pid = mount_->pid();

  auto reader = std::async(std::launch::async, [this] { return ReadAll(M("stalled.bin")); });
  ASSERT_TRUE(WaitUntil([&] { return origin_.GetCount("/stalled.bin") == 1; }, 5s))
      << "no GET reached the origin";
  std::this_thread::sleep_for(300ms);  // the first half arrives
  EXPECT_EQ(GetXattr(mnt_, "user.originfs.inflight").value_or("?"), "1");

  auto sent = std::chrono::steady_clock::now();
  ASSERT_EQ(kill(pid, SIGTERM), 0);
  int status = 0;
  bool exited = WaitPid(pid, 5s, &status);
  EXPECT_TRUE(exited) << "originfs still running 5 s after SIGTERM with a stalled download";
  if (exited) {
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
    auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - sent);
    RecordProperty("sigterm_exit_ms", static_cast<int>(took.count()));
  }
  EXPECT_FALSE(IsMounted(mnt_)) << "SIGTERM left the mount behind";

  ASSERT_EQ(reader.wait_for(10s), std::future_status::ready)
      << "reader still blocked after the daemon exited";
  auto r = reader.get();
  EXPECT_NE(r.err, 0) << "a read of a stalled download completed";
  EXPECT_NE(r.data.size(), b.body.size());
  EXPECT_FALSE(Exists(B("stalled.bin"))) << "partial object left in the bucket";
  EXPECT_TRUE(StagingFiles(bucket_).empty()) << ::testing::PrintToString(StagingFiles(bucket_));
  EXPECT_EQ(ListDir(bucket_), std::vector<std::string>{".originfs"});
}

// Receives one datagram within timeout ("" if none).
std::string Receive(int fd, std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return "";
  char buf[4096];
  ssize_t n = recv(fd, buf, sizeof buf, 0);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "";
}

bool HasLine(const std::string& msg, const std::string& line) {
  for (const auto& l : Lines(msg))
    if (l == line) return true;
  return false;
}

TEST_F(ServersDaemonTest, SdNotifyReadyOnlyOnceMountedAndStoppingOnUnmount) {
  origin_.SetFile("/n.txt", "notified");
  std::string sock_path = root_ + "/notify.sock";
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  struct FdCloser {
    int fd;
    ~FdCloser() { close(fd); }
  } closer{fd};
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  ASSERT_LT(sock_path.size(), sizeof addr.sun_path);
  memcpy(addr.sun_path, sock_path.c_str(), sock_path.size() + 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << strerror(errno);

  std::string rules = WriteRules("rules.toml", {RuleSpec{"", origin_.url()}});
  std::string log = root_ + "/notify-daemon.log";
  NoteLog(log);
  pid_t pid = SpawnLogged(
      {ORIGINFS_BINARY, bucket_, mnt_, "-f", "-o", "rules=" + rules + ",log_level=debug"}, log,
      {{"NOTIFY_SOCKET", sock_path}});
  ASSERT_GT(pid, 0);
  adopted_.push_back(
      std::make_unique<AdoptedMount>(mnt_, pid));  // teardown: unmount, wait, kill this pid

  std::vector<std::string> before_ready;
  bool ready = false, mounted_at_ready = false;
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!ready && std::chrono::steady_clock::now() < deadline) {
    std::string msg = Receive(fd, 100ms);
    if (msg.empty()) {
      ASSERT_NE(waitpid(pid, nullptr, WNOHANG), pid) << "originfs exited before READY=1:\n"
                                                     << ReadFile(log);
      continue;
    }
    if (HasLine(msg, "READY=1")) {
      mounted_at_ready = IsMounted(mnt_);
      ready = true;
    } else {
      before_ready.push_back(msg);
    }
  }
  ASSERT_TRUE(ready) << "no READY=1 within 10 s; other messages: "
                     << ::testing::PrintToString(before_ready);
  EXPECT_TRUE(mounted_at_ready) << "READY=1 sent before the mount was in /proc/self/mountinfo";
  auto r = ReadAll(M("n.txt"));
  EXPECT_EQ(r.err, 0) << r.stage << ": " << ErrnoName(r.err);
  EXPECT_EQ(r.data, "notified");
  EXPECT_EQ(Receive(fd, 200ms), "") << "unexpected message while running";

  auto u = RunCommand({"fusermount3", "-u", mnt_}, 10s);
  EXPECT_EQ(u.exit_code, 0) << u.err;
  std::vector<std::string> after;
  bool stopping = false;
  deadline = std::chrono::steady_clock::now() + 5s;
  while (!stopping && std::chrono::steady_clock::now() < deadline) {
    std::string msg = Receive(fd, 100ms);
    if (msg.empty()) continue;
    after.push_back(msg);
    stopping = HasLine(msg, "STOPPING=1");
  }
  EXPECT_TRUE(stopping) << "no STOPPING=1 within 5 s of unmount; got "
                        << ::testing::PrintToString(after);
  int status = -1;
  EXPECT_TRUE(adopted_.back()->Unmount(&status));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
}

}  // namespace
}  // namespace originfs::e2e
