#include "core/mirror/mirror.h"

#include <fcntl.h>
#include <strings.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include "core/mirror/cross_host.h"
#include "core/mirror/range_split.h"
#include "core/mirror/record.h"
#include "core/mirror/response_sink.h"
#include "core/origin/listing.h"
#include "core/origin/redirects.h"
#include "core/origin/url.h"

namespace originfs {

namespace {

// Staging files made ahead (see BucketStore::PrepareStaging).
constexpr std::size_t kSpareStagingFiles = 4;

}  // namespace

// A counting semaphore for a rule's max_concurrent.
class Mirror::Slots {
 public:
  explicit Slots(int n) : free_(n) {}
  void Acquire() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return free_ > 0; });
    --free_;
  }
  void Release() {
    {
      std::lock_guard lock(mu_);
      ++free_;
    }
    cv_.notify_one();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int free_;  // guarded by mu_
};

Mirror::Mirror(RuleSet rules, HttpClient& http, BucketStore& store, Index& index,
               MirrorOptions options)
    : rules_(std::make_shared<const RuleSet>(std::move(rules))),
      http_(http),
      store_(store),
      index_(index),
      options_(options),
      origins_(options.origin_cooldown_s),
      cache_(store),
      pool_(std::make_unique<ThreadPool>(options.download_threads)) {
  store_.PrepareStaging(kSpareStagingFiles);
  revalidates_ = rules_->Revalidates();
  prober_ = std::thread([this] { ProbeLoop(); });
}

Mirror::~Mirror() {
  Shutdown();
  if (prober_.joinable()) prober_.join();
  {
    std::unique_lock lock(here_mu_);
    here_cv_.wait(lock, [this] { return running_here_ == 0; });
  }
  pool_->Drain();  // running downloads may still submit (split helpers): pool_ stays set
  pool_.reset();
}

void Mirror::Shutdown() {
  {
    std::lock_guard lock(probe_mu_);
    shutting_down_ = true;
  }
  probe_cv_.notify_all();
  http_.Shutdown();
}

std::shared_ptr<const RuleSet> Mirror::rules() const {
  std::lock_guard lock(rules_mu_);
  return rules_;
}

void Mirror::SetRules(RuleSet rules) {
  auto next = std::make_shared<const RuleSet>(std::move(rules));
  {
    // What was learned of each rule's origin is keyed by the rule's index:
    // new rules learn it again.
    std::lock_guard lock(listings_mu_);
    listing_rules_.clear();
    slash_rules_.clear();
    webdav_rules_.clear();
    no_webdav_rules_.clear();
  }
  {
    std::lock_guard lock(soft404_mu_);
    soft404_.clear();
  }
  std::lock_guard lock(rules_mu_);
  revalidates_ = next->Revalidates();
  rules_ = std::move(next);
}

std::vector<Mirror::RuleFetches> Mirror::FetchesByRule() {
  std::vector<RuleFetches> out;
  std::lock_guard lock(rule_tallies_mu_);
  for (std::size_t i = 0; i < rule_tallies_.size(); ++i) {
    auto m = rule_tallies_[i].minute.LastMinute();
    out.push_back({i, rule_tallies_[i].fetches, rule_tallies_[i].bytes, m.events, m.bytes});
  }
  return out;
}

bool Mirror::HasRule(std::string_view key) const { return !rules()->Match(key).empty(); }

bool Mirror::ImpliedDirectory(std::string_view key) const {
  return rules()->PrefixImpliesDirectory(key);
}

bool Mirror::KnownOriginDirectory(std::string_view key) {
  if (key.empty()) return false;
  if (auto below = index_.HasObjectBelow(key); below && *below) return true;
  std::size_t slash = key.rfind('/');
  std::string parent(slash == std::string_view::npos ? std::string_view() : key.substr(0, slash));
  std::string_view name = slash == std::string_view::npos ? key : key.substr(slash + 1);
  auto kept = index_.GetListing(parent, 0);  // at any age
  if (!kept || !*kept || (*kept)->empty()) return false;
  auto entries = DecodeListing(**kept);
  if (!entries) return false;
  for (const ListedEntry& e : *entries)
    if (e.is_dir && e.name == name) return true;
  return false;
}

bool Mirror::OriginHadName(std::string_view key) {
  if (key.empty()) return false;
  if (auto rec = index_.Get(key); rec && *rec) return true;
  if (auto below = index_.HasObjectBelow(key); below && *below) return true;
  std::size_t slash = key.rfind('/');
  std::string parent(slash == std::string_view::npos ? std::string_view() : key.substr(0, slash));
  std::string_view name = slash == std::string_view::npos ? key : key.substr(slash + 1);
  {
    std::lock_guard lock(listings_mu_);
    if (auto it = listings_.find(parent); it != listings_.end() && it->second.listing)
      if (it->second.listing->Find(name)) return true;
  }
  auto kept = index_.GetListing(parent, 0);  // at any age
  if (!kept || !*kept || (*kept)->empty()) return false;
  auto entries = DecodeListing(**kept);
  if (!entries) return false;
  for (const ListedEntry& e : *entries)
    if (e.name == name) return true;
  return false;
}

