// What a parsed rule set answers: which rules match a key, and how the rules
// read back (`originfs check`, `user.originfs.rules`). Parsing is rules.cc.
#include <algorithm>
#include <string>
#include <vector>

#include <fmt/ranges.h>
#include <spdlog/fmt/fmt.h>

#include "core/config/rules.h"

namespace originfs {

std::string Rule::Describe() const {
  return fmt::format("rule #{} (prefix \"{}\")", index + 1, prefix);
}

namespace {

const char* ListModeName(ListMode m) {
  switch (m) {
    case ListMode::kAuto:
      return "auto";
    case ListMode::kNone:
      return "none";
    case ListMode::kAutoindex:
      return "autoindex";
    case ListMode::kManifest:
      return "manifest";
    case ListMode::kS3:
      return "s3";
    case ListMode::kWebdav:
      return "webdav";
  }
  return "?";
}

const char* DirModeName(DirMode m) {
  switch (m) {
    case DirMode::kProbe:
      return "probe";
    case DirMode::kNoExt:
      return "no-ext";
    case DirMode::kVirtual:
      return "virtual";
  }
  return "?";
}

}  // namespace

Result<RuleSet> RuleSet::SingleOrigin(std::string_view url) {
  auto norm = NormalizeOriginUrl(url);
  if (!norm) return std::unexpected(norm.error());
  RuleSet set;
  Rule r;
  r.origin = *norm;
  r.origins = {*norm};
  set.rules_.push_back(std::move(r));
  return set;
}

std::vector<const Rule*> RuleSet::Match(std::string_view key) const {
  std::vector<const Rule*> out;
  for (const Rule& r : rules_) {
    if (!r.Matches(key)) continue;
    if (r.retired) break;  // a plain directory from here on
    out.push_back(&r);
  }
  return out;
}

bool RuleSet::PrefixImpliesDirectory(std::string_view key) const {
  if (key.empty()) return true;
  for (const Rule& r : rules_) {
    std::string_view p = r.prefix;
    if (r.retired) continue;
    if (p.size() > key.size() && p.starts_with(key) && p[key.size()] == '/') return true;
  }
  return false;
}

std::string RuleSet::Format() const {
  std::string out;
  for (const Rule& r : rules_) {
    out += fmt::format("rule #{}: prefix=\"{}\"", r.index + 1, r.prefix);
    if (!r.suffix.empty()) out += fmt::format(" suffix=\"{}\"", r.suffix);
    out += r.origins.size() > 1 ? fmt::format(" origins=[{}]", fmt::join(r.origins, ", "))
                                : fmt::format(" origin={}", r.origin);
    if (r.type == OriginType::kS3) {
      out += fmt::format(" type=s3 region={}", r.region);
      if (r.virtual_host) out += " virtual_host=true";
      out += fmt::format(" credentials={}",
                         r.credentials ? r.credentials->source : "none (anonymous)");
    }
    if (r.login) out += fmt::format(" login={}", r.login->source);
    if (!r.netrc.empty()) out += fmt::format(" netrc={}", r.netrc);
    if (!r.ssh_key.empty()) out += fmt::format(" ssh_key={}", r.ssh_key);
    if (!r.known_hosts.empty()) out += fmt::format(" known_hosts={}", r.known_hosts);
    out += fmt::format(" writeback={} dirs={}", r.writeback, DirModeName(r.dirs));
    if (r.list != ListMode::kAuto && !(r.list == ListMode::kS3 && r.type == OriginType::kS3))
      out += fmt::format(" list={}", ListModeName(r.list));
    if (r.list_ttl != 300) out += fmt::format(" list_ttl={}", r.list_ttl);
    if (r.absent_ttl) out += fmt::format(" absent_ttl={}", *r.absent_ttl);
    if (r.revalidate) out += fmt::format(" revalidate={}s", *r.revalidate);
    if (r.retired) out += " state=retired";
    if (r.offline_absent) out += " offline=absent";
    if (!r.manifest.empty()) out += fmt::format(" manifest={}", r.manifest);
    if (r.replace_prefix) out += fmt::format(" replace_prefix=\"{}\"", *r.replace_prefix);
    if (!r.headers.empty()) {
      std::vector<std::string> names;
      for (const auto& h : r.headers) names.push_back(h.first);
      out += fmt::format(" headers=[{}] (values hidden)", fmt::join(names, ", "));
    }
    if (!r.follow_redirects) out += " follow_redirects=false";
    if (r.max_redirects) out += fmt::format(" max_redirects={}", *r.max_redirects);
    if (!r.detect_soft_404) out += " detect_soft_404=false";
    if (!r.redirect_hosts.empty())
      out += fmt::format(" redirect_hosts=[{}]", fmt::join(r.redirect_hosts, ", "));
    if (r.verify == Verify::kContentMd5) out += " verify=content-md5";
    if (r.verify == Verify::kEtagMd5) out += " verify=etag-md5";
    if (r.verify == Verify::kS3Etag && r.type != OriginType::kS3) out += " verify=s3-etag";
    if (r.connect_timeout) out += fmt::format(" connect_timeout={}", *r.connect_timeout);
    if (r.timeout) out += fmt::format(" timeout={}", *r.timeout);
    if (r.retries) out += fmt::format(" retries={}", *r.retries);
    if (r.max_object_size) out += fmt::format(" max_object_size={}", *r.max_object_size);
    if (r.max_concurrent) out += fmt::format(" max_concurrent={}", r.max_concurrent);
    if (!r.ca_file.empty()) out += fmt::format(" ca_file={}", r.ca_file);
    if (r.insecure) out += " insecure=true";
    if (!r.mtime_from_origin) out += " mtime=fetch";
    if (!r.writeback) out += fmt::format(" cache_max_size={}", r.cache_max_size);
    if (r.fallthrough_on != std::vector<int>{404, 410})
      out += fmt::format(" fallthrough_on=[{}]", fmt::join(r.fallthrough_on, ", "));
    if (r.soft_404) {
      std::vector<std::string> fields;
      if (!r.soft_404->content_types.empty())
        fields.push_back(
            fmt::format("content_type=[{}]", fmt::join(r.soft_404->content_types, ", ")));
      if (!r.soft_404->sizes.empty())
        fields.push_back(fmt::format("size=[{}]", fmt::join(r.soft_404->sizes, ", ")));
      if (!r.soft_404->etags.empty())
        fields.push_back(fmt::format("etag=[{}]", fmt::join(r.soft_404->etags, ", ")));
      out += fmt::format(" soft_404={{{}}}", fmt::join(fields, " "));
    }
    out += "\n";
  }
  return out;
}

}  // namespace originfs
