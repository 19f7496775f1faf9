// The mirror joins the rules, the HTTP client, the bucket store and the index:
// it resolves a missing key against the origins and lands it in the bucket.
//
// Glossary (these words mean only this, here and in core/vfs/):
//   key          a path below the mount root without a leading slash ("" is
//                the root); the same string names the file in the bucket.
//   bucket       the directory mounted; a name in it is local.
//   origin       an HTTP server a rule sends misses to. An origin file or
//                origin directory is one known from the origin alone so far.
//   miss         a lookup of a key the bucket lacks and some rule matches.
//   download     the one transfer of a key from its origin (a Flight): every
//                miss of the key while it runs joins it (single-flight).
//   head         the response head. It resolves the key (file with size and
//                mtime, directory, not found): enough to answer a lookup.
//   staging file where a download's body goes; readers may follow it.
//   land         link the complete, verified staging file under its key,
//                atomically (or keep it in the object cache: writeback =
//                false). A landed file is local from then on.
//   refresh      a conditional GET of a landed key that replaces it when
//                the origin's is newer and the local one is unchanged.
//   listing      a directory's entries as its origin lists them.
//
// A download's life, in the order it reads (mirror.cc, fetch.cc):
//   Start / StartHere -> StartOrJoin (single-flight) -> RunDownload ->
//   TryRules (rules in order; each rule's origins by failover) ->
//   FetchFromOrigin: request -> Receive -> classify -> CheckBody -> Land ->
//   EndFlight (everyone waiting is answered).
// The head is published (Flight::PublishHead) as soon as it is known, so a
// lookup costs one round trip and the body keeps streaming meanwhile; there
// is no HEAD+GET pair.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/common/error.h"
#include "core/common/rate_window.h"
#include "core/common/thread_pool.h"
#include "core/common/unique_fd.h"
#include "core/config/rules.h"
#include "core/mirror/flight.h"
#include "core/origin/http_client.h"
#include "core/origin/listing.h"
#include "core/origin/origin_pool.h"
#include "core/store/bucket_store.h"
#include "core/store/index.h"
#include "core/store/object_cache.h"

namespace originfs {

class PageSink;
class ResponseSink;
class StagingFile;
struct SplitState;

// A directory's entries as its origin lists them (see core/listing.h).
struct OriginListing {
  std::vector<ListedEntry> entries;  // sorted by name
  // When the origin gave it (unix time; 0: unknown, e.g. a stale copy). A
  // name it lacks is absent without a request only for the rule's
  // absent_ttl after this (Mirror::AbsenceKnown).
  int64_t listed_at = 0;
  const ListedEntry* Find(std::string_view name) const;
};

struct MirrorOptions {
  int negative_ttl_s = 10;  // how long a 404 is remembered
  // A key whose fetch failed (EIO) 3 times running is not asked for again for
  // 1 s, then 2, 4, ... up to this many seconds (failures.cc); 0: always.
  int failure_backoff_s = 10;
  uint64_t max_object_size = 0;  // 0: unlimited
  std::size_t download_threads = 32;
  int retries = 2;             // re-downloads after a body broke off midway
  int origin_cooldown_s = 30;  // a failed origin is tried last for this long
  // An unreachable origin is asked again in the background this often (and
  // by nothing else meanwhile).
  int probe_interval_ms = 1000;
  // Objects at least this big are fetched as two ranged GETs at once (the
  // second half on another connection); 0: never.
  uint64_t parallel_min = 64ull << 20;
  // StartHere may run a new download in the calling thread (a FUSE worker
  // answering a lookup) instead of handing it to a download thread. Only
  // where the caller has threads to spare: at most download_threads run.
  bool run_in_caller = false;
};

struct MirrorStats {
  std::atomic<uint64_t> misses{0};   // lookups that went to the mirror
  std::atomic<uint64_t> fetches{0};  // objects landed
  std::atomic<uint64_t> fetched_bytes{0};
  std::atomic<uint64_t> not_found{0};      // keys all origins said 404 to
  std::atomic<uint64_t> origin_errors{0};  // failed transfers
  std::atomic<uint64_t> requests{0};       // HTTP requests sent
  std::atomic<int64_t> inflight{0};
  RateWindow fetched_last_minute;  // objects landed and their bytes (CountFetched)
};

class Mirror {
 public:
  Mirror(RuleSet rules, HttpClient& http, BucketStore& store, Index& index, MirrorOptions options);
  ~Mirror();  // abandons in-flight transfers (nothing partial is kept)
  Mirror(const Mirror&) = delete;
  Mirror& operator=(const Mirror&) = delete;

