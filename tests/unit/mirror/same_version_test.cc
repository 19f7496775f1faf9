// What pins a version of an object across two responses (a retry after a
// broken body continues, or stands for, the bytes readers already have).
#include <gtest/gtest.h>

#include "core/mirror/response_sink.h"

namespace originfs {
namespace {

HttpResponseHead Head(std::string etag, std::optional<int64_t> mtime, std::optional<int64_t> date,
                      uint64_t length = 100) {
  HttpResponseHead h;
  h.status = 200;
  h.content_length = length;
  h.etag = std::move(etag);
  if (mtime) {
    h.mtime = mtime;
    h.last_modified = "lm-" + std::to_string(*mtime);
  }
  h.date = date;
  return h;
}

TEST(SameVersionTest, AnOpaqueStrongEtagPins) {
  auto h = Head("\"v0.1\"", std::nullopt, std::nullopt);
  EXPECT_TRUE(SameVersion(h, h));
  EXPECT_FALSE(SameVersion(h, Head("\"v0.2\"", std::nullopt, std::nullopt)));
  EXPECT_FALSE(SameVersion(h, Head("\"v0.1\"", std::nullopt, std::nullopt, 101)));
}

TEST(SameVersionTest, MtimeSizeEtagsAndLastModifiedPinOnlyOnceOldEnough) {
  // nginx and Apache derive the ETag from mtime and size: a rewrite within the
  // same second with the same size keeps it.
  for (std::string etag :
       {"\"5f3c1a2b-64\"", "\"64-5f3c1a2b4c5d0\"", "\"1a-64-5f3c1a2b4c5d0\"", ""}) {
    auto fresh = Head(etag, 1000, 1001);
    EXPECT_FALSE(SameVersion(fresh, fresh)) << etag;
    auto old = Head(etag, 1000, 1000 + kPinnedAgeS);
    EXPECT_TRUE(SameVersion(old, old)) << etag;
    EXPECT_FALSE(SameVersion(old, Head(etag, 1003, 1004))) << etag;
  }
  auto weak = Head("W/\"abc\"", std::nullopt, std::nullopt);
  EXPECT_FALSE(SameVersion(weak, weak));
}

TEST(SameVersionTest, NothingPinsAResponseWithoutValidatorsOrLength) {
  auto none = Head("", std::nullopt, std::nullopt);
  EXPECT_FALSE(SameVersion(none, none));
  auto no_length = Head("\"v1\"", std::nullopt, std::nullopt);
  no_length.content_length.reset();
  EXPECT_FALSE(SameVersion(no_length, no_length));
}

// A landed copy's validators against a later change (refresh, revalidate).
TEST(SameVersionTest, ValidatorsMadeInTheSecondOfTheFetchDoNotPin) {
  const char* lm = "Thu, 01 Jan 2026 00:00:00 GMT";  // 1767225600
  EXPECT_TRUE(ValidatorsPinVersion("\"d41d8cd98f00b204e9800998ecf8427e\"", "", 0));
  EXPECT_FALSE(ValidatorsPinVersion("\"6956b900-39\"", lm, 1767225601)) << "nginx, same second";
  EXPECT_TRUE(ValidatorsPinVersion("\"6956b900-39\"", lm, 1767225602));
  EXPECT_FALSE(ValidatorsPinVersion("W/\"x\"", lm, 1767225600));
  EXPECT_FALSE(ValidatorsPinVersion("", "", 1767225602)) << "nothing to tell by";
}

}  // namespace
}  // namespace originfs
