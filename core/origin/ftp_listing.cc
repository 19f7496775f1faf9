#include "core/origin/ftp_listing.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <ctime>
#include <string>

namespace originfs {
namespace {

std::optional<uint64_t> Number(std::string_view s) {
  return s.empty() ? std::nullopt : ParseDigits(s);
}

bool IEqual(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// "type=file;size=12;modify=20240105123000; name"
std::optional<ListedEntry> MlsdLine(std::string_view line, bool* skip) {
  std::size_t space = line.find(' ');
  if (space == std::string_view::npos || space == 0) return std::nullopt;
  std::string_view facts = line.substr(0, space);
  if (facts.back() != ';' || facts.find('=') == std::string_view::npos) return std::nullopt;
  ListedEntry e;
  e.name = std::string(line.substr(space + 1));
  bool typed = false;
  while (!facts.empty()) {
    std::size_t semi = facts.find(';');
    std::string_view fact = facts.substr(0, semi);
    facts.remove_prefix(semi == std::string_view::npos ? facts.size() : semi + 1);
    std::size_t eq = fact.find('=');
    if (eq == std::string_view::npos) return std::nullopt;
    std::string_view k = fact.substr(0, eq), v = fact.substr(eq + 1);
    if (IEqual(k, "type")) {
      typed = true;
      if (IEqual(v, "cdir") || IEqual(v, "pdir")) {
        *skip = true;
        return std::nullopt;
      }
      e.is_dir = IEqual(v, "dir");
      // OS.unix=slink:TARGET and the like: what it leads to is not said.
      e.type_unknown = !e.is_dir && !IEqual(v, "file");
    } else if (IEqual(k, "size")) {
      e.size = Number(v);
    } else if (IEqual(k, "modify")) {
      e.mtime = ParseMlsdTime(v);
    }
  }
  if (!typed) return std::nullopt;
  if (e.is_dir || e.type_unknown) e.size.reset();
  return e;
}

constexpr std::array<std::string_view, 12> kMonths = {"jan", "feb", "mar", "apr", "may", "jun",
                                                      "jul", "aug", "sep", "oct", "nov", "dec"};

bool IsMonth(std::string_view s) {
  return std::any_of(kMonths.begin(), kMonths.end(),
                     [&](std::string_view m) { return IEqual(s, m); });
}

// Splits off the first whitespace-separated token of *rest.
std::string_view Token(std::string_view* rest) {
  std::string_view& r = *rest;
  while (!r.empty() && (r.front() == ' ' || r.front() == '\t')) r.remove_prefix(1);
  std::size_t end = r.find_first_of(" \t");
  std::string_view t = r.substr(0, end);
  r.remove_prefix(end == std::string_view::npos ? r.size() : end);
  return t;
}

// "-rw-r--r--   1 owner group   1234 Dec  5 18:30 name" (also without the
// group, and "lrwxrwxrwx ... name -> target").
std::optional<ListedEntry> UnixLine(std::string_view line) {
  if (line.size() < 10 || std::string_view("-dlbcps").find(line[0]) == std::string_view::npos)
    return std::nullopt;
  std::string_view rest = line;
  std::string_view perms = Token(&rest);
  if (perms.size() < 10) return std::nullopt;
  // Tokens up to the month: the size is the one just before it.
  std::vector<std::string_view> before;
  std::string_view month;
  for (int i = 0; i < 6 && !rest.empty(); ++i) {
    std::string_view t = Token(&rest);
    if (IsMonth(t) && !before.empty() && Number(before.back())) {
      month = t;
      break;
    }
    before.push_back(t);
  }
  if (month.empty()) return std::nullopt;
  std::string_view day = Token(&rest), when = Token(&rest);
  if (!Number(day) || when.empty()) return std::nullopt;
  // One space separates the time (or year) from the name.
  if (rest.empty() || (rest.front() != ' ' && rest.front() != '\t')) return std::nullopt;
  rest.remove_prefix(1);
  ListedEntry e;
  char type = line[0];
  std::string_view name = rest;
  if (type == 'l') {
    name = name.substr(0, name.find(" -> "));
    e.type_unknown = true;
  }
  e.name = std::string(name);
  e.is_dir = type == 'd';
  if (type == '-') e.size = Number(before.back());
  return e;
}

// "12-05-24  06:30PM       <DIR>          name" or "...  1234 name".
std::optional<ListedEntry> WindowsLine(std::string_view line) {
  std::string_view rest = line;
  std::string_view date = Token(&rest), time = Token(&rest), what = Token(&rest);
  if (date.size() < 8 || date[2] != '-' || date[5] != '-' || time.size() < 6 ||
      time.find(':') == std::string_view::npos)
    return std::nullopt;
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  ListedEntry e;
  e.name = std::string(rest);
  if (IEqual(what, "<DIR>")) {
    e.is_dir = true;
  } else if (auto n = Number(what)) {
    e.size = n;
  } else {
    return std::nullopt;
  }
  return e;
}

}  // namespace

std::optional<int64_t> ParseMlsdTime(std::string_view s) {
  if (s.size() < 14) return std::nullopt;
  auto part = [&](std::size_t at, std::size_t n) { return Number(s.substr(at, n)); };
  auto y = part(0, 4), mo = part(4, 2), d = part(6, 2), h = part(8, 2), mi = part(10, 2),
       se = part(12, 2);
  if (!y || !mo || !d || !h || !mi || !se || *mo < 1 || *mo > 12 || *d < 1 || *d > 31 || *h > 23 ||
      *mi > 59 || *se > 60)
    return std::nullopt;
  struct tm tm {};
  tm.tm_year = static_cast<int>(*y) - 1900;
  tm.tm_mon = static_cast<int>(*mo) - 1;
  tm.tm_mday = static_cast<int>(*d);
  tm.tm_hour = static_cast<int>(*h);
  tm.tm_min = static_cast<int>(*mi);
  tm.tm_sec = static_cast<int>(*se);
  return static_cast<int64_t>(timegm(&tm));
}

std::optional<std::vector<ListedEntry>> ParseFtpListing(std::string_view body) {
  std::vector<ListedEntry> out;
  bool any_text = false, any_line = false;
  while (!body.empty()) {
    std::size_t nl = body.find('\n');
    std::string_view line = body.substr(0, nl);
    body.remove_prefix(nl == std::string_view::npos ? body.size() : nl + 1);
    if (line.ends_with('\r')) line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) continue;
    if (line.starts_with("total ")) continue;  // ls's block count
    any_text = true;
    bool skip = false;
    std::optional<ListedEntry> e = MlsdLine(line, &skip);
    if (!e && !skip) e = UnixLine(line);
    if (!e && !skip) e = WindowsLine(line);
    if (skip || e) any_line = true;
    if (!e || !UsableName(e->name)) continue;
    out.push_back(std::move(*e));
  }
  if (any_text && !any_line) return std::nullopt;
  std::sort(out.begin(), out.end(),
            [](const ListedEntry& a, const ListedEntry& b) { return a.name < b.name; });
  out.erase(
      std::unique(out.begin(), out.end(),
                  [](const ListedEntry& a, const ListedEntry& b) { return a.name == b.name; }),
      out.end());
  return out;
}

}  // namespace originfs
