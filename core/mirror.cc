#include "core/mirror.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <chrono>
#include <ctime>
#include <thread>

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include "core/url.h"

namespace originfs {

// ---- Flight ----------------------------------------------------------------

void Flight::OnHead(HeadCallback cb) {
  std::unique_lock lock(mu_);
  if (!head_) {
    head_waiters_.push_back(std::move(cb));
    return;
  }
  Result<Resolution> copy = *head_;
  lock.unlock();
  cb(copy);
}

void Flight::OnDone(DoneCallback cb) {
  std::unique_lock lock(mu_);
  if (!done_) {
    done_waiters_.push_back(std::move(cb));
    return;
  }
  Result<FetchedObject> copy = *done_;
  lock.unlock();
  cb(copy);
}

Result<Resolution> Flight::WaitHead() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [this] { return head_.has_value(); });
  return *head_;
}

Result<FetchedObject> Flight::WaitDone() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [this] { return done_.has_value(); });
  return *done_;
}

std::optional<Result<Resolution>> Flight::head() const {
  std::lock_guard lock(mu_);
  return head_;
}

bool Flight::finished() const {
  std::lock_guard lock(mu_);
  return done_.has_value();
}

void Flight::PublishHead(Result<Resolution> r) {
  std::vector<HeadCallback> waiters;
  {
    std::lock_guard lock(mu_);
    if (head_) return;
    head_ = r;
    waiters.swap(head_waiters_);
  }
  cv_.notify_all();
  for (auto& w : waiters) w(r);
}

void Flight::Finish(Result<FetchedObject> r) {
  if (!r) PublishHead(std::unexpected(r.error()));
  std::vector<DoneCallback> waiters;
  {
    std::lock_guard lock(mu_);
    done_ = r;
    waiters.swap(done_waiters_);
  }
  cv_.notify_all();
  for (auto& w : waiters) w(r);
}

// ---- Mirror ----------------------------------------------------------------

namespace {

int64_t Now() { return static_cast<int64_t>(std::time(nullptr)); }

bool IsNotFoundStatus(long s) { return s == 404 || s == 410; }

std::string_view LastSegment(std::string_view key) {
  std::size_t slash = key.rfind('/');
  return slash == std::string_view::npos ? key : key.substr(slash + 1);
}

// Receives one GET for a flight: decides from the head what the key is and
// streams the body into a staging file.
class FlightSink final : public HttpSink {
 public:
  FlightSink(Flight& flight, BucketStore& store, const Rule& rule, std::string url,
             uint64_t max_size)
      : flight_(flight), store_(store), rule_(rule), url_(std::move(url)), max_size_(max_size) {}

  bool OnHead(const HttpResponseHead& h) override {
    head_ = h;
    // A redirect from key to key/ (nginx, Apache) means a directory.
    if (h.redirects > 0 && h.effective_url.ends_with('/') && !url_.ends_with('/')) {
      is_dir_ = true;
      return false;
    }
    if (IsNotFoundStatus(h.status)) {
      not_found_ = true;
      return false;
    }
    if (h.status != 200 && h.status != 203) {
      error_ = Error{EIO, fmt::format("HTTP {}", h.status)};
      return false;
    }
    if (max_size_ && h.content_length && *h.content_length > max_size_) {
      error_ = Error{EIO, fmt::format("{} ({} > max_object_size {})", ToString(FetchErrc::kTooLarge),
                                      *h.content_length, max_size_)};
      return false;
    }
    auto staging = store_.CreateStaging();
    if (!staging) {
      error_ = staging.error();
      return false;
    }
    staging_ = std::move(*staging);
    if (h.content_length) {
      // Size known up front: a lookup can be answered now, while the body streams.
      flight_.PublishHead(Resolution{RemoteKind::kFile, *h.content_length, h.mtime.value_or(Now()),
                                     rule_.writeback, url_});
    }
    return true;
  }

  bool OnData(const char* data, std::size_t len) override {
    if (max_size_ && staging_->size() + len > max_size_) {
      error_ = Error{EIO, fmt::format("{} (over max_object_size {})", ToString(FetchErrc::kTooLarge), max_size_)};
      return false;
    }
    auto r = staging_->Append(data, len);
    if (!r) {
      error_ = r.error();
      return false;
    }
    return true;
  }

  Flight& flight_;
  BucketStore& store_;
  const Rule& rule_;
  std::string url_;
  uint64_t max_size_;
  HttpResponseHead head_;
  bool is_dir_ = false;
  bool not_found_ = false;
  std::optional<Error> error_;
  std::unique_ptr<StagingFile> staging_;
};

// Answers only the head; used for the "key/" directory probe.
class HeadOnlySink final : public HttpSink {
 public:
  bool OnHead(const HttpResponseHead&) override { return false; }
  bool OnData(const char*, std::size_t) override { return false; }
};

}  // namespace

