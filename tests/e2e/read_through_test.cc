// Read-through of missing keys: bytes, write-back into the bucket, metadata
// before open, rule fall-through, not-found handling and its memory.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <thread>

#include <gtest/gtest.h>

#include "tests/support/mount_fixture.h"

namespace originfs::e2e {
namespace {

class ReadThroughTest : public MountTest {};

TEST_F(ReadThroughTest, ServesOriginBytesAndWritesThemBack) {
  const std::string body = PatternBytes(300 * 1024 + 7, 1);
  origin_.SetFile("/hello.bin", body);
  ASSERT_NO_FATAL_FAILURE(Mount());

  auto r = ReadAll(M("hello.bin"));
  ASSERT_EQ(r.err, 0) << r.stage << ": " << ErrnoName(r.err);
  EXPECT_EQ(r.data.size(), body.size());
  EXPECT_TRUE(r.data == body) << "bytes read through the mount differ from the origin's";
  EXPECT_EQ(origin_.GetCount("/hello.bin"), 1);

  // Write-back: the object is a plain file in the bucket now.
  ASSERT_TRUE(EventuallyExists(B("hello.bin"))) << "not written back into the bucket";
  auto b = ReadAll(B("hello.bin"));
  ASSERT_EQ(b.err, 0) << "not in the bucket: " << ErrnoName(b.err);
  EXPECT_TRUE(b.data == body);
  EXPECT_TRUE(StagingFiles(bucket_).empty());
}

TEST_F(ReadThroughTest, LaterReadsAreLocal) {
  const std::string body = PatternBytes(64 * 1024, 2);
  origin_.SetFile("/again.bin", body);
  ASSERT_NO_FATAL_FAILURE(Mount());
  ASSERT_EQ(ReadAll(M("again.bin")).data, body);
  ASSERT_EQ(origin_.TotalCount(), 1);
  ASSERT_TRUE(EventuallyExists(B("again.bin")));

  // Past the kernel's entry/attr cache (1 s), so the daemon is asked again.
  std::this_thread::sleep_for(1200ms);
  EXPECT_EQ(ReadAll(M("again.bin")).data, body);
  EXPECT_EQ(origin_.TotalCount(), 1) << "second read went to the origin";

  // And across a remount, when nothing is cached in the daemon either.
  ASSERT_NO_FATAL_FAILURE(Remount());
  EXPECT_EQ(ReadAll(M("again.bin")).data, body);
  EXPECT_EQ(origin_.TotalCount(), 1) << "read after remount went to the origin";
}

TEST_F(ReadThroughTest, KeyIsPercentEncodedInTheUrl) {
  origin_.SetFile("/a b%#?.txt", "odd name");
  ASSERT_NO_FATAL_FAILURE(Mount());
  auto r = ReadAll(M("a b%#?.txt"));
  ASSERT_EQ(r.err, 0) << r.stage << ": " << ErrnoName(r.err);
  EXPECT_EQ(r.data, "odd name");
  EXPECT_EQ(origin_.GetCount("/a b%#?.txt"), 1);
  EXPECT_TRUE(EventuallyExists(B("a b%#?.txt")));
}

TEST_F(ReadThroughTest, StatBeforeOpenShowsOriginSizeAndMtime) {
  testing::Behavior b;
  b.body = PatternBytes(12345, 3);
  b.last_modified = "Wed, 21 Oct 2015 07:28:00 GMT";
  origin_.Set("/meta.bin", b);
  ASSERT_NO_FATAL_FAILURE(Mount());

  struct stat st {};
  ASSERT_EQ(StatErr(M("meta.bin"), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode)) << std::oct << st.st_mode;
  EXPECT_EQ(st.st_size, 12345);
  EXPECT_EQ(st.st_mtime, 1445412480);

  auto r = ReadAll(M("meta.bin"));
  ASSERT_EQ(r.err, 0) << r.stage << ": " << ErrnoName(r.err);
  EXPECT_TRUE(r.data == b.body);
  struct stat bst {};
  ASSERT_TRUE(EventuallyExists(B("meta.bin")));
  ASSERT_EQ(StatErr(B("meta.bin"), &bst), 0);
  EXPECT_EQ(bst.st_size, 12345);
  EXPECT_EQ(bst.st_mtime, 1445412480) << "bucket copy does not carry Last-Modified";
  // One round trip answered both the stat and the read.
  EXPECT_EQ(origin_.TotalCount(), 1) << ::testing::PrintToString(origin_.Log());
}

TEST_F(ReadThroughTest, FirstReadIsNotAChangeToTheFileOrItsDirectory) {
  // tar compares a file's ctime and size before and after reading it; the
  // first read of an origin file lands it (and fills its directory), which
  // must not look like a change. A change after that must.
  origin_.SetNginxDirectories(true);
  for (int i = 0; i < 5; ++i) origin_.SetFile("/t/f" + std::to_string(i), PatternBytes(70000, i));
  ASSERT_NO_FATAL_FAILURE(Mount());
  struct stat dir_before {
  }, before{}, after{};
  ASSERT_EQ(StatErr(M("t"), &dir_before), 0);
  ASSERT_EQ(StatErr(M("t/f0"), &before), 0);
  int fd = open(M("t/f0").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << ErrnoName(errno);
  std::string data(80000, '\0');
  ssize_t n = 0, got = 0;
  while ((n = read(fd, data.data() + got, data.size() - got)) > 0) got += n;
  ASSERT_EQ(got, 70000);
  ASSERT_TRUE(EventuallyExists(B("t/f0")));
  ASSERT_EQ(fstat(fd, &after), 0);
  close(fd);
  EXPECT_EQ(after.st_ctim.tv_sec, before.st_ctim.tv_sec);
  EXPECT_EQ(after.st_ctim.tv_nsec, before.st_ctim.tv_nsec);
  EXPECT_EQ(after.st_size, before.st_size);

  // The real tar, over files read for the first time and their directory.
  auto r =
      RunCommand({"tar", "-C", mnt_, "-cf", root_ + "/t.tar", "t/f1", "t/f2", "t/f3", "t"}, 60s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  struct stat dir_after {};
  ASSERT_EQ(StatErr(M("t"), &dir_after), 0);
  EXPECT_EQ(dir_after.st_ctim.tv_sec, dir_before.st_ctim.tv_sec);
  EXPECT_GE(dir_after.st_size, dir_before.st_size);

  // A change through the mount shows.
  ASSERT_EQ(chmod(M("t/f0").c_str(), 0600), 0);
  struct stat changed {};
  ASSERT_EQ(StatErr(M("t/f0"), &changed), 0);
  EXPECT_NE(changed.st_ctim.tv_sec * 1000000000L + changed.st_ctim.tv_nsec,
            before.st_ctim.tv_sec * 1000000000L + before.st_ctim.tv_nsec);
  ASSERT_EQ(WriteAll(M("t/new.txt"), "new"), 0);
  struct stat dir_changed {};
  ASSERT_EQ(StatErr(M("t"), &dir_changed), 0);
  EXPECT_NE(dir_changed.st_mtim.tv_sec * 1000000000L + dir_changed.st_mtim.tv_nsec,
            dir_before.st_mtim.tv_sec * 1000000000L + dir_before.st_mtim.tv_nsec);
}

TEST_F(ReadThroughTest, FallsThroughToTheNextRuleOn404) {
  testing::TestOrigin second;
  second.SetFile("/data/x.txt", "from the second origin");
  second.SetFile("/data/y.txt", "second's y");
  origin_.SetFile("/data/y.txt", "first's y");
  DaemonOptions o;
  o.rules = {RuleSpec{"data/", origin_.url()}, RuleSpec{"", second.url()}};
  ASSERT_NO_FATAL_FAILURE(Mount(o));

  auto x = ReadAll(M("data/x.txt"));
  ASSERT_EQ(x.err, 0) << x.stage << ": " << ErrnoName(x.err);
  EXPECT_EQ(x.data, "from the second origin");
  EXPECT_EQ(origin_.GetCount("/data/x.txt"), 1);
  EXPECT_EQ(second.GetCount("/data/x.txt"), 1);

  // The first rule that has it wins.
  EXPECT_EQ(ReadAll(M("data/y.txt")).data, "first's y");
  EXPECT_EQ(second.GetCount("/data/y.txt"), 0);
  ASSERT_NO_FATAL_FAILURE(Unmount());  // before `second` goes away
}

TEST_F(ReadThroughTest, MissingEverywhereIsEnoent) {
  testing::TestOrigin second;
  DaemonOptions o;
  o.rules = {RuleSpec{"data/", origin_.url()}, RuleSpec{"", second.url()}};
  ASSERT_NO_FATAL_FAILURE(Mount(o));

  EXPECT_EQ(StatErr(M("data/none.txt")), ENOENT);
  auto r = ReadAll(M("data/none2.txt"));
  EXPECT_EQ(r.err, ENOENT) << ErrnoName(r.err);
  EXPECT_EQ(r.stage, "open");
  EXPECT_EQ(origin_.GetCount("/data/none.txt"), 1);
  EXPECT_EQ(second.GetCount("/data/none.txt"), 1);
  EXPECT_FALSE(Exists(B("data/none.txt")));
  ASSERT_NO_FATAL_FAILURE(Unmount());
}

TEST_F(ReadThroughTest, NoRuleMeansEnoentWithoutARequest) {
  origin_.SetFile("/other.txt", "not reachable: no rule covers it");
  DaemonOptions o;
  o.rules = {RuleSpec{"only/", origin_.url()}};
  ASSERT_NO_FATAL_FAILURE(Mount(o));

  EXPECT_EQ(StatErr(M("other.txt")), ENOENT);
  EXPECT_EQ(ReadAll(M("other.txt")).err, ENOENT);
  EXPECT_EQ(StatErr(M("deeper/other.txt")), ENOENT);
  EXPECT_EQ(origin_.TotalCount(), 0) << ::testing::PrintToString(origin_.Log());
}

TEST_F(ReadThroughTest, NotFoundIsRememberedForNegativeTtl) {
  DaemonOptions o = Defaults();
  o.negative_ttl = 30;
  ASSERT_NO_FATAL_FAILURE(Mount(o));

  EXPECT_EQ(StatErr(M("ghost.txt")), ENOENT);
  EXPECT_EQ(origin_.GetCount("/ghost.txt"), 1);
  int after_first = origin_.TotalCount();

  // Past the kernel's negative dentry timeout (1 s), inside negative_ttl: the
  // daemon answers from memory even though the origin has it now.
  origin_.SetFile("/ghost.txt", "too late");
  std::this_thread::sleep_for(1200ms);
  EXPECT_EQ(StatErr(M("ghost.txt")), ENOENT);
  EXPECT_EQ(origin_.TotalCount(), after_first) << ::testing::PrintToString(origin_.Log());
}

TEST_F(ReadThroughTest, NotFoundIsForgottenAfterNegativeTtl) {
  DaemonOptions o = Defaults();
  o.negative_ttl = 1;
  ASSERT_NO_FATAL_FAILURE(Mount(o));

  EXPECT_EQ(StatErr(M("soon.txt")), ENOENT);
  origin_.SetFile("/soon.txt", "arrived");
  std::this_thread::sleep_for(2200ms);
  auto r = ReadAll(M("soon.txt"));
  ASSERT_EQ(r.err, 0) << r.stage << ": " << ErrnoName(r.err);
  EXPECT_EQ(r.data, "arrived");
  EXPECT_EQ(origin_.GetCount("/soon.txt"), 2);
}

TEST_F(ReadThroughTest, CreateAfterNotFoundIsVisibleAtOnce) {
  DaemonOptions o = Defaults();
  o.negative_ttl = 30;
  ASSERT_NO_FATAL_FAILURE(Mount(o));

  ASSERT_EQ(StatErr(M("new.txt")), ENOENT);
  ASSERT_EQ(WriteAll(M("new.txt"), "made here"), 0);
  struct stat st {};
  EXPECT_EQ(StatErr(M("new.txt"), &st), 0);
  EXPECT_EQ(st.st_size, 9);
  EXPECT_EQ(ReadAll(M("new.txt")).data, "made here");
  EXPECT_EQ(ReadAll(B("new.txt")).data, "made here");

  // Also once the kernel's caches have expired: the daemon must not answer
  // from its remembered 404.
  std::this_thread::sleep_for(1200ms);
  EXPECT_EQ(StatErr(M("new.txt")), 0);
  EXPECT_EQ(ReadAll(M("new.txt")).data, "made here");
  EXPECT_EQ(origin_.GetCount("/new.txt"), 1);

  // Same for a directory.
  ASSERT_EQ(StatErr(M("newdir")), ENOENT);
  ASSERT_EQ(mkdir(M("newdir").c_str(), 0755), 0) << ErrnoName(errno);
  std::this_thread::sleep_for(1200ms);
  struct stat dst {};
  EXPECT_EQ(StatErr(M("newdir"), &dst), 0);
  EXPECT_TRUE(S_ISDIR(dst.st_mode));
}

TEST_F(ReadThroughTest, WritebackFalseServesWithoutStoring) {
  const std::string body = PatternBytes(200 * 1024, 4);
  origin_.SetFile("/volatile.bin", body);
  DaemonOptions o;
  o.rules = {RuleSpec{"", origin_.url(), false}};
  ASSERT_NO_FATAL_FAILURE(Mount(o));

  auto r = ReadAll(M("volatile.bin"));
  ASSERT_EQ(r.err, 0) << r.stage << ": " << ErrnoName(r.err);
  EXPECT_TRUE(r.data == body);
  EXPECT_FALSE(Exists(B("volatile.bin"))) << "writeback=false object was stored in the bucket";
  EXPECT_TRUE(StagingFiles(bucket_).empty()) << ::testing::PrintToString(StagingFiles(bucket_));
}

TEST_F(ReadThroughTest, FileInBucketWinsWithoutARequest) {
  ASSERT_EQ(WriteAll(B("local.txt"), "local bytes"), 0);
  origin_.SetFile("/local.txt", "origin's different bytes");
  ASSERT_NO_FATAL_FAILURE(Mount());

  struct stat st {};
  ASSERT_EQ(StatErr(M("local.txt"), &st), 0);
  EXPECT_EQ(st.st_size, 11);
  EXPECT_EQ(ReadAll(M("local.txt")).data, "local bytes");
  EXPECT_EQ(origin_.TotalCount(), 0) << ::testing::PrintToString(origin_.Log());
}

TEST_F(ReadThroughTest, LookedUpLocalFileKeepsItsIdentity) {
  // A looked-up file is opened for reading at lookup time, by its name: what
  // is read later must still be the file that was looked up, whatever the
  // name points to by then (opening by name at the first read would get the
  // wrong one). And a FIFO is looked up without being opened.
  ASSERT_EQ(mkdir(B("d").c_str(), 0755), 0);
  ASSERT_EQ(WriteAll(B("d/a.txt"), "first file"), 0);
  ASSERT_EQ(WriteAll(B("d/b.txt"), "second file, longer"), 0);
  ASSERT_EQ(mkfifo(B("d/pipe").c_str(), 0644), 0);
  ASSERT_NO_FATAL_FAILURE(Mount());

  int fd = open(M("d/a.txt").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << ErrnoName(errno);
  ASSERT_EQ(rename(B("d/b.txt").c_str(), B("d/a.txt").c_str()), 0);  // behind the mount's back
  char buf[64] = {0};
  ssize_t n = pread(fd, buf, sizeof buf, 0);
  close(fd);
  ASSERT_EQ(n, 10) << ErrnoName(errno);
  EXPECT_EQ(std::string(buf, 10), "first file");

  struct stat st {};
  ASSERT_EQ(StatErr(M("d/pipe"), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  EXPECT_EQ(origin_.TotalCount(), 0) << ::testing::PrintToString(origin_.Log());
}

TEST_F(ReadThroughTest, DeletedMirroredFileStaysDeletedUntilRestored) {
  origin_.SetFile("/cycle.txt", "version 1");
  ASSERT_NO_FATAL_FAILURE(Mount());
  ASSERT_EQ(ReadAll(M("cycle.txt")).data, "version 1");
  ASSERT_TRUE(EventuallyExists(B("cycle.txt")));

  ASSERT_EQ(unlink(M("cycle.txt").c_str()), 0) << ErrnoName(errno);
  origin_.SetFile("/cycle.txt", "version 2, longer");
  EXPECT_EQ(StatErr(M("cycle.txt")), ENOENT) << "a delete sticks (whiteout)";
  EXPECT_EQ(origin_.GetCount("/cycle.txt"), 1);
  auto restored = RunCommand({ORIGINFS_BINARY, "restore", mnt_, "cycle.txt"}, 10s);
  ASSERT_EQ(restored.exit_code, 0) << restored.out << restored.err;
  auto r = ReadAll(M("cycle.txt"));
  ASSERT_EQ(r.err, 0) << r.stage << ": " << ErrnoName(r.err);
  EXPECT_EQ(r.data, "version 2, longer");
  EXPECT_EQ(origin_.GetCount("/cycle.txt"), 2);
  ASSERT_TRUE(EventuallyExists(B("cycle.txt")));
  EXPECT_EQ(ReadAll(B("cycle.txt")).data, "version 2, longer");
}

}  // namespace
}  // namespace originfs::e2e
