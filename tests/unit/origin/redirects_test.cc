#include "core/origin/redirects.h"

#include <gtest/gtest.h>

namespace originfs {
namespace {

TEST(Redirects, LocationsResolveAsBrowsersDo) {
  const std::string base = "http://a.example:8080/d/e/f.txt?x=1";
  EXPECT_EQ(ResolveLocation(base, "https://b.example/x"), "https://b.example/x");
  EXPECT_EQ(ResolveLocation(base, "https://b.example"), "https://b.example/");
  EXPECT_EQ(ResolveLocation(base, "//c.example/y"), "http://c.example/y");
  EXPECT_EQ(ResolveLocation(base, "/abs?q=2#frag"), "http://a.example:8080/abs?q=2");
  EXPECT_EQ(ResolveLocation(base, "g.txt"), "http://a.example:8080/d/e/g.txt");
  EXPECT_EQ(ResolveLocation(base, "../g/"), "http://a.example:8080/d/g/");
  EXPECT_EQ(ResolveLocation(base, "../../../../g"), "http://a.example:8080/g");
  EXPECT_EQ(ResolveLocation(base, "./"), "http://a.example:8080/d/e/");
  EXPECT_EQ(ResolveLocation(base, "?y=2"), "http://a.example:8080/d/e/f.txt?y=2");
  EXPECT_EQ(ResolveLocation(base, "a b%20c"), "http://a.example:8080/d/e/a%20b%20c");
  EXPECT_FALSE(ResolveLocation("not a url", "/x"));
}

TEST(Redirects, AuthoritiesWithDefaultPortsUsersAndIpv6) {
  auto a = AuthorityOf("HTTPS://User:pw@Example.COM/x");
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->scheme, "https");
  EXPECT_EQ(a->HostPort(), "example.com:443");
  EXPECT_EQ(AuthorityOf("http://[::1]:81/")->HostPort(), "[::1]:81");
  EXPECT_EQ(AuthorityOf("http://127.0.0.1")->port, 80);
  EXPECT_FALSE(AuthorityOf("http://h:99999/"));
  EXPECT_FALSE(AuthorityOf("http://:80/"));
  EXPECT_FALSE(AuthorityOf("/relative"));
}

TEST(Redirects, OnlyAllowedHostsAndNoDowngradeUnlessSaid) {
  RedirectPolicy p{{"origin.example", "http://plain.example", "cdn.example:8443", "*.img.example"},
                   {"https://origin.example:443"}};
  const std::string from = "https://origin.example/k";
  EXPECT_EQ(RedirectRefusal(p, from, "https://origin.example:444/k2"), "") << "any port";
  EXPECT_EQ(RedirectRefusal(p, from, "https://cdn.example:8443/k"), "");
  EXPECT_NE(RedirectRefusal(p, from, "https://cdn.example/k"), "") << "another port";
  EXPECT_EQ(RedirectRefusal(p, from, "https://a.img.example/k"), "");
  EXPECT_NE(RedirectRefusal(p, from, "https://img.example/k"), "");
  EXPECT_NE(RedirectRefusal(p, from, "https://evil.example/k"), "");
  EXPECT_NE(RedirectRefusal(p, from, "https://origin.example.evil/k"), "");
  EXPECT_NE(RedirectRefusal(p, from, "http://origin.example/k"), "") << "https to http";
  EXPECT_EQ(RedirectRefusal(p, from, "http://plain.example/k"), "") << "said with http://";
  EXPECT_NE(RedirectRefusal(p, from, "ftp://origin.example/k"), "");
  EXPECT_NE(RedirectRefusal(p, from, "file:///etc/passwd"), "");
  EXPECT_FALSE(AuthorityOf("http://a@evil.example@origin.example/")) << "two '@'";
  EXPECT_EQ(AuthorityOf("http://user@origin.example/")->host, "origin.example");
  EXPECT_FALSE(AuthorityOf("http://evil.example\\@origin.example/"));
  // Any entry may allow plain http, also after one that names the host.
  RedirectPolicy later{{"*", "http://legacy.example"}, {}};
  EXPECT_EQ(RedirectRefusal(later, from, "http://legacy.example/k"), "");
  EXPECT_EQ(RedirectRefusal({{"[::1]"}, {}}, "http://[::1]:8080/d", "http://[::1]:8080/d/"), "");
  RedirectPolicy any{{"*"}, {}};
  EXPECT_EQ(RedirectRefusal(any, from, "https://anything.example/"), "");
  EXPECT_NE(RedirectRefusal(any, from, "http://anything.example/"), "");
  EXPECT_TRUE(Trusted(p, "https://ORIGIN.example/x"));
  EXPECT_FALSE(Trusted(p, "http://origin.example:443/x")) << "plain http is not the origin";
  EXPECT_FALSE(Trusted(p, "https://origin.example:444/x"));
  EXPECT_FALSE(Trusted(p, "http://origin.example/x"));
}

}  // namespace
}  // namespace originfs
