#include "core/config/rules.h"

#include <sys/stat.h>

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/temp_dir.h"

namespace originfs {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;

constexpr std::string_view kFiveRules = R"(# a realistic rules file
[[rule]]
prefix = "img/2024/"
origin = "https://img.example.com/base/"
writeback = false
dirs = "virtual"

[[rule]]
prefix = "img/"
origin = "http://img-old.example.com:8080"
dirs = "no-ext"

[[rule]]
prefix = "docs/"
origin = "https://docs.example.com/v1"

[[rule]]
prefix = "a/b/"
origin = "http://127.0.0.1:9000/"
writeback = true
dirs = "probe"

[[rule]]
prefix = ""
origin = "https://fallback.example.com"
)";

// Parses text that must be refused and returns the message.
std::string RefusalOf(std::string_view text) {
  auto r = RuleSet::Parse(text, "rules.toml");
  EXPECT_FALSE(r.has_value()) << "accepted:\n" << text;
  if (r) return "";
  EXPECT_EQ(r.error().code, EINVAL);
  return r.error().message;
}

std::vector<std::string> Prefixes(const std::vector<const Rule*>& rules) {
  std::vector<std::string> out;
  for (const Rule* r : rules) out.push_back(r->prefix);
  return out;
}

RuleSet MustParse(std::string_view text) {
  auto r = RuleSet::Parse(text, "rules.toml");
  EXPECT_TRUE(r.has_value()) << r.error().message;
  return r ? *std::move(r) : RuleSet();
}

// A second, valid rule placed before the rule under test, so that messages
// must name rule #2 rather than whatever comes first.
std::string AfterGoodRule(std::string_view bad_rule) {
  return "[[rule]]\nprefix = \"ok/\"\norigin = \"http://ok.example.com\"\n\n[[rule]]\n" +
         std::string(bad_rule);
}

TEST(RuleSetParseTest, ParsesRulesInFileOrder) {
  RuleSet set = MustParse(kFiveRules);
  const auto& rules = set.rules();
  ASSERT_EQ(rules.size(), 5u);

  EXPECT_EQ(rules[0].prefix, "img/2024/");
  EXPECT_EQ(rules[0].origin, "https://img.example.com/base");
  EXPECT_FALSE(rules[0].writeback);
  EXPECT_EQ(rules[0].dirs, DirMode::kVirtual);

  EXPECT_EQ(rules[1].prefix, "img/");
  EXPECT_EQ(rules[1].origin, "http://img-old.example.com:8080");
  EXPECT_TRUE(rules[1].writeback);
  EXPECT_EQ(rules[1].dirs, DirMode::kNoExt);

  EXPECT_EQ(rules[2].prefix, "docs/");
  EXPECT_EQ(rules[2].origin, "https://docs.example.com/v1");

  EXPECT_EQ(rules[3].prefix, "a/b/");
  EXPECT_EQ(rules[3].origin, "http://127.0.0.1:9000");
  EXPECT_TRUE(rules[3].writeback);
  EXPECT_EQ(rules[3].dirs, DirMode::kProbe);

  EXPECT_EQ(rules[4].prefix, "");
  EXPECT_EQ(rules[4].origin, "https://fallback.example.com");

  for (std::size_t i = 0; i < rules.size(); ++i) EXPECT_EQ(rules[i].index, i);
  EXPECT_FALSE(set.empty());
}

TEST(RuleSetParseTest, DefaultsAreWritebackAndProbe) {
  RuleSet set = MustParse("[[rule]]\norigin = \"http://example.com\"\n");
  ASSERT_EQ(set.rules().size(), 1u);
  const Rule& r = set.rules()[0];
  EXPECT_EQ(r.prefix, "");
  EXPECT_TRUE(r.writeback);
  EXPECT_EQ(r.dirs, DirMode::kProbe);
}

TEST(RuleSetParseTest, DescribeNamesOneBasedRuleAndPrefix) {
  RuleSet set = MustParse(kFiveRules);
  EXPECT_EQ(set.rules()[1].Describe(), "rule #2 (prefix \"img/\")");
}