std::optional<ObjectRecord> Mirror::LandedRecord(std::string_view key) {
  auto rec = index_.Get(key);
  if (!rec) {
    spdlog::warn("index: {}", rec.error().message);
    return std::nullopt;
  }
  return *rec;
}

void Mirror::ForgetLanded(std::string_view key) {
  if (auto r = index_.Erase(key); !r) spdlog::warn("index: {}", r.error().message);
}

void Mirror::ForgetNotFound(std::string_view key) {
  if (auto r = index_.EraseNotFound(key); !r) spdlog::warn("index: {}", r.error().message);
}

std::shared_ptr<Flight> Mirror::Start(std::string_view key, std::optional<uint64_t> landings_seen) {
  return StartOrJoin(key, landings_seen, nullptr, false);
}

std::shared_ptr<Flight> Mirror::StartHere(
    std::string_view key, uint64_t landings_seen,
    const std::function<void(const std::shared_ptr<Flight>&)>& attach) {
  return StartOrJoin(key, landings_seen, &attach, options_.run_in_caller);
}

std::shared_ptr<Flight> Mirror::StartOrJoin(
    std::string_view key, std::optional<uint64_t> landings_seen,
    const std::function<void(const std::shared_ptr<Flight>&)>* attach, bool here) {
  std::string k(key);
  std::shared_ptr<Flight> flight;
  bool ours = false;
  {
    std::lock_guard lock(flights_mu_);
    auto it = flights_.find(k);
    if (it != flights_.end()) {
      flight = it->second;
    } else {
      flight = std::make_shared<Flight>(k);
      // A flight that finished just now has already linked the object. (If
      // none has finished since the caller looked, it is not there.)
      bool look = !landings_seen || *landings_seen != store_.landings();
      auto fd = look && !k.empty() ? store_.OpenKey(k, O_PATH) : Result<int>(-1);
      if (fd && *fd >= 0) {
        struct stat st {};
        fstat(*fd, &st);
        close(*fd);
        flight->Finish(FetchedObject{true, nullptr, static_cast<uint64_t>(st.st_size)});
        flight->PublishHead(Resolution{OriginKind::kLanded});
      } else {
        flights_.emplace(k, flight);
        ours = true;
      }
    }
  }
  // Outside the lock: a waiter registered on a flight that has its answer
  // already runs at once.
  if (attach) (*attach)(flight);
  if (!ours) return flight;
  stats_.misses++;
  auto nf = index_.IsNotFound(k, Now());
  if (nf && *nf) {
    stats_.not_found++;
    flight->PublishHead(Resolution{OriginKind::kNotFound});
    EndFlight(flight, Fail(ENOENT, "remembered 404"));
    return flight;
  }
  if (shutting_down_) {
    EndFlight(flight, Fail(EIO, "shutting down"), false);
    return flight;
  }
  if (auto why = RememberedFailure(k)) {
    EndFlight(flight, Fail(EIO, *why), false);
    return flight;
  }
  if (++stats_.inflight <= static_cast<int64_t>(options_.download_threads) && here) {
    {
      std::lock_guard lock(here_mu_);
      ++running_here_;
    }
    RunDownload(flight, rules());
    std::lock_guard lock(here_mu_);
    if (--running_here_ == 0) here_cv_.notify_all();
    return flight;
  }
  pool_->Submit([this, flight, rules = rules()]() mutable {
    // Moved in: the flight (and, with writeback = false, its cached file,
    // which counts as in use while referenced) is let go as Run returns.
    RunDownload(std::move(flight), std::move(rules));
  });
  return flight;
}

void Mirror::RunDownload(std::shared_ptr<Flight> flight, std::shared_ptr<const RuleSet> rules) {
  TryRules(std::move(flight), std::move(rules));
  stats_.inflight--;
  // The next download finds its staging file made: inode allocation leaves
  // the path between a response's first byte and the reader.
  store_.PrepareStaging(kSpareStagingFiles);
}

void Mirror::EndFlight(const std::shared_ptr<Flight>& flight, Result<FetchedObject> r,
                       bool counts) {
  if (counts) NoteOutcome(flight->key(), r);
  {
    std::lock_guard lock(flights_mu_);
    auto it = flights_.find(flight->key());
    if (it != flights_.end() && it->second == flight) flights_.erase(it);
  }
  flight->Finish(std::move(r));
}

