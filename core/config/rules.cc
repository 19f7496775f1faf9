#include "core/config/rules.h"

#include "core/config/file_origin.h"

#include <cmath>

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/ranges.h>
#include <spdlog/fmt/fmt.h>
#include <toml++/toml.h>

#include "core/common/sizes.h"
#include "core/config/rule_text.h"

namespace originfs {

namespace {

Result<DirMode> ParseDirMode(std::string_view s) {
  if (s == "probe") return DirMode::kProbe;
  if (s == "no-ext") return DirMode::kNoExt;
  if (s == "virtual") return DirMode::kVirtual;
  return Fail(EINVAL,
              fmt::format("dirs must be \"probe\", \"no-ext\" or \"virtual\", not \"{}\"", s));
}

Result<ListMode> ParseListMode(std::string_view s) {
  if (s == "auto") return ListMode::kAuto;
  if (s == "none") return ListMode::kNone;
  if (s == "autoindex") return ListMode::kAutoindex;
  if (s == "manifest") return ListMode::kManifest;
  if (s == "s3") return ListMode::kS3;
  if (s == "webdav") return ListMode::kWebdav;
  return Fail(EINVAL, fmt::format("list must be \"auto\", \"none\", \"autoindex\", \"webdav\", "
                                  "\"s3\" or \"manifest\", not \"{}\"",
                                  s));
}

std::string NodeType(const toml::node& n) {
  std::ostringstream os;
  os << n.type();
  return os.str();
}

// soft_404 = { content_type = "text/html", size = [612, 615], etag = "\"5f3a-264\"" }:
// each field one value or an array of them, at least one field.
template <class Where>
Result<Soft404> ParseSoft404(const toml::node& v, const Where& where) {
  const toml::table* t = v.as_table();
  if (!t || t->empty())
    return Fail(EINVAL, where(fmt::format("soft_404 must be a table of content_type, size and/or "
                                          "etag (soft_404 = {{ content_type = \"text/html\", "
                                          "size = 612 }}), not {}",
                                          t ? "an empty table" : NodeType(v))));
  // One value or an array of them, each checked by one().
  auto each = [&](std::string_view field, const toml::node& n, std::string_view want,
                  const auto& one) -> Result<void> {
    std::vector<const toml::node*> values;
    if (const toml::array* a = n.as_array()) {
      if (a->empty())
        return Fail(EINVAL, where(fmt::format("soft_404.{} must not be an empty array", field)));
      for (const auto& e : *a) values.push_back(&e);
    } else {
      values.push_back(&n);
    }
    for (const toml::node* e : values) {
      auto r = one(*e);
      if (!r) {
        if (!r.error().message.empty()) return Fail(EINVAL, where(r.error().message));
        return Fail(EINVAL, where(fmt::format("soft_404.{} must be {} or an array of them, not {}",
                                              field, want, NodeType(*e))));
      }
    }
    return {};
  };
  Soft404 soft;
  for (auto&& [k, n] : *t) {
    std::string_view field = k.str();
    Result<void> ok;
    if (field == "content_type") {
      ok = each(field, n, "a media type string", [&](const toml::node& e) -> Result<void> {
        if (!e.is_string()) return Fail(EINVAL, "");
        std::string type = MediaType(*e.value<std::string>());
        std::size_t slash = type.find('/');
        if (slash == 0 || slash == std::string::npos || slash + 1 == type.size() ||
            type.find_first_of(" \t\r\n\"") != std::string::npos)
          return Fail(EINVAL, fmt::format("soft_404.content_type \"{}\" is not a media type "
                                          "such as \"text/html\"",
                                          *e.value<std::string>()));
        soft.content_types.push_back(std::move(type));
        return {};
      });
    } else if (field == "size") {
      ok = each(field, n, "a size in bytes", [&](const toml::node& e) -> Result<void> {
        if (!e.is_integer()) return Fail(EINVAL, "");
        int64_t size = *e.value<int64_t>();
        if (size < 0) return Fail(EINVAL, "soft_404.size must not be negative");
        soft.sizes.push_back(static_cast<uint64_t>(size));
        return {};
      });
    } else if (field == "etag") {
      ok = each(field, n, "an ETag string", [&](const toml::node& e) -> Result<void> {
        if (!e.is_string()) return Fail(EINVAL, "");
        std::string raw = *e.value_exact<std::string>();  // tag points into it
        std::string_view tag = BareEtag(raw);
        if (tag.empty()) return Fail(EINVAL, "soft_404.etag must not be empty");
        soft.etags.emplace_back(tag);
        return {};
      });
    } else {
      return Fail(EINVAL, where(fmt::format("unknown key \"soft_404.{}\" (expected content_type, "
                                            "size or etag)",
                                            field)));
    }
    if (!ok) return std::unexpected(ok.error());
  }
  return soft;
}

// Reads one [[rule]] table's values with errors that name the rule and key.
class RuleReader {
 public:
  RuleReader(std::size_t index, std::string_view source) : index_(index), source_(source) {}

