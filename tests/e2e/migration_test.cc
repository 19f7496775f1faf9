// The migration's life: an origin that keeps changing while the mount
// serves (a real nginx with autoindex on, whose tree the test changes).
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
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
    server_ = std::make_unique<WebServer>(WebServerKind::kNginx, tree_, work);
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

}  // namespace
}  // namespace originfs::e2e
