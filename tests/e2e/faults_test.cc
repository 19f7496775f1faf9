// Origin failures reach the reader as EIO (never ENOENT), leave nothing in the
// bucket or staging, and do not stick: a retry succeeds once the origin is fixed.
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "tests/e2e/mount_fixture.h"

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

}  // namespace
}  // namespace originfs::e2e
