#include "core/origin/s3_listing.h"

#include <ctime>

#include <spdlog/fmt/fmt.h>

#include "core/origin/url.h"

namespace originfs {
namespace {

// Percent-encodes a query value as SigV4 canonicalises it: every byte but
// A-Z a-z 0-9 - _ . ~ ('/' too).
std::string QueryEscape(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
    }
  }
  return out;
}

// The content of the first <tag>...</tag> in s at or after *pos (advanced
// past it), or nullopt.
std::optional<std::string_view> Element(std::string_view s, std::string_view tag,
                                        std::size_t* pos) {
  std::string open = fmt::format("<{}>", tag), close = fmt::format("</{}>", tag);
  std::size_t a = s.find(open, *pos);
  if (a == std::string_view::npos) return std::nullopt;
  a += open.size();
  std::size_t b = s.find(close, a);
  if (b == std::string_view::npos) return std::nullopt;
  *pos = b + close.size();
  return s.substr(a, b - a);
}

std::optional<std::string> Child(std::string_view s, std::string_view tag) {
  std::size_t pos = 0;
  auto e = Element(s, tag, &pos);
  if (!e) return std::nullopt;
  return XmlText(*e);
}

// "2024-01-02T03:04:05.000Z" as seconds since the epoch.
std::optional<int64_t> Iso8601(std::string_view s) {
  std::tm tm{};
  int n = 0;
  std::string text(s);
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6 ||
      n < 19)
    return std::nullopt;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<int64_t>(timegm(&tm));
}

// The one segment of key below prefix (a trailing '/' removed when dir), or
// "" when key is not one level below prefix.
std::string OneBelow(std::string_view key, std::string_view prefix, bool dir) {
  if (!key.starts_with(prefix)) return "";
  std::string_view rest = key.substr(prefix.size());
  if (dir) {
    if (!rest.ends_with('/')) return "";
    rest.remove_suffix(1);
  }
  if (!UsableName(rest)) return "";
  return std::string(rest);
}

}  // namespace

std::string ListObjectsUrl(std::string_view bucket_url, std::string_view prefix,
                           std::string_view continuation) {
  // Parameters in SigV4's canonical (sorted) order.
  std::string url(bucket_url);
  url += "/?";
  if (!continuation.empty()) url += "continuation-token=" + QueryEscape(continuation) + "&";
  url += "delimiter=%2F&list-type=2";
  if (!prefix.empty()) url += "&prefix=" + QueryEscape(prefix);
  return url;
}

std::optional<S3ListPage> ParseListObjectsV2(std::string_view xml, std::string_view prefix) {
  std::size_t root = xml.find("<ListBucketResult");
  if (root == std::string_view::npos) return std::nullopt;
  std::string_view doc = xml.substr(root);
  S3ListPage page;
  std::size_t pos = 0;
  while (auto c = Element(doc, "Contents", &pos)) {
    auto key = Child(*c, "Key");
    if (!key) return std::nullopt;
    std::string name = OneBelow(*key, prefix, false);
    if (name.empty()) continue;  // the directory marker "dir/" itself, or an unusable name
    ListedEntry e{std::move(name), false, std::nullopt, std::nullopt};
    if (auto size = Child(*c, "Size")) {
      uint64_t v = 0;
      bool ok = !size->empty();
      for (char ch : *size) {
        if (ch < '0' || ch > '9' || v > (UINT64_MAX - 9) / 10) ok = false;
        if (ok) v = v * 10 + static_cast<uint64_t>(ch - '0');
      }
      if (ok) e.size = v;
    }
    if (auto m = Child(*c, "LastModified")) e.mtime = Iso8601(*m);
    page.entries.push_back(std::move(e));
  }
  pos = 0;
  while (auto p = Element(doc, "CommonPrefixes", &pos)) {
    auto dir = Child(*p, "Prefix");
    if (!dir) return std::nullopt;
    std::string name = OneBelow(*dir, prefix, true);
    if (!name.empty()) page.entries.push_back(ListedEntry{std::move(name), true, {}, {}});
  }
  page.truncated = Child(doc, "IsTruncated") == std::optional<std::string>("true");
  if (page.truncated) {
    auto next = Child(doc, "NextContinuationToken");
    if (!next || next->empty()) return std::nullopt;  // cannot go on: not a usable answer
    page.next_continuation = std::move(*next);
  }
  return page;
}

}  // namespace originfs
