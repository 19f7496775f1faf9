// Removing and renaming names the origin has behaves as on a plain
// directory, and sticks: across remounts, without the index, and on another
// mount of the same bucket. A real nginx with autoindex serves the tree; the
// same commands run on a plain copy of it, and the two are compared.
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "tests/support/mount_fixture.h"
#include "tests/support/web_server.h"

namespace originfs::e2e {
namespace {

using testing::WebServer;
using testing::WebServerKind;

class WhiteoutTest : public MountTest {
 protected:
  void SetUp() override {
    MountTest::SetUp();
    ASSERT_EQ(chmod(root_.c_str(), 0755), 0);  // nginx's workers read as another user
    tree_ = root_ + "/tree";
    ASSERT_EQ(mkdir(tree_.c_str(), 0755), 0);
    auto r =
        RunCommand({"bash", "-c",
                    "set -e; cd '" + tree_ +
                        "'; mkdir -p d/sub e f/g; echo top > top.txt; echo a > d/a.txt; "
                        "echo b > d/sub/b.txt; echo c > d/c.txt; echo e1 > e/e1; echo e2 > e/e2; "
                        "echo g > f/g/h.txt; echo keep > keep.txt; chmod -R a+rX . ; "
                        "cp -a . '" +
                        plain_ + "/'"},
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

  // Runs cmd in the mount and in the plain copy; both must agree on the exit code.
  void Both(const std::string& cmd) {
    auto run = [&](const std::string& dir) {
      return RunCommand({"bash", "-c", "cd '" + dir + "' && " + cmd}, 60s);
    };
    auto m = run(mnt_), p = run(plain_);
    EXPECT_EQ(m.exit_code, p.exit_code) << cmd << "\nmount: " << m.err << "\nplain: " << p.err;
  }
  // Every name with its type, and every file's bytes.
  std::string Tree(const std::string& dir) {
    auto r = RunCommand({"bash", "-c",
                         "cd '" + dir +
                             "' && find . -printf '%P %y\\n' | sort && "
                             "find . -type f | sort | xargs -r md5sum"},
                        60s);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  }
  void ExpectSameAsPlain(const std::string& when) { EXPECT_EQ(Tree(mnt_), Tree(plain_)) << when; }

  std::string tree_;
  std::unique_ptr<WebServer> server_;
};

TEST_F(WhiteoutTest, RmRmRfAndMvOfOriginNamesStick) {
  // Partly landed: one file of d and one of e read first.
  EXPECT_EQ(ReadAll(M("d/a.txt")).data, "a\n");
  EXPECT_EQ(ReadAll(M("e/e1")).data, "e1\n");
  Both("rm top.txt");
  Both("rm -rf d");
  Both("mv e e.moved");
  Both("mv keep.txt kept.txt");
  Both("rm f/g/h.txt && rmdir f/g");
  ExpectSameAsPlain("right after the removals");
  sleep(2);  // the 1 s kernel caches expire: names must not come back
  ExpectSameAsPlain("2 s later");
  // A name made where a removed one was shows only what is made there.
  Both("mkdir d && echo new > d/n.txt && echo again > top.txt");
  ExpectSameAsPlain("after making names again");
  EXPECT_EQ(StatErr(M("d/a.txt")), ENOENT);
  Both("rm top.txt && rm -rf d");
  ExpectSameAsPlain("removed again");

  ASSERT_NO_FATAL_FAILURE(Remount());
  ExpectSameAsPlain("after a remount");
  // The whiteouts are in the bucket, not the index: they survive losing it.
  ASSERT_NO_FATAL_FAILURE(Unmount());
  ASSERT_EQ(RunCommand({"rm", "-rf", bucket_ + "/.originfs/index"}, 10s).exit_code, 0);
  ASSERT_NO_FATAL_FAILURE(Mount(last_options_));
  ExpectSameAsPlain("after a remount without the index");
}

TEST_F(WhiteoutTest, AnotherMountOfTheBucketSeesTheRemovals) {
  Both("rm top.txt && rm -rf d");
  std::string mnt2 = root_ + "/mnt2";
  ASSERT_EQ(mkdir(mnt2.c_str(), 0755), 0);
  OriginfsMount second(bucket_, mnt2, root_ + "/rules2.toml", root_ + "/log2");
  ASSERT_TRUE(second.Start(last_options_));
  EXPECT_EQ(Tree(mnt2), Tree(plain_));
  EXPECT_EQ(StatErr(mnt2 + "/top.txt"), ENOENT);
  EXPECT_EQ(StatErr(mnt2 + "/d/a.txt"), ENOENT);
  EXPECT_EQ(ReadAll(mnt2 + "/e/e2").data, "e2\n");
  EXPECT_TRUE(second.Unmount());
}

TEST_F(WhiteoutTest, RestoreBringsARemovedNameBack) {
  Both("rm top.txt && rm -rf d");
  auto r = RunCommand({ORIGINFS_BINARY, "restore", mnt_, "top.txt", "d", "nothing.txt"}, 30s);
  EXPECT_EQ(r.exit_code, 1) << "nothing.txt was never removed: " << r.out;
  EXPECT_NE(r.out.find("top.txt: restored"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("nothing.txt: failed"), std::string::npos) << r.out;
  EXPECT_EQ(ReadAll(M("top.txt")).data, "top\n");
  EXPECT_EQ(ReadAll(M("d/sub/b.txt")).data, "b\n");
  EXPECT_EQ(Tree(mnt_), Tree(tree_)) << "everything is back";
}

TEST_F(WhiteoutTest, TheBucketKeepsNoMarkVisibleThroughTheMount) {
  Both("rm -rf d && mkdir d && echo x > d/x");
  // The opaque mark is the bucket's, not the directory's: not listed, so cp
  // -a, rsync -X and tar --xattrs do not trip on it.
  auto r = RunCommand({"getfattr", "-d", "-m", "-", M("d")}, 10s);
  EXPECT_EQ(r.out.find("originfs"), std::string::npos) << r.out;
  struct stat st;
  ASSERT_EQ(lstat(B("top.txt").c_str(), &st), -1) << "nothing removed there";
  Both("rm top.txt");
  ASSERT_EQ(lstat(B("top.txt").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode) && st.st_rdev == 0) << "overlayfs's whiteout";
}

// An origin with no listings: what says the origin has a name is the lookup
// that found it. A symlink made where a removed name was cannot carry the
// user.* mark files carry, yet its removal must leave the name removed.
class WhiteoutWithoutListingsTest : public MountTest {
 protected:
  // Every GET's body breaks off: the head answers a lookup, nothing lands,
  // so the index has no record of the name either.
  static testing::Behavior BodyThatAlwaysBreaks() {
    testing::Behavior b;
    b.body = std::string(64 * 1024, 'o');
    b.fail_first = 1000;
    b.fail_by_truncation = true;
    return b;
  }
};

TEST_F(WhiteoutWithoutListingsTest, RemovingASymlinkMadeOverARemovedNameKeepsItRemoved) {
  const testing::Behavior broken = BodyThatAlwaysBreaks();
  origin_.Set("/s.txt", broken);
  origin_.Set("/f.txt", broken);
  ASSERT_NO_FATAL_FAILURE(Mount());
  for (const char* name : {"s.txt", "f.txt"}) {
    struct stat st;
    ASSERT_EQ(lstat(M(name).c_str(), &st), 0) << name << ": the origin has it";
    ASSERT_EQ(unlink(M(name).c_str()), 0) << name;
  }
  ASSERT_EQ(symlink("nowhere", M("s.txt").c_str()), 0);
  ASSERT_EQ(mknod(M("f.txt").c_str(), S_IFIFO | 0644, 0), 0);
  for (int remount = 0; remount < 2; ++remount) {
    if (remount) {
      ASSERT_EQ(symlink("nowhere", M("s.txt").c_str()), 0);
      ASSERT_EQ(mknod(M("f.txt").c_str(), S_IFIFO | 0644, 0), 0);
      ASSERT_NO_FATAL_FAILURE(Remount());
    }
    auto r = RunCommand({"getfattr", "-h", "-d", "-m", "-", M("s.txt"), M("f.txt")}, 10s);
    EXPECT_EQ(r.out.find("originfs"), std::string::npos) << "the bucket's marks show: " << r.out;
    for (const char* name : {"s.txt", "f.txt"}) {
      ASSERT_EQ(unlink(M(name).c_str()), 0) << name;
      EXPECT_EQ(StatErr(M(name)), ENOENT) << name << " came back from the origin";
      sleep(2);  // the kernel's and the daemon's caches expire
      EXPECT_EQ(StatErr(M(name)), ENOENT) << name << " came back from the origin, 2 s later";
    }
  }
}

// Found by the differential fuzzer: a rename of an origin file whose
// download failed answered ENOENT, though the name exists.
TEST_F(WhiteoutWithoutListingsTest, RenamingAnOriginFileThatCannotLandIsEio) {
  const testing::Behavior broken = BodyThatAlwaysBreaks();
  origin_.Set("/m.txt", broken);
  DaemonOptions o = Defaults();
  o.extra_opts = {"retries=0"};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  struct stat st;
  ASSERT_EQ(lstat(M("m.txt").c_str(), &st), 0) << "the origin has it";
  EXPECT_EQ(rename(M("m.txt").c_str(), M("moved.txt").c_str()) == 0 ? 0 : errno, EIO);
  EXPECT_EQ(StatErr(M("moved.txt")), ENOENT);
}

// A file moved onto an origin name that never landed (its download broke)
// takes that name's place: removing it later leaves the name removed, as on
// a plain directory (differential fuzzer seed 3623430497525716).
TEST_F(WhiteoutWithoutListingsTest, AFileMovedOntoAnOriginNameThatNeverLandedStaysRemoved) {
  const testing::Behavior broken = BodyThatAlwaysBreaks();
  origin_.Set("/t.txt", broken);
  DaemonOptions o = Defaults();
  o.extra_opts = {"retries=0"};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  struct stat st;
  ASSERT_EQ(lstat(M("t.txt").c_str(), &st), 0) << "the origin has it";
  ASSERT_EQ(WriteAll(M("mine.txt"), "mine\n"), 0);
  ASSERT_EQ(rename(M("mine.txt").c_str(), M("t.txt").c_str()), 0) << strerror(errno);
  EXPECT_EQ(ReadAll(M("t.txt")).data, "mine\n");
  ASSERT_EQ(unlink(M("t.txt").c_str()), 0) << strerror(errno);
  std::this_thread::sleep_for(1100ms);  // past the kernel's entry timeout
  EXPECT_EQ(StatErr(M("t.txt")), ENOENT);
  ASSERT_NO_FATAL_FAILURE(Remount());
  EXPECT_EQ(StatErr(M("t.txt")), ENOENT);
}

// What replaces such a file takes over its place in turn: moving it away or
// swapping it out (RENAME_EXCHANGE) leaves the origin's name removed, as on a
// plain directory (differential fuzzer seed 3474374397562416: an atomic save
// over a file that had replaced a never-landed origin name let the origin's
// copy back).
TEST_F(WhiteoutWithoutListingsTest, WhatReplacesAFileInAnOriginNamesPlaceKeepsTheNameRemoved) {
  const testing::Behavior broken = BodyThatAlwaysBreaks();
  origin_.Set("/t.txt", broken);
  origin_.Set("/u.txt", broken);
  DaemonOptions o = Defaults();
  o.extra_opts = {"retries=0"};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  struct stat st;
  for (const char* name : {"t.txt", "u.txt"}) {
    ASSERT_EQ(lstat(M(name).c_str(), &st), 0) << name << ": the origin has it";
    ASSERT_EQ(WriteAll(M("first.txt"), "first\n"), 0);
    ASSERT_EQ(rename(M("first.txt").c_str(), M(name).c_str()), 0) << strerror(errno);
  }
  // t.txt: replaced again, then moved away.
  ASSERT_EQ(WriteAll(M("second.txt"), "second\n"), 0);
  ASSERT_EQ(rename(M("second.txt").c_str(), M("t.txt").c_str()), 0) << strerror(errno);
  ASSERT_EQ(rename(M("t.txt").c_str(), M("away.txt").c_str()), 0) << strerror(errno);
  // u.txt: swapped with another file, which is then removed.
  ASSERT_EQ(WriteAll(M("other.txt"), "other\n"), 0);
  ASSERT_EQ(
      renameat2(AT_FDCWD, M("other.txt").c_str(), AT_FDCWD, M("u.txt").c_str(), RENAME_EXCHANGE), 0)
      << strerror(errno);
  EXPECT_EQ(ReadAll(M("other.txt")).data, "first\n");
  ASSERT_EQ(unlink(M("u.txt").c_str()), 0) << strerror(errno);
  std::this_thread::sleep_for(1100ms);  // past the kernel's entry timeout
  for (int remount = 0; remount < 2; ++remount) {
    if (remount) {
      ASSERT_NO_FATAL_FAILURE(Remount());
    }
    EXPECT_EQ(StatErr(M("t.txt")), ENOENT) << "came back from the origin";
    EXPECT_EQ(StatErr(M("u.txt")), ENOENT) << "came back from the origin";
    EXPECT_EQ(ReadAll(M("away.txt")).data, "second\n");
  }
}

}  // namespace
}  // namespace originfs::e2e
