// Downloads: landing, the index record, not-found, errors, retries and
// single-flight.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <latch>
#include <thread>

#include "tests/unit/mirror/mirror_fixture.h"

namespace originfs::mirror_test {
namespace {

TEST_F(MirrorFakeTest, FileLandsAndIndexRecordIsWritten) {
  MakeMirror(kTwoRules);
  std::string body = testing::PatternBytes(10'000);
  http_.Set("http://o1/base/a/b.txt", Canned{.body = body,
                                             .etag = "\"v1\"",
                                             .last_modified = "Wed, 21 Oct 2015 07:28:00 GMT",
                                             .mtime = kMtime});
  int64_t before = time(nullptr);
  auto flight = mirror_->Start("a/b.txt");

  auto head = AwaitHead(*flight);
  ASSERT_TRUE(head.has_value()) << head.error().message;
  EXPECT_EQ(head->kind, OriginKind::kFile);
  EXPECT_EQ(head->size, body.size());
  EXPECT_EQ(head->mtime, kMtime);
  EXPECT_TRUE(head->writeback);
  EXPECT_EQ(head->url, "http://o1/base/a/b.txt");

  auto done = AwaitDone(*flight);
  ASSERT_TRUE(done.has_value()) << done.error().message;
  EXPECT_TRUE(done->in_bucket);
  EXPECT_EQ(done->temp_file, nullptr);
  EXPECT_EQ(done->size, body.size());
  EXPECT_TRUE(flight->finished());

  EXPECT_EQ(BucketFile("a/b.txt"), body);
  struct stat st;
  ASSERT_EQ(stat((bucket_ + "/a/b.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_mtim.tv_sec, kMtime);
  EXPECT_THAT(StagingLeftovers(), IsEmpty());

  auto rec = index_->Get("a/b.txt");
  ASSERT_TRUE(rec.has_value());
  ASSERT_TRUE(rec->has_value());
  EXPECT_EQ((*rec)->url, "http://o1/base/a/b.txt");
  EXPECT_EQ((*rec)->etag, "\"v1\"");
  EXPECT_EQ((*rec)->last_modified, "Wed, 21 Oct 2015 07:28:00 GMT");
  EXPECT_EQ((*rec)->size, body.size());
  EXPECT_EQ((*rec)->rule, 0u);
  EXPECT_GE((*rec)->fetched_at, before);
  EXPECT_LE((*rec)->fetched_at, time(nullptr));

  EXPECT_EQ(http_.TotalCalls(), 1);
  EXPECT_EQ(mirror_->stats().fetches.load(), 1u);
  EXPECT_EQ(mirror_->stats().fetched_bytes.load(), body.size());
  // Every request is counted: the GET and the first fetch's soft-404 probe.
  EXPECT_EQ(http_.Probes(), 1);
  EXPECT_EQ(mirror_->stats().requests.load(), 2u);
}

TEST_F(MirrorFakeTest, SecondStartAfterLandingIsLocalWithoutRequest) {
  MakeMirror(kTwoRules);
  http_.Set("http://o2/x.txt", Canned{.body = "xx"});
  ASSERT_TRUE(AwaitDone(*mirror_->Start("x.txt")).has_value());
  auto again = mirror_->Start("x.txt");
  auto head = AwaitHead(*again);
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(head->kind, OriginKind::kLanded);
  auto done = AwaitDone(*again);
  ASSERT_TRUE(done.has_value());
  EXPECT_TRUE(done->in_bucket);
  EXPECT_EQ(done->size, 2u);
  EXPECT_EQ(http_.TotalCalls(), 1);
}

TEST_F(MirrorFakeTest, LandingBetweenACallersLookAndItsStartIsSeen) {
  MakeMirror(kTwoRules);
  http_.Set("http://o2/x.txt", Canned{.body = "xx"});
  // A caller looked in the bucket (missing), then another download landed
  // the file before the caller's Start: Start looks again and finds it.
  uint64_t seen = mirror_->landings();
  ASSERT_TRUE(AwaitDone(*mirror_->Start("x.txt")).has_value());
  EXPECT_EQ(mirror_->landings(), seen + 1);
  auto head = AwaitHead(*mirror_->Start("x.txt", seen));
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(head->kind, OriginKind::kLanded);
  EXPECT_EQ(http_.TotalCalls(), 1);

  // A file landed by other means (a copy-up's CommitCopy) counts as well.
  seen = mirror_->landings();
  testing::WriteFile(tmp_.Join("copy.src"), "copied up");
  {
    UniqueFd src(open(tmp_.Join("copy.src").c_str(), O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(store_->CommitCopy(src.get(), "c.txt", std::nullopt).has_value());
  }
  EXPECT_EQ(mirror_->landings(), seen + 1);
  auto copied = AwaitHead(*mirror_->Start("c.txt", seen));
  ASSERT_TRUE(copied.has_value());
  EXPECT_EQ(copied->kind, OriginKind::kLanded);
  EXPECT_EQ(http_.TotalCalls(), 1);

  // With nothing landed since its look, the caller's miss stands: no second
  // look in the bucket, a download (a file put there by hand meanwhile
  // still wins when the download lands).
  http_.Set("http://o2/y.txt", Canned{.body = "theirs"});
  seen = mirror_->landings();
  testing::WriteFile(bucket_ + "/y.txt", "mine");
  auto y = mirror_->Start("y.txt", seen);
  ASSERT_TRUE(AwaitDone(*y).has_value());
  EXPECT_EQ(http_.TotalCalls(), 2);
  EXPECT_EQ(BucketFile("y.txt"), "mine");
}

TEST_F(MirrorFakeTest, LocalFileIsNotFetched) {
  MakeMirror(kTwoRules);
  testing::WriteFile(bucket_ + "/local.txt", "mine");
  http_.Set("http://o2/local.txt", Canned{.body = "theirs"});
  auto head = AwaitHead(*mirror_->Start("local.txt"));
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(head->kind, OriginKind::kLanded);
  EXPECT_EQ(http_.TotalCalls(), 0);
  EXPECT_EQ(BucketFile("local.txt"), "mine");
}

TEST_F(MirrorFakeTest, HeadIsKnownBeforeTheBodyArrives) {
  MakeMirror(kTwoRules);
  std::string body = testing::PatternBytes(50'000);
  http_.Set("http://o2/big.bin", Canned{.body = body, .mtime = kMtime});
  http_.HoldBodies(true);
  auto flight = mirror_->Start("big.bin");
  auto head = AwaitHead(*flight);
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(head->kind, OriginKind::kFile);
  EXPECT_EQ(head->size, body.size());
  EXPECT_EQ(head->mtime, kMtime);
  EXPECT_FALSE(flight->finished());
  EXPECT_EQ(BucketFile("big.bin"), std::nullopt);  // not linked before it is complete

  http_.HoldBodies(false);
  auto done = AwaitDone(*flight);
  ASSERT_TRUE(done.has_value()) << done.error().message;
  EXPECT_EQ(BucketFile("big.bin"), body);
}

TEST_F(MirrorFakeTest, HeadWithoutContentLengthWaitsForTheBody) {
  MakeMirror(kTwoRules);
  std::string body = testing::PatternBytes(5'500);
  http_.Set("http://o2/chunked", Canned{.body = body, .send_content_length = false});
  auto flight = mirror_->Start("chunked");
  auto head = AwaitHead(*flight);
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(head->kind, OriginKind::kFile);
  EXPECT_EQ(head->size, body.size());
  ASSERT_TRUE(AwaitDone(*flight).has_value());
  EXPECT_EQ(BucketFile("chunked"), body);
}

TEST_F(MirrorFakeTest, NotFoundFallsThroughToNextRule) {
  MakeMirror(kTwoRules);
  http_.Set("http://o2/a/x.txt", Canned{.body = "from o2"});
  auto flight = mirror_->Start("a/x.txt");
  auto head = AwaitHead(*flight);
  ASSERT_TRUE(head.has_value()) << head.error().message;
  EXPECT_EQ(head->kind, OriginKind::kFile);
  EXPECT_EQ(head->url, "http://o2/a/x.txt");
  ASSERT_TRUE(AwaitDone(*flight).has_value());
  EXPECT_EQ(BucketFile("a/x.txt"), "from o2");

  // Rule 1 first (with its directory probe), then rule 2.
  EXPECT_THAT(http_.Log(), ElementsAre("GET http://o1/base/a/x.txt", "HEAD http://o1/base/a/x.txt/",
                                       "GET http://o2/a/x.txt"));
  auto rec = index_->Get("a/x.txt");
  ASSERT_TRUE(rec.has_value() && rec->has_value());
  EXPECT_EQ((*rec)->rule, 1u);
  EXPECT_EQ((*rec)->url, "http://o2/a/x.txt");
}

TEST_F(MirrorFakeTest, GoneFallsThroughLikeNotFound) {
  MakeMirror(kTwoRules);
  http_.Set("http://o1/base/a/g", Canned{.status = 410, .body = "gone"});
  http_.Set("http://o2/a/g", Canned{.body = "here"});
  ASSERT_TRUE(AwaitDone(*mirror_->Start("a/g")).has_value());
  EXPECT_EQ(BucketFile("a/g"), "here");
}

TEST_F(MirrorFakeTest, AllNotFoundIsRemembered) {
  MakeMirror(kTwoRules);
  auto flight = mirror_->Start("a/missing.txt");
  auto head = AwaitHead(*flight);
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(head->kind, OriginKind::kNotFound);
  auto done = AwaitDone(*flight);
  ASSERT_FALSE(done.has_value());
  EXPECT_EQ(done.error().code, ENOENT);
  int calls = http_.TotalCalls();
  EXPECT_EQ(calls, 4);  // GET and probe at each origin
  EXPECT_TRUE(Remembered404("a/missing.txt"));
  EXPECT_EQ(mirror_->stats().not_found.load(), 1u);

  auto second = mirror_->Start("a/missing.txt");
  auto head2 = AwaitHead(*second);
  ASSERT_TRUE(head2.has_value());
  EXPECT_EQ(head2->kind, OriginKind::kNotFound);
  auto done2 = AwaitDone(*second);
  ASSERT_FALSE(done2.has_value());
  EXPECT_EQ(done2.error().code, ENOENT);
  EXPECT_EQ(http_.TotalCalls(), calls);
  EXPECT_THAT(BucketObjects(), IsEmpty());
}

TEST_F(MirrorFakeTest, ForgetNotFoundAsksAgain) {
  MakeMirror(kTwoRules);
  ASSERT_FALSE(AwaitDone(*mirror_->Start("late.txt")).has_value());
  int calls = http_.TotalCalls();
  http_.Set("http://o2/late.txt", Canned{.body = "now it exists"});
  mirror_->ForgetNotFound("late.txt");
  EXPECT_FALSE(Remembered404("late.txt"));
  auto done = AwaitDone(*mirror_->Start("late.txt"));
  ASSERT_TRUE(done.has_value()) << done.error().message;
  EXPECT_EQ(BucketFile("late.txt"), "now it exists");
  EXPECT_GT(http_.TotalCalls(), calls);
}

TEST_F(MirrorFakeTest, ZeroNegativeTtlRemembersNothing) {
  MirrorOptions o = DefaultOptions();
  o.negative_ttl_s = 0;
  MakeMirror(kTwoRules, o);
  ASSERT_FALSE(AwaitDone(*mirror_->Start("nope")).has_value());
  int calls = http_.TotalCalls();
  EXPECT_FALSE(Remembered404("nope"));
  ASSERT_FALSE(AwaitDone(*mirror_->Start("nope")).has_value());
  EXPECT_EQ(http_.TotalCalls(), 2 * calls);
}

TEST_F(MirrorFakeTest, ServerErrorIsEioAndDoesNotFallThrough) {
  MakeMirror(kTwoRules);
  http_.Set("http://o1/base/a/err", Canned{.status = 500, .body = "boom"});
  http_.Set("http://o2/a/err", Canned{.body = "would be fine"});
  auto flight = mirror_->Start("a/err");
  auto head = AwaitHead(*flight);
  ASSERT_FALSE(head.has_value());
  EXPECT_EQ(head.error().code, EIO);
  auto done = AwaitDone(*flight);
  ASSERT_FALSE(done.has_value());
  EXPECT_EQ(done.error().code, EIO);
  EXPECT_EQ(http_.Calls("http://o2/a/err"), 0);
  EXPECT_THAT(BucketObjects(), IsEmpty());
  EXPECT_THAT(StagingLeftovers(), IsEmpty());
  EXPECT_EQ(mirror_->stats().origin_errors.load(), 1u);

  // An error is not a 404: it is neither remembered nor cached.
  EXPECT_FALSE(Remembered404("a/err"));
  ASSERT_FALSE(AwaitDone(*mirror_->Start("a/err")).has_value());
  EXPECT_EQ(http_.Calls("http://o1/base/a/err"), 2);
}

class MirrorStatusTest : public MirrorFakeTest, public ::testing::WithParamInterface<long> {};

TEST_P(MirrorStatusTest, NonSuccessStatusIsEioNeverEnoent) {
  MakeMirror(kTwoRules);
  http_.Set("http://o2/s", Canned{.status = GetParam(), .body = "body"});
  auto done = AwaitDone(*mirror_->Start("s"));
  ASSERT_FALSE(done.has_value());
  EXPECT_EQ(done.error().code, EIO);
  EXPECT_THAT(BucketObjects(), IsEmpty());
}

INSTANTIATE_TEST_SUITE_P(Statuses, MirrorStatusTest,
                         ::testing::Values(500L, 502L, 503L, 403L, 401L, 206L, 304L));

class MirrorTransportFailureTest : public MirrorFakeTest,
                                   public ::testing::WithParamInterface<FetchErrc> {};

TEST_P(MirrorTransportFailureTest, FailureIsEioAndLeavesNothing) {
  MirrorOptions o = DefaultOptions();
  o.retries = 0;
  MakeMirror(kTwoRules, o);
  http_.Set("http://o2/f.bin",
            Canned{.body = testing::PatternBytes(20'000), .fail_after_body = GetParam()});
  auto done = AwaitDone(*mirror_->Start("f.bin"));
  ASSERT_FALSE(done.has_value());
  EXPECT_EQ(done.error().code, EIO) << done.error().message;
  EXPECT_THAT(BucketObjects(), IsEmpty());
  EXPECT_THAT(StagingLeftovers(), IsEmpty());
  EXPECT_EQ(index_->Get("f.bin").value(), std::nullopt);
  EXPECT_FALSE(Remembered404("f.bin"));
}

INSTANTIATE_TEST_SUITE_P(Errcs, MirrorTransportFailureTest,
                         ::testing::Values(FetchErrc::kTimeout, FetchErrc::kConnect,
                                           FetchErrc::kResolve, FetchErrc::kShortBody,
                                           FetchErrc::kRedirectRefused,
                                           FetchErrc::kTooManyRedirects, FetchErrc::kTls,
                                           FetchErrc::kDigestMismatch, FetchErrc::kHttpStatus,
                                           FetchErrc::kNotFound, FetchErrc::kOther),
                         [](const ::testing::TestParamInfo<FetchErrc>& info) {
                           std::string name = ToString(info.param);
                           for (char& c : name) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return name;
                         });

TEST_F(MirrorFakeTest, BodyBrokenOffMidwayIsRetriedFromScratch) {
  MirrorOptions o = DefaultOptions();
  o.retries = 2;
  MakeMirror(kTwoRules, o);
  std::string body = testing::PatternBytes(20'000, 4);
  http_.Set("http://o2/r.bin",
            Canned{.body = body, .fail_after_body = FetchErrc::kShortBody, .fail_first = 2});
  auto done = AwaitDone(*mirror_->Start("r.bin"));
  ASSERT_TRUE(done.has_value()) << done.error().message;
  EXPECT_EQ(http_.Calls("http://o2/r.bin"), 3);
  // Each attempt starts a fresh staging file: no bytes of a broken attempt remain.
  EXPECT_EQ(BucketFile("r.bin"), body);
  EXPECT_THAT(StagingLeftovers(), IsEmpty());
}

// A retry that started over with another version (no reader had a byte of
// the first) pins that one: a third answer of the first version must not be
// written over the bytes a reader now has (differential fuzzer seed
// 1847815518994174: a read that matched no version).
TEST_F(MirrorFakeTest, ARetryPinsTheVersionItStartedOverWith) {
  MirrorOptions o = DefaultOptions();
  o.retries = 3;
  MakeMirror(kTwoRules, o);
  const std::string url = "http://o2/v.bin";
  std::string a = testing::PatternBytes(20'000, 1), b = testing::PatternBytes(20'000, 2);
  http_.SetSequence(url,
                    {Canned{.body = a, .etag = "\"a\"", .fail_after_body = FetchErrc::kShortBody},
                     Canned{.body = b, .etag = "\"b\"", .fail_after_body = FetchErrc::kShortBody},
                     Canned{.body = a, .etag = "\"a\""}});
  auto flight = mirror_->Start("v.bin");
  // The third request waits at the gate while a reader takes bytes of the second.
  for (int i = 0; i < 5000 && http_.Calls(url) < 2; ++i) std::this_thread::sleep_for(1ms);
  ASSERT_EQ(http_.Calls(url), 2);
  http_.HoldRequests(true);
  ASSERT_TRUE(http_.WaitForParked(1));
  ASSERT_EQ(flight->received(), b.size());
  std::string seen;
  std::latch read(1);
  flight->OnAvailable(b.size(), [&] {
    seen.resize(b.size());
    ssize_t n = pread(flight->stream_file()->get(), seen.data(), seen.size(), 0);
    seen.resize(n < 0 ? 0 : static_cast<std::size_t>(n));
    read.count_down();
  });
  read.wait();
  ASSERT_EQ(seen, b);
  http_.HoldRequests(false);
  auto done = AwaitDone(*flight);
  if (done) {
    EXPECT_EQ(BucketFile("v.bin"), b) << "landed another version than a reader had";
  } else {
    EXPECT_EQ(done.error().code, EIO);
  }
}

TEST_F(MirrorFakeTest, BodyRetriesAreBounded) {
  MirrorOptions o = DefaultOptions();
  o.retries = 1;
  MakeMirror(kTwoRules, o);
  http_.Set("http://o2/r.bin", Canned{.body = testing::PatternBytes(20'000),
                                      .fail_after_body = FetchErrc::kShortBody});
  auto done = AwaitDone(*mirror_->Start("r.bin"));
  ASSERT_FALSE(done.has_value());
  EXPECT_EQ(done.error().code, EIO);
  EXPECT_EQ(http_.Calls("http://o2/r.bin"), 2);
  EXPECT_THAT(BucketObjects(), IsEmpty());
}

TEST_F(MirrorFakeTest, BodyShorterThanContentLengthIsEio) {
  MakeMirror(kTwoRules);
  http_.Set("http://o2/short", Canned{.body = std::string(600, 's'), .content_length = 1000});
  auto flight = mirror_->Start("short");
  auto done = AwaitDone(*flight);
  ASSERT_FALSE(done.has_value());
  EXPECT_EQ(done.error().code, EIO);
  EXPECT_THAT(BucketObjects(), IsEmpty());
  EXPECT_THAT(StagingLeftovers(), IsEmpty());
}

TEST_F(MirrorFakeTest, ConcurrentStartsShareOneRequest) {
  MakeMirror(kTwoRules);
  std::string body = testing::PatternBytes(30'000, 3);
  http_.Set("http://o2/hot.bin", Canned{.body = body});
  http_.HoldRequests(true);

  constexpr int kThreads = 16;
  std::latch started(kThreads);
  std::vector<std::shared_ptr<Flight>> flights(kThreads);
  std::vector<Result<FetchedObject>> results(kThreads, Fail(EINVAL, "unset"));
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      flights[i] = mirror_->Start("hot.bin");
      started.count_down();
      results[i] = AwaitDone(*flights[i]);
    });
  }
  ASSERT_TRUE(http_.WaitForParked(1));
  started.wait();
  EXPECT_EQ(http_.TotalCalls(), 1);
  http_.HoldRequests(false);
  for (auto& t : threads) t.join();

  EXPECT_EQ(http_.Calls("http://o2/hot.bin"), 1);
  EXPECT_EQ(http_.TotalCalls(), 1);
  for (int i = 0; i < kThreads; ++i) {
    EXPECT_EQ(flights[i], flights[0]) << i;
    ASSERT_TRUE(results[i].has_value()) << i << ": " << results[i].error().message;
    EXPECT_TRUE(results[i]->in_bucket);
    EXPECT_EQ(results[i]->size, body.size());
  }
  EXPECT_EQ(BucketFile("hot.bin"), body);
  EXPECT_EQ(mirror_->stats().fetches.load(), 1u);
}

}  // namespace
}  // namespace originfs::mirror_test
