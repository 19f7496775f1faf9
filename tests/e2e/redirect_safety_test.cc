// Redirects kept safe: an origin's redirect is followed only to the hosts
// the rule allows (its origins' hosts by default, redirect_hosts
// otherwise), and the rule's headers and signature go only to its origins,
// also for a manifest on another host. A refused redirect is EIO with one
// log line naming the target.
#include <gtest/gtest.h>

#include "tests/support/rule_options_fixture.h"

namespace originfs::e2e {
namespace {

class RedirectSafetyTest : public RuleOptionsTest {
 protected:
  void Redirect(const std::string& from, const std::string& to) {
    testing::Behavior b;
    b.status = 302;
    b.redirect_to = to;
    origin_.Set(from, b);
  }
};

TEST_F(RedirectSafetyTest, RedirectsGoOnlyWhereTheRuleAllowsAndSecretsStayWithTheOrigin) {
  testing::TestOrigin other;  // another port of the same host
  std::string there = "http://127.0.0.1:" + std::to_string(other.port());
  std::string elsewhere = "http://localhost:" + std::to_string(other.port());  // another host
  origin_.SetFile("/a/same.txt.real", "same origin");
  Redirect("/a/same.txt", origin_.url() + "/a/same.txt.real");
  other.SetFile("/port.txt", "another port");
  Redirect("/a/port.txt", there + "/port.txt");
  other.SetFile("/host.txt", "another host");
  Redirect("/a/host.txt", elsewhere + "/host.txt");
  Redirect("/a/ftp.txt", "ftp://127.0.0.1/x");
  Redirect("/b/host.txt", elsewhere + "/host.txt");
  other.SetFile("/list.txt", "c/a/m1.txt\n");
  origin_.SetFile("/c/a/m1.txt", "from the manifest");
  ASSERT_NO_FATAL_FAILURE(MountToml(
      "[[rule]]\nprefix = \"a/\"\norigin = \"" + origin_.url() +
      "\"\nheaders = { X-Token = \"secret\" }\n\n"
      "[[rule]]\nprefix = \"b/\"\norigin = \"" +
      origin_.url() +
      "\"\nheaders = { X-Token = \"secret\" }\nredirect_hosts = [\"localhost\"]\n\n"
      "[[rule]]\nprefix = \"c/\"\norigin = \"" +
      origin_.url() + "\"\nheaders = { X-Token = \"secret\" }\nlist = \"manifest\"\nmanifest = \"" +
      there + "/list.txt\"\n"));

  ExpectServed("a/same.txt", "same origin");
  EXPECT_EQ(origin_.LastHeader("/a/same.txt.real", "X-Token"), "secret");
  // Another port of the origin's host: followed, without the rule's headers.
  ExpectServed("a/port.txt", "another port");
  EXPECT_EQ(other.LastHeader("/port.txt", "X-Token"), "") << "a rule header left the origin";
  // Another host: refused unless redirect_hosts names it; never asked.
  ExpectEio("a/host.txt");
  ExpectEio("a/ftp.txt");
  EXPECT_EQ(other.Count("/host.txt"), 0);
  EXPECT_NE(mount_->Log().find("redirect to " + elsewhere + "/host.txt refused"), std::string::npos)
      << "one log line naming the target";
  ExpectServed("b/host.txt", "another host");
  EXPECT_EQ(other.LastHeader("/host.txt", "X-Token"), "");
  // The manifest on another host gets no rule header either.
  EXPECT_EQ(ListDir(M("c/a")), std::vector<std::string>{"m1.txt"});
  EXPECT_EQ(other.Count("/list.txt"), 1);
  EXPECT_EQ(other.LastHeader("/list.txt", "X-Token"), "");
  ExpectServed("c/a/m1.txt", "from the manifest");
  ASSERT_NO_FATAL_FAILURE(Unmount());
}

}  // namespace
}  // namespace originfs::e2e