TEST(RuleSetParseTest, FormatListsEveryRule) {
  RuleSet set = MustParse(kFiveRules);
  std::string text = set.Format();
  EXPECT_THAT(text, AllOf(HasSubstr("rule #1: prefix=\"img/2024/\""), HasSubstr("dirs=virtual"),
                          HasSubstr("rule #5: prefix=\"\" origin=https://fallback.example.com")));
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 5);
}

TEST(RuleSetParseTest, RefusesDuplicatePrefix) {
  std::string msg =
      RefusalOf(AfterGoodRule("prefix = \"ok/\"\norigin = \"http://other.example.com\"\n"));
  EXPECT_THAT(msg, AllOf(HasSubstr("rule #2"), HasSubstr("duplicate prefix"), HasSubstr("ok/")));
}

TEST(RuleSetParseTest, RefusesUnknownKey) {
  std::string msg = RefusalOf(
      AfterGoodRule("prefix = \"x/\"\norigin = \"http://x.example.com\"\ncolour = \"red\"\n"));
  EXPECT_THAT(msg, AllOf(HasSubstr("rule #2"), HasSubstr("unknown key \"colour\"")));
}

class BadOriginUrlTest : public ::testing::TestWithParam<std::string> {};

TEST_P(BadOriginUrlTest, RefusedAndRuleNamed) {
  std::string msg = RefusalOf(AfterGoodRule("prefix = \"x/\"\norigin = \"" + GetParam() + "\"\n"));
  EXPECT_THAT(msg, AllOf(HasSubstr("rule #2"), HasSubstr("origin")));
  EXPECT_FALSE(NormalizeOriginUrl(GetParam()).has_value());
}

INSTANTIATE_TEST_SUITE_P(Urls, BadOriginUrlTest,
                         ::testing::Values("gopher://files.example.com", "http://", "http:///path",
                                           "https://example.com/a?b=1", "http://example.com/a b",
                                           "http://example.com/#frag", "example.com",
                                           "file:///etc/passwd", "http://user@example.com"));

TEST(RuleSetParseTest, RefusesWritebackThatIsNotBoolean) {
  std::string msg = RefusalOf(
      AfterGoodRule("prefix = \"x/\"\norigin = \"http://x.example.com\"\nwriteback = \"yes\"\n"));
  EXPECT_THAT(msg, AllOf(HasSubstr("rule #2"), HasSubstr("writeback")));
}

TEST(RuleSetParseTest, RefusesPrefixThatIsNotString) {
  std::string msg = RefusalOf(AfterGoodRule("prefix = 3\norigin = \"http://x.example.com\"\n"));
  EXPECT_THAT(msg, AllOf(HasSubstr("rule #2"), HasSubstr("prefix must be a string")));
}

TEST(RuleSetParseTest, RefusesOriginThatIsNotString) {
  std::string msg = RefusalOf(AfterGoodRule("prefix = \"x/\"\norigin = 80\n"));
  EXPECT_THAT(msg, AllOf(HasSubstr("rule #2"), HasSubstr("origin must be a string")));
}

TEST(RuleSetParseTest, RefusesUnknownDirMode) {
  std::string msg = RefusalOf(
      AfterGoodRule("prefix = \"x/\"\norigin = \"http://x.example.com\"\ndirs = \"sometimes\"\n"));
  EXPECT_THAT(msg, AllOf(HasSubstr("rule #2"), HasSubstr("dirs"), HasSubstr("sometimes")));
}

TEST(RuleSetParseTest, RefusesPrefixWithLeadingSlash) {
  std::string msg =
      RefusalOf(AfterGoodRule("prefix = \"/x/\"\norigin = \"http://x.example.com\"\n"));
  EXPECT_THAT(msg, HasSubstr("rule #2"));
}

TEST(RuleSetParseTest, RefusesMissingOrigin) {
  std::string msg = RefusalOf(AfterGoodRule("prefix = \"x/\"\nwriteback = false\n"));
  EXPECT_THAT(msg, AllOf(HasSubstr("rule #2"), HasSubstr("origin is missing")));
}