  // True when some rule matches key (else: ENOENT, no request).
  bool HasRule(std::string_view key) const;
  // True when key is a directory component of a rule prefix.
  bool ImpliedDirectory(std::string_view key) const;
  // True when the origin is known to have directory key, without asking it:
  // an object below it landed from it (the index), or its parent's listing,
  // kept in the index at any age, shows it as a directory.
  bool KnownOriginDirectory(std::string_view key);
  // True when anything kept says the origin has key (file or directory): a
  // landed record, an object below it, its parent's listing at any age.
  bool OriginHadName(std::string_view key);

  // Starts or joins the back-source of key. Never blocks on the network.
  // A caller that found key missing from the bucket may pass landings() as
  // it was before it looked: the bucket is then looked at again only if some
  // download has finished since.
  std::shared_ptr<Flight> Start(std::string_view key,
                                std::optional<uint64_t> landings_seen = std::nullopt);
  // Start for a caller that waits through callbacks: attach registers them
  // on the flight before it runs, and with run_in_caller a new download runs
  // right here, in the calling thread (returning once it is complete). That
  // saves handing each miss to a download thread: a wake-up and a context
  // switch per file, about a tenth of a small file's cost.
  std::shared_ptr<Flight> StartHere(
      std::string_view key, uint64_t landings_seen,
      const std::function<void(const std::shared_ptr<Flight>&)>& attach);
  // Counts files landed in the bucket (downloads, copy-ups, refreshes).
  uint64_t landings() const { return store_.landings(); }

  // Re-fetches key from its origin with a conditional GET (If-None-Match /
  // If-Modified-Since from the index) and atomically replaces the bucket copy
  // when the origin has a newer one. Fails over between a rule's origins as
  // fetches do. A bucket file that changed since it landed (size, mtime,
  // ctime or inode differ from the index record), or that never landed (no
  // record: a local file), is never replaced unless force: the outcome is
  // then kChangedLocally / kLocalFile and no body is kept. Blocks.
  enum class RefreshOutcome { kUpdated, kUnchanged, kGoneAtOrigin, kChangedLocally, kLocalFile };
  // may_replace, when given, is asked right before the replacement: false
  // keeps the bucket file (kChangedLocally; e.g. it is open for writing).
  Result<RefreshOutcome> Refresh(std::string_view key, bool force = false,
                                 const std::function<bool()>& may_replace = nullptr);

  // Replaces the rules (reload). Running flights finish with the old ones.
  void SetRules(RuleSet rules);
  std::shared_ptr<const RuleSet> rules() const;
  // rules()->Revalidates(), without a lock (asked at every open).
  bool Revalidates() const { return revalidates_.load(std::memory_order_relaxed); }

  // The origin's listing of the directory dir_key ("" for the root), asked
  // for when the one known is older than its rule's list_ttl. nullptr when
  // there is none (no rule, list = "none", or the origin serves no index page
  // for the directory: 401/403/404, or a page that is not one). EIO when
  // asking failed (5xx, timeout, connection), logged with the URL.
  // newer_than: a listing read at or before that time does not count (it
  // is asked for again unless someone has read a newer one meanwhile).
  Result<std::shared_ptr<const OriginListing>> ListDir(std::string_view dir_key,
                                                       int64_t newer_than = -1);
  // How a lookup of a name the listing l of dir_key lacks is answered: by the
  // listing (kKnown: ENOENT, no request) within the rule's absent_ttl of
  // reading it; after that by asking for the name (kAskName), or, where a
  // 404 would make the name a directory (dirs = "virtual" / "no-ext"), by
  // reading the listing again (kAskListing).
  enum class Absence { kKnown, kAskName, kAskListing };
  Absence AbsenceOf(std::string_view dir_key, const OriginListing& l);
  // The listing of dir_key is asked for again at its next use, but stays
  // kept (at any age) for when the origin cannot be reached.
  void ExpireListing(std::string_view dir_key);
  // The listing known for dir_key while it is fresh, without a request;
  // nullopt when only a request can tell (a manifest or S3 rule whose
  // listing is not known or expired).
  std::optional<std::shared_ptr<const OriginListing>> KnownFreshListing(std::string_view dir_key);
  // KnownFreshListing, else asks the origin (manifest and S3 rules: one
  // request answers every lookup in the directory): may wait on the network.
  std::shared_ptr<const OriginListing> FreshListing(std::string_view dir_key);
  // Runs f on a download thread: work that may wait on the network, off a
  // thread that must not (an io_uring queue's).
  void Defer(std::function<void()> f);
  // Each origin's state (up, or down since when and why).
  std::vector<OriginState> OriginStates() { return origins_.States(); }
  // True when a rule lists dir_key and no fresh answer (a listing, or that
  // the origin serves none) is kept for it: the next ListDir asks.
  bool ListingExpired(std::string_view dir_key);
  // The next ListDir of dir_key asks the origin again.
  void ForgetListing(std::string_view dir_key);

