// Writes never depend on the origin: with the origin stopped (connection
// refused) or accepting and never answering, names known absent from before
// (a 404 or a listing at any age, of the name or a directory above it) can
// be made, SQLite and git work in the bucket, listings show what was last
// known, origin-only files fail with EIO at once, and an origin that comes
// back is used again.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

#include <gtest/gtest.h>

#include "tests/support/mount_fixture.h"
#include "tests/support/web_server.h"

namespace originfs::e2e {
namespace {

using testing::WebServer;
using testing::WebServerKind;

class OfflineTest : public MountTest {
 protected:
  void SetUp() override {
    MountTest::SetUp();
    ASSERT_EQ(chmod(root_.c_str(), 0755), 0);  // nginx's workers read as another user
    tree_ = root_ + "/tree";
    ASSERT_EQ(mkdir(tree_.c_str(), 0755), 0);
    auto r = RunCommand({"bash", "-c",
                         "set -e; cd '" + tree_ +
                             "'; mkdir -p d/sub; echo a > a.txt; echo b > d/b.txt; "
                             "echo c > d/sub/c.txt; sqlite3 app.db 'create table t(x); "
                             "insert into t values (1)'; chmod -R a+rX ."},
                        30s);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_EQ(mkdir((root_ + "/server").c_str(), 0755), 0);
    server_ = std::make_unique<WebServer>(WebServerKind::kNginx, tree_, root_ + "/server");
    if (!server_->error().empty()) GTEST_SKIP() << server_->error();
  }
  void TearDown() override {
    MountTest::TearDown();
    server_.reset();
  }
  CommandResult Sh(const std::string& cmd) {
    return RunCommand({"bash", "-c", "cd '" + mnt_ + "' && " + cmd}, 60s);
  }

  std::string tree_;
  std::unique_ptr<WebServer> server_;
};

TEST_F(OfflineTest, WritesWorkWhileTheOriginIsStopped) {
  DaemonOptions o;
  // Listings and 404s expire at once: only what is kept at any age helps.
  o.rules = {RuleSpec{"", server_->url(), std::nullopt, "", "list_ttl = 1"}};
  o.negative_ttl = 1;
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  // Listings of . and d (nothing below d is looked up, so nothing there lands).
  auto walk = Sh("ls . d > /dev/null && cat a.txt && sqlite3 app.db 'select count(*) from t'");
  ASSERT_EQ(walk.exit_code, 0) << walk.err;
  EXPECT_EQ(walk.out, "a\n1\n");

  server_.reset();  // connection refused from now on
  sleep(2);         // every listing and 404 expired

  auto w = Sh("echo x > new.txt && mkdir newdir && echo y > newdir/f && echo z > d/new.txt");
  EXPECT_EQ(w.exit_code, 0) << w.err;
  auto db = Sh("sqlite3 app.db 'insert into t values (2); select count(*) from t'");
  EXPECT_EQ(db.exit_code, 0) << db.err;
  EXPECT_EQ(db.out, "2\n");
  auto git =
      Sh("git init -q repo && cd repo && echo 1 > f && git add f && "
         "git -c user.email=t@e -c user.name=t commit -qm one && git log --format=%s");
  EXPECT_EQ(git.exit_code, 0) << git.err;
  EXPECT_EQ(git.out, "one\n");

  // The last listing known, with the bucket's names.
  auto ls = Sh("ls . d");
  EXPECT_EQ(ls.exit_code, 0) << ls.err;
  EXPECT_EQ(ls.out, ".:\na.txt\napp.db\nd\nnew.txt\nnewdir\nrepo\n\nd:\nb.txt\nnew.txt\nsub\n");
  // A file only the origin has: EIO.
  EXPECT_EQ(ReadAll(M("d/sub/c.txt")).err, EIO);
  EXPECT_EQ(ReadAll(M("d/b.txt")).err, EIO);
  // Nothing is known of a dot name's absence (listings never show them).
  EXPECT_EQ(WriteAll(M(".hidden"), "h"), EIO);
  auto stats = RunCommand({ORIGINFS_BINARY, "stats", mnt_}, 10s);
  EXPECT_NE(stats.out.find("down since"), std::string::npos) << stats.out;
}

TEST_F(OfflineTest, OfflineAbsentTakesUnknownNamesAsAbsent) {
  DaemonOptions o;
  o.rules = {RuleSpec{"", server_->url(), std::nullopt, "", "offline = \"absent\""}};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  EXPECT_EQ(ListDir(M("d")).size(), 2u);  // b.txt, sub
  server_.reset();
  EXPECT_EQ(WriteAll(M(".hidden"), "h"), 0);
  EXPECT_EQ(ReadAll(M(".hidden")).data, "h");
  EXPECT_EQ(StatErr(M("a.txt")), ENOENT) << "the trade-off: unknown names read as absent";
  EXPECT_EQ(WriteAll(M("new.txt"), "n"), 0);
  EXPECT_EQ(StatErr(M("d/b.txt")), EIO) << "a name the last listing shows is never hidden";
}

// An origin that accepts connections and never answers: the first lookup
// waits for the rule's timeout, the next ones are not sent.
TEST_F(OfflineTest, AnOriginThatNeverAnswersCostsOneTimeout) {
  DaemonOptions o;
  o.rules = {RuleSpec{"", origin_.url(), std::nullopt, "", "timeout = 2\nretries = 0"}};
  o.negative_ttl = 1;
  origin_.SetFile("/a.txt", "a");
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  EXPECT_EQ(StatErr(M("new.txt")), ENOENT);  // a 404, remembered
  EXPECT_EQ(StatErr(M("db-journal")), ENOENT);
  origin_.SetFaults(testing::OriginFaults{.delay_ms = 6000});
  sleep(2);                             // the 404s expired
  EXPECT_EQ(StatErr(M("a.txt")), EIO);  // waits for the rule's timeout
  EXPECT_EQ(WriteAll(M("new.txt"), "n"), 0) << "absent as last known";
  EXPECT_EQ(WriteAll(M("db-journal"), "j"), 0);
  EXPECT_EQ(StatErr(M("b.txt")), EIO);
  EXPECT_EQ(origin_.Count("/b.txt"), 0) << "the origin is known down: nothing waits on it";
  origin_.SetFaults(testing::OriginFaults{});
}

TEST_F(OfflineTest, AnOriginThatComesBackIsUsedAgain) {
  // A port nothing listens on (connection refused), then python's server on it.
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ASSERT_EQ(bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  close(s);
  std::string port = std::to_string(ntohs(addr.sin_port));
  DaemonOptions o;
  o.rules = {RuleSpec{"", "http://127.0.0.1:" + port}};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  EXPECT_EQ(StatErr(M("a.txt")), EIO);
  pid_t pid = fork();
  if (pid == 0) {
    if (chdir(tree_.c_str()) != 0) _exit(127);
    execlp("python3", "python3", "-m", "http.server", port.c_str(), "--bind", "127.0.0.1",
           static_cast<char*>(nullptr));
    _exit(127);
  }
  ASSERT_GT(pid, 0);
  // Probed every second in the background.
  bool back = false;
  for (int i = 0; i < 100 && !back; ++i) {
    back = ReadAll(M("a.txt")).data == "a\n";
    if (!back) usleep(100 * 1000);
  }
  EXPECT_TRUE(back);
  EXPECT_NE(mount_->Log().find("answers again"), std::string::npos);
  ASSERT_NO_FATAL_FAILURE(Unmount());
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
}

}  // namespace
}  // namespace originfs::e2e
