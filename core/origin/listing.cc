#include "core/origin/listing.h"

#include "core/origin/ftp_listing.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>
#include <map>

#include "core/origin/http_client.h"
#include "core/origin/listing_json.h"

namespace originfs {
namespace {

char Lower(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

// Case-insensitive find of needle (lowercase) in hay from pos.
std::size_t FindNoCase(std::string_view hay, std::string_view needle, std::size_t pos = 0) {
  if (needle.size() > hay.size()) return std::string_view::npos;
  for (std::size_t i = pos; i + needle.size() <= hay.size(); ++i) {
    std::size_t j = 0;
    while (j < needle.size() && Lower(hay[i + j]) == needle[j]) ++j;
    if (j == needle.size()) return i;
  }
  return std::string_view::npos;
}

int HexVal(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = Lower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// &amp; &lt; &gt; &quot; &apos; &#N; &#xN; (others are kept as written).
std::string DecodeEntities(std::string_view s) {
  static const std::map<std::string_view, char> kNamed = {
      {"amp", '&'}, {"lt", '<'}, {"gt", '>'}, {"quot", '"'}, {"apos", '\''}};
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '&') {
      out += s[i];
      continue;
    }
    std::size_t semi = s.find(';', i);
    if (semi == std::string_view::npos || semi - i > 10) {
      out += s[i];
      continue;
    }
    std::string_view ent = s.substr(i + 1, semi - i - 1);
    if (auto it = kNamed.find(ent); it != kNamed.end()) {
      out += it->second;
      i = semi;
    } else if (ent.size() > 1 && ent[0] == '#') {
      uint32_t cp = 0;
      bool hex = ent[1] == 'x' || ent[1] == 'X';
      bool ok = ent.size() > (hex ? 2u : 1u);
      for (char c : ent.substr(hex ? 2 : 1)) {
        int v = hex ? HexVal(c) : (std::isdigit(static_cast<unsigned char>(c)) ? c - '0' : -1);
        if (v < 0 || cp > 0x10FFFF) ok = false;
        cp = cp * (hex ? 16 : 10) + static_cast<uint32_t>(std::max(v, 0));
      }
      if (ok && cp > 0 && cp <= 0x10FFFF) {
        AppendUtf8(out, cp);
        i = semi;
      } else {
        out += s[i];
      }
    } else {
      out += s[i];
    }
  }
  return out;
}

// Percent-decodes; nullopt for a malformed escape or an encoded NUL or '/'.
std::optional<std::string> PercentDecode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    int hi = HexVal(s[i + 1]), lo = HexVal(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    char c = static_cast<char>(hi * 16 + lo);
    if (c == '\0' || c == '/') return std::nullopt;
    out += c;
    i += 2;
  }
  return out;
}

}  // namespace

void AppendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// The text of XML character data: the five named entities and numeric
// references resolved; nullopt for a malformed reference.
std::optional<std::string> XmlText(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '&') {
      out += s[i];
      continue;
    }
    std::size_t semi = s.find(';', i);
    if (semi == std::string_view::npos || semi - i > 12) return std::nullopt;
    std::string_view ref = s.substr(i + 1, semi - i - 1);
    i = semi;
    if (ref == "amp")
      out += '&';
    else if (ref == "lt")
      out += '<';
    else if (ref == "gt")
      out += '>';
    else if (ref == "quot")
      out += '"';
    else if (ref == "apos")
      out += '\'';
    else if (ref.starts_with('#') && ref.size() > 1) {
      bool hex = ref[1] == 'x' || ref[1] == 'X';
      std::string_view digits = ref.substr(hex ? 2 : 1);
      if (digits.empty()) return std::nullopt;
      uint32_t cp = 0;
      for (char c : digits) {
        int d = c >= '0' && c <= '9'          ? c - '0'
                : hex && c >= 'a' && c <= 'f' ? c - 'a' + 10
                : hex && c >= 'A' && c <= 'F' ? c - 'A' + 10
                                              : -1;
        if (d < 0) return std::nullopt;
        cp = cp * (hex ? 16 : 10) + static_cast<uint32_t>(d);
        if (cp > 0x10FFFF) return std::nullopt;
      }
      if (cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF)) return std::nullopt;
      AppendUtf8(out, cp);
    } else {
      return std::nullopt;
    }
  }
  return out;
}