  // Forgets a remembered 404 (e.g. when the name is created locally).
  void ForgetNotFound(std::string_view key);

  // Where the landed file at key came from (the index's record), if known.
  std::optional<ObjectRecord> LandedRecord(std::string_view key);
  // Forgets where key came from: the file was removed or renamed away.
  void ForgetLanded(std::string_view key);

  const MirrorStats& stats() const { return stats_; }
  // What each rule (by index) fetched: in all, and in the last minute.
  struct RuleFetches {
    std::size_t rule = 0;
    uint64_t fetches = 0, bytes = 0, minute_fetches = 0, minute_bytes = 0;
  };
  std::vector<RuleFetches> FetchesByRule();
  // Whether the bucket file at key is the one that landed as its record says:
  // nullopt when it is (or nothing is there), kChangedLocally or kLocalFile.
  std::optional<RefreshOutcome> ChangedSinceLanding(const std::string& key) {
    auto rec = index_.Get(key);
    return LocalChange(key, rec ? *rec : std::nullopt);
  }
  void Shutdown();

 private:
  // ---- One download (fetch.cc): request -> receive -> verify -> land.
  struct Attempt {
    enum Kind { kDone, kFallThrough, kNotFound, kDirectory, kFailed } kind = kFailed;
    Result<FetchedObject> result = std::unexpected(Error{EIO, "not attempted"});
    bool switchable = false;   // connection error, timeout or 5xx: another origin may do better
    bool unreachable = false;  // connection error or timeout: the origin is down
    std::optional<ObjectRecord> record;  // to index once the waiters have their answer
    std::string log_line;
  };
  struct Received;
  struct Landed {
    FetchedObject object;
    bool in_bucket = false;
    bool linked = false;  // false: a local file took the name meanwhile (kept)
  };
  // The whole life of one download of flight's key: the rules in order, each
  // rule's origins by failover, then the answer to everyone waiting.
  void TryRules(std::shared_ptr<Flight> flight, std::shared_ptr<const RuleSet> rules);
  // Every matching rule's origins said not found: a 404 to remember, or a
  // directory for rules whose directories are virtual.
  void NoOriginHas(const std::shared_ptr<Flight>& flight, bool virtual_dir);
  // The host whose download this flight read along died (takeover.cc): the
  // rest of the same version with a ranged GET into its staging file, taken
  // over, then landed. Fails (nothing kept) when the version is not pinned
  // or the origin now has another.
  Result<FetchedObject> TakeOver(Flight& flight, const Rule& rule, const KeyProgress& p);
  // While no origin can be reached: is key known absent from anything kept
  // at any age (a 404, its parent's listing)? Then it is ENOENT, stale.
  bool KnownAbsentStale(const std::string& key);
  // key's entry in its parent's listing at any age, if there is one.
  std::optional<ListedEntry> StaleListed(const std::string& key);
  // The listing of dir kept at any age (memory, then the index), or null.
  std::shared_ptr<const OriginListing> ListingAtAnyAge(const std::string& dir);
  // Asks each unreachable origin again, every probe_interval_ms, until it answers.
  void ProbeLoop();
  std::thread prober_;
  std::mutex probe_mu_;
  std::condition_variable probe_cv_;  // wakes the prober to stop
  Attempt FetchFromOrigin(Flight& flight, const Rule& rule, const std::string& origin);
  // The GET of url into got.staging, restarted after a broken body, with the
  // second part fetched in parallel for a big object (see range_split.h).
  void Receive(Flight& flight, const Rule& rule, const std::string& url, HttpRequest& req,
               Received& got);
  void StartSplitHelper(const HttpRequest& req, std::shared_ptr<SplitState> s);
  // Waits for the helper and fetches what it left with ranged GETs. True when
  // the object is whole; false with got.split_error set, or with it empty
  // when the object changed at the origin and the download must start over.
  bool FinishSplit(ResponseSink& sink, const HttpRequest& req, int retries, Received& got);
  // "" when the body is whole and passes the rule's verify setting.
  static std::string CheckBody(ResponseSink& sink, const StagingFile& staging,
                               const HttpResponseHead& h);
  // Links staging under key (writeback) or keeps it in the object cache.
  Result<Landed> Land(const std::string& key, const Rule& rule, StagingFile& staging,
                      int64_t mtime);
  // page: the origin's learned not-found page (NotFoundPage), if any;
  // answered_only: only a 2xx for key/ says directory (not 401/403).
  bool ProbeDirectory(const Rule& rule, const std::string& url, const Soft404* page = nullptr,
                      bool answered_only = false);
  // The page the rule's origin answers with 200 for a name that cannot
  // exist, learned by one GET of a random name at the first fetch through
  // it and again every kSoft404RelearnS (soft404.cc); nullopt: it answers
  // such names honestly, or the rule says what its page is (soft_404).
  std::optional<Soft404> NotFoundPage(const Rule& rule, const std::string& origin);
  struct LearnedPage {
    std::optional<Soft404> page;
    int64_t until = 0;
  };
  static constexpr int kSoft404RelearnS = 300;
  std::mutex soft404_mu_;
  std::condition_variable soft404_cv_;
  std::map<std::pair<std::size_t, std::string>, LearnedPage> soft404_;  // guarded by soft404_mu_
  std::set<std::pair<std::size_t, std::string>> soft404_probing_;       // guarded by soft404_mu_
  // counts: r is what the origin said (a remembered failure is not).
  void EndFlight(const std::shared_ptr<Flight>& flight, Result<FetchedObject> r,
                 bool counts = true);
  // Failures that repeat (failures.cc).
  std::optional<std::string> RememberedFailure(const std::string& key);
  void NoteOutcome(const std::string& key, const Result<FetchedObject>& r);
  struct Failures {
    int running = 0;       // failures in a row
    int64_t until_ms = 0;  // not asked again before (steady clock)
  };
  std::mutex failures_mu_;
  std::unordered_map<std::string, Failures> failures_;  // guarded by failures_mu_
  HttpRequest RequestFor(const Rule& rule, std::string url) const;

