// The index at scale: builds an LMDB index of N records through the Index
// interface the daemon uses (one transaction per record, as landings write
// them), then reports build rate, bytes per entry, random lookup latency,
// and how long opening it takes against opening an empty one (start-up must
// not depend on the index's size). Used by bench/run's scale group:
//   originfs_index_bench DIR [N]     (DIR must not exist; removed by the caller)
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include "core/store/index.h"

using namespace originfs;
using Clock = std::chrono::steady_clock;

namespace {

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

std::string KeyOf(uint64_t i) { return fmt::format("d{:04}/f{:07}.dat", i % 1000, i); }

ObjectRecord RecordOf(uint64_t i) {
  ObjectRecord r;
  r.url = "http://origin.example.com/" + KeyOf(i);
  r.etag = fmt::format("\"{:x}-5f3c1a2b\"", i);
  r.last_modified = "Wed, 21 Oct 2015 07:28:00 GMT";
  r.size = 4096 + i % 100000;
  r.fetched_at = 1700000000 + static_cast<int64_t>(i);
  r.landed_ino = 1000000 + i;
  r.landed_mtime_ns = 1445412480'000'000'000;
  r.landed_ctime_ns = 1700000000'000'000'000;
  return r;
}

uint64_t FileSize(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_blocks) * 512 : 0;
}

// Drops the page cache (when root) so an open reads the disk, as after a boot.
void DropCaches() {
  sync();
  if (FILE* f = std::fopen("/proc/sys/vm/drop_caches", "w")) {
    std::fputs("3", f);
    std::fclose(f);
  }
}

double OpenSeconds(const std::string& dir) {
  DropCaches();
  auto t0 = Clock::now();
  auto idx = OpenLmdbIndex(dir, IndexOptions{});
  if (!idx) {
    std::fprintf(stderr, "open %s: %s\n", dir.c_str(), idx.error().message.c_str());
    std::exit(1);
  }
  auto n = (*idx)->CountObjects();  // what the daemon's start-up reads of it
  (void)n;
  return Seconds(t0, Clock::now());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s DIR [ENTRIES]\n", argv[0]);
    return 2;
  }
  spdlog::set_level(spdlog::level::warn);
  const std::string dir = argv[1];
  const uint64_t n = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 10'000'000;
  if (mkdir(dir.c_str(), 0700) != 0) {
    std::perror("mkdir");
    return 1;
  }
  const std::string full = dir + "/full", empty = dir + "/empty";
  double build_s = 0;
  {
    // Started from a small map, so the build also grows it as the daemon would.
    // Unsynced: this measures the tree, not 10,000,000 disk flushes (the
    // daemon's landings share synced commits; bench/run's misses measure that).
    auto idx = OpenLmdbIndex(full, IndexOptions{.map_size = 64ull << 20, .durable = false});
    if (!idx) {
      std::fprintf(stderr, "open: %s\n", idx.error().message.c_str());
      return 1;
    }
    auto t0 = Clock::now();
    for (uint64_t i = 0; i < n; ++i) {
      if (auto r = (*idx)->Put(KeyOf(i), RecordOf(i)); !r) {
        std::fprintf(stderr, "put %llu: %s\n", static_cast<unsigned long long>(i),
                     r.error().message.c_str());
        return 1;
      }
    }
    build_s = Seconds(t0, Clock::now());
    std::mt19937_64 rng(42);
    const int lookups = 200000;
    std::vector<double> us;
    us.reserve(lookups);
    for (int j = 0; j < lookups; ++j) {
      uint64_t i = rng() % n;
      auto t = Clock::now();
      auto g = (*idx)->Get(KeyOf(i));
      us.push_back(Seconds(t, Clock::now()) * 1e6);
      if (!g || !*g || (*g)->landed_ino != 1000000 + i) {
        std::fprintf(stderr, "lookup of %s wrong\n", KeyOf(i).c_str());
        return 1;
      }
    }
    std::sort(us.begin(), us.end());
    double mean = 0;
    for (double u : us) mean += u / lookups;
    uint64_t bytes = FileSize(full + "/data.mdb");
    std::printf("entries %llu\n", static_cast<unsigned long long>(n));
    std::printf("build_s %.2f\n", build_s);
    std::printf("build_per_s %.0f\n", n / build_s);
    std::printf("bytes %llu\n", static_cast<unsigned long long>(bytes));
    std::printf("bytes_per_entry %.1f\n", static_cast<double>(bytes) / n);
    std::printf("lookup_us_p50 %.2f\n", us[us.size() / 2]);
    std::printf("lookup_us_p99 %.2f\n", us[us.size() * 99 / 100]);
    std::printf("lookup_us_mean %.2f\n", mean);
  }
  // Opening it again (cold) against opening an empty index.
  std::printf("open_full_s %.4f\n", OpenSeconds(full));
  std::printf("open_empty_s %.4f\n", OpenSeconds(empty));
  return 0;
}