bool UsableName(std::string_view n) {
  return !n.empty() && n.size() <= 255 && n != "." && n != ".." &&
         n.find('/') == std::string_view::npos && n.find('\0') == std::string_view::npos;
}

namespace {

// One entry of this directory from an href, or nullopt.
std::optional<ListedEntry> EntryFromHref(std::string_view raw) {
  std::string href = DecodeEntities(raw);
  if (href.empty() || href.find_first_of("?#") != std::string::npos) return std::nullopt;
  if (href.front() == '/' || href.find(':') != std::string::npos) return std::nullopt;
  if (href.starts_with("./")) href.erase(0, 2);
  bool dir = href.ends_with('/');
  if (dir) href.pop_back();
  if (href.empty() || href.find('/') != std::string::npos) return std::nullopt;
  auto name = PercentDecode(href);
  if (!name || !UsableName(*name)) return std::nullopt;
  return ListedEntry{std::move(*name), dir, std::nullopt, std::nullopt};
}

// The text a link shows: tags dropped, entities resolved, spaces trimmed.
std::string LinkText(std::string_view inner) {
  std::string text;
  for (std::size_t i = 0; i < inner.size(); ++i) {
    if (inner[i] == '<') {
      std::size_t close = inner.find('>', i);
      if (close == std::string_view::npos) break;
      i = close;
      continue;
    }
    text += inner[i];
  }
  text = DecodeEntities(text);
  std::size_t b = text.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return {};
  std::size_t e = text.find_last_not_of(" \t\r\n");
  return text.substr(b, e - b + 1);
}

// Whether a link's text names the entry it links to, as generated indexes
// write it: the name, with '/' for a directory, perhaps cut short ("...",
// "..>", "\u2026").
bool TextNames(std::string_view text, const ListedEntry& e) {
  if (text == e.name || (e.is_dir && text == e.name + "/")) return true;
  for (std::string_view cut : {"...", "..>", "\xe2\x80\xa6"}) {
    if (text.size() > cut.size() && text.ends_with(cut) &&
        std::string_view(e.name).starts_with(text.substr(0, text.size() - cut.size())))
      return true;
  }
  return false;
}

bool TitledIndex(std::string_view body) {
  std::size_t head_end = std::min(body.size(), std::size_t{4096});
  std::string_view head = body.substr(0, head_end);
  for (std::string_view tag : {"<title>", "<h1>"}) {
    std::size_t at = FindNoCase(head, tag);
    if (at == std::string_view::npos) continue;
    std::string_view rest = head.substr(at + tag.size());
    while (!rest.empty() && std::isspace(static_cast<unsigned char>(rest.front())))
      rest.remove_prefix(1);
    if (FindNoCase(rest.substr(0, 32), "index of") == 0 ||
        FindNoCase(rest.substr(0, 32), "directory listing for") == 0)
      return true;
  }
  return false;
}

// An index page is known by its title or first heading ("Index of ...",
// "Directory listing for ..."), or, whatever its title (caddy, rclone, Go's
// file server), by its links: it links at least one entry of this
// directory, and every such link shows the entry's name as its text. A
// site's own page ("About us" -> about.html) is not one.
std::optional<std::vector<ListedEntry>> ParseHtml(std::string_view body) {
  bool titled = TitledIndex(body);
  bool texts_name_entries = true;
  std::map<std::string, ListedEntry> found;
  for (std::size_t pos = 0;;) {
    std::size_t a = FindNoCase(body, "<a ", pos);
    if (a == std::string_view::npos) break;
    std::size_t end = body.find('>', a);
    if (end == std::string_view::npos) break;
    pos = end;
    std::string_view tag = body.substr(a, end - a);
    std::size_t h = FindNoCase(tag, "href=");
    if (h == std::string_view::npos) continue;
    std::string_view v = tag.substr(h + 5);
    std::string_view value;
    if (!v.empty() && (v.front() == '"' || v.front() == '\'')) {
      std::size_t close = v.find(v.front(), 1);
      if (close == std::string_view::npos) continue;
      value = v.substr(1, close - 1);
    } else {
      std::size_t stop = v.find_first_of(" \t\r\n");
      value = v.substr(0, stop);
    }
    auto e = EntryFromHref(value);
    if (!e) continue;
    if (!titled && texts_name_entries) {
      // The link's text, within kMaxLinkText bytes of its tag (a page of
      // links that never close costs no more than that per link).
      constexpr std::size_t kMaxLinkText = 4096;
      std::size_t close =
          FindNoCase(body.substr(0, std::min(body.size(), end + 1 + kMaxLinkText)), "</a", end + 1);
      std::string_view inner = body.substr(
          end + 1, close == std::string_view::npos ? std::string_view::npos : close - end - 1);
      if (close == std::string_view::npos || !TextNames(LinkText(inner), *e))
        texts_name_entries = false;
    }
    found.try_emplace(e->name, std::move(*e));
  }
  if (!titled && (found.empty() || !texts_name_entries)) return std::nullopt;
  // A server that marks directories with a trailing '/' marks them all; on
  // a page without any such link, an entry may be a directory all the same
  // (servers that link "big" for big/): its type is not known.
  bool slashes =
      std::any_of(found.begin(), found.end(), [](const auto& f) { return f.second.is_dir; });
  std::vector<ListedEntry> out;
  for (auto& [name, e] : found) {
    if (!slashes) e.type_unknown = true;
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace

std::optional<std::vector<ListedEntry>> ParseIndexPage(std::string_view body,
                                                       std::string_view content_type) {
  // A file server's listing (the HTTP client names it so): its own formats.
  if (content_type == kMlsdListingType || content_type == kFtpListListingType)
    return ParseFtpListing(body);
  std::string_view b = body;
  while (!b.empty() && std::isspace(static_cast<unsigned char>(b.front()))) b.remove_prefix(1);
  bool json = FindNoCase(content_type, "json") != std::string_view::npos;
  // caddy answers an empty directory with null.
  if (json && b.starts_with("null") &&
      b.substr(4).find_first_not_of(" \t\r\n") == std::string_view::npos)
    return std::vector<ListedEntry>{};
  if (json || b.starts_with('[')) return listing_internal::ParseJson(b);
  return ParseHtml(body);
}

std::optional<uint64_t> ParseDigits(std::string_view s) {
  uint64_t v = 0;
  for (char c : s) {
    if (!std::isdigit(static_cast<unsigned char>(c)) || v > (UINT64_MAX - 9) / 10)
      return std::nullopt;
    v = v * 10 + static_cast<uint64_t>(c - '0');
  }
  return v;
}

namespace {

using ManifestDirs = std::map<std::string, std::map<std::string, ListedEntry>>;

// KEY[<tab>SIZE[<tab>MTIME]] (MTIME in seconds, fractions ignored): the key
// and the file's entry (its name still unset), or nullopt if malformed.
std::optional<std::pair<std::string_view, ListedEntry>> ParseManifestLine(std::string_view line) {
  std::vector<std::string_view> fields;
  for (std::size_t at = 0;;) {
    std::size_t tab = line.find('\t', at);
    fields.push_back(line.substr(at, tab == std::string_view::npos ? tab : tab - at));
    if (tab == std::string_view::npos) break;
    at = tab + 1;
  }
  if (fields.size() > 3) return std::nullopt;
  std::string_view key = fields[0];
  while (key.starts_with("./")) key.remove_prefix(2);
  if (key.empty() || key.front() == '/' || key.back() == '/') return std::nullopt;
  ListedEntry file;
  if (fields.size() > 1 && !fields[1].empty()) {
    auto size = ParseDigits(fields[1]);
    if (!size) return std::nullopt;
    file.size = *size;
  }
  if (fields.size() > 2 && !fields[2].empty()) {
    std::string_view m = fields[2];
    std::size_t dot = m.find('.');
    std::string_view whole = m.substr(0, dot);
    if (whole.empty() || whole.size() > 12) return std::nullopt;
    auto secs = ParseDigits(whole);
    if (!secs) return std::nullopt;
    if (dot != std::string_view::npos) {
      for (char c : m.substr(dot + 1)) {
        if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
      }
    }
    file.mtime = static_cast<int64_t>(*secs);
  }
  return std::make_pair(key, std::move(file));
}

// Enters the file at key and its parent directories; false where a name is
// unusable or both a file and a directory.
bool AddToTree(ManifestDirs& dirs, std::string_view key, ListedEntry file) {
  std::string dir;
  std::size_t start = 0;
  for (;;) {
    std::size_t slash = key.find('/', start);
    std::string_view seg =
        key.substr(start, slash == std::string_view::npos ? slash : slash - start);
    if (!UsableName(seg)) return false;
    auto& entries = dirs[dir];
    if (slash == std::string_view::npos) {
      file.name = std::string(seg);
      file.is_dir = false;
      auto it = entries.find(file.name);
      if (it != entries.end() && it->second.is_dir) return false;
      entries.insert_or_assign(file.name, file);
      return true;
    }
    auto it = entries.find(std::string(seg));
    if (it == entries.end()) {
      entries.emplace(std::string(seg),
                      ListedEntry{std::string(seg), true, std::nullopt, std::nullopt});
    } else if (!it->second.is_dir) {
      return false;
    }
    dir = dir.empty() ? std::string(seg) : dir + "/" + std::string(seg);
    dirs[dir];  // exists, even if only as a parent
    start = slash + 1;
  }
}

}  // namespace

std::optional<ManifestTree> ParseManifest(std::string_view text, std::size_t* bad_line) {
  ManifestDirs dirs;
  std::size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || line.front() == '#') continue;
    auto parsed = ParseManifestLine(line);
    if (!parsed || !AddToTree(dirs, parsed->first, std::move(parsed->second))) {
      if (bad_line) *bad_line = line_no;
      return std::nullopt;
    }
  }
  ManifestTree out;
  for (auto& [d, entries] : dirs) {
    auto& v = out[d];
    for (auto& [name, e] : entries) v.push_back(std::move(e));
  }
  return out;
}

namespace {

void PutU64(std::string& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out += static_cast<char>((v >> (8 * i)) & 0xFF);
}

bool GetU64(std::string_view& in, uint64_t* v) {
  if (in.size() < 8) return false;
  *v = 0;
  for (int i = 0; i < 8; ++i)
    *v |= static_cast<uint64_t>(static_cast<unsigned char>(in[i])) << (8 * i);
  in.remove_prefix(8);
  return true;
}

constexpr char kListingVersion = 1;

}  // namespace

std::string EncodeListing(const std::vector<ListedEntry>& entries) {
  std::string out(1, kListingVersion);
  PutU64(out, entries.size());
  for (const ListedEntry& e : entries) {
    out += static_cast<char>((e.is_dir ? 1 : 0) | (e.size ? 2 : 0) | (e.mtime ? 4 : 0) |
                             (e.type_unknown ? 8 : 0));
    PutU64(out, e.name.size());
    out += e.name;
    PutU64(out, e.size.value_or(0));
    PutU64(out, static_cast<uint64_t>(e.mtime.value_or(0)));
  }
  return out;
}

std::optional<std::vector<ListedEntry>> DecodeListing(std::string_view in) {
  if (in.empty() || in[0] != kListingVersion) return std::nullopt;
  in.remove_prefix(1);
  uint64_t n = 0;
  if (!GetU64(in, &n) || n > in.size()) return std::nullopt;
  std::vector<ListedEntry> out;
  out.reserve(static_cast<std::size_t>(n));
  for (uint64_t i = 0; i < n; ++i) {
    if (in.empty()) return std::nullopt;
    unsigned flags = static_cast<unsigned char>(in[0]);
    in.remove_prefix(1);
    uint64_t len = 0, size = 0, mtime = 0;
    if (!GetU64(in, &len) || len > in.size()) return std::nullopt;
    ListedEntry e;
    e.name = std::string(in.substr(0, static_cast<std::size_t>(len)));
    in.remove_prefix(static_cast<std::size_t>(len));
    if (!GetU64(in, &size) || !GetU64(in, &mtime) || !UsableName(e.name)) return std::nullopt;
    e.is_dir = flags & 1;
    e.type_unknown = flags & 8;
    if (flags & 2) e.size = size;
    if (flags & 4) e.mtime = static_cast<int64_t>(mtime);
    if (!out.empty() && !(out.back().name < e.name)) return std::nullopt;
    out.push_back(std::move(e));
  }
  if (!in.empty()) return std::nullopt;
  return out;
}

}  // namespace originfs
