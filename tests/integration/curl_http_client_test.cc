// The libcurl HttpClient against an in-process origin on 127.0.0.1.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/origin/http_client.h"
#include "core/common/unique_fd.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_origin.h"

namespace originfs {
namespace {

using namespace std::chrono_literals;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Optional;
using Clock = std::chrono::steady_clock;

constexpr char kLastModified[] = "Wed, 21 Oct 2015 07:28:00 GMT";
constexpr int64_t kMtime = 1445412480;

// Records what the client hands over; can refuse the head or stop the body.
class RecordingSink final : public HttpSink {
 public:
  bool OnHead(const HttpResponseHead& h) override {
    heads.push_back(h);
    return accept_head;
  }
  bool OnData(const char* data, std::size_t len) override {
    if (heads.empty()) data_before_head = true;
    body.append(data, len);
    bytes.store(body.size());
    return body.size() < stop_after;
  }

  bool accept_head = true;
  std::size_t stop_after = SIZE_MAX;
  std::vector<HttpResponseHead> heads;
  std::string body;
  std::atomic<std::size_t> bytes{0};
  bool data_before_head = false;
};

double Seconds(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

class FetcherTest : public ::testing::Test {
 protected:
  static HttpOptions FastOptions() {
    HttpOptions o;
    o.connect_timeout_ms = 2000;
    o.low_speed_time_s = 5;
    o.low_speed_limit = 1;
    o.retries = 2;
    o.retry_backoff_ms = 10;
    return o;
  }

  HttpClient& Client(HttpOptions options = FastOptions()) {
    client_ = MakeCurlHttpClient(options);
    return *client_;
  }

  std::expected<HttpOutcome, HttpFailure> Get(const std::string& path, RecordingSink& sink) {
    if (!client_) Client();
    return client_->Perform(HttpRequest{origin_.url() + path}, sink);
  }

  testing::TestOrigin origin_;  // first: outlives the client's connections
  std::unique_ptr<HttpClient> client_;
};

TEST_F(FetcherTest, GetReturnsBodyAndHeaders) {
  std::string body = testing::PatternBytes(300 * 1024);
  origin_.Set("/dir/file.bin", testing::Behavior{.body = body,
                                                 .headers = {{"ETag", "\"abc-123\""}},
                                                 .last_modified = kLastModified});
  RecordingSink sink;
  auto r = Get("/dir/file.bin", sink);
  ASSERT_TRUE(r.has_value()) << r.error().detail;
  EXPECT_EQ(r->head.status, 200);
  EXPECT_THAT(r->head.content_length, Optional(body.size()));
  EXPECT_EQ(r->head.etag, "\"abc-123\"");
  EXPECT_EQ(r->head.last_modified, kLastModified);
  EXPECT_THAT(r->head.mtime, Optional(kMtime));
  EXPECT_EQ(r->head.effective_url, origin_.url() + "/dir/file.bin");
  EXPECT_EQ(r->head.redirects, 0);
  EXPECT_EQ(r->body_bytes, body.size());
  EXPECT_FALSE(r->aborted_by_sink);
  ASSERT_EQ(sink.heads.size(), 1u);
  EXPECT_EQ(sink.heads[0].status, 200);
  EXPECT_FALSE(sink.data_before_head);
  EXPECT_EQ(sink.body, body);
  EXPECT_EQ(origin_.GetCount("/dir/file.bin"), 1);
}

TEST_F(FetcherTest, EmptyBody) {
  origin_.SetFile("/empty", "");
  RecordingSink sink;
  auto r = Get("/empty", sink);
  ASSERT_TRUE(r.has_value()) << r.error().detail;
  EXPECT_EQ(r->head.status, 200);
  EXPECT_THAT(r->head.content_length, Optional(0u));
  EXPECT_EQ(r->body_bytes, 0u);
  EXPECT_EQ(sink.heads.size(), 1u);
}

TEST_F(FetcherTest, HeadRequestHasNoBody) {
  std::string body = testing::PatternBytes(5000);
  origin_.Set("/h.txt", testing::Behavior{.body = body, .headers = {{"ETag", "\"h\""}}});
  RecordingSink sink;
  HttpRequest req{origin_.url() + "/h.txt"};
  req.head = true;
  auto r = Client().Perform(req, sink);
  ASSERT_TRUE(r.has_value()) << r.error().detail;
  EXPECT_EQ(r->head.status, 200);
  EXPECT_THAT(r->head.content_length, Optional(body.size()));
  EXPECT_EQ(r->head.etag, "\"h\"");
  EXPECT_EQ(r->body_bytes, 0u);
  EXPECT_TRUE(sink.body.empty());
  EXPECT_EQ(sink.heads.size(), 1u);
  EXPECT_EQ(origin_.Count("/h.txt"), 1);
  EXPECT_EQ(origin_.GetCount("/h.txt"), 0);
}

TEST_F(FetcherTest, RangeRequestReturnsSlice) {
  std::string body = testing::PatternBytes(100'000);
  origin_.SetFile("/r.bin", body);
  RecordingSink sink;
  HttpRequest req{origin_.url() + "/r.bin"};
  req.range = {{1000, 1999}};
  auto r = Client().Perform(req, sink);
  ASSERT_TRUE(r.has_value()) << r.error().detail;
  EXPECT_EQ(r->head.status, 206);
  EXPECT_THAT(r->head.content_length, Optional(1000u));
  EXPECT_EQ(sink.body, body.substr(1000, 1000));
}

TEST_F(FetcherTest, NotFoundIsAnOutcomeNotAFailure) {
  RecordingSink sink;
  auto r = Get("/missing", sink);
  ASSERT_TRUE(r.has_value()) << r.error().detail;
  EXPECT_EQ(r->head.status, 404);
  EXPECT_EQ(sink.heads.size(), 1u);
  EXPECT_EQ(origin_.Count("/missing"), 1);  // never retried
}

class FetcherRetryTest : public FetcherTest, public ::testing::WithParamInterface<int> {};

TEST_P(FetcherRetryTest, ServerErrorRetriedThenReturned) {
  origin_.Set("/flaky", testing::Behavior{.status = 503, .body = "try later"});
  HttpOptions o = FastOptions();
  o.retries = GetParam();
  RecordingSink sink;
  auto r = Client(o).Perform(HttpRequest{origin_.url() + "/flaky"}, sink);
  ASSERT_TRUE(r.has_value()) << r.error().detail;
  EXPECT_EQ(r->head.status, 503);
  EXPECT_EQ(origin_.Count("/flaky"), GetParam() + 1);
  // Only the final answer reaches the sink.
  ASSERT_EQ(sink.heads.size(), 1u);
  EXPECT_EQ(sink.body, "try later");
}

INSTANTIATE_TEST_SUITE_P(Retries, FetcherRetryTest, ::testing::Values(0, 1, 3));

TEST_F(FetcherTest, RetryBackoffIsApplied) {
  origin_.Set("/flaky", testing::Behavior{.status = 500});
  HttpOptions o = FastOptions();
  o.retries = 2;
  o.retry_backoff_ms = 150;  // 150 + 300 ms
  RecordingSink sink;
  auto start = Clock::now();
  auto r = Client(o).Perform(HttpRequest{origin_.url() + "/flaky"}, sink);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->head.status, 500);
  EXPECT_GE(Seconds(start), 0.45);
  EXPECT_EQ(origin_.Count("/flaky"), 3);
}

TEST_F(FetcherTest, TruncatedBodyIsShortBody) {
  std::string body = testing::PatternBytes(200'000);
  origin_.Set("/t.bin", testing::Behavior{.body = body, .truncate_after = 100'000});
  RecordingSink sink;
  auto r = Get("/t.bin", sink);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().errc, FetchErrc::kShortBody) << r.error().detail;
  EXPECT_TRUE(r.error().body_started);
  EXPECT_EQ(origin_.Count("/t.bin"), 1);  // no retry once the body has started
  EXPECT_LT(sink.body.size(), body.size());
}

TEST_F(FetcherTest, BodyDroppedBeforeFirstByteIsShortBody) {
  origin_.Set("/t0.bin", testing::Behavior{.body = std::string(5000, 'x'), .truncate_after = 0});
  RecordingSink sink;
  auto r = Get("/t0.bin", sink);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().errc, FetchErrc::kShortBody) << r.error().detail;
  // The sink has the head: a broken body for the caller to retry, like any other.
  EXPECT_TRUE(r.error().body_started);
  EXPECT_EQ(sink.heads.size(), 1u);
  EXPECT_EQ(origin_.Count("/t0.bin"), 1);
}

TEST_F(FetcherTest, ChunkedBodyEndingEarlyFails) {
  std::string body = testing::PatternBytes(200'000);
  origin_.Set("/c.bin", testing::Behavior{.body = body, .truncate_after = 70'000, .chunked = true});
  RecordingSink sink;
  auto r = Get("/c.bin", sink);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().errc, FetchErrc::kShortBody) << r.error().detail;
  EXPECT_LT(sink.body.size(), body.size());
}

TEST_F(FetcherTest, CompleteChunkedBodySucceeds) {
  std::string body = testing::PatternBytes(200'000);
  origin_.Set("/c.bin", testing::Behavior{.body = body, .chunked = true});
  RecordingSink sink;
  auto r = Get("/c.bin", sink);
  ASSERT_TRUE(r.has_value()) << r.error().detail;
  EXPECT_EQ(r->head.content_length, std::nullopt);
  EXPECT_EQ(sink.body, body);
}

TEST_F(FetcherTest, RedirectIsFollowedAndFinalHeadersReported) {
  origin_.Set("/old", testing::Behavior{.status = 301,
                                        .headers = {{"ETag", "\"old\""}},
                                        .redirect_to = "/new",
                                        .last_modified = "Mon, 01 Jan 2001 00:00:00 GMT"});
  origin_.Set("/new", testing::Behavior{.body = "new body", .headers = {{"ETag", "\"new\""}}});
  RecordingSink sink;
  auto r = Get("/old", sink);
  ASSERT_TRUE(r.has_value()) << r.error().detail;
  EXPECT_EQ(r->head.status, 200);
  EXPECT_EQ(r->head.redirects, 1);
  EXPECT_THAT(r->head.effective_url, EndsWith("/new"));
  EXPECT_EQ(r->head.etag, "\"new\"");
  EXPECT_EQ(r->head.last_modified, "");  // not the redirect's
  EXPECT_EQ(r->head.mtime, std::nullopt);
  EXPECT_EQ(sink.body, "new body");
}

TEST_F(FetcherTest, RedirectToFileIsRefused) {
  origin_.Set("/evil", testing::Behavior{.status = 302, .redirect_to = "file:///etc/passwd"});
  RecordingSink sink;
  auto r = Get("/evil", sink);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().errc, FetchErrc::kRedirectRefused) << r.error().detail;
  EXPECT_THAT(sink.body, Not(HasSubstr("root:")));
}

TEST_F(FetcherTest, RedirectLoopIsBounded) {
  origin_.Set("/loop", testing::Behavior{.status = 302, .redirect_to = "/loop"});
  HttpOptions o = FastOptions();
  o.max_redirects = 4;
  RecordingSink sink;
  auto r = Client(o).Perform(HttpRequest{origin_.url() + "/loop"}, sink);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().errc, FetchErrc::kTooManyRedirects) << r.error().detail;
  EXPECT_EQ(origin_.Count("/loop"), 5);
}

TEST_F(FetcherTest, RedirectsNotFollowedWhenDisabled) {
  origin_.Set("/old", testing::Behavior{.status = 302, .redirect_to = "/new"});
  origin_.SetFile("/new", "new");
  HttpOptions o = FastOptions();
  o.max_redirects = 0;
  RecordingSink sink;
  auto r = Client(o).Perform(HttpRequest{origin_.url() + "/old"}, sink);
  ASSERT_TRUE(r.has_value()) << r.error().detail;
  EXPECT_EQ(r->head.status, 302);
  EXPECT_EQ(origin_.Count("/new"), 0);
}

TEST_F(FetcherTest, StalledBodyTimesOut) {
  origin_.Set("/slow",
              testing::Behavior{.body = testing::PatternBytes(256 * 1024), .stall_ms = 30'000});
  HttpOptions o = FastOptions();
  o.low_speed_limit = 1 << 30;  // nothing on this origin is that fast for a whole second
  o.low_speed_time_s = 1;
  RecordingSink sink;
  auto start = Clock::now();
  auto r = Client(o).Perform(HttpRequest{origin_.url() + "/slow"}, sink);
  double took = Seconds(start);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().errc, FetchErrc::kTimeout) << r.error().detail;
  EXPECT_TRUE(r.error().body_started);
  EXPECT_LT(took, 5.0);
  EXPECT_EQ(origin_.Count("/slow"), 1);  // not retried after body bytes
}

// The timeout is time without a byte: it fires within about a second of its
// value, not some seconds later as curl's averaged low-speed check would.
TEST_F(FetcherTest, StalledBodyTimesOutNearTheTimeout) {
  origin_.Set("/slow",
              testing::Behavior{.body = testing::PatternBytes(4 << 20), .stall_ms = 30'000});
  HttpOptions o = FastOptions();
  o.low_speed_time_s = 2;  // low_speed_limit stays 1 byte/s
  o.retries = 0;
  RecordingSink sink;
  auto start = Clock::now();
  auto r = Client(o).Perform(HttpRequest{origin_.url() + "/slow"}, sink);
  double took = Seconds(start);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().errc, FetchErrc::kTimeout) << r.error().detail;
  EXPECT_TRUE(r.error().body_started);
  EXPECT_GE(took, 1.9);
  EXPECT_LT(took, 4.5) << "a 2 s timeout fired late";
  EXPECT_EQ(r.error().attempts, 1);
}

TEST_F(FetcherTest, RangeResponseReportsContentRange) {
  std::string body = testing::PatternBytes(100'000);
  origin_.SetFile("/r.bin", body);
  RecordingSink sink;
  HttpRequest req{origin_.url() + "/r.bin"};
  req.range = {{1000, 99'999}};
  auto r = Client().Perform(req, sink);
  ASSERT_TRUE(r.has_value()) << r.error().detail;
  EXPECT_EQ(r->head.status, 206);
  EXPECT_THAT(r->head.content_range, Optional(ContentRange{1000, 99'999, 100'000}));
}

TEST(ContentRangeTest, Parses) {
  EXPECT_THAT(ParseContentRange("bytes 0-9/10"), Optional(ContentRange{0, 9, 10}));
  EXPECT_THAT(ParseContentRange("  bytes 5-5/*"), Optional(ContentRange{5, 5, std::nullopt}));
  EXPECT_THAT(ParseContentRange("Bytes 100-199/1000"), Optional(ContentRange{100, 199, 1000}));
  for (const char* bad : {"", "bytes", "bytes */10", "bytes 9-0/10", "bytes 0-10/10",
                          "items 0-9/10", "bytes 0-9/10x", "bytes -1-9/10", "bytes 0-/10"}) {
    EXPECT_EQ(ParseContentRange(bad), std::nullopt) << bad;
  }
}

TEST_F(FetcherTest, SilentOriginTimesOutAndIsRetried) {
  origin_.Set("/silent", testing::Behavior{.body = "late", .delay_ms = 30'000});
  HttpOptions o = FastOptions();
  o.low_speed_time_s = 1;
  o.retries = 1;
  RecordingSink sink;
  auto start = Clock::now();
  auto r = Client(o).Perform(HttpRequest{origin_.url() + "/silent"}, sink);
  double took = Seconds(start);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().errc, FetchErrc::kTimeout) << r.error().detail;
  EXPECT_FALSE(r.error().body_started);
  EXPECT_LT(took, 8.0);
  EXPECT_EQ(origin_.Count("/silent"), 2);
}

TEST_F(FetcherTest, ConnectionRefused) {
  // A bound socket that never listens: connecting to it is refused, and no
  // other test can take the port meanwhile.
  UniqueFd sock(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  ASSERT_TRUE(sock);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(sock.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(getsockname(sock.get(), reinterpret_cast<sockaddr*>(&addr), &len), 0);
  std::string url = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)) + "/x";

  RecordingSink sink;
  auto start = Clock::now();
  auto r = Client().Perform(HttpRequest{url}, sink);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().errc, FetchErrc::kConnect) << r.error().detail;
  EXPECT_FALSE(r.error().body_started);
  EXPECT_TRUE(sink.heads.empty());
  EXPECT_LT(Seconds(start), 3.0);
}

TEST_F(FetcherTest, UnresolvableHost) {
  RecordingSink sink;
  auto start = Clock::now();
  auto r = Client().Perform(HttpRequest{"http://nonexistent.invalid/x"}, sink);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().errc, FetchErrc::kResolve) << r.error().detail;
  EXPECT_LT(Seconds(start), 10.0);
}

TEST_F(FetcherTest, ShutdownAbortsRunningTransfer) {
  origin_.Set("/stall",
              testing::Behavior{.body = testing::PatternBytes(256 * 1024), .stall_ms = 30'000});
  HttpClient& client = Client();
  RecordingSink sink;
  std::expected<HttpOutcome, HttpFailure> result = std::unexpected(HttpFailure{});
  std::thread t([&] { result = client.Perform(HttpRequest{origin_.url() + "/stall"}, sink); });
  auto deadline = Clock::now() + 5s;
  while (sink.bytes.load() == 0 && Clock::now() < deadline) std::this_thread::sleep_for(10ms);
  ASSERT_GT(sink.bytes.load(), 0u) << "transfer never started";

  auto start = Clock::now();
  client.Shutdown();
  t.join();
  EXPECT_LT(Seconds(start), 3.0);
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().errc, FetchErrc::kAborted) << result.error().detail;

  // Later requests fail at once without reaching the origin.
  int before = origin_.TotalCount();
  origin_.SetFile("/after", "x");
  RecordingSink sink2;
  auto again = client.Perform(HttpRequest{origin_.url() + "/after"}, sink2);
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().errc, FetchErrc::kAborted);
  EXPECT_EQ(origin_.TotalCount(), before);
}

TEST_F(FetcherTest, SinkRefusingHeadStopsTransfer) {
  origin_.SetFile("/big", testing::PatternBytes(1 << 20));
  RecordingSink sink;
  sink.accept_head = false;
  auto r = Get("/big", sink);
  ASSERT_TRUE(r.has_value()) << r.error().detail;
  EXPECT_TRUE(r->aborted_by_sink);
  EXPECT_EQ(r->head.status, 200);
  EXPECT_TRUE(sink.body.empty());
  EXPECT_EQ(origin_.Count("/big"), 1);
}

TEST_F(FetcherTest, SinkStoppingBodyStopsTransfer) {
  origin_.SetFile("/big", testing::PatternBytes(4 << 20));
  RecordingSink sink;
  sink.stop_after = 1;
  auto r = Get("/big", sink);
  ASSERT_TRUE(r.has_value()) << r.error().detail;
  EXPECT_TRUE(r->aborted_by_sink);
  EXPECT_LT(sink.body.size(), 4u << 20);
  EXPECT_EQ(origin_.Count("/big"), 1);
}

TEST_F(FetcherTest, ManyRequestsOnOneClient) {
  HttpClient& client = Client();
  for (int i = 0; i < 8; ++i)
    origin_.SetFile("/f" + std::to_string(i), testing::PatternBytes(10'000, i));
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int n = 0; n < 20; ++n) {
        RecordingSink sink;
        int i = (t + n) % 8;
        auto r = client.Perform(HttpRequest{origin_.url() + "/f" + std::to_string(i)}, sink);
        if (!r || r->head.status != 200 || sink.body != testing::PatternBytes(10'000, i)) bad++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(origin_.TotalCount(), 160);
}

}  // namespace
}  // namespace originfs
