#include "core/mirror/mirror.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <strings.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <thread>

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include "core/config/file_origin.h"
#include "core/mirror/range_split.h"
#include "core/mirror/record.h"
#include "core/mirror/response_sink.h"
#include "core/origin/s3_listing.h"
#include "core/origin/url.h"
#include "core/origin/webdav_listing.h"

namespace originfs {

// Collects a directory's index page (bounded: a page is not an object).
class PageSink final : public HttpSink {
 public:
  explicit PageSink(std::size_t max = 64u << 20) : kMaxPage(max) {}
  std::size_t kMaxPage;
  bool OnHead(const HttpResponseHead& h) override {
    head_ = h;
    return h.status == 200 || h.status == 203 || h.status == 207;  // 207: a PROPFIND's answer
  }
  bool OnData(const char* data, std::size_t len) override {
    if (body_.size() + len > kMaxPage) {
      too_big_ = true;
      return false;
    }
    body_.append(data, len);
    return true;
  }
  HttpResponseHead head_;
  std::string body_;
  bool too_big_ = false;
};

const ListedEntry* OriginListing::Find(std::string_view name) const {
  auto it = std::lower_bound(entries.begin(), entries.end(), name,
                             [](const ListedEntry& e, std::string_view n) { return e.name < n; });
  return it != entries.end() && it->name == name ? &*it : nullptr;
}

std::optional<std::shared_ptr<const OriginListing>> Mirror::KeptListing(const std::string& dir) {
  int64_t expires = 0;
  auto kept = index_.GetListing(dir, Now(), &expires);
  if (!kept || !*kept) return std::nullopt;
  std::shared_ptr<const OriginListing> listing;
  if (!(*kept)->empty()) {
    auto entries = DecodeListing(**kept);
    if (!entries) return std::nullopt;  // not one: ask the origin
    auto l = std::make_shared<OriginListing>();
    l->entries = std::move(*entries);
    // Read from the origin list_ttl before it expires.
    auto rules = this->rules();
    if (const Rule* rule = ListingRule(*rules, dir.empty() ? "" : dir + "/"))
      l->listed_at = expires - std::max(rule->list_ttl, 0);
    listing = std::move(l);
  }
  // Its expiry is the index's; kept in memory for a short while (the index
  // answers again after that).
  std::lock_guard lock(listings_mu_);
  KeepListingLocked(dir, KnownListing{listing, Now() + kListingRetryS});
  return listing;
}

std::optional<std::shared_ptr<const OriginListing>> Mirror::KnownFreshListing(
    std::string_view dir_key) {
  // Only a directory under a rule that lists can have one (no index read
  // for the others, on every miss; none kept from before a reload that
  // retired the rule).
  std::string base = dir_key.empty() ? "" : std::string(dir_key) + "/";
  auto rules = this->rules();
  const Rule* rule = ListingRule(*rules, base);
  if (!rule) return nullptr;
  {
    std::lock_guard lock(listings_mu_);
    auto it = listings_.find(std::string(dir_key));
    if (it != listings_.end() && it->second.expires > Now()) return it->second.listing;
  }
  if (auto kept = KeptListing(std::string(dir_key))) return *kept;
  // A file server always lists, and a directory's name cannot be told from
  // a missing file's by asking for it: its listing is read first.
  if (rule->list != ListMode::kManifest && rule->list != ListMode::kS3 &&
      !(rule->list == ListMode::kAuto && IsFileServerOrigin(rule->origin)))
    return nullptr;
  return std::nullopt;
}

void Mirror::Defer(std::function<void()> f) { pool_->Submit(std::move(f)); }

bool Mirror::ListingExpired(std::string_view dir_key) {
  std::string dir(dir_key);
  {
    std::lock_guard lock(listings_mu_);
    auto it = listings_.find(dir);
    if (it != listings_.end() && it->second.expires > Now() && !it->second.failed) return false;
  }
  auto rules = this->rules();
  const Rule* rule = ListingRule(*rules, dir.empty() ? "" : dir + "/");
  if (!rule || rule->list == ListMode::kNone) return false;
  auto kept = index_.GetListing(dir, Now());
  return !(kept && *kept);
}

std::shared_ptr<const OriginListing> Mirror::FreshListing(std::string_view dir_key) {
  if (auto known = KnownFreshListing(dir_key)) return *known;
  // A manifest knows every directory without asking the origin; an S3
  // bucket answers a directory's listing in one request (per list_ttl),
  // which then answers every lookup in it.
  auto l = ListDir(dir_key);
  if (l) return *l;
  // Not asked again by every lookup in the directory while it fails.
  std::lock_guard lock(listings_mu_);
  KeepListingLocked(std::string(dir_key), KnownListing{nullptr, Now() + kListingRetryS, true});
  return nullptr;
}

Mirror::Absence Mirror::AbsenceOf(std::string_view dir_key, const OriginListing& l) {
  auto rules = this->rules();
  const Rule* rule = ListingRule(*rules, dir_key.empty() ? "" : std::string(dir_key) + "/");
  if (!rule) return Absence::kKnown;
  // A manifest is the operator's list of the origin's keys: its absences hold
  // as long as it does, unless the rule says otherwise.
  int ttl = rule->absent_ttl.value_or(rule->list == ListMode::kManifest ? rule->list_ttl
                                                                        : options_.negative_ttl_s);
  if (Now() - l.listed_at < ttl) return Absence::kKnown;
  return rule->dirs == DirMode::kProbe ? Absence::kAskName : Absence::kAskListing;
}

void Mirror::ExpireListing(std::string_view dir_key) {
  std::string dir(dir_key);
  if (auto kept = index_.GetListing(dir, Now()); kept && *kept) {
    if (auto p = index_.PutListing(dir, **kept, Now()); !p)
      spdlog::warn("index: {}", p.error().message);
  }
  std::lock_guard lock(listings_mu_);
  DropListingLocked(dir);
}

void Mirror::ForgetListing(std::string_view dir_key) {
  if (auto e = index_.EraseListing(dir_key); !e) spdlog::warn("index: {}", e.error().message);
  {
    // Asked for again by hand: the names in it are asked for at once too.
    std::string prefix = dir_key.empty() ? "" : std::string(dir_key) + "/";
    std::lock_guard lock(failures_mu_);
    std::erase_if(failures_, [&](const auto& f) {
      return f.first.starts_with(prefix) && f.first.find('/', prefix.size()) == std::string::npos;
    });
  }
  std::lock_guard lock(listings_mu_);
  DropListingLocked(std::string(dir_key));
}

void Mirror::DropListingLocked(const std::string& dir) {
  auto it = listings_.find(dir);
  if (it == listings_.end()) return;
  if (it->second.listing) listed_entries_ -= it->second.listing->entries.size();
  listings_.erase(it);
}

void Mirror::KeepListingLocked(const std::string& dir, KnownListing known) {
  DropListingLocked(dir);
  std::size_t n = known.listing ? known.listing->entries.size() : 0;
  if (listings_.size() >= kMaxListings || listed_entries_ + n > kMaxListedEntries) {
    listings_.clear();  // a cache, not a record
    listed_entries_ = 0;
  }
  listed_entries_ += n;  // (a directory bigger than the bound is kept alone)
  listings_[dir] = std::move(known);
}

Result<std::shared_ptr<const OriginListing>> Mirror::ListDir(std::string_view dir_key,
                                                             int64_t newer_than) {
  std::string dir(dir_key);
  auto counts = [&](const std::shared_ptr<const OriginListing>& l) {
    return newer_than < 0 || (l && l->listed_at > newer_than);
  };
  auto rules = this->rules();
  std::string base = dir.empty() ? "" : dir + "/";
  const Rule* rule = ListingRule(*rules, base);
  if (!rule) return std::shared_ptr<const OriginListing>();
  {
    std::lock_guard lock(listings_mu_);
    if (auto it = listings_.find(dir); it != listings_.end() && it->second.expires > Now() &&
                                       !it->second.failed && counts(it->second.listing))
      return it->second.listing;
  }
  if (auto kept = KeptListing(dir); kept && counts(*kept)) return *kept;
  if (rule->list == ListMode::kManifest) {
    auto tree = ManifestFor(*rule);
    if (!tree) return std::unexpected(tree.error());
    auto listing = std::make_shared<OriginListing>();
    if (auto it = (*tree)->find(dir); it != (*tree)->end()) {
      for (const ListedEntry& e : it->second) {
        if (!e.is_dir && rules->Match(base + e.name).empty()) continue;
        listing->entries.push_back(e);
      }
    }  // a directory the manifest does not have is empty at the origin
    return RememberListing(dir, *rule, std::move(listing));
  }
  if (rule->list == ListMode::kS3) return ListFromS3(dir, *rule, *rules);
  bool webdav = rule->list == ListMode::kWebdav;
  if (rule->list == ListMode::kAuto) {
    std::lock_guard lock(listings_mu_);
    webdav = webdav_rules_.contains(rule->index);
  }
  if (webdav) return ListFromWebdav(dir, *rule, *rules, false, nullptr);
  return ListFromIndexPage(dir, *rule, *rules);
}

namespace {

// The URL of a directory (base: its key and '/', or "") at origin.
std::string DirUrl(const std::string& origin, const Rule& rule, const std::string& base) {
  std::string u = KeyUrl(origin, rule.OriginPath(base));
  if (!u.ends_with('/')) u += '/';
  return u;
}

}  // namespace

Result<std::shared_ptr<const OriginListing>> Mirror::ListFromWebdav(const std::string& dir,
                                                                    const Rule& rule,
                                                                    const RuleSet& rules,
                                                                    bool probe, bool* answered) {
  std::string base = dir.empty() ? "" : dir + "/";
  std::string url;
  PageSink sink;
  PageAsk ask{.method = "PROPFIND",
              .body = PropfindBody(),
              .headers = {{"Depth", "1"}, {"Content-Type", "application/xml; charset=utf-8"}}};
  auto got = GetListingPage(
      dir, rule, [&](const std::string& origin) { return DirUrl(origin, rule, base); }, probe, ask,
      sink, &url);
  if (answered) *answered = false;
  if (!got) {
    if (probe) return Fail(EAGAIN, "PROPFIND got no answer");  // asked again later
    return ListingFailed(dir, rule, got.error());
  }
  long status = got->head.status;
  std::optional<std::vector<ListedEntry>> parsed;
  // hrefs are paths of where the collection is: after redirects, there.
  const std::string& at = got->head.effective_url.empty() ? url : got->head.effective_url;
  if (status == 207 && !sink.too_big_) parsed = ParseMultistatus(sink.body_, at);
  if (!parsed) {
    if (probe) {
      spdlog::debug("list {} url={}: PROPFIND: HTTP {}: not a WebDAV origin", dir, url, status);
      return std::shared_ptr<const OriginListing>();
    }
    if (status / 100 == 4) {  // no such collection (404), refused (403, 405)
      spdlog::debug("list {} url={}: PROPFIND: HTTP {}: no listing", dir, url, status);
      return RememberListing(dir, rule, nullptr);
    }
    spdlog::warn("list {} url={}: PROPFIND: HTTP {}{}", dir, url, status,
                 status == 207 ? ", not a multistatus" : "");
    return ListingFailed(dir, rule,
                         Error{EIO, fmt::format("listing {}: PROPFIND: HTTP {}", url, status)});
  }
  if (answered) *answered = true;
  {
    std::lock_guard lock(listings_mu_);
    listing_rules_.insert(rule.index);
    slash_rules_.insert(rule.index);  // collections are marked: every type is known
    if (rule.list == ListMode::kAuto) webdav_rules_.insert(rule.index);
  }
  auto listing = std::make_shared<OriginListing>();
  for (ListedEntry& e : *parsed) {
    if (dir.empty() && e.name == BucketStore::kStateDirName) continue;
    if (!e.is_dir && rules.Match(base + e.name).empty()) continue;
    listing->entries.push_back(std::move(e));
  }
  spdlog::debug("list {} url={}: PROPFIND: {} entries", dir, url, listing->entries.size());
  return RememberListing(dir, rule, std::move(listing));
}

// Under list = "auto", an origin that serves no index page for a directory
// may be a WebDAV server that has indexes off: one PROPFIND asks, once per
// rule until it is known to answer.
std::optional<Result<std::shared_ptr<const OriginListing>>> Mirror::TryWebdav(
    const std::string& dir, const Rule& rule, const RuleSet& rules) {
  if (rule.list != ListMode::kAuto) return std::nullopt;
  {
    std::lock_guard lock(listings_mu_);
    if (no_webdav_rules_.contains(rule.index)) return std::nullopt;
  }
  bool answered = false;
  auto l = ListFromWebdav(dir, rule, rules, true, &answered);
  if (answered) return l;
  if (!l && l.error().code == EAGAIN) return std::nullopt;  // no answer: not learned
  std::lock_guard lock(listings_mu_);
  no_webdav_rules_.insert(rule.index);
  return std::nullopt;
}

Result<std::shared_ptr<const OriginListing>> Mirror::ListFromS3(const std::string& dir,
                                                                const Rule& rule,
                                                                const RuleSet& rules) {
  std::string base = dir.empty() ? "" : dir + "/";
  std::string prefix = rule.OriginPath(base);  // the bucket's keys below the directory
  std::map<std::string, ListedEntry> entries;
  std::string token, url;
  for (int page = 0;; ++page) {
    PageSink sink;
    auto answer = GetListingPage(
        dir, rule, [&](const std::string& origin) { return ListObjectsUrl(origin, prefix, token); },
        false, {}, sink, &url);
    if (!answer) return std::unexpected(answer.error());
    std::optional<S3ListPage> got;
    std::string bad;
    if (answer->head.status != 200)  // 403 (keys, policy), 404 (no such bucket), ...
      bad = fmt::format("HTTP {}", answer->head.status);
    else if (sink.too_big_ || !(got = ParseListObjectsV2(sink.body_, prefix)))
      bad = "not a ListObjectsV2 answer";
    if (!bad.empty()) {
      spdlog::warn("list {} url={}: {}", dir, url, bad);
      return Fail(EIO, fmt::format("listing {}: {}", url, bad));
    }
    for (ListedEntry& e : got->entries) {
      // Only names the rules would fetch, and never the state directory.
      if (dir.empty() && e.name == BucketStore::kStateDirName) continue;
      if (!e.is_dir && rules.Match(base + e.name).empty()) continue;
      // An object "a" beside keys "a/...": the directory wins (its keys are
      // what a tree walk needs); the object stays reachable by refresh only.
      auto [it, fresh] = entries.try_emplace(e.name, e);
      if (!fresh && e.is_dir) it->second = std::move(e);
    }
    if (!got->truncated) break;
    token = std::move(got->next_continuation);
  }
  auto listing = std::make_shared<OriginListing>();
  for (auto& [name, e] : entries) listing->entries.push_back(std::move(e));
  spdlog::debug("list {} url={}: {} entries", dir, url, listing->entries.size());
  return RememberListing(dir, rule, std::move(listing));
}

const Rule* Mirror::ListingRule(const RuleSet& rules, const std::string& base) {
  // Keys below the directory start with base; the first rule that covers
  // them and lists says where the listing comes from.
  for (const Rule& r : rules.rules()) {
    if (!base.starts_with(r.prefix)) continue;
    if (r.retired && r.suffix.empty()) return nullptr;  // the prefix is a plain directory
    if (r.list != ListMode::kNone && !r.retired) return &r;
  }
  return nullptr;
}

std::shared_ptr<const OriginListing> Mirror::RememberListing(const std::string& dir,
                                                             const Rule& rule,
                                                             std::shared_ptr<OriginListing> l) {
  int64_t expires = Now() + std::max(rule.list_ttl, 0);
  if (l) l->listed_at = Now();
  // Kept in the index too ("" when the origin has none), so a remount
  // lists without a request while it is fresh.
  std::string bytes = l ? EncodeListing(l->entries) : std::string();
  if (auto p = index_.PutListing(dir, bytes, expires); !p)
    spdlog::warn("index: {}", p.error().message);
  std::lock_guard lock(listings_mu_);
  KeepListingLocked(dir, KnownListing{l, expires});
  return l;
}

// A listing that failed (5xx, timeout, refused) is EIO, also under
// list = "auto" for an origin not yet seen to list: an origin without index
// pages answers 403 or 404, and the bucket's part of a directory shown as the
// whole would be a lie. Lookups in the directory go by name meanwhile (the
// failure is kept briefly, so they do not each ask for the listing again).
Result<std::shared_ptr<const OriginListing>> Mirror::ListingFailed(const std::string& dir,
                                                                   const Rule& rule, Error e) {
  // A directory known absent at the origin (it, or one above it): nothing
  // to list there.
  if (!dir.empty() && KnownAbsentStale(dir)) return std::shared_ptr<const OriginListing>();
  // The last listing known, at any age, while the origin cannot give one:
  // lookups and readdir go on with it (stale, said in the log).
  if (auto kept = index_.GetListing(dir, 0); kept && *kept && !(*kept)->empty()) {
    if (auto entries = DecodeListing(**kept)) {
      auto stale = std::make_shared<OriginListing>();
      stale->entries = std::move(*entries);
      spdlog::warn("list {}: {}; showing the listing kept from before (stale)", dir, e.message);
      std::lock_guard lock(listings_mu_);
      KeepListingLocked(dir, KnownListing{stale, Now() + kListingRetryS, true});
      return std::shared_ptr<const OriginListing>(std::move(stale));
    }
  }
  std::lock_guard lock(listings_mu_);
  if (rule.list == ListMode::kAuto && !listing_rules_.contains(rule.index))
    KeepListingLocked(dir, KnownListing{nullptr, Now() + kListingRetryS, true});
  return std::unexpected(std::move(e));
}

Result<std::shared_ptr<const OriginListing>> Mirror::ListFromIndexPage(const std::string& dir,
                                                                       const Rule& rule,
                                                                       const RuleSet& rules) {
  std::string base = dir.empty() ? "" : dir + "/";
  std::string url;
  PageSink sink;
  bool one_try;
  {
    // Not known to list: one try (a walk of bucket directories is not held
    // up by retries against an origin that is down).
    std::lock_guard lock(listings_mu_);
    one_try = rule.list == ListMode::kAuto && !listing_rules_.contains(rule.index);
  }
  auto got = GetListingPage(
      dir, rule, [&](const std::string& origin) { return DirUrl(origin, rule, base); },
      // Servers that can answer JSON (caddy) do, with exact sizes and times.
      one_try, PageAsk{.accept = "application/json, text/html;q=0.9, */*;q=0.8"}, sink, &url);
  if (!got) return ListingFailed(dir, rule, got.error());
  long status = got->head.status;
  if (status != 200 && status != 203) {
    if (status / 100 == 4) {  // listings off (403), no such directory (404), ...
      spdlog::debug("list {} url={}: HTTP {}: no listing", dir, url, status);
      if (status != 404)
        if (auto dav = TryWebdav(dir, rule, rules)) return *dav;
      return RememberListing(dir, rule, nullptr);
    }
    spdlog::warn("list {} url={}: HTTP {}", dir, url, status);
    return ListingFailed(dir, rule, Error{EIO, fmt::format("listing {}: HTTP {}", url, status)});
  }
  if (sink.too_big_) return Fail(EIO, fmt::format("listing {}: page over 64 MiB", url));
  auto parsed = ParseIndexPage(sink.body_, got->head.content_type);
  if (!parsed) {
    spdlog::debug("list {} url={}: not an index page", dir, url);
    if (auto dav = TryWebdav(dir, rule, rules)) return *dav;
    return RememberListing(dir, rule, nullptr);
  }
  bool marks_dirs =
      std::any_of(parsed->begin(), parsed->end(), [](const ListedEntry& e) { return e.is_dir; });
  {
    std::lock_guard lock(listings_mu_);
    listing_rules_.insert(rule.index);
    // An origin seen marking directories with '/' marks them all: a page of
    // its with files only says what they are.
    if (marks_dirs) slash_rules_.insert(rule.index);
    marks_dirs = slash_rules_.contains(rule.index);
  }
  auto listing = std::make_shared<OriginListing>();
  for (ListedEntry& e : *parsed) {
    if (marks_dirs) e.type_unknown = false;
    // Only names the rules would fetch, and never the state directory.
    if (dir.empty() && e.name == BucketStore::kStateDirName) continue;
    if (!e.is_dir && rules.Match(base + e.name).empty()) continue;
    listing->entries.push_back(std::move(e));
  }
  spdlog::debug("list {} url={}: {} entries", dir, url, listing->entries.size());
  return RememberListing(dir, rule, std::move(listing));
}

Result<HttpOutcome> Mirror::GetListingPage(
    const std::string& dir, const Rule& rule,
    const std::function<std::string(const std::string& origin)>& url_for, bool one_try,
    const PageAsk& ask, PageSink& sink, std::string* url) {
  std::optional<HttpOutcome> got;
  std::optional<Error> broke;  // a failure another origin would not mend
  origins_.Failover(
      rule.origins,
      [&](const std::string& origin) {
        *url = url_for(origin);
        sink = PageSink();
        stats_.requests++;
        HttpRequest req = RequestFor(rule, *url);
        if (one_try) req.retries = 0;
        bool has_accept = std::any_of(req.headers.begin(), req.headers.end(), [](const auto& h) {
          return strcasecmp(h.first.c_str(), "accept") == 0;
        });
        if (!ask.accept.empty() && !has_accept)
          req.protocol_headers.emplace_back("Accept", std::string(ask.accept));
        req.method = ask.method;
        req.body = ask.body;
        for (const auto& h : ask.headers) req.protocol_headers.push_back(h);
        auto o = http_.Perform(req, sink);
        if (!o) {
          if (SwitchableFailure(o.error())) {
            origins_.MarkUnreachable(
                origin, fmt::format("{}: {}", ToString(o.error().errc), o.error().detail));
            return OriginVerdict::kUnreachable;
          }
          spdlog::warn("list {} url={}: {}: {}", dir, *url, ToString(o.error().errc),
                       o.error().detail);
          broke = Error{EIO, fmt::format("listing {}: {}", *url, ToString(o.error().errc))};
          return OriginVerdict::kFailed;
        }
        if (o->head.status >= 500) {
          spdlog::warn("list {} url={}: HTTP {}", dir, *url, o->head.status);
          return OriginVerdict::kSwitch;
        }
        got = *o;
        return OriginVerdict::kAnswered;
      },
      shutting_down_);
  if (broke) return std::unexpected(std::move(*broke));
  if (!got)
    return Fail(EIO, fmt::format("listing {}: no origin answered", url->empty() ? dir : *url));
  return *got;
}

Result<std::shared_ptr<const ManifestTree>> Mirror::ManifestFor(const Rule& rule) {
  {
    std::lock_guard lock(listings_mu_);
    if (auto it = manifests_.find(rule.manifest);
        it != manifests_.end() && it->second.expires > Now())
      return it->second.tree;
  }
  std::string text;
  const std::string& source = rule.manifest;
  if (source.find("://") != std::string::npos) {
    PageSink sink(std::size_t{4} << 30);
    stats_.requests++;
    auto o = http_.Perform(RequestFor(rule, source), sink);
    if (!o) {
      spdlog::warn("manifest {}: {}: {}", source, ToString(o.error().errc), o.error().detail);
      return Fail(EIO, fmt::format("manifest {}: {}", source, ToString(o.error().errc)));
    }
    if (o->head.status != 200 || sink.too_big_) {
      spdlog::warn("manifest {}: HTTP {}", source, o->head.status);
      return Fail(EIO, fmt::format("manifest {}: HTTP {}", source, o->head.status));
    }
    text = std::move(sink.body_);
  } else {
    UniqueFd fd(open(source.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) {
      int e = errno;
      spdlog::warn("manifest {}: {}", source, std::strerror(e));
      return Fail(EIO, fmt::format("manifest {}: {}", source, std::strerror(e)));
    }
    char buf[1 << 16];
    for (;;) {
      ssize_t n = read(fd.get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return FailErrno("manifest " + source);
      if (n == 0) break;
      text.append(buf, static_cast<std::size_t>(n));
    }
  }
  std::size_t bad = 0;
  auto tree = ParseManifest(text, &bad);
  if (!tree) {
    spdlog::warn("manifest {}: line {} is not KEY[<tab>SIZE[<tab>MTIME]]", source, bad);
    return Fail(EIO, fmt::format("manifest {}: bad line {}", source, bad));
  }
  auto shared = std::make_shared<const ManifestTree>(std::move(*tree));
  spdlog::info("manifest {}: {} directories", source, shared->size());
  std::lock_guard lock(listings_mu_);
  manifests_[source] = KnownManifest{shared, Now() + std::max(rule.list_ttl, 0)};
  return shared;
}
}  // namespace originfs
