// The mirror joins the rules, the HTTP client, the bucket store and the index:
// it resolves a missing key against the origins and lands it in the bucket.
//
// Concurrent requests for one key share one Flight (single-flight): only the
// first performs the download, the others wait for its result. A Flight
// reports twice: once the response head is known (enough to answer a lookup:
// file size and mtime, directory, or not found) and once the object is
// complete (enough to open it). Lookup therefore costs one round trip and the
// body keeps streaming into staging meanwhile; there is no HEAD+GET pair.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "core/bucket_store.h"
#include "core/error.h"
#include "core/http_client.h"
#include "core/index.h"
#include "core/listing.h"
#include "core/object_cache.h"
#include "core/rules.h"
#include "core/thread_pool.h"
#include "core/unique_fd.h"

namespace originfs {

enum class RemoteKind {
  kFile,       // the origin has it; size and mtime are valid
  kDirectory,  // the origin (or a rule prefix) says it is a directory
  kNotFound,   // every matching rule's origin said 404 (or a remembered 404)
  kLocal,      // it appeared in the bucket meanwhile: look it up locally
};

struct Resolution {
  RemoteKind kind = RemoteKind::kNotFound;
  uint64_t size = 0;
  int64_t mtime = 0;
  bool writeback = true;
  std::string url;
  // kFile: the inode number of the file the body goes to (in the bucket's
  // filesystem), which the landed file keeps; 0 if unknown.
  ino_t ino = 0;
};

// A directory's entries as its origin lists them (see core/listing.h).
struct OriginListing {
  std::vector<ListedEntry> entries;  // sorted by name
  const ListedEntry* Find(std::string_view name) const;
};

struct FetchedObject {
  bool in_bucket = false;               // linked under its key
  std::shared_ptr<UniqueFd> temp_file;  // writeback = false: read-write fd of an unlinked copy
  uint64_t size = 0;
  int64_t landed_ns = 0;  // wall clock when it was linked / cached
};

class Flight {
 public:
  using HeadCallback = std::function<void(const Result<Resolution>&)>;
  using DoneCallback = std::function<void(const Result<FetchedObject>&)>;

  explicit Flight(std::string key) : key_(std::move(key)) {}
  const std::string& key() const { return key_; }

  // Runs cb once the head is known: at once on this thread if it already is,
  // otherwise later on a download thread.
  void OnHead(HeadCallback cb);
  // Runs cb once the object is complete (or failed); same threading as OnHead.
  void OnDone(DoneCallback cb);
  // Blocking forms.
  Result<Resolution> WaitHead();
  Result<FetchedObject> WaitDone();

  std::optional<Result<Resolution>> head() const;
  bool finished() const;

  // Streaming: while the body arrives, readers may read the part that is
  // already in the staging file. stream_file() is null until the body starts
  // (and stays null for rules that verify a checksum before serving).
  std::shared_ptr<UniqueFd> stream_file() const;
  uint64_t received() const;
  // Runs cb once `bytes` bytes are in the staging file or the flight is
  // finished (successfully or not): at once or later on a download thread.
  void OnAvailable(uint64_t bytes, std::function<void()> cb);
  // Runs cb once the staging file exists (stream_file() set) or the flight is finished.
  void OnStreamOrDone(std::function<void()> cb);

  // Producer side (Mirror only). The first PublishHead wins; Finish also
  // publishes an error head when none was published.
  void PublishHead(Result<Resolution> r);
  void Finish(Result<FetchedObject> r);
  void SetStream(std::shared_ptr<UniqueFd> file);
  // give_way: the producer may step back for a reader it woke (see
  // mirror.cc); false where it holds a lock others need.
  void Progress(uint64_t bytes, bool give_way = true);

 private:
  void GiveWay(uint64_t bytes_left);
  std::atomic<int> give_way_left_{2};  // the head's answer and the first read's
  const std::string key_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::optional<Result<Resolution>> head_;                                // guarded by mu_
  std::optional<Result<FetchedObject>> done_;                             // guarded by mu_
  std::vector<HeadCallback> head_waiters_;                                // guarded by mu_
  std::vector<DoneCallback> done_waiters_;                                // guarded by mu_
  std::shared_ptr<UniqueFd> stream_;                                      // guarded by mu_
  uint64_t received_ = 0;                                                 // guarded by mu_
  std::vector<std::pair<uint64_t, std::function<void()>>> data_waiters_;  // guarded by mu_
  std::vector<std::function<void()>> stream_waiters_;                     // guarded by mu_
};

struct MirrorOptions {
  int negative_ttl_s = 10;       // how long a 404 is remembered
  uint64_t max_object_size = 0;  // 0: unlimited
  std::size_t download_threads = 32;
  int retries = 2;             // re-downloads after a body broke off midway
  int origin_cooldown_s = 30;  // a failed origin is tried last for this long
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
  Result<RefreshOutcome> Refresh(std::string_view key, bool force = false);