  std::string Where(std::string_view what) const {
    return fmt::format("{}: rule #{}: {}", source_, index_ + 1, what);
  }
  std::unexpected<Error> Bad(std::string_view what) const { return Fail(EINVAL, Where(what)); }
  std::unexpected<Error> BadType(std::string_view key, std::string_view want,
                                 const toml::node& v) const {
    return Bad(fmt::format("{} must be {}, not {}", key, want, NodeType(v)));
  }
  Result<std::string> String(std::string_view key, const toml::node& v) const {
    if (!v.is_string()) return BadType(key, "a string", v);
    std::string s = *v.value<std::string>();
    if (s.find('\0') != std::string::npos) return Bad(fmt::format("{} contains a NUL byte", key));
    return s;
  }
  Result<bool> Bool(std::string_view key, const toml::node& v) const {
    if (!v.is_boolean()) return BadType(key, "true or false", v);
    return *v.value<bool>();
  }
  Result<int64_t> Int(std::string_view key, const toml::node& v, int64_t lo, int64_t hi) const {
    if (!v.is_integer()) return BadType(key, "an integer", v);
    int64_t n = *v.value<int64_t>();
    if (n < lo || n > hi) return Bad(fmt::format("{} must be between {} and {}", key, lo, hi));
    return n;
  }
  Result<double> Seconds(std::string_view key, const toml::node& v) const {
    if (!v.is_number()) return BadType(key, "a number of seconds", v);
    double d = *v.value<double>();
    if (!std::isfinite(d) || d <= 0 || d > 86400)
      return Bad(fmt::format("{} must be in (0, 86400] seconds", key));
    return d;
  }
  // An integer of bytes or a string such as "512M".
  Result<uint64_t> Size(std::string_view key, const toml::node& v) const {
    if (v.is_integer()) {
      ORIGINFS_ASSIGN_OR_RETURN(int64_t n, Int(key, v, 1, INT64_MAX));
      return static_cast<uint64_t>(n);
    }
    if (!v.is_string()) return BadType(key, "a size (integer bytes or \"10G\")", v);
    auto size = ParseSize(*v.value<std::string>());
    if (!size || *size == 0) return Bad(fmt::format("{} must be a size such as 512M or 10G", key));
    return *size;
  }
  // One of the words in choices, as its index.
  Result<std::size_t> Choice(std::string_view key, const toml::node& v,
                             std::initializer_list<std::string_view> choices) const {
    ORIGINFS_ASSIGN_OR_RETURN(std::string s, String(key, v));
    std::string names;
    std::size_t i = 0;
    for (std::string_view c : choices) {
      if (s == c) return i;
      names += fmt::format("{}\"{}\"", i == 0 ? "" : i + 1 == choices.size() ? " or " : ", ", c);
      ++i;
    }
    return Bad(fmt::format("{} must be {}, not \"{}\"", key, names, s));
  }

  bool have_origin = false;
  bool have_verify = false;

