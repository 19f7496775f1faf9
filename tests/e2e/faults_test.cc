// Origin failures reach the reader as EIO (never ENOENT), leave nothing in the
// bucket or staging, and do not stick: a retry succeeds once the origin is fixed.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>

#include <gtest/gtest.h>

#include "tests/support/mount_fixture.h"

namespace originfs::e2e {
namespace {

class FaultsTest : public MountTest {
 protected:
  // The failed key is EIO (from stat, open or read) and nothing of it landed.
  void ExpectFailedCleanly(const std::string& key) {
    struct stat st {};
    int stat_err = StatErr(M(key), &st);
    EXPECT_NE(stat_err, ENOENT) << "a failed fetch must not look like a missing file";
    auto r = ReadAll(M(key));
    EXPECT_EQ(r.err, EIO) << "got " << ErrnoName(r.err) << " from " << r.stage << " (stat gave "
                          << ErrnoName(stat_err) << ")";
    EXPECT_FALSE(Exists(B(key))) << "failed object landed in the bucket";
    EXPECT_TRUE(StagingFiles(bucket_).empty()) << ::testing::PrintToString(StagingFiles(bucket_));
  }

  void ExpectRetrySucceeds(const std::string& key, const std::string& body) {
    origin_.SetFile("/" + key, body);
    auto r = ReadAll(M(key));
    ASSERT_EQ(r.err, 0) << "retry after fixing the origin: " << r.stage << ": " << ErrnoName(r.err);
    EXPECT_EQ(r.data.size(), body.size());
    EXPECT_TRUE(r.data == body);
    ASSERT_TRUE(EventuallyExists(B(key)));
    EXPECT_TRUE(ReadAll(B(key)).data == body);
  }
};

TEST_F(FaultsTest, ServerErrorIsEio) {
  testing::Behavior b;
  b.status = 500;
  b.body = "internal error";
  origin_.Set("/broken.bin", b);
  ASSERT_NO_FATAL_FAILURE(Mount());

  ASSERT_NO_FATAL_FAILURE(ExpectFailedCleanly("broken.bin"));
  ASSERT_NO_FATAL_FAILURE(ExpectRetrySucceeds("broken.bin", PatternBytes(50000, 5)));
}

TEST_F(FaultsTest, TruncatedBodyIsEio) {
  const std::string body = PatternBytes(1024 * 1024, 6);
  testing::Behavior b;
  b.body = body;
  b.truncate_after = 300 * 1024;
  origin_.Set("/short.bin", b);
  ASSERT_NO_FATAL_FAILURE(Mount());

  ASSERT_NO_FATAL_FAILURE(ExpectFailedCleanly("short.bin"));
  // Same size, so attributes the kernel may still cache stay right.
  ASSERT_NO_FATAL_FAILURE(ExpectRetrySucceeds("short.bin", body));
}

TEST_F(FaultsTest, TruncatedChunkedBodyIsEio) {
  const std::string body = PatternBytes(512 * 1024, 7);
  testing::Behavior b;
  b.body = body;
  b.chunked = true;
  b.truncate_after = 100 * 1024;
  origin_.Set("/chunks.bin", b);
  ASSERT_NO_FATAL_FAILURE(Mount());

  ASSERT_NO_FATAL_FAILURE(ExpectFailedCleanly("chunks.bin"));
  ASSERT_NO_FATAL_FAILURE(ExpectRetrySucceeds("chunks.bin", body));
}

TEST_F(FaultsTest, RedirectToFileUrlIsEio) {
  testing::Behavior b;
  b.status = 302;
  b.redirect_to = "file:///etc/passwd";
  origin_.Set("/sneaky.txt", b);
  ASSERT_NO_FATAL_FAILURE(Mount());

  ASSERT_NO_FATAL_FAILURE(ExpectFailedCleanly("sneaky.txt"));
}

TEST_F(FaultsTest, FailureInOneRuleDoesNotFallThrough) {
  // Only a 404 falls through; a 500 from the first rule is the answer.
  testing::TestOrigin second;
  second.SetFile("/data/f.txt", "second");
  testing::Behavior b;
  b.status = 503;
  b.body = "overloaded";  // with an empty body TestOrigin sends no Content-Length
  origin_.Set("/data/f.txt", b);
  DaemonOptions o;
  o.rules = {RuleSpec{"data/", origin_.url()}, RuleSpec{"", second.url()}};
  ASSERT_NO_FATAL_FAILURE(Mount(o));

  ASSERT_NO_FATAL_FAILURE(ExpectFailedCleanly("data/f.txt"));
  EXPECT_EQ(second.GetCount("/data/f.txt"), 0);
  ASSERT_NO_FATAL_FAILURE(Unmount());
}

// A body that breaks off right after the head (not one body byte) is a
// broken body like any other: re-downloaded within retries, not EIO.
TEST_F(FaultsTest, BodyDroppedRightAfterTheHeadIsRetried) {
  const std::string body = PatternBytes(256 * 1024, 7);
  testing::Behavior b;
  b.body = body;
  b.fail_first = 1;
  b.fail_by_truncation = true;
  b.fail_at_head = true;
  origin_.Set("/cut.bin", b);
  DaemonOptions o = Defaults();
  o.extra_opts = {"retries=1"};
  ASSERT_NO_FATAL_FAILURE(Mount(o));

  auto r = ReadAll(M("cut.bin"));
  ASSERT_EQ(r.err, 0) << r.stage << ": " << ErrnoName(r.err) << "\n" << mount_->Log();
  EXPECT_TRUE(r.data == body);
  EXPECT_EQ(origin_.GetCount("/cut.bin"), 2) << "the dropped body and its retry";
  ASSERT_TRUE(EventuallyExists(B("cut.bin")));
  EXPECT_TRUE(ReadAll(B("cut.bin")).data == body);
}

// retries bounds the GETs of one access: the client's retries and the
// re-downloads share it (1 + retries GETs, not (1 + retries) squared).
TEST_F(FaultsTest, BodyDroppedRightAfterTheHeadEveryTimeIsBounded) {
  testing::Behavior b;
  b.body = PatternBytes(256 * 1024, 8);
  b.fail_first = 1000;
  b.fail_by_truncation = true;
  b.fail_at_head = true;
  origin_.Set("/cut.bin", b);
  DaemonOptions o = Defaults();
  o.extra_opts = {"retries=2"};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  ASSERT_NO_FATAL_FAILURE(ExpectFailedCleanly("cut.bin"));
  // The stat and the open/read of ExpectFailedCleanly may each be an access.
  int gets = origin_.GetCount("/cut.bin");
  EXPECT_GE(gets, 3);
  EXPECT_LE(gets, 6);
  EXPECT_EQ(gets % 3, 0) << "not whole multiples of 1 + retries";
}

// A rule's timeout = 3 with retries = 0: a body that stalls fails near 3 s,
// not after curl's five-second speed average on top (8-10 s).
TEST_F(FaultsTest, RuleTimeoutFiresNearItsValue) {
  testing::Behavior b;
  b.body = PatternBytes(2 * 1024 * 1024, 9);
  b.stall_ms = 30'000;  // half the body, then silence
  origin_.Set("/slow.bin", b);
  DaemonOptions o = Defaults();
  o.rules[0].extra = "timeout = 3\nretries = 0";
  ASSERT_NO_FATAL_FAILURE(Mount(o));

  auto start = std::chrono::steady_clock::now();
  auto r = ReadAll(M("slow.bin"));
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(r.err, EIO) << r.stage << ": " << ErrnoName(r.err);
  EXPECT_GE(took, 2.5);
  EXPECT_LT(took, 6.0) << "timeout = 3 fired late";
  EXPECT_EQ(origin_.GetCount("/slow.bin"), 1);
  EXPECT_FALSE(Exists(B("slow.bin")));
  EXPECT_TRUE(StagingFiles(bucket_).empty());
}

}  // namespace
}  // namespace originfs::e2e

