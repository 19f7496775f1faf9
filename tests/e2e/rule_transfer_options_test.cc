// The back-source rule options that shape a transfer, through real mounts
// against in-process origins: checksum verification, per-rule timeouts /
// retries / size limits, max_concurrent, writeback = false with its bounded
// object cache, mtime, `originfs refresh` and streaming reads.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/rule_options_fixture.h"

namespace originfs::e2e {
namespace {

TEST_F(RuleOptionsTest, VerifyContentMd5AndEtagMd5) {
  const std::string body = PatternBytes(1024 * 1024, 2);
  const std::string other = PatternBytes(1024 * 1024, 3);
  auto with_headers = [&](std::map<std::string, std::string> h) {
    testing::Behavior b;
    b.body = body;
    b.headers = std::move(h);
    return b;
  };
  origin_.Set("/cmd5/good.bin", with_headers({{"Content-MD5", Base64(Md5Raw(body))}}));
  origin_.Set("/cmd5/bad.bin", with_headers({{"Content-MD5", Base64(Md5Raw(other))}}));
  origin_.Set("/cmd5/none.bin", with_headers({}));
  origin_.Set("/etag/good.bin", with_headers({{"ETag", "\"" + Md5Hex(body) + "\""}}));
  origin_.Set("/etag/bad.bin", with_headers({{"ETag", "\"" + Md5Hex(other) + "\""}}));
  origin_.Set("/etag/multi.bin", with_headers({{"ETag", "\"" + Md5Hex(body) + "-2\""}}));
  origin_.Set("/etag/abc.bin", with_headers({{"ETag", "\"abc-2\""}}));
  origin_.Set("/etag/none.bin", with_headers({}));
  std::string u = origin_.url();
  ASSERT_NO_FATAL_FAILURE(MountToml(
      "[[rule]]\nprefix = \"cmd5/\"\nverify = \"content-md5\"\norigin = \"" + u +
      "\"\n\n[[rule]]\nprefix = \"etag/\"\nverify = \"etag-md5\"\norigin = \"" + u + "\"\n"));

  for (const char* k : {"cmd5/good.bin", "etag/good.bin"}) {
    SCOPED_TRACE(k);
    ExpectServed(k, body);
    EXPECT_TRUE(EventuallyExists(B(k)));
    EXPECT_TRUE(Slurp(B(k)) == body);
  }
  for (const char* k : {"cmd5/bad.bin", "cmd5/none.bin", "etag/bad.bin", "etag/multi.bin",
                        "etag/abc.bin", "etag/none.bin"}) {
    SCOPED_TRACE(k);
    ExpectEio(k);
  }
}

// ---- timeouts, retries, sizes -----------------------------------------------------------------

TEST_F(RuleOptionsTest, ConnectTimeoutPerRule) {
  BlackholePort hole;
  if (!hole.Hangs(300ms)) GTEST_SKIP() << "cannot make a connect() hang on this host";
  // The mount-wide connect timeout is long; the rule's is short.
  ASSERT_NO_FATAL_FAILURE(MountToml("[[rule]]\nprefix = \"\"\norigin = \"" + hole.url() +
                                        "\"\nconnect_timeout = 0.5\nretries = 0\n",
                                    {"connect_timeout=60"}));
  auto start = Clock::now();
  auto r = ReadAll(M("never.txt"));
  auto took = Clock::now() - start;
  EXPECT_EQ(r.err, EIO) << r.stage << ": " << ErrnoName(r.err);
  EXPECT_LT(took, 5s) << "connect_timeout = 0.5 was not applied (" << Ms(took) << " ms)";
  EXPECT_FALSE(Exists(B("never.txt")));
}

TEST_F(RuleOptionsTest, TimeoutPerRuleCutsStalledTransfers) {
  testing::Behavior head_stall;  // nothing at all for 30 s
  head_stall.body = "late";
  head_stall.delay_ms = 30000;
  origin_.Set("/head/stall.txt", head_stall);
  testing::Behavior body_stall;  // half the body, then 30 s of silence
  body_stall.body = PatternBytes(2 * 1024 * 1024, 4);
  body_stall.stall_ms = 30000;
  origin_.Set("/body/stall.bin", body_stall);
  std::string u = origin_.url();
  ASSERT_NO_FATAL_FAILURE(MountToml(
      "[[rule]]\nprefix = \"head/\"\ntimeout = 1\nretries = 0\norigin = \"" + u +
          "\"\n\n[[rule]]\nprefix = \"body/\"\ntimeout = 1\nretries = 0\norigin = \"" + u + "\"\n",
      {"low_speed_time=120"}));
  auto timed_read = [this](std::string key) {
    auto start = Clock::now();
    auto r = ReadAll(M(key));
    return std::make_pair(r, Clock::now() - start);
  };
  auto head = std::async(std::launch::async, timed_read, "head/stall.txt");
  auto body = std::async(std::launch::async, timed_read, "body/stall.bin");
  auto [hr, htook] = head.get();
  auto [br, btook] = body.get();
  EXPECT_EQ(hr.err, EIO) << hr.stage << ": " << ErrnoName(hr.err);
  EXPECT_LT(htook, 6s) << "timeout = 1 did not end a transfer that never answered (" << Ms(htook)
                       << " ms)";
  EXPECT_EQ(br.err, EIO) << br.stage << ": " << ErrnoName(br.err);
  // curl averages the speed over a few seconds, so a stall after a burst is
  // noticed a little later than `timeout`; still far below the 30 s stall.
  EXPECT_LT(btook, 12s) << "timeout = 1 did not end a stalled body (" << Ms(btook) << " ms)";
  // retries = 0: each stalled transfer was tried once.
  EXPECT_EQ(origin_.GetCount("/head/stall.txt"), 1);
  EXPECT_EQ(origin_.GetCount("/body/stall.bin"), 1)
      << "the stalled body was downloaded again within one read";
  EXPECT_FALSE(Exists(B("head/stall.txt")));
  EXPECT_FALSE(Exists(B("body/stall.bin")));
  EXPECT_TRUE(StagingFiles(bucket_).empty());
}

TEST_F(RuleOptionsTest, RetriesPerRule) {
  auto flaky = [&](const std::string& path, const std::string& body, int fails, bool truncate) {
    testing::Behavior b;
    b.body = body;
    b.fail_first = fails;
    b.fail_by_truncation = truncate;
    origin_.Set(path, b);
  };
  const std::string body = PatternBytes(200 * 1024, 5);
  flaky("/r2/a.bin", body, 2, false);
  flaky("/r0/a.bin", body, 2, false);
  flaky("/r1t/a.bin", body, 1, true);
  std::string u = origin_.url();
  ASSERT_NO_FATAL_FAILURE(
      MountToml("[[rule]]\nprefix = \"r2/\"\nretries = 2\norigin = \"" + u + "\"\n" +
                    "[[rule]]\nprefix = \"r0/\"\nretries = 0\norigin = \"" + u + "\"\n" +
                    "[[rule]]\nprefix = \"r1t/\"\nretries = 1\norigin = \"" + u + "\"\n",
                {"retries=5"}));

  ExpectServed("r2/a.bin", body);  // 500, 500, 200
  EXPECT_EQ(origin_.GetCount("/r2/a.bin"), 3);
  ExpectEio("r0/a.bin");
  EXPECT_EQ(origin_.GetCount("/r0/a.bin"), 1) << "retries = 0 still retried (mount-wide retries=5)";
  ExpectServed("r1t/a.bin", body);  // body cut off, then whole
  EXPECT_EQ(origin_.GetCount("/r1t/a.bin"), 2);
}

// retries = 0 also means no re-download when the body breaks off: one
// open()+read() of such a key is EIO after one GET, whatever the mount-wide
// retries say.
TEST_F(RuleOptionsTest, RetriesZeroDoesNotRedownloadABrokenBody) {
  const std::string body = PatternBytes(200 * 1024, 5);
  testing::Behavior b;
  b.body = body;
  b.fail_first = 1;
  b.fail_by_truncation = true;  // the first GET's body breaks off halfway
  origin_.Set("/r0t/a.bin", b);
  ASSERT_NO_FATAL_FAILURE(
      MountToml("[[rule]]\nprefix = \"r0t/\"\nretries = 0\norigin = \"" + origin_.url() + "\"\n",
                {"retries=5"}));

  ExpectEio("r0t/a.bin");
  EXPECT_EQ(origin_.GetCount("/r0t/a.bin"), 1)
      << "retries = 0, yet the broken body was downloaded again";
}

TEST_F(RuleOptionsTest, MaxObjectSizePerRule) {
  origin_.SetFile("/small/ok.bin", std::string(50, 'a'));
  origin_.SetFile("/small/big.bin", std::string(200, 'b'));
  testing::Behavior chunked;
  chunked.body = std::string(300, 'c');
  chunked.chunked = true;  // no Content-Length: refused while it arrives
  origin_.Set("/small/chunked.bin", chunked);
  origin_.SetFile("/big/ok.bin", PatternBytes(500 * 1024, 6));
  origin_.SetFile("/big/big.bin", PatternBytes(2 * 1024 * 1024, 7));
  origin_.SetFile("/any/big.bin", std::string(2048, 'd'));
  origin_.SetFile("/any/ok.bin", std::string(1000, 'e'));
  std::string u = origin_.url();
  ASSERT_NO_FATAL_FAILURE(
      MountToml("[[rule]]\nprefix = \"small/\"\nmax_object_size = 100\norigin = \"" + u + "\"\n" +
                    "[[rule]]\nprefix = \"big/\"\nmax_object_size = \"1M\"\norigin = \"" + u +
                    "\"\n" + "[[rule]]\nprefix = \"any/\"\norigin = \"" + u + "\"\n",
                {"max_object_size=1K"}));

  ExpectServed("small/ok.bin", std::string(50, 'a'));
  ExpectEio("small/big.bin");
  ExpectEio("small/chunked.bin");
  ExpectServed("big/ok.bin",
               PatternBytes(500 * 1024, 6));  // over the mount-wide 1K, within the rule's 1M
  ExpectEio("big/big.bin");
  ExpectServed("any/ok.bin", std::string(1000, 'e'));  // the mount-wide limit applies
  ExpectEio("any/big.bin");
}

// ---- max_concurrent ---------------------------------------------------------------------------

TEST_F(RuleOptionsTest, MaxConcurrentBoundsRequestsPerRule) {
  constexpr int kKeys = 8;
  constexpr int kDelayMs = 400;
  // Each key in its own local directory: the kernel serialises lookups
  // within one directory, which would hide any concurrency.
  auto key = [](const std::string& dir, int i) { return dir + "/" + std::to_string(i) + "/k"; };
  for (const char* dir : {"free", "lim"}) {
    ASSERT_EQ(mkdir(B(dir).c_str(), 0755), 0);
    for (int i = 0; i < kKeys; ++i) {
      ASSERT_EQ(mkdir(B(std::string(dir) + "/" + std::to_string(i)).c_str(), 0755), 0);
      testing::Behavior b;
      b.body = std::string(dir) + " body " + std::to_string(i);
      b.delay_ms = kDelayMs;
      origin_.Set("/" + key(dir, i), b);
    }
  }
  std::string u = origin_.url();
  ASSERT_NO_FATAL_FAILURE(MountToml("[[rule]]\nprefix = \"lim/\"\nmax_concurrent = 2\norigin = \"" +
                                    u + "\"\n\n[[rule]]\nprefix = \"free/\"\norigin = \"" + u +
                                    "\"\n"));

  auto parallel_reads = [&](const std::string& dir) {
    std::vector<std::future<ReadResult>> reads;
    for (int i = 0; i < kKeys; ++i)
      reads.push_back(std::async(std::launch::async, ReadAll, M(key(dir, i))));
    for (int i = 0; i < kKeys; ++i) {
      auto r = reads[i].get();
      EXPECT_EQ(r.err, 0) << key(dir, i) << ": " << r.stage << ": " << ErrnoName(r.err);
      EXPECT_EQ(r.data, dir + " body " + std::to_string(i));
    }
  };
  // Without a limit the misses do overlap (the measurement works).
  parallel_reads("free");
  EXPECT_GT(origin_.MaxConcurrent(), 2);

  origin_.ResetCounts();
  auto start = Clock::now();
  parallel_reads("lim");
  auto took = Clock::now() - start;
  EXPECT_LE(origin_.MaxConcurrent(), 2) << "max_concurrent = 2 was exceeded";
  EXPECT_EQ(origin_.MaxConcurrent(), 2) << "the two slots were not used in parallel";
  EXPECT_EQ(origin_.TotalCount(), kKeys);
  EXPECT_GE(took, std::chrono::milliseconds(kKeys / 2 * kDelayMs - 100));
}

// ---- writeback = false ------------------------------------------------------------------------

TEST_F(RuleOptionsTest, WritebackFalseIsServedFromTheCacheAcrossRemounts) {
  const std::string body = PatternBytes(40 * 1024, 8);
  origin_.SetFile("/reports/r1.bin", body);
  ASSERT_NO_FATAL_FAILURE(
      MountToml("[[rule]]\nprefix = \"reports/\"\nwriteback = false\ncache_max_size = \"1M\"\n"
                "origin = \"" +
                origin_.url() + "\"\n"));

  ExpectServed("reports/r1.bin", body);
  std::this_thread::sleep_for(200ms);
  EXPECT_FALSE(Exists(B("reports/r1.bin"))) << "writeback = false kept the file in the bucket";
  EXPECT_FALSE(Exists(B("reports")));
  auto files = CacheFiles();
  ASSERT_EQ(files.size(), 1u) << ::testing::PrintToString(files);
  EXPECT_TRUE(Slurp(files[0]) == body) << "the cached copy differs from the origin's";
  EXPECT_EQ(origin_.GetCount("/reports/r1.bin"), 1);

  ASSERT_NO_FATAL_FAILURE(Remount());
  ExpectServed("reports/r1.bin", body);
  EXPECT_EQ(origin_.GetCount("/reports/r1.bin"), 1) << "not served from the cache after a remount";
  EXPECT_FALSE(Exists(B("reports/r1.bin")));
}

// Every inode the kernel remembered kept its finished download, and with it
// the cache file "in use": the bound was kept only after a remount, and a
// walk of a big tree filled the disk.
TEST_F(RuleOptionsTest, WritebackFalseCacheIsNotPinnedByInodesTheKernelRemembers) {
  constexpr std::size_t kSize = 40 * 1024;
  constexpr std::size_t kBound = 100 * 1024;  // room for two objects
  ASSERT_NO_FATAL_FAILURE(MountToml(
      "[[rule]]\nprefix = \"\"\nwriteback = false\ncache_max_size = " + std::to_string(kBound) +
      "\norigin = \"" + origin_.url() + "\"\n"));
  for (int i = 1; i <= 10; ++i) {
    origin_.SetFile("/p" + std::to_string(i), PatternBytes(kSize, 30 + i));
    ExpectServed("p" + std::to_string(i), PatternBytes(kSize, 30 + i));
    struct stat st {};
    ASSERT_EQ(StatErr(M("p" + std::to_string(i)), &st), 0);  // the kernel keeps the inode
  }
  EXPECT_LE(CacheBytes(), kBound + kSize) << ::testing::PrintToString(CacheFiles());
  // Still served, from the cache or the origin.
  ExpectServed("p1", PatternBytes(kSize, 31));
  ExpectServed("p10", PatternBytes(kSize, 40));
}

TEST_F(RuleOptionsTest, WritebackFalseCacheStaysWithinItsBound) {
  constexpr std::size_t kSize = 40 * 1024;
  constexpr std::size_t kBound = 100 * 1024;  // room for two objects
  for (int i = 1; i <= 4; ++i)
    origin_.SetFile("/k" + std::to_string(i), PatternBytes(kSize, 10 + i));
  ASSERT_NO_FATAL_FAILURE(MountToml(
      "[[rule]]\nprefix = \"\"\nwriteback = false\ncache_max_size = " + std::to_string(kBound) +
      "\norigin = \"" + origin_.url() + "\"\n"));
  ExpectServed("k1", PatternBytes(kSize, 11));
  ExpectServed("k2", PatternBytes(kSize, 12));
  EXPECT_EQ(CacheBytes(), 2 * kSize);

  // Once nothing is in use any more, new objects push the old ones out.
  ASSERT_NO_FATAL_FAILURE(Remount());
  ExpectServed("k3", PatternBytes(kSize, 13));
  EXPECT_LE(CacheBytes(), kBound) << ::testing::PrintToString(CacheFiles());
  ExpectServed("k4", PatternBytes(kSize, 14));
  EXPECT_LE(CacheBytes(), kBound) << ::testing::PrintToString(CacheFiles());
  EXPECT_EQ(CacheFiles().size(), 2u) << ::testing::PrintToString(CacheFiles());

  // k3 and k4 are the ones kept; k1 and k2 were evicted.
  ASSERT_NO_FATAL_FAILURE(Remount());
  ExpectServed("k3", PatternBytes(kSize, 13));
  ExpectServed("k4", PatternBytes(kSize, 14));
  EXPECT_EQ(origin_.GetCount("/k3"), 1);
  EXPECT_EQ(origin_.GetCount("/k4"), 1);
  ExpectServed("k1", PatternBytes(kSize, 11));
  EXPECT_EQ(origin_.GetCount("/k1"), 2) << "k1 should have been evicted";
}

TEST_F(RuleOptionsTest, WritebackFalseCacheNeverEvictsAFileInUse) {
  constexpr std::size_t kSize = 40 * 1024;
  constexpr std::size_t kBound = 100 * 1024;
  for (int i = 1; i <= 4; ++i)
    origin_.SetFile("/k" + std::to_string(i), PatternBytes(kSize, 20 + i));
  ASSERT_NO_FATAL_FAILURE(MountToml(
      "[[rule]]\nprefix = \"\"\nwriteback = false\ncache_max_size = " + std::to_string(kBound) +
      "\norigin = \"" + origin_.url() + "\"\n"));

  // k1 is the least recently used object, and stays open.
  int fd = open(M("k1").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << strerror(errno);
  int err = 0;
  EXPECT_TRUE(PreadAll(fd, kSize, 0, &err) == PatternBytes(kSize, 21)) << ErrnoName(err);
  ExpectServed("k2", PatternBytes(kSize, 22));
  ExpectServed("k3", PatternBytes(kSize, 23));

  // Make the kernel forget the inodes nobody holds (k2, k3), so that only k1
  // is still in use.
  long before = Counter("inodes");
  {
    std::ofstream drop("/proc/sys/vm/drop_caches");
    drop << "2" << std::flush;
    if (!drop) {
      close(fd);
      GTEST_SKIP() << "cannot write /proc/sys/vm/drop_caches";
    }
  }
  auto deadline = Clock::now() + 5s;
  while (Counter("inodes") > 2 && Clock::now() < deadline) std::this_thread::sleep_for(20ms);
  long after = Counter("inodes");
  if (after > 2) {
    close(fd);
    GTEST_SKIP() << "the kernel did not forget the unused inodes (" << before << " -> " << after
                 << ")";
  }

  // Over the bound: the least recently used object not in use goes, k1 stays.
  ExpectServed("k4", PatternBytes(kSize, 24));
  EXPECT_LE(CacheBytes(), kBound) << ::testing::PrintToString(CacheFiles());
  EXPECT_TRUE(PreadAll(fd, kSize, 0, &err) == PatternBytes(kSize, 21))
      << "the open file changed: " << ErrnoName(err);
  close(fd);

  ASSERT_NO_FATAL_FAILURE(Remount());
  ExpectServed("k1", PatternBytes(kSize, 21));
  EXPECT_EQ(origin_.GetCount("/k1"), 1) << "the file in use was evicted";
  ExpectServed("k2", PatternBytes(kSize, 22));
  EXPECT_EQ(origin_.GetCount("/k2"), 2)
      << "k2 (least recently used, not in use) should have been evicted";
}

// ---- mtime --------------------------------------------------------------------------------------

TEST_F(RuleOptionsTest, MtimeFromOriginOrFetchTime) {
  for (const char* k : {"/o/a.txt", "/f/a.txt"}) {
    testing::Behavior b;
    b.body = "dated";
    b.last_modified = kLastModified;
    origin_.Set(k, b);
  }
  std::string u = origin_.url();
  ASSERT_NO_FATAL_FAILURE(
      MountToml("[[rule]]\nprefix = \"o/\"\norigin = \"" + u +
                "\"\n\n[[rule]]\nprefix = \"f/\"\nmtime = \"fetch\"\norigin = \"" + u + "\"\n"));
  int64_t t0 = time(nullptr);
  struct stat st {};
  ASSERT_EQ(StatErr(M("o/a.txt"), &st), 0);
  EXPECT_EQ(st.st_mtime, kLastModifiedEpoch) << "stat before the download ended";
  ASSERT_EQ(StatErr(M("f/a.txt"), &st), 0);
  EXPECT_GE(st.st_mtime, t0 - 2);
  EXPECT_LE(st.st_mtime, time(nullptr) + 2);
  ExpectServed("o/a.txt", "dated");
  ExpectServed("f/a.txt", "dated");
  ASSERT_TRUE(EventuallyExists(B("o/a.txt")));
  ASSERT_TRUE(EventuallyExists(B("f/a.txt")));
  ASSERT_EQ(StatErr(B("o/a.txt"), &st), 0);
  EXPECT_EQ(st.st_mtime, kLastModifiedEpoch);
  ASSERT_EQ(StatErr(B("f/a.txt"), &st), 0);
  EXPECT_GE(st.st_mtime, t0 - 2);
  EXPECT_LE(st.st_mtime, time(nullptr) + 2);
}

// ---- originfs refresh --------------------------------------------------------------------------

class RefreshTest : public RuleOptionsTest, public ::testing::WithParamInterface<const char*> {};

TEST_P(RefreshTest, ConditionalGetUpdateAndGone) {
  const std::string key = GetParam();
  const std::string path = "/" + key;
  const std::string v1 = "version one\n";
  const std::string v2 = PatternBytes(3000, 9);  // another size as well
  testing::Behavior b;
  b.body = v1;
  b.headers = {{"ETag", "\"v1\""}};
  b.last_modified = kLastModified;
  b.honor_conditional = true;
  origin_.Set(path, b);
  testing::Behavior lm;  // no ETag: If-Modified-Since
  lm.body = "dated only";
  lm.last_modified = kLastModified;
  lm.honor_conditional = true;
  origin_.Set("/lm.txt", lm);
  // Long kernel caches: the refresh itself must make new opens see new bytes.
  ASSERT_NO_FATAL_FAILURE(MountToml("[[rule]]\nprefix = \"docs/\"\norigin = \"" + origin_.url() +
                                        "\"\n\n[[rule]]\nprefix = \"\"\norigin = \"" +
                                        origin_.url() + "\"\n",
                                    {"entry_timeout=60", "attr_timeout=60"}));

  ExpectServed(key, v1);
  ExpectServed("lm.txt", "dated only");
  ASSERT_TRUE(EventuallyExists(B(key)));
  ASSERT_TRUE(EventuallyExists(B("lm.txt")));

  // Unchanged: 304 to a conditional GET.
  auto r = Originfs({"refresh", mnt_, key, "lm.txt"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find(key + ": unchanged"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("lm.txt: unchanged"), std::string::npos) << r.out;
  EXPECT_EQ(origin_.GetCount(path), 2);
  EXPECT_EQ(origin_.LastHeader(path, "If-None-Match"), "\"v1\"");
  EXPECT_EQ(origin_.LastHeader("/lm.txt", "If-Modified-Since"), kLastModified);
  EXPECT_EQ(Slurp(B(key)), v1);

  // Changed at the origin: updated; a reader that had it open keeps the old bytes.
  int old_fd = open(M(key).c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(old_fd, 0) << strerror(errno);
  int err = 0;
  EXPECT_EQ(PreadAll(old_fd, 4096, 0, &err), v1);
  b.body = v2;
  b.headers = {{"ETag", "\"v2\""}};
  b.last_modified = "Thu, 22 Oct 2015 07:28:00 GMT";
  origin_.Set(path, b);
  r = Originfs({"refresh", mnt_, key});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find(key + ": updated"), std::string::npos) << r.out;
  EXPECT_EQ(origin_.LastHeader(path, "If-None-Match"), "\"v1\"");
  EXPECT_TRUE(Slurp(B(key)) == v2) << "the bucket copy was not replaced";
  auto now = ReadAll(M(key));
  EXPECT_EQ(now.err, 0) << now.stage << ": " << ErrnoName(now.err);
  EXPECT_EQ(now.data.size(), v2.size());
  EXPECT_TRUE(now.data == v2) << "a new open after the refresh does not see the new bytes";
  struct stat st {};
  EXPECT_EQ(StatErr(M(key), &st), 0);
  EXPECT_EQ(st.st_size, static_cast<off_t>(v2.size())) << "stale size through the mount";
  EXPECT_EQ(PreadAll(old_fd, 4096, 0, &err), v1)
      << "the fd opened before the refresh changed: " << ErrnoName(err);
  close(old_fd);

  // Gone at the origin: the local copy is kept.
  origin_.Remove(path);
  r = Originfs({"refresh", mnt_, key});
  EXPECT_NE(r.out.find("kept"), std::string::npos) << r.out << r.err;
  EXPECT_TRUE(Slurp(B(key)) == v2);
  auto kept = ReadAll(M(key));
  EXPECT_EQ(kept.err, 0) << kept.stage << ": " << ErrnoName(kept.err);
  EXPECT_TRUE(kept.data == v2);
}

// A key at the root, and one in a directory that exists only because of a rule prefix.
INSTANTIATE_TEST_SUITE_P(Keys, RefreshTest, ::testing::Values("doc.txt", "docs/doc.txt"),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           return std::string(info.param).find('/') == std::string::npos
                                      ? "AtRoot"
                                      : "InPrefixDirectory";
                         });

// ---- streaming
// ------------------------------------------------------------------------------------

TEST_F(RuleOptionsTest, StreamingReaderGetsFirstBytesBeforeTheStallEnds) {
  constexpr int kStallMs = 2000;
  const std::string body = PatternBytes(8 * 1024 * 1024, 30);
  testing::Behavior b;
  b.body = body;
  b.stall_ms = kStallMs;  // first half at once, then 2 s of silence, then the rest
  origin_.Set("/big.bin", b);
  ASSERT_NO_FATAL_FAILURE(Mount());

  auto start = Clock::now();
  int fd = open(M("big.bin").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << strerror(errno);
  char first[64 * 1024];
  ssize_t n = pread(fd, first, sizeof first, 0);
  auto ttfb = Clock::now() - start;
  ASSERT_EQ(n, static_cast<ssize_t>(sizeof first)) << strerror(errno);
  EXPECT_TRUE(std::memcmp(first, body.data(), sizeof first) == 0);
  int err = 0;
  std::string all = PreadAll(fd, body.size() + 1, 0, &err);
  auto total = Clock::now() - start;
  close(fd);
  EXPECT_EQ(err, 0) << ErrnoName(err);
  EXPECT_EQ(all.size(), body.size());
  EXPECT_TRUE(all == body);
  EXPECT_LT(ttfb, std::chrono::milliseconds(kStallMs / 2))
      << "the first bytes waited for the whole download (" << Ms(ttfb) << " of " << Ms(total)
      << " ms)";
  EXPECT_GE(total, std::chrono::milliseconds(kStallMs - 200)) << "the origin did not stall?";
  EXPECT_TRUE(EventuallyExists(B("big.bin")));
  EXPECT_TRUE(Slurp(B("big.bin")) == body);
  EXPECT_EQ(origin_.GetCount("/big.bin"), 1);
}

TEST_F(RuleOptionsTest, StreamingReaderGetsEioWhenTheOriginDropsMidBody) {
  const std::string body = PatternBytes(8 * 1024 * 1024, 31);
  testing::Behavior b;
  b.body = body;
  b.stall_ms = 1000;
  b.truncate_after = 6 * 1024 * 1024;  // then the connection drops
  origin_.Set("/broken.bin", b);
  ASSERT_NO_FATAL_FAILURE(Mount());

  auto start = Clock::now();
  int fd = open(M("broken.bin").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << strerror(errno);
  int err = 0;
  std::string head = PreadAll(fd, 1024 * 1024, 0, &err);
  auto ttfb = Clock::now() - start;
  EXPECT_EQ(err, 0) << ErrnoName(err);
  EXPECT_TRUE(head == body.substr(0, head.size()));
  EXPECT_EQ(head.size(), 1024u * 1024) << "the first part was not readable";
  EXPECT_LT(ttfb, 800ms) << "the first part waited (" << Ms(ttfb) << " ms)";
  std::string rest = PreadAll(fd, body.size(), static_cast<off_t>(head.size()), &err);
  close(fd);
  EXPECT_EQ(err, EIO) << "after reading " << head.size() + rest.size() << " bytes";
  EXPECT_LT(head.size() + rest.size(), body.size());
  EXPECT_TRUE(rest == body.substr(head.size(), rest.size())) << "wrong bytes before the error";
  auto took = Clock::now() - start;
  // The rule's default retries = 2: three attempts of ~1 s each, for the whole read.
  EXPECT_LE(origin_.GetCount("/broken.bin"), 3) << "more downloads than 1 + retries";
  EXPECT_LT(took, 8s) << Ms(took) << " ms until EIO";
  EXPECT_FALSE(Exists(B("broken.bin"))) << "a broken download landed in the bucket";
  EXPECT_TRUE(StagingFiles(bucket_).empty()) << ::testing::PrintToString(StagingFiles(bucket_));
  EXPECT_EQ(ReadAll(M("broken.bin")).err, EIO);
  EXPECT_FALSE(Exists(B("broken.bin")));
}

}  // namespace
}  // namespace originfs::e2e
