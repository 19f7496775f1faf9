// Operations on a whole file that is still arriving from its origin: a copy,
// holes and data, fsync. An open of such a file follows the download (reads
// wait for their bytes); everything that asks for the whole file waits until
// it has landed. Before, cp made a 65,536-byte copy and exited 0.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <future>
#include <memory>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "tests/support/mount_fixture.h"

namespace originfs::e2e {
namespace {

class ArrivingFilesTest : public MountTest {
 protected:
  // An 8 MiB origin file that pauses for a while after its first 64 KiB.
  std::string SetSlowFile(const std::string& path, int stall_ms = 1500) {
    std::string body = PatternBytes(8 * 1024 * 1024 + 17, 23);
    testing::Behavior b;
    b.body = body;
    b.stall_at = 64 * 1024;
    b.stall_ms = stall_ms;
    origin_.Set(path, b);
    return body;
  }
};

// The modes that answer OPEN (passthrough is the default where the kernel has
// it; zero_open=0 where it does not) all hand out the staging descriptor.
TEST_F(ArrivingFilesTest, CpOfAFileStillDownloadingCopiesAllOfIt) {
  const std::string body = SetSlowFile("/big.bin");
  DaemonOptions o = Defaults();
  o.extra_opts.push_back("zero_open=0");
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  auto r = RunCommand({"cp", M("big.bin"), M("copy.bin")}, 60s);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto copy = ReadAll(B("copy.bin"));
  ASSERT_EQ(copy.err, 0);
  EXPECT_EQ(copy.data.size(), body.size());
  EXPECT_TRUE(copy.data == body) << "the copy differs from the origin's file";
  EXPECT_EQ(origin_.GetCount("/big.bin"), 1);
}

TEST_F(ArrivingFilesTest, SeekHoleAndDataSeeTheWholeFile) {
  const std::string body = SetSlowFile("/big.bin");
  DaemonOptions o = Defaults();
  o.extra_opts.push_back("zero_open=0");
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  int fd = open(M("big.bin").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  off_t hole = lseek(fd, 0, SEEK_HOLE);
  EXPECT_EQ(hole, static_cast<off_t>(body.size())) << "a hole where bytes had not arrived yet";
  off_t data = lseek(fd, 5 * 1024 * 1024, SEEK_DATA);
  EXPECT_EQ(data, 5 * 1024 * 1024) << "SEEK_DATA past the arrived part: " << ErrnoName(errno);
  close(fd);
}

// fsync of a file still arriving returns once it has landed (durably): what
// `originfs warm` relies on to count a key.
TEST_F(ArrivingFilesTest, FsyncReturnsOnceTheFileHasLanded) {
  const std::string body = SetSlowFile("/big.bin");
  DaemonOptions o = Defaults();
  o.extra_opts.push_back("zero_open=0");
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  int fd = open(M("big.bin").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  char c;
  ASSERT_EQ(pread(fd, &c, 1, 0), 1);
  ASSERT_FALSE(Exists(B("big.bin"))) << "landed before the stall ended: the test proves nothing";
  ASSERT_EQ(fsync(fd), 0) << ErrnoName(errno);
  struct stat st;
  ASSERT_EQ(StatErr(B("big.bin"), &st), 0) << "fsync returned before the landing";
  EXPECT_EQ(st.st_size, static_cast<off_t>(body.size()));
  close(fd);
}

// warm waits for a key to land (fsync) without copying a writeback = false
// object into the bucket, also without an open handle (zero-message open).
TEST_F(ArrivingFilesTest, WarmOfACacheOnlyRuleKeepsTheBucketClean) {
  origin_.SetFile("/c.bin", PatternBytes(300 * 1024, 4));
  DaemonOptions o;
  o.rules = {RuleSpec{"", origin_.url(), false, "", ""}};
  o.extra_opts.push_back("passthrough=off");
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  std::string keys = root_ + "/keys.txt";
  ASSERT_EQ(WriteAll(keys, "c.bin\n"), 0);
  auto w = RunCommand({ORIGINFS_BINARY, "warm", mnt_, keys}, 30s);
  EXPECT_EQ(w.exit_code, 0) << w.out << w.err;
  EXPECT_NE(w.out.find("fetched 1"), std::string::npos) << w.out;
  EXPECT_FALSE(Exists(B("c.bin"))) << "warm copied a cache-only object into the bucket";
}

// warm counted a key as fetched once its last byte was read, before the
// landing, which can still fail: here the bucket directory refuses new names
// (immutable), so the key never lands and warm must say so.
TEST_F(ArrivingFilesTest, WarmCountsAKeyOnlyOnceItLanded) {
  origin_.SetFile("/d/f.bin", PatternBytes(300 * 1024, 8));
  ASSERT_EQ(mkdir(B("d").c_str(), 0755), 0);
  if (RunCommand({"chattr", "+i", B("d")}, 10s).exit_code != 0)
    GTEST_SKIP() << "the bucket's filesystem has no immutable flag";
  ASSERT_NO_FATAL_FAILURE(Mount());
  std::string keys = root_ + "/keys.txt";
  ASSERT_EQ(WriteAll(keys, "d/f.bin\n"), 0);
  auto w = RunCommand({ORIGINFS_BINARY, "warm", mnt_, keys}, 30s);
  RunCommand({"chattr", "-i", B("d")}, 10s);
  EXPECT_NE(w.exit_code, 0) << w.out << w.err;
  EXPECT_EQ(w.out.find("fetched 1"), std::string::npos) << w.out;
  EXPECT_FALSE(Exists(B("d/f.bin")));
}

// A download that fails after the open: the whole-file operations say EIO,
// never a short answer.
TEST_F(ArrivingFilesTest, AFailedDownloadIsAnErrorNotAShortCopy) {
  testing::Behavior b;
  b.body = PatternBytes(4 * 1024 * 1024, 5);
  b.truncate_after = 100 * 1024;
  b.stall_at = 64 * 1024;
  b.stall_ms = 800;
  origin_.Set("/broken.bin", b);
  DaemonOptions o = Defaults();
  o.extra_opts.push_back("zero_open=0");
  o.extra_opts.push_back("retries=0");
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  auto r = RunCommand({"cp", M("broken.bin"), M("copy.bin")}, 60s);
  EXPECT_NE(r.exit_code, 0) << "cp of a broken download exited 0";
  struct stat st;
  if (StatErr(B("copy.bin"), &st) == 0) {
    EXPECT_NE(st.st_size, 100 * 1024);
  }
  EXPECT_FALSE(Exists(B("broken.bin")));
}

// Found by the differential fuzzer (seed 13): a download whose body broke off
// was retried into the same staging file while a reader already had bytes of
// it; the retry brought the origin's next version, and the reader read the
// rest from that one: one file of two versions, read without an error.
class VersionPinTest : public ArrivingFilesTest {
 protected:
  // Reads the first 4 KiB while the first GET stalls, then the rest.
  static std::pair<std::string, int> ReadAcrossTheRetry(const std::string& path) {
    int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return {"", errno};
    std::string data;
    char buf[65536];
    int err = 0;
    for (off_t off = 0;;) {
      ssize_t n = pread(fd, buf, off == 0 ? 4096 : sizeof buf, off);
      if (n < 0) {
        err = errno;
        break;
      }
      if (n == 0) break;
      data.append(buf, static_cast<std::size_t>(n));
      off += n;
    }
    close(fd);
    return {data, err};
  }

  testing::Behavior BrokenOnce(const std::string& body) {
    testing::Behavior b;
    b.body = body;
    b.fail_first = 1;
    b.fail_by_truncation = true;  // the first GET stops halfway
    b.stall_at = 64 * 1024;
    b.stall_ms = 600;
    return b;
  }
};

TEST_F(VersionPinTest, ARetryOfAnotherVersionFailsTheReaderInsteadOfMixingThem) {
  std::string a = PatternBytes(2 << 20, 1), b = PatternBytes(2 << 20, 2);
  testing::Behavior two = BrokenOnce(a);
  two.versions = {{std::make_shared<const std::string>(a), "\"va\""},
                  {std::make_shared<const std::string>(b), "\"vb\""}};
  two.version_per_get = true;  // the retry gets version b
  origin_.Set("/obj", two);
  ASSERT_NO_FATAL_FAILURE(Mount());
  auto [data, err] = ReadAcrossTheRetry(M("obj"));
  if (err == 0)
    EXPECT_TRUE(data == a) << "read " << data.size() << " bytes that are not version a whole";
  else
    EXPECT_EQ(err, EIO);
  auto again = ReadAll(M("obj"));  // a new open: one whole version
  EXPECT_EQ(again.err, 0);
  EXPECT_TRUE(again.data == a || again.data == b);
}

// Found by the differential fuzzer (seed 31): the kernel kept the pages a
// reader had of a download that then failed (keep_cache), and a later open
// of the file, now another version at the origin, read those pages first.
// (A race this test does not win on the old code: it checks the outcome.)
TEST_F(VersionPinTest, AFailedDownloadsPagesAreNotReadAsTheNextVersions) {
  std::string a = PatternBytes(2 << 20, 4), b = PatternBytes(2 << 20, 5),
              c = PatternBytes(2 << 20, 6);
  testing::Behavior three = BrokenOnce(a);
  three.versions = {{std::make_shared<const std::string>(a), "\"va\""},
                    {std::make_shared<const std::string>(b), "\"vb\""},
                    {std::make_shared<const std::string>(c), "\"vc\""}};
  three.version_per_get = true;
  // One Last-Modified for all: the kernel sees no change of size or time.
  three.last_modified = "Mon, 01 Jan 2024 00:00:00 GMT";
  origin_.Set("/obj", three);
  DaemonOptions o = Defaults();
  o.extra_opts.push_back("retries=1");
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  auto [first, err] = ReadAcrossTheRetry(M("obj"));  // a's first bytes, then EIO (b came)
  ASSERT_EQ(err, EIO) << first.size() << " bytes";
  auto again = ReadAll(M("obj"));  // the third GET: version c, whole
  EXPECT_EQ(again.err, 0) << again.stage;
  EXPECT_TRUE(again.data == c) << "not version c whole (" << again.data.size() << " bytes; a's "
                               << "first page: " << (again.data.compare(0, 4096, a, 0, 4096) == 0)
                               << ")";
}

TEST_F(VersionPinTest, ARetryOfTheSameVersionGoesOnUnderTheReader) {
  std::string a = PatternBytes(2 << 20, 3);
  testing::Behavior once = BrokenOnce(a);
  once.headers["ETag"] = "\"pinned-by-this-etag\"";
  origin_.Set("/obj", once);
  ASSERT_NO_FATAL_FAILURE(Mount());
  auto [data, err] = ReadAcrossTheRetry(M("obj"));
  EXPECT_EQ(err, 0);
  EXPECT_TRUE(data == a) << "read " << data.size() << " bytes";
  EXPECT_EQ(origin_.GetCount("/obj"), 2);
}

// A forced refresh runs inside SETXATTR, where the kernel holds the file's
// lock; `rm` of the file meanwhile holds the directory's lock and waits for
// the file's. The refresh's invalidation of the name (which needs the
// directory's lock) was sent from the handler and deadlocked the mount.
TEST_F(ArrivingFilesTest, RefreshRacingRmFinishes) {
  testing::Behavior v1;
  v1.body = PatternBytes(1 << 20, 1);
  v1.headers = {{"ETag", "\"v1\""}};
  origin_.Set("/f.bin", v1);
  DaemonOptions o = Defaults();
  o.watchdog = 25s;  // a deadlocked mount is aborted then, and the test fails
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  ASSERT_EQ(ReadAll(M("f.bin")).data.size(), v1.body.size());
  ASSERT_TRUE(EventuallyExists(B("f.bin")));
  testing::Behavior v2;
  v2.body = PatternBytes(2 << 20, 2);
  v2.headers = {{"ETag", "\"v2\""}};
  v2.stall_at = 64 * 1024;
  v2.stall_ms = 1500;
  origin_.Set("/f.bin", v2);
  auto refresh = std::async(std::launch::async, [&] {
    return RunCommand({"setfattr", "-n", "user.originfs.refresh", "-v", "force", M("f.bin")}, 20s);
  });
  ASSERT_TRUE(EventuallyRequested(origin_, "/f.bin"));
  std::this_thread::sleep_for(300ms);  // the refresh's GET is stalled now
  auto rm = RunCommand({"rm", "-f", M("f.bin")}, 20s);
  auto r = refresh.get();
  EXPECT_FALSE(r.timed_out) << "setfattr hung: the mount deadlocked";
  EXPECT_FALSE(rm.timed_out) << "rm hung: the mount deadlocked";
  EXPECT_EQ(rm.exit_code, 0) << rm.err;
  auto ls = RunCommand({"ls", mnt_}, 10s);
  EXPECT_FALSE(ls.timed_out) << "ls of the mount hung";
}

// After a refresh replaced a file, the next open reads the new file, even
// though the kernel's entry for the name is invalidated asynchronously.
TEST_F(ArrivingFilesTest, AnOpenAfterARefreshReadsTheNewFile) {
  testing::Behavior v1;
  v1.body = "version one\n";
  v1.headers = {{"ETag", "\"v1\""}};
  origin_.Set("/n.txt", v1);
  DaemonOptions o = Defaults();
  o.extra_opts.push_back("entry_timeout=3600");
  o.extra_opts.push_back("attr_timeout=3600");
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  ASSERT_EQ(ReadAll(M("n.txt")).data, v1.body);
  ASSERT_TRUE(EventuallyExists(B("n.txt")));
  for (int round = 2; round < 12; ++round) {
    testing::Behavior v = v1;
    v.body = "version " + std::to_string(round) + " of the file, longer each time" +
             std::string(static_cast<std::size_t>(round), '!') + "\n";
    v.headers = {{"ETag", "\"v" + std::to_string(round) + "\""}};
    origin_.Set("/n.txt", v);
    auto r = RunCommand({"setfattr", "-n", "user.originfs.refresh", "-v", "1", M("n.txt")}, 20s);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_EQ(ReadAll(M("n.txt")).data, v.body) << "round " << round;
  }
}

// The other half: a program that holds the old copy open keeps it, fstat
// included (it reaches the daemon without the handle, and cannot be retried).
TEST_F(ArrivingFilesTest, AnOpenFileKeepsItsOldCopyAcrossARefresh) {
  origin_.SetFile("/held.txt", "old bytes");
  ASSERT_NO_FATAL_FAILURE(Mount());
  ASSERT_EQ(ReadAll(M("held.txt")).data, "old bytes");
  ASSERT_TRUE(EventuallyExists(B("held.txt")));
  int fd = open(M("held.txt").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  origin_.SetFile("/held.txt", "the new, longer bytes");
  ASSERT_EQ(setxattr(M("held.txt").c_str(), "user.originfs.refresh", "1", 1, 0), 0);
  struct stat st {};
  EXPECT_EQ(fstat(fd, &st), 0) << strerror(errno);
  EXPECT_EQ(st.st_size, 9);
  char buf[64] = {};
  EXPECT_EQ(pread(fd, buf, sizeof buf, 0), 9);
  EXPECT_STREQ(buf, "old bytes");
  close(fd);
  EXPECT_EQ(ReadAll(M("held.txt")).data, "the new, longer bytes");
}

// Found by the differential fuzzer (seed 23): right after a refresh replaced
// a file, stat by name showed the old copy (links 0), and a chmod went to it
// and was lost: the kernel had not yet processed the name's invalidation.
// A slow lookup in the same directory holds the directory's lock, so the
// invalidation waits meanwhile (as it may at any time).
TEST_F(ArrivingFilesTest, StatAndChmodAfterARefreshReachTheNewFile) {
  testing::Behavior slow;
  slow.status = 404;
  slow.body = "no";
  slow.delay_ms = 1500;
  for (int round = 0; round < 3; ++round) {
    std::string key = "r" + std::to_string(round) + ".txt";
    origin_.SetFile("/" + key, "old " + key);  // no validators: a refresh always replaces it
    origin_.Set("/slow" + std::to_string(round), slow);
    if (round == 0) {
      ASSERT_NO_FATAL_FAILURE(Mount());
    }
    // Landed by a lookup, not a read: the RELEASE of a read's descriptor
    // reaches the daemon after close() returns, and while it has not the
    // old copy is held open and keeps its own attributes (the test above).
    ASSERT_EQ(StatErr(M(key)), 0);
    ASSERT_TRUE(EventuallyExists(B(key)));
    origin_.SetFile("/" + key, "the new " + key);
    auto holder =
        std::async(std::launch::async, [&] { return StatErr(M("slow" + std::to_string(round))); });
    std::this_thread::sleep_for(200ms);  // the slow lookup holds the directory now
    ASSERT_EQ(setxattr(M(key).c_str(), "user.originfs.refresh", "1", 1, 0), 0) << strerror(errno);
    struct stat st {};
    ASSERT_EQ(stat(M(key).c_str(), &st), 0);
    EXPECT_EQ(st.st_nlink, 1u) << key;
    EXPECT_EQ(st.st_size, static_cast<off_t>(("the new " + key).size())) << key;
    ASSERT_EQ(chmod(M(key).c_str(), 0600), 0);
    ASSERT_EQ(StatErr(B(key), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0600u) << key << ": the chmod went to the replaced copy";
    EXPECT_EQ(holder.get(), ENOENT);
  }
}

}  // namespace
}  // namespace originfs::e2e