namespace originfs::e2e {
namespace {

// A failure that repeats is remembered: a name that keeps answering 500,
// or a WebDAV-style 405 that is no directory, costs a request per backoff
// (1 s, then 2, 4, ... up to failure_backoff), not one per call; the first
// two failures are not (retries right away go out), and `refresh` asks at
// once.
class RememberedFailuresTest : public MountTest {};

TEST_F(RememberedFailuresTest, ARepeatingFailureIsNotAskedForByEveryCall) {
  testing::Behavior broken;
  broken.status = 500;
  broken.body = "internal error";
  origin_.Set("/broken.txt", broken);
  testing::Behavior refused;
  refused.status = 405;
  refused.body = "method not allowed";
  origin_.Set("/many", refused);  // many/ is 404: no directory either
  DaemonOptions o = Defaults();
  o.extra_opts = {"retries=0", "failure_backoff=600"};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  for (const char* name : {"broken.txt", "many"}) {
    for (int i = 0; i < 20; ++i) EXPECT_EQ(StatErr(M(name)), EIO) << name << " call " << i;
    EXPECT_EQ(origin_.GetCount(std::string("/") + name), 3)
        << name << ": the first two failures are asked again, the third is remembered";
  }
  EXPECT_EQ(origin_.Count("/many/"), 3) << "the directory probe after each 405";
  EXPECT_NE(mount_->Log().find("failed 3 times running; not asked again for 1 s"),
            std::string::npos);
  // Fixed at the origin: a refresh of its directory asks at once.
  origin_.SetFile("/broken.txt", "fixed\n");
  auto r = RunCommand({ORIGINFS_BINARY, "refresh", mnt_, "./"}, 30s);
  EXPECT_EQ(ReadAll(M("broken.txt")).data, "fixed\n") << r.out << r.err;
  // Asked again once the backoff is over (no time asserted: only that it is).
  origin_.SetFile("/many", "a file now\n");
  bool served = false;
  for (int i = 0; i < 100 && !served; ++i) {
    served = ReadAll(M("many")).data == "a file now\n";
    if (!served) std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(served);
}

}  // namespace
}  // namespace originfs::e2e
