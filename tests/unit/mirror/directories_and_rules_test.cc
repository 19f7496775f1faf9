// What a rule makes of an answer: directories, writeback, sizes, rule
// changes, key encoding, shutdown.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <latch>
#include <thread>

#include "tests/unit/mirror/mirror_fixture.h"

namespace originfs::mirror_test {
namespace {

TEST_F(MirrorFakeTest, RedirectToSlashIsDirectory) {
  MakeMirror(kTwoRules);
  http_.Set("http://o2/docs", Canned{.status = 403,
                                     .body = "<html>403</html>",
                                     .redirects = 1,
                                     .effective_url = "http://o2/docs/"});
  auto flight = mirror_->Start("docs");
  auto head = AwaitHead(*flight);
  ASSERT_TRUE(head.has_value()) << head.error().message;
  EXPECT_EQ(head->kind, OriginKind::kDirectory);
  auto done = AwaitDone(*flight);
  ASSERT_FALSE(done.has_value());
  EXPECT_EQ(done.error().code, EISDIR);
  EXPECT_THAT(BucketObjects(), IsEmpty());
  EXPECT_EQ(http_.TotalCalls(), 1);
  EXPECT_FALSE(Remembered404("docs"));
}

TEST_F(MirrorFakeTest, RedirectToAnotherFileIsAFile) {
  MakeMirror(kTwoRules);
  http_.Set("http://o2/latest",
            Canned{.body = "v2", .redirects = 1, .effective_url = "http://o2/v2.txt"});
  auto done = AwaitDone(*mirror_->Start("latest"));
  ASSERT_TRUE(done.has_value()) << done.error().message;
  EXPECT_EQ(BucketFile("latest"), "v2");
}

TEST_F(MirrorFakeTest, ProbeFindsDirectory) {
  MakeMirror(kTwoRules);
  http_.Set("http://o2/dir/", Canned{.status = 200, .body = "<html>listing</html>"});
  auto flight = mirror_->Start("dir");
  auto head = AwaitHead(*flight);
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(head->kind, OriginKind::kDirectory);
  EXPECT_THAT(http_.Log(), ElementsAre("GET http://o2/dir", "HEAD http://o2/dir/"));
  EXPECT_FALSE(Remembered404("dir"));
}

TEST_F(MirrorFakeTest, ProbeTreatsForbiddenListingAsDirectory) {
  MakeMirror(kTwoRules);
  http_.Set("http://o2/private/", Canned{.status = 403});
  auto head = AwaitHead(*mirror_->Start("private"));
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(head->kind, OriginKind::kDirectory);
}

TEST_F(MirrorFakeTest, NoExtModeMakesExtensionlessNamesDirectories) {
  MakeMirror(R"(
[[rule]]
origin = "http://o"
dirs = "no-ext"
)");
  auto dir = AwaitHead(*mirror_->Start("releases/v1"));
  ASSERT_TRUE(dir.has_value());
  EXPECT_EQ(dir->kind, OriginKind::kDirectory);
  auto file = AwaitHead(*mirror_->Start("releases/v1.tar"));
  ASSERT_TRUE(file.has_value());
  EXPECT_EQ(file->kind, OriginKind::kNotFound);
  // Only the last segment counts.
  auto nested = AwaitHead(*mirror_->Start("v1.0/readme"));
  ASSERT_TRUE(nested.has_value());
  EXPECT_EQ(nested->kind, OriginKind::kDirectory);
}

TEST_F(MirrorFakeTest, VirtualModeMakesEvery404ADirectoryWithoutProbing) {
  MakeMirror(R"(
[[rule]]
origin = "http://o"
dirs = "virtual"
)");
  auto head = AwaitHead(*mirror_->Start("any/thing.txt"));
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(head->kind, OriginKind::kDirectory);
  EXPECT_THAT(http_.Log(), ElementsAre("GET http://o/any/thing.txt"));
}

TEST_F(MirrorFakeTest, ProbeModeObjectStoreIsNotFound) {
  MakeMirror(R"(
[[rule]]
origin = "http://o"
)");
  http_.Set("http://o/d/file.txt", Canned{.body = "x"});
  auto head = AwaitHead(*mirror_->Start("d"));
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(head->kind, OriginKind::kNotFound);
}

TEST_F(MirrorFakeTest, WritebackFalseKeepsBucketEmpty) {
  MakeMirror(R"(
[[rule]]
prefix = "tmp/"
origin = "http://o"
writeback = false
)");
  std::string body = testing::PatternBytes(12'345, 9);
  http_.Set("http://o/tmp/t.bin", Canned{.body = body, .mtime = kMtime});
  auto flight = mirror_->Start("tmp/t.bin");
  auto head = AwaitHead(*flight);
  ASSERT_TRUE(head.has_value());
  EXPECT_FALSE(head->writeback);
  auto done = AwaitDone(*flight);
  ASSERT_TRUE(done.has_value()) << done.error().message;
  EXPECT_FALSE(done->in_bucket);
  ASSERT_NE(done->temp_file, nullptr);
  ASSERT_TRUE(*done->temp_file);
  EXPECT_EQ(done->size, body.size());
  EXPECT_EQ(testing::ReadFd(done->temp_file->get()), body);
  EXPECT_THAT(BucketObjects(), IsEmpty());
  EXPECT_THAT(StagingLeftovers(), IsEmpty());
  EXPECT_EQ(index_->Get("tmp/t.bin").value(), std::nullopt);
  EXPECT_EQ(BucketFile("tmp/t.bin"), std::nullopt);
}

TEST_F(MirrorFakeTest, MaxObjectSizeFromContentLength) {
  MirrorOptions o = DefaultOptions();
  o.max_object_size = 1000;
  MakeMirror(kTwoRules, o);
  http_.Set("http://o2/big", Canned{.body = std::string(1001, 'b')});
  http_.Set("http://o2/fits", Canned{.body = std::string(1000, 'f')});
  auto done = AwaitDone(*mirror_->Start("big"));
  ASSERT_FALSE(done.has_value());
  EXPECT_EQ(done.error().code, EIO);
  EXPECT_EQ(BucketFile("big"), std::nullopt);
  ASSERT_TRUE(AwaitDone(*mirror_->Start("fits")).has_value());
  EXPECT_EQ(BucketFile("fits"), std::string(1000, 'f'));
  EXPECT_THAT(StagingLeftovers(), IsEmpty());
}

TEST_F(MirrorFakeTest, MaxObjectSizeWhileStreaming) {
  MirrorOptions o = DefaultOptions();
  o.max_object_size = 2500;
  MakeMirror(kTwoRules, o);
  http_.Set("http://o2/stream",
            Canned{.body = std::string(5000, 's'), .send_content_length = false});
  auto done = AwaitDone(*mirror_->Start("stream"));
  ASSERT_FALSE(done.has_value());
  EXPECT_EQ(done.error().code, EIO);
  EXPECT_THAT(BucketObjects(), IsEmpty());
  EXPECT_THAT(StagingLeftovers(), IsEmpty());
}

TEST_F(MirrorFakeTest, LocalFileWrittenDuringFetchWins) {
  MakeMirror(kTwoRules);
  http_.Set("http://o2/race.txt", Canned{.body = "from origin"});
  http_.HoldBodies(true);
  auto flight = mirror_->Start("race.txt");
  ASSERT_TRUE(AwaitHead(*flight).has_value());
  testing::WriteFile(bucket_ + "/race.txt", "written locally");
  http_.HoldBodies(false);
  auto done = AwaitDone(*flight);
  ASSERT_TRUE(done.has_value()) << done.error().message;
  EXPECT_TRUE(done->in_bucket);
  EXPECT_EQ(BucketFile("race.txt"), "written locally");
  EXPECT_EQ(index_->Get("race.txt").value(), std::nullopt);
  EXPECT_THAT(StagingLeftovers(), IsEmpty());
}

TEST_F(MirrorFakeTest, ShutdownFailsHeldFlightWithEio) {
  MakeMirror(kTwoRules);
  http_.Set("http://o2/slow", Canned{.body = "never"});
  http_.HoldRequests(true);
  auto flight = mirror_->Start("slow");
  ASSERT_TRUE(http_.WaitForParked(1));
  mirror_.reset();  // shuts the client down and joins the download threads
  ASSERT_TRUE(flight->finished());
  auto done = AwaitDone(*flight, 1s);
  ASSERT_FALSE(done.has_value());
  EXPECT_EQ(done.error().code, EIO);
  EXPECT_THAT(BucketObjects(), IsEmpty());
}

TEST_F(MirrorFakeTest, StartAfterShutdownFailsWithoutRequest) {
  MakeMirror(kTwoRules);
  mirror_->Shutdown();
  auto done = AwaitDone(*mirror_->Start("x"));
  ASSERT_FALSE(done.has_value());
  EXPECT_EQ(done.error().code, EIO);
  EXPECT_EQ(http_.TotalCalls(), 0);
}

TEST_F(MirrorFakeTest, CallbacksRunOnceEachWhenRegisteredBeforeAndAfter) {
  MakeMirror(kTwoRules);
  http_.Set("http://o2/cb", Canned{.body = "cb"});
  http_.HoldRequests(true);
  auto flight = mirror_->Start("cb");
  std::atomic<int> heads{0}, dones{0};
  flight->OnHead([&](const Result<Resolution>& r) { heads += r.has_value() ? 1 : 100; });
  flight->OnDone([&](const Result<FetchedObject>& r) { dones += r.has_value() ? 1 : 100; });
  EXPECT_FALSE(flight->head().has_value());
  http_.HoldRequests(false);
  ASSERT_TRUE(AwaitDone(*flight).has_value());
  EXPECT_EQ(heads.load(), 1);
  EXPECT_EQ(dones.load(), 1);

  // Registered after the fact: runs at once, on this thread.
  auto self = std::this_thread::get_id();
  std::thread::id ran_on;
  flight->OnDone([&](const Result<FetchedObject>&) { ran_on = std::this_thread::get_id(); });
  EXPECT_EQ(ran_on, self);
  ASSERT_TRUE(flight->head().has_value());
  EXPECT_EQ(flight->head()->value().kind, OriginKind::kFile);
}

TEST_F(MirrorFakeTest, RulesQueries) {
  MakeMirror(R"(
[[rule]]
prefix = "img/2024/"
origin = "http://o"
)");
  EXPECT_TRUE(mirror_->HasRule("img/2024/a.png"));
  EXPECT_FALSE(mirror_->HasRule("img/2023/a.png"));
  EXPECT_TRUE(mirror_->ImpliedDirectory("img"));
  EXPECT_FALSE(mirror_->ImpliedDirectory("im"));
}

TEST_F(MirrorFakeTest, SetRulesAppliesToNewFlights) {
  MakeMirror(kTwoRules);
  http_.Set("http://o3/new/k", Canned{.body = "o3"});
  auto rules = RuleSet::SingleOrigin("http://o3");
  ASSERT_TRUE(rules.has_value());
  mirror_->SetRules(std::move(*rules));
  EXPECT_EQ(mirror_->rules()->rules().size(), 1u);
  ASSERT_TRUE(AwaitDone(*mirror_->Start("new/k")).has_value());
  EXPECT_EQ(BucketFile("new/k"), "o3");
  EXPECT_THAT(http_.Log(), ElementsAre("GET http://o3/new/k"));
}

TEST_F(MirrorFakeTest, KeyIsPercentEncodedInUrl) {
  MakeMirror(kTwoRules);
  http_.Set("http://o2/a%20b/c%23d%3F.txt", Canned{.body = "odd"});
  ASSERT_TRUE(AwaitDone(*mirror_->Start("a b/c#d?.txt")).has_value());
  EXPECT_EQ(BucketFile("a b/c#d?.txt"), "odd");
}

}  // namespace
}  // namespace originfs::mirror_test
