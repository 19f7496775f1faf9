#include "core/mirror/mirror.h"

#include <fcntl.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include "core/mirror/range_split.h"
#include "core/mirror/record.h"
#include "core/mirror/response_sink.h"
#include "core/origin/url.h"

namespace originfs {

struct Mirror::RefreshAttempt {
  enum Kind { kDone, kFallThrough, kNotFound, kFailed } kind = kFailed;
  Result<RefreshOutcome> result = std::unexpected(Error{EIO, "origin down (not asked)"});
  bool switchable = false;  // connection error, timeout or 5xx: another origin may do better
};

std::optional<Mirror::RefreshOutcome> Mirror::LocalChange(
    const std::string& key, const std::optional<ObjectRecord>& record) const {
  auto fd = store_.OpenKey(key, O_PATH);
  if (!fd) return std::nullopt;  // nothing there: nothing to lose
  struct stat st;
  int rc = fstat(*fd, &st);
  close(*fd);
  if (rc != 0) return std::nullopt;
  if (!record) return RefreshOutcome::kLocalFile;
  if (!S_ISREG(st.st_mode) || static_cast<uint64_t>(st.st_size) != record->size)
    return RefreshOutcome::kChangedLocally;
  if (record->landed_ino == 0) return std::nullopt;  // an old record: the size is all it has
  if (st.st_ino != record->landed_ino || Nanos(st.st_mtim) != record->landed_mtime_ns ||
      Nanos(st.st_ctim) != record->landed_ctime_ns)
    return RefreshOutcome::kChangedLocally;
  return std::nullopt;
}

namespace {

// Whether the staging file holds the same size bytes as the bucket file at key.
bool SameBytesIn(int a, int b, uint64_t size) {
  char x[1 << 15], y[1 << 15];
  for (uint64_t off = 0; off < size;) {
    std::size_t n = static_cast<std::size_t>(std::min<uint64_t>(sizeof x, size - off));
    auto o = static_cast<off_t>(off);
    if (pread(a, x, n, o) != static_cast<ssize_t>(n) ||
        pread(b, y, n, o) != static_cast<ssize_t>(n) || std::memcmp(x, y, n) != 0)
      return false;
    off += n;
  }
  return true;
}

}  // namespace

bool Mirror::SameBytes(const std::string& key, const StagingFile& staging, uint64_t size) const {
  if (staging.size() != size) return false;
  auto fd = store_.OpenKey(key, O_RDONLY | O_NOFOLLOW);
  if (!fd) return false;
  UniqueFd held(*fd);
  struct stat st;
  return fstat(held.get(), &st) == 0 && static_cast<uint64_t>(st.st_size) == size &&
         SameBytesIn(staging.fd(), held.get(), size);
}

Mirror::RefreshAttempt Mirror::RefreshFrom(const std::string& key, const Rule& rule,
                                           const std::string& origin,
                                           const std::optional<ObjectRecord>& record,
                                           bool conditional, bool force,
                                           const std::function<bool()>& may_replace) {
  std::string url = KeyUrl(origin, rule.OriginPath(key));
  HttpRequest req = RequestFor(rule, url);
  if (conditional) {
    if (!record->etag.empty()) req.protocol_headers.emplace_back("If-None-Match", record->etag);
    if (!record->last_modified.empty())
      req.protocol_headers.emplace_back("If-Modified-Since", record->last_modified);
  }
  Flight scratch(key);  // heads published while refreshing go nowhere
  std::unique_ptr<StagingFile> staging;
  ResponseSink sink(scratch, store_, rule, url,
                    rule.max_object_size.value_or(options_.max_object_size), staging);
  stats_.requests++;
  auto outcome = http_.Perform(req, sink);
  RefreshAttempt a;
  auto fail = [&](std::string why, bool switchable) {
    stats_.origin_errors++;
    spdlog::warn("refresh key={} url={} rule={} failed: {}", key, url, rule.index + 1, why);
    a.kind = RefreshAttempt::kFailed;
    a.result = Fail(EIO, fmt::format("refresh {}: {}", url, why));
    a.switchable = switchable;
    return a;
  };
  if (outcome && outcome->head.status == 304) {
    spdlog::info("refresh key={} url={}: not modified", key, url);
    a.kind = RefreshAttempt::kDone;
    a.result = RefreshOutcome::kUnchanged;
    return a;
  }
  if (sink.fall_through_ || sink.final_not_found_) {
    a.kind = sink.fall_through_ ? RefreshAttempt::kFallThrough : RefreshAttempt::kNotFound;
    return a;
  }
  if (sink.error_)
    return fail(sink.error_->message, sink.status_error_ && sink.head_.status >= 500);
  if (!outcome) {
    const HttpFailure& f = outcome.error();
    return fail(fmt::format("{}: {}", ToString(f.errc), f.detail), SwitchableFailure(f));
  }
  if (!staging || sink.is_dir_) return fail(fmt::format("HTTP {}", outcome->head.status), false);
  const HttpResponseHead& h = outcome->head;
  if (std::string bad = CheckBody(sink, *staging, h); !bad.empty()) return fail(bad, false);
  // The download took a while: look again right before replacing.
  if (auto changed = force ? std::nullopt : LocalChange(key, record)) {
    spdlog::info("refresh key={}: changed locally while downloading; keeping it", key);
    a.kind = RefreshAttempt::kDone;
    a.result = *changed;
    return a;
  }
  a.kind = RefreshAttempt::kDone;
  if (!force && may_replace && !may_replace()) {
    spdlog::info("refresh key={}: open for writing; keeping it", key);
    a.result = RefreshOutcome::kChangedLocally;
    return a;
  }
  if (!conditional && !force && record && SameBytes(key, *staging, record->size)) {
    // Asked for whole (validators that cannot tell) and it is what the
    // bucket has: nothing is replaced, and the copy counts as fetched now.
    ObjectRecord checked = *record;
    checked.fetched_at = Now();
    if (auto p = index_.Put(key, checked); !p) spdlog::warn("index: {}", p.error().message);
    spdlog::info("refresh key={} url={}: the same bytes", key, url);
    a.result = RefreshOutcome::kUnchanged;
    return a;
  }
  if (auto c = store_.CommitReplace(*staging, key, sink.MtimeOf(h)); !c) {
    a.result = std::unexpected(c.error());
    return a;
  }
  ObjectRecord updated{
      url, h.etag, h.last_modified, staging->size(), Now(), static_cast<uint32_t>(rule.index)};
  NoteLanded(updated, staging->fd());
  if (auto p = index_.Put(key, updated); !p) spdlog::warn("index: {}", p.error().message);
  CountFetched(staging->size(), rule.index);
  spdlog::info("refreshed key={} url={} status={} bytes={} rule={}{}", key, url, h.status,
               staging->size(), rule.index + 1, force ? " (forced)" : "");
  a.result = RefreshOutcome::kUpdated;
  return a;
}

Result<Mirror::RefreshOutcome> Mirror::Refresh(std::string_view key_view, bool force,
                                               const std::function<bool()>& may_replace) {
  std::string key(key_view);
  auto rules = this->rules();
  auto candidates = rules->Match(key);
  if (candidates.empty()) return Fail(EINVAL, "no rule matches " + key);
  {
    std::lock_guard lock(failures_mu_);
    failures_.erase(key);  // asked for by hand: asked at once
  }
  auto rec = index_.Get(key);
  std::optional<ObjectRecord> record = rec ? *rec : std::nullopt;
  // A local edit is never lost to a refresh unless forced.
  std::optional<RefreshOutcome> local = LocalChange(key, record);
  if (local && !force) {
    spdlog::info("refresh key={}: {}; keeping it (force replaces it)", key,
                 *local == RefreshOutcome::kLocalFile ? "a local file (no landing record)"
                                                      : "changed locally since it landed");
    return *local;
  }
  // Conditional only while the bucket holds exactly what the record describes,
  // and its validators can tell a change (ValidatorsPinVersion).
  bool conditional = record && !local && store_.Exists(key) &&
                     ValidatorsPinVersion(record->etag, record->last_modified, record->fetched_at);
  if (record && !local && !conditional)
    spdlog::debug(
        "refresh key={}: validators made in the second it was fetched; asking for it whole", key);
  for (const Rule* rule : candidates) {
    RefreshAttempt a;
    origins_.Failover(  // as fetches do
        rule->origins,
        [&](const std::string& origin) {
          a = RefreshFrom(key, *rule, origin, record, conditional, force, may_replace);
          if (a.kind != RefreshAttempt::kFailed) return OriginVerdict::kAnswered;
          return a.switchable ? OriginVerdict::kSwitch : OriginVerdict::kFailed;
        },
        shutting_down_);
    if (a.kind == RefreshAttempt::kFallThrough) continue;
    if (a.kind == RefreshAttempt::kNotFound) break;
    return std::move(a.result);
  }
  spdlog::info("refresh key={}: no origin has it any more; keeping the local copy", key);
  return RefreshOutcome::kGoneAtOrigin;
}
}  // namespace originfs