  // Replaces the rules (reload). Running flights finish with the old ones.
  void SetRules(RuleSet rules);
  std::shared_ptr<const RuleSet> rules() const;

  // The origin's listing of the directory dir_key ("" for the root), asked
  // for when the one known is older than its rule's list_ttl. nullptr when
  // there is none (no rule, list = "none", or the origin serves no index page
  // for the directory: 401/403/404, or a page that is not one). EIO when
  // asking failed (5xx, timeout, connection), logged with the URL.
  Result<std::shared_ptr<const OriginListing>> ListDir(std::string_view dir_key);
  // The listing known for dir_key while it is fresh; no request.
  std::shared_ptr<const OriginListing> FreshListing(std::string_view dir_key);
  // The next ListDir of dir_key asks the origin again.
  void ForgetListing(std::string_view dir_key);

  // Forgets a remembered 404 (e.g. when the name is created locally).
  void ForgetNotFound(std::string_view key);

  Index& index() { return index_; }
  const MirrorStats& stats() const { return stats_; }
  void Shutdown();

 private:
  struct Attempt;
  struct RefreshAttempt;
  RefreshAttempt RefreshFrom(const std::string& key, const Rule& rule, const std::string& origin,
                             const std::optional<ObjectRecord>& record, bool conditional,
                             bool force);
  // kChangedLocally / kLocalFile when the bucket file at key is not the one
  // that landed as record says; nullopt when it is unchanged (or absent).
  std::optional<RefreshOutcome> LocalChange(const std::string& key,
                                            const std::optional<ObjectRecord>& record) const;
  void Run(std::shared_ptr<Flight> flight, std::shared_ptr<const RuleSet> rules);
  Attempt FetchFromOrigin(Flight& flight, const Rule& rule, const std::string& origin);
  bool ProbeDirectory(const Rule& rule, const std::string& url);
  void Complete(const std::shared_ptr<Flight>& flight, Result<FetchedObject> r);
  HttpRequest RequestFor(const Rule& rule, std::string url) const;
  // Failover bookkeeping: origins that failed recently are tried last.
  std::vector<std::string> OriginOrder(const Rule& rule);
  void MarkDown(const std::string& origin);
  void MarkUp(const std::string& origin);
  // Per-rule download slots (max_concurrent).
  class Slots;
  std::shared_ptr<Slots> SlotsFor(const Rule& rule);

  mutable std::mutex rules_mu_;
  std::shared_ptr<const RuleSet> rules_;  // guarded by rules_mu_
  HttpClient& http_;
  BucketStore& store_;
  Index& index_;
  // Run, then the download's count and the spare staging files.
  void RunCounted(std::shared_ptr<Flight> flight, std::shared_ptr<const RuleSet> rules);
  // Downloads running in callers' threads; the destructor waits for them.
  std::mutex here_mu_;
  std::condition_variable here_cv_;
  int running_here_ = 0;  // guarded by here_mu_
  std::shared_ptr<Flight> StartImpl(
      std::string_view key, std::optional<uint64_t> landings_seen,
      const std::function<void(const std::shared_ptr<Flight>&)>* attach, bool here);
  MirrorOptions options_;
  MirrorStats stats_;
  std::mutex flights_mu_;
  std::unordered_map<std::string, std::shared_ptr<Flight>> flights_;  // guarded by flights_mu_
  std::atomic<bool> shutting_down_{false};
  std::mutex health_mu_;
  std::unordered_map<std::string, int64_t>
      down_until_;  // origin -> unix time; guarded by health_mu_
  std::mutex slots_mu_;
  std::unordered_map<std::string, std::shared_ptr<Slots>> slots_;  // guarded by slots_mu_
  struct KnownListing {
    std::shared_ptr<const OriginListing> listing;  // null: the origin serves none
    int64_t expires = 0;                           // unix time
  };
  static constexpr std::size_t kMaxListings = 4096;  // directories remembered
  std::mutex listings_mu_;
  std::unordered_map<std::string, KnownListing> listings_;  // guarded by listings_mu_
  std::unordered_set<std::size_t> listing_rules_;  // rules whose origin served an index page
  static constexpr int kListingRetryS = 10;        // list = "auto": a failure is not kept longer
  struct KnownManifest {
    std::shared_ptr<const ManifestTree> tree;
    int64_t expires = 0;
  };
  std::unordered_map<std::string, KnownManifest> manifests_;  // by source; listings_mu_
  // A listing the index keeps for dir while it is fresh (nullopt: none kept).
  std::optional<std::shared_ptr<const OriginListing>> KeptListing(const std::string& dir);
  // The rule's manifest, read again once older than its list_ttl.
  Result<std::shared_ptr<const ManifestTree>> ManifestFor(const Rule& rule);
  ObjectCache cache_;                 // writeback = false objects
  std::unique_ptr<ThreadPool> pool_;  // last: joined first on destruction
};

}  // namespace originfs
