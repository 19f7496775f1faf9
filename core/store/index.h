// The LMDB index: what was mirrored from where, and which keys the origins
// recently said do not exist. The index is never the only copy of anything:
// every record describes a file that is (or was) in the bucket, so losing the
// state directory loses no data (it is started empty).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "core/common/error.h"

namespace originfs {

struct ObjectRecord {
  std::string url;  // where it was fetched from
  std::string etag;
  std::string last_modified;  // raw header
  uint64_t size = 0;
  int64_t fetched_at = 0;  // seconds since the epoch
  uint32_t rule = 0;       // 0-based rule index at fetch time
  // The landed file right after landing (inode number, mtime and ctime in
  // ns since the epoch), so a refresh can tell whether it changed since: any
  // write, truncate, chmod, utimens or replacement changes one of them (and
  // size). 0: not known (a record written before these were kept).
  uint64_t landed_ino = 0;
  int64_t landed_mtime_ns = 0;
  int64_t landed_ctime_ns = 0;
  bool operator==(const ObjectRecord&) const = default;
};

class Index {
 public:
  virtual ~Index() = default;
  virtual Result<void> Put(std::string_view key, const ObjectRecord& rec) = 0;
  virtual Result<std::optional<ObjectRecord>> Get(std::string_view key) = 0;
  virtual Result<void> Erase(std::string_view key) = 0;
  // Negative entries: key -> expiry (seconds since the epoch). Bounded by
  // IndexOptions::max_not_found: expired ones are swept first, then keys
  // in key order.
  virtual Result<void> PutNotFound(std::string_view key, int64_t expires_at) = 0;
  // True if key has an unexpired negative entry at time now.
  virtual Result<bool> IsNotFound(std::string_view key, int64_t now) = 0;
  virtual Result<void> EraseNotFound(std::string_view key) = 0;
  virtual Result<uint64_t> CountObjects() = 0;
  // Is there a record of an object below dir_key ("dir_key/...")? Keys too
  // long to be stored as they are (hashed) are not seen.
  virtual Result<bool> HasObjectBelow(std::string_view dir_key) = 0;
  // Origins' directory listings (encoded by EncodeListing), kept so that a
  // remount lists without a request: dir key -> bytes, until expires_at.
  virtual Result<void> PutListing(std::string_view dir_key, std::string_view encoded,
                                  int64_t expires_at) = 0;
  // The listing while unexpired at now, else nullopt; its expiry (as given
  // to PutListing) in *expires_at when found.
  virtual Result<std::optional<std::string>> GetListing(std::string_view dir_key, int64_t now,
                                                        int64_t* expires_at = nullptr) = 0;
  virtual Result<void> EraseListing(std::string_view dir_key) = 0;
};

struct IndexOptions {
  // Address space reserved for the map at first (sparse); a full map is
  // doubled, up to 1 TiB.
  uint64_t map_size = 1ull << 32;
  // Entries of the negative cache at most (see PutNotFound).
  std::size_t max_not_found = 100000;
  // Called once (from the thread that found it) when the index turns out
  // corrupt while running; every call fails from then on, and the next
  // OpenLmdbIndex moves the index aside. The daemon stops cleanly.
  std::function<void(const std::string& why)> on_corrupt;
  // Every commit synced (the default; see lmdb_index.cc). false only for
  // scratch indexes (benchmarks, tests of other things): a power cut can
  // then tear it, and the next start moves it aside.
  bool durable = true;
};

// Opens (creating) an LMDB environment in dir. A corrupt or incompatible
// environment is moved aside and started empty (it is only an index): one
// that LMDB refuses, one torn by a power cut (see index_health.h), one that a
// walk after an unclean shutdown could not read, one the last run marked
// corrupt.
Result<std::unique_ptr<Index>> OpenLmdbIndex(const std::string& dir, const IndexOptions& options);

// Serialisation of ObjectRecord (exposed for tests).
std::string EncodeRecord(const ObjectRecord& rec);
std::optional<ObjectRecord> DecodeRecord(std::string_view bytes);

}  // namespace originfs
