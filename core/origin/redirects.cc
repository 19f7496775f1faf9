#include "core/origin/redirects.h"

#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

#include <spdlog/fmt/fmt.h>

namespace originfs {
namespace {

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// An absolute URL split at its authority: scheme ("http"), authority
// ("user@host:port"), and the rest ("/path?query", perhaps empty).
struct Split {
  std::string scheme, authority, rest;
};

std::optional<Split> SplitUrl(std::string_view url) {
  std::size_t colon = url.find("://");
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  for (char c : url.substr(0, colon))
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '+' && c != '-' && c != '.')
      return std::nullopt;
  Split s;
  s.scheme = Lower(std::string(url.substr(0, colon)));
  std::string_view after = url.substr(colon + 3);
  std::size_t end = after.find_first_of("/?#");
  s.authority = std::string(after.substr(0, end));
  if (end != std::string_view::npos) s.rest = std::string(after.substr(end));
  if (s.authority.empty()) return std::nullopt;
  return s;
}

// "a/b/../c/./d" -> "a/c/d", as RFC 3986 removes dot segments.
std::string RemoveDots(std::string_view path) {
  std::vector<std::string_view> out;
  std::size_t at = 0;
  bool trailing = false;
  while (at <= path.size()) {
    std::size_t slash = path.find('/', at);
    std::string_view seg =
        path.substr(at, slash == std::string_view::npos ? std::string_view::npos : slash - at);
    trailing = false;
    if (seg == "..") {
      if (out.size() > 1) out.pop_back();
      trailing = true;
    } else if (seg == ".") {
      trailing = true;
    } else {
      out.push_back(seg);
    }
    if (slash == std::string_view::npos) break;
    at = slash + 1;
  }
  std::string r;
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (i) r += '/';
    r += out[i];
  }
  if (trailing && !r.ends_with('/')) r += '/';
  if (!r.starts_with('/')) r.insert(0, "/");
  return r;
}

// Bytes a server should have escaped (spaces, controls, non-ASCII) escaped.
std::string EscapeRaw(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (c <= 0x20 || c >= 0x7f) {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// Whether one allowed entry (its "http://" already taken off) names a.
bool Names(std::string_view entry, const UrlAuthority& a) {
  if (entry == "*") return true;
  std::string e = Lower(std::string(entry));
  if (e.starts_with("*.")) return a.host.size() > e.size() - 1 && a.host.ends_with(e.substr(1));
  if (e.starts_with('[')) {  // "[::1]" or "[::1]:8080"
    std::size_t close = e.find(']');
    if (close == std::string::npos) return false;
    std::string host = e.substr(1, close - 1);
    if (host != a.host) return false;
    return close + 1 == e.size() || e.substr(close + 1) == ":" + std::to_string(a.port);
  }
  std::size_t colon = e.rfind(':');
  if (colon == std::string::npos) return e == a.host;
  return e.substr(0, colon) == a.host && e.substr(colon + 1) == std::to_string(a.port);
}

}  // namespace

std::string UrlAuthority::HostPort() const {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return h + ":" + std::to_string(port);
}

std::string UrlAuthority::Origin() const { return scheme + "://" + HostPort(); }

std::optional<UrlAuthority> AuthorityOf(std::string_view url) {
  auto s = SplitUrl(url);
  if (!s) return std::nullopt;
  UrlAuthority a;
  a.scheme = s->scheme;
  std::string_view hp = s->authority;
  // User information before one '@'; more than one is not read the way
  // every parser reads it: refused.
  if (std::count(hp.begin(), hp.end(), '@') > 1) return std::nullopt;
  if (hp.find_first_of("\\ ") != std::string_view::npos) return std::nullopt;
  if (std::size_t at = hp.find('@'); at != std::string_view::npos) hp.remove_prefix(at + 1);
  std::string_view port;
  if (hp.starts_with('[')) {
    std::size_t close = hp.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    a.host = Lower(std::string(hp.substr(1, close - 1)));
    std::string_view after = hp.substr(close + 1);
    if (!after.empty()) {
      if (!after.starts_with(':')) return std::nullopt;
      port = after.substr(1);
    }
  } else {
    std::size_t colon = hp.rfind(':');
    a.host = Lower(std::string(hp.substr(0, colon)));
    if (colon != std::string_view::npos) port = hp.substr(colon + 1);
  }
  if (a.host.empty()) return std::nullopt;
  if (port.empty()) {
    a.port = a.scheme == "https" ? 443 : a.scheme == "http" ? 80 : 0;  // others: refused later
  } else {
    if (port.size() > 5) return std::nullopt;
    for (char c : port)
      if (!std::isdigit(static_cast<unsigned char>(c))) return std::nullopt;
    a.port = std::stol(std::string(port));
    if (a.port < 1 || a.port > 65535) return std::nullopt;
  }
  return a;
}

std::optional<std::string> ResolveLocation(std::string_view base, std::string_view location) {
  auto b = SplitUrl(base);
  if (!b) return std::nullopt;
  std::string loc = EscapeRaw(location);
  loc = loc.substr(0, loc.find('#'));  // a fragment is the client's own business
  if (loc.find("://") != std::string::npos && loc.find("://") < loc.find_first_of("/?")) {
    auto l = SplitUrl(loc);
    if (!l) return std::nullopt;
    std::string rest = l->rest.empty() ? "/" : l->rest;
    return l->scheme + "://" + l->authority + rest;
  }
  if (loc.starts_with("//")) return ResolveLocation(base, b->scheme + ":" + loc);
  std::string base_path = b->rest.substr(0, b->rest.find('?'));
  if (base_path.empty()) base_path = "/";
  std::string path, query;
  if (loc.empty()) return b->scheme + "://" + b->authority + b->rest;
  if (loc.starts_with('?')) {
    path = base_path;
    query = loc;
  } else {
    std::size_t q = loc.find('?');
    std::string p = loc.substr(0, q);
    if (q != std::string::npos) query = loc.substr(q);
    path = p.starts_with('/') ? p : base_path.substr(0, base_path.rfind('/') + 1) + p;
    path = RemoveDots(path);
  }
  return b->scheme + "://" + b->authority + path + query;
}

std::string RedirectRefusal(const RedirectPolicy& policy, std::string_view from,
                            std::string_view to) {
  auto f = AuthorityOf(from);
  auto t = AuthorityOf(to);
  if (!f || !t) return "not an http(s) URL";
  if (t->scheme != "http" && t->scheme != "https")
    return fmt::format("scheme {} is not http(s)", t->scheme);
  bool downgrade = f->scheme == "https" && t->scheme == "http";
  bool named = false;  // by some entry, perhaps one without "http://"
  for (std::string_view e : policy.allowed) {
    bool plain_ok = e.starts_with("http://");
    if (plain_ok) e.remove_prefix(7);
    if (e.starts_with("https://")) e.remove_prefix(8);
    if (!Names(e, *t)) continue;
    if (!downgrade || plain_ok) return "";
    named = true;
  }
  if (named) return "https to plain http (allow it with \"http://HOST\")";
  return fmt::format("host {} is not in the rule's redirect_hosts", t->HostPort());
}

bool Trusted(const RedirectPolicy& policy, std::string_view url) {
  auto a = AuthorityOf(url);
  if (!a) return false;
  std::string origin = a->Origin();
  return std::any_of(policy.trusted.begin(), policy.trusted.end(),
                     [&](const std::string& t) { return Lower(t) == origin; });
}

}  // namespace originfs
