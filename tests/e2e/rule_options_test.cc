// The back-source rule options that choose where a request goes, through
// real mounts against in-process origins: failover between origins
// (connection refused, 5xx, 404, cool-down), suffix matching,
// replace_prefix / strip_prefix, request headers, redirect limits, and
// `originfs check`.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/rule_options_fixture.h"

namespace originfs::e2e {
namespace {

TEST_F(RuleOptionsTest, FailoverWhenFirstOriginRefusesConnections) {
  ClosedPort a;
  ASSERT_GT(a.port(), 0);
  testing::TestOrigin b;
  const std::string body = PatternBytes(300 * 1024, 1);
  b.SetFile("/one.bin", body);
  b.SetFile("/two.bin", "second");
  ASSERT_NO_FATAL_FAILURE(
      MountToml("[[rule]]\nprefix = \"\"\norigins = [\"" + a.url() + "\", \"" + b.url() + "\"]\n"));

  ExpectServed("one.bin", body);
  EXPECT_TRUE(EventuallyExists(B("one.bin")));
  EXPECT_EQ(b.GetCount("/one.bin"), 1);
  ExpectServed("two.bin", "second");
  EXPECT_EQ(b.GetCount("/two.bin"), 1);
  // Where it came from is the origin that answered.
  char buf[512];
  ssize_t n = getxattr(M("one.bin").c_str(), "user.originfs.origin", buf, sizeof buf);
  ASSERT_GT(n, 0) << strerror(errno);
  EXPECT_EQ(std::string(buf, static_cast<std::size_t>(n)), b.url() + "/one.bin");
  // Unmount before the local origins go: their keep-alive connections would
  // hold up their destruction for seconds.
  ASSERT_NO_FATAL_FAILURE(Unmount());
}

TEST_F(RuleOptionsTest, FailoverOn5xxAndCoolDown) {
  testing::TestOrigin a, b;
  testing::Behavior unavailable;
  unavailable.status = 503;
  unavailable.body = "down for maintenance";
  for (const char* k : {"/k1.txt", "/k2.txt"}) a.Set(k, unavailable);
  b.SetFile("/k1.txt", "k1 from B");
  b.SetFile("/k2.txt", "k2 from B");
  a.SetFile("/k3.txt", "k3 from A");
  testing::Behavior b_down = unavailable;
  b.Set("/k3.txt", b_down);
  // retries = 0: one request per origin, so the counts are exact.
  ASSERT_NO_FATAL_FAILURE(MountToml("[[rule]]\nprefix = \"\"\norigins = [\"" + a.url() + "\", \"" +
                                    b.url() + "\"]\nretries = 0\n"));

  ExpectServed("k1.txt", "k1 from B");
  EXPECT_EQ(a.GetCount("/k1.txt"), 1);
  EXPECT_EQ(b.GetCount("/k1.txt"), 1);

  // A failed a moment ago: the next key goes to B first, A is not touched.
  ExpectServed("k2.txt", "k2 from B");
  EXPECT_EQ(a.TotalCount(), 1) << "A was asked again during its cool-down: "
                               << ::testing::PrintToString(a.Log());
  EXPECT_EQ(b.GetCount("/k2.txt"), 1);

  // A is tried last, not skipped: when B fails too, A answers.
  ExpectServed("k3.txt", "k3 from A");
  EXPECT_EQ(b.GetCount("/k3.txt"), 1);
  EXPECT_EQ(a.GetCount("/k3.txt"), 1);
  // (A is probed first again once the 30 s cool-down is over; not waited for here.)
  // Unmount before the local origins go: their keep-alive connections would
  // hold up their destruction for seconds.
  ASSERT_NO_FATAL_FAILURE(Unmount());
}

TEST_F(RuleOptionsTest, NotFoundIsFinalForTheRuleAndFallsThroughOnlyToTheNextRule) {
  testing::TestOrigin a, b, c;  // a: 404 for everything; b: the standby; c: the next rule's origin
  for (const char* k : {"/def/x.txt", "/fin/x.txt", "/ft/x.txt", "/solo/x.txt"}) {
    b.SetFile(k, std::string("B has ") + k);
    c.SetFile(k, std::string("C has ") + k);
  }
  auto pair = "origins = [\"" + a.url() + "\", \"" + b.url() + "\"]\n";
  std::string toml =
      // default fallthrough_on = [404, 410]: the next rule, never B
      "[[rule]]\nprefix = \"def/\"\n" + pair + "[[rule]]\nprefix = \"def\"\norigin = \"" + c.url() +
      "\"\n" +
      // 404 not listed: final ENOENT
      "[[rule]]\nprefix = \"fin/\"\n" + pair + "fallthrough_on = [410]\n" +
      "[[rule]]\nprefix = \"fin\"\norigin = \"" + c.url() + "\"\n" +
      // fallthrough_on = [404]: the next rule
      "[[rule]]\nprefix = \"ft/\"\n" + pair + "fallthrough_on = [404]\n" +
      "[[rule]]\nprefix = \"ft\"\norigin = \"" + c.url() + "\"\n" +
      // the only rule: ENOENT
      "[[rule]]\nprefix = \"solo/\"\n" + pair;
  ASSERT_NO_FATAL_FAILURE(MountToml(toml));

  ExpectServed("def/x.txt", "C has /def/x.txt");
  ExpectServed("ft/x.txt", "C has /ft/x.txt");
  auto fin = ReadAll(M("fin/x.txt"));
  EXPECT_EQ(fin.err, ENOENT) << fin.stage << ": " << ErrnoName(fin.err);
  auto solo = ReadAll(M("solo/x.txt"));
  EXPECT_EQ(solo.err, ENOENT) << solo.stage << ": " << ErrnoName(solo.err);

  for (const char* k : {"/def/x.txt", "/fin/x.txt", "/ft/x.txt", "/solo/x.txt"})
    EXPECT_EQ(a.GetCount(k), 1) << k;
  EXPECT_EQ(b.TotalCount(), 0) << "a 404 from A went to the standby B: "
                               << ::testing::PrintToString(b.Log());
  EXPECT_EQ(c.GetCount("/fin/x.txt"), 0) << "a final 404 fell through to the next rule";
  EXPECT_EQ(c.GetCount("/def/x.txt"), 1);
  EXPECT_EQ(c.GetCount("/ft/x.txt"), 1);
  // Unmount before the local origins go: their keep-alive connections would
  // hold up their destruction for seconds.
  ASSERT_NO_FATAL_FAILURE(Unmount());
}

// ---- suffix -----------------------------------------------------------------------

TEST_F(RuleOptionsTest, SuffixIsASecondCondition) {
  testing::TestOrigin jpg, other;
  jpg.SetFile("/img/a.jpg", "jpeg bytes");
  jpg.SetFile("/img/a.png", "wrong origin for png");
  other.SetFile("/img/a.png", "png bytes");
  other.SetFile("/img/a.jpg", "wrong origin for jpg");
  ASSERT_NO_FATAL_FAILURE(MountToml("[[rule]]\nprefix = \"img/\"\nsuffix = \".jpg\"\norigin = \"" +
                                    jpg.url() + "\"\n\n[[rule]]\nprefix = \"img/\"\norigin = \"" +
                                    other.url() + "\"\n"));

  ExpectServed("img/a.jpg", "jpeg bytes");
  ExpectServed("img/a.png", "png bytes");
  EXPECT_EQ(jpg.Count("/img/a.png"), 0) << "the .jpg rule was asked for a .png key";
  EXPECT_EQ(other.Count("/img/a.jpg"), 0);
  // The suffix must match the whole end of the key.
  EXPECT_EQ(StatErr(M("img/a.jpgx")), ENOENT);
  EXPECT_EQ(jpg.Count("/img/a.jpgx"), 0);
  // Unmount before the local origins go: their keep-alive connections would
  // hold up their destruction for seconds.
  ASSERT_NO_FATAL_FAILURE(Unmount());
}

TEST_F(RuleOptionsTest, DuplicatePrefixAndSuffixIsRefused) {
  std::string url = origin_.url();
  std::string dup = root_ + "/dup.toml";
  ASSERT_EQ(WriteAll(dup, "[[rule]]\nprefix = \"img/\"\nsuffix = \".jpg\"\norigin = \"" + url +
                              "\"\n\n[[rule]]\nprefix = \"img/\"\norigin = \"" + url +
                              "\"\n\n[[rule]]\nprefix = \"img/\"\nsuffix = \".jpg\"\norigin = \"" +
                              url + "\"\n"),
            0);
  auto check = Originfs({"check", dup});
  EXPECT_NE(check.exit_code, 0) << check.out;
  EXPECT_NE(check.err.find("rule #3"), std::string::npos) << check.err;
  EXPECT_NE(check.err.find("duplicate"), std::string::npos) << check.err;
  auto mount = Originfs({bucket_, mnt_, "-o", "rules=" + dup, "-f"}, 10s);
  EXPECT_FALSE(mount.timed_out) << "mounted with duplicate rules";
  EXPECT_NE(mount.exit_code, 0);
  EXPECT_NE(mount.err.find("duplicate"), std::string::npos) << mount.err;
  EXPECT_FALSE(IsMounted(mnt_));

  // Same prefix with different suffixes is fine.
  std::string ok = root_ + "/ok.toml";
  ASSERT_EQ(WriteAll(ok, "[[rule]]\nprefix = \"img/\"\nsuffix = \".jpg\"\norigin = \"" + url +
                             "\"\n\n[[rule]]\nprefix = \"img/\"\nsuffix = \".png\"\norigin = \"" +
                             url + "\"\n\n[[rule]]\nprefix = \"img/\"\norigin = \"" + url + "\"\n"),
            0);
  auto good = Originfs({"check", ok});
  EXPECT_EQ(good.exit_code, 0) << good.err;
}

// ---- replace_prefix / strip_prefix ------------------------------------------------

TEST_F(RuleOptionsTest, ReplacePrefixAndStripPrefixShapeTheOriginPath) {
  origin_.SetFile("/static/images/a/b.png", "replaced");
  origin_.SetFile("/static/images/sp ace.png", "encoded");
  origin_.SetFile("/x.css", "stripped");
  origin_.SetFile("/base/v2/y.txt", "with a base path");
  origin_.SetNginxDirectories(true);  // "a" in img/a/b.png is a directory at the origin
  std::string u = origin_.url();
  ASSERT_NO_FATAL_FAILURE(MountToml(
      "[[rule]]\nprefix = \"img/\"\nreplace_prefix = \"static/images/\"\norigin = \"" + u +
      "\"\n\n" + "[[rule]]\nprefix = \"cdn/\"\nstrip_prefix = true\norigin = \"" + u + "\"\n\n" +
      "[[rule]]\nprefix = \"based/\"\nreplace_prefix = \"v2/\"\norigin = \"" + u + "/base\"\n"));

  ExpectServed("img/a/b.png", "replaced");
  ExpectServed("img/sp ace.png", "encoded");
  ExpectServed("cdn/x.css", "stripped");
  ExpectServed("based/y.txt", "with a base path");
  EXPECT_TRUE(EventuallyExists(B("img/a/b.png"))) << "stored under the key, not the origin path";
  EXPECT_TRUE(EventuallyExists(B("cdn/x.css")));

  auto targets = origin_.Targets();
  auto seen = [&](const std::string& t) {
    return std::find(targets.begin(), targets.end(), t) != targets.end();
  };
  EXPECT_TRUE(seen("/static/images/a/b.png")) << ::testing::PrintToString(targets);
  EXPECT_TRUE(seen("/static/images/sp%20ace.png")) << ::testing::PrintToString(targets);
  EXPECT_TRUE(seen("/x.css")) << ::testing::PrintToString(targets);
  EXPECT_TRUE(seen("/base/v2/y.txt")) << ::testing::PrintToString(targets);
  for (const auto& t : targets) {
    EXPECT_FALSE(t.starts_with("/img/") || t.starts_with("/cdn/") || t.starts_with("/based/"))
        << "the unreplaced key reached the origin: " << t;
  }

  // A miss (and its directory probe) uses the replaced path as well.
  origin_.ResetCounts();
  EXPECT_EQ(StatErr(M("img/missing.png")), ENOENT);
  for (const auto& line : origin_.Log())
    EXPECT_TRUE(line.find(" /static/images/missing.png") != std::string::npos) << line;
  EXPECT_GE(origin_.GetCount("/static/images/missing.png"), 1);
}

// ---- headers --------------------------------------------------------------------------

TEST_F(RuleOptionsTest, HeadersReachTheOrigin) {
  origin_.SetFile("/a.txt", "with headers");
  ASSERT_NO_FATAL_FAILURE(
      MountToml("[[rule]]\nprefix = \"\"\norigin = \"" + origin_.url() +
                "\"\nheaders = { Host = \"old.example.com\", X-Token = \"tok-123\" }\n"));

  ExpectServed("a.txt", "with headers");
  EXPECT_EQ(origin_.LastHeader("/a.txt", "Host"), "old.example.com");
  EXPECT_EQ(origin_.LastHeader("/a.txt", "X-Token"), "tok-123");
  // The directory probe after a 404 carries them too.
  EXPECT_EQ(StatErr(M("missing.txt")), ENOENT);
  EXPECT_EQ(origin_.LastHeader("/missing.txt", "X-Token"), "tok-123");
  EXPECT_EQ(origin_.LastHeader("/missing.txt/", "X-Token"), "tok-123");
  EXPECT_EQ(origin_.LastHeader("/missing.txt/", "Host"), "old.example.com");

  // Made readable by others, the file is refused on reload; the old rules stay.
  ASSERT_EQ(chmod(rules_file_.c_str(), 0644), 0);
  auto reload = Originfs({"reload", mnt_});
  EXPECT_NE(reload.exit_code, 0) << "reload accepted a world-readable credentials file: "
                                 << reload.out;
  origin_.SetFile("/b.txt", "still mounted");
  ExpectServed("b.txt", "still mounted");
  EXPECT_EQ(origin_.LastHeader("/b.txt", "X-Token"), "tok-123");
}

TEST_F(RuleOptionsTest, HeadersInAWorldReadableRulesFileAreRefused) {
  std::string rules = root_ + "/headers.toml";
  ASSERT_EQ(
      WriteAll(rules, "[[rule]]\nprefix = \"\"\norigin = \"" + origin_.url() +
                          "\"\nheaders = { Host = \"old.example.com\", X-Token = \"tok-123\" }\n"),
      0);
  ASSERT_EQ(chmod(rules.c_str(), 0644), 0);
  auto r = Originfs({bucket_, mnt_, "-o", "rules=" + rules, "-f"}, 10s);
  EXPECT_FALSE(r.timed_out) << "mounted with a world-readable credentials file";
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("chmod 600"), std::string::npos) << r.err;
  EXPECT_EQ(r.err.find("tok-123"), std::string::npos) << r.err;
  EXPECT_FALSE(IsMounted(mnt_));
  EXPECT_NE(Originfs({"check", rules}).exit_code, 0);
  ASSERT_EQ(chmod(rules.c_str(), 0600), 0);
  auto ok = Originfs({"check", rules});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(ok.out.find("tok-123"), std::string::npos) << ok.out;
  EXPECT_EQ(origin_.TotalCount(), 0);
}

// ---- redirects ----------------------------------------------------------------------------

TEST_F(RuleOptionsTest, FollowRedirectsFalseAndMaxRedirects) {
  std::string u = origin_.url();
  origin_.SetFile("/target.txt", "the target");
  auto redirect = [&](const std::string& from, const std::string& to) {
    testing::Behavior b;
    b.status = 302;
    b.redirect_to = u + to;
    origin_.Set(from, b);
  };
  redirect("/nofollow/r.txt", "/target.txt");
  redirect("/one/hop1.txt", "/target.txt");
  redirect("/one/hop2.txt", "/one/mid.txt");
  redirect("/one/mid.txt", "/target.txt");
  redirect("/two/hop2.txt", "/one/mid.txt");
  ASSERT_NO_FATAL_FAILURE(
      MountToml("[[rule]]\nprefix = \"nofollow/\"\nfollow_redirects = false\norigin = \"" + u +
                "\"\n\n[[rule]]\nprefix = \"one/\"\nmax_redirects = 1\norigin = \"" + u +
                "\"\n\n[[rule]]\nprefix = \"two/\"\nmax_redirects = 2\norigin = \"" + u + "\"\n"));

  ExpectEio("nofollow/r.txt");
  EXPECT_EQ(origin_.GetCount("/target.txt"), 0)
      << "a redirect was followed with follow_redirects = false";
  ExpectServed("one/hop1.txt", "the target");
  EXPECT_TRUE(EventuallyExists(B("one/hop1.txt")));
  ExpectEio("one/hop2.txt");
  EXPECT_EQ(origin_.GetCount("/target.txt"), 1)
      << "a second hop was followed with max_redirects = 1";
  ExpectServed("two/hop2.txt", "the target");
}

// ---- verify ----------------------------------------------------------------------------------

TEST_F(RuleOptionsTest, CheckPrintsEveryKeySet) {
  std::string ca = root_ + "/ca.pem";
  ASSERT_EQ(WriteAll(ca, "-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"), 0);
  std::string rules = root_ + "/all.toml";
  ASSERT_EQ(WriteAll(rules,
                     "[[rule]]\n"
                     "prefix = \"img/\"\n"
                     "suffix = \".jpg\"\n"
                     "origins = [\"http://a.example:8080/base\", \"https://b.example\"]\n"
                     "writeback = false\n"
                     "cache_max_size = \"2G\"\n"
                     "dirs = \"virtual\"\n"
                     "replace_prefix = \"static/images/\"\n"
                     "headers = { Host = \"old.example.com\", X-Token = \"hidden-value\" }\n"
                     "follow_redirects = false\n"
                     "max_redirects = 3\n"
                     "verify = \"etag-md5\"\n"
                     "connect_timeout = 2.5\n"
                     "timeout = 7\n"
                     "retries = 4\n"
                     "max_object_size = \"5M\"\n"
                     "max_concurrent = 3\n"
                     "ca_file = \"" +
                         ca +
                         "\"\n"
                         "insecure = true\n"
                         "mtime = \"fetch\"\n"
                         "fallthrough_on = [404, 403]\n"
                         "\n[[rule]]\n"
                         "prefix = \"cdn/\"\n"
                         "origin = \"http://c.example\"\n"
                         "strip_prefix = true\n"
                         "verify = \"content-md5\"\n"
                         "dirs = \"no-ext\"\n",
                     0600),
            0);
  ASSERT_EQ(chmod(rules.c_str(), 0600), 0);
  auto r = Originfs({"check", rules});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::istringstream lines(r.out);
  std::string line, rule1, rule2;
  while (std::getline(lines, line)) {
    if (line.starts_with("rule #1")) rule1 = line;
    if (line.starts_with("rule #2")) rule2 = line;
  }
  ASSERT_FALSE(rule1.empty()) << r.out;
  ASSERT_FALSE(rule2.empty()) << r.out;
  for (const char* want : {"prefix=\"img/\"",
                           "suffix=\".jpg\"",
                           "http://a.example:8080/base",
                           "https://b.example",
                           "writeback=false",
                           "cache_max_size=",
                           "dirs=virtual",
                           "replace_prefix=\"static/images/\"",
                           "Host",
                           "X-Token",
                           "follow_redirects=false",
                           "max_redirects=3",
                           "verify=etag-md5",
                           "connect_timeout=2.5",
                           "timeout=7",
                           "retries=4",
                           "max_object_size=",
                           "max_concurrent=3",
                           "ca_file=",
                           "insecure=true",
                           "mtime=fetch",
                           "fallthrough_on=[404, 403]"}) {
    EXPECT_NE(rule1.find(want), std::string::npos) << "missing " << want << " in: " << rule1;
  }
  EXPECT_TRUE(rule1.find("max_object_size=5242880") != std::string::npos ||
              rule1.find("max_object_size=5M") != std::string::npos)
      << rule1;
  EXPECT_TRUE(rule1.find("cache_max_size=2147483648") != std::string::npos ||
              rule1.find("cache_max_size=2G") != std::string::npos)
      << rule1;
  EXPECT_EQ(r.out.find("hidden-value"), std::string::npos) << "a header value was printed";
  for (const char* want :
       {"prefix=\"cdn/\"", "origin=http://c.example", "verify=content-md5", "dirs=no-ext"})
    EXPECT_NE(rule2.find(want), std::string::npos) << "missing " << want << " in: " << rule2;
  EXPECT_TRUE(rule2.find("strip_prefix") != std::string::npos ||
              rule2.find("replace_prefix=\"\"") != std::string::npos)
      << "strip_prefix not shown: " << rule2;
}

}  // namespace
}  // namespace originfs::e2e
