// Failover between a rule's origins, fall-through between rules, checksums,
// per-rule limits and soft 404 pages.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <latch>
#include <thread>

#include "tests/unit/mirror/mirror_fixture.h"

namespace originfs::mirror_test {
namespace {

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
  EXPECT_EQ(head->kind, OriginKind::kNotFound);
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

// type = "s3" verifies single-part ETags by default and passes multipart ones.
TEST_F(MirrorFakeTest, S3RulesVerifySinglePartEtagsByDefault) {
  MakeMirror(R"(
[[rule]]
type = "s3"
origin = "http://s3/bucket"
)");
  http_.Set("http://s3/bucket/good",
            Canned{.body = "hello world", .etag = std::string("\"") + kHelloMd5Hex + "\""});
  http_.Set("http://s3/bucket/bad",
            Canned{.body = "hello worlD", .etag = std::string("\"") + kHelloMd5Hex + "\""});
  http_.Set("http://s3/bucket/multipart",
            Canned{.body = "hello worlD", .etag = "\"5eb63bbbe01eeed093cb22bb8f5acdc3-2\""});
  for (const char* key : {"good", "multipart"}) {
    ASSERT_TRUE(AwaitDone(*mirror_->Start(key)).has_value()) << key;
    EXPECT_TRUE(BucketFile(key).has_value()) << key;
  }
  auto bad = AwaitDone(*mirror_->Start("bad"));
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().code, EIO);
  EXPECT_EQ(BucketFile("bad"), std::nullopt);
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
}  // namespace originfs::mirror_test

namespace originfs::mirror_test {
namespace {

// A failing S3 listing is asked for once per retry period by lookups, not by
// each of them; a readdir (ListDir) asks again and gets the failure.
TEST_F(MirrorFakeTest, FailingS3ListingIsNotAskedForByEveryLookup) {
  MakeMirror(R"(
[[rule]]
type = "s3"
origin = "http://s3/b"
)");
  const std::string list = "http://s3/b/?delimiter=%2F&list-type=2&prefix=d%2F";
  http_.Set(list, Canned{.status = 403, .body = "<Error><Code>AccessDenied</Code></Error>"});
  EXPECT_EQ(mirror_->FreshListing("d"), nullptr);
  EXPECT_EQ(mirror_->FreshListing("d"), nullptr);
  EXPECT_EQ(http_.Calls(list), 1);
  auto listed = mirror_->ListDir("d");
  ASSERT_FALSE(listed.has_value());
  EXPECT_EQ(listed.error().code, EIO);
  EXPECT_EQ(http_.Calls(list), 2);
}

}  // namespace
}  // namespace originfs::mirror_test
