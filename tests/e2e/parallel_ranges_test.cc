// Big objects fetched as two ranged GETs at once (parallel_min): the bytes
// are right whichever way the second half arrives, the origin is asked with
// If-Range for the version of the first half, and a second half that cannot
// be had in parallel (refused, broken off) costs a fallback, never a wrong
// or partial file.
#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/mount_fixture.h"
#include "tests/support/temp_dir.h"

namespace originfs::e2e {
namespace {

constexpr std::size_t kSize = 24 * 1024 * 1024 + 12345;

class ParallelRangesTest : public MountTest {
 protected:
  void MountSplitting() {
    DaemonOptions o = Defaults();
    o.extra_opts = {"parallel_min=16M"};
    ASSERT_NO_FATAL_FAILURE(Mount(o));
  }

  // The first part pauses at 5 MB (the helper GET starts at 4 MB), so the
  // helper is surely streaming by the time the main GET reaches the split.
  testing::Behavior Object(const std::string& body) {
    testing::Behavior b;
    b.body = body;
    b.stall_ms = 500;
    b.stall_at = 5 * 1024 * 1024;
    b.headers["ETag"] = "\"v1-big\"";
    b.last_modified = "Wed, 21 Oct 2015 07:28:00 GMT";
    return b;
  }

  // Reads through the mount and checks the bytes and the landed copy.
  void ExpectWhole(const std::string& key, const std::string& body) {
    auto r = ReadAll(M(key));
    ASSERT_EQ(r.err, 0) << r.stage << ": " << ErrnoName(r.err);
    ASSERT_EQ(r.data.size(), body.size());
    EXPECT_TRUE(r.data == body) << "bytes differ";
    ASSERT_TRUE(EventuallyExists(B(key)));
    EXPECT_TRUE(testing::ReadFile(B(key)) == body) << "landed copy differs";
    EXPECT_TRUE(StagingFiles(bucket_).empty());
  }
};

TEST_F(ParallelRangesTest, SecondHalfComesOnItsOwnConnection) {
  const std::string body = PatternBytes(kSize, 61);
  origin_.Set("/big.bin", Object(body));
  ASSERT_NO_FATAL_FAILURE(MountSplitting());

  ASSERT_NO_FATAL_FAILURE(ExpectWhole("big.bin", body));
  EXPECT_EQ(origin_.GetCount("/big.bin"), 2) << "one plain GET and one ranged GET";
  EXPECT_EQ(origin_.LastHeader("/big.bin", "If-Range"), "\"v1-big\"");
  // The helper asked for the tail from a MiB boundary inside the object.
  std::string range = origin_.LastHeader("/big.bin", "Range");
  std::string tail = "-" + std::to_string(kSize - 1);
  ASSERT_TRUE(range.starts_with("bytes=") && range.ends_with(tail)) << range;
  uint64_t at = std::stoull(range.substr(6, range.size() - 6 - tail.size()));
  EXPECT_GT(at, 0u);
  EXPECT_LT(at, kSize);
  EXPECT_EQ(at % (1024 * 1024), 0u);
  EXPECT_NE(mount_->Log().find("ranges=2"), std::string::npos) << mount_->Log();
}

TEST_F(ParallelRangesTest, SmallerObjectsAndOptionOffUseOneGet) {
  const std::string body = PatternBytes(12 * 1024 * 1024, 62);  // under parallel_min
  origin_.Set("/small.bin", Object(body));
  const std::string big = PatternBytes(kSize, 63);
  origin_.Set("/big.bin", Object(big));
  ASSERT_NO_FATAL_FAILURE(MountSplitting());
  ASSERT_NO_FATAL_FAILURE(ExpectWhole("small.bin", body));
  EXPECT_EQ(origin_.GetCount("/small.bin"), 1);

  ASSERT_NO_FATAL_FAILURE(Unmount());
  DaemonOptions off = Defaults();
  off.extra_opts = {"parallel_min=0"};
  ASSERT_NO_FATAL_FAILURE(Mount(off));
  ASSERT_NO_FATAL_FAILURE(ExpectWhole("big.bin", big));
  EXPECT_EQ(origin_.GetCount("/big.bin"), 1);
  EXPECT_EQ(mount_->Log().find("ranges=2"), std::string::npos);
}

TEST_F(ParallelRangesTest, RefusedRangeFallsBackToTheOneGet) {
  const std::string body = PatternBytes(kSize, 64);
  testing::Behavior b = Object(body);
  b.fail_ranges = 100;  // every ranged GET answers 500
  origin_.Set("/big.bin", b);
  ASSERT_NO_FATAL_FAILURE(MountSplitting());
  ASSERT_NO_FATAL_FAILURE(ExpectWhole("big.bin", body));
  EXPECT_EQ(mount_->Log().find("ranges=2"), std::string::npos) << "the main GET went on alone";
}

TEST_F(ParallelRangesTest, SecondHalfBrokenOffIsFinishedWithARangedRetry) {
  const std::string body = PatternBytes(kSize, 65);
  testing::Behavior b = Object(body);
  b.cut_first_range_after = 512 * 1024;  // the helper delivers a bit, waits, drops
  b.range_stall_ms = 600;
  origin_.Set("/big.bin", b);
  ASSERT_NO_FATAL_FAILURE(MountSplitting());
  ASSERT_NO_FATAL_FAILURE(ExpectWhole("big.bin", body));
  std::string log = mount_->Log();
  EXPECT_NE(log.find("ranges=2"), std::string::npos) << log;
  EXPECT_NE(log.find("second half"), std::string::npos) << log;
  EXPECT_EQ(origin_.GetCount("/big.bin"), 3) << "plain GET, broken ranged GET, ranged retry";
}

TEST_F(ParallelRangesTest, SecondHalfThatCannotBeFinishedFailsCleanlyAndIsRetried) {
  const std::string body = PatternBytes(kSize, 66);
  testing::Behavior b = Object(body);
  b.cut_first_range_after = 512 * 1024;
  b.range_stall_ms = 600;
  b.fail_later_ranges = true;  // the ranged retry of the second half fails too
  origin_.Set("/big.bin", b);
  DaemonOptions o = Defaults();
  o.extra_opts = {"parallel_min=16M", "retries=0"};
  ASSERT_NO_FATAL_FAILURE(Mount(o));

  auto r = ReadAll(M("big.bin"));
  EXPECT_EQ(r.err, EIO) << r.stage << ": " << ErrnoName(r.err);
  EXPECT_FALSE(Exists(B("big.bin"))) << "a partial object landed";
  EXPECT_TRUE(StagingFiles(bucket_).empty());
  EXPECT_NE(mount_->Log().find("body broke off"), std::string::npos) << mount_->Log();

  // The next open asks again; its helper is refused, so one GET does it all.
  ASSERT_NO_FATAL_FAILURE(ExpectWhole("big.bin", body));
}

TEST_F(ParallelRangesTest, UnmountDuringASplitDownloadStopsCleanly) {
  // Each round unmounts at another point of a split download: before the
  // helper starts (4 MB), while both halves stream, while the first part
  // streams at full speed (the unmount then races the helper's start).
  struct Round {
    std::size_t stall_at;
    int wait_ms;
  };
  for (Round round : {Round{3u << 20, 150}, Round{5u << 20, 150}, Round{20u << 20, 0}}) {
    SCOPED_TRACE("first part pauses at " + std::to_string(round.stall_at));
    const std::string body = PatternBytes(kSize, 67);
    testing::Behavior b = Object(body);
    b.stall_at = round.stall_at;
    b.stall_ms = 400;
    origin_.Set("/big.bin", b);
    ASSERT_NO_FATAL_FAILURE(MountSplitting());
    int fd = open(M("big.bin").c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0) << strerror(errno);
    char buf[4096];
    EXPECT_EQ(pread(fd, buf, sizeof buf, 0), static_cast<ssize_t>(sizeof buf));
    close(fd);
    std::this_thread::sleep_for(std::chrono::milliseconds(round.wait_ms));
    ASSERT_NO_FATAL_FAILURE(Unmount());
    std::string log = mount_->Log();
    EXPECT_NE(log.find("originfs stopped"), std::string::npos) << "no clean exit:\n" << log;
    EXPECT_TRUE(StagingFiles(bucket_).empty());
    if (Exists(B("big.bin"))) {
      EXPECT_TRUE(testing::ReadFile(B("big.bin")) == body) << "a landed copy must be whole";
    }
    origin_.ResetCounts();
  }
}

TEST_F(ParallelRangesTest, WithoutAStrongEtagOneGetDoesIt) {
  const std::string body = PatternBytes(kSize, 68);
  testing::Behavior b = Object(body);
  b.headers.erase("ETag");  // Last-Modified only: too coarse to pin a version
  origin_.Set("/big.bin", b);
  const std::string weak_body = PatternBytes(kSize, 69);
  testing::Behavior w = Object(weak_body);
  w.headers["ETag"] = "W/\"weak\"";
  origin_.Set("/weak.bin", w);
  ASSERT_NO_FATAL_FAILURE(MountSplitting());
  ASSERT_NO_FATAL_FAILURE(ExpectWhole("big.bin", body));
  ASSERT_NO_FATAL_FAILURE(ExpectWhole("weak.bin", weak_body));
  EXPECT_EQ(origin_.GetCount("/big.bin"), 1);
  EXPECT_EQ(origin_.GetCount("/weak.bin"), 1);
}

// ---- origins that ignore If-Range (busybox httpd) while the object changes ----

// The helper's 206 carries another version (another ETag) of an object of
// the same size: it is not stitched in; the first GET goes on alone.
TEST_F(ParallelRangesTest, SecondHalfOfAnotherVersionIsNotStitchedIn) {
  const std::string a = PatternBytes(kSize, 71);
  const std::string b = PatternBytes(kSize, 72);
  testing::Behavior beh = Object(a);
  beh.range_body = b;
  beh.range_headers["ETag"] = "\"v2-big\"";
  origin_.Set("/big.bin", beh);
  ASSERT_NO_FATAL_FAILURE(MountSplitting());
  ASSERT_NO_FATAL_FAILURE(ExpectWhole("big.bin", a));
  EXPECT_EQ(origin_.GetCount("/big.bin"), 2) << "one plain GET and one refused ranged GET";
  std::string log = mount_->Log();
  EXPECT_EQ(log.find("ranges=2"), std::string::npos) << log;
  EXPECT_NE(log.find("the object changed"), std::string::npos) << log;
}

// Same ETag, but another Last-Modified: also another version.
TEST_F(ParallelRangesTest, SecondHalfWithAnotherLastModifiedIsNotStitchedIn) {
  const std::string a = PatternBytes(kSize, 73);
  testing::Behavior beh = Object(a);
  beh.range_body = PatternBytes(kSize, 74);
  beh.range_last_modified = "Thu, 22 Oct 2015 07:28:00 GMT";
  origin_.Set("/big.bin", beh);
  ASSERT_NO_FATAL_FAILURE(MountSplitting());
  ASSERT_NO_FATAL_FAILURE(ExpectWhole("big.bin", a));
  EXPECT_EQ(mount_->Log().find("ranges=2"), std::string::npos) << mount_->Log();
}

// A 206 of the right length and version whose Content-Range starts 4096
// bytes before the offset asked: not written at the offset asked.
TEST_F(ParallelRangesTest, SecondHalfWithAShiftedContentRangeIsNotStitchedIn) {
  const std::string a = PatternBytes(kSize, 75);
  testing::Behavior beh = Object(a);
  beh.range_shift = 4096;
  origin_.Set("/big.bin", beh);
  ASSERT_NO_FATAL_FAILURE(MountSplitting());
  ASSERT_NO_FATAL_FAILURE(ExpectWhole("big.bin", a));
  EXPECT_EQ(origin_.GetCount("/big.bin"), 2);
  std::string log = mount_->Log();
  EXPECT_EQ(log.find("ranges=2"), std::string::npos) << log;
  EXPECT_NE(log.find("Content-Range"), std::string::npos) << log;
}

// The helper's part is good but breaks off; the ranged retry for the rest
// gets another version. Retrying ranges cannot help: the download starts
// over as one GET, and the landed file is one version.
TEST_F(ParallelRangesTest, RetriedPartOfAnotherVersionStartsOverWithOneGet) {
  const std::string a = PatternBytes(kSize, 76);
  testing::Behavior beh = Object(a);
  beh.cut_first_range_after = 512 * 1024;
  beh.range_stall_ms = 600;
  beh.range_body = PatternBytes(kSize, 77);
  beh.range_headers["ETag"] = "\"v2-big\"";
  beh.range_version_from = 2;  // the retry of the rest, not the helper
  origin_.Set("/big.bin", beh);
  ASSERT_NO_FATAL_FAILURE(MountSplitting());
  auto r = ReadAll(M("big.bin"));
  ASSERT_EQ(r.err, 0) << r.stage << ": " << ErrnoName(r.err);
  ASSERT_TRUE(EventuallyExists(B("big.bin")));
  EXPECT_TRUE(testing::ReadFile(B("big.bin")) == a) << "landed copy is not version A whole";
  EXPECT_TRUE(StagingFiles(bucket_).empty());
  EXPECT_EQ(origin_.GetCount("/big.bin"), 4)
      << "plain GET, broken ranged GET, refused ranged retry, plain GET";
  std::string log = mount_->Log();
  EXPECT_NE(log.find("starting over with one GET"), std::string::npos) << log;
  EXPECT_EQ(log.find("ranges=2"), std::string::npos) << log;
}

// The same with retries=0: no restart is allowed, so EIO and nothing lands.
TEST_F(ParallelRangesTest, RetriedPartOfAnotherVersionWithoutRetriesFailsCleanly) {
  const std::string a = PatternBytes(kSize, 78);
  testing::Behavior beh = Object(a);
  beh.cut_first_range_after = 512 * 1024;
  beh.range_stall_ms = 600;
  beh.range_body = PatternBytes(kSize, 79);
  beh.range_headers["ETag"] = "\"v2-big\"";
  beh.range_version_from = 2;
  origin_.Set("/big.bin", beh);
  DaemonOptions o = Defaults();
  o.extra_opts = {"parallel_min=16M", "retries=0"};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  auto r = ReadAll(M("big.bin"));
  EXPECT_EQ(r.err, EIO) << r.stage << ": " << ErrnoName(r.err);
  EXPECT_FALSE(Exists(B("big.bin"))) << "a mixed object landed";
  EXPECT_TRUE(StagingFiles(bucket_).empty());
  EXPECT_NE(mount_->Log().find("changed meanwhile"), std::string::npos) << mount_->Log();
}

// The case: a 32 MiB object replaced at the origin every 10 ms
// (four versions, same size, own ETags) by an origin that ignores If-Range.
// Whatever the timing, the landed file is one version, whole.
TEST_F(ParallelRangesTest, ObjectReplacedEveryTenMsLandsAsOneVersion) {
  constexpr std::size_t kBig = 32u << 20;
  std::vector<std::shared_ptr<const std::string>> bodies;
  testing::Behavior beh = Object("");
  for (unsigned v = 0; v < 4; ++v) {
    bodies.push_back(std::make_shared<const std::string>(PatternBytes(kBig, 80 + v)));
    beh.versions.push_back({bodies.back(), "\"v" + std::to_string(v) + "\""});
  }
  beh.version_period_ms = 10;
  origin_.Set("/churn.bin", beh);
  DaemonOptions o = Defaults();
  o.extra_opts = {"parallel_min=8M"};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  auto r = ReadAll(M("churn.bin"));
  ASSERT_EQ(r.err, 0) << r.stage << ": " << ErrnoName(r.err);
  ASSERT_TRUE(EventuallyExists(B("churn.bin")));
  std::string landed = testing::ReadFile(B("churn.bin")).value_or("");
  ASSERT_EQ(landed.size(), kBig);
  int matches = 0;
  for (const auto& body : bodies) matches += landed == *body ? 1 : 0;
  EXPECT_EQ(matches, 1) << "the landed file mixes versions";
  EXPECT_GE(origin_.GetCount("/churn.bin"), 2) << "no ranged GET was tried";
}

// A reader's lseek (FUSE_LSEEK on the descriptor it shares with the
// download) must not move where the download writes.
TEST_F(ParallelRangesTest, SeekingReaderDoesNotDisturbTheDownload) {
  const std::string body = PatternBytes(kSize, 70);
  testing::Behavior b = Object(body);
  b.stall_at = 2 * 1024 * 1024;
  b.stall_ms = 500;
  origin_.Set("/seek.bin", b);
  DaemonOptions o = Defaults();
  o.extra_opts = {"zero_open=0"};  // the open gets a handle on the arriving file
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  int fd = open(M("seek.bin").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << strerror(errno);
  char buf[4096];
  ASSERT_EQ(pread(fd, buf, sizeof buf, 0), static_cast<ssize_t>(sizeof buf));
  // While the first part waits at 2 MB: seek the shared descriptor to 0.
  EXPECT_EQ(lseek(fd, 0, SEEK_DATA), 0) << strerror(errno);
  EXPECT_EQ(lseek(fd, 1, SEEK_DATA), 1) << strerror(errno);
  close(fd);
  ASSERT_NO_FATAL_FAILURE(ExpectWhole("seek.bin", body));
}

}  // namespace
}  // namespace originfs::e2e