  void CountFetched(uint64_t bytes, std::size_t rule) {
    stats_.fetches++;
    stats_.fetched_bytes += bytes;
    stats_.fetched_last_minute.Add(bytes);
    std::lock_guard lock(rule_tallies_mu_);
    if (rule < kMaxRuleTallies) {
      if (rule_tallies_.size() <= rule) rule_tallies_.resize(rule + 1);
      rule_tallies_[rule].fetches++;
      rule_tallies_[rule].bytes += bytes;
      rule_tallies_[rule].minute.Add(bytes);
    }
  }
  struct RuleTally {
    uint64_t fetches = 0, bytes = 0;
    RateWindow minute;
  };
  static constexpr std::size_t kMaxRuleTallies = 1024;
  std::mutex rule_tallies_mu_;
  std::deque<RuleTally> rule_tallies_;  // by rule index; guarded by rule_tallies_mu_
  // ---- Refresh (refresh.cc).
  struct RefreshAttempt;
  RefreshAttempt RefreshFrom(const std::string& key, const Rule& rule, const std::string& origin,
                             const std::optional<ObjectRecord>& record, bool conditional,
                             bool force, const std::function<bool()>& may_replace);
  // kChangedLocally / kLocalFile when the bucket file at key is not the one
  // that landed as record says; nullopt when it is unchanged (or absent).
  std::optional<RefreshOutcome> LocalChange(const std::string& key,
                                            const std::optional<ObjectRecord>& record) const;
  // The bucket file at key holds exactly the staging file's size bytes.
  bool SameBytes(const std::string& key, const StagingFile& staging, uint64_t size) const;

  // Per-rule download slots (max_concurrent).
  class Slots;
  std::shared_ptr<Slots> SlotsFor(const Rule& rule);