Mirror::Mirror(RuleSet rules, HttpClient& http, BucketStore& store, Index& index, MirrorOptions options)
    : rules_(std::make_shared<const RuleSet>(std::move(rules))),
      http_(http),
      store_(store),
      index_(index),
      options_(options),
      pool_(std::make_unique<ThreadPool>(options.download_threads)) {}

Mirror::~Mirror() {
  Shutdown();
  pool_.reset();
}

void Mirror::Shutdown() {
  shutting_down_ = true;
  http_.Shutdown();
}

std::shared_ptr<const RuleSet> Mirror::rules() const {
  std::lock_guard lock(rules_mu_);
  return rules_;
}

void Mirror::SetRules(RuleSet rules) {
  auto next = std::make_shared<const RuleSet>(std::move(rules));
  std::lock_guard lock(rules_mu_);
  rules_ = std::move(next);
}

bool Mirror::HasRule(std::string_view key) const { return !rules()->Match(key).empty(); }

bool Mirror::ImpliedDirectory(std::string_view key) const { return rules()->PrefixImpliesDirectory(key); }

void Mirror::ForgetNotFound(std::string_view key) {
  if (auto r = index_.EraseNotFound(key); !r) spdlog::warn("index: {}", r.error().message);
}

std::shared_ptr<Flight> Mirror::Start(std::string_view key) {
  std::string k(key);
  std::shared_ptr<Flight> flight;
  {
    std::lock_guard lock(flights_mu_);
    auto it = flights_.find(k);
    if (it != flights_.end()) return it->second;
    flight = std::make_shared<Flight>(k);
    // A flight that finished just now has already linked the object.
    struct stat st;
    if (!k.empty() && fstatat(store_.root_fd(), k.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0) {
      flight->Finish(FetchedObject{true, nullptr, static_cast<uint64_t>(st.st_size)});
      flight->PublishHead(Resolution{RemoteKind::kLocal});
      return flight;
    }
    flights_.emplace(k, flight);
  }
  stats_.misses++;
  auto nf = index_.IsNotFound(k, Now());
  if (nf && *nf) {
    stats_.not_found++;
    flight->PublishHead(Resolution{RemoteKind::kNotFound});
    Complete(flight, Fail(ENOENT, "remembered 404"));
    return flight;
  }
  if (shutting_down_) {
    Complete(flight, Fail(EIO, "shutting down"));
    return flight;
  }
  stats_.inflight++;
  pool_->Submit([this, flight, rules = rules()] {
    Run(flight, rules);
    stats_.inflight--;
  });
  return flight;
}

void Mirror::Complete(const std::shared_ptr<Flight>& flight, Result<FetchedObject> r) {
  {
    std::lock_guard lock(flights_mu_);
    auto it = flights_.find(flight->key());
    if (it != flights_.end() && it->second == flight) flights_.erase(it);
  }
  flight->Finish(std::move(r));
}

void Mirror::Run(std::shared_ptr<Flight> flight, std::shared_ptr<const RuleSet> rules) {
  const std::string& key = flight->key();
  auto candidates = rules->Match(key);
  bool virtual_dir = false;
  for (const Rule* rule : candidates) {
    bool not_found = false, is_dir = false;
    auto r = FetchFromRule(*flight, *rule, &not_found, &is_dir);
    if (is_dir) {
      flight->PublishHead(Resolution{RemoteKind::kDirectory});
      Complete(flight, Fail(EISDIR, "directory"));
      return;
    }
    if (!not_found) {
      Complete(flight, std::move(r));
      return;
    }
    if (rule->dirs == DirMode::kVirtual ||
        (rule->dirs == DirMode::kNoExt && LastSegment(key).find('.') == std::string_view::npos)) {
      virtual_dir = true;
    }
  }
  if (virtual_dir) {
    flight->PublishHead(Resolution{RemoteKind::kDirectory});
    Complete(flight, Fail(EISDIR, "directory"));
    return;
  }
  stats_.not_found++;
  if (options_.negative_ttl_s > 0) {
    if (auto p = index_.PutNotFound(key, Now() + options_.negative_ttl_s); !p)
      spdlog::warn("index: {}", p.error().message);
  }
  flight->PublishHead(Resolution{RemoteKind::kNotFound});
  Complete(flight, Fail(ENOENT, "not found at any origin"));
}

bool Mirror::ProbeDirectory(const std::string& url) {
  HttpRequest req{url + "/", true, std::nullopt, {}};
  HeadOnlySink sink;
  stats_.requests++;
  auto r = http_.Perform(req, sink);
  if (!r) return false;
  long s = r->head.status;
  return (s >= 200 && s < 300) || s == 401 || s == 403;
}

Result<FetchedObject> Mirror::FetchFromRule(Flight& flight, const Rule& rule, bool* not_found,
                                            bool* is_dir) {
  const std::string& key = flight.key();
  std::string url = KeyUrl(rule.origin, key);
  auto started = std::chrono::steady_clock::now();
  HttpRequest req{url, false, std::nullopt, {}};
  // The client retries what fails before the body starts; a body that breaks
  // off midway is retried here, from scratch into a fresh staging file.
  std::optional<FlightSink> attempt;
  std::expected<HttpOutcome, HttpFailure> outcome;
  long backoff_ms = 100;
  for (int n = 0;; ++n) {
    attempt.emplace(flight, store_, rule, url, options_.max_object_size);
    stats_.requests++;
    outcome = http_.Perform(req, *attempt);
    bool broken_body = !outcome && !attempt->error_ && outcome.error().body_started &&
                       outcome.error().errc != FetchErrc::kAborted;
    if (!broken_body || n >= options_.retries || shutting_down_) break;
    spdlog::info("fetch {}: {} ({}); retrying", key, ToString(outcome.error().errc), outcome.error().detail);
    std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms));
    backoff_ms *= 2;
  }
  FlightSink& sink = *attempt;
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

  auto fail = [&](Error e) -> Result<FetchedObject> {
    stats_.origin_errors++;
    spdlog::warn("fetch {} from {} ({}) failed after {:.3f}s: {}", key, url, rule.Describe(), secs, e.message);
    if (e.code != ENOSPC) e.code = EIO;  // never ENOENT for anything but a 404
    return std::unexpected(std::move(e));
  };

  if (sink.error_) return fail(*sink.error_);
  if (!outcome) {
    if (outcome.error().errc == FetchErrc::kAborted) return std::unexpected(Error{EIO, "aborted"});
    return fail(Error{ToErrno(outcome.error().errc),
                      fmt::format("{}: {}", ToString(outcome.error().errc), outcome.error().detail)});
  }
  if (sink.is_dir_) {
    *is_dir = true;
    spdlog::debug("lookup {}: directory at {} ({})", key, url, rule.Describe());
    return std::unexpected(Error{EISDIR, "directory"});
  }
  if (sink.not_found_) {
    spdlog::debug("lookup {}: {} answered {} ({})", key, url, outcome->head.status, rule.Describe());
    if (rule.dirs != DirMode::kVirtual && ProbeDirectory(url)) {
      *is_dir = true;
      return std::unexpected(Error{EISDIR, "directory"});
    }
    *not_found = true;
    return std::unexpected(Error{ENOENT, "not found"});
  }
  if (!sink.staging_) return fail(Error{EIO, fmt::format("HTTP {}", outcome->head.status)});

  StagingFile& staging = *sink.staging_;
  const HttpResponseHead& h = outcome->head;
  if (h.content_length && staging.size() != *h.content_length) {
    return fail(Error{EIO, fmt::format("got {} of {} bytes", staging.size(), *h.content_length)});
  }
  int64_t mtime = h.mtime.value_or(Now());
  Resolution res{RemoteKind::kFile, staging.size(), mtime, rule.writeback, url};
  flight.PublishHead(res);  // no-op when Content-Length let us publish early

  FetchedObject obj;
  obj.size = staging.size();
  if (rule.writeback) {
    auto c = store_.Commit(staging, key, mtime);
    if (!c && c.error().code != EEXIST) return fail(c.error());
    if (!c) {
      spdlog::info("fetch {}: a local file appeared meanwhile; keeping it", key);
    } else {
      ObjectRecord rec{url, h.etag, h.last_modified, staging.size(), Now(), static_cast<uint32_t>(rule.index)};
      if (auto p = index_.Put(key, rec); !p) spdlog::warn("index: {}", p.error().message);
    }
    obj.in_bucket = true;
  } else {
    int fd = fcntl(staging.fd(), F_DUPFD_CLOEXEC, 0);
    if (fd < 0) return fail(Error{errno, "dup staging fd"});
    obj.temp_file = std::make_shared<UniqueFd>(fd);
  }
  stats_.fetches++;
  stats_.fetched_bytes += staging.size();
  spdlog::info("fetched key={} url={} status={} bytes={} duration={:.3f}s rule={}", key, url, h.status,
               staging.size(), secs, rule.index + 1);
  return obj;
}

}  // namespace originfs
