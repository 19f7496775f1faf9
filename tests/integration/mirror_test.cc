// The Mirror end to end: real libcurl against in-process origins, a real
// bucket and LMDB index in temporary directories.
#include "core/mirror/mirror.h"

#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <latch>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/flight_wait.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_origin.h"

namespace originfs {
namespace {

using namespace std::chrono_literals;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Not;

using testing::AwaitDone;
using testing::AwaitHead;
using testing::Behavior;
using testing::TestOrigin;

constexpr char kLastModified[] = "Wed, 21 Oct 2015 07:28:00 GMT";
constexpr int64_t kMtime = 1445412480;

class MirrorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    bucket_ = tmp_.Join("bucket");
    ASSERT_EQ(mkdir(bucket_.c_str(), 0755), 0);
    auto store = BucketStore::Open(bucket_, StoreOptions{});
    ASSERT_TRUE(store.has_value()) << store.error().message;
    store_ = std::move(*store);
    auto index = OpenLmdbIndex(tmp_.Join("index"), IndexOptions{.map_size = 64ull << 20});
    ASSERT_TRUE(index.has_value()) << index.error().message;
    index_ = std::move(*index);
    HttpOptions http;
    http.connect_timeout_ms = 2000;
    http.low_speed_time_s = 5;
    http.retries = 2;
    http.retry_backoff_ms = 10;
    http_ = MakeCurlHttpClient(http);
  }

  void TearDown() override {
    mirror_.reset();
    http_.reset();
  }

  void MakeMirror(const std::string& rules_toml, MirrorOptions options = {}) {
    auto rules = RuleSet::Parse(rules_toml, "test-rules");
    ASSERT_TRUE(rules.has_value()) << rules.error().message;
    mirror_ = std::make_unique<Mirror>(std::move(*rules), *http_, *store_, *index_, options);
  }

  // One catch-all rule for origin_.
  void MakeSimpleMirror(std::string_view dirs = "probe", bool writeback = true) {
    MakeMirror("[[rule]]\norigin = \"" + origin_.url() + "\"\ndirs = \"" + std::string(dirs) +
               "\"\nwriteback = " + (writeback ? "true" : "false") + "\n");
  }

  std::optional<std::string> BucketFile(std::string_view key) const {
    return testing::ReadFile(bucket_ + "/" + std::string(key));
  }

  std::vector<std::string> BucketObjects() const {
    return testing::ListFilesRecursive(bucket_, BucketStore::kStateDirName);
  }

  std::vector<std::string> StagingLeftovers() const {
    return testing::ListDir(bucket_ + "/.originfs/staging");
  }

  // Origins first: they outlive the client's pooled connections.
  TestOrigin origin_;
  TestOrigin origin2_;
  testing::TempDir tmp_;
  std::string bucket_;
  std::unique_ptr<BucketStore> store_;
  std::unique_ptr<Index> index_;
  std::unique_ptr<HttpClient> http_;
  std::unique_ptr<Mirror> mirror_;
};

TEST_F(MirrorTest, FileLandsAtomicallyWithLastModifiedAsMtime) {
  MakeSimpleMirror();
  std::string body = testing::PatternBytes(512 * 1024);
  // The body pauses halfway, so the test can look at the bucket mid-transfer.
  origin_.Set("/pub/data.bin", Behavior{.body = body,
                                        .headers = {{"ETag", "\"e1\""}},
                                        .stall_ms = 300,
                                        .last_modified = kLastModified});
  auto flight = mirror_->Start("pub/data.bin");
  auto head = AwaitHead(*flight);
  ASSERT_TRUE(head.has_value()) << head.error().message;
  EXPECT_EQ(head->kind, OriginKind::kFile);
  EXPECT_EQ(head->size, body.size());
  EXPECT_EQ(head->mtime, kMtime);
  EXPECT_EQ(head->url, origin_.url() + "/pub/data.bin");
  // The origin stalls halfway: whatever is visible in the bucket now must be whole.
  auto during = BucketFile("pub/data.bin");
  EXPECT_TRUE(!during || *during == body)
      << "partial object visible: " << during->size() << " bytes";

  auto done = AwaitDone(*flight);
  ASSERT_TRUE(done.has_value()) << done.error().message;
  EXPECT_TRUE(done->in_bucket);
  EXPECT_EQ(BucketFile("pub/data.bin"), body);
  struct stat st;
  ASSERT_EQ(stat((bucket_ + "/pub/data.bin").c_str(), &st), 0);
  EXPECT_EQ(st.st_mtim.tv_sec, kMtime);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  EXPECT_THAT(StagingLeftovers(), IsEmpty());
  EXPECT_EQ(origin_.GetCount("/pub/data.bin"), 1);

  auto rec = index_->Get("pub/data.bin");
  ASSERT_TRUE(rec.has_value() && rec->has_value());
  EXPECT_EQ((*rec)->url, origin_.url() + "/pub/data.bin");
  EXPECT_EQ((*rec)->etag, "\"e1\"");
  EXPECT_EQ((*rec)->last_modified, kLastModified);
  EXPECT_EQ((*rec)->size, body.size());
}

