#include "core/origin/origin_pool.h"

#include <ctime>
#include <thread>

namespace originfs {
namespace {

int64_t Now() { return static_cast<int64_t>(std::time(nullptr)); }

}  // namespace

std::vector<std::string> OriginPool::Order(const std::vector<std::string>& origins) {
  std::vector<std::string> healthy, down;
  int64_t now = Now();
  std::lock_guard lock(mu_);
  for (const auto& o : origins) {
    auto it = down_until_.find(o);
    (it != down_until_.end() && it->second > now ? down : healthy).push_back(o);
  }
  healthy.insert(healthy.end(), down.begin(), down.end());  // still probed, last
  return healthy;
}

void OriginPool::MarkDown(const std::string& origin) {
  std::lock_guard lock(mu_);
  down_until_[origin] = Now() + cooldown_s_;
}

void OriginPool::MarkUp(const std::string& origin) {
  std::lock_guard lock(mu_);
  down_until_.erase(origin);
  if (auto it = states_.find(origin); it != states_.end() && !it->second.up) {
    it->second.up = true;
    it->second.down_since = 0;
  }
}

void OriginPool::MarkUnreachable(const std::string& origin, const std::string& why) {
  std::lock_guard lock(mu_);
  down_until_[origin] = Now() + cooldown_s_;
  OriginState& s = states_[origin];
  s.origin = origin;
  if (s.up) s.down_since = Now();
  s.up = false;
  if (!why.empty()) s.last_error = why;
}

bool OriginPool::Unreachable(const std::string& origin) {
  std::lock_guard lock(mu_);
  auto it = states_.find(origin);
  return it != states_.end() && !it->second.up;
}

std::vector<std::string> OriginPool::UnreachableOrigins() {
  std::vector<std::string> out;
  std::lock_guard lock(mu_);
  for (const auto& [o, s] : states_)
    if (!s.up) out.push_back(o);
  return out;
}

std::vector<OriginState> OriginPool::States() {
  std::vector<OriginState> out;
  std::lock_guard lock(mu_);
  for (const auto& [o, s] : states_) out.push_back(s);
  return out;
}

OriginVerdict OriginPool::Failover(
    const std::vector<std::string>& origins,
    const std::function<OriginVerdict(const std::string& origin)>& attempt,
    const std::atomic<bool>& stop) {
  OriginVerdict v = OriginVerdict::kSwitch;
  for (const std::string& origin : Order(origins)) {
    if (Unreachable(origin)) {  // known down: the probe asks it, not a caller
      v = OriginVerdict::kUnreachable;
      continue;
    }
    v = attempt(origin);
    if (v == OriginVerdict::kAnswered) MarkUp(origin);
    if (v == OriginVerdict::kUnreachable) {
      MarkUnreachable(origin, "");
      if (stop) break;
      continue;
    }
    if (v != OriginVerdict::kSwitch || stop) break;
    MarkDown(origin);
  }
  return v;
}

bool SwitchableFailure(const HttpFailure& f) {
  return !f.body_started && (f.errc == FetchErrc::kConnect || f.errc == FetchErrc::kTimeout ||
                             f.errc == FetchErrc::kResolve);
}

void Backoff::Wait() {
  std::this_thread::sleep_for(next_);
  next_ *= 2;
}

}  // namespace originfs
