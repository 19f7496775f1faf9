// Reliability: nothing lost, nothing partial. Every way an origin can fail
// reaches the reader as EIO (or the bytes, when a bounded retry succeeds),
// leaves no file and no staging debris in the bucket, and does not stick: the
// next open asks the origin again. A full bucket is ENOSPC. A daemon killed
// with SIGKILL mid-download, or a lost state directory, loses no data.
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <functional>
#include <future>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "core/store/index.h"
#include "tests/support/mount_fixture.h"

namespace originfs::e2e {
namespace {

// Lines of the daemon's log that report a failed fetch of key.
int FailedFetches(const std::string& log, const std::string& key) {
  int n = 0;
  std::string needle = "fetch key=" + key + " ";
  for (std::size_t pos = 0; (pos = log.find(needle, pos)) != std::string::npos; ++pos) {
    std::size_t eol = log.find('\n', pos);
    if (log.substr(pos, eol - pos).find("failed") != std::string::npos) ++n;
  }
  return n;
}

class ReliabilityTest : public MountTest {
 protected:
  // key fails with want (from open or read), and nothing of it is left.
  void ExpectFailsCleanly(const std::string& key, int want = EIO) {
    struct stat st {};
    int stat_err = StatErr(M(key), &st);
    EXPECT_NE(stat_err, ENOENT) << key << ": a failed fetch must not look like a missing file";
    auto r = ReadAll(M(key));
    EXPECT_EQ(r.err, want) << key << ": got " << ErrnoName(r.err) << " from " << r.stage
                           << " (stat gave " << ErrnoName(stat_err) << ")";
    EXPECT_FALSE(Exists(B(key))) << key << ": failed object landed in the bucket";
    EXPECT_TRUE(StagingFiles(bucket_).empty()) << ::testing::PrintToString(StagingFiles(bucket_));
  }

  void ExpectReads(const std::string& key, const std::string& body) {
    auto r = ReadAll(M(key));
    ASSERT_EQ(r.err, 0) << key << ": " << r.stage << ": " << ErrnoName(r.err);
    EXPECT_EQ(r.data.size(), body.size()) << key;
    EXPECT_TRUE(r.data == body) << key << ": wrong bytes";
    ASSERT_TRUE(EventuallyExists(B(key))) << key;
    EXPECT_TRUE(ReadAll(B(key)).data == body) << key << ": wrong bytes in the bucket";
  }

  // Until no origin is down (the probe in the background runs every second).
  void WaitOriginsUp() {
    std::string down = "1";
    for (int i = 0; i < 100 && down != "0"; ++i) {
      char v[32] = {};
      ssize_t n = getxattr(mnt_.c_str(), "user.originfs.origins_down", v, sizeof v - 1);
      down = n > 0 ? std::string(v, static_cast<std::size_t>(n)) : "?";
      if (down != "0") usleep(100 * 1000);
    }
    EXPECT_EQ(down, "0");
  }

  DaemonOptions NoRetries() const {
    DaemonOptions o = Defaults();
    o.extra_opts = {"retries=0", "low_speed_time=1"};
    return o;
  }
};

// ---- origin faults -----------------------------------------------------------

struct OriginFault {
  const char* name;
  std::function<testing::Behavior(const std::string& body)> behavior;
};

class OriginFaultTest : public ReliabilityTest,
                        public ::testing::WithParamInterface<OriginFault> {};

TEST_P(OriginFaultTest, IsEioLeavesNothingAndIsRetriedOnNextOpen) {
  const std::string key = "faulty/object.bin";
  const std::string body = PatternBytes(700 * 1024 + 3, 101);
  origin_.SetNginxDirectories(true);
  origin_.Set("/" + key, GetParam().behavior(body));
  ASSERT_NO_FATAL_FAILURE(Mount(NoRetries()));

  auto start = std::chrono::steady_clock::now();
  ASSERT_NO_FATAL_FAILURE(ExpectFailsCleanly(key));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 30s);
  int first = origin_.GetCount("/" + key);
  EXPECT_GE(first, 1);
  // retries=0: a stat and an open ask at most once each.
  EXPECT_LE(first, 2) << "one failed access sent " << first << " GETs";

