#include "core/origin/webdav_listing.h"

#include <cctype>
#include <map>

#include "core/origin/http_client.h"

namespace originfs {
namespace {

// Percent-decodes a URL path ('/' kept); nullopt for a malformed escape or NUL.
std::optional<std::string> DecodePath(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size() || !std::isxdigit(static_cast<unsigned char>(s[i + 1])) ||
        !std::isxdigit(static_cast<unsigned char>(s[i + 2])))
      return std::nullopt;
    char c = static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
    if (c == '\0') return std::nullopt;
    out += c;
    i += 2;
  }
  return out;
}

// The path of an href: an absolute URL loses its scheme and host, and any
// query or fragment goes.
std::string_view HrefPath(std::string_view href) {
  if (std::size_t scheme = href.find("://"); scheme != std::string_view::npos) {
    std::size_t slash = href.find('/', scheme + 3);
    href = slash == std::string_view::npos ? std::string_view("/") : href.substr(slash);
  }
  return href.substr(0, href.find_first_of("?#"));
}

// One tag of the document: its local name (namespace prefix dropped,
// lowercased), whether it closes, whether it is empty (<x/>), and where the
// text after it starts.
struct Tag {
  std::string name;
  bool closing = false;
  bool empty = false;
  std::size_t begin = 0, end = 0;  // [begin, end) is the tag itself
};

// The next tag at or after pos, skipping comments, processing
// instructions and declarations; nullopt at the end or on a broken tag.
std::optional<Tag> NextTag(std::string_view x, std::size_t pos) {
  for (;;) {
    std::size_t lt = x.find('<', pos);
    if (lt == std::string_view::npos) return std::nullopt;
    if (x.substr(lt, 4) == "<!--") {
      std::size_t e = x.find("-->", lt + 4);
      if (e == std::string_view::npos) return std::nullopt;
      pos = e + 3;
      continue;
    }
    std::size_t gt = x.find('>', lt);
    if (gt == std::string_view::npos) return std::nullopt;
    if (x[lt + 1] == '?' || x[lt + 1] == '!') {
      pos = gt + 1;
      continue;
    }
    Tag t;
    t.begin = lt;
    t.end = gt + 1;
    std::size_t i = lt + 1;
    if (x[i] == '/') {
      t.closing = true;
      ++i;
    }
    std::size_t stop = x.find_first_of(" \t\r\n/>", i);
    std::string_view qname = x.substr(i, stop - i);
    if (std::size_t colon = qname.rfind(':'); colon != std::string_view::npos)
      qname.remove_prefix(colon + 1);
    for (char c : qname) t.name += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    t.empty = x[gt - 1] == '/';
    return t;
  }
}

struct Props {
  bool collection = false;
  std::optional<uint64_t> size;
  std::optional<int64_t> mtime;
};

std::optional<uint64_t> Digits(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  if (s.empty()) return std::nullopt;
  return ParseDigits(s);
}

}  // namespace

std::string_view PropfindBody() {
  return "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"
         "<D:propfind xmlns:D=\"DAV:\"><D:prop><D:resourcetype/><D:getcontentlength/>"
         "<D:getlastmodified/></D:prop></D:propfind>\n";
}

std::optional<std::vector<ListedEntry>> ParseMultistatus(std::string_view xml,
                                                         std::string_view dir_path) {
  auto base = DecodePath(HrefPath(dir_path));
  if (!base) return std::nullopt;
  if (!base->ends_with('/')) *base += '/';
  struct Response {
    std::string href;
    Props props;
  };
  std::vector<Response> responses;
  bool multistatus = false;
  std::optional<Response> cur;
  Props stat;  // the propstat being read, while in_stat
  bool in_stat = false, stat_ok = true, in_type = false;
  std::size_t text_from = 0;
  for (std::size_t pos = 0;;) {
    auto t = NextTag(xml, pos);
    if (!t) break;
    pos = t->end;
    if (!t->closing) {
      text_from = t->end;
      if (t->name == "multistatus") multistatus = true;
      if (t->name == "response" && !t->empty) cur.emplace();
      if (t->name == "propstat" && cur && !t->empty) {
        stat.collection = false;
        stat.size.reset();
        stat.mtime.reset();
        in_stat = true;
        stat_ok = true;
      }
      if (t->name == "resourcetype") in_type = !t->empty;
      if (t->name == "collection" && in_type && in_stat) stat.collection = true;
      continue;
    }
    auto text = XmlText(xml.substr(text_from, t->begin - text_from));
    if (t->name == "href" && cur && !in_stat && text) cur->href = *text;
    if (t->name == "resourcetype") in_type = false;
    if (in_stat && text) {
      if (t->name == "getcontentlength") stat.size = Digits(*text);
      if (t->name == "getlastmodified") stat.mtime = ParseHttpDate(*text);
      if (t->name == "status") stat_ok = text->find(" 200") != std::string::npos;
    }
    if (t->name == "propstat" && in_stat && cur) {
      if (stat_ok) {
        cur->props.collection |= stat.collection;
        if (stat.size) cur->props.size = stat.size;
        if (stat.mtime) cur->props.mtime = stat.mtime;
      }
      in_stat = false;
    }
    if (t->name == "response" && cur) {
      responses.push_back(std::move(*cur));
      cur.reset();
      in_stat = false;
    }
  }
  if (!multistatus) return std::nullopt;
  std::map<std::string, ListedEntry> found;
  for (const Response& r : responses) {
    auto path = DecodePath(HrefPath(r.href));
    if (!path || !path->starts_with(*base)) continue;
    std::string name = path->substr(base->size());
    if (name.ends_with('/')) name.pop_back();
    if (!UsableName(name)) continue;  // the collection itself, or deeper
    ListedEntry e{name, r.props.collection, std::nullopt, r.props.mtime};
    if (!e.is_dir) e.size = r.props.size;
    found.try_emplace(std::move(name), std::move(e));
  }
  std::vector<ListedEntry> out;
  for (auto& [name, e] : found) out.push_back(std::move(e));
  return out;
}

}  // namespace originfs
