// Concurrency: many readers of many missing keys and of one key get the right
// bytes with exactly one GET per key and no deadlock, and requests for local
// files keep being answered while origins are slow.
//
// Keys are spread over many directories as well as sharing some, so both
// the per-directory and the cross-directory paths are exercised.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <future>
#include <iostream>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/mount_fixture.h"

namespace originfs::e2e {
namespace {

class ConcurrencyTest : public MountTest {};

std::chrono::milliseconds Since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               t);
}

TEST_F(ConcurrencyTest, ManyThreadsManyKeysAndOneHotKey) {
  constexpr int kKeys = 1000;
  constexpr int kDirs = 50;
  constexpr int kThreads = 64;
  auto key_of = [](int i) {
    return "d" + std::to_string(i % kDirs) + "/k" + std::to_string(i) + ".bin";
  };
  auto body_of = [](int i) { return PatternBytes(512 + (i * 977) % 12000, 1000 + i); };
  for (int i = 0; i < kKeys; ++i) origin_.SetFile("/" + key_of(i), body_of(i));
  const std::string hot = PatternBytes(4 * 1024 * 1024 + 5, 999);
  testing::Behavior hb;
  hb.body = hot;
  hb.delay_ms = 300;  // every hot reader arrives while its one download runs
  origin_.Set("/hot/key.bin", hb);
  origin_.SetNginxDirectories(true);
  DaemonOptions o = Defaults();
  o.watchdog = 150s;
  ASSERT_NO_FATAL_FAILURE(Mount(o));

  auto start = std::chrono::steady_clock::now();
  std::atomic<int> next{0};
  std::atomic<bool> go{false};
  std::vector<std::future<std::vector<std::string>>> workers;  // each: failures
  for (int t = 0; t < kThreads; ++t) {
    workers.push_back(std::async(std::launch::async, [&] {
      std::vector<std::string> failures;
      while (!go) std::this_thread::yield();
      for (int i; (i = next++) < kKeys;) {
        auto r = ReadAll(M(key_of(i)));
        if (r.err)
          failures.push_back(key_of(i) + ": " + r.stage + ": " + ErrnoName(r.err));
        else if (r.data != body_of(i))
          failures.push_back(key_of(i) + ": wrong bytes (" + std::to_string(r.data.size()) + ")");
      }
      return failures;
    }));
  }
  std::vector<std::future<ReadResult>> hot_readers;
  for (int t = 0; t < kThreads; ++t) {
    hot_readers.push_back(std::async(std::launch::async, [&] {
      while (!go) std::this_thread::yield();
      return ReadAll(M("hot/key.bin"));
    }));
  }
  go = true;

  for (int t = 0; t < kThreads; ++t) {
    ASSERT_EQ(hot_readers[t].wait_for(60s), std::future_status::ready)
        << "hot reader " << t << " hangs";
    auto r = hot_readers[t].get();
    EXPECT_EQ(r.err, 0) << "hot reader " << t << ": " << r.stage << ": " << ErrnoName(r.err);
    EXPECT_TRUE(r.data == hot) << "hot reader " << t << " got " << r.data.size() << " bytes";
  }
  std::vector<std::string> failures;
  for (int t = 0; t < kThreads; ++t) {
    ASSERT_EQ(workers[t].wait_for(90s), std::future_status::ready)
        << "worker " << t << " hangs (deadlock?) after " << Since(start).count() << " ms; "
        << next.load() << " keys started";
    auto f = workers[t].get();
    failures.insert(failures.end(), f.begin(), f.end());
  }
  auto took = Since(start);
  EXPECT_TRUE(failures.empty())
      << failures.size() << " failures, e.g. "
      << ::testing::PrintToString(std::vector<std::string>(
             failures.begin(), failures.begin() + std::min<std::size_t>(10, failures.size())));
  EXPECT_EQ(origin_.GetCount("/hot/key.bin"), 1);
  int wrong = 0;
  for (int i = 0; i < kKeys; ++i) {
    int n = origin_.GetCount("/" + key_of(i));
    if (n != 1 && ++wrong <= 10) ADD_FAILURE() << key_of(i) << ": " << n << " GETs";
  }
  EXPECT_EQ(wrong, 0) << "keys without exactly one GET";
  EXPECT_LT(took, 60s) << "1000 small keys took " << took.count() << " ms";
  std::cerr << "[ concurrency ] " << kKeys << " keys + " << kThreads << " hot readers in "
            << took.count() << " ms\n";
  // Everything landed.
  for (int i = 0; i < kKeys; i += 97) {
    EXPECT_TRUE(EventuallyExists(B(key_of(i)))) << key_of(i);  // linked just after the last read
    EXPECT_TRUE(ReadAll(B(key_of(i))).data == body_of(i)) << key_of(i);
  }
}

