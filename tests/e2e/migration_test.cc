// The migration's life: an origin that keeps changing while the mount
// serves (a real nginx with autoindex on, whose tree the test changes).
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <memory>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "tests/support/mount_fixture.h"
#include "tests/support/web_server.h"

namespace originfs::e2e {
namespace {

using testing::WebServer;
using testing::WebServerKind;

class MigrationTest : public MountTest {
 protected:
  virtual WebServerKind Kind() const { return WebServerKind::kNginx; }
  void SetUp() override {
    MountTest::SetUp();
    ASSERT_EQ(chmod(root_.c_str(), 0755), 0);  // nginx's workers read as another user
    tree_ = root_ + "/tree";
    std::string work = root_ + "/work";
    ASSERT_EQ(mkdir(tree_.c_str(), 0755), 0);
    ASSERT_EQ(mkdir(work.c_str(), 0755), 0);
    ASSERT_EQ(mkdir(T("dir").c_str(), 0755), 0);
    ASSERT_EQ(WriteAll(T("dir/old.txt"), "old\n"), 0);
    ASSERT_EQ(WriteAll(T("top.txt"), "top\n"), 0);
    server_ = std::make_unique<WebServer>(Kind(), tree_, work);
    if (!server_->error().empty()) GTEST_SKIP() << server_->error();
  }
  void TearDown() override {
    MountTest::TearDown();
    server_.reset();
  }
  std::string T(const std::string& rel) const { return tree_ + "/" + rel; }
  void MountWith(const std::string& rule_extra, int negative_ttl) {
    DaemonOptions o;
    o.rules = {RuleSpec{"", server_->url(), std::nullopt, "", rule_extra}};
    o.negative_ttl = negative_ttl;
    ASSERT_NO_FATAL_FAILURE(Mount(o));
  }
  // Reads path every 100 ms until it reads, at most limit; "" if it never did.
  std::string ReadWhenThere(const std::string& path, std::chrono::seconds limit) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < end) {
      auto r = ReadAll(path);
      if (r.err == 0) return r.data;
      EXPECT_EQ(r.err, ENOENT) << path;
      std::this_thread::sleep_for(100ms);
    }
    return "";
  }

  // Writes rel at the origin with an mtime of its own (nginx's validators
  // are mtime and size).
  void ChangeAtOrigin(const std::string& rel, const std::string& data, const char* when) {
    ASSERT_EQ(WriteAll(T(rel), data), 0);
    ASSERT_EQ(RunCommand({"touch", "-d", when, T(rel)}, 10s).exit_code, 0);
    ASSERT_EQ(chmod(T(rel).c_str(), 0644), 0);
  }

  std::string tree_;
  std::unique_ptr<WebServer> server_;
};

// A file or directory made at the origin in a directory the mount has
// listed is readable by name once the listing is older than negative_ttl
// (list_ttl is 300 s), and the next listing shows it.
TEST_F(MigrationTest, NewOriginFilesAreReadableByNameInListedDirectories) {
  ASSERT_NO_FATAL_FAILURE(MountWith("", 1));
  EXPECT_EQ(ListDir(M("dir")), (std::vector<std::string>{"old.txt"}));
  EXPECT_EQ(ListDir(mnt_), (std::vector<std::string>{"dir", "top.txt"}));
  EXPECT_EQ(StatErr(M("dir/new.txt")), ENOENT);
  ASSERT_EQ(WriteAll(T("dir/new.txt"), "new\n"), 0);
  ASSERT_EQ(mkdir(T("newdir").c_str(), 0755), 0);
  ASSERT_EQ(WriteAll(T("newdir/f.txt"), "f\n"), 0);
  ASSERT_EQ(system(("chmod -R a+rX '" + tree_ + "'").c_str()), 0);
  EXPECT_EQ(ReadWhenThere(M("dir/new.txt"), 60s), "new\n");
  EXPECT_EQ(ReadWhenThere(M("newdir/f.txt"), 60s), "f\n");
  EXPECT_EQ(ListDir(M("dir")), (std::vector<std::string>{"new.txt", "old.txt"}));
  EXPECT_EQ(ListDir(mnt_), (std::vector<std::string>{"dir", "newdir", "top.txt"}));
}

