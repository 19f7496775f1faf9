// Back-source rules: which origin serves which part of the key space.
//
// A key is a path below the mount point without the leading '/'. Rules are
// tried in file order; every rule whose prefix matches is a candidate, and a
// 404 from one candidate falls through to the next.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace originfs {

// How names that the origin does not know as files are resolved when they
// might be directories (see README "Directories").
enum class DirMode {
  kProbe,    // directory only if the origin says so (redirect to key/, or key/ answers)
  kNoExt,    // like kProbe, and a 404 name without '.' in its last segment is a directory
  kVirtual,  // like kProbe, and any 404 name is a directory
};

struct Rule {
  std::string prefix;     // plain string prefix of the key; "" matches all
  std::string origin;     // "http(s)://host[:port][/base]" without trailing '/'
  bool writeback = true;  // keep fetched objects in the bucket
  DirMode dirs = DirMode::kProbe;
  std::size_t index = 0;  // position in the file, 0-based

  // "rule #2 (prefix \"img/\")" for messages.
  std::string Describe() const;
};

class RuleSet {
 public:
  RuleSet() = default;

  // Parses a TOML rules document. Refuses unknown keys, wrong types, bad or
  // non-http(s) URLs and duplicate prefixes; the message names the rule.
  static Result<RuleSet> Parse(std::string_view toml_text, std::string_view source_name);
  static Result<RuleSet> Load(const std::string& path);
  // The origin=URL shortcut: one rule with an empty prefix.
  static Result<RuleSet> SingleOrigin(std::string_view url);

  const std::vector<Rule>& rules() const { return rules_; }
  bool empty() const { return rules_.empty(); }

  // Candidates for key, in the order they must be tried.
  std::vector<const Rule*> Match(std::string_view key) const;

  // True when key is a proper directory component of some rule's prefix,
  // e.g. "img" and "img/2024" for prefix "img/2024/".
  bool PrefixImpliesDirectory(std::string_view key) const;

  // Human-readable listing, one rule per line (used by `originfs check`).
  std::string Format() const;

 private:
  std::vector<Rule> rules_;
};

// Checks that url is an absolute http:// or https:// URL with a host and no
// query or fragment. Returns the URL with any trailing '/' removed.
Result<std::string> NormalizeOriginUrl(std::string_view url);

}  // namespace originfs
