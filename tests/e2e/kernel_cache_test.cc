// Long kernel caches for names in the bucket: the kernel keeps what it was
// told for an hour, and every change another program makes in the bucket
// (an uploader, rsync into the new storage) reaches it as an invalidation
// of exactly what changed (fs/bucket_watch.h). Each change is made straight
// in the bucket after the mount has shown the old state, and must be seen
// through the mount (waited for with a generous bound: no timed assertion;
// bench/run measures how soon).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/mount_fixture.h"

namespace originfs::e2e {
namespace {

using namespace std::chrono_literals;

class KernelCacheTest : public MountTest {
 protected:
  void SetUp() override {
    MountTest::SetUp();
    origin_.SetFile("/origin.txt", "from the origin\n");
    Write(B("a.txt"), "first\n");
    ASSERT_EQ(mkdir(B("d").c_str(), 0755), 0);
    Write(B("d/in.txt"), "inside\n");
    ASSERT_NO_FATAL_FAILURE(Mount());
  }
  static void Write(const std::string& path, const std::string& body) {
    ASSERT_EQ(WriteAll(path, body), 0) << path;
  }
  // True once check() holds through the mount (10 s at most).
  static bool Eventually(const std::function<bool()>& check) {
    for (auto end = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < end;
         std::this_thread::sleep_for(20ms)) {
      if (check()) return true;
    }
    return check();
  }
  std::string Read(const std::string& rel) const {
    auto r = ReadAll(M(rel));
    return r.err ? "<" + ErrnoName(r.err) + ">" : r.data;
  }
  int StatErrno(const std::string& rel) const {
    struct stat st;
    return stat(M(rel).c_str(), &st) == 0 ? 0 : errno;
  }
};

// What makes the mount as fast as the disk for files seen before: a second
// stat long after the first is answered by the kernel, not the daemon.
TEST_F(KernelCacheTest, NamesInTheBucketStayCachedLongerThanASecond) {
  struct stat st;
  ASSERT_EQ(stat(M("d/in.txt").c_str(), &st), 0);
  ASSERT_EQ(stat(M("a.txt").c_str(), &st), 0);
  long hits = Counter("hits");
  ASSERT_GE(hits, 0);
  std::this_thread::sleep_for(2500ms);  // past the old one-second timeouts
  ASSERT_EQ(stat(M("d/in.txt").c_str(), &st), 0);
  ASSERT_EQ(stat(M("a.txt").c_str(), &st), 0);
  EXPECT_EQ(Counter("hits"), hits) << "the kernel asked the daemon again";
}

TEST_F(KernelCacheTest, AFileWrittenInTheBucketIsSeenWithItsNewSizeAndBytes) {
  ASSERT_EQ(Read("a.txt"), "first\n");
  Write(B("a.txt"), "second, and longer\n");
  EXPECT_TRUE(Eventually([&] { return Read("a.txt") == "second, and longer\n"; })) << Read("a.txt");
  struct stat st;
  ASSERT_EQ(stat(M("a.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 19);
}

// Small files are read from the kernel's page cache of the mount. A rewrite
// that leaves size and mtime as they were (the same length within one tick
// of the clock, or a copy that keeps times) still drops those pages.
TEST_F(KernelCacheTest, ARewriteThatKeepsSizeAndMtimeIsSeen) {
  // An open descriptor keeps the kernel's inode (and its pages) alive.
  int keep = open(M("a.txt").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(keep, 0);
  ASSERT_EQ(Read("a.txt"), "first\n");
  ASSERT_EQ(Read("a.txt"), "first\n");  // from the page cache now
  struct stat before;
  ASSERT_EQ(stat(B("a.txt").c_str(), &before), 0);
  Write(B("a.txt"), "FIRST\n");
  struct timespec times[2] = {before.st_atim, before.st_mtim};
  ASSERT_EQ(utimensat(AT_FDCWD, B("a.txt").c_str(), times, 0), 0);
  EXPECT_TRUE(Eventually([&] { return Read("a.txt") == "FIRST\n"; })) << Read("a.txt");
  close(keep);
}

// A write through a shared mapping raises no fanotify event; the bucket
// file's ctime still moves, and the next open of a page-cached file drops
// the pages the kernel kept.
TEST_F(KernelCacheTest, AWriteThroughAnotherProgramsMappingIsSeenAtTheNextOpen) {
  int keep = open(M("a.txt").c_str(), O_RDONLY | O_CLOEXEC);  // keeps the inode
  ASSERT_GE(keep, 0);
  ASSERT_EQ(Read("a.txt"), "first\n");
  ASSERT_EQ(Read("a.txt"), "first\n");
  std::this_thread::sleep_for(20ms);  // a later ctime clock tick
  int fd = open(B("a.txt").c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  void* p = mmap(nullptr, 6, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ASSERT_NE(p, MAP_FAILED);
  std::memcpy(p, "FIRST\n", 6);
  ASSERT_EQ(msync(p, 6, MS_SYNC), 0);
  // Still open for writing: no close-after-write event either.
  EXPECT_TRUE(Eventually([&] { return Read("a.txt") == "FIRST\n"; })) << Read("a.txt");
  munmap(p, 6);
  close(fd);
  close(keep);
}

TEST_F(KernelCacheTest, AttributesChangedInTheBucketAreSeen) {
  struct stat st;
  ASSERT_EQ(stat(M("a.txt").c_str(), &st), 0);
  ASSERT_EQ(chmod(B("a.txt").c_str(), 0600), 0);
  auto r = RunCommand({"touch", "-d", "2001-02-03 04:05:06", B("a.txt")}, 10s);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  struct stat want;
  ASSERT_EQ(stat(B("a.txt").c_str(), &want), 0);
  EXPECT_TRUE(Eventually([&] {
    return stat(M("a.txt").c_str(), &st) == 0 && (st.st_mode & 0777) == 0600 &&
           st.st_mtime == want.st_mtime;
  }));
}

// A directory's own changes (mode, owner): with default_permissions the
// kernel checks access against what it cached, so these matter most.
TEST_F(KernelCacheTest, ADirectorysModeChangedInTheBucketIsSeen) {
  struct stat st;
  ASSERT_EQ(stat(M("d").c_str(), &st), 0);
  ASSERT_EQ(st.st_mode & 0777, 0755u);
  ASSERT_EQ(chmod(B("d").c_str(), 0700), 0);
  EXPECT_TRUE(Eventually([&] {
    return stat(M("d").c_str(), &st) == 0 && (st.st_mode & 0777) == 0700;
  })) << std::oct
      << (st.st_mode & 0777);
}

TEST_F(KernelCacheTest, NamesMadeRemovedAndRenamedInTheBucketAreSeen) {
  ASSERT_EQ(Read("d/in.txt"), "inside\n");
  ASSERT_EQ(StatErrno("d/new.txt"), ENOENT);
  Write(B("d/new.txt"), "new\n");
  EXPECT_TRUE(Eventually([&] { return Read("d/new.txt") == "new\n"; })) << Read("d/new.txt");
  ASSERT_EQ(unlink(B("d/in.txt").c_str()), 0);
  // Not at the origin either: gone means ENOENT.
  origin_.Remove("/d/in.txt");
  EXPECT_TRUE(Eventually([&] { return StatErrno("d/in.txt") == ENOENT; })) << StatErrno("d/in.txt");
  ASSERT_EQ(rename(B("d/new.txt").c_str(), B("d/moved.txt").c_str()), 0);
  EXPECT_TRUE(Eventually([&] { return Read("d/moved.txt") == "new\n"; }));
  EXPECT_TRUE(Eventually([&] { return StatErrno("d/new.txt") == ENOENT; }));
}

// rsync and uploaders write a temporary file and rename it over the name.
TEST_F(KernelCacheTest, AFileReplacedByARenameInTheBucketIsSeen) {
  ASSERT_EQ(Read("a.txt"), "first\n");
  Write(B(".a.txt.tmp"), "replaced\n");
  ASSERT_EQ(rename(B(".a.txt.tmp").c_str(), B("a.txt").c_str()), 0);
  EXPECT_TRUE(Eventually([&] { return Read("a.txt") == "replaced\n"; })) << Read("a.txt");
}

TEST_F(KernelCacheTest, ADirectoryReplacedByAFileInTheBucketIsSeen) {
  ASSERT_EQ(Read("d/in.txt"), "inside\n");
  origin_.Remove("/d/in.txt");
  auto r =
      RunCommand({"bash", "-c", "rm -rf '" + B("d") + "' && echo file > '" + B("d") + "'"}, 10s);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(Eventually([&] { return Read("d") == "file\n"; })) << Read("d");
}

// Its own operations through the mount are the kernel's to know; those of
// the daemon itself (a landing) change nothing the kernel was shown.
TEST_F(KernelCacheTest, AnOriginFileLandsAndStaysReadable) {
  EXPECT_EQ(Read("origin.txt"), "from the origin\n");
  EXPECT_TRUE(EventuallyExists(B("origin.txt")));
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(Read("origin.txt"), "from the origin\n");
  Write(B("origin.txt"), "changed in the bucket\n");
  EXPECT_TRUE(Eventually([&] { return Read("origin.txt") == "changed in the bucket\n"; }))
      << Read("origin.txt");
}

// Mounted again with extra options, d/in.txt is stat'ed twice, 2.5 s apart
// (past one-second timeouts): how often the second stat reached the daemon.
class ShortCacheTest : public KernelCacheTest {
 protected:
  long LookupsOfASecondStatLater(const std::vector<std::string>& opts) {
    EXPECT_NO_FATAL_FAILURE(Unmount());
    DaemonOptions o = Defaults();
    o.extra_opts = opts;
    EXPECT_NO_FATAL_FAILURE(Mount(o));
    struct stat st;
    EXPECT_EQ(stat(M("d/in.txt").c_str(), &st), 0);
    long hits = Counter("hits");
    std::this_thread::sleep_for(2500ms);
    EXPECT_EQ(stat(M("d/in.txt").c_str(), &st), 0);
    return Counter("hits") - hits;
  }
};

// With timeouts given, the kernel keeps what it is told for exactly those.
TEST_F(ShortCacheTest, TimeoutsGivenExplicitlyWin) {
  EXPECT_GT(LookupsOfASecondStatLater({"entry_timeout=1", "attr_timeout=1"}), 0);
}

// A bucket other hosts write to (shared mode) cannot be watched from here:
// close-to-open with the short timeouts, as before.
TEST_F(ShortCacheTest, ASharedBucketKeepsTheShortTimeouts) {
  EXPECT_GT(LookupsOfASecondStatLater({"shared=on"}), 0);
}

}  // namespace
}  // namespace originfs::e2e
