// Checks of a rules file's text that need no TOML parser: origin URLs, and
// where non-ASCII bytes may stand (rules.cc runs them before toml++).
#include "core/config/rule_text.h"

#include <spdlog/fmt/fmt.h>

#include "core/config/rules.h"

namespace originfs {

Result<std::string> NormalizeOriginUrl(std::string_view url) {
  std::string_view rest;
  if (url.starts_with("http://")) {
    rest = url.substr(7);
  } else if (url.starts_with("https://")) {
    rest = url.substr(8);
  } else {
    return Fail(EINVAL, fmt::format("origin \"{}\" must start with http:// or https://", url));
  }
  std::size_t host_end = rest.find('/');
  std::string_view host = rest.substr(0, host_end);
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

}  // namespace originfs
