// Refresh: local edits kept, failover.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <latch>
#include <thread>

#include "tests/unit/mirror/mirror_fixture.h"

namespace originfs::mirror_test {
namespace {

// Appends to a bucket file as a program writing through the mount would.
void AppendTo(const std::string& path, std::string_view data) {
  int fd = open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  ASSERT_GE(fd, 0) << strerror(errno);
  ASSERT_EQ(write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  close(fd);
}

TEST_F(MirrorFakeTest, RefreshKeepsAFileChangedSinceItLandedUnlessForced) {
  MakeMirror("[[rule]]\norigin = \"http://o\"\n");
  http_.Set("http://o/x.txt", Canned{.body = "v1", .etag = "\"v1\""});
  http_.Set("http://o/y.txt", Canned{.body = "y1", .etag = "\"y1\""});
  ASSERT_TRUE(AwaitDone(*mirror_->Start("x.txt")).has_value());
  ASSERT_TRUE(AwaitDone(*mirror_->Start("y.txt")).has_value());
  auto rec = index_->Get("x.txt");
  ASSERT_TRUE(rec && *rec);
  EXPECT_NE((*rec)->landed_ino, 0u) << "the landing was not recorded";
  EXPECT_NE((*rec)->landed_ctime_ns, 0);

  ASSERT_NO_FATAL_FAILURE(AppendTo(bucket_ + "/x.txt", " and a local edit"));
  ASSERT_EQ(chmod((bucket_ + "/y.txt").c_str(), 0600), 0);  // same size and mtime; ctime moves
  http_.Set("http://o/x.txt", Canned{.body = "v2 is here", .etag = "\"v2\""});
  http_.Set("http://o/y.txt", Canned{.body = "y2", .etag = "\"y2\""});
  int calls = http_.TotalCalls();

  auto r = mirror_->Refresh("x.txt");
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(*r, Mirror::RefreshOutcome::kChangedLocally);
  EXPECT_EQ(BucketFile("x.txt"), "v1 and a local edit") << "a refresh lost a local edit";
  r = mirror_->Refresh("y.txt");
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(*r, Mirror::RefreshOutcome::kChangedLocally) << "a chmod is a local change too";
  EXPECT_EQ(BucketFile("y.txt"), "y1");
  EXPECT_EQ(http_.TotalCalls(), calls) << "nothing to ask the origin for";

  r = mirror_->Refresh("x.txt", /*force=*/true);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(*r, Mirror::RefreshOutcome::kUpdated);
  EXPECT_EQ(BucketFile("x.txt"), "v2 is here");
  // What landed by the forced refresh is recorded: a plain refresh now goes ahead.
  http_.Set("http://o/x.txt", Canned{.body = "v3", .etag = "\"v3\""});
  r = mirror_->Refresh("x.txt");
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(*r, Mirror::RefreshOutcome::kUpdated);
  EXPECT_EQ(BucketFile("x.txt"), "v3");
}

TEST_F(MirrorFakeTest, RefreshKeepsALocalFileThatNeverLanded) {
  MakeMirror("[[rule]]\norigin = \"http://o\"\n");
  testing::WriteFile(bucket_ + "/mine.txt", "written here");
  http_.Set("http://o/mine.txt", Canned{.body = "the origin's"});
  auto r = mirror_->Refresh("mine.txt");
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(*r, Mirror::RefreshOutcome::kLocalFile);
  EXPECT_EQ(BucketFile("mine.txt"), "written here");
  EXPECT_EQ(http_.TotalCalls(), 0);
  r = mirror_->Refresh("mine.txt", /*force=*/true);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(*r, Mirror::RefreshOutcome::kUpdated);
  EXPECT_EQ(BucketFile("mine.txt"), "the origin's");
}

TEST_F(MirrorFakeTest, RefreshOfARecordWithoutLandingIdentityComparesTheSize) {
  MakeMirror("[[rule]]\norigin = \"http://o\"\n");
  http_.Set("http://o/old.txt", Canned{.body = "12345"});
  ASSERT_TRUE(AwaitDone(*mirror_->Start("old.txt")).has_value());
  // As an index written before landings were recorded holds it.
  ObjectRecord old{"http://o/old.txt", "", "", 5, 1600000000, 0};
  ASSERT_TRUE(index_->Put("old.txt", old).has_value());
  http_.Set("http://o/old.txt", Canned{.body = "new"});
  auto r = mirror_->Refresh("old.txt");
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(*r, Mirror::RefreshOutcome::kUpdated) << "an upgrade must not make every file local";
  EXPECT_EQ(BucketFile("old.txt"), "new");

  old.size = 99;  // not what is in the bucket
  ASSERT_TRUE(index_->Put("old.txt", old).has_value());
  r = mirror_->Refresh("old.txt");
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(*r, Mirror::RefreshOutcome::kChangedLocally);
  EXPECT_EQ(BucketFile("old.txt"), "new");
}

TEST_F(MirrorFakeTest, RefreshFailsOverToTheNextOrigin) {
  MirrorOptions o = DefaultOptions();
  o.origin_cooldown_s = 0;  // the dead origin is first in line again at once
  MakeMirror("[[rule]]\norigins = [\"http://dead\", \"http://live\"]\n", o);
  http_.Set("http://dead/x.txt", Canned{.fail_before_head = FetchErrc::kConnect});
  http_.Set("http://live/x.txt", Canned{.body = "v1", .etag = "\"v1\""});
  ASSERT_TRUE(AwaitDone(*mirror_->Start("x.txt")).has_value());
  http_.Set("http://live/x.txt", Canned{.body = "version 2", .etag = "\"v2\""});
  auto r = mirror_->Refresh("x.txt");
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(*r, Mirror::RefreshOutcome::kUpdated);
  EXPECT_EQ(BucketFile("x.txt"), "version 2");
  // The dead origin could not be reached: it is down, and asked again only
  // by the probe in the background once it answers (not within this test).
  EXPECT_THAT(http_.Log(), ElementsAre("GET http://dead/x.txt", "GET http://live/x.txt",
                                       "GET http://live/x.txt"));

  // A 404 is final, the local copy stays.
  http_.Set("http://live/x.txt", Canned{.status = 404});
  r = mirror_->Refresh("x.txt");
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(*r, Mirror::RefreshOutcome::kGoneAtOrigin);
  EXPECT_EQ(BucketFile("x.txt"), "version 2");
}

}  // namespace
}  // namespace originfs::mirror_test