std::shared_ptr<Mirror::Slots> Mirror::SlotsFor(const Rule& rule) {
  if (rule.max_concurrent <= 0) return nullptr;
  std::string id = fmt::format("{}\x1f{}\x1f{}", rule.prefix, rule.suffix, rule.max_concurrent);
  std::lock_guard lock(slots_mu_);
  auto& s = slots_[id];
  if (!s) s = std::make_shared<Slots>(rule.max_concurrent);
  return s;
}

HttpRequest Mirror::RequestFor(const Rule& rule, std::string url) const {
  HttpRequest req;
  req.url = std::move(url);
  req.headers = rule.headers;
  req.follow_redirects = rule.follow_redirects;
  req.max_redirects = rule.max_redirects;
  if (rule.connect_timeout)
    req.connect_timeout_ms = static_cast<long>(*rule.connect_timeout * 1000);
  req.low_speed_time_s = rule.timeout;
  req.retries = rule.retries;
  req.ca_file = rule.ca_file;
  req.insecure = rule.insecure;
  if (rule.login) req.login = HttpRequest::Login{rule.login->user, rule.login->password};
  req.netrc_file = rule.netrc;
  req.ssh_key = rule.ssh_key;
  req.known_hosts = rule.known_hosts;
  if (rule.type == OriginType::kS3 && rule.credentials) {
    req.sigv4 = HttpRequest::SigV4{rule.region, rule.credentials->access_key,
                                   rule.credentials->secret_key, rule.credentials->session_token};
  }
  // Redirects go to the rule's origins' hosts, the host asked (a manifest
  // elsewhere), a Host header's, and redirect_hosts; its headers and
  // signature only to its origins (scheme, host and port).
  RedirectPolicy policy;
  auto allow = [&](const UrlAuthority& a) {
    std::string host = a.host.find(':') != std::string::npos ? "[" + a.host + "]" : a.host;
    policy.allowed.push_back((a.scheme == "http" ? "http://" : "") + host);
  };
  for (const std::string& o : rule.origins) {
    if (auto a = AuthorityOf(o)) {
      policy.trusted.push_back(a->Origin());
      allow(*a);
    }
  }
  if (auto a = AuthorityOf(req.url)) allow(*a);
  for (const auto& [name, value] : rule.headers)
    if (strcasecmp(name.c_str(), "host") == 0) policy.allowed.push_back(value);
  for (const std::string& h : rule.redirect_hosts) policy.allowed.push_back(h);
  if (!Trusted(policy, req.url)) {
    req.headers.clear();
    req.sigv4.reset();
  }
  req.redirect_policy = std::move(policy);
  return req;
}

