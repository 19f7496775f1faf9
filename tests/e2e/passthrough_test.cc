// FUSE passthrough through real mounts (issue 15): opens of complete files
// are served by the kernel from the bucket file itself. Reads, writes, mmap
// and refresh keep their guarantees, a file still arriving is served through
// the daemon, and where the kernel refuses (a bucket on a stacked
// filesystem) the mount falls back with one log line.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/mount_fixture.h"
#include "tests/support/temp_dir.h"

namespace originfs::e2e {
namespace {

bool KernelHasPassthrough() {
  // CONFIG_FUSE_PASSTHROUGH (6.9+) shows in the kernel's symbol table.
  std::ifstream syms("/proc/kallsyms");
  std::string line;
  while (std::getline(syms, line))
    if (line.find(" fuse_passthrough_open") != std::string::npos) return true;
  return false;
}

class PassthroughTest : public MountTest {
 protected:
  void SetUp() override {
    MountTest::SetUp();
    if (!KernelHasPassthrough()) GTEST_SKIP() << "kernel without FUSE passthrough";
  }

  long Counter(const std::string& name) {
    char buf[64] = {};
    ssize_t n = getxattr(mnt_.c_str(), ("user.originfs." + name).c_str(), buf, sizeof buf - 1);
    return n > 0 ? std::atol(buf) : -1;
  }

  // The whole file through an open descriptor (pread from 0).
  static std::string PreadAll(int fd) {
    std::string out;
    char buf[65536];
    for (off_t off = 0;;) {
      ssize_t n = pread(fd, buf, sizeof buf, off);
      if (n <= 0) break;
      out.append(buf, static_cast<std::size_t>(n));
      off += n;
    }
    return out;
  }

  // Lands key in the bucket through the mount (a first read) and waits for it.
  void Land(const std::string& key, const std::string& body, bool passes_through = true) {
    origin_.SetFile("/" + key, body);
    ASSERT_EQ(ReadAll(M(key)).data, body);
    ASSERT_TRUE(EventuallyExists(B(key)));
    if (passes_through) {
      ASSERT_NO_FATAL_FAILURE(WaitPassesThrough(key));
    }
  }