TEST_F(ConcurrencyTest, LookupsWhileTheDirectoryIsListedDoNotDeadlock) {
  // Lookups in a directory hold it while they enter the new inode; listing
  // the directory enters the directory itself. Both at once, many times,
  // must go on (an inverted lock order here once hung the whole mount).
  constexpr int kFiles = 3000;
  constexpr int kLookers = 4;
  constexpr int kListers = 2;
  ASSERT_EQ(mkdir(B("d").c_str(), 0755), 0);
  for (int i = 0; i < kFiles; ++i)
    ASSERT_EQ(WriteAll(B("d/f" + std::to_string(i)), std::to_string(i)), 0);
  ASSERT_NO_FATAL_FAILURE(Mount());

  std::atomic<int> lookers_left{kLookers};
  std::vector<std::future<int>> listers, lookers;
  for (int t = 0; t < kListers; ++t) {
    listers.push_back(std::async(std::launch::async, [&] {
      int lists = 0;
      while (lookers_left.load() > 0) {
        int fd = open(M("d").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) return -1;
        close(fd);
        ++lists;
      }
      return lists;
    }));
  }
  for (int t = 0; t < kLookers; ++t) {
    lookers.push_back(std::async(std::launch::async, [&, t] {
      int ok = 0;
      for (int i = t; i < kFiles; i += kLookers) {
        struct stat st {};
        if (StatErr(M("d/f" + std::to_string(i)), &st) == 0) ++ok;
      }
      lookers_left--;
      return ok;
    }));
  }
  // A bound on liveness, not on speed: this takes about a second.
  int found = 0;
  for (auto& f : lookers) {
    ASSERT_EQ(f.wait_for(60s), std::future_status::ready) << "lookups hung";
    found += f.get();
  }
  for (auto& f : listers) {
    ASSERT_EQ(f.wait_for(60s), std::future_status::ready) << "opening the directory hung";
    EXPECT_GE(f.get(), 0);
  }
  EXPECT_EQ(found, kFiles);
  EXPECT_EQ(origin_.TotalCount(), 0);
}

TEST_F(ConcurrencyTest, LocalRequestsAnsweredWhileDownloadsAreSlow) {
  constexpr int kSlow = 100;
  constexpr int kSlowMs = 3000;
  // Each slow key sits in its own local directory, so the kernel's
  // per-directory lookup lock does not serialise them.
  ASSERT_EQ(mkdir(B("slow").c_str(), 0755), 0);
  std::vector<std::string> bodies;
  for (int i = 0; i < kSlow; ++i) {
    ASSERT_EQ(mkdir(B("slow/" + std::to_string(i)).c_str(), 0755), 0);
    bodies.push_back(PatternBytes(64 * 1024 + i, 2000 + i));
    testing::Behavior b;
    b.body = bodies.back();
    if (i % 2)
      b.delay_ms = kSlowMs;  // the head is late: the lookup waits
    else
      b.stall_ms = kSlowMs;  // the body stalls halfway: the read waits
    origin_.Set("/slow/" + std::to_string(i) + "/obj.bin", b);
  }
  ASSERT_EQ(WriteAll(B("local.txt"), "local bytes"), 0);
  ASSERT_EQ(WriteAll(B("slow/local.txt"), "local in slow/"), 0);
  // Only slow/ goes to the origin: a new name elsewhere is purely local (a
  // miss under a rule would have to ask the busy origin first).
  DaemonOptions o;
  o.rules = {RuleSpec{"slow/", origin_.url()}};
  o.extra_opts = {"download_threads=128", "low_speed_time=30"};
  o.watchdog = 90s;
  ASSERT_NO_FATAL_FAILURE(Mount(o));

  std::vector<std::future<ReadResult>> slow;
  for (int i = 0; i < kSlow; ++i) {
    std::string path = M("slow/" + std::to_string(i) + "/obj.bin");
    slow.push_back(std::async(std::launch::async, [path] { return ReadAll(path); }));
  }
  // Wait until the origin is busy with them (its pool answers 64 at a time).
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (origin_.TotalCount() < 60 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  ASSERT_GE(origin_.TotalCount(), 60) << "slow downloads did not start";

  // Local requests, each answered quickly although every download is stuck.
  auto timed = [&](const char* what, auto&& op) {
    auto t = std::chrono::steady_clock::now();
    op();
    auto ms = Since(t);
    EXPECT_LT(ms, 1000ms) << what << " took " << ms.count() << " ms while downloads were slow";
  };
  for (int round = 0; round < 3; ++round) {
    timed("stat local.txt", [&] {
      struct stat st {};
      EXPECT_EQ(StatErr(M("local.txt"), &st), 0);
      EXPECT_EQ(st.st_size, 11);
    });
    timed("read local.txt", [&] { EXPECT_EQ(ReadAll(M("local.txt")).data, "local bytes"); });
    timed("read slow/local.txt",
          [&] { EXPECT_EQ(ReadAll(M("slow/local.txt")).data, "local in slow/"); });
    timed("create and read", [&] {
      std::string name = "new-" + std::to_string(round) + ".txt";
      EXPECT_EQ(WriteAll(M(name), "new"), 0);
      EXPECT_EQ(ReadAll(M(name)).data, "new");
    });
    timed("list root", [&] { EXPECT_FALSE(ListDir(mnt_).empty()); });
    timed("stat a fresh local name", [&] {
      std::string name = "behind-" + std::to_string(round) + ".txt";
      ASSERT_EQ(WriteAll(B(name), "x"), 0);
      EXPECT_EQ(StatErr(M(name)), 0);
    });
    std::this_thread::sleep_for(300ms);
  }
  // Some slow downloads must still be running, or the test proved nothing.
  int finished = 0;
  for (auto& f : slow) finished += f.wait_for(0s) == std::future_status::ready;
  EXPECT_LT(finished, kSlow / 2) << "the downloads were not slow after all";

  for (int i = 0; i < kSlow; ++i) {
    ASSERT_EQ(slow[i].wait_for(60s), std::future_status::ready) << "slow reader " << i << " hangs";
    auto r = slow[i].get();
    EXPECT_EQ(r.err, 0) << "slow " << i << ": " << r.stage << ": " << ErrnoName(r.err);
    EXPECT_TRUE(r.data == bodies[i]) << "slow " << i;
  }
}

}  // namespace
}  // namespace originfs::e2e