// absent_ttl trades that freshness for requests: a listing's absences are
// then believed for as long as it says.
TEST_F(MigrationTest, AbsentTtlKeepsAListingsAbsencesWithoutRequests) {
  ASSERT_NO_FATAL_FAILURE(MountWith("absent_ttl = 300", 1));
  EXPECT_EQ(ListDir(mnt_), (std::vector<std::string>{"dir", "top.txt"}));
  EXPECT_EQ(ListDir(M("dir")), (std::vector<std::string>{"old.txt"}));
  ASSERT_EQ(WriteAll(T("dir/new.txt"), "new\n"), 0);
  ASSERT_EQ(chmod(T("dir/new.txt").c_str(), 0644), 0);
  std::this_thread::sleep_for(2500ms);  // past negative_ttl
  int before = server_->Gets();
  EXPECT_EQ(StatErr(M("dir/new.txt")), ENOENT);
  EXPECT_EQ(StatErr(M("dir/other.txt")), ENOENT);
  EXPECT_EQ(server_->Gets(), before);
  // refresh of the directory reads its listing again.
  auto r = RunCommand({ORIGINFS_BINARY, "refresh", mnt_, "dir/"}, 30s);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(ReadAll(M("dir/new.txt")).data, "new\n");
}

// revalidate = "0s": every open asks the origin (a conditional GET) and
// waits for the answer, so an index file is never older than the open.
TEST_F(MigrationTest, RevalidateZeroServesTheOriginsCopyAtEveryOpen) {
  ASSERT_NO_FATAL_FAILURE(ChangeAtOrigin("dir/Release", "release 1\n", "2026-01-01 00:00:00"));
  DaemonOptions o;
  o.rules = {
      RuleSpec{"", server_->url(), std::nullopt, "", "suffix = \"Release\"\nrevalidate = \"0s\""},
      RuleSpec{"", server_->url()}};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  EXPECT_EQ(ReadAll(M("dir/Release")).data, "release 1\n");
  EXPECT_EQ(ReadAll(M("top.txt")).data, "top\n");
  ASSERT_TRUE(EventuallyExists(B("dir/Release")));
  // A reader that opened the first version keeps it, whole.
  int held = open(M("dir/Release").c_str(), O_RDONLY);
  ASSERT_GE(held, 0);
  ASSERT_NO_FATAL_FAILURE(
      ChangeAtOrigin("dir/Release", "release 2 is longer\n", "2026-01-02 00:00:00"));
  ASSERT_NO_FATAL_FAILURE(ChangeAtOrigin("top.txt", "top 2\n", "2026-01-02 00:00:00"));
  EXPECT_EQ(ReadAll(M("dir/Release")).data, "release 2 is longer\n");
  EXPECT_EQ(ReadAll(M("top.txt")).data, "top\n") << "a rule without revalidate";
  char buf[64] = {};
  EXPECT_EQ(pread(held, buf, sizeof buf, 0), 10);
  EXPECT_EQ(std::string(buf), "release 1\n");
  close(held);
  EXPECT_EQ(Counter("revalidation_updates"), 1);
  // A local change is never replaced.
  ASSERT_EQ(WriteAll(M("dir/Release"), "edited here\n"), 0);
  ASSERT_NO_FATAL_FAILURE(ChangeAtOrigin("dir/Release", "release 3\n", "2026-01-03 00:00:00"));
  EXPECT_EQ(ReadAll(M("dir/Release")).data, "edited here\n");
  EXPECT_GE(Counter("revalidation_kept"), 1);
  // The origin down: the local copy is served.
  server_.reset();
  EXPECT_EQ(ReadAll(M("dir/Release")).data, "edited here\n");
}