  // Not remembered after one failed access: the next open asks the origin
  // again (an origin that did not answer in time is down until the probe
  // in the background finds it answering, within a second or two).
  WaitOriginsUp();
  ASSERT_NO_FATAL_FAILURE(ExpectFailsCleanly(key));
  EXPECT_GT(origin_.GetCount("/" + key), first) << "the failure was cached";

  // Failures that kept repeating are remembered for a backoff
  // (RememberedFailuresTest); a refresh of the directory asks at once.
  origin_.SetFile("/" + key, body);
  WaitOriginsUp();
  auto refreshed = RunCommand({ORIGINFS_BINARY, "refresh", mnt_, "faulty/"}, 30s);
  EXPECT_EQ(refreshed.exit_code, 0) << refreshed.out << refreshed.err;
  ASSERT_NO_FATAL_FAILURE(ExpectReads(key, body));
  EXPECT_TRUE(StagingFiles(bucket_).empty());
}

const OriginFault kOriginFaults[] = {
    {"DropMidBody",
     [](const std::string& body) {
       testing::Behavior b;
       b.body = body;
       b.stall_ms = 200;  // half, a pause, a bit more, then the connection drops
       b.truncate_after = body.size() * 3 / 4;
       return b;
     }},
    {"OneByteShortOfContentLength",
     [](const std::string& body) {
       testing::Behavior b;
       b.body = body;
       b.truncate_after = body.size() - 1;
       return b;
     }},
    {"HeadOnlyNoBody",
     [](const std::string& body) {
       testing::Behavior b;
       b.body = body;
       b.truncate_after = 0;
       return b;
     }},
    {"ChunkedEndsEarly",
     [](const std::string& body) {
       testing::Behavior b;
       b.body = body;
       b.chunked = true;
       b.truncate_after = 128 * 1024;
       return b;
     }},
    {"Status500",
     [](const std::string&) {
       testing::Behavior b;
       b.status = 500;
       b.body = "boom";
       return b;
     }},
    {"Status502",
     [](const std::string&) {
       testing::Behavior b;
       b.status = 502;
       b.body = "bad gateway";
       return b;
     }},
    {"Status503",
     [](const std::string&) {
       testing::Behavior b;
       b.status = 503;
       b.body = "unavailable";
       return b;
     }},
    {"StallMidBody",
     [](const std::string& body) {
       testing::Behavior b;
       b.body = body;
       b.stall_ms = 60000;  // low_speed_time=1 must cut it short
       return b;
     }},
    {"StallBeforeHead",
     [](const std::string& body) {
       testing::Behavior b;
       b.body = body;
       b.delay_ms = 60000;
       return b;
     }},
};

INSTANTIATE_TEST_SUITE_P(Faults, OriginFaultTest, ::testing::ValuesIn(kOriginFaults),
                         [](const ::testing::TestParamInfo<OriginFault>& info) {
                           return info.param.name;
                         });

// The first failure takes the origin down: the next access is EIO without
// a request of its own (the probe in the background asks the origin again;
// OfflineTest.AnOriginThatComesBackIsUsedAgain).
TEST_F(ReliabilityTest, ConnectionRefusedIsEioAndTheOriginDown) {
  ClosedPort port;
  ASSERT_GT(port.port(), 0);
  DaemonOptions o = NoRetries();
  o.rules = {RuleSpec{"", port.url()}};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  ASSERT_NO_FATAL_FAILURE(ExpectFailsCleanly("refused.txt"));
  ASSERT_NO_FATAL_FAILURE(ExpectFailsCleanly("refused.txt"));
  auto stats = RunCommand({ORIGINFS_BINARY, "stats", mnt_}, 10s);
  EXPECT_NE(stats.out.find(port.url() + " down since"), std::string::npos) << stats.out;
  ASSERT_NO_FATAL_FAILURE(Unmount());
  // One request found the origin down (the log says so, the origin cannot).
  EXPECT_EQ(FailedFetches(mount_->Log(), "refused.txt"), 1) << mount_->Log();
}

TEST_F(ReliabilityTest, UnresolvableHostIsEioAndTheOriginDown) {
  DaemonOptions o = NoRetries();
  o.rules = {RuleSpec{"", "http://nonexistent.invalid"}};
  o.extra_opts.push_back("connect_timeout=5");
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  ASSERT_NO_FATAL_FAILURE(ExpectFailsCleanly("nowhere.txt"));
  ASSERT_NO_FATAL_FAILURE(ExpectFailsCleanly("nowhere.txt"));
  ASSERT_NO_FATAL_FAILURE(Unmount());
  std::string log = mount_->Log();
  EXPECT_EQ(FailedFetches(log, "nowhere.txt"), 1) << log;
  EXPECT_NE(log.find("resolve"), std::string::npos) << "no resolve failure in the log:\n" << log;
}

TEST_F(ReliabilityTest, BoundedRetryServesAfterOneFailedGet) {
  const std::string body = PatternBytes(300 * 1024, 102);
  testing::Behavior status;
  status.body = body;
  status.fail_first = 1;  // one 500, then the object
  origin_.Set("/flaky-status.bin", status);
  testing::Behavior cut = status;
  cut.fail_by_truncation = true;         // one body cut off halfway, then the object
  cut.headers["ETag"] = "\"flaky-v1\"";  // pins the version: the retry goes on under readers
  origin_.Set("/flaky-body.bin", cut);
  testing::Behavior unpinned = cut;
  unpinned.headers.clear();  // nothing pins it: a reader that had bytes gets EIO
  origin_.Set("/flaky-unpinned.bin", unpinned);
  testing::Behavior hopeless = status;
  hopeless.fail_first = 1000;
  origin_.Set("/hopeless.bin", hopeless);
  DaemonOptions o = Defaults();
  o.extra_opts = {"retries=2"};
  ASSERT_NO_FATAL_FAILURE(Mount(o));

  ASSERT_NO_FATAL_FAILURE(ExpectReads("flaky-status.bin", body));
  EXPECT_EQ(origin_.GetCount("/flaky-status.bin"), 2);
  ASSERT_NO_FATAL_FAILURE(ExpectReads("flaky-body.bin", body));
  EXPECT_EQ(origin_.GetCount("/flaky-body.bin"), 2);
  auto first = ReadAll(M("flaky-unpinned.bin"));
  if (first.err == 0)
    EXPECT_TRUE(first.data == body);
  else
    EXPECT_EQ(first.err, EIO);
  ASSERT_NO_FATAL_FAILURE(ExpectReads("flaky-unpinned.bin", body));
  // The retry is bounded: 1 + retries GETs per access, then EIO.
  auto r = ReadAll(M("hopeless.bin"));
  EXPECT_EQ(r.err, EIO) << r.stage << ": " << ErrnoName(r.err);
  EXPECT_EQ(origin_.GetCount("/hopeless.bin"), 3);
  ASSERT_NO_FATAL_FAILURE(ExpectFailsCleanly("hopeless.bin"));
}

// ---- redirects ---------------------------------------------------------------

TEST_F(ReliabilityTest, RedirectsOnlyToHttpBoundedAndNoLoops) {
  const std::string body = "at the end of the chain";
  origin_.SetFile("/target.txt", body);
  auto redirect = [&](const std::string& from, const std::string& to) {
    testing::Behavior b;
    b.status = 302;
    b.redirect_to = to;
    origin_.Set(from, b);
  };
  redirect("/to-file.txt", "file:///etc/hostname");
  redirect("/to-ftp.txt", "ftp://127.0.0.1/target.txt");
  redirect("/to-gopher.txt", "gopher://127.0.0.1/target.txt");
  redirect("/loop.txt", origin_.url() + "/loop.txt");
  redirect("/ping.txt", origin_.url() + "/pong.txt");
  redirect("/pong.txt", origin_.url() + "/ping.txt");
  // chainN.txt is N redirects away from target.txt.
  for (int n = 1; n <= 4; ++n) {
    redirect("/chain" + std::to_string(n) + ".txt",
             n == 1 ? origin_.url() + "/target.txt"
                    : origin_.url() + "/chain" + std::to_string(n - 1) + ".txt");
  }
  DaemonOptions o = Defaults();
  o.extra_opts = {"max_redirects=3", "retries=0"};
  ASSERT_NO_FATAL_FAILURE(Mount(o));

  // One access of a loop: the first GET and max_redirects more, then EIO.
  auto loop = ReadAll(M("loop.txt"));
  EXPECT_EQ(loop.err, EIO) << loop.stage << ": " << ErrnoName(loop.err);
  EXPECT_LE(origin_.GetCount("/loop.txt"), 4) << "a redirect loop was followed past max_redirects";
  for (const char* key : {"to-file.txt", "to-ftp.txt", "to-gopher.txt", "loop.txt", "ping.txt"}) {
    SCOPED_TRACE(key);
    ASSERT_NO_FATAL_FAILURE(ExpectFailsCleanly(key));
  }

  // Exactly max_redirects hops are followed, one more is refused.
  auto three = ReadAll(M("chain3.txt"));
  EXPECT_EQ(three.err, 0) << three.stage << ": " << ErrnoName(three.err);
  EXPECT_EQ(three.data, body);
  ASSERT_NO_FATAL_FAILURE(ExpectFailsCleanly("chain4.txt"));
  // The object lands under the key that was asked for, not the target's.
  EXPECT_TRUE(EventuallyExists(B("chain3.txt")));
  EXPECT_FALSE(Exists(B("target.txt")));
}

TEST_F(ReliabilityTest, MaxRedirectsZeroRefusesRedirects) {
  origin_.SetFile("/target.txt", "target");
  testing::Behavior b;
  b.status = 301;
  b.redirect_to = origin_.url() + "/target.txt";
  origin_.Set("/moved.txt", b);
  DaemonOptions o = Defaults();
  o.extra_opts = {"max_redirects=0", "retries=0"};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  ASSERT_NO_FATAL_FAILURE(ExpectFailsCleanly("moved.txt"));
  EXPECT_EQ(origin_.GetCount("/target.txt"), 0);
}

// ---- size limit --------------------------------------------------------------

TEST_F(ReliabilityTest, MaxObjectSizeIsEioAndStoresNothing) {
  origin_.SetFile("/fits.bin", PatternBytes(64 * 1024, 103));
  origin_.SetFile("/announced.bin", PatternBytes(64 * 1024 + 1, 104));
  testing::Behavior chunked;  // no Content-Length: the limit is found while receiving
  chunked.body = PatternBytes(300 * 1024, 105);
  chunked.chunked = true;
  origin_.Set("/chunked.bin", chunked);
  DaemonOptions o = Defaults();
  o.extra_opts = {"max_object_size=64K", "retries=0"};
  ASSERT_NO_FATAL_FAILURE(Mount(o));

  ASSERT_NO_FATAL_FAILURE(ExpectReads("fits.bin", PatternBytes(64 * 1024, 103)));
  ASSERT_NO_FATAL_FAILURE(ExpectFailsCleanly("announced.bin"));
  ASSERT_NO_FATAL_FAILURE(ExpectFailsCleanly("chunked.bin"));
  int before = origin_.GetCount("/announced.bin");
  ASSERT_NO_FATAL_FAILURE(ExpectFailsCleanly("announced.bin"));
  EXPECT_GT(origin_.GetCount("/announced.bin"), before);
}

TEST_F(ReliabilityTest, PerRuleMaxObjectSize) {
  origin_.SetFile("/small/a.bin", PatternBytes(2000, 106));
  origin_.SetFile("/big/a.bin", PatternBytes(2000, 107));
  origin_.SetNginxDirectories(true);
  DaemonOptions o;
  o.rules = {RuleSpec{"small/", origin_.url(), {}, "", "max_object_size = 1000"},
             RuleSpec{"", origin_.url()}};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  ASSERT_NO_FATAL_FAILURE(ExpectFailsCleanly("small/a.bin"));
  ASSERT_NO_FATAL_FAILURE(ExpectReads("big/a.bin", PatternBytes(2000, 107)));
}

// ---- a full bucket -------------------------------------------------------------

// A small tmpfs mounted over a directory for the life of the object.
class SmallTmpfs {
 public:
  SmallTmpfs(const std::string& dir, const std::string& size) : dir_(dir) {
    auto r = RunCommand({"mount", "-t", "tmpfs", "-o", "size=" + size + ",mode=0755", "tmpfs", dir},
                        10s);
    ok_ = r.exit_code == 0;
    error_ = r.err;
  }
  ~SmallTmpfs() { Unmount(); }
  SmallTmpfs(const SmallTmpfs&) = delete;
  SmallTmpfs& operator=(const SmallTmpfs&) = delete;
  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }
  bool Unmount() {
    if (!ok_) return true;
    if (umount(dir_.c_str()) != 0) umount2(dir_.c_str(), MNT_DETACH);
    ok_ = false;
    return !IsMounted(dir_);
  }