 private:
  const std::size_t index_;
  const std::string_view source_;
};

Result<void> ReadOrigins(RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) {
  if (r.have_origin) return r.Bad("give either origin or origins, not both");
  std::vector<const toml::node*> urls;
  if (key == "origin") {
    if (!v.is_string()) return r.BadType(key, "a string", v);
    urls.push_back(&v);
  } else {
    const toml::array* a = v.as_array();
    if (!a || a->empty()) return r.BadType(key, "a non-empty array of URLs", v);
    for (const auto& e : *a) urls.push_back(&e);
  }
  for (const toml::node* n : urls) {
    if (!n->is_string()) return r.BadType(key, "URL strings", *n);
    auto url = NormalizeOriginUrl(*n->value<std::string>());
    if (!url) return r.Bad(url.error().message);
    rule.origins.push_back(*url);
  }
  rule.origin = rule.origins.front();
  r.have_origin = true;
  return {};
}

Result<void> ReadHeaders(RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) {
  const toml::table* h = v.as_table();
  if (!h) return r.BadType(key, "a table of header = \"value\"", v);
  for (auto&& [hk, hv] : *h) {
    std::string name(hk.str());
    if (name.empty() || name.find_first_of(" \t\r\n:") != std::string::npos)
      return r.Bad(fmt::format("header name \"{}\" is not valid", name));
    if (!hv.is_string()) return r.BadType(fmt::format("header {}", name), "a string", hv);
    std::string value = *hv.value<std::string>();
    if (value.find_first_of("\r\n") != std::string::npos || value.find('\0') != std::string::npos)
      return r.Bad(fmt::format("header {} has a line break in its value", name));
    rule.headers.emplace_back(std::move(name), std::move(value));
  }
  return {};
}

// One entry per rule key: how its value is read into the rule.
struct RuleKey {
  std::string_view name;
  Result<void> (*read)(RuleReader& r, Rule& rule, std::string_view key, const toml::node& v);
};

constexpr RuleKey kRuleKeys[] = {
    {"prefix",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(rule.prefix, r.String(key, v));
       if (rule.prefix.starts_with('/'))
         return r.Bad("prefix must not start with '/' (keys have no leading slash)");
       return {};
     }},
    {"suffix",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(rule.suffix, r.String(key, v));
       return {};
     }},
    {"origin", ReadOrigins},
    {"origins", ReadOrigins},
    {"type",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(std::size_t i, r.Choice(key, v, {"http", "s3"}));
       rule.type = i == 1 ? OriginType::kS3 : OriginType::kHttp;
       return {};
     }},
    {"bucket",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(rule.s3_bucket, r.String(key, v));
       if (rule.s3_bucket.empty() || rule.s3_bucket.find_first_of("/?#% ") != std::string::npos)
         return r.Bad(fmt::format("bucket \"{}\" is not a bucket name", rule.s3_bucket));
       return {};
     }},
    {"virtual_host",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(rule.virtual_host, r.Bool(key, v));
       return {};
     }},
    {"region",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(rule.region, r.String(key, v));
       if (rule.region.empty() || rule.region.find_first_of(": /") != std::string::npos)
         return r.Bad(fmt::format("region \"{}\" is not a region name", rule.region));
       return {};
     }},
    {"credentials_file",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(rule.credentials_file, r.String(key, v));
       if (!rule.credentials_file.starts_with('/'))
         return r.Bad("credentials_file must be an absolute path");
       return {};
     }},
    {"netrc",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(rule.netrc, r.String(key, v));
       return {};
     }},
    {"ssh_key",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(rule.ssh_key, r.String(key, v));
       return {};
     }},
    {"known_hosts",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(rule.known_hosts, r.String(key, v));
       return {};
     }},
    {"profile",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(rule.profile, r.String(key, v));
       return {};
     }},
    {"writeback",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(rule.writeback, r.Bool(key, v));
       return {};
     }},
    {"dirs",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(std::string m, r.String(key, v));
       auto mode = ParseDirMode(m);
       if (!mode) return r.Bad(mode.error().message);
       rule.dirs = *mode;
       return {};
     }},
    {"list",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(std::string m, r.String(key, v));
       auto mode = ParseListMode(m);
       if (!mode) return r.Bad(mode.error().message);
       rule.list = *mode;
       return {};
     }},
    {"manifest",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(rule.manifest, r.String(key, v));
       if (rule.manifest.empty()) return r.Bad("manifest must not be empty");
       if (rule.manifest.find("://") != std::string::npos) {
         auto url = NormalizeOriginUrl(rule.manifest);
         if (!url) return r.Bad("manifest: " + url.error().message);
       }
       return {};
     }},
    {"offline",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(std::string m, r.String(key, v));
       if (m != "error" && m != "absent")
         return r.Bad(fmt::format("offline must be \"error\" or \"absent\", not \"{}\"", m));
       rule.offline_absent = m == "absent";
       return {};
     }},
    {"list_ttl",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(int64_t n, r.Int(key, v, 0, 365 * 86400));
       rule.list_ttl = static_cast<int>(n);
       return {};
     }},
    {"state",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(std::string s, r.String(key, v));
       if (s != "active" && s != "retired")
         return r.Bad(fmt::format("state must be \"active\" or \"retired\", not \"{}\"", s));
       rule.retired = s == "retired";
       return {};
     }},
    {"revalidate",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(std::string d, r.String(key, v));
       auto s = ParseDuration(key, d);
       if (!s) return r.Bad(s.error().message);
       rule.revalidate = *s;
       return {};
     }},
    {"absent_ttl",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(int64_t n, r.Int(key, v, 0, 365 * 86400));
       rule.absent_ttl = static_cast<int>(n);
       return {};
     }},
    {"replace_prefix",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(std::string p, r.String(key, v));
       if (p.starts_with('/')) return r.Bad("replace_prefix must not start with '/'");
       rule.replace_prefix = std::move(p);
       return {};
     }},
    {"strip_prefix",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(bool strip, r.Bool(key, v));
       if (strip) rule.replace_prefix = "";
       return {};
     }},
    {"headers", ReadHeaders},
    {"follow_redirects",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(rule.follow_redirects, r.Bool(key, v));
       return {};
     }},
    {"max_redirects",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(int64_t n, r.Int(key, v, 0, 50));
       rule.max_redirects = static_cast<long>(n);
       return {};
     }},
    {"verify",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(std::size_t i,
                                 r.Choice(key, v, {"content-md5", "etag-md5", "none"}));
       rule.verify = i == 0 ? Verify::kContentMd5 : i == 1 ? Verify::kEtagMd5 : Verify::kNone;
       r.have_verify = true;
       return {};
     }},
    {"connect_timeout",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(rule.connect_timeout, r.Seconds(key, v));
       return {};
     }},
    {"timeout",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(double d, r.Seconds(key, v));
       rule.timeout = std::max<long>(1, static_cast<long>(d));
       return {};
     }},
    {"retries",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(int64_t n, r.Int(key, v, 0, 20));
       rule.retries = static_cast<int>(n);
       return {};
     }},
    {"max_object_size",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(rule.max_object_size, r.Size(key, v));
       return {};
     }},
    {"cache_max_size",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(rule.cache_max_size, r.Size(key, v));
       return {};
     }},
    {"max_concurrent",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(int64_t n, r.Int(key, v, 1, 10000));
       rule.max_concurrent = static_cast<int>(n);
       return {};
     }},
    {"ca_file",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(rule.ca_file, r.String(key, v));
       if (access(rule.ca_file.c_str(), R_OK) != 0)
         return r.Bad(fmt::format("ca_file {} is not readable", rule.ca_file));
       return {};
     }},
    {"insecure",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(rule.insecure, r.Bool(key, v));
       return {};
     }},
    {"mtime",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(std::size_t i, r.Choice(key, v, {"origin", "fetch"}));
       rule.mtime_from_origin = i == 0;
       return {};
     }},
    {"fallthrough_on",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       const toml::array* a = v.as_array();
       if (!a) return r.BadType(key, "an array of HTTP statuses", v);
       rule.fallthrough_on.clear();
       for (const auto& e : *a) {
         ORIGINFS_ASSIGN_OR_RETURN(int64_t n, r.Int(key, e, 400, 599));
         rule.fallthrough_on.push_back(static_cast<int>(n));
       }
       return {};
     }},
    {"detect_soft_404",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(rule.detect_soft_404, r.Bool(key, v));
       return {};
     }},
    {"redirect_hosts",
     [](RuleReader& r, Rule& rule, std::string_view key, const toml::node& v) -> Result<void> {
       const toml::array* a = v.as_array();
       if (!a)
         return r.BadType(key, "an array of hosts (\"cdn.example\", \"*.example\", \"*\")", v);
       for (const auto& e : *a) {
         ORIGINFS_ASSIGN_OR_RETURN(std::string h, r.String(key, e));
         std::string_view bare = h;
         if (bare.starts_with("http://")) bare.remove_prefix(7);
         if (bare.empty() || bare.find_first_of("/?# ") != std::string_view::npos)
           return r.Bad(fmt::format("redirect_hosts: \"{}\" is not a host", h));
         rule.redirect_hosts.push_back(std::move(h));
       }
       return {};
     }},
    {"soft_404",
     [](RuleReader& r, Rule& rule, std::string_view, const toml::node& v) -> Result<void> {
       ORIGINFS_ASSIGN_OR_RETURN(rule.soft_404,
                                 ParseSoft404(v, [&r](std::string_view w) { return r.Where(w); }));
       return {};
     }},
};