TEST(RuleSetParseTest, RefusesDocumentWithoutRules) {
  EXPECT_THAT(RefusalOf(""), HasSubstr("no [[rule]]"));
  EXPECT_THAT(RefusalOf("# only a comment\n"), HasSubstr("no [[rule]]"));
  EXPECT_THAT(RefusalOf("rule = []\n"), HasSubstr("no [[rule]]"));
}

TEST(RuleSetParseTest, RefusesRuleThatIsNotArrayOfTables) {
  EXPECT_THAT(RefusalOf("rule = \"http://x.example.com\"\n"), HasSubstr("[[rule]]"));
  EXPECT_THAT(RefusalOf("rule = [1, 2]\n"), HasSubstr("rule #1"));
}

TEST(RuleSetParseTest, RefusesUnknownTopLevelKey) {
  std::string msg = RefusalOf("cache_size = 10\n[[rule]]\norigin = \"http://x.example.com\"\n");
  EXPECT_THAT(msg, AllOf(HasSubstr("unknown top-level key"), HasSubstr("cache_size")));
}

TEST(RuleSetParseTest, SyntaxErrorNamesSourceAndLine) {
  std::string msg = RefusalOf(
      "[[rule]]\n"
      "prefix = \"a/\"\n"
      "origin = \"http://a.example.com\"\n"
      "writeback = = true\n");
  EXPECT_THAT(msg, StartsWith("rules.toml:4:"));
}

TEST(RuleSetParseTest, LoadReadsFileAndReportsMissingFile) {
  testing::TempDir dir;
  std::string path = dir.Join("rules.toml");
  testing::WriteFile(path, kFiveRules);
  auto set = RuleSet::Load(path);
  ASSERT_TRUE(set.has_value()) << set.error().message;
  EXPECT_EQ(set->rules().size(), 5u);

  auto missing = RuleSet::Load(dir.Join("nope.toml"));
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, ENOENT);
  EXPECT_THAT(missing.error().message, HasSubstr("nope.toml"));
}

TEST(RuleSetParseTest, OriginsListIsFailoverOrder) {
  RuleSet set = MustParse(R"(
[[rule]]
origins = ["https://a.example.com/", "http://b.example.com:81/x"]
)");
  const Rule& r = set.rules()[0];
  EXPECT_THAT(r.origins, ElementsAre("https://a.example.com", "http://b.example.com:81/x"));
  EXPECT_EQ(r.origin, "https://a.example.com");
}

TEST(RuleSetParseTest, RefusesBadOriginsLists) {
  EXPECT_THAT(RefusalOf(AfterGoodRule("prefix = \"x/\"\norigins = []\n")), HasSubstr("rule #2"));
  EXPECT_THAT(RefusalOf(AfterGoodRule("prefix = \"x/\"\norigins = [\"http://a\", \"ftp://b\"]\n")),
              AllOf(HasSubstr("rule #2"), HasSubstr("ftp://b")));
  EXPECT_THAT(RefusalOf(AfterGoodRule("prefix = \"x/\"\norigins = [\"http://a\", 3]\n")),
              HasSubstr("rule #2"));
  EXPECT_THAT(RefusalOf(AfterGoodRule(
                  "prefix = \"x/\"\norigin = \"http://a\"\norigins = [\"http://b\"]\n")),
              AllOf(HasSubstr("rule #2"), HasSubstr("not both")));
}

