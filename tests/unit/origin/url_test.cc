#include "core/origin/url.h"

#include <algorithm>
#include <string>
#include <string_view>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace originfs {
namespace {

// Inverse of EncodeKey, written independently: what an HTTP server does to
// the path before looking it up.
std::string PercentDecode(std::string_view s) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// Only unreserved characters, '/' and well-formed upper-case %XX escapes.
bool OnlySafeCharacters(std::string_view s) {
  for (std::size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                      c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved || c == '/') continue;
    if (c != '%' || i + 2 >= s.size()) return false;
    for (char h : s.substr(i + 1, 2)) {
      if (!((h >= '0' && h <= '9') || (h >= 'A' && h <= 'F'))) return false;
    }
    i += 2;
  }
  return true;
}

struct EncodeCase {
  std::string key;
  std::string encoded;
};

class EncodeKeyTest : public ::testing::TestWithParam<EncodeCase> {};

TEST_P(EncodeKeyTest, EncodesAsSpecified) {
  EXPECT_EQ(EncodeKey(GetParam().key), GetParam().encoded);
  EXPECT_EQ(PercentDecode(EncodeKey(GetParam().key)), GetParam().key);
}

INSTANTIATE_TEST_SUITE_P(
    Keys, EncodeKeyTest,
    ::testing::Values(
        EncodeCase{"a b", "a%20b"}, EncodeCase{"100%", "100%25"},
        EncodeCase{"c#sharp", "c%23sharp"}, EncodeCase{"what?", "what%3F"},
        EncodeCase{"caf\xc3\xa9", "caf%C3%A9"},
        EncodeCase{"a b/%#?\xc3\xa9", "a%20b/%25%23%3F%C3%A9"},
        EncodeCase{"dir/sub/file.txt", "dir/sub/file.txt"}, EncodeCase{"AZaz09-._~", "AZaz09-._~"},
        EncodeCase{"a+b&c=d;e", "a%2Bb%26c%3Dd%3Be"},
        EncodeCase{"x:y@z!$'()*,", "x%3Ay%40z%21%24%27%28%29%2A%2C"},
        EncodeCase{"back\\slash", "back%5Cslash"}, EncodeCase{"tab\tnl\n", "tab%09nl%0A"},
        EncodeCase{std::string("nul\0x", 5), "nul%00x"}, EncodeCase{"\xff\x80", "%FF%80"}));

TEST(EncodeKeyDotSegmentsTest, DotSegmentsAreEncoded) {
  EXPECT_EQ(EncodeKey("a/../b"), "a/%2E%2E/b");
  EXPECT_EQ(EncodeKey("a/./b"), "a/%2E/b");
  EXPECT_EQ(EncodeKey(".."), "%2E%2E");
  EXPECT_EQ(EncodeKey("./x"), "%2E/x");
  EXPECT_EQ(EncodeKey("x/.."), "x/%2E%2E");
}

TEST(EncodeKeyDotSegmentsTest, OtherDotsAreKept) {
  EXPECT_EQ(EncodeKey("a/.hidden"), "a/.hidden");
  EXPECT_EQ(EncodeKey("a/.../b"), "a/.../b");
  EXPECT_EQ(EncodeKey("a/..b/c."), "a/..b/c.");
  EXPECT_EQ(EncodeKey("v1.2.3/x.tar.gz"), "v1.2.3/x.tar.gz");
}

TEST(EncodeKeyTest, SlashesAndEmptySegmentsKept) {
  EXPECT_EQ(EncodeKey(""), "");
  EXPECT_EQ(EncodeKey("a//b"), "a//b");
  EXPECT_EQ(EncodeKey("dir/"), "dir/");
}

TEST(EncodeKeyTest, LongNameOf255Bytes) {
  // 85 two-byte characters and 85 ASCII letters: the longest name a Linux
  // filesystem accepts.
  std::string key;
  std::string expected;
  for (int i = 0; i < 85; ++i) {
    key += "\xc3\xa9x";
    expected += "%C3%A9x";
  }
  ASSERT_EQ(key.size(), 255u);
  EXPECT_EQ(EncodeKey(key), expected);
  EXPECT_EQ(EncodeKey("dir/" + key), "dir/" + expected);

  std::string plain(255, 'n');
  EXPECT_EQ(EncodeKey(plain), plain);
}

TEST(EncodeKeyTest, EveryByteRoundTripsAndOutputIsSafe) {
  std::string key;
  for (int c = 0; c < 256; ++c) key += static_cast<char>(c);
  std::string encoded = EncodeKey(key);
  EXPECT_TRUE(OnlySafeCharacters(encoded)) << encoded;
  EXPECT_EQ(PercentDecode(encoded), key);
  // '/' is the only reserved byte left as is.
  EXPECT_EQ(std::count(encoded.begin(), encoded.end(), '/'), 1);
}

TEST(KeyUrlTest, JoinsOriginAndEncodedKey) {
  EXPECT_EQ(KeyUrl("http://127.0.0.1:8080", "a b/c.txt"), "http://127.0.0.1:8080/a%20b/c.txt");
  EXPECT_EQ(KeyUrl("https://example.com/base", "x?y"), "https://example.com/base/x%3Fy");
  EXPECT_EQ(KeyUrl("https://example.com/base", "a/../../etc/passwd"),
            "https://example.com/base/a/%2E%2E/%2E%2E/etc/passwd");
  EXPECT_EQ(KeyUrl("http://h", ""), "http://h/");
}

}  // namespace
}  // namespace originfs
