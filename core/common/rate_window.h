// Events and bytes over the last minute, in one-second slots: what a
// migration's fetch rate and ETA are computed from.
#pragma once

#include <array>
#include <cstdint>
#include <ctime>
#include <mutex>

namespace originfs {

class RateWindow {
 public:
  static constexpr int kSeconds = 60;
  void Add(uint64_t bytes, int64_t now = std::time(nullptr)) {
    std::lock_guard lock(mu_);
    Slot& s = slots_[static_cast<std::size_t>(now % kSeconds)];
    if (s.second != now) s = Slot{now, 0, 0};
    s.events++;
    s.bytes += bytes;
  }
  struct Sum {
    uint64_t events = 0, bytes = 0;
  };
  // The slots of the last kSeconds seconds before now (now's own included).
  Sum LastMinute(int64_t now = std::time(nullptr)) const {
    std::lock_guard lock(mu_);
    Sum sum;
    for (const Slot& s : slots_) {
      if (s.second > now - kSeconds && s.second <= now) {
        sum.events += s.events;
        sum.bytes += s.bytes;
      }
    }
    return sum;
  }

 private:
  struct Slot {
    int64_t second = -1;
    uint64_t events = 0, bytes = 0;
  };
  mutable std::mutex mu_;
  std::array<Slot, kSeconds> slots_{};
};

}  // namespace originfs
