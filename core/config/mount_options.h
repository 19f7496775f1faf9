// Parsing of `-o` option lists: originfs's own options are taken out, words
// that only mean something to mount(8)/fstab are dropped, and the rest is
// handed to libfuse.
#pragma once

#include <sys/types.h>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/common/error.h"

namespace originfs {

struct MountOptions {
  std::string rules_file;
  std::string origin;
  std::string state_dir;  // default: BUCKET/.originfs
  std::string log_level = "info";
  std::string log_file;
  int negative_ttl = 10;     // seconds a 404 is remembered
  int failure_backoff = 10;  // most seconds a key whose fetch keeps failing is not asked again
  // Names and attributes the kernel keeps: these for origin-only names; for
  // names in the bucket too when given, else long (kLongCache) where the
  // bucket is watched for changes of other programs (see fs/bucket_watch.h).
  double entry_timeout = 1.0;
  double attr_timeout = 1.0;
  bool entry_timeout_set = false;
  bool attr_timeout_set = false;
  static constexpr double kLongCache = 3600;
  uint64_t max_object_size = 0;  // 0: unlimited
  int download_threads = 32;
  long connect_timeout_ms = 10'000;
  long low_speed_time = 30;
  int retries = 2;
  long max_redirects = 5;
  bool fsync = true;            // landings durable before visible (off: not power-loss safe)
  bool zero_open = true;        // let the kernel skip OPEN/RELEASE for files
  bool passthrough = true;      // FUSE passthrough for complete files, where the kernel allows it
  bool io_uring = false;        // FUSE over io_uring, where the kernel offers it
  std::string shared = "auto";  // shared bucket coordination: auto (network filesystems), on, off
  int max_threads = 64;         // FUSE worker threads
  int idle_threads = 16;        // FUSE worker threads kept waiting for requests
  uint64_t parallel_min = 64ull << 20;  // objects this big come as two parallel ranged GETs
  std::string metrics_file;             // Prometheus text file, rewritten every metrics_interval
  double metrics_interval = 5.0;
  std::optional<uid_t> uid;               // report every file as owned by this user
  std::optional<gid_t> gid;               // ... and group
  std::optional<mode_t> umask;            // clear these permission bits in reported modes
  std::vector<std::string> fuse_options;  // passed to libfuse as -o
};

// Adds the comma-separated options in list (one -o argument) to opts.
// Values may not contain commas. Errors name the offending option.
Result<void> ParseOptionList(std::string_view list, MountOptions& opts);

// True for words that mount(8), fstab or systemd use and that are not
// FUSE options (_netdev, nofail, noauto, x-systemd.*, defaults, ...).
bool IsMountOnlyWord(std::string_view opt);

}  // namespace originfs