TEST_F(MirrorTest, LargeObjectLandsIntact) {
  MakeSimpleMirror();
  std::string body = testing::PatternBytes(8 << 20, 5);
  origin_.SetFile("/big.bin", body);
  auto done = AwaitDone(*mirror_->Start("big.bin"));
  ASSERT_TRUE(done.has_value()) << done.error().message;
  EXPECT_EQ(done->size, body.size());
  EXPECT_TRUE(BucketFile("big.bin") == body);
}

TEST_F(MirrorTest, ConcurrentStartsOfOneKeyMakeOneRequest) {
  MakeSimpleMirror();
  std::string body = testing::PatternBytes(256 * 1024, 11);
  origin_.Set("/hot/object.bin", Behavior{.body = body, .delay_ms = 300});

  constexpr int kThreads = 64;
  std::latch go(1);
  std::vector<std::optional<std::string>> seen(kThreads);
  std::vector<int> errors(kThreads, 0);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      go.wait();
      auto flight = mirror_->Start("hot/object.bin");
      auto done = AwaitDone(*flight);
      if (!done) {
        errors[i] = done.error().code;
        return;
      }
      seen[i] = BucketFile("hot/object.bin");
    });
  }
  go.count_down();
  for (auto& t : threads) t.join();

  EXPECT_EQ(origin_.GetCount("/hot/object.bin"), 1);
  EXPECT_EQ(origin_.TotalCount(), 1);
  for (int i = 0; i < kThreads; ++i) {
    EXPECT_EQ(errors[i], 0) << i;
    EXPECT_TRUE(seen[i] == body) << "thread " << i << " saw different bytes";
  }
}

TEST_F(MirrorTest, HundredDistinctKeysConcurrently) {
  MakeSimpleMirror();
  constexpr int kKeys = 100;
  auto key = [](int i) {
    return "many/" + std::to_string(i / 10) + "/k" + std::to_string(i) + ".bin";
  };
  auto body = [](int i) { return testing::PatternBytes(1000 + 997 * i, i); };
  for (int i = 0; i < kKeys; ++i) origin_.SetFile("/" + key(i), body(i));

  std::vector<std::shared_ptr<Flight>> flights(kKeys);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < kKeys; i += 4) flights[i] = mirror_->Start(key(i));
    });
  }
  for (auto& th : threads) th.join();
  for (int i = 0; i < kKeys; ++i) {
    auto done = AwaitDone(*flights[i]);
    ASSERT_TRUE(done.has_value()) << key(i) << ": " << done.error().message;
  }
  for (int i = 0; i < kKeys; ++i) {
    EXPECT_TRUE(BucketFile(key(i)) == body(i)) << key(i);
    EXPECT_EQ(origin_.GetCount("/" + key(i)), 1) << key(i);
  }
  EXPECT_EQ(origin_.TotalCount(), kKeys);
  EXPECT_EQ(BucketObjects().size(), static_cast<std::size_t>(kKeys));
  EXPECT_EQ(index_->CountObjects().value(), static_cast<uint64_t>(kKeys));
  EXPECT_THAT(StagingLeftovers(), IsEmpty());
}

TEST_F(MirrorTest, NotFoundFallsThroughToSecondOrigin) {
  MakeMirror("[[rule]]\nprefix = \"pub/\"\norigin = \"" + origin_.url() +
             "\"\n[[rule]]\norigin = \"" + origin2_.url() + "/mirror\"\n");
  origin2_.SetFile("/mirror/pub/only-here.txt", "second origin");
  auto flight = mirror_->Start("pub/only-here.txt");
  auto head = AwaitHead(*flight);
  ASSERT_TRUE(head.has_value()) << head.error().message;
  EXPECT_EQ(head->kind, OriginKind::kFile);
  EXPECT_EQ(head->url, origin2_.url() + "/mirror/pub/only-here.txt");
  ASSERT_TRUE(AwaitDone(*flight).has_value());
  EXPECT_EQ(BucketFile("pub/only-here.txt"), "second origin");
  EXPECT_EQ(origin_.GetCount("/pub/only-here.txt"), 1);
  EXPECT_EQ(origin2_.GetCount("/mirror/pub/only-here.txt"), 1);
  auto rec = index_->Get("pub/only-here.txt");
  ASSERT_TRUE(rec.has_value() && rec->has_value());
  EXPECT_EQ((*rec)->rule, 1u);
}

