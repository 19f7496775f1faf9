#include "core/rules.h"

#include <fstream>
#include <set>
#include <sstream>

#include <spdlog/fmt/fmt.h>
#include <toml++/toml.h>

namespace originfs {

std::string Rule::Describe() const {
  return fmt::format("rule #{} (prefix \"{}\")", index + 1, prefix);
}

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
    return Fail(EINVAL, fmt::format("origin \"{}\" must not contain a query, fragment or space", url));
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

namespace {

Result<DirMode> ParseDirMode(std::string_view s) {
  if (s == "probe") return DirMode::kProbe;
  if (s == "no-ext") return DirMode::kNoExt;
  if (s == "virtual") return DirMode::kVirtual;
  return Fail(EINVAL, fmt::format("dirs must be \"probe\", \"no-ext\" or \"virtual\", not \"{}\"", s));
}

const char* DirModeName(DirMode m) {
  switch (m) {
    case DirMode::kProbe: return "probe";
    case DirMode::kNoExt: return "no-ext";
    case DirMode::kVirtual: return "virtual";
  }
  return "?";
}

std::string NodeType(const toml::node& n) {
  std::ostringstream os;
  os << n.type();
  return os.str();
}

Result<Rule> ParseRule(const toml::table& t, std::size_t index, std::string_view source) {
  Rule rule;
  rule.index = index;
  auto where = [&](std::string_view what) {
    return fmt::format("{}: rule #{}: {}", source, index + 1, what);
  };
  bool have_origin = false;
  for (auto&& [k, v] : t) {
    std::string_view key = k.str();
    if (key == "prefix") {
      auto s = v.value<std::string>();
      if (!v.is_string() || !s) return Fail(EINVAL, where(fmt::format("prefix must be a string, not {}", NodeType(v))));
      rule.prefix = *s;
      if (rule.prefix.starts_with('/')) return Fail(EINVAL, where("prefix must not start with '/' (keys have no leading slash)"));
      if (rule.prefix.find('\0') != std::string::npos) return Fail(EINVAL, where("prefix contains a NUL byte"));
    } else if (key == "origin") {
      if (!v.is_string()) return Fail(EINVAL, where(fmt::format("origin must be a string, not {}", NodeType(v))));
      auto url = NormalizeOriginUrl(*v.value<std::string>());
      if (!url) return Fail(EINVAL, where(url.error().message));
      rule.origin = *url;
      have_origin = true;
    } else if (key == "writeback") {
      if (!v.is_boolean()) return Fail(EINVAL, where(fmt::format("writeback must be true or false, not {}", NodeType(v))));
      rule.writeback = *v.value<bool>();
    } else if (key == "dirs") {
      if (!v.is_string()) return Fail(EINVAL, where(fmt::format("dirs must be a string, not {}", NodeType(v))));
      auto m = ParseDirMode(*v.value<std::string>());
      if (!m) return Fail(EINVAL, where(m.error().message));
      rule.dirs = *m;
    } else {
      return Fail(EINVAL, where(fmt::format("unknown key \"{}\"", key)));
    }
  }
  if (!have_origin) return Fail(EINVAL, where("origin is missing"));
  return rule;
}

}  // namespace

Result<RuleSet> RuleSet::Parse(std::string_view text, std::string_view source) {
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
      return Fail(EINVAL, fmt::format("{}: unknown top-level key \"{}\" (expected [[rule]] tables)", source, k.str()));
    }
  }
  const toml::node* rules_node = doc.get("rule");
  if (!rules_node) return Fail(EINVAL, fmt::format("{}: no [[rule]] entries", source));
  const toml::array* arr = rules_node->as_array();
  if (!arr) return Fail(EINVAL, fmt::format("{}: \"rule\" must be an array of tables ([[rule]])", source));
  std::set<std::string> seen;
  for (std::size_t i = 0; i < arr->size(); ++i) {
    const toml::table* t = (*arr)[i].as_table();
    if (!t) return Fail(EINVAL, fmt::format("{}: rule #{}: must be a table", source, i + 1));
    auto rule = ParseRule(*t, i, source);
    if (!rule) return std::unexpected(rule.error());
    if (!seen.insert(rule->prefix).second) {
      return Fail(EINVAL, fmt::format("{}: rule #{}: duplicate prefix \"{}\"", source, i + 1, rule->prefix));
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
  return Parse(ss.str(), path);
}

Result<RuleSet> RuleSet::SingleOrigin(std::string_view url) {
  auto norm = NormalizeOriginUrl(url);
  if (!norm) return std::unexpected(norm.error());
  RuleSet set;
  Rule r;
  r.origin = *norm;
  set.rules_.push_back(std::move(r));
  return set;
}

std::vector<const Rule*> RuleSet::Match(std::string_view key) const {
  std::vector<const Rule*> out;
  for (const Rule& r : rules_) {
    if (key.starts_with(r.prefix)) out.push_back(&r);
  }
  return out;
}

bool RuleSet::PrefixImpliesDirectory(std::string_view key) const {
  if (key.empty()) return true;
  for (const Rule& r : rules_) {
    std::string_view p = r.prefix;
    if (p.size() > key.size() && p.starts_with(key) && p[key.size()] == '/') return true;
  }
  return false;
}

std::string RuleSet::Format() const {
  std::string out;
  for (const Rule& r : rules_) {
    out += fmt::format("rule #{}: prefix=\"{}\" origin={} writeback={} dirs={}\n", r.index + 1, r.prefix,
                       r.origin, r.writeback, DirModeName(r.dirs));
  }
  return out;
}

}  // namespace originfs
