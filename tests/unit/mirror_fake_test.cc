// The Mirror against a fake HttpClient, with a real BucketStore and a real
// LMDB index in a temporary directory. No network.
#include "core/mirror.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <latch>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/unique_fd.h"
#include "tests/support/flight_wait.h"
#include "tests/support/temp_dir.h"

namespace originfs {

// Readable parameter values in test names and failure messages.
void PrintTo(FetchErrc e, std::ostream* os) { *os << ToString(e); }

namespace {

using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Optional;

using testing::AwaitDone;
using testing::AwaitHead;

// What the fake answers for one URL.
struct Canned {
  long status = 200;
  std::string body;
  bool send_content_length = true;
  std::string etag;
  std::string last_modified;
  std::optional<int64_t> mtime;
  long redirects = 0;
  std::string effective_url;                 // "" means the request URL
  std::optional<FetchErrc> fail_after_body;  // transport failure once the body is sent
  std::optional<uint64_t> content_length;    // overrides body.size() when set
  int fail_first = 0;  // with fail_after_body: only the first n calls fail (0: all)
  std::optional<FetchErrc> fail_before_head;  // transport failure before any response
  std::string content_md5;
  std::string content_type;
};

// An HttpClient with canned responses per URL (404 for anything else). It
// counts requests and can hold them at two gates: before answering, and
// between the head and the body.
class FakeHttpClient final : public HttpClient {
 public:
  void Set(const std::string& url, Canned c) {
    std::lock_guard lock(mu_);
    canned_[url] = std::move(c);
  }

  int Calls(const std::string& url) const {
    std::lock_guard lock(mu_);
    auto it = calls_.find(url);
    return it == calls_.end() ? 0 : it->second;
  }

  int TotalCalls() const {
    std::lock_guard lock(mu_);
    return static_cast<int>(log_.size());
  }

  std::vector<std::string> Log() const {
    std::lock_guard lock(mu_);
    return log_;
  }

  void HoldRequests(bool on) { SetGate(&hold_requests_, on); }
  void HoldBodies(bool on) { SetGate(&hold_bodies_, on); }

  // Waits until n requests are parked at the request gate.
  bool WaitForParked(int n, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return parked_ >= n; });
  }

  std::expected<HttpOutcome, HttpFailure> Perform(const HttpRequest& req, HttpSink& sink) override {
    Canned c;
    int call_no = 0;
    {
      std::unique_lock lock(mu_);
      call_no = ++calls_[req.url];
      log_.push_back((req.head ? "HEAD " : "GET ") + req.url);
      parked_++;
      cv_.notify_all();
      cv_.wait(lock, [&] { return !hold_requests_ || shutdown_; });
      parked_--;
      if (shutdown_) return std::unexpected(HttpFailure{FetchErrc::kAborted, "shutdown"});
      auto it = canned_.find(req.url);
      if (it != canned_.end()) {
        c = it->second;
      } else {
        c.status = 404;
        c.body = "not found";
      }
    }
    if (c.fail_before_head) {
      return std::unexpected(HttpFailure{*c.fail_before_head, "injected before head", false});
    }
    HttpResponseHead head;
    head.status = c.status;
    head.content_md5 = c.content_md5;
    head.content_type = c.content_type;
    if (c.content_length) {
      head.content_length = c.content_length;
    } else if (c.send_content_length) {
      head.content_length = c.body.size();
    }
    head.etag = c.etag;
    head.last_modified = c.last_modified;
    head.mtime = c.mtime;
    head.redirects = c.redirects;
    head.effective_url = c.effective_url.empty() ? req.url : c.effective_url;
    if (!sink.OnHead(head)) return HttpOutcome{head, 0, true};
    if (req.head) return HttpOutcome{head, 0, false};
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return !hold_bodies_ || shutdown_; });
      if (shutdown_) return std::unexpected(HttpFailure{FetchErrc::kAborted, "shutdown", false});
    }
    uint64_t sent = 0;
    constexpr std::size_t kChunk = 1000;
    for (std::size_t off = 0; off < c.body.size(); off += kChunk) {
      std::size_t n = std::min(kChunk, c.body.size() - off);
      if (!sink.OnData(c.body.data() + off, n)) return HttpOutcome{head, sent, true};
      sent += n;
    }
    if (c.fail_after_body && (c.fail_first == 0 || call_no <= c.fail_first)) {
      return std::unexpected(HttpFailure{*c.fail_after_body, "injected", sent > 0});
    }
    return HttpOutcome{head, sent, false};
  }

  void Shutdown() override {
    std::lock_guard lock(mu_);
    shutdown_ = true;
    cv_.notify_all();
  }

 private:
  void SetGate(bool* gate, bool on) {
    std::lock_guard lock(mu_);
    *gate = on;
    cv_.notify_all();
  }

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Canned> canned_;  // guarded by mu_
  std::map<std::string, int> calls_;      // guarded by mu_
  std::vector<std::string> log_;          // guarded by mu_
  bool hold_requests_ = false;            // guarded by mu_
  bool hold_bodies_ = false;              // guarded by mu_
  bool shutdown_ = false;                 // guarded by mu_
  int parked_ = 0;                        // guarded by mu_
};