void Mirror::TryRules(std::shared_ptr<Flight> flight, std::shared_ptr<const RuleSet> rules) {
  const std::string& key = flight->key();
  auto candidates = rules->Match(key);
  // Shared bucket: one host fetches, the others read along (cross_host.h)
  // and then find it in place.
  std::optional<KeyLock> lock;
  std::optional<Announcer> announcer;
  if (store_.shared()) {
    // Only an object that will land in the bucket can be followed there.
    Follower follow(*flight, store_, !candidates.empty() && candidates.front()->writeback,
                    shutting_down_);
    auto l = store_.LockKey(key, std::ref(follow));
    if (!l) {
      EndFlight(flight, Fail(EIO, "key lock: " + l.error().message), false);
      return;
    }
    lock.emplace(std::move(*l));
    if (store_.Exists(key)) {
      spdlog::debug("fetch {}: another host landed it", key);
      follow.Landed(key);
      flight->PublishHead(Resolution{OriginKind::kLanded});  // (unless following: kFile)
      EndFlight(flight, FetchedObject{true, nullptr, 0});
      return;
    }
    if (follow.following()) {
      // Its readers have bytes of that host's download, which died: the
      // rest of that same version (a download of our own could be of
      // another), or EIO (the next open asks anew).
      Result<FetchedObject> r = Fail(EIO, "the host downloading it stopped before landing it");
      if (follow.last() && !candidates.empty() && candidates.front()->writeback) {
        announcer.emplace(*flight, *lock);  // a third host may read along in turn
        r = TakeOver(*flight, *candidates.front(), *follow.last());
      }
      announcer.reset();
      EndFlight(flight, std::move(r));
      return;
    }
    announcer.emplace(*flight, *lock);
  }
  bool virtual_dir = false;
  for (const Rule* rule : candidates) {
    if (!rule->writeback) {
      if (auto hit = cache_.Lookup(key)) {  // served before, not kept in the bucket
        spdlog::debug("lookup {}: from the object cache", key);
        flight->PublishHead(Resolution{OriginKind::kFile, hit->size, hit->mtime, false, "",
                                       InoOf(hit->file->get())});
        EndFlight(flight, FetchedObject{false, hit->file, hit->size});
        return;
      }
    }
    auto slots = SlotsFor(*rule);
    if (slots) slots->Acquire();
    Attempt a;  // as it stays when every origin is known down (not asked)
    a.result = Fail(EIO, "origin down (not asked; probed in the background)");
    a.switchable = a.unreachable = true;
    origins_.Failover(
        rule->origins,
        [&](const std::string& origin) {
          a = FetchFromOrigin(*flight, *rule, origin);
          if (a.kind != Attempt::kFailed) return OriginVerdict::kAnswered;
          if (a.unreachable) {
            origins_.MarkUnreachable(origin, a.result ? "" : a.result.error().message);
            return OriginVerdict::kUnreachable;
          }
          return a.switchable ? OriginVerdict::kSwitch : OriginVerdict::kFailed;
        },
        shutting_down_);
    if (slots) slots->Release();
    if (a.kind == Attempt::kFailed && a.unreachable && !shutting_down_) {
      // No origin reached: a name known absent from before is still absent
      // (stale), and offline = "absent" takes any other as absent too.
      auto listed = StaleListed(key);
      if (listed && listed->is_dir) {  // the last listing known says so
        flight->PublishHead(Resolution{OriginKind::kDirectory});
        EndFlight(flight, Fail(EISDIR, "directory (origin unreachable; as last listed)"));
        return;
      }
      // offline = "absent" never hides a name the last listing shows.
      if (KnownAbsentStale(key) || (rule->offline_absent && !listed)) {
        spdlog::debug("lookup {}: origin unreachable; {}", key,
                      rule->offline_absent ? "absent (offline = \"absent\")"
                                           : "absent as last known (stale)");
        flight->PublishHead(Resolution{OriginKind::kNotFound});
        EndFlight(flight, Fail(ENOENT, "absent (origin unreachable)"));
        return;
      }
    }
    switch (a.kind) {
      case Attempt::kDone:
      case Attempt::kFailed:
        // Recorded before anyone is answered: a reader that has the bytes sees their origin.
        if (a.record) {
          if (auto p = index_.Put(key, *a.record); !p) spdlog::warn("index: {}", p.error().message);
        }
        // An origin that cannot be reached at all is watched by the probe
        // (offline.cc), which lets every key through once it answers.
        EndFlight(flight, std::move(a.result), !(a.kind == Attempt::kFailed && a.unreachable));
        if (!a.log_line.empty()) spdlog::info("{}", a.log_line);
        return;
      case Attempt::kDirectory:
        flight->PublishHead(Resolution{OriginKind::kDirectory});
        EndFlight(flight, Fail(EISDIR, "directory"));
        return;
      case Attempt::kNotFound:  // final for this key: no further rules
        candidates.clear();
        break;
      case Attempt::kFallThrough:
        break;
    }
    if (rule->dirs == DirMode::kVirtual ||
        (rule->dirs == DirMode::kNoExt && LastSegment(key).find('.') == std::string_view::npos)) {
      virtual_dir = true;
    }
    if (candidates.empty()) break;
  }
  NoOriginHas(flight, virtual_dir);
}

void Mirror::NoOriginHas(const std::shared_ptr<Flight>& flight, bool virtual_dir) {
  if (virtual_dir) {  // dirs = "virtual" / "noext": what no origin has as a file is a directory
    flight->PublishHead(Resolution{OriginKind::kDirectory});
    EndFlight(flight, Fail(EISDIR, "directory"));
    return;
  }
  stats_.not_found++;
  if (options_.negative_ttl_s > 0) {
    if (auto p = index_.PutNotFound(flight->key(), Now() + options_.negative_ttl_s); !p)
      spdlog::warn("index: {}", p.error().message);
  }
  flight->PublishHead(Resolution{OriginKind::kNotFound});
  EndFlight(flight, Fail(ENOENT, "not found at any origin"));
}

bool Mirror::ProbeDirectory(const Rule& rule, const std::string& url, const Soft404* page,
                            bool answered_only) {
  HttpRequest req = RequestFor(rule, url + "/");
  req.head = true;
  HeadOnlySink sink;
  stats_.requests++;
  auto r = http_.Perform(req, sink);
  if (!r) return false;
  if (IsSoft404(rule, r->head)) return false;  // key/ got the "not found" page too
  if (page && (r->head.status == 200 || r->head.status == 203) &&
      page->Matches(r->head.content_type, r->head.content_length, r->head.etag))
    return false;
  long s = r->head.status;
  return (s >= 200 && s < 300) || (!answered_only && (s == 401 || s == 403));
}
}  // namespace originfs
