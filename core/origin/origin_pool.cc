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
}

OriginVerdict OriginPool::Failover(
    const std::vector<std::string>& origins,
    const std::function<OriginVerdict(const std::string& origin)>& attempt,
    const std::atomic<bool>& stop) {
  OriginVerdict v = OriginVerdict::kSwitch;
  for (const std::string& origin : Order(origins)) {
    v = attempt(origin);
    if (v == OriginVerdict::kAnswered) MarkUp(origin);
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
