#include "core/common/error.h"

#include <cerrno>
#include <cstring>
#include <set>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace originfs {
namespace {

using ::testing::HasSubstr;

constexpr FetchErrc kAllErrcs[] = {
    FetchErrc::kNotFound,        FetchErrc::kHttpStatus,
    FetchErrc::kTimeout,         FetchErrc::kConnect,
    FetchErrc::kResolve,         FetchErrc::kShortBody,
    FetchErrc::kRedirectRefused, FetchErrc::kTooManyRedirects,
    FetchErrc::kTooLarge,        FetchErrc::kTls,
    FetchErrc::kDigestMismatch,  FetchErrc::kLocalIo,
    FetchErrc::kNoSpace,         FetchErrc::kAborted,
    FetchErrc::kOther,
};

TEST(ToErrnoTest, NotFoundIsTheOnlyEnoent) {
  EXPECT_EQ(ToErrno(FetchErrc::kNotFound), ENOENT);
  for (FetchErrc e : kAllErrcs) {
    if (e == FetchErrc::kNotFound) continue;
    EXPECT_NE(ToErrno(e), ENOENT) << ToString(e);
  }
}

TEST(ToErrnoTest, NoSpaceIsEnospc) { EXPECT_EQ(ToErrno(FetchErrc::kNoSpace), ENOSPC); }

TEST(ToErrnoTest, EverythingElseIsEio) {
  for (FetchErrc e : kAllErrcs) {
    if (e == FetchErrc::kNotFound || e == FetchErrc::kNoSpace) continue;
    EXPECT_EQ(ToErrno(e), EIO) << ToString(e);
  }
}

TEST(ToStringTest, NonEmptyAndDistinct) {
  std::set<std::string> seen;
  for (FetchErrc e : kAllErrcs) {
    std::string s = ToString(e);
    EXPECT_FALSE(s.empty()) << static_cast<int>(e);
    EXPECT_NE(s, "unknown") << static_cast<int>(e);
    EXPECT_TRUE(seen.insert(s).second) << "duplicate text: " << s;
  }
}

TEST(FailTest, CarriesCodeAndMessage) {
  Result<int> r = Fail(ENOSPC, "bucket full");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ENOSPC);
  EXPECT_EQ(r.error().message, "bucket full");
}

TEST(FailErrnoTest, CapturesErrnoAndAppendsStrerror) {
  errno = ENOENT;
  Result<void> r = FailErrno("opening x");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, ENOENT);
  EXPECT_THAT(r.error().message, HasSubstr("opening x: "));
  EXPECT_THAT(r.error().message, HasSubstr(std::strerror(ENOENT)));
}

TEST(ErrorTest, DefaultCodeIsEio) { EXPECT_EQ(Error{}.code, EIO); }

}  // namespace
}  // namespace originfs
