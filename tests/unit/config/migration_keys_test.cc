// The rule keys of a migration's life: revalidate, absent_ttl, state.
#include <string>
#include <string_view>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/config/rule_text.h"
#include "core/config/rules.h"

namespace originfs {
namespace {

using ::testing::HasSubstr;

Result<RuleSet> One(std::string_view extra) {
  return RuleSet::Parse("[[rule]]\nprefix = \"a/\"\norigin = \"http://o.example\"\n" +
                            std::string(extra) +
                            "\n[[rule]]\nprefix = \"\"\norigin = \"http://p.example\"\n",
                        "rules.toml");
}

TEST(DurationTest, NumbersWithOneUnit) {
  EXPECT_EQ(ParseDuration("k", "0s").value(), 0);
  EXPECT_EQ(ParseDuration("k", "45").value(), 45);
  EXPECT_EQ(ParseDuration("k", "15m").value(), 900);
  EXPECT_EQ(ParseDuration("k", "2h").value(), 7200);
  EXPECT_EQ(ParseDuration("k", "1d").value(), 86400);
  for (std::string_view bad :
       {"", "s", "1.5h", "-1s", "1 h", "1hm", "3w", "400d", "99999999999999s"})
    EXPECT_FALSE(ParseDuration("k", bad)) << bad;
  EXPECT_THAT(ParseDuration("revalidate", "soon").error().message, HasSubstr("revalidate"));
}

TEST(MigrationKeysTest, RevalidateAbsentTtlAndState) {
  auto r = One("revalidate = \"10m\"\nabsent_ttl = 60\nstate = \"active\"");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(r->rules()[0].revalidate, 600);
  EXPECT_EQ(r->rules()[0].absent_ttl, 60);
  EXPECT_FALSE(r->rules()[0].retired);
  EXPECT_TRUE(r->Revalidates());
  EXPECT_THAT(r->Format(), HasSubstr("absent_ttl=60 revalidate=600s"));
  EXPECT_FALSE(One("revalidate = 10"));
  EXPECT_FALSE(One("revalidate = \"ever\""));
  EXPECT_FALSE(One("absent_ttl = -1"));
  EXPECT_FALSE(One("state = \"done\""));
}

TEST(MigrationKeysTest, ARetiredRuleEndsTheMatchAndImpliesNoDirectories) {
  auto r = RuleSet::Parse(
      "[[rule]]\nprefix = \"a/b/\"\norigin = \"http://o.example\"\nstate = \"retired\"\n"
      "revalidate = \"0s\"\n[[rule]]\nprefix = \"a/\"\norigin = \"http://p.example\"\n",
      "rules.toml");
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_TRUE(r->Match("a/b/c.txt").empty()) << "a plain directory: no later rule either";
  EXPECT_EQ(r->Match("a/c.txt").size(), 1u);
  EXPECT_FALSE(r->Revalidates());
  EXPECT_TRUE(r->PrefixImpliesDirectory("a"));  // the active rule's
  EXPECT_THAT(r->Format(), HasSubstr("state=retired"));
}

}  // namespace
}  // namespace originfs