TEST_F(MirrorTest, AllNotFoundIsEnoentAndRemembered) {
  MakeMirror("[[rule]]\nprefix = \"pub/\"\norigin = \"" + origin_.url() +
             "\"\n[[rule]]\norigin = \"" + origin2_.url() + "\"\n");
  auto flight = mirror_->Start("pub/nowhere.txt");
  auto head = AwaitHead(*flight);
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(head->kind, OriginKind::kNotFound);
  auto done = AwaitDone(*flight);
  ASSERT_FALSE(done.has_value());
  EXPECT_EQ(done.error().code, ENOENT);
  EXPECT_EQ(origin_.GetCount("/pub/nowhere.txt"), 1);
  EXPECT_EQ(origin2_.GetCount("/pub/nowhere.txt"), 1);

  int asked = origin_.TotalCount() + origin2_.TotalCount();
  auto again = AwaitDone(*mirror_->Start("pub/nowhere.txt"));
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code, ENOENT);
  EXPECT_EQ(origin_.TotalCount() + origin2_.TotalCount(), asked);
  EXPECT_THAT(BucketObjects(), IsEmpty());
}

struct FailureCase {
  std::string name;
  Behavior behavior;
};

class MirrorFailureTest : public MirrorTest, public ::testing::WithParamInterface<FailureCase> {};

TEST_P(MirrorFailureTest, FailureIsEioAndLeavesNothing) {
  MakeSimpleMirror();
  origin_.Set("/f/obj.bin", GetParam().behavior);
  auto flight = mirror_->Start("f/obj.bin");
  auto done = AwaitDone(*flight);
  ASSERT_FALSE(done.has_value());
  EXPECT_EQ(done.error().code, EIO) << done.error().message;
  EXPECT_THAT(BucketObjects(), IsEmpty());
  EXPECT_THAT(StagingLeftovers(), IsEmpty());
  EXPECT_EQ(index_->Get("f/obj.bin").value(), std::nullopt);
  EXPECT_FALSE(index_->IsNotFound("f/obj.bin", time(nullptr)).value());
  EXPECT_EQ(mirror_->stats().origin_errors.load(), 1u);
}