// [profile] aws_access_key_id / aws_secret_access_key / aws_session_token of
// an AWS shared-credentials file, which must not be readable by others.
Result<S3Credentials> ReadCredentialsFile(const RuleReader& r, const std::string& path,
                                          const std::string& profile) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0)
    return r.Bad(fmt::format("credentials_file {}: {}", path, std::strerror(errno)));
  if ((st.st_mode & 077) != 0)
    return Fail(EACCES, r.Where(fmt::format("credentials_file {} is readable by others (mode "
                                            "{:o}); run chmod 600 {}",
                                            path, st.st_mode & 0777, path)));
  std::ifstream in(path);
  if (!in) return r.Bad(fmt::format("credentials_file {}: cannot read it", path));
  S3Credentials c;
  c.source = fmt::format("{} [{}]", path, profile);
  std::string line, section;
  bool found = false;
  while (std::getline(in, line)) {
    std::string_view l = TrimSpace(line);
    if (l.empty() || l.front() == '#' || l.front() == ';') continue;
    if (l.front() == '[' && l.back() == ']') {
      section = std::string(TrimSpace(l.substr(1, l.size() - 2)));
      if (section.starts_with("profile ")) section = std::string(TrimSpace(section.substr(8)));
      found |= section == profile;
      continue;
    }
    std::size_t eq = l.find('=');
    if (section != profile || eq == std::string_view::npos) continue;
    std::string_view k = TrimSpace(l.substr(0, eq)), v = TrimSpace(l.substr(eq + 1));
    if (k == "aws_access_key_id") c.access_key = v;
    if (k == "aws_secret_access_key") c.secret_key = v;
    if (k == "aws_session_token") c.session_token = v;
  }
  if (!found) return r.Bad(fmt::format("credentials_file {} has no profile [{}]", path, profile));
  if (c.access_key.empty() || c.secret_key.empty())
    return r.Bad(
        fmt::format("credentials_file {} [{}] lacks aws_access_key_id or "
                    "aws_secret_access_key",
                    path, profile));
  return c;
}

