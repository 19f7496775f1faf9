// One fuzzing world: temporary directories, the origin serving the tree,
// the reference directory and the mount; and the comparison of one step.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "tests/differential/ops.h"
#include "tests/differential/runner.h"
#include "tests/differential/tree.h"
#include "tests/support/mount_fixture.h"
#include "tests/support/temp_dir.h"
#include "tests/support/test_origin.h"

namespace originfs::difffuzz {

struct World {
  World(std::uint64_t seed, int workers, std::chrono::seconds lifetime);
  bool Mount();    // false (with the reason on stderr) if the mount does not come up
  bool Unmount();  // false if a mount is left
  // Unmounted: empties the bucket (index included) and rewrites the
  // reference, so every name is at the origin only again.
  void Reset();
  std::string LogTail(std::size_t lines) const;

  testing::TempDir root{"originfs-difffuzz"};
  std::string bucket, mnt, ref;
  testing::TestOrigin origin;
  Tree tree;
  e2e::DaemonOptions options;
  std::unique_ptr<e2e::OriginfsMount> mount;
};

// State shared (MAP_SHARED) by the coordinator and the worker processes.
struct Shared {
  std::atomic<int> stop{0}, failed{0};
  std::atomic<int> chaos_on{0};
  std::atomic<std::uint64_t> chaos_epoch{0};
  // When the faults last ended (steady clock, ms): a failure the daemon
  // remembers (failure_backoff, kFailureMemoryMs) may still answer EIO.
  std::atomic<std::int64_t> calm_since_ms{0};
  std::atomic<int> pause{0}, paused{0}, finished{0}, reset{0};
  std::atomic<std::uint64_t> ops{0}, eio_allowed{0}, shared_reads{0}, skipped{0};
  std::atomic<std::int64_t> started_ms[kMaxWorkers];
  std::atomic<int> pinned[kSharedFiles];
  std::atomic<std::uint64_t> ok[static_cast<int>(Kind::kCount)],
      err[static_cast<int>(Kind::kCount)];
  char current[kMaxWorkers][512];
  char failure_file[512];
};
Shared* NewShared();  // mmap'ed, zeroed, pinned[] = -1

std::int64_t NowMs();

// Which origin's faults could have touched this op: a name on its paths that
// is not in the bucket (or a symlink leading to one), a listing, a refresh.
bool InvolvesOrigin(const std::string& bucket_w, const Op& op);

// Compares the whole subtree of worker w on the mount and the reference;
// "" if equal, else the first difference.
std::string CompareTrees(const std::string& mnt_w, const std::string& ref_w);

// Writes ops (with a header naming seed, workers and worker) to path.
bool WriteOps(const std::string& path, std::uint64_t seed, int workers, int w,
              const std::vector<Op>& ops);

}  // namespace originfs::difffuzz