// Without passthrough the kernel would open files without asking the
// daemon (zero_open): not while a rule revalidates at opens.
TEST_F(MigrationTest, RevalidateNeedsNoPassthrough) {
  ASSERT_NO_FATAL_FAILURE(ChangeAtOrigin("top.txt", "one\n", "2026-01-01 00:00:00"));
  DaemonOptions o;
  o.rules = {RuleSpec{"", server_->url(), std::nullopt, "", "revalidate = \"0s\""}};
  o.extra_opts = {"passthrough=off"};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  EXPECT_EQ(ReadAll(M("top.txt")).data, "one\n");
  ASSERT_TRUE(EventuallyExists(B("top.txt")));
  EXPECT_EQ(ReadAll(M("top.txt")).data, "one\n");
  ASSERT_NO_FATAL_FAILURE(ChangeAtOrigin("top.txt", "two!\n", "2026-01-02 00:00:00"));
  EXPECT_EQ(ReadAll(M("top.txt")).data, "two!\n");
}

// A file open for writing through the mount is not replaced under its
// writer (whose writes would go to the old copy): kept until it is closed.
TEST_F(MigrationTest, RevalidationKeepsAFileOpenForWriting) {
  ASSERT_NO_FATAL_FAILURE(ChangeAtOrigin("top.txt", "one\n", "2026-01-01 00:00:00"));
  DaemonOptions o;
  o.rules = {RuleSpec{"", server_->url(), std::nullopt, "", "revalidate = \"0s\""}};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  EXPECT_EQ(ReadAll(M("top.txt")).data, "one\n");
  ASSERT_TRUE(EventuallyExists(B("top.txt")));
  int w = open(M("top.txt").c_str(), O_WRONLY);
  ASSERT_GE(w, 0) << strerror(errno);
  ASSERT_NO_FATAL_FAILURE(ChangeAtOrigin("top.txt", "two!\n", "2026-01-02 00:00:00"));
  EXPECT_EQ(ReadAll(M("top.txt")).data, "one\n") << "a reader's open while it is written";
  ASSERT_EQ(pwrite(w, "ONE", 3, 0), 3);
  close(w);
  EXPECT_EQ(ReadAll(M("top.txt")).data, "ONE\n") << "the writer's bytes, not the origin's";
  EXPECT_GE(Counter("revalidation_kept"), 1);
}

// revalidate = "DURATION": an open checks in the background at most once per
// DURATION; a later open sees the new copy, and no read ever sees a mix.
TEST_F(MigrationTest, RevalidateInTheBackgroundUpdatesALaterOpen) {
  ASSERT_NO_FATAL_FAILURE(ChangeAtOrigin("top.txt", "old version\n", "2026-01-01 00:00:00"));
  ASSERT_NO_FATAL_FAILURE(MountWith("revalidate = \"1s\"", 10));
  EXPECT_EQ(ReadAll(M("top.txt")).data, "old version\n");
  ASSERT_TRUE(EventuallyExists(B("top.txt")));
  ASSERT_NO_FATAL_FAILURE(ChangeAtOrigin("top.txt", "the new version\n", "2026-01-02 00:00:00"));
  auto end = std::chrono::steady_clock::now() + 30s;
  std::string got;
  while (std::chrono::steady_clock::now() < end) {
    got = ReadAll(M("top.txt")).data;
    ASSERT_TRUE(got == "old version\n" || got == "the new version\n") << got;
    if (got == "the new version\n") break;
    std::this_thread::sleep_for(200ms);
  }
  EXPECT_EQ(got, "the new version\n");
  EXPECT_GE(Counter("revalidations"), 1);
  EXPECT_EQ(Counter("revalidation_updates"), 1);
}