TEST(RuleSetParseTest, SuffixNarrowsMatchAndDistinguishesDuplicates) {
  RuleSet set = MustParse(R"(
[[rule]]
prefix = "img/"
suffix = ".jpg"
origin = "http://jpg.example.com"
[[rule]]
prefix = "img/"
origin = "http://img.example.com"
)");
  EXPECT_THAT(Prefixes(set.Match("img/a.jpg")), ElementsAre("img/", "img/"));
  EXPECT_EQ(set.Match("img/a.jpg")[0]->suffix, ".jpg");
  EXPECT_THAT(Prefixes(set.Match("img/a.png")), ElementsAre("img/"));
  EXPECT_EQ(set.Match("img/a.png")[0]->origin, "http://img.example.com");
  // Prefix and suffix must not overlap in the key.
  RuleSet overlap =
      MustParse("[[rule]]\nprefix = \"ab\"\nsuffix = \"bc\"\norigin = \"http://o\"\n");
  EXPECT_THAT(overlap.Match("abc"), IsEmpty());
  EXPECT_THAT(Prefixes(overlap.Match("abbc")), ElementsAre("ab"));

  std::string msg = RefusalOf(
      "[[rule]]\nprefix = \"img/\"\nsuffix = \".jpg\"\norigin = \"http://a\"\n"
      "[[rule]]\nprefix = \"img/\"\nsuffix = \".jpg\"\norigin = \"http://b\"\n");
  EXPECT_THAT(msg, AllOf(HasSubstr("rule #2"), HasSubstr("duplicate")));
}

TEST(RuleSetParseTest, FallthroughOn) {
  RuleSet set = MustParse(R"(
[[rule]]
origin = "http://o"
fallthrough_on = [403, 404]
)");
  const Rule& r = set.rules()[0];
  EXPECT_TRUE(r.FallsThrough(403));
  EXPECT_TRUE(r.FallsThrough(404));
  EXPECT_FALSE(r.FallsThrough(410));
  EXPECT_FALSE(r.FallsThrough(500));

  RuleSet defaults = MustParse("[[rule]]\norigin = \"http://o\"\n");
  EXPECT_TRUE(defaults.rules()[0].FallsThrough(404));
  EXPECT_TRUE(defaults.rules()[0].FallsThrough(410));
  EXPECT_FALSE(defaults.rules()[0].FallsThrough(403));

  EXPECT_THAT(
      RefusalOf(AfterGoodRule("prefix = \"x/\"\norigin = \"http://o\"\nfallthrough_on = [200]\n")),
      AllOf(HasSubstr("rule #2"), HasSubstr("fallthrough_on")));
  EXPECT_THAT(
      RefusalOf(AfterGoodRule("prefix = \"x/\"\norigin = \"http://o\"\nfallthrough_on = 404\n")),
      HasSubstr("rule #2"));
}

TEST(RuleSetParseTest, Soft404FieldsTakeOneValueOrAList) {
  RuleSet set = MustParse(R"(
[[rule]]
prefix = "a/"
origin = "http://o"
soft_404 = { content_type = "Text/HTML; charset=utf-8", size = [612, 615], etag = ['W/"5f3a-264"', "abc"] }

[[rule]]
prefix = "b/"
origin = "http://o"
soft_404 = { size = 0 }

[[rule]]
prefix = "c/"
origin = "http://o"
)");
  const auto& rules = set.rules();
  ASSERT_TRUE(rules[0].soft_404.has_value());
  EXPECT_THAT(rules[0].soft_404->content_types, ElementsAre("text/html"));
  EXPECT_THAT(rules[0].soft_404->sizes, ElementsAre(612u, 615u));
  EXPECT_THAT(rules[0].soft_404->etags, ElementsAre("5f3a-264", "abc"));
  ASSERT_TRUE(rules[1].soft_404.has_value());
  EXPECT_THAT(rules[1].soft_404->sizes, ElementsAre(0u));
  EXPECT_TRUE(rules[1].soft_404->content_types.empty());
  EXPECT_FALSE(rules[2].soft_404.has_value()) << "no soft_404 unless asked for";

  std::string listing = set.Format();
  EXPECT_THAT(listing, HasSubstr("soft_404={content_type=[text/html] size=[612, 615] "
                                 "etag=[5f3a-264, abc]}"));
  EXPECT_THAT(listing, HasSubstr("soft_404={size=[0]}"));
}

