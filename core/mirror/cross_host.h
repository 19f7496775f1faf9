// Reading along another host's download (shared buckets). The host that
// holds a key's lock publishes, in the lock file, its staging file and how
// many bytes from offset 0 are on the shared filesystem (Announcer); a host
// waiting for that lock follows it (Follower): its flight takes the other
// host's staging file as its stream, so its readers get bytes as they
// arrive there instead of after the whole download. The staging file
// becomes the landed file (same inode), so what they read is the object.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "core/common/unique_fd.h"
#include "core/mirror/flight.h"
#include "core/store/bucket_store.h"

namespace originfs {

// Publishes the flight's progress through its key lock every kInterval
// while it lives, each time after syncing the staging file (so the bytes
// announced are what another host's client reads). Only for named staging
// files: an O_TMPFILE one cannot be opened by name.
class Announcer {
 public:
  static constexpr auto kInterval = std::chrono::milliseconds(100);
  Announcer(const Flight& flight, const KeyLock& lock);
  ~Announcer();
  Announcer(const Announcer&) = delete;
  Announcer& operator=(const Announcer&) = delete;

 private:
  void Loop();
  bool AnnounceOnce();  // false once there is nothing more to announce
  const Flight& flight_;
  const KeyLock& lock_;
  std::string name_;        // the staging file's name, once known
  uint64_t announced_ = 0;  // bytes announced last
  bool any_ = false;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  std::thread thread_;
};

// Feeds a waiting flight from what the lock's holder publishes (handed to
// BucketStore::LockKey as its LockWait).
class Follower {
 public:
  // stop: set when the mount shuts down (waiting ends at once).
  Follower(Flight& flight, BucketStore& store, bool allowed, const std::atomic<bool>& stop)
      : flight_(flight), store_(store), allowed_(allowed), stop_(stop) {}
  // BucketStore::LockWait: false once the mount stops. (No deadline on the
  // holder: a healthy one may publish nothing for long — waiting for a
  // download slot, failing over, verifying a checksum — and the record has
  // no heartbeat yet to tell it from a frozen one.)
  bool operator()(const std::optional<KeyProgress>& p);
  // Whether the flight has served (or may have served) another host's bytes.
  bool following() const { return static_cast<bool>(file_); }
  // What the holder published last of the file followed.
  const std::optional<KeyProgress>& last() const { return last_; }
  // The followed download landed as key: waits (bounded) until this host's
  // client shows the whole file.
  void Landed(const std::string& key);

 private:
  Flight& flight_;
  BucketStore& store_;
  const bool allowed_;
  const std::atomic<bool>& stop_;
  std::shared_ptr<UniqueFd> file_;
  std::string staging_;
  uint64_t expected_size_ = 0;
  std::optional<KeyProgress> last_;
};

}  // namespace originfs