// refresh --recursive revalidates every landed file below a directory:
// changed ones are replaced, local edits kept (exit 2), local files left.
TEST_F(MigrationTest, RefreshRecursiveRevalidatesALandedTree) {
  ASSERT_EQ(mkdir(T("dir/sub").c_str(), 0755), 0);
  for (const char* f : {"dir/a.txt", "dir/b.txt", "dir/sub/c.txt", "dir/sub/d.txt"})
    ASSERT_NO_FATAL_FAILURE(ChangeAtOrigin(f, std::string(f) + " 1\n", "2026-01-01 00:00:00"));
  ASSERT_EQ(chmod(T("dir/sub").c_str(), 0755), 0);
  ASSERT_NO_FATAL_FAILURE(MountWith("", 10));
  for (const char* f : {"dir/a.txt", "dir/b.txt", "dir/sub/c.txt", "dir/sub/d.txt"})
    EXPECT_EQ(ReadAll(M(f)).data, std::string(f) + " 1\n");
  ASSERT_TRUE(EventuallyExists(B("dir/sub/d.txt")));
  ASSERT_EQ(WriteAll(M("dir/local.txt"), "made here\n"), 0);
  ASSERT_EQ(WriteAll(M("dir/b.txt"), "edited here\n"), 0);
  for (const char* f : {"dir/a.txt", "dir/b.txt", "dir/sub/c.txt"})
    ASSERT_NO_FATAL_FAILURE(ChangeAtOrigin(f, std::string(f) + " 2\n", "2026-01-02 00:00:00"));
  int before = server_->Gets();
  auto r = RunCommand({ORIGINFS_BINARY, "refresh", "--recursive", mnt_, "."}, 60s);
  EXPECT_EQ(r.exit_code, 2) << r.out << r.err;
  EXPECT_NE(r.out.find("dir/a.txt: updated"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("dir/sub/c.txt: updated"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("dir/b.txt: changed locally, kept"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("1 local (never fetched), 1 kept"), std::string::npos) << r.out;
  EXPECT_EQ(server_->Gets() - before, 3) << "one conditional GET per landed, unedited file";
  EXPECT_EQ(ReadAll(M("dir/a.txt")).data, "dir/a.txt 2\n");
  EXPECT_EQ(ReadAll(M("dir/sub/c.txt")).data, "dir/sub/c.txt 2\n");
  EXPECT_EQ(ReadAll(M("dir/sub/d.txt")).data, "dir/sub/d.txt 1\n");
  EXPECT_EQ(ReadAll(M("dir/b.txt")).data, "edited here\n");
  EXPECT_EQ(ReadAll(M("dir/local.txt")).data, "made here\n");
  EXPECT_EQ(Counter("revalidation_updates"), 2);
}

// state = "retired", given by a live reload, ends the migration of a prefix:
// nothing is asked of its origin any more, and it is a plain directory.
TEST_F(MigrationTest, ARetiredRuleSendsNothingToTheOrigin) {
  ASSERT_NO_FATAL_FAILURE(MountWith("", 10));
  EXPECT_EQ(ReadAll(M("top.txt")).data, "top\n");
  EXPECT_EQ(ListDir(mnt_), (std::vector<std::string>{"dir", "top.txt"}));
  ASSERT_TRUE(EventuallyExists(B("top.txt")));
  ASSERT_EQ(
      WriteAll(mount_->rules_path(),
               RulesToml({RuleSpec{"", server_->url(), std::nullopt, "", "state = \"retired\""}})),
      0);
  auto r = RunCommand({ORIGINFS_BINARY, "reload", mnt_}, 30s);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  std::this_thread::sleep_for(1100ms);  // past the kernel's entry timeout
  int before = server_->Gets();
  EXPECT_EQ(StatErr(M("dir")), ENOENT) << "only at the origin";
  EXPECT_EQ(StatErr(M("dir/old.txt")), ENOENT);
  EXPECT_EQ(StatErr(M("never.txt")), ENOENT);
  EXPECT_EQ(ListDir(mnt_), (std::vector<std::string>{"top.txt"}));
  EXPECT_EQ(ReadAll(M("top.txt")).data, "top\n");
  ASSERT_EQ(WriteAll(M("new.txt"), "made here\n"), 0);
  ASSERT_EQ(mkdir(M("dir").c_str(), 0755), 0);
  ASSERT_EQ(WriteAll(M("dir/old.txt"), "mine\n"), 0);
  EXPECT_EQ(ListDir(M("dir")), (std::vector<std::string>{"old.txt"}));
  EXPECT_EQ(unlink(M("top.txt").c_str()), 0);
  EXPECT_EQ(ListDir(mnt_), (std::vector<std::string>{"dir", "new.txt"}));
  EXPECT_EQ(server_->Gets(), before) << "a retired rule asks nothing";
  auto check = RunCommand({ORIGINFS_BINARY, "check", mount_->rules_path()}, 30s);
  EXPECT_NE(check.out.find("state=retired"), std::string::npos) << check.out;
}

// What each rule fetched: `originfs stats` and labelled metrics.
TEST_F(MigrationTest, FetchesAreCountedPerRule) {
  std::string metrics = root_ + "/metrics.prom";
  DaemonOptions o;
  o.rules = {RuleSpec{"dir/", server_->url()}, RuleSpec{"", server_->url()}};
  o.extra_opts = {"metrics_file=" + metrics, "metrics_interval=1"};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  EXPECT_EQ(ReadAll(M("dir/old.txt")).data, "old\n");
  EXPECT_EQ(ReadAll(M("top.txt")).data, "top\n");
  ASSERT_TRUE(EventuallyExists(B("top.txt")));
  auto st = RunCommand({ORIGINFS_BINARY, "stats", mnt_}, 30s);
  EXPECT_NE(
      st.out.find(
          "rule #1 prefix=\"dir/\": 1 files (4 bytes) fetched, 1 (4 bytes) in the last minute"),
      std::string::npos)
      << st.out;
  EXPECT_NE(st.out.find("rule #2 prefix=\"\": 1 files (4 bytes) fetched"), std::string::npos)
      << st.out;
  std::string want = "originfs_rule_fetches_total{rule=\"1\",prefix=\"dir/\"} 1\n";
  auto end = std::chrono::steady_clock::now() + 20s;
  std::string text;
  while (std::chrono::steady_clock::now() < end &&
         (text = ReadAll(metrics).data).find(want) == std::string::npos)
    std::this_thread::sleep_for(100ms);
  EXPECT_NE(text.find(want), std::string::npos) << text;
  EXPECT_NE(text.find("originfs_rule_retired{rule=\"2\",prefix=\"\"} 0\n"), std::string::npos)
      << text;
  EXPECT_EQ(text.find("# TYPE originfs_rule_fetches_total counter"),
            text.rfind("# TYPE originfs_rule_fetches_total counter"))
      << "one HELP and TYPE per metric";
}

// nginx's JSON listings give exact sizes and times, which verify compares.
class VerifyTest : public MigrationTest {
 protected:
  WebServerKind Kind() const override { return WebServerKind::kNginxJson; }
  CommandResult Originfs(std::vector<std::string> args) {
    args.insert(args.begin(), ORIGINFS_BINARY);
    return RunCommand(args, 60s);
  }
};

TEST_F(VerifyTest, VerifyAndStatsTellHowFarATreeIs) {
  ASSERT_EQ(mkdir(T("dir/sub").c_str(), 0755), 0);
  ASSERT_EQ(WriteAll(T("dir/sub/deep.txt"), "deep\n"), 0);
  ASSERT_EQ(system(("chmod -R a+rX '" + tree_ + "'").c_str()), 0);
  ASSERT_NO_FATAL_FAILURE(MountWith("", 10));
  // Nothing in the bucket yet: 3 files only at the origin, 13 bytes.
  auto v = Originfs({"verify", "--list", mnt_});
  EXPECT_EQ(v.exit_code, 1) << v.out << v.err;
  EXPECT_NE(v.out.find("missing dir/sub/deep.txt"), std::string::npos) << v.out;
  EXPECT_NE(v.out.find("3 files at the origin, 0 in the bucket, 3 missing (13 B)"),
            std::string::npos)
      << v.out;
  EXPECT_EQ(ReadAll(M("top.txt")).data, "top\n");
  ASSERT_TRUE(EventuallyExists(B("top.txt")));
  auto st = Originfs({"stats", mnt_, "."});
  EXPECT_EQ(st.exit_code, 0) << st.out << st.err;
  EXPECT_NE(
      st.out.find("1 of 3 origin files in the bucket (33.3%), 4 B; 2 only at the origin (9 B)"),
      std::string::npos)
      << st.out;
  EXPECT_NE(st.out.find("fetched 1 files (4 B) in the last minute"), std::string::npos) << st.out;
  auto w = Originfs({"warm", mnt_, "--recursive", "."});
  ASSERT_EQ(w.exit_code, 0) << w.out << w.err;
  v = Originfs({"verify", mnt_});
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  EXPECT_NE(v.out.find(".: complete: 3 files at the origin, 3 in the bucket, 0 missing"),
            std::string::npos)
      << v.out;
  st = Originfs({"stats", mnt_, "dir"});
  EXPECT_NE(st.out.find("dir/: 2 of 2 origin files in the bucket (100.0%)"), std::string::npos)
      << st.out;
  EXPECT_NE(st.out.find("ETA done"), std::string::npos) << st.out;
  // Changed at the origin since it landed: differs until refreshed.
  ASSERT_NO_FATAL_FAILURE(ChangeAtOrigin("dir/old.txt", "old, changed\n", "2026-01-02 00:00:00"));
  v = Originfs({"verify", "--list", mnt_, "dir"});
  EXPECT_EQ(v.exit_code, 1) << v.out << v.err;
  EXPECT_NE(v.out.find("differs dir/old.txt"), std::string::npos) << v.out;
  ASSERT_EQ(Originfs({"refresh", mnt_, "dir/old.txt"}).exit_code, 0);
  EXPECT_EQ(Originfs({"verify", mnt_, "dir"}).exit_code, 0);
  // A local edit and a removal are reported, and fail only with --strict.
  ASSERT_EQ(WriteAll(M("top.txt"), "edited\n"), 0);
  ASSERT_EQ(unlink(M("dir/sub/deep.txt").c_str()), 0);
  v = Originfs({"verify", "--list", mnt_});
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  EXPECT_NE(v.out.find("changed locally top.txt"), std::string::npos) << v.out;
  EXPECT_NE(v.out.find("whiteout dir/sub/deep.txt"), std::string::npos) << v.out;
  EXPECT_NE(v.out.find("1 changed locally, 1 whiteouts"), std::string::npos) << v.out;
  EXPECT_EQ(Originfs({"verify", "--strict", mnt_}).exit_code, 1);
  // A file new at the origin: verify reads the listings anew.
  ASSERT_NO_FATAL_FAILURE(ChangeAtOrigin("dir/new.txt", "new\n", "2026-01-03 00:00:00"));
  v = Originfs({"verify", "--list", mnt_, "dir"});
  EXPECT_EQ(v.exit_code, 1) << v.out << v.err;
  EXPECT_NE(v.out.find("missing dir/new.txt"), std::string::npos) << v.out;
  // Retired: the prefix is the bucket's alone, and complete as such.
  ASSERT_EQ(
      WriteAll(mount_->rules_path(),
               RulesToml({RuleSpec{"", server_->url(), std::nullopt, "", "state = \"retired\""}})),
      0);
  ASSERT_EQ(Originfs({"reload", mnt_}).exit_code, 0);
  v = Originfs({"verify", mnt_});
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  EXPECT_NE(v.out.find("0 files at the origin"), std::string::npos) << v.out;
}

}  // namespace
}  // namespace originfs::e2e