TEST(RuleSetParseTest, Soft404MatchesWhenEveryGivenFieldMatches) {
  Soft404 page{.content_types = {"text/html"}, .sizes = {612}};
  EXPECT_TRUE(page.Matches("text/html", 612, ""));
  EXPECT_TRUE(page.Matches("TEXT/html ; charset=UTF-8", 612, "\"x\""));
  EXPECT_FALSE(page.Matches("text/html", 613, "")) << "a real HTML file of another size";
  EXPECT_FALSE(page.Matches("text/html", std::nullopt, "")) << "no Content-Length: cannot tell";
  EXPECT_FALSE(page.Matches("application/octet-stream", 612, ""));
  EXPECT_FALSE(page.Matches("", 612, ""));

  Soft404 by_etag{.etags = {"5f3a-264"}};
  EXPECT_TRUE(by_etag.Matches("text/plain", 1, "\"5f3a-264\""));
  EXPECT_TRUE(by_etag.Matches("", std::nullopt, "W/\"5f3a-264\""));
  EXPECT_FALSE(by_etag.Matches("", std::nullopt, "\"5f3a-265\""));
  EXPECT_FALSE(by_etag.Matches("", std::nullopt, ""));

  EXPECT_FALSE(Soft404{}.Matches("text/html", 0, "")) << "an empty soft_404 matches nothing";
}

TEST(RuleSetParseTest, RefusesBadSoft404) {
  auto refused = [](std::string_view value) {
    return RefusalOf(AfterGoodRule(
        "prefix = \"x/\"\norigin = \"http://o\"\nsoft_404 = " + std::string(value) + "\n"));
  };
  for (std::string_view bad : {"\"text/html\"", "{}", "[\"text/html\"]", "true"}) {
    EXPECT_THAT(refused(bad), AllOf(HasSubstr("rule #2"), HasSubstr("soft_404 must be a table")))
        << bad;
  }
  EXPECT_THAT(refused("{ content_typ = \"text/html\" }"),
              AllOf(HasSubstr("rule #2"), HasSubstr("unknown key \"soft_404.content_typ\"")));
  EXPECT_THAT(refused("{ content_type = \"html\" }"),
              AllOf(HasSubstr("rule #2"), HasSubstr("not a media type")));
  EXPECT_THAT(refused("{ content_type = 5 }"),
              AllOf(HasSubstr("rule #2"), HasSubstr("soft_404.content_type must be a media type")));
  EXPECT_THAT(refused("{ size = -1 }"),
              AllOf(HasSubstr("rule #2"), HasSubstr("soft_404.size must not be negative")));
  EXPECT_THAT(refused("{ size = \"612\" }"),
              AllOf(HasSubstr("rule #2"), HasSubstr("soft_404.size must be a size in bytes")));
  EXPECT_THAT(refused("{ size = [] }"),
              AllOf(HasSubstr("rule #2"), HasSubstr("soft_404.size must not be an empty array")));
  EXPECT_THAT(refused("{ etag = '\"\"' }"),
              AllOf(HasSubstr("rule #2"), HasSubstr("soft_404.etag must not be empty")));
  EXPECT_THAT(refused("{ etag = [1] }"),
              AllOf(HasSubstr("rule #2"), HasSubstr("soft_404.etag must be an ETag string")));
}

TEST(RuleSetParseTest, ReplaceAndStripPrefixMapOriginPath) {
  RuleSet set = MustParse(R"(
[[rule]]
prefix = "img/"
origin = "http://o"
replace_prefix = "static/images/"
[[rule]]
prefix = "raw/"
origin = "http://o"
strip_prefix = true
[[rule]]
prefix = "same/"
origin = "http://o"
)");
  EXPECT_EQ(set.rules()[0].OriginPath("img/a/b.png"), "static/images/a/b.png");
  EXPECT_EQ(set.rules()[1].OriginPath("raw/c.txt"), "c.txt");
  EXPECT_EQ(set.rules()[2].OriginPath("same/d"), "same/d");
  EXPECT_THAT(RefusalOf(AfterGoodRule(
                  "prefix = \"x/\"\norigin = \"http://o\"\nreplace_prefix = \"/abs/\"\n")),
              HasSubstr("rule #2"));
}