 private:
  std::string dir_;
  bool ok_ = false;
  std::string error_;
};

TEST_F(ReliabilityTest, FullBucketIsEnospcAndRecovers) {
  SmallTmpfs fs(bucket_, "4m");
  ASSERT_TRUE(fs.ok()) << "mount -t tmpfs: " << fs.error();
  ASSERT_EQ(WriteAll(B("filler.bin"), PatternBytes(2 * 1024 * 1024, 108)), 0);
  ASSERT_EQ(WriteAll(B("local.txt"), "still here"), 0);
  const std::string big = PatternBytes(3 * 1024 * 1024, 109);
  origin_.SetFile("/big.bin", big);  // Content-Length: readers follow the download
  testing::Behavior chunked;         // no length: the lookup waits for the whole body
  chunked.body = big;
  chunked.chunked = true;
  origin_.Set("/big-chunked.bin", chunked);
  DaemonOptions o = Defaults();
  o.extra_opts = {"retries=0"};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  auto free_bytes = [&] {
    struct statvfs sv {};
    statvfs(bucket_.c_str(), &sv);
    return static_cast<int64_t>(sv.f_bavail) * static_cast<int64_t>(sv.f_frsize);
  };
  const int64_t free_before = free_bytes();

  ASSERT_NO_FATAL_FAILURE(ExpectFailsCleanly("big-chunked.bin", ENOSPC));
  ASSERT_NO_FATAL_FAILURE(ExpectFailsCleanly("big.bin", ENOSPC));
  // retries=0: a stat and an open ask at most once each.
  EXPECT_LE(origin_.GetCount("/big-chunked.bin"), 2);
  EXPECT_LE(origin_.GetCount("/big.bin"), 2) << "a full bucket made originfs ask again and again";
  // A failed download gives its space back (its unnamed staging file is gone).
  auto deadline = std::chrono::steady_clock::now() + 3s;
  while (free_bytes() < free_before - 256 * 1024 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  EXPECT_GE(free_bytes(), free_before - 256 * 1024)
      << "failed downloads still hold " << (free_before - free_bytes()) / 1024
      << " KiB of the bucket";
  // The daemon is alive and serves local files.
  auto local = ReadAll(M("local.txt"));
  EXPECT_EQ(local.err, 0) << local.stage << ": " << ErrnoName(local.err);
  EXPECT_EQ(local.data, "still here");

  // Free space and try again.
  ASSERT_EQ(unlink(M("filler.bin").c_str()), 0) << strerror(errno);
  int before = origin_.GetCount("/big.bin");
  ASSERT_NO_FATAL_FAILURE(ExpectReads("big.bin", big));
  EXPECT_EQ(origin_.GetCount("/big.bin"), before + 1);
  ASSERT_EQ(unlink(M("big.bin").c_str()), 0);
  ASSERT_NO_FATAL_FAILURE(ExpectReads("big-chunked.bin", big));

  ASSERT_NO_FATAL_FAILURE(Unmount());
  EXPECT_TRUE(fs.Unmount()) << "tmpfs still mounted at " << bucket_;
}

TEST_F(ReliabilityTest, FullBucketDuringASplitDownloadIsEnospc) {
  SmallTmpfs fs(bucket_, "32m");
  ASSERT_TRUE(fs.ok()) << "mount -t tmpfs: " << fs.error();
  ASSERT_EQ(WriteAll(B("filler.bin"), PatternBytes(14 * 1024 * 1024, 110)), 0);
  // 24 MB into ~18 MB of room, over two connections (parallel_min): the
  // second part's writes hit the full bucket, whichever connection gets there.
  const std::string big = PatternBytes(24 * 1024 * 1024, 111);
  testing::Behavior b;
  b.body = big;
  b.headers["ETag"] = "\"full-1\"";
  b.stall_at = 5 * 1024 * 1024;  // the ranged GET streams while the first part waits
  b.stall_ms = 300;
  origin_.Set("/big.bin", b);
  DaemonOptions o = Defaults();
  o.extra_opts = {"retries=0", "parallel_min=16M"};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  ASSERT_NO_FATAL_FAILURE(ExpectFailsCleanly("big.bin", ENOSPC));
  EXPECT_LE(origin_.GetCount("/big.bin"), 4) << "a full bucket made originfs ask again and again";
  ASSERT_EQ(unlink(M("filler.bin").c_str()), 0) << strerror(errno);
  ASSERT_NO_FATAL_FAILURE(ExpectReads("big.bin", big));
  ASSERT_NO_FATAL_FAILURE(Unmount());
  EXPECT_TRUE(fs.Unmount()) << "tmpfs still mounted at " << bucket_;
}

// ---- crashes and lost state ----------------------------------------------------

TEST_F(ReliabilityTest, KillDuringDownloadsThenRemountIsConsistent) {
  // Earlier, complete fetches.
  origin_.SetFile("/done/kept.txt", "kept");
  origin_.SetFile("/done/deleted.txt", "deleted while unmounted");
  origin_.SetNginxDirectories(true);
  ASSERT_NO_FATAL_FAILURE(Mount());
  ASSERT_NO_FATAL_FAILURE(ExpectReads("done/kept.txt", "kept"));
  ASSERT_NO_FATAL_FAILURE(ExpectReads("done/deleted.txt", "deleted while unmounted"));

  // Several downloads that stall halfway, so the daemon dies with all of them open.
  constexpr int kDownloads = 4;
  std::vector<std::string> bodies;
  for (int i = 0; i < kDownloads; ++i) {
    bodies.push_back(PatternBytes(2 * 1024 * 1024 + i, 110 + i));
    testing::Behavior b;
    b.body = bodies.back();
    b.stall_ms = 30000;
    origin_.Set("/inflight/" + std::to_string(i) + ".bin", b);
  }
  std::vector<std::future<ReadResult>> readers;
  for (int i = 0; i < kDownloads; ++i) {
    std::string path = M("inflight/" + std::to_string(i) + ".bin");
    readers.push_back(std::async(std::launch::async, [path] { return ReadAll(path); }));
  }
  auto deadline = std::chrono::steady_clock::now() + 10s;
  auto all_started = [&] {
    for (int i = 0; i < kDownloads; ++i)
      if (origin_.GetCount("/inflight/" + std::to_string(i) + ".bin") == 0) return false;
    return true;
  };
  while (!all_started() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(all_started()) << ::testing::PrintToString(origin_.Log());
  std::this_thread::sleep_for(300ms);  // let the first halves arrive

  mount_->Kill();
  for (int i = 0; i < kDownloads; ++i) {
    ASSERT_EQ(readers[i].wait_for(10s), std::future_status::ready) << "reader " << i << " blocked";
    EXPECT_NE(readers[i].get().err, 0) << "reader " << i << " completed although the daemon died";
  }
  ASSERT_TRUE(mount_->Unmount());

  // Unmounted: nothing partial, and change the bucket behind originfs's back.
  for (int i = 0; i < kDownloads; ++i)
    EXPECT_FALSE(Exists(B("inflight/" + std::to_string(i) + ".bin"))) << "partial object " << i;
  ASSERT_EQ(WriteAll(B(".originfs/staging/debris-from-a-crash"), "junk"), 0);
  ASSERT_EQ(unlink(B("done/deleted.txt").c_str()), 0);
  ASSERT_EQ(WriteAll(B("done/copied.txt"), "copied in directly"), 0);
  origin_.SetFile("/done/copied.txt", "the origin's version");
  for (int i = 0; i < kDownloads; ++i)
    origin_.SetFile("/inflight/" + std::to_string(i) + ".bin", bodies[i]);
  origin_.ResetCounts();

  ASSERT_NO_FATAL_FAILURE(Mount(last_options_));
  EXPECT_TRUE(StagingFiles(bucket_).empty())
      << "staging not cleaned at start: " << ::testing::PrintToString(StagingFiles(bucket_));
  for (int i = 0; i < kDownloads; ++i)
    ASSERT_NO_FATAL_FAILURE(ExpectReads("inflight/" + std::to_string(i) + ".bin", bodies[i]));
  // An index entry whose file is gone: fetched again.
  ASSERT_NO_FATAL_FAILURE(ExpectReads("done/deleted.txt", "deleted while unmounted"));
  EXPECT_EQ(origin_.GetCount("/done/deleted.txt"), 1);
  // A file without an entry: local, no request.
  auto copied = ReadAll(M("done/copied.txt"));
  EXPECT_EQ(copied.data, "copied in directly");
  EXPECT_EQ(origin_.Count("/done/copied.txt"), 0);
  // Still there and not asked for.
  EXPECT_EQ(ReadAll(M("done/kept.txt")).data, "kept");
  EXPECT_EQ(origin_.Count("/done/kept.txt"), 0);
  ASSERT_NO_FATAL_FAILURE(Unmount());

  // The index agrees with the bucket.
  auto index = OpenLmdbIndex(bucket_ + "/.originfs/index", IndexOptions{});
  ASSERT_TRUE(index) << index.error().message;
  for (int i = 0; i < kDownloads; ++i) {
    std::string key = "inflight/" + std::to_string(i) + ".bin";
    auto rec = (*index)->Get(key);
    ASSERT_TRUE(rec && *rec) << key << " has no index entry";
    EXPECT_EQ((*rec)->size, bodies[i].size()) << key;
    EXPECT_EQ((*rec)->url, origin_.url() + "/" + key);
  }
  auto copied_rec = (*index)->Get("done/copied.txt");
  ASSERT_TRUE(copied_rec);
  EXPECT_FALSE(copied_rec->has_value()) << "an index entry for a file originfs never fetched";
  auto count = (*index)->CountObjects();
  ASSERT_TRUE(count);
  EXPECT_EQ(*count, static_cast<uint64_t>(kDownloads + 2)) << "entries: inflight/*, kept, deleted";
}

TEST_F(ReliabilityTest, DeletingTheStateDirLosesNoData) {
  origin_.SetFile("/a.txt", "from the origin");
  origin_.SetFile("/sub/b.bin", PatternBytes(100000, 120));
  origin_.SetNginxDirectories(true);
  ASSERT_NO_FATAL_FAILURE(Mount());
  ASSERT_NO_FATAL_FAILURE(ExpectReads("a.txt", "from the origin"));
  ASSERT_NO_FATAL_FAILURE(ExpectReads("sub/b.bin", PatternBytes(100000, 120)));
  ASSERT_EQ(WriteAll(M("local.txt"), "written locally"), 0);
  ASSERT_NO_FATAL_FAILURE(Unmount());

  std::filesystem::remove_all(B(".originfs"));
  ASSERT_FALSE(Exists(B(".originfs")));
  origin_.ResetCounts();
  ASSERT_NO_FATAL_FAILURE(Mount(last_options_));

  // Everything is still there, served locally.
  EXPECT_EQ(ReadAll(M("a.txt")).data, "from the origin");
  EXPECT_TRUE(ReadAll(M("sub/b.bin")).data == PatternBytes(100000, 120));
  EXPECT_EQ(ReadAll(M("local.txt")).data, "written locally");
  EXPECT_EQ(origin_.TotalCount(), 0) << ::testing::PrintToString(origin_.Log());
  // A fresh index that works.
  origin_.SetFile("/new.txt", "new after the reset");
  ASSERT_NO_FATAL_FAILURE(ExpectReads("new.txt", "new after the reset"));
  EXPECT_TRUE(Exists(B(".originfs/index")));
  ASSERT_NO_FATAL_FAILURE(Unmount());
  auto index = OpenLmdbIndex(bucket_ + "/.originfs/index", IndexOptions{});
  ASSERT_TRUE(index) << index.error().message;
  auto rec = (*index)->Get("new.txt");
  ASSERT_TRUE(rec && *rec) << "the new index did not record the fetch";
  EXPECT_EQ((*rec)->size, std::string("new after the reset").size());
}

}  // namespace
}  // namespace originfs::e2e
