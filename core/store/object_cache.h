// The bounded cache of objects fetched by writeback = false rules: they are
// served but not kept in the bucket. Files live in BUCKET/.originfs/cache
// (the staging filesystem, so landing one is a rename), named by a hash of
// the key; least recently used files are evicted beyond the size bound, never
// one that is still in use. The cache survives restarts (it is rescanned).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "core/common/error.h"
#include "core/common/unique_fd.h"
#include "core/store/bucket_store.h"

namespace originfs {

struct CachedObject {
  std::shared_ptr<UniqueFd> file;  // read-only; keeps the entry from being evicted
  uint64_t size = 0;
  int64_t mtime = 0;
};

class ObjectCache {
 public:
  // Relative to the bucket root.
  static inline const std::string kDir =
      std::string(BucketStore::kStateDirName) + "/" + std::string(BucketStore::kCacheDir);

  explicit ObjectCache(BucketStore& store);
  ~ObjectCache();
  ObjectCache(const ObjectCache&) = delete;
  ObjectCache& operator=(const ObjectCache&) = delete;

  std::optional<CachedObject> Lookup(std::string_view key);
  // Moves a complete staging file into the cache under key (replacing an
  // older copy), then evicts down to max_bytes.
  Result<CachedObject> Insert(std::string_view key, StagingFile& file, int64_t mtime,
                              uint64_t max_bytes);

  uint64_t bytes();

 private:
  struct Entry {
    uint64_t size = 0;
    uint64_t last_used = 0;          // logical clock
    std::weak_ptr<UniqueFd> in_use;  // the descriptor handed out, while alive
  };
  static std::string NameOf(std::string_view key);
  void EvictLocked(uint64_t max_bytes);

  BucketStore& store_;
  int dir_fd_ = -1;
  std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;  // file name -> entry; guarded by mu_
  uint64_t total_ = 0;                              // guarded by mu_
  uint64_t clock_ = 0;                              // guarded by mu_
};

}  // namespace originfs