TEST(RuleSetParseTest, RefusesHeaderInjection) {
  EXPECT_THAT(RefusalOf(AfterGoodRule("prefix = \"x/\"\norigin = \"http://o\"\nheaders = { \"X-A\" "
                                      "= \"a\\r\\nHost: evil\" }\n")),
              HasSubstr("rule #2"));
  EXPECT_THAT(RefusalOf(AfterGoodRule(
                  "prefix = \"x/\"\norigin = \"http://o\"\nheaders = { \"Bad Name\" = \"v\" }\n")),
              HasSubstr("rule #2"));
}

TEST(RuleSetParseTest, LoadRefusesCredentialsReadableByOthers) {
  testing::TempDir dir;
  std::string path = dir.Join("rules.toml");
  testing::WriteFile(
      path, "[[rule]]\norigin = \"http://o\"\nheaders = { Authorization = \"Bearer s3cret\" }\n");
  ASSERT_EQ(chmod(path.c_str(), 0644), 0);
  auto open = RuleSet::Load(path);
  ASSERT_FALSE(open.has_value());
  EXPECT_EQ(open.error().code, EACCES);
  EXPECT_THAT(open.error().message, Not(HasSubstr("s3cret")));

  ASSERT_EQ(chmod(path.c_str(), 0600), 0);
  auto ok = RuleSet::Load(path);
  ASSERT_TRUE(ok.has_value()) << ok.error().message;
  EXPECT_THAT(ok->rules()[0].headers,
              ElementsAre(std::pair<std::string, std::string>("Authorization", "Bearer s3cret")));
  // Credentials never show up in the listing.
  EXPECT_THAT(ok->Format(), Not(HasSubstr("s3cret")));
}

TEST(RuleSetMatchTest, CandidatesInFileOrderNotLongestFirst) {
  RuleSet set = MustParse(R"(
[[rule]]
prefix = ""
origin = "http://all.example.com"
[[rule]]
prefix = "a/"
origin = "http://a.example.com"
[[rule]]
prefix = "a/b/"
origin = "http://ab.example.com"
)");
  EXPECT_THAT(Prefixes(set.Match("a/b/c")), ElementsAre("", "a/", "a/b/"));
  EXPECT_THAT(Prefixes(set.Match("a/x")), ElementsAre("", "a/"));
  EXPECT_THAT(Prefixes(set.Match("z")), ElementsAre(""));
}

TEST(RuleSetMatchTest, SpecificRulesFirstThenFallThrough) {
  RuleSet set = MustParse(kFiveRules);
  EXPECT_THAT(Prefixes(set.Match("img/2024/cat.jpg")), ElementsAre("img/2024/", "img/", ""));
  EXPECT_THAT(Prefixes(set.Match("img/2023/cat.jpg")), ElementsAre("img/", ""));
  EXPECT_THAT(Prefixes(set.Match("a/b/c")), ElementsAre("a/b/", ""));
  EXPECT_THAT(Prefixes(set.Match("a/bc")), ElementsAre(""));
  EXPECT_THAT(Prefixes(set.Match("docs")), ElementsAre(""));
}

TEST(RuleSetMatchTest, PrefixIsPlainStringPrefix) {
  RuleSet set = MustParse(R"(
[[rule]]
prefix = "img"
origin = "http://img.example.com"
)");
  EXPECT_THAT(Prefixes(set.Match("img")), ElementsAre("img"));
  EXPECT_THAT(Prefixes(set.Match("imgx/y")), ElementsAre("img"));
}

TEST(RuleSetMatchTest, NoMatchWithoutCatchAll) {
  RuleSet set = MustParse(R"(
[[rule]]
prefix = "img/"
origin = "http://img.example.com"
[[rule]]
prefix = "docs/"
origin = "http://docs.example.com"
)");
  EXPECT_THAT(set.Match("video/a.mp4"), IsEmpty());
  EXPECT_THAT(set.Match("img"), IsEmpty());  // the directory itself is not under the prefix
  EXPECT_THAT(set.Match(""), IsEmpty());
  EXPECT_THAT(set.Match("IMG/a.png"), IsEmpty());
}