// type = "s3": the bucket in every origin URL and the keys to sign with.
Result<void> SetUpS3(const RuleReader& r, Rule& rule) {
  if (!rule.s3_bucket.empty()) {
    for (std::string& o : rule.origins) {
      if (rule.virtual_host) {
        std::size_t host = o.find("://") + 3;
        o.insert(host, rule.s3_bucket + ".");
      } else {
        o += "/" + rule.s3_bucket;
      }
    }
    rule.origin = rule.origins.front();
  } else if (rule.virtual_host) {
    return r.Bad("virtual_host = true needs bucket = \"name\"");
  }
  if (!rule.credentials_file.empty()) {
    ORIGINFS_ASSIGN_OR_RETURN(rule.credentials,
                              ReadCredentialsFile(r, rule.credentials_file, rule.profile));
    return {};
  }
  const char* id = std::getenv("AWS_ACCESS_KEY_ID");
  const char* secret = std::getenv("AWS_SECRET_ACCESS_KEY");
  if (id && *id && secret && *secret) {
    const char* token = std::getenv("AWS_SESSION_TOKEN");
    rule.credentials = S3Credentials{id, secret, token ? token : "", "environment"};
  }  // else: anonymous requests (a public bucket)
  return {};
}

Result<Rule> ParseRule(const toml::table& t, std::size_t index, std::string_view source) {
  Rule rule;
  rule.index = index;
  RuleReader r(index, source);
  for (auto&& [k, v] : t) {
    std::string_view key = k.str();
    const RuleKey* known = nullptr;
    for (const RuleKey& rk : kRuleKeys) {
      if (rk.name == key) known = &rk;
    }
    if (!known) return r.Bad(fmt::format("unknown key \"{}\"", key));
    ORIGINFS_TRY(known->read(r, rule, key, v));
  }
  if (!r.have_origin) return r.Bad("origin is missing");
  bool file_server = std::any_of(rule.origins.begin(), rule.origins.end(),
                                 [](const std::string& o) { return IsFileServerOrigin(o); });
  if (rule.type == OriginType::kS3) {
    if (file_server) return r.Bad("type = \"s3\" needs an http(s) origin");
    ORIGINFS_TRY(SetUpS3(r, rule));
  } else if (file_server) {
    if (auto f = SetUpFileServerRule(rule); !f)
      return std::unexpected(Error{f.error().code, r.Where(f.error().message)});
  } else if (!rule.s3_bucket.empty() || rule.virtual_host || !rule.credentials_file.empty()) {
    return r.Bad(
        "bucket, virtual_host and credentials_file go with type = \"s3\" or a file server");
  } else if (!rule.netrc.empty() || !rule.ssh_key.empty() || !rule.known_hosts.empty()) {
    return r.Bad("netrc, ssh_key and known_hosts go with ftp://, ftps:// and sftp:// origins");
  }
  if (rule.type == OriginType::kS3 && !r.have_verify) rule.verify = Verify::kS3Etag;
  if (rule.type == OriginType::kS3 && rule.list == ListMode::kAuto) rule.list = ListMode::kS3;
  if (rule.list == ListMode::kS3 && rule.type != OriginType::kS3)
    return r.Bad("list = \"s3\" needs type = \"s3\"");
  if (!rule.manifest.empty() && rule.list == ListMode::kAuto) rule.list = ListMode::kManifest;
  if (rule.list == ListMode::kManifest && rule.manifest.empty())
    return r.Bad("list = \"manifest\" needs manifest = \"URL or path\"");
  if (!rule.manifest.empty() && rule.list != ListMode::kManifest)
    return r.Bad("manifest is only read with list = \"manifest\"");
  return rule;
}

}  // namespace