constexpr char kTwoRules[] = R"(
[[rule]]
prefix = "a/"
origin = "http://o1/base"

[[rule]]
prefix = ""
origin = "http://o2"
)";

constexpr int64_t kMtime = 1445412480;  // Wed, 21 Oct 2015 07:28:00 GMT

class MirrorFakeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fds_before_ = testing::CountOpenFds();
    bucket_ = tmp_.Join("bucket");
    ASSERT_EQ(mkdir(bucket_.c_str(), 0755), 0);
    auto store = BucketStore::Open(bucket_, StoreOptions{});
    ASSERT_TRUE(store.has_value()) << store.error().message;
    store_ = std::move(*store);
    auto index = OpenLmdbIndex(tmp_.Join("index"), IndexOptions{.map_size = 64ull << 20});
    ASSERT_TRUE(index.has_value()) << index.error().message;
    index_ = std::move(*index);
  }

  void TearDown() override {
    mirror_.reset();
    index_.reset();
    store_.reset();
    EXPECT_EQ(testing::CountOpenFds(), fds_before_) << "descriptor leaked";
  }

  void MakeMirror(std::string_view rules_toml, MirrorOptions options = DefaultOptions()) {
    auto rules = RuleSet::Parse(rules_toml, "test-rules");
    ASSERT_TRUE(rules.has_value()) << rules.error().message;
    mirror_ = std::make_unique<Mirror>(std::move(*rules), http_, *store_, *index_, options);
  }

  static MirrorOptions DefaultOptions() {
    MirrorOptions o;
    o.download_threads = 4;
    return o;
  }

  std::optional<std::string> BucketFile(std::string_view key) const {
    return testing::ReadFile(bucket_ + "/" + std::string(key));
  }

  // Objects in the bucket, not counting originfs's own state.
  std::vector<std::string> BucketObjects() const {
    return testing::ListFilesRecursive(bucket_, BucketStore::kStateDirName);
  }

  std::vector<std::string> StagingLeftovers() const {
    return testing::ListDir(bucket_ + "/.originfs/staging");
  }

  bool Remembered404(std::string_view key) {
    auto r = index_->IsNotFound(key, time(nullptr));
    EXPECT_TRUE(r.has_value());
    return r && *r;
  }

  testing::TempDir tmp_;
  std::string bucket_;
  FakeHttpClient http_;
  std::unique_ptr<BucketStore> store_;
  std::unique_ptr<Index> index_;
  std::unique_ptr<Mirror> mirror_;
  int fds_before_ = 0;
};

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
  EXPECT_EQ(head->kind, RemoteKind::kFile);
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
  EXPECT_EQ(mirror_->stats().requests.load(), 1u);
}