TEST(RuleSetMatchTest, PrefixImpliesDirectory) {
  RuleSet set = MustParse(R"(
[[rule]]
prefix = "img/2024/"
origin = "http://img.example.com"
[[rule]]
prefix = "docs/"
origin = "http://docs.example.com"
)");
  EXPECT_TRUE(set.PrefixImpliesDirectory(""));
  EXPECT_TRUE(set.PrefixImpliesDirectory("img"));
  EXPECT_TRUE(set.PrefixImpliesDirectory("img/2024"));
  EXPECT_TRUE(set.PrefixImpliesDirectory("docs"));
  EXPECT_FALSE(set.PrefixImpliesDirectory("im"));
  EXPECT_FALSE(set.PrefixImpliesDirectory("img/20"));
  EXPECT_FALSE(set.PrefixImpliesDirectory("img/2024/x"));
  EXPECT_FALSE(set.PrefixImpliesDirectory("docs/readme"));
  EXPECT_FALSE(set.PrefixImpliesDirectory("video"));
}

TEST(RuleSetTest, SingleOriginIsOneCatchAllRule) {
  auto set = RuleSet::SingleOrigin("https://mirror.example.com:8443/pub/");
  ASSERT_TRUE(set.has_value()) << set.error().message;
  ASSERT_EQ(set->rules().size(), 1u);
  const Rule& r = set->rules()[0];
  EXPECT_EQ(r.prefix, "");
  EXPECT_EQ(r.origin, "https://mirror.example.com:8443/pub");
  EXPECT_TRUE(r.writeback);
  EXPECT_EQ(r.dirs, DirMode::kProbe);
  EXPECT_EQ(r.index, 0u);
  EXPECT_THAT(Prefixes(set->Match("any/key")), ElementsAre(""));

  EXPECT_FALSE(RuleSet::SingleOrigin("gopher://mirror.example.com").has_value());
  EXPECT_FALSE(RuleSet::SingleOrigin("").has_value());
}

TEST(RuleSetTest, DefaultConstructedIsEmpty) {
  RuleSet set;
  EXPECT_TRUE(set.empty());
  EXPECT_THAT(set.Match("a"), IsEmpty());
}

TEST(NormalizeOriginUrlTest, StripsTrailingSlashes) {
  EXPECT_EQ(NormalizeOriginUrl("http://example.com/").value(), "http://example.com");
  EXPECT_EQ(NormalizeOriginUrl("https://example.com/base//").value(), "https://example.com/base");
  EXPECT_EQ(NormalizeOriginUrl("http://example.com").value(), "http://example.com");
  EXPECT_EQ(NormalizeOriginUrl("http://127.0.0.1:8080/a/b").value(), "http://127.0.0.1:8080/a/b");
}

TEST(NormalizeOriginUrlTest, RefusesControlAndNonAsciiBytes) {
  EXPECT_FALSE(NormalizeOriginUrl("http://example.com/\x01").has_value());
  EXPECT_FALSE(NormalizeOriginUrl("http://example.com/caf\xc3\xa9").has_value());
  EXPECT_FALSE(NormalizeOriginUrl("http://example.com/a\r\nHost: evil").has_value());
}

// ---- type = "s3" ---------------------------------------------------------------

