// Checks of a rules file's text that need no TOML parser: origin URLs, and
// where non-ASCII bytes may stand (rules.cc runs them before toml++).
#include "core/config/rule_text.h"

#include <algorithm>
#include <cctype>

#include <spdlog/fmt/fmt.h>

#include "core/config/rules.h"

namespace originfs {

Result<std::string> NormalizeOriginUrl(std::string_view url) {
  std::string_view rest;
  if (url.starts_with("http://")) {
    rest = url.substr(7);
  } else if (url.starts_with("https://")) {
    rest = url.substr(8);
  } else if (url.starts_with("ftp://") || url.starts_with("sftp://") ||
             url.starts_with("ftps://")) {
    rest = url.substr(url.find("://") + 3);
  } else {
    return Fail(EINVAL,
                fmt::format("origin \"{}\" must start with http://, https://, ftp://, ftps:// "
                            "or sftp://",
                            url));
  }
  std::size_t host_end = rest.find('/');
  std::string_view host = rest.substr(0, host_end);
  if (std::size_t at = host.find('@'); at != std::string_view::npos && !url.starts_with("http")) {
    // A file server's user may be named (sftp://migrator@host/); a password
    // there would end up in logs and listings of the rules.
    if (host.substr(0, at).find(':') != std::string_view::npos)
      return Fail(EINVAL, fmt::format("origin \"{}{}\": put the password in credentials_file, "
                                      "not in the URL",
                                      url.substr(0, url.find("://") + 3), rest.substr(at + 1)));
    if (at == 0) return Fail(EINVAL, fmt::format("origin \"{}\" has no valid user", url));
    host.remove_prefix(at + 1);
  }
  if (host.empty() || host.find_first_of(" \t@") != std::string_view::npos) {
    return Fail(EINVAL, fmt::format("origin \"{}\" has no valid host", url));
  }
  if (url.find_first_of("?# \t\r\n") != std::string_view::npos) {
    return Fail(EINVAL,
                fmt::format("origin \"{}\" must not contain a query, fragment or space", url));
  }
  for (unsigned char c : url) {
    if (c < 0x20 || c >= 0x7f) {
      return Fail(EINVAL, fmt::format("origin \"{}\" contains a control or non-ASCII byte", url));
    }
  }
  std::string out(url);
  while (out.ends_with('/')) out.pop_back();
  return out;
}

// TOML allows non-ASCII only inside strings and comments. Anything else is a
// syntax error, which is reported here: toml++ 3.3 (Debian 12) reaches
// undefined behaviour on some such input (its whitespace table, upstream #190).
Result<void> CheckNonAsciiPlacement(std::string_view text, std::string_view source) {
  enum class State {
    kNormal,
    kComment,
    kBasic,
    kLiteral,
    kMlBasic,
    kMlLiteral
  } st = State::kNormal;
  std::size_t line = 1, col = 1;
  for (std::size_t i = 0; i < text.size(); ++i, ++col) {
    char c = text[i];
    std::string_view rest = text.substr(i);
    if (c == '\n') {
      ++line;
      col = 0;
      if (st == State::kComment) st = State::kNormal;
      continue;
    }
    switch (st) {
      case State::kNormal:
        if (static_cast<unsigned char>(c) >= 0x80) {
          return Fail(EINVAL,
                      fmt::format("{}:{}:{}: non-ASCII character outside a string or comment",
                                  source, line, col));
        }
        if (c == '#') {
          st = State::kComment;
        } else if (rest.starts_with("\"\"\"")) {
          st = State::kMlBasic;
          i += 2;
        } else if (rest.starts_with("'''")) {
          st = State::kMlLiteral;
          i += 2;
        } else if (c == '"') {
          st = State::kBasic;
        } else if (c == '\'') {
          st = State::kLiteral;
        }
        break;
      case State::kComment:
        break;
      case State::kBasic:
        if (c == '\\') {
          ++i;
        } else if (c == '"') {
          st = State::kNormal;
        }
        break;
      case State::kLiteral:
        if (c == '\'') st = State::kNormal;
        break;
      case State::kMlBasic:
        if (c == '\\') {
          ++i;
        } else if (rest.starts_with("\"\"\"")) {
          st = State::kNormal;
          i += 2;
        }
        break;
      case State::kMlLiteral:
        if (rest.starts_with("'''")) {
          st = State::kNormal;
          i += 2;
        }
        break;
    }
  }
  return {};
}

Result<int64_t> ParseDuration(std::string_view key, std::string_view text) {
  auto bad = [&] {
    return Fail(EINVAL, fmt::format("{} must be a duration such as \"0s\", \"30s\", \"15m\", "
                                    "\"2h\" or \"1d\", not \"{}\"",
                                    key, text));
  };
  std::size_t digits = 0;
  int64_t n = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') {
    if (n > 100'000'000) return bad();
    n = n * 10 + (text[digits++] - '0');
  }
  if (digits == 0) return bad();
  std::string_view unit = text.substr(digits);
  int64_t scale = unit.empty() || unit == "s" ? 1
                  : unit == "m"               ? 60
                  : unit == "h"               ? 3600
                  : unit == "d"               ? 86400
                                              : 0;
  if (scale == 0) return bad();
  if (n * scale > 365ll * 86400) return bad();
  return n * scale;
}

namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

std::string_view TrimSpace(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// "Text/HTML; charset=utf-8" -> "text/html".
std::string MediaType(std::string_view content_type) {
  return Lower(TrimSpace(content_type.substr(0, content_type.find(';'))));
}

// W/"abc" and "abc" -> abc: a weak and a strong tag of one page are one page.
std::string_view BareEtag(std::string_view etag) {
  etag = TrimSpace(etag);
  if (etag.starts_with("W/")) etag.remove_prefix(2);
  if (etag.size() >= 2 && etag.front() == '"' && etag.back() == '"')
    etag = etag.substr(1, etag.size() - 2);
  return etag;
}

Soft404 Soft404::Of(std::string_view content_type, std::optional<uint64_t> size,
                    std::string_view etag) {
  Soft404 s;
  if (!content_type.empty()) s.content_types.push_back(MediaType(content_type));
  if (size) s.sizes.push_back(*size);
  if (!BareEtag(etag).empty()) s.etags.emplace_back(BareEtag(etag));
  return s;
}

bool Soft404::Matches(std::string_view content_type, std::optional<uint64_t> size,
                      std::string_view etag) const {
  if (content_types.empty() && sizes.empty() && etags.empty()) return false;
  if (!content_types.empty() && std::find(content_types.begin(), content_types.end(),
                                          MediaType(content_type)) == content_types.end())
    return false;
  if (!sizes.empty() && (!size || std::find(sizes.begin(), sizes.end(), *size) == sizes.end()))
    return false;
  if (!etags.empty() &&
      (etag.empty() || std::find(etags.begin(), etags.end(), BareEtag(etag)) == etags.end()))
    return false;
  return true;
}

}  // namespace originfs
