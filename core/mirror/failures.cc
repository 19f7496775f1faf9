// Failures that repeat are remembered. A key whose fetch ended in EIO
// (5xx, a timeout, a refused redirect, a 405 that is no directory) three
// times running is answered EIO without a request for 1 s, then 2, 4, ...
// up to MirrorOptions::failure_backoff_s, so one bad URL that a program
// keeps asking for costs a request per backoff, not one per call. The first
// two are not remembered (a stat and an open that failed, then a retry once
// the origin is mended, all go out: FaultsTest); any other
// answer (the object, a 404) forgets it, as does `refresh`. Origins that
// cannot be reached at all are not asked by any key meanwhile
// (offline.cc); listings keep their own failures (listings.cc).
#include <chrono>

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include "core/mirror/mirror.h"

namespace originfs {
namespace {

int64_t SteadyMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

constexpr std::size_t kMaxRemembered = 100000;  // a cache, not a record
constexpr int kRemembered = 3;                  // failures running before one is remembered

}  // namespace

std::optional<std::string> Mirror::RememberedFailure(const std::string& key) {
  if (options_.failure_backoff_s <= 0) return std::nullopt;
  std::lock_guard lock(failures_mu_);
  auto it = failures_.find(key);
  if (it == failures_.end()) return std::nullopt;
  int64_t left = it->second.until_ms - SteadyMs();
  if (left <= 0) return std::nullopt;
  return fmt::format("failed {} times running; asked again in {:.1f} s", it->second.running,
                     static_cast<double>(left) / 1000);
}

void Mirror::NoteOutcome(const std::string& key, const Result<FetchedObject>& r) {
  if (options_.failure_backoff_s <= 0 || shutting_down_) return;
  std::lock_guard lock(failures_mu_);
  if (r || r.error().code != EIO) {
    failures_.erase(key);
    return;
  }
  if (failures_.size() >= kMaxRemembered && !failures_.contains(key)) failures_.clear();
  Failures& f = failures_[key];
  if (++f.running < kRemembered) return;
  int64_t backoff_ms = std::min<int64_t>(int64_t{1000} << std::min(f.running - kRemembered, 20),
                                         int64_t{options_.failure_backoff_s} * 1000);
  f.until_ms = SteadyMs() + backoff_ms;
  spdlog::info("fetch key={}: failed {} times running; not asked again for {} s", key, f.running,
               static_cast<double>(backoff_ms) / 1000);
}

}  // namespace originfs