TEST(S3RulesTest, BucketGoesIntoThePathOrTheHost) {
  auto path = RuleSet::Parse(R"([[rule]]
type = "s3"
origin = "https://s3.example.com"
bucket = "old-site"
region = "eu-west-1"
)",
                             "t");
  ASSERT_TRUE(path.has_value()) << path.error().message;
  const Rule& r = path->rules()[0];
  EXPECT_EQ(r.type, OriginType::kS3);
  EXPECT_EQ(r.origin, "https://s3.example.com/old-site");
  EXPECT_EQ(r.region, "eu-west-1");
  EXPECT_EQ(r.verify, Verify::kS3Etag) << "single-part ETags are verified by default";
  auto vhost = RuleSet::Parse(R"([[rule]]
type = "s3"
origins = ["https://s3.example.com", "https://s3-backup.example.com:9000"]
bucket = "old-site"
virtual_host = true
verify = "none"
)",
                              "t");
  ASSERT_TRUE(vhost.has_value()) << vhost.error().message;
  EXPECT_THAT(vhost->rules()[0].origins,
              ElementsAre("https://old-site.s3.example.com",
                          "https://old-site.s3-backup.example.com:9000"));
  EXPECT_EQ(vhost->rules()[0].verify, Verify::kNone);
}

TEST(S3RulesTest, S3KeysOutsideAnS3RuleOrWithoutABucketAreRefused) {
  auto http = RuleSet::Parse("[[rule]]\norigin = \"http://o\"\nbucket = \"b\"\n", "t");
  ASSERT_FALSE(http.has_value());
  EXPECT_THAT(http.error().message, HasSubstr("type = \"s3\""));
  auto vhost =
      RuleSet::Parse("[[rule]]\ntype = \"s3\"\norigin = \"http://o\"\nvirtual_host = true\n", "t");
  ASSERT_FALSE(vhost.has_value());
  EXPECT_THAT(vhost.error().message, HasSubstr("needs bucket"));
  auto type = RuleSet::Parse("[[rule]]\ntype = \"ftp\"\norigin = \"http://o\"\n", "t");
  ASSERT_FALSE(type.has_value());
  EXPECT_THAT(type.error().message, HasSubstr("\"http\" or \"s3\""));
}

TEST(S3RulesTest, CredentialsComeFromTheFilesProfileWhichOthersMayNotRead) {
  testing::TempDir dir;
  std::string creds = dir.Join("credentials");
  testing::WriteFile(creds,
                     "# shared credentials\n[default]\naws_access_key_id = AKDEFAULT\n"
                     "aws_secret_access_key = s3cr3t/default\n\n[profile migration]\n"
                     "aws_access_key_id=AKMIGRATE\naws_secret_access_key=s3cr3t+mig\n"
                     "aws_session_token = tok\n");
  ASSERT_EQ(chmod(creds.c_str(), 0600), 0);
  std::string rules =
      "[[rule]]\ntype = \"s3\"\norigin = \"http://127.0.0.1:9/b\"\n"
      "credentials_file = \"" +
      creds + "\"\nprofile = \"migration\"\n";
  auto set = RuleSet::Parse(rules, "t");
  ASSERT_TRUE(set.has_value()) << set.error().message;
  ASSERT_TRUE(set->rules()[0].credentials.has_value());
  const S3Credentials& c = *set->rules()[0].credentials;
  EXPECT_EQ(c.access_key, "AKMIGRATE");
  EXPECT_EQ(c.secret_key, "s3cr3t+mig");
  EXPECT_EQ(c.session_token, "tok");
  std::string shown = set->Format();
  EXPECT_THAT(shown, HasSubstr(creds + " [migration]"));
  EXPECT_THAT(shown, Not(HasSubstr("s3cr3t"))) << "a secret was shown";

  auto none =
      RuleSet::Parse("[[rule]]\ntype = \"s3\"\norigin = \"http://o/b\"\ncredentials_file = \"" +
                         creds + "\"\nprofile = \"nobody\"\n",
                     "t");
  ASSERT_FALSE(none.has_value());
  EXPECT_THAT(none.error().message, HasSubstr("no profile [nobody]"));

  ASSERT_EQ(chmod(creds.c_str(), 0644), 0);
  auto open = RuleSet::Parse(rules, "t");
  ASSERT_FALSE(open.has_value());
  EXPECT_EQ(open.error().code, EACCES);
  EXPECT_THAT(open.error().message, HasSubstr("chmod 600"));
  EXPECT_THAT(open.error().message, Not(HasSubstr("s3cr3t")));
}

}  // namespace
}  // namespace originfs