INSTANTIATE_TEST_SUITE_P(
    Faults, MirrorFailureTest,
    ::testing::Values(
        FailureCase{"TruncatedBody",
                    Behavior{.body = testing::PatternBytes(300'000), .truncate_after = 100'000}},
        FailureCase{"DroppedBeforeBody",
                    Behavior{.body = testing::PatternBytes(3'000), .truncate_after = 0}},
        FailureCase{"ChunkedEndsEarly", Behavior{.body = testing::PatternBytes(300'000),
                                                 .truncate_after = 50'000,
                                                 .chunked = true}},
        FailureCase{"ServerError", Behavior{.status = 500, .body = "internal error"}},
        FailureCase{"Forbidden", Behavior{.status = 403, .body = "no"}},
        FailureCase{"RedirectToFile", Behavior{.status = 302, .redirect_to = "file:///etc/passwd"}},
        FailureCase{"RedirectLoop", Behavior{.status = 302, .redirect_to = "/f/obj.bin"}}),
    [](const ::testing::TestParamInfo<FailureCase>& info) { return info.param.name; });

TEST_F(MirrorTest, NginxStyleDirectory) {
  origin_.SetNginxDirectories(true);
  origin_.SetFile("/site/docs/index.html", "<html>docs</html>");
  MakeSimpleMirror();

  auto head = AwaitHead(*mirror_->Start("site/docs"));
  ASSERT_TRUE(head.has_value()) << head.error().message;
  EXPECT_EQ(head->kind, OriginKind::kDirectory);
  EXPECT_THAT(origin_.Log(), Contains("GET /site/docs/"));

  auto file = AwaitDone(*mirror_->Start("site/docs/index.html"));
  ASSERT_TRUE(file.has_value()) << file.error().message;
  EXPECT_EQ(BucketFile("site/docs/index.html"), "<html>docs</html>");
  EXPECT_THAT(BucketObjects(), ElementsAre("site/docs/index.html"));
}

TEST_F(MirrorTest, NginxStyleDirectoryWithEncodedName) {
  origin_.SetNginxDirectories(true);
  origin_.SetFile("/my docs #1/a.txt", "a");
  MakeSimpleMirror();
  auto head = AwaitHead(*mirror_->Start("my docs #1"));
  ASSERT_TRUE(head.has_value()) << head.error().message;
  EXPECT_EQ(head->kind, OriginKind::kDirectory);
  EXPECT_THAT(origin_.Log(), Contains("GET /my docs #1/"));
}

TEST_F(MirrorTest, ObjectStoreDirectoryWithProbeIsNotFound) {
  origin_.SetFile("/bucket/dir/object.txt", "x");
  MakeSimpleMirror("probe");
  auto head = AwaitHead(*mirror_->Start("bucket/dir"));
  ASSERT_TRUE(head.has_value()) << head.error().message;
  EXPECT_EQ(head->kind, OriginKind::kNotFound);
  EXPECT_THAT(origin_.Log(), ElementsAre("GET /bucket/dir", "HEAD /bucket/dir/"));
}

TEST_F(MirrorTest, ObjectStoreDirectoryWithVirtualIsDirectory) {
  origin_.SetFile("/bucket/dir/object.txt", "x");
  MakeSimpleMirror("virtual");
  auto head = AwaitHead(*mirror_->Start("bucket/dir"));
  ASSERT_TRUE(head.has_value()) << head.error().message;
  EXPECT_EQ(head->kind, OriginKind::kDirectory);
  EXPECT_THAT(origin_.Log(), ElementsAre("GET /bucket/dir"));  // no probe needed
  EXPECT_THAT(BucketObjects(), IsEmpty());
}

TEST_F(MirrorTest, WritebackFalseServesUnlinkedCopy) {
  MakeSimpleMirror("probe", /*writeback=*/false);
  std::string body = testing::PatternBytes(100'000, 21);
  origin_.SetFile("/tmp/t.bin", body);
  auto done = AwaitDone(*mirror_->Start("tmp/t.bin"));
  ASSERT_TRUE(done.has_value()) << done.error().message;
  EXPECT_FALSE(done->in_bucket);
  ASSERT_NE(done->temp_file, nullptr);
  EXPECT_TRUE(testing::ReadFd(done->temp_file->get()) == body);
  EXPECT_THAT(BucketObjects(), IsEmpty());
  EXPECT_THAT(StagingLeftovers(), IsEmpty());
}

TEST_F(MirrorTest, ShutdownDuringStalledTransferIsPrompt) {
  MakeSimpleMirror();
  origin_.Set("/slow.bin", Behavior{.body = testing::PatternBytes(256 * 1024), .stall_ms = 30'000});
  auto flight = mirror_->Start("slow.bin");
  ASSERT_TRUE(AwaitHead(*flight).has_value());
  auto start = std::chrono::steady_clock::now();
  mirror_.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  auto done = AwaitDone(*flight, 1s);
  ASSERT_FALSE(done.has_value());
  EXPECT_EQ(done.error().code, EIO);
  EXPECT_THAT(BucketObjects(), IsEmpty());
  EXPECT_THAT(StagingLeftovers(), IsEmpty());
}

class MirrorKeyEncodingTest : public MirrorTest,
                              public ::testing::WithParamInterface<std::string> {};

TEST_P(MirrorKeyEncodingTest, KeyReachesOriginAsDecodedPath) {
  MakeSimpleMirror();
  const std::string& key = GetParam();
  std::string body = "content of " + key;
  origin_.SetFile("/" + key, body);
  auto done = AwaitDone(*mirror_->Start(key));
  ASSERT_TRUE(done.has_value()) << done.error().message;
  EXPECT_EQ(origin_.GetCount("/" + key), 1) << ::testing::PrintToString(origin_.Log());
  EXPECT_EQ(BucketFile(key), body);
}

INSTANTIATE_TEST_SUITE_P(Keys, MirrorKeyEncodingTest,
                         ::testing::Values("with space.txt", "dir with space/file name.txt",
                                           "100% sure.txt", "%41%20literal", "c#sharp/notes.md",
                                           "why?.txt", "q?a=1&b=2", "caf\xc3\xa9/na\xc3\xafve.txt",
                                           "\xe6\x97\xa5\xe6\x9c\xac/\xe3\x83\x95.txt",
                                           "a+b&c=d;e.txt", "tilde~/x_y-z.txt", "..hidden/.dot"));

}  // namespace
}  // namespace originfs
