// libFuzzer target: RuleSet::Parse on arbitrary bytes. It must never crash
// (ASan/UBSan abort on memory errors and undefined behaviour), and whatever
// it accepts must hold the promises of core/config/rules.h. How to build and run:
// tests/fuzz/CMakeLists.txt.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "core/config/rules.h"

namespace {

void Require(bool ok, const char* what, const std::string& detail = "") {
  if (ok) return;
  std::fprintf(stderr, "invariant violated: %s %s\n", what, detail.c_str());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto set = originfs::RuleSet::Parse(text, "fuzz.toml");
  if (!set) {
    Require(!set.error().message.empty(), "a refusal without a message");
    Require(set.error().message.starts_with("fuzz.toml"), "message does not name the file", set.error().message);
    return 0;
  }
  Require(!set->empty(), "accepted a file without rules");
  for (const auto& r : set->rules()) {
    std::string d = r.Describe();
    Require(!r.origins.empty() && r.origin == r.origins.front(), "origin is not origins[0]", d);
    for (const auto& o : r.origins) {
      Require(o.starts_with("http://") || o.starts_with("https://"), "non-http origin accepted", o);
      auto again = originfs::NormalizeOriginUrl(o);
      Require(again && *again == o, "origin not normalised", o);
    }
    Require(!r.prefix.starts_with('/'), "prefix with a leading '/'", d);
    Require(r.prefix.find('\0') == std::string::npos, "NUL in prefix", d);
    for (const auto& [name, value] : r.headers) {
      Require(!name.empty() && name.find_first_of(" \t\r\n:") == std::string::npos, "bad header name", name);
      Require(value.find_first_of("\r\n") == std::string::npos && value.find('\0') == std::string::npos,
              "header value with a line break or NUL", d);
    }
    if (r.max_redirects) Require(*r.max_redirects >= 0, "negative max_redirects", d);
    if (r.retries) Require(*r.retries >= 0, "negative retries", d);
    if (r.timeout) Require(*r.timeout >= 1, "timeout below 1 s", d);
    if (r.connect_timeout)
      Require(std::isfinite(*r.connect_timeout) && *r.connect_timeout > 0, "connect_timeout not a positive number", d);
    if (r.max_object_size) Require(*r.max_object_size > 0, "max_object_size 0", d);
    Require(r.max_concurrent >= 0, "negative max_concurrent", d);
    for (int s : r.fallthrough_on) Require(s >= 400 && s <= 599, "fallthrough_on outside 4xx/5xx", d);
  }
  std::string listing = set->Format();
  Require(!listing.empty(), "empty listing");
  // Matching never crashes, whatever the key.
  std::string_view key = text.substr(0, 200);
  for (const auto* r : set->Match(key)) {
    Require(r->Matches(key), "Match returned a rule that does not match");
    (void)r->OriginPath(key);
  }
  (void)set->PrefixImpliesDirectory(key);
  return 0;
}