  mutable std::mutex rules_mu_;
  std::shared_ptr<const RuleSet> rules_;  // guarded by rules_mu_
  std::atomic<bool> revalidates_{false};  // rules_->Revalidates(), set with rules_
  HttpClient& http_;
  BucketStore& store_;
  Index& index_;
  // Run, then the download's count and the spare staging files.
  void RunDownload(std::shared_ptr<Flight> flight, std::shared_ptr<const RuleSet> rules);
  // Downloads running in callers' threads; the destructor waits for them.
  std::mutex here_mu_;
  std::condition_variable here_cv_;
  int running_here_ = 0;  // guarded by here_mu_
  std::shared_ptr<Flight> StartOrJoin(
      std::string_view key, std::optional<uint64_t> landings_seen,
      const std::function<void(const std::shared_ptr<Flight>&)>* attach, bool here);
  MirrorOptions options_;
  MirrorStats stats_;
  std::mutex flights_mu_;
  std::unordered_map<std::string, std::shared_ptr<Flight>> flights_;  // guarded by flights_mu_
  std::atomic<bool> shutting_down_{false};
  OriginPool origins_;  // failover between a rule's origins
  std::mutex slots_mu_;
  std::unordered_map<std::string, std::shared_ptr<Slots>> slots_;  // guarded by slots_mu_
  struct KnownListing {
    std::shared_ptr<const OriginListing> listing;  // null: the origin serves none
    int64_t expires = 0;                           // unix time
    // Asking failed (FreshListing): lookups go by name until expires, a
    // readdir (ListDir) asks again and reports the failure.
    bool failed = false;
  };
  // The memory cache of listings is bounded by directories and by entries
  // (a few million-entry directories must not fill memory); when full it
  // starts over: the index still has them.
  static constexpr std::size_t kMaxListings = 4096;             // directories remembered
  static constexpr std::size_t kMaxListedEntries = 256 * 1024;  // their entries, in all
  std::mutex listings_mu_;
  std::unordered_map<std::string, KnownListing> listings_;  // guarded by listings_mu_
  std::size_t listed_entries_ = 0;                          // in listings_; listings_mu_
  void KeepListingLocked(const std::string& dir, KnownListing known);
  void DropListingLocked(const std::string& dir);
  std::unordered_set<std::size_t> listing_rules_;  // rules whose origin served an index page
  std::unordered_set<std::size_t> slash_rules_;    // ... marking a directory with '/'; listings_mu_
  std::unordered_set<std::size_t> webdav_rules_;   // "auto" rules whose origin answers PROPFIND
  std::unordered_set<std::size_t> no_webdav_rules_;  // ... and those seen not to; listings_mu_
  static constexpr int kListingRetryS = 10;          // list = "auto": a failure is not kept longer
  struct KnownManifest {
    std::shared_ptr<const ManifestTree> tree;
    int64_t expires = 0;
  };
  std::unordered_map<std::string, KnownManifest> manifests_;  // by source; listings_mu_
  // ---- Listings (listings.cc).
  // The first rule covering keys below base that lists, or null.
  static const Rule* ListingRule(const RuleSet& rules, const std::string& base);
  // Keeps l (null: the origin has none) for the rule's list_ttl, in memory
  // and in the index.
  std::shared_ptr<const OriginListing> RememberListing(const std::string& dir, const Rule& rule,
                                                       std::shared_ptr<OriginListing> l);
  Result<std::shared_ptr<const OriginListing>> ListingFailed(const std::string& dir,
                                                             const Rule& rule, Error e);
  // One listing page from the first of the rule's origins that answers
  // (below 500; failover as for fetches); EIO, logged, when none does.
  // accept: the Accept header asked with, unless the rule sets one;
  // method, body and headers: a PROPFIND's (method "" is GET).
  struct PageAsk {
    std::string_view accept;
    std::string_view method, body;
    std::vector<std::pair<std::string, std::string>> headers;
  };
  Result<HttpOutcome> GetListingPage(
      const std::string& dir, const Rule& rule,
      const std::function<std::string(const std::string& origin)>& url_for, bool one_try,
      const PageAsk& ask, PageSink& sink, std::string* url);
  // A WebDAV collection's PROPFIND (list = "webdav", or "auto" where the
  // origin answers one); nullopt from probe when the origin does not.
  Result<std::shared_ptr<const OriginListing>> ListFromWebdav(const std::string& dir,
                                                              const Rule& rule,
                                                              const RuleSet& rules, bool probe,
                                                              bool* answered);
  std::optional<Result<std::shared_ptr<const OriginListing>>> TryWebdav(const std::string& dir,
                                                                        const Rule& rule,
                                                                        const RuleSet& rules);
  // ListObjectsV2 pages until the last (type = "s3").
  Result<std::shared_ptr<const OriginListing>> ListFromS3(const std::string& dir, const Rule& rule,
                                                          const RuleSet& rules);
  Result<std::shared_ptr<const OriginListing>> ListFromIndexPage(const std::string& dir,
                                                                 const Rule& rule,
                                                                 const RuleSet& rules);
  // A listing the index keeps for dir while it is fresh (nullopt: none kept).
  std::optional<std::shared_ptr<const OriginListing>> KeptListing(const std::string& dir);
  // The rule's manifest, read again once older than its list_ttl.
  Result<std::shared_ptr<const ManifestTree>> ManifestFor(const Rule& rule);
  ObjectCache cache_;                 // writeback = false objects
  std::unique_ptr<ThreadPool> pool_;  // last: joined first on destruction
};

}  // namespace originfs
