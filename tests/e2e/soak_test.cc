// Soak (bounded, ~30 s): many threads mix reads of origin keys, local writes
// and reads, deletes and misses against a flaky origin (random 500s, bodies
// cut off halfway, late 503s, slow answers). Every read that succeeds has
// exactly the right bytes, every failure is EIO (misses ENOENT), and in the
// end every file in the bucket equals its origin copy or what was last
// written to it locally, with no staging debris.
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <iostream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/mount_fixture.h"

namespace originfs::e2e {
namespace {

class SoakTest : public MountTest {};

TEST_F(SoakTest, MixedLoadAgainstAFlakyOrigin) {
  constexpr int kKeys = 240;
  constexpr int kDirs = 12;
  constexpr int kThreads = 16;
  constexpr auto kDuration = 30s;
  std::map<std::string, std::string> origin_bodies;
  for (int i = 0; i < kKeys; ++i) {
    std::string key = "d" + std::to_string(i % kDirs) + "/obj" + std::to_string(i) + ".bin";
    testing::Behavior b;
    b.body = PatternBytes(1 + (i * 7919) % (300 * 1024), 5000 + i);
    b.fail_rate = 0.3;
    if (i % 5 == 0) b.delay_ms = 50;
    if (i % 7 == 0) b.chunked = true;
    origin_bodies[key] = b.body;
    origin_.Set("/" + key, b);
  }
  origin_.SetNginxDirectories(true);
  DaemonOptions o = Defaults();
  o.extra_opts = {"retries=1", "low_speed_time=2", "negative_ttl=2"};
  o.watchdog = 120s;
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  ASSERT_EQ(mkdir(M("local").c_str(), 0755), 0);

  std::vector<std::string> keys;
  for (const auto& [k, v] : origin_bodies) keys.push_back(k);
  std::mutex mu;
  std::map<std::string, std::string> local_bodies;  // guarded by mu
  std::set<std::string> deleted;                    // keys ever deleted; mu
  auto was_deleted = [&](const std::string& key) {
    std::lock_guard lock(mu);
    return deleted.contains(key);
  };
  std::atomic<bool> stop{false};
  std::atomic<long> ok_reads{0}, eio_reads{0}, writes{0}, misses{0}, deletes{0};

  auto worker = [&](int t) {
    std::vector<std::string> problems;
    std::mt19937 rng(777 + t);
    auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
    while (!stop && problems.size() < 20) {
      int op = pick(100);
      if (op < 55) {  // read an origin key
        const std::string& key = keys[pick(kKeys)];
        auto r = ReadAll(M(key));
        if (r.err == 0) {
          if (r.data != origin_bodies[key])
            problems.push_back(key + ": wrong bytes (" + std::to_string(r.data.size()) + " of " +
                               std::to_string(origin_bodies[key].size()) + ")");
          ++ok_reads;
        } else if (r.err == EIO) {
          ++eio_reads;
        } else if (r.err == ENOENT && was_deleted(key)) {
          // between a delete and its restore
        } else {
          problems.push_back(key + ": " + r.stage + ": " + ErrnoName(r.err));
        }
      } else if (op < 60) {  // stat an origin key
        const std::string& key = keys[pick(kKeys)];
        struct stat st {};
        int err = StatErr(M(key), &st);
        if (err == 0 && static_cast<std::size_t>(st.st_size) != origin_bodies[key].size())
          problems.push_back(key + ": stat size " + std::to_string(st.st_size));
        else if (err != 0 && err != EIO && !(err == ENOENT && was_deleted(key)))
          problems.push_back(key + ": stat: " + ErrnoName(err));
      } else if (op < 80) {  // write and read back a local file (one writer per name)
        std::string name = "local/t" + std::to_string(t) + "-" + std::to_string(pick(8)) + ".txt";
        std::string data = PatternBytes(1 + pick(64 * 1024), rng());
        int err = WriteAll(M(name), data);
        if (err) {
          problems.push_back(name + ": write: " + ErrnoName(err));
          continue;
        }
        {
          std::lock_guard lock(mu);
          local_bodies[name] = data;
        }
        ++writes;
        auto r = ReadAll(M(name));
        if (r.err || r.data != data) problems.push_back(name + ": read back " + ErrnoName(r.err));
      } else if (op < 92) {  // a miss
        std::string name =
            pick(2) ? "miss-" + std::to_string(pick(50)) + ".txt"
                    : "d" + std::to_string(pick(kDirs)) + "/nope-" + std::to_string(pick(50));
        int err = StatErr(M(name));
        if (err != ENOENT) problems.push_back(name + ": expected ENOENT, got " + ErrnoName(err));
        ++misses;
      } else {  // delete a mirrored object, then restore it: back-source again
        const std::string& key = keys[pick(kKeys)];
        {
          std::lock_guard lock(mu);
          deleted.insert(key);
        }
        if (unlink(M(key).c_str()) == 0) {
          ++deletes;
        } else if (errno != ENOENT && errno != EIO) {
          problems.push_back(key + ": unlink: " + ErrnoName(errno));
        }
        std::size_t slash = key.rfind('/');
        std::string dir = slash == std::string::npos ? mnt_ : M(key.substr(0, slash));
        std::string name = slash == std::string::npos ? key : key.substr(slash + 1);
        if (setxattr(dir.c_str(), "user.originfs.restore", name.data(), name.size(), 0) != 0 &&
            errno != ENOENT && errno != EIO)
          problems.push_back(key + ": restore: " + ErrnoName(errno));
      }
    }
    return problems;
  };

  auto start = std::chrono::steady_clock::now();
  std::vector<std::future<std::vector<std::string>>> workers;
  for (int t = 0; t < kThreads; ++t) workers.push_back(std::async(std::launch::async, worker, t));
  std::this_thread::sleep_for(kDuration);
  stop = true;
  std::vector<std::string> problems;
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_EQ(workers[t].wait_for(60s), std::future_status::ready) << "worker " << t << " hangs";
    auto p = workers[t].get();
    problems.insert(problems.end(), p.begin(), p.end());
  }
  std::cerr << "[ soak ] " << ok_reads << " good reads, " << eio_reads << " EIO, " << writes
            << " writes, " << misses << " misses, " << deletes << " deletes in "
            << std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() -
                                                                start)
                   .count()
            << " s\n";
  EXPECT_TRUE(problems.empty()) << ::testing::PrintToString(problems);
  EXPECT_GT(ok_reads, 100);
  EXPECT_GT(eio_reads, 0) << "the origin was not flaky enough to test anything";

  ASSERT_NO_FATAL_FAILURE(Unmount());
  // The whole bucket: origin copies and local writes, nothing else, nothing partial.
  int checked = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(bucket_, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    std::string rel = std::filesystem::relative(it->path(), bucket_).string();
    if (rel == ".originfs") {
      it.disable_recursion_pending();
      continue;
    }
    if (!it->is_regular_file()) continue;
    auto data = ReadAll(it->path().string());
    ASSERT_EQ(data.err, 0) << rel;
    if (auto o = origin_bodies.find(rel); o != origin_bodies.end()) {
      EXPECT_TRUE(data.data == o->second)
          << rel << ": differs from the origin (" << data.data.size() << " of " << o->second.size()
          << " bytes)";
    } else if (auto l = local_bodies.find(rel); l != local_bodies.end()) {
      EXPECT_TRUE(data.data == l->second) << rel << ": differs from what was written";
    } else {
      ADD_FAILURE() << "unexpected file in the bucket: " << rel;
    }
    ++checked;
  }
  EXPECT_GT(checked, 50);
  EXPECT_TRUE(StagingFiles(bucket_).empty()) << ::testing::PrintToString(StagingFiles(bucket_));
}

}  // namespace
}  // namespace originfs::e2e
