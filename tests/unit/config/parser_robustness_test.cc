// Randomised robustness checks of the key encoder, the rules parser and the
// -o parser, run with every build (the libFuzzer targets in tests/fuzz go
// deeper but need clang). Deterministic seeds: a failure reproduces.
#include <cmath>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "core/config/mount_options.h"
#include "core/config/rules.h"
#include "core/origin/url.h"

namespace originfs {
namespace {

std::string Printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool Unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

// What must hold for any key; "" when it does.
std::string CheckEncoding(const std::string& key) {
  std::string enc = EncodeKey(key);
  std::string decoded;
  for (std::size_t i = 0; i < enc.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(enc[i]);
    if (c == '%') {
      if (i + 2 >= enc.size() || HexValue(enc[i + 1]) < 0 || HexValue(enc[i + 2]) < 0)
        return "bad escape in " + enc;
      decoded += static_cast<char>(HexValue(enc[i + 1]) * 16 + HexValue(enc[i + 2]));
      i += 2;
    } else if (Unreserved(c) || c == '/') {
      decoded += static_cast<char>(c);
    } else {
      return "raw byte on the wire in " + Printable(enc);
    }
  }
  if (decoded != key) return "does not decode back: " + Printable(enc);
  std::size_t start = 0;
  for (;;) {
    std::size_t slash = enc.find('/', start);
    std::string seg =
        enc.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
    if (seg == "." || seg == "..") return "dot segment in " + enc;
    if (slash == std::string::npos) break;
    start = slash + 1;
  }
  if (KeyUrl("http://h:1/base", key) != "http://h:1/base/" + enc) return "KeyUrl differs";
  return "";
}

TEST(KeyEncodingProperty, RandomKeysRoundTripWithoutDotSegments) {
  std::mt19937 rng(20261124);
  // Biased towards the bytes that matter: dots, slashes, percent signs.
  const std::string special = "./%./%/..%2e%2E";
  int failures = 0;
  for (int n = 0; n < 200000 && failures < 10; ++n) {
    std::string key;
    int len = static_cast<int>(rng() % 24);
    for (int i = 0; i < len; ++i) {
      unsigned r = rng() % 4;
      key += r < 2 ? special[rng() % special.size()] : static_cast<char>(rng() & 0xff);
    }
    if (auto bad = CheckEncoding(key); !bad.empty()) {
      ADD_FAILURE() << "key \"" << Printable(key) << "\": " << bad;
      ++failures;
    }
  }
}

TEST(KeyEncodingProperty, EveryDotSegmentShape) {
  for (const char* key : {".", "..", "/.", "/..", "./", "../", "a/./b", "a/../b", "./..", "../..",
                          "..//..", "/", "//", "", ".../...", ". /.. ", "%2e/%2e%2e"}) {
    EXPECT_EQ(CheckEncoding(key), "") << "key \"" << key << "\"";
  }
}

const char kFullRules[] = R"([[rule]]
prefix = "a/"
suffix = ".jpg"
origins = ["http://127.0.0.1:1", "https://example.com/x/"]
writeback = false
dirs = "no-ext"
replace_prefix = "b/"
headers = { Authorization = "Bearer x", X-Extra = "y" }
follow_redirects = true
max_redirects = 3
verify = "etag-md5"
connect_timeout = 2.5
timeout = 30
retries = 1
max_object_size = "10M"
max_concurrent = 4
insecure = true
mtime = "fetch"
fallthrough_on = [403, 404]

[[rule]]
prefix = ""
origin = "http://example.com"
strip_prefix = true
dirs = "virtual"
)";

std::string Mutate(std::string s, std::mt19937& rng, const std::vector<std::string>& tokens) {
  int edits = 1 + static_cast<int>(rng() % 4);
  for (int e = 0; e < edits; ++e) {
    std::size_t pos = s.empty() ? 0 : rng() % (s.size() + 1);
    switch (rng() % 7) {
      case 6:  // replace a whole value
        if (auto eq = s.find("= ", pos); eq != std::string::npos) {
          std::size_t end = s.find('\n', eq);
          s.replace(eq + 2, end == std::string::npos ? std::string::npos : end - eq - 2,
                    tokens[rng() % tokens.size()]);
        }
        break;
      case 0:  // flip a byte to anything below 0x80 (toml++ 3.3 has UB on some non-ASCII input)
        if (!s.empty()) s[rng() % s.size()] = static_cast<char>(rng() % 0x80);
        break;
      case 1:  // delete a run
        if (!s.empty()) s.erase(rng() % s.size(), 1 + rng() % 8);
        break;
      case 2:  // insert a token
        s.insert(pos, tokens[rng() % tokens.size()]);
        break;
      case 3:  // duplicate a run
        if (!s.empty()) {
          std::size_t from = rng() % s.size();
          s.insert(pos, s.substr(from, 1 + rng() % 40));
        }
        break;
      case 4:  // truncate
        s.resize(pos);
        break;
      default:  // replace a number
        if (auto d = s.find_first_of("0123456789", pos); d != std::string::npos)
          s.replace(d, 1, tokens[rng() % 8]);
        break;
    }
  }
  return s;
}

TEST(RulesParserProperty, MutatedRulesNeverCrashAndAcceptedRulesAreSound) {
  ASSERT_TRUE(RuleSet::Parse(kFullRules, "full.toml"))
      << RuleSet::Parse(kFullRules, "full.toml").error().message;
  const std::vector<std::string> tokens = {"nan",
                                           "inf",
                                           "-1",
                                           "0",
                                           "99999999999999999999",
                                           "1e999",
                                           "-inf",
                                           "\"\"",
                                           "[[rule]]\n",
                                           "prefix = ",
                                           "origin = ",
                                           "\"http://",
                                           "\"https://",
                                           "\"ftp://x\"",
                                           "timeout = ",
                                           "connect_timeout = ",
                                           "retries = ",
                                           "max_object_size = ",
                                           "\"-5\"",
                                           "\"99999999999999999T\"",
                                           "headers = ",
                                           "{",
                                           "}",
                                           "[",
                                           "]",
                                           "=",
                                           "\n",
                                           "\"\"\"",
                                           "'''",
                                           "\\u0000",
                                           "\\n",
                                           "\r\n",
                                           "#",
                                           ".",
                                           ","};
  std::mt19937 rng(4242);
  int accepted = 0, failures = 0;
  for (int n = 0; n < 20000 && failures < 10; ++n) {
    std::string text = Mutate(kFullRules, rng, tokens);
    Result<RuleSet> set = Fail(EINVAL, "not parsed");
    try {
      set = RuleSet::Parse(text, "fuzz.toml");
    } catch (const std::exception& e) {
      ADD_FAILURE() << "exception " << e.what() << " for:\n" << Printable(text);
      ++failures;
      continue;
    }
    if (!set) {
      if (set.error().message.empty()) {
        ADD_FAILURE() << "refused without a message:\n" << Printable(text);
        ++failures;
      }
      continue;
    }
    ++accepted;
    std::string why;
    for (const auto& r : set->rules()) {
      for (const auto& o : r.origins) {
        auto again = NormalizeOriginUrl(o);
        if (!(o.starts_with("http://") || o.starts_with("https://")) || !again || *again != o)
          why += " origin " + o + ";";
      }
      if (r.connect_timeout && !(std::isfinite(*r.connect_timeout) && *r.connect_timeout > 0))
        why += " connect_timeout " + std::to_string(*r.connect_timeout) + ";";
      if (r.timeout && *r.timeout < 1) why += " timeout;";
      if (r.retries && *r.retries < 0) why += " retries;";
      if (r.max_redirects && *r.max_redirects < 0) why += " max_redirects;";
      // No sane limit is above 4 EiB; a negative or wrapped-around size is.
      if (r.max_object_size && (*r.max_object_size == 0 || *r.max_object_size >= (1ull << 62)))
        why += " max_object_size " + std::to_string(*r.max_object_size) + ";";
      for (const auto& [name, value] : r.headers)
        if (value.find_first_of("\r\n") != std::string::npos)
          why += " header " + name + " has a line break;";
    }
    if (set->Format().empty()) why += " empty listing;";
    if (!why.empty()) {
      ADD_FAILURE() << "accepted unsound rules (" << why << "):\n" << Printable(text);
      ++failures;
    }
  }
  EXPECT_GT(accepted, 100) << "the mutations never produced valid rules: the test proves little";
}

TEST(OptionsParserProperty, MutatedOptionListsAreRefusedOrSound) {
  const std::string base =
      "rules=/"
      "r.toml,negative_ttl=5,entry_timeout=1.5,attr_timeout=1,max_object_size=10G,download_threads="
      "8,"
      "max_threads=16,connect_timeout=3,low_speed_time=4,retries=2,max_redirects=5,fsync,metrics_"
      "interval=2,"
      "uid=1,gid=2,umask=022,allow_other";
  const std::vector<std::string> tokens = {"nan",   "inf",  "-1",   "0",  "99999999999999999999",
                                           "1e999", "-inf", "0x10", "T",  "K",
                                           ",",     "=",    "",     "-0", "1e-9",
                                           " "};
  std::mt19937 rng(99);
  int failures = 0;
  for (int n = 0; n < 50000 && failures < 10; ++n) {
    std::string text = Mutate(base, rng, tokens);
    MountOptions o;
    auto r = ParseOptionList(text, o);
    if (!r) continue;
    std::string why;
    if (o.negative_ttl < 0) why += " negative_ttl;";
    if (!std::isfinite(o.entry_timeout) || o.entry_timeout < 0) why += " entry_timeout;";
    if (!std::isfinite(o.attr_timeout) || o.attr_timeout < 0) why += " attr_timeout;";
    if (o.connect_timeout_ms < 0) why += " connect_timeout;";
    if (o.download_threads < 1 || o.max_threads < 1) why += " threads;";
    if (o.low_speed_time < 1) why += " low_speed_time;";
    if (o.retries < 0 || o.max_redirects < 0) why += " retries/max_redirects;";
    if (!std::isfinite(o.metrics_interval) || o.metrics_interval <= 0) why += " metrics_interval;";
    if (!why.empty()) {
      ADD_FAILURE() << "accepted unsound options (" << why << "): " << Printable(text);
      ++failures;
    }
  }
}

}  // namespace
}  // namespace originfs