TEST_F(MirrorFakeTest, SecondStartAfterLandingIsLocalWithoutRequest) {
  MakeMirror(kTwoRules);
  http_.Set("http://o2/x.txt", Canned{.body = "xx"});
  ASSERT_TRUE(AwaitDone(*mirror_->Start("x.txt")).has_value());
  auto again = mirror_->Start("x.txt");
  auto head = AwaitHead(*again);
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(head->kind, RemoteKind::kLocal);
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
  EXPECT_EQ(head->kind, RemoteKind::kLocal);
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
  EXPECT_EQ(copied->kind, RemoteKind::kLocal);
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
  EXPECT_EQ(head->kind, RemoteKind::kLocal);
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
  EXPECT_EQ(head->kind, RemoteKind::kFile);
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
  EXPECT_EQ(head->kind, RemoteKind::kFile);
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
  EXPECT_EQ(head->kind, RemoteKind::kFile);
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
  EXPECT_EQ(head->kind, RemoteKind::kNotFound);
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
  EXPECT_EQ(head2->kind, RemoteKind::kNotFound);
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

TEST_F(MirrorFakeTest, RedirectToSlashIsDirectory) {
  MakeMirror(kTwoRules);
  http_.Set("http://o2/docs", Canned{.status = 403,
                                     .body = "<html>403</html>",
                                     .redirects = 1,
                                     .effective_url = "http://o2/docs/"});
  auto flight = mirror_->Start("docs");
  auto head = AwaitHead(*flight);
  ASSERT_TRUE(head.has_value()) << head.error().message;
  EXPECT_EQ(head->kind, RemoteKind::kDirectory);
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
  EXPECT_EQ(head->kind, RemoteKind::kDirectory);
  EXPECT_THAT(http_.Log(), ElementsAre("GET http://o2/dir", "HEAD http://o2/dir/"));
  EXPECT_FALSE(Remembered404("dir"));
}

TEST_F(MirrorFakeTest, ProbeTreatsForbiddenListingAsDirectory) {
  MakeMirror(kTwoRules);
  http_.Set("http://o2/private/", Canned{.status = 403});
  auto head = AwaitHead(*mirror_->Start("private"));
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(head->kind, RemoteKind::kDirectory);
}

TEST_F(MirrorFakeTest, NoExtModeMakesExtensionlessNamesDirectories) {
  MakeMirror(R"(
[[rule]]
origin = "http://o"
dirs = "no-ext"
)");
  auto dir = AwaitHead(*mirror_->Start("releases/v1"));
  ASSERT_TRUE(dir.has_value());
  EXPECT_EQ(dir->kind, RemoteKind::kDirectory);
  auto file = AwaitHead(*mirror_->Start("releases/v1.tar"));
  ASSERT_TRUE(file.has_value());
  EXPECT_EQ(file->kind, RemoteKind::kNotFound);
  // Only the last segment counts.
  auto nested = AwaitHead(*mirror_->Start("v1.0/readme"));
  ASSERT_TRUE(nested.has_value());
  EXPECT_EQ(nested->kind, RemoteKind::kDirectory);
}

TEST_F(MirrorFakeTest, VirtualModeMakesEvery404ADirectoryWithoutProbing) {
  MakeMirror(R"(
[[rule]]
origin = "http://o"
dirs = "virtual"
)");
  auto head = AwaitHead(*mirror_->Start("any/thing.txt"));
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(head->kind, RemoteKind::kDirectory);
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
  EXPECT_EQ(head->kind, RemoteKind::kNotFound);
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
  EXPECT_EQ(flight->head()->value().kind, RemoteKind::kFile);
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

// ---- Per-rule settings ------------------------------------------------------

TEST_F(MirrorFakeTest, FailsOverToNextOriginOfARuleOnServerError) {
  MakeMirror(R"(
[[rule]]
origins = ["http://a", "http://b"]
)");
  http_.Set("http://a/x.txt", Canned{.status = 503, .body = "busy"});
  http_.Set("http://b/x.txt", Canned{.body = "from b"});
  http_.Set("http://a/y.txt", Canned{.body = "a has y too"});
  http_.Set("http://b/y.txt", Canned{.body = "from b"});

  auto done = AwaitDone(*mirror_->Start("x.txt"));
  ASSERT_TRUE(done.has_value()) << done.error().message;
  EXPECT_EQ(BucketFile("x.txt"), "from b");
  EXPECT_THAT(http_.Log(), ElementsAre("GET http://a/x.txt", "GET http://b/x.txt"));

  // The failed origin cools down: the next key goes to b first.
  ASSERT_TRUE(AwaitDone(*mirror_->Start("y.txt")).has_value());
  EXPECT_EQ(BucketFile("y.txt"), "from b");
  EXPECT_EQ(http_.Calls("http://a/y.txt"), 0);
}

TEST_F(MirrorFakeTest, FailsOverOnConnectionFailure) {
  MakeMirror(R"(
[[rule]]
origins = ["http://a", "http://b"]
)");
  http_.Set("http://a/x.txt", Canned{.fail_before_head = FetchErrc::kConnect});
  http_.Set("http://b/x.txt", Canned{.body = "from b"});
  auto done = AwaitDone(*mirror_->Start("x.txt"));
  ASSERT_TRUE(done.has_value()) << done.error().message;
  EXPECT_EQ(BucketFile("x.txt"), "from b");
}

TEST_F(MirrorFakeTest, NoFailoverOnNotFoundOrClientError) {
  MakeMirror(R"(
[[rule]]
origins = ["http://a", "http://b"]
)");
  http_.Set("http://a/forbidden", Canned{.status = 403});
  http_.Set("http://b/forbidden", Canned{.body = "b would serve it"});
  auto done = AwaitDone(*mirror_->Start("forbidden"));
  ASSERT_FALSE(done.has_value());
  EXPECT_EQ(done.error().code, EIO);
  EXPECT_EQ(http_.Calls("http://b/forbidden"), 0);
}

TEST_F(MirrorFakeTest, AllOriginsOfARuleFailingIsEio) {
  MakeMirror(R"(
[[rule]]
origins = ["http://a", "http://b"]
)");
  http_.Set("http://a/x", Canned{.fail_before_head = FetchErrc::kTimeout});
  http_.Set("http://b/x", Canned{.status = 502});
  auto done = AwaitDone(*mirror_->Start("x"));
  ASSERT_FALSE(done.has_value());
  EXPECT_EQ(done.error().code, EIO);
  EXPECT_FALSE(Remembered404("x"));
}

TEST_F(MirrorFakeTest, FallthroughOnCustomStatus) {
  MakeMirror(R"(
[[rule]]
prefix = "p/"
origin = "http://private"
fallthrough_on = [401, 403, 404]
[[rule]]
origin = "http://public"
)");
  http_.Set("http://private/p/doc", Canned{.status = 403});
  http_.Set("http://public/p/doc", Canned{.body = "public copy"});
  auto done = AwaitDone(*mirror_->Start("p/doc"));
  ASSERT_TRUE(done.has_value()) << done.error().message;
  EXPECT_EQ(BucketFile("p/doc"), "public copy");
}

TEST_F(MirrorFakeTest, NotFoundIsFinalWhenNotInFallthroughOn) {
  MakeMirror(R"(
[[rule]]
prefix = "p/"
origin = "http://first"
fallthrough_on = [503]
[[rule]]
origin = "http://second"
)");
  http_.Set("http://second/p/doc", Canned{.body = "never asked"});
  auto flight = mirror_->Start("p/doc");
  auto head = AwaitHead(*flight);
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(head->kind, RemoteKind::kNotFound);
  EXPECT_EQ(http_.Calls("http://second/p/doc"), 0);
}

TEST_F(MirrorFakeTest, ReplacePrefixRewritesOriginPath) {
  MakeMirror(R"(
[[rule]]
prefix = "img/"
origin = "http://o/base"
replace_prefix = "static/images/"
[[rule]]
prefix = "raw/"
origin = "http://o"
strip_prefix = true
)");
  http_.Set("http://o/base/static/images/a%20b.png", Canned{.body = "png"});
  http_.Set("http://o/c.txt", Canned{.body = "raw"});
  ASSERT_TRUE(AwaitDone(*mirror_->Start("img/a b.png")).has_value());
  ASSERT_TRUE(AwaitDone(*mirror_->Start("raw/c.txt")).has_value());
  EXPECT_EQ(BucketFile("img/a b.png"), "png");  // stored under the key, not the origin path
  EXPECT_EQ(BucketFile("raw/c.txt"), "raw");
}

TEST_F(MirrorFakeTest, SuffixLimitsRule) {
  MakeMirror(R"(
[[rule]]
suffix = ".jpg"
origin = "http://images"
[[rule]]
origin = "http://other"
)");
  http_.Set("http://images/a/b.jpg", Canned{.body = "jpg"});
  http_.Set("http://other/a/b.png", Canned{.body = "png"});
  ASSERT_TRUE(AwaitDone(*mirror_->Start("a/b.jpg")).has_value());
  ASSERT_TRUE(AwaitDone(*mirror_->Start("a/b.png")).has_value());
  EXPECT_EQ(http_.Calls("http://images/a/b.png"), 0);
  EXPECT_EQ(BucketFile("a/b.jpg"), "jpg");
  EXPECT_EQ(BucketFile("a/b.png"), "png");
}

// md5("hello world")
constexpr char kHelloMd5Hex[] = "5eb63bbbe01eeed093cb22bb8f5acdc3";
constexpr char kHelloMd5Base64[] = "XrY7u+Ae7tCTyyK7j1rNww==";

TEST_F(MirrorFakeTest, VerifyEtagMd5) {
  MakeMirror(R"(
[[rule]]
origin = "http://s3"
verify = "etag-md5"
)");
  http_.Set("http://s3/good",
            Canned{.body = "hello world", .etag = std::string("\"") + kHelloMd5Hex + "\""});
  http_.Set("http://s3/bad",
            Canned{.body = "hello worlD", .etag = std::string("\"") + kHelloMd5Hex + "\""});
  http_.Set("http://s3/multipart",
            Canned{.body = "hello world", .etag = "\"5eb63bbbe01eeed093cb22bb8f5acdc3-2\""});
  ASSERT_TRUE(AwaitDone(*mirror_->Start("good")).has_value());
  EXPECT_EQ(BucketFile("good"), "hello world");
  for (const char* key : {"bad", "multipart"}) {
    auto done = AwaitDone(*mirror_->Start(key));
    ASSERT_FALSE(done.has_value()) << key;
    EXPECT_EQ(done.error().code, EIO) << key;
    EXPECT_EQ(BucketFile(key), std::nullopt) << key;
  }
  EXPECT_THAT(StagingLeftovers(), IsEmpty());
}

TEST_F(MirrorFakeTest, VerifyContentMd5) {
  MakeMirror(R"(
[[rule]]
origin = "http://o"
verify = "content-md5"
)");
  http_.Set("http://o/good", Canned{.body = "hello world", .content_md5 = kHelloMd5Base64});
  http_.Set("http://o/bad", Canned{.body = "goodbye world", .content_md5 = kHelloMd5Base64});
  http_.Set("http://o/missing", Canned{.body = "hello world"});
  ASSERT_TRUE(AwaitDone(*mirror_->Start("good")).has_value());
  EXPECT_FALSE(AwaitDone(*mirror_->Start("bad")).has_value());
  EXPECT_FALSE(AwaitDone(*mirror_->Start("missing")).has_value());
  EXPECT_THAT(BucketObjects(), ElementsAre("good"));
}

TEST_F(MirrorFakeTest, MtimeFromFetchIgnoresLastModified) {
  MakeMirror(R"(
[[rule]]
origin = "http://o"
mtime = "fetch"
)");
  http_.Set("http://o/f",
            Canned{.body = "x", .last_modified = "Wed, 21 Oct 2015 07:28:00 GMT", .mtime = kMtime});
  int64_t before = time(nullptr);
  ASSERT_TRUE(AwaitDone(*mirror_->Start("f")).has_value());
  struct stat st;
  ASSERT_EQ(stat((bucket_ + "/f").c_str(), &st), 0);
  EXPECT_GE(st.st_mtim.tv_sec, before);
}

TEST_F(MirrorFakeTest, PerRuleMaxObjectSize) {
  MakeMirror(R"(
[[rule]]
prefix = "small/"
origin = "http://o"
max_object_size = "1K"
[[rule]]
origin = "http://o"
)");
  http_.Set("http://o/small/big", Canned{.body = std::string(1025, 'b')});
  http_.Set("http://o/any/big", Canned{.body = std::string(1025, 'b')});
  EXPECT_FALSE(AwaitDone(*mirror_->Start("small/big")).has_value());
  EXPECT_TRUE(AwaitDone(*mirror_->Start("any/big")).has_value());
  EXPECT_THAT(BucketObjects(), ElementsAre("any/big"));
}

TEST_F(MirrorFakeTest, MaxConcurrentLimitsDownloadsOfARule) {
  MakeMirror(R"(
[[rule]]
origin = "http://o"
max_concurrent = 1
)");
  http_.Set("http://o/1", Canned{.body = "1"});
  http_.Set("http://o/2", Canned{.body = "2"});
  http_.HoldRequests(true);
  auto f1 = mirror_->Start("1");
  auto f2 = mirror_->Start("2");
  ASSERT_TRUE(http_.WaitForParked(1));
  // The second download waits for the rule's only slot.
  EXPECT_FALSE(http_.WaitForParked(2, 200ms));
  http_.HoldRequests(false);
  ASSERT_TRUE(AwaitDone(*f1).has_value());
  ASSERT_TRUE(AwaitDone(*f2).has_value());
  EXPECT_EQ(http_.TotalCalls(), 2);
}

// ---- refresh ------------------------------------------------------------------

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
  EXPECT_THAT(http_.Log(), ElementsAre("GET http://dead/x.txt", "GET http://live/x.txt",
                                       "GET http://dead/x.txt", "GET http://live/x.txt"));

  // Not switchable: a 404 from the live origin is final, the local copy stays.
  http_.Set("http://dead/x.txt", Canned{.status = 404});
  r = mirror_->Refresh("x.txt");
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(*r, Mirror::RefreshOutcome::kGoneAtOrigin);
  EXPECT_EQ(BucketFile("x.txt"), "version 2");
}

// ---- soft_404 -----------------------------------------------------------------

constexpr char kIndexPage[] = "<html><body>Welcome to nginx!</body></html>\n";

TEST_F(MirrorFakeTest, Soft404PageIsNotFoundAndFallsThrough) {
  MakeMirror(R"(
[[rule]]
prefix = ""
origin = "http://spa"
soft_404 = { content_type = "text/html", size = 44 }

[[rule]]
prefix = ""
suffix = ".so"
origin = "http://other"
)");
  ASSERT_EQ(sizeof kIndexPage - 1, 44u);
  Canned page{.body = kIndexPage, .etag = "\"idx\"", .content_type = "text/html; charset=utf-8"};
  for (const char* url :
       {"http://spa/commondir", "http://spa/commondir/", "http://spa/mod.so", "http://spa/mod.so/"})
    http_.Set(url, page);
  http_.Set("http://other/mod.so", Canned{.body = "ELF"});
  http_.Set("http://spa/real.html",
            Canned{.body = "<html>a real page</html>", .content_type = "text/html"});

  auto missing = AwaitDone(*mirror_->Start("commondir"));
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, ENOENT) << missing.error().message;
  EXPECT_TRUE(Remembered404("commondir"));
  EXPECT_EQ(http_.Calls("http://spa/commondir/"), 1) << "the directory probe was not sent";

  ASSERT_TRUE(AwaitDone(*mirror_->Start("mod.so")).has_value());
  EXPECT_EQ(BucketFile("mod.so"), "ELF") << "the soft 404 did not fall through to the next rule";
  ASSERT_TRUE(AwaitDone(*mirror_->Start("real.html")).has_value());
  EXPECT_EQ(BucketFile("real.html"), "<html>a real page</html>");
  EXPECT_THAT(BucketObjects(), ElementsAre("mod.so", "real.html"));
  EXPECT_THAT(StagingLeftovers(), IsEmpty());
}

TEST_F(MirrorFakeTest, WithoutSoft404ThePageLands) {
  MakeMirror("[[rule]]\norigin = \"http://spa\"\n");
  http_.Set("http://spa/commondir", Canned{.body = kIndexPage, .content_type = "text/html"});
  ASSERT_TRUE(AwaitDone(*mirror_->Start("commondir")).has_value());
  EXPECT_EQ(BucketFile("commondir"), kIndexPage);
}

}  // namespace
}  // namespace originfs