  // The first read followed the download, so it was page-cached: until the
  // kernel's RELEASE of it reaches the daemon (asynchronously, after the
  // close), new opens of the inode are page-cached too. Waits until an open
  // passes through.
  void WaitPassesThrough(const std::string& key) {
    auto deadline = std::chrono::steady_clock::now() + 5s;
    for (;;) {
      long before = Counter("passthrough_opens");
      int fd = open(M(key).c_str(), O_RDONLY | O_CLOEXEC);
      ASSERT_GE(fd, 0) << key << ": " << strerror(errno);
      close(fd);
      if (Counter("passthrough_opens") > before) return;
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << key << " never passed through";
      std::this_thread::sleep_for(10ms);
    }
  }
};

TEST_F(PassthroughTest, ReadsOfALandedFileComeFromTheBucketFile) {
  ASSERT_NO_FATAL_FAILURE(Mount());
  ASSERT_EQ(Counter("passthrough_enabled"), 1) << mount_->Log();
  const std::string body = PatternBytes(3 << 20, 1);
  ASSERT_NO_FATAL_FAILURE(Land("doc.bin", body));
  long opens = Counter("passthrough_opens");

  int fd = open(M("doc.bin").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << strerror(errno);
  EXPECT_EQ(Counter("passthrough_opens"), opens + 1);
  EXPECT_EQ(Counter("backing_files"), 1);
  EXPECT_EQ(PreadAll(fd), body);
  // Proof that the kernel reads the bucket file itself, not a page cache of
  // the mount: bytes changed in the bucket under the open descriptor show at once.
  int bfd = open(B("doc.bin").c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(bfd, 0);
  ASSERT_EQ(pwrite(bfd, "CHANGED", 7, 4096), 7);
  close(bfd);
  char got[8] = {};
  ASSERT_EQ(pread(fd, got, 7, 4096), 7);
  EXPECT_STREQ(got, "CHANGED");
  // A second open shares the registered backing file.
  int fd2 = open(M("doc.bin").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd2, 0);
  EXPECT_EQ(Counter("backing_files"), 1);
  close(fd2);
  close(fd);
  // Released with the last open (RELEASE is asynchronous: allow a moment).
  auto deadline = std::chrono::steady_clock::now() + 3s;
  while (Counter("backing_files") != 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  EXPECT_EQ(Counter("backing_files"), 0);
}

// A program in the bucket, run from the bucket path by something outside
// the mount, while it is open for reading through the mount: the daemon's
// descriptors on it (the backing file registered for passthrough, a landed
// file's staging descriptor) must not be writable, or exec fails ETXTBSY.
TEST_F(PassthroughTest, BucketProgramsRunWhileOpenThroughTheMount) {
  ASSERT_NO_FATAL_FAILURE(Mount());
  auto program = testing::ReadFile("/bin/true");
  ASSERT_TRUE(program);
  WriteAll(B("local-true"), *program, 0755);
  int fd = open(M("local-true").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << strerror(errno);
  auto r = RunCommand({B("local-true")}, 10s);
  EXPECT_EQ(r.exit_code, 0) << "a local program: " << r.err;
  // And while it is open for reading, it can be opened for writing too (the
  // differential fuzzer's copy_file_range of an executable onto itself).
  int wfd = open(M("local-true").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  EXPECT_GE(wfd, 0) << strerror(errno);
  if (wfd >= 0) close(wfd);
  close(fd);

  origin_.SetFile("/origin-true", *program);
  int ofd = open(M("origin-true").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(ofd, 0) << strerror(errno);
  ASSERT_EQ(PreadAll(ofd), *program);
  ASSERT_TRUE(EventuallyExists(B("origin-true")));
  ASSERT_EQ(chmod(B("origin-true").c_str(), 0755), 0);
  r = RunCommand({B("origin-true")}, 10s);
  EXPECT_EQ(r.exit_code, 0) << "a landed program: " << r.err;
  int fd2 = open(M("origin-true").c_str(), O_RDONLY | O_CLOEXEC);  // passes through now
  ASSERT_GE(fd2, 0);
  r = RunCommand({B("origin-true")}, 10s);
  EXPECT_EQ(r.exit_code, 0) << "a landed program, open twice: " << r.err;
  close(fd2);
  close(ofd);
}

TEST_F(PassthroughTest, WritesLandInTheBucketFileAndShowThroughTheMount) {
  ASSERT_NO_FATAL_FAILURE(Mount());
  // Big enough to pass through (smaller files are read from the page cache).
  const std::string pad(128 << 10, '.');
  ASSERT_NO_FATAL_FAILURE(Land("w.txt", "origin text\n" + pad));
  // A reader is open while a writer joins: both pass through to one file.
  int r = open(M("w.txt").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(r, 0);
  int w = open(M("w.txt").c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(w, 0) << strerror(errno);
  ASSERT_EQ(pwrite(w, "ORIGIN", 6, 0), 6);
  EXPECT_EQ(PreadAll(r), "ORIGIN text\n" + pad);
  close(w);
  int a = open(M("w.txt").c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  ASSERT_GE(a, 0);
  ASSERT_EQ(write(a, "appended\n", 9), 9);
  close(a);
  EXPECT_EQ(PreadAll(r), "ORIGIN text\n" + pad + "appended\n");
  close(r);
  std::string want = "ORIGIN text\n" + pad + "appended\n";
  EXPECT_EQ(ReadAll(B("w.txt")).data, want);
  struct stat st;
  ASSERT_EQ(stat(M("w.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, static_cast<off_t>(want.size()));
  // Truncation through an open descriptor and a new file made by create.
  int t = open(M("w.txt").c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(t, 0);
  ASSERT_EQ(ftruncate(t, 6), 0);
  close(t);
  EXPECT_EQ(ReadAll(M("w.txt")).data, "ORIGIN");
  EXPECT_EQ(ReadAll(B("w.txt")).data, "ORIGIN");
  ASSERT_EQ(WriteAll(M("made.txt"), "made through the mount\n"), 0);
  EXPECT_EQ(ReadAll(B("made.txt")).data, "made through the mount\n");
  EXPECT_EQ(ReadAll(M("made.txt")).data, "made through the mount\n");
  EXPECT_GE(Counter("passthrough_opens"), 6) << mount_->Log();
}

TEST_F(PassthroughTest, MmapReadsAndSharedWritesReachTheBucketFile) {
  ASSERT_NO_FATAL_FAILURE(Mount());
  const std::size_t size = 1 << 20;
  const std::string body = PatternBytes(size, 2);
  ASSERT_NO_FATAL_FAILURE(Land("map.bin", body));
  int fd = open(M("map.bin").c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  ASSERT_NE(p, MAP_FAILED) << strerror(errno);
  auto* bytes = static_cast<char*>(p);
  // Random 4 KB pages read back as the origin sent them.
  for (std::size_t page : {0ul, 17ul, 128ul, 255ul, 3ul}) {
    ASSERT_EQ(std::memcmp(bytes + page * 4096, body.data() + page * 4096, 4096), 0) << page;
  }
  std::memcpy(bytes + 8192, "MAPPED WRITE", 12);
  ASSERT_EQ(msync(p, size, MS_SYNC), 0);
  munmap(p, size);
  close(fd);
  std::string want = body;
  want.replace(8192, 12, "MAPPED WRITE");
  EXPECT_EQ(ReadAll(B("map.bin")).data, want);
  EXPECT_EQ(ReadAll(M("map.bin")).data, want);
}

TEST_F(PassthroughTest, RefreshKeepsOpenReadersOnTheOldBytes) {
  testing::Behavior v1;
  v1.body = PatternBytes(256 << 10, 3);
  v1.headers = {{"ETag", "\"v1\""}};
  origin_.Set("/r.bin", v1);
  ASSERT_NO_FATAL_FAILURE(Mount());
  ASSERT_EQ(ReadAll(M("r.bin")).data, v1.body);
  ASSERT_TRUE(EventuallyExists(B("r.bin")));
  ASSERT_NO_FATAL_FAILURE(WaitPassesThrough("r.bin"));
  int old_reader = open(M("r.bin").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(old_reader, 0);
  EXPECT_EQ(Counter("backing_files"), 1);

  testing::Behavior v2 = v1;
  v2.body = PatternBytes(300 << 10, 4);
  v2.headers = {{"ETag", "\"v2\""}};
  origin_.Set("/r.bin", v2);
  auto r = RunCommand({ORIGINFS_BINARY, "refresh", mnt_, "r.bin"}, 30s);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(ReadAll(B("r.bin")).data, v2.body);
  // The open descriptor still reads the old version, whole; a new open the new.
  EXPECT_EQ(PreadAll(old_reader), v1.body);
  EXPECT_EQ(ReadAll(M("r.bin")).data, v2.body);
  int new_reader = open(M("r.bin").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(new_reader, 0);
  EXPECT_EQ(PreadAll(new_reader), v2.body);
  EXPECT_EQ(PreadAll(old_reader), v1.body);
  close(new_reader);
  close(old_reader);
}

TEST_F(PassthroughTest, AFileStillArrivingIsServedThroughTheDaemonThenPassesThrough) {
  testing::Behavior slow;
  slow.body = PatternBytes(2 << 20, 5);
  slow.stall_ms = 800;  // half the body, then a pause
  origin_.Set("/slow.bin", slow);
  ASSERT_NO_FATAL_FAILURE(Mount());
  int fd = open(M("slow.bin").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  EXPECT_EQ(Counter("page_cache_opens"), 1);  // it follows the download
  EXPECT_EQ(Counter("backing_files"), 0);
  EXPECT_EQ(PreadAll(fd), slow.body);
  ASSERT_TRUE(EventuallyExists(B("slow.bin")));
  // A second open while the first is still open stays in the page cache
  // (the kernel allows no mix of the two on one inode).
  int fd2 = open(M("slow.bin").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd2, 0) << strerror(errno);
  EXPECT_EQ(PreadAll(fd2), slow.body);
  EXPECT_EQ(Counter("backing_files"), 0);
  close(fd2);
  close(fd);
  // Once both are released, opens pass through.
  long before = Counter("passthrough_opens");
  auto deadline = std::chrono::steady_clock::now() + 3s;
  bool passed = false;
  while (!passed && std::chrono::steady_clock::now() < deadline) {
    int again = open(M("slow.bin").c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(again, 0) << strerror(errno);
    EXPECT_EQ(PreadAll(again), slow.body);
    close(again);
    passed = Counter("passthrough_opens") > before;
    if (!passed) std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(passed) << mount_->Log();
}

TEST_F(PassthroughTest, OffByOptionKeepsTheZeroMessageOpen) {
  DaemonOptions o = Defaults();
  o.extra_opts.push_back("passthrough=off");
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  ASSERT_NO_FATAL_FAILURE(Land("z.txt", "zero open\n", false));
  EXPECT_EQ(ReadAll(M("z.txt")).data, "zero open\n");
  EXPECT_EQ(Counter("passthrough_enabled"), 0);
  EXPECT_EQ(Counter("passthrough_opens"), 0);
}

// A bucket on overlayfs: the kernel refuses its files as backing files
// (ELOOP: overlayfs is stacked already, max_stack_depth is 1). The mount
// says so once and serves everything through the daemon, correctly.
TEST_F(PassthroughTest, ARefusingKernelFallsBackWithOneLogLine) {
  std::string lower = root_ + "/lower", upper = root_ + "/upper", work = root_ + "/work";
  for (const auto& d : {lower, upper, work}) ASSERT_EQ(mkdir(d.c_str(), 0755), 0);
  ASSERT_EQ(WriteAll(lower + "/lower.txt", "from the lower layer\n"), 0);
  std::string data = "lowerdir=" + lower + ",upperdir=" + upper + ",workdir=" + work;
  if (mount("overlay", bucket_.c_str(), "overlay", 0, data.c_str()) != 0)
    GTEST_SKIP() << "overlayfs: " << strerror(errno);
  struct Unmounter {
    std::string path;
    ~Unmounter() { umount2(path.c_str(), MNT_DETACH); }
  } overlay{bucket_};
  ASSERT_NO_FATAL_FAILURE(Mount());
  const std::string body = PatternBytes(1 << 20, 6);
  ASSERT_NO_FATAL_FAILURE(Land("o.bin", body, false));
  EXPECT_EQ(ReadAll(M("o.bin")).data, body);
  EXPECT_EQ(ReadAll(M("lower.txt")).data, "from the lower layer\n");
  ASSERT_EQ(WriteAll(M("new.txt"), "written\n"), 0);
  EXPECT_EQ(ReadAll(M("new.txt")).data, "written\n");
  EXPECT_EQ(ReadAll(B("new.txt")).data, "written\n");
  EXPECT_EQ(ReadAll(M("lower.txt")).data, "from the lower layer\n");
  EXPECT_EQ(Counter("passthrough_enabled"), 0);
  EXPECT_EQ(Counter("backing_files"), 0);
  std::string log = mount_->Log();
  std::size_t first = log.find("FUSE passthrough refused by the kernel");
  EXPECT_NE(first, std::string::npos) << log;
  EXPECT_EQ(log.find("FUSE passthrough refused", first + 1), std::string::npos) << log;
  ASSERT_NO_FATAL_FAILURE(Unmount());
}

}  // namespace
}  // namespace originfs::e2e
