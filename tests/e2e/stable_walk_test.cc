// Landing is not a change to a reader: the first walk of a fresh mount over
// an origin with listings (files land while it runs, directories are made in
// the bucket) sees the same sizes, times and link counts before, during and
// after, as backup tools check them: tar exits 0 ("file changed as we read
// it" is exit 1), a second rsync -a transfers nothing, find -newer agrees.
#include <sys/stat.h>
#include <unistd.h>

#include <string>

#include <gtest/gtest.h>

#include "tests/support/mount_fixture.h"
#include "tests/support/web_server.h"

namespace originfs::e2e {
namespace {

using testing::WebServer;
using testing::WebServerKind;

class StableWalkTest : public MountTest {
 protected:
  void SetUp() override {
    MountTest::SetUp();
    ASSERT_EQ(chmod(root_.c_str(), 0755), 0);  // nginx's workers read as another user
    tree_ = root_ + "/tree";
    ASSERT_EQ(mkdir(tree_.c_str(), 0755), 0);
    auto r =
        RunCommand({"bash", "-c",
                    "set -e; cd '" + tree_ +
                        "'; for d in a a/b c c/d/e; do mkdir -p $d; for f in 1 2 3; do "
                        "head -c $((RANDOM * 3)) /dev/urandom > $d/f$f; done; done; "
                        "for i in $(seq 0 39); do mkdir -p \"many/d $i/sub\"; for f in 1 2 3 4 5; "
                        "do echo $i$f > \"many/d $i/f$f\"; done; echo s > \"many/d $i/sub/s\"; "
                        "done; touch -d '2020-01-02 03:04:05' a/f1; chmod -R a+rX ."},
                   30s);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_EQ(mkdir((root_ + "/server").c_str(), 0755), 0);
    server_ = std::make_unique<WebServer>(WebServerKind::kNginx, tree_, root_ + "/server");
    if (!server_->error().empty()) GTEST_SKIP() << server_->error();
    DaemonOptions o;
    o.rules = {RuleSpec{"", server_->url()}};
    ASSERT_NO_FATAL_FAILURE(Mount(o));
  }
  void TearDown() override {
    MountTest::TearDown();
    server_.reset();
  }
  std::string tree_;
  std::unique_ptr<WebServer> server_;
};

TEST_F(StableWalkTest, TarAsTheFirstWalkSeesNoChange) {
  auto tar = RunCommand({"bash", "-c", "cd '" + mnt_ + "' && tar cf - . | tar tf - | sort"}, 60s);
  EXPECT_EQ(tar.exit_code, 0) << tar.err;
  EXPECT_EQ(tar.err.find("changed"), std::string::npos) << tar.err;
  // tar's own exit code (the pipeline's is the last command's).
  ASSERT_NO_FATAL_FAILURE(Remount());
  auto again = RunCommand({"bash", "-c", "cd '" + mnt_ + "' && tar cf /dev/null ."}, 60s);
  EXPECT_EQ(again.exit_code, 0) << again.err;
}

TEST_F(StableWalkTest, TarOfAFreshMountExitsZero) {
  // Files land while tar reads their directories (and make subdirectories
  // in them): a race each time, so a few fresh mounts.
  for (int i = 0; i < 3; ++i) {
    if (i > 0) {
      ASSERT_NO_FATAL_FAILURE(Unmount());
      auto wipe = RunCommand({"bash", "-c", "rm -rf '" + bucket_ + "'/*"}, 30s);
      ASSERT_EQ(wipe.exit_code, 0) << wipe.err;
      ASSERT_NO_FATAL_FAILURE(Mount(last_options_));
    }
    auto tar = RunCommand({"bash", "-c", "cd '" + mnt_ + "' && tar cf /dev/null ."}, 60s);
    EXPECT_EQ(tar.exit_code, 0) << "fresh mount " << i << ": " << tar.err;
  }
}

TEST_F(StableWalkTest, RsyncTwiceTransfersNothingTheSecondTime) {
  std::string dst = root_ + "/copy";
  auto first = RunCommand({"rsync", "-a", "--itemize-changes", mnt_ + "/", dst + "/"}, 60s);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  auto second = RunCommand({"rsync", "-a", "--itemize-changes", mnt_ + "/", dst + "/"}, 60s);
  ASSERT_EQ(second.exit_code, 0) << second.err;
  EXPECT_EQ(second.out, "") << "the second rsync found changes";
  auto diff = RunCommand({"diff", "-r", tree_, dst}, 60s);
  EXPECT_EQ(diff.exit_code, 0) << diff.out;
}

TEST_F(StableWalkTest, StatBeforeAndAfterLandingAgree) {
  auto before = RunCommand(
      {"bash", "-c", "cd '" + mnt_ + "' && find . -printf '%p %y %s %T@ %C@ %n\\n' | sort"}, 60s);
  ASSERT_EQ(before.exit_code, 0) << before.err;
  auto cat = RunCommand(
      {"bash", "-c", "cd '" + mnt_ + "' && find . -type f -exec cat {} + > /dev/null"}, 60s);
  ASSERT_EQ(cat.exit_code, 0) << cat.err;
  auto after = RunCommand(
      {"bash", "-c", "cd '" + mnt_ + "' && find . -printf '%p %y %s %T@ %C@ %n\\n' | sort"}, 60s);
  EXPECT_EQ(after.out, before.out);
  auto newer = RunCommand({"bash", "-c", "cd '" + mnt_ + "' && find . -newer a/f1 | sort"}, 60s);
  auto newer_again =
      RunCommand({"bash", "-c", "cd '" + mnt_ + "' && find . -newer a/f1 | sort"}, 60s);
  EXPECT_EQ(newer.out, newer_again.out);
}

}  // namespace
}  // namespace originfs::e2e

namespace originfs::e2e {
namespace {

// A directory the origin replaced by a file is picked up without a remount:
// by `originfs refresh MNT DIR/`, or once its parent's listing expired.
class TypeChangeTest : public StableWalkTest {
 protected:
  void Remake() {
    ASSERT_NO_FATAL_FAILURE(Unmount());
    DaemonOptions o;
    o.rules = {RuleSpec{"", server_->url(), std::nullopt, "", "list_ttl = 1"}};
    ASSERT_NO_FATAL_FAILURE(Mount(o));
    auto seen = RunCommand({"bash", "-c", "ls '" + mnt_ + "' '" + M("a") + "'"}, 30s);
    ASSERT_EQ(seen.exit_code, 0) << seen.err;
    auto r = RunCommand(
        {"bash", "-c", "cd '" + tree_ + "' && rm -rf a && echo now-a-file > a && chmod a+r a"},
        30s);
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
};

TEST_F(TypeChangeTest, RefreshOfTheParentPicksItUp) {
  ASSERT_NO_FATAL_FAILURE(Remake());
  auto r = RunCommand({ORIGINFS_BINARY, "refresh", mnt_, "."}, 30s);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(ReadAll(M("a")).data, "now-a-file\n");
}

TEST_F(TypeChangeTest, TheListingsExpiryPicksItUp) {
  ASSERT_NO_FATAL_FAILURE(Remake());
  sleep(2);  // list_ttl = 1, and the kernel's 1 s entry cache
  EXPECT_EQ(ReadAll(M("a")).data, "now-a-file\n");
}

}  // namespace
}  // namespace originfs::e2e
