#include "core/origin/listing_json.h"

#include <cctype>
#include <cstdio>
#include <ctime>
#include <map>

#include "core/origin/http_client.h"

namespace originfs::listing_internal {
namespace {

int HexVal(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

class Json {
 public:
  explicit Json(std::string_view s) : s_(s) {}
  void Ws() {
    while (i_ < s_.size() && std::isspace(static_cast<unsigned char>(s_[i_]))) ++i_;
  }
  bool Eat(char c) {
    Ws();
    if (i_ < s_.size() && s_[i_] == c) {
      ++i_;
      return true;
    }
    return false;
  }
  bool Peek(char c) {
    Ws();
    return i_ < s_.size() && s_[i_] == c;
  }
  std::optional<std::string> String() {
    if (!Eat('"')) return std::nullopt;
    std::string out;
    while (i_ < s_.size()) {
      char c = s_[i_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) return std::nullopt;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) return std::nullopt;
      char e = s_[i_++];
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out += e;
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          auto cp = Hex4();
          if (!cp) return std::nullopt;
          uint32_t v = *cp;
          if (v >= 0xD800 && v < 0xDC00) {  // a surrogate pair
            if (i_ + 1 >= s_.size() || s_[i_] != '\\' || s_[i_ + 1] != 'u') return std::nullopt;
            i_ += 2;
            auto lo = Hex4();
            if (!lo || *lo < 0xDC00 || *lo > 0xDFFF) return std::nullopt;
            v = 0x10000 + ((v - 0xD800) << 10) + (*lo - 0xDC00);
          }
          AppendUtf8(out, v);
          break;
        }
        default:
          return std::nullopt;
      }
    }
    return std::nullopt;
  }
  std::optional<uint64_t> Number() {
    Ws();
    uint64_t v = 0;
    std::size_t start = i_;
    while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) {
      if (v > (UINT64_MAX - 9) / 10) return std::nullopt;
      v = v * 10 + static_cast<uint64_t>(s_[i_++] - '0');
    }
    if (i_ == start) return std::nullopt;
    return v;
  }
  // Skips any JSON value (for keys originfs does not read).
  bool Skip(int depth = 0) {
    if (depth > 32) return false;
    Ws();
    if (Peek('"')) return String().has_value();
    if (Eat('{') || Eat('[')) {
      char close = s_[i_ - 1] == '{' ? '}' : ']';
      if (Eat(close)) return true;
      for (;;) {
        if (close == '}') {
          if (!String() || !Eat(':')) return false;
        }
        if (!Skip(depth + 1)) return false;
        if (Eat(close)) return true;
        if (!Eat(',')) return false;
      }
    }
    std::size_t start = i_;
    while (i_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[i_])) || s_[i_] == '-' ||
                              s_[i_] == '+' || s_[i_] == '.'))
      ++i_;
    return i_ > start;
  }
  std::optional<bool> Bool() {
    Ws();
    for (auto [word, v] : {std::pair<std::string_view, bool>{"true", true}, {"false", false}}) {
      if (s_.substr(i_, word.size()) == word) {
        i_ += word.size();
        return v;
      }
    }
    return std::nullopt;
  }
  bool AtEnd() {
    Ws();
    return i_ == s_.size();
  }

 private:
  std::optional<uint32_t> Hex4() {
    if (i_ + 4 > s_.size()) return std::nullopt;
    uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      int h = HexVal(s_[i_++]);
      if (h < 0) return std::nullopt;
      v = v * 16 + static_cast<uint32_t>(h);
    }
    return v;
  }
  std::string_view s_;
  std::size_t i_ = 0;
};

// "2026-12-05T09:11:35.486401348Z" or with an offset ("+01:00"): seconds
// since the epoch, fractions dropped.
std::optional<int64_t> ParseRfc3339(std::string_view s) {
  int y, mo, d, h, mi, sec;
  char tail[40] = {};
  std::string str(s.substr(0, 64));
  if (std::sscanf(str.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%39s", &y, &mo, &d, &h, &mi, &sec, tail) < 6)
    return std::nullopt;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60) return std::nullopt;
  std::string_view t(tail);
  if (t.starts_with('.')) {
    std::size_t digits = 1;
    while (digits < t.size() && std::isdigit(static_cast<unsigned char>(t[digits]))) ++digits;
    t.remove_prefix(digits);
  }
  int64_t offset = 0;
  if (t == "Z" || t == "z") {
  } else if (t.size() == 6 && (t[0] == '+' || t[0] == '-') && t[3] == ':') {
    int oh = (t[1] - '0') * 10 + (t[2] - '0'), om = (t[4] - '0') * 10 + (t[5] - '0');
    offset = (oh * 3600 + om * 60) * (t[0] == '-' ? -1 : 1);
  } else {
    return std::nullopt;
  }
  struct tm tm = {};
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  return static_cast<int64_t>(timegm(&tm)) - offset;
}

}  // namespace

// nginx's autoindex_format json ({"name", "type", "size", "mtime"}) and
// caddy's browse JSON ({"name" with '/' for a directory, "is_dir", "size",
// "mod_time"}): an array of such objects.

std::optional<std::vector<ListedEntry>> ParseJson(std::string_view body) {
  Json j(body);
  if (!j.Eat('[')) return std::nullopt;
  std::map<std::string, ListedEntry> found;
  if (!j.Eat(']')) {
    for (;;) {
      if (!j.Eat('{')) return std::nullopt;
      ListedEntry e;
      std::optional<std::string> type;
      std::optional<bool> is_dir;
      bool have_name = false;
      if (!j.Eat('}')) {
        for (;;) {
          auto k = j.String();
          if (!k || !j.Eat(':')) return std::nullopt;
          if (*k == "name") {
            auto v = j.String();
            if (!v) return std::nullopt;
            e.name = *v;
            have_name = true;
          } else if (*k == "type") {
            type = j.String();
            if (!type) return std::nullopt;
          } else if (*k == "size") {
            e.size = j.Number();
            if (!e.size) return std::nullopt;
          } else if (*k == "mtime") {
            auto v = j.String();
            if (!v) return std::nullopt;
            e.mtime = ParseHttpDate(*v);
          } else if (*k == "is_dir") {
            is_dir = j.Bool();
            if (!is_dir) return std::nullopt;
          } else if (*k == "mod_time") {
            auto v = j.String();
            if (!v) return std::nullopt;
            e.mtime = ParseRfc3339(*v);
          } else if (!j.Skip()) {
            return std::nullopt;
          }
          if (j.Eat('}')) break;
          if (!j.Eat(',')) return std::nullopt;
        }
      }
      if (!have_name || (!type && !is_dir)) return std::nullopt;  // not a listing's entry
      if (is_dir && !type) {
        type = *is_dir ? "directory" : "file";
        if (*is_dir && e.name.ends_with('/')) e.name.pop_back();
      }
      e.is_dir = *type == "directory";
      if (e.is_dir) e.size.reset();
      bool usable = UsableName(e.name);
      if (usable && (e.is_dir || *type == "file")) found.try_emplace(e.name, std::move(e));
      if (j.Eat(']')) break;
      if (!j.Eat(',')) return std::nullopt;
    }
  }
  if (!j.AtEnd()) return std::nullopt;
  std::vector<ListedEntry> out;
  for (auto& [name, e] : found) out.push_back(std::move(e));
  return out;
}

}  // namespace originfs::listing_internal
