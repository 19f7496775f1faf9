// Failover between a rule's origins: which to try first, when to move on to
// the next, and how long to wait before a retry. Every request path of the
// mirror (fetch, refresh, listing) goes through Failover, so they behave
// alike: an origin that failed with a connection error, a timeout or a 5xx
// is tried last for a cool-down, and the next one is asked at once.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "core/origin/http_client.h"

namespace originfs {

// What one attempt against one origin came to.
enum class OriginVerdict {
  kAnswered,  // the origin answered (whatever it said): it is up, stop here
  kSwitch,    // it failed in a way another origin may not (5xx): next
  // It could not be reached (connection refused, no answer within the
  // timeout, name not resolved): next, and it is down until a probe says
  // otherwise (OriginPool::Unreachable).
  kUnreachable,
  kFailed,  // it failed in a way another would too (a broken body, a bad page): stop
};

// An origin's state as the mount last found it.
struct OriginState {
  std::string origin;
  bool up = true;
  int64_t down_since = 0;  // unix time; 0 while up
  std::string last_error;  // of the failure that took it down, or of the last probe
};

class OriginPool {
 public:
  explicit OriginPool(int cooldown_s) : cooldown_s_(cooldown_s) {}

  // origins, the ones that failed within the cool-down moved last (still tried).
  std::vector<std::string> Order(const std::vector<std::string>& origins);
  void MarkDown(const std::string& origin);
  void MarkUp(const std::string& origin);
  // An origin that could not be reached is down: Failover sends it nothing
  // (no request waits on it) until MarkUp, which a probe in the background
  // calls once it answers again.
  void MarkUnreachable(const std::string& origin, const std::string& why);
  bool Unreachable(const std::string& origin);
  std::vector<std::string> UnreachableOrigins();
  // Every origin that has been down, and those down now (the others are up).
  std::vector<OriginState> States();

  // Runs attempt on each origin in Order until one does not say kSwitch or
  // kUnreachable (or stop is set), skipping the unreachable ones; marks the
  // origins up or down by what attempt said. Returns the last verdict
  // (kSwitch / kUnreachable: every origin failed over, or stopped;
  // kUnreachable without a call of attempt when every origin is down).
  OriginVerdict Failover(const std::vector<std::string>& origins,
                         const std::function<OriginVerdict(const std::string& origin)>& attempt,
                         const std::atomic<bool>& stop);

 private:
  const int cooldown_s_;
  std::mutex mu_;
  std::unordered_map<std::string, int64_t> down_until_;  // origin -> unix time; guarded by mu_
  std::unordered_map<std::string, OriginState> states_;  // origins that were down; mu_
};

// A failure before the body started that another origin may not have:
// connection refused, name not resolved, no byte within the timeout.
bool SwitchableFailure(const HttpFailure& f);

// Exponential waits between retries of one request: 100 ms, 200 ms, 400 ms...
class Backoff {
 public:
  void Wait();

 private:
  std::chrono::milliseconds next_{100};
};

}  // namespace originfs
