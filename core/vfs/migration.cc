// What `originfs verify` and `originfs stats MNT DIR` read through the
// mount: a directory's origin listing, page by page, and whether a file is
// the one that landed.
#include <set>

#include "core/vfs/control_protocol.h"
#include "core/vfs/inode.h"

namespace originfs {

namespace {

// A page stays under the kernel's limit for an attribute value (64 KiB).
constexpr std::size_t kMaxPage = 60 * 1024;

}  // namespace

std::vector<Counter> Vfs::RuleCounters() {
  auto rules = mirror_.rules();
  auto fetched = mirror_.FetchesByRule();
  auto of = [&](std::size_t i) {
    return i < fetched.size() ? fetched[i] : Mirror::RuleFetches{i, 0, 0, 0, 0};
  };
  std::vector<Counter> out;
  auto each = [&](const char* name, const char* help, bool gauge, auto value) {
    for (const Rule& r : rules->rules()) {
      std::string labels =
          fmt::format("rule=\"{}\",prefix={}", r.index + 1, PrometheusLabel(r.prefix));
      if (!r.suffix.empty()) labels += ",suffix=" + PrometheusLabel(r.suffix);
      out.push_back({name, help, value(r, of(r.index)), gauge, std::move(labels)});
    }
  };
  each("rule_fetches", "Objects landed from the rule's origins.", false,
       [](const Rule&, const Mirror::RuleFetches& f) { return f.fetches; });
  each("rule_fetched_bytes", "Bytes landed from the rule's origins.", false,
       [](const Rule&, const Mirror::RuleFetches& f) { return f.bytes; });
  each("rule_fetches_last_minute", "Objects landed from the rule's origins in the last 60 s.", true,
       [](const Rule&, const Mirror::RuleFetches& f) { return f.minute_fetches; });
  each("rule_fetched_bytes_last_minute", "Bytes landed from the rule's origins in the last 60 s.",
       true, [](const Rule&, const Mirror::RuleFetches& f) { return f.minute_bytes; });
  each("rule_retired", "1 when the rule is retired (state = \"retired\").", true,
       [](const Rule& r, const Mirror::RuleFetches&) { return uint64_t{r.retired}; });
  return out;
}

std::optional<Result<std::string>> Vfs::MigrationXattr(const InodeRef& inode,
                                                       std::string_view name) {
  if (name == control::kRuleStats && inode->ino == kRootIno) {
    auto rules = mirror_.rules();
    auto fetched = mirror_.FetchesByRule();
    std::string out;
    for (const Rule& r : rules->rules()) {
      Mirror::RuleFetches f{r.index, 0, 0, 0, 0};
      if (r.index < fetched.size()) f = fetched[r.index];
      out += fmt::format(
          "rule #{} prefix=\"{}\"{}{}: {} files ({} bytes) fetched, {} ({} bytes) in the last "
          "minute\n",
          r.index + 1, r.prefix, r.suffix.empty() ? "" : fmt::format(" suffix=\"{}\"", r.suffix),
          r.retired ? " (retired)" : "", f.fetches, f.bytes, f.minute_fetches, f.minute_bytes);
    }
    return out;
  }
  if (name == control::kLanded) {
    {
      std::lock_guard lock(inode->mu);
      if (inode->kind != InodeKind::kLocal) return Fail(ENODATA, "not in the bucket");
    }
    auto key = KeyOf(inode->ino);
    if (!key) return Fail(ENODATA, "no key");
    auto record = LandedHere(inode, *key);
    if (!record) return std::string("local file");
    if (auto changed = mirror_.ChangedSinceLanding(*key))
      return std::string(*changed == Mirror::RefreshOutcome::kLocalFile ? "local file"
                                                                        : "changed locally");
    return "unchanged " + record->etag;
  }
  if (!name.starts_with(control::kListing)) return std::nullopt;
  std::size_t first = 0;
  std::string_view n = name.substr(control::kListing.size());
  bool fresh = n == control::kListingFresh;
  if (fresh) n = "0";
  for (char c : n) {
    if (c < '0' || c > '9' || first > (1ull << 40)) return Fail(ENODATA, "no such attribute");
    first = first * 10 + static_cast<std::size_t>(c - '0');
  }
  if (n.empty()) return Fail(ENODATA, "no such attribute");
  auto key = KeyOf(inode->ino);
  if (!key) return Fail(ENODATA, "no key");
  if (auto st = StatInode(inode); !st || !S_ISDIR(st->st_mode))
    return Fail(ENOTDIR, "not a directory");
  if (fresh) mirror_.ExpireListing(*key);  // asked for again, now
  auto listing = mirror_.ListDir(*key);
  if (!listing) return std::unexpected(listing.error());
  if (!*listing) {
    // No listing: unknown where a rule sends the directory's names to an
    // origin; else the origin has nothing here but the directories of
    // rules' prefixes below it.
    std::string base = key->empty() ? "" : *key + "/";
    auto rules = mirror_.rules();
    std::set<std::string> implied;
    for (const Rule& r : rules->rules()) {
      if (r.retired) continue;
      if (base.starts_with(r.prefix)) return std::string("#none\n");
      if (r.prefix.size() > base.size() && r.prefix.starts_with(base))
        implied.insert(r.prefix.substr(base.size(), r.prefix.find('/', base.size()) - base.size()));
    }
    if (first > 0) return std::string("#end\n");
    std::string out;
    for (const std::string& d : implied)
      if (!d.empty()) out += fmt::format("d\t-\t-\t{}\n", d);
    return out + "#end\n";
  }
  // A line per entry: type (d, f, or ? where the page marks no directory),
  // exact size and mtime or "-", then the name (which has no newline: index
  // pages' names are one path segment, and such names are left out).
  const auto& entries = (*listing)->entries;
  std::string out;
  std::size_t i = first;
  for (; i < entries.size(); ++i) {
    const ListedEntry& e = entries[i];
    if (e.name.find('\n') != std::string::npos) continue;
    std::string line = fmt::format("{}\t{}\t{}\t{}\n",
                                   e.is_dir         ? 'd'
                                   : e.type_unknown ? '?'
                                                    : 'f',
                                   e.size ? std::to_string(*e.size) : "-",
                                   e.mtime ? std::to_string(*e.mtime) : "-", e.name);
    if (out.size() + line.size() > kMaxPage) break;
    out += line;
  }
  out += i < entries.size() ? fmt::format("#more {}\n", i) : "#end\n";
  return out;
}

}  // namespace originfs