Result<RuleSet> RuleSet::Parse(std::string_view text, std::string_view source) {
  if (auto ok = CheckNonAsciiPlacement(text, source); !ok) return std::unexpected(ok.error());
  toml::table doc;
  try {
    doc = toml::parse(text, source);
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    return Fail(EINVAL, fmt::format("{}:{}:{}: {}", source, b.line, b.column, e.description()));
  }
  RuleSet set;
  for (auto&& [k, v] : doc) {
    if (k.str() != "rule") {
      return Fail(EINVAL, fmt::format("{}: unknown top-level key \"{}\" (expected [[rule]] tables)",
                                      source, k.str()));
    }
  }
  const toml::node* rules_node = doc.get("rule");
  if (!rules_node) return Fail(EINVAL, fmt::format("{}: no [[rule]] entries", source));
  const toml::array* arr = rules_node->as_array();
  if (!arr)
    return Fail(EINVAL, fmt::format("{}: \"rule\" must be an array of tables ([[rule]])", source));
  std::set<std::pair<std::string, std::string>> seen;
  for (std::size_t i = 0; i < arr->size(); ++i) {
    const toml::table* t = (*arr)[i].as_table();
    if (!t) return Fail(EINVAL, fmt::format("{}: rule #{}: must be a table", source, i + 1));
    auto rule = ParseRule(*t, i, source);
    if (!rule) return std::unexpected(rule.error());
    if (!seen.insert({rule->prefix, rule->suffix}).second) {
      if (rule->suffix.empty())
        return Fail(EINVAL, fmt::format("{}: rule #{}: duplicate prefix \"{}\"", source, i + 1,
                                        rule->prefix));
      return Fail(EINVAL, fmt::format("{}: rule #{}: duplicate prefix \"{}\" with suffix \"{}\"",
                                      source, i + 1, rule->prefix, rule->suffix));
    }
    set.rules_.push_back(std::move(*rule));
  }
  if (set.rules_.empty()) return Fail(EINVAL, fmt::format("{}: no [[rule]] entries", source));
  return set;
}

Result<RuleSet> RuleSet::Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return FailErrno(fmt::format("cannot read rules file {}", path));
  std::stringstream ss;
  ss << in.rdbuf();
  auto set = Parse(ss.str(), path);
  if (!set) return set;
  bool secrets = false;
  for (const Rule& r : set->rules_) secrets |= !r.headers.empty();
  struct stat st;
  if (secrets && stat(path.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
    return Fail(
        EACCES,
        fmt::format("{}: holds headers (credentials) but is readable by others (mode {:o}); "
                    "run chmod 600 {}",
                    path, st.st_mode & 0777, path));
  }
  return set;
}

}  // namespace originfs
