#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/origin/http_client.h"

namespace originfs {
namespace {

using ::testing::Optional;

TEST(ParseHttpDateTest, AcceptsTheThreeFormats) {
  constexpr int64_t kSunNov6 = 784111777;
  EXPECT_THAT(ParseHttpDate("Sun, 06 Nov 1994 08:49:37 GMT"), Optional(kSunNov6));   // IMF-fixdate
  EXPECT_THAT(ParseHttpDate("Sunday, 06-Nov-94 08:49:37 GMT"), Optional(kSunNov6));  // RFC 850
  EXPECT_THAT(ParseHttpDate("Sun Nov  6 08:49:37 1994"), Optional(kSunNov6));        // asctime
  EXPECT_THAT(ParseHttpDate("Wed, 21 Oct 2015 07:28:00 GMT"), Optional(int64_t{1445412480}));
}

TEST(ParseHttpDateTest, RejectsGarbage) {
  EXPECT_EQ(ParseHttpDate(""), std::nullopt);
  EXPECT_EQ(ParseHttpDate("not a date"), std::nullopt);
}

}  // namespace
}  // namespace originfs
