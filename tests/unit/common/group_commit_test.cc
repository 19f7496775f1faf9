#include "core/common/group_commit.h"

#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

namespace originfs {
namespace {

using namespace std::chrono_literals;

// A caller in series waits for nobody (it may be waited on: fsync of a file
// still arriving, `originfs warm -j1`): after a group of one, the next
// commits at once, alone, and one arriving moments later has a group of its
// own (had the second lingered, they would share one).
TEST(GroupCommitTest, CallersInSeriesCommitAlone) {
  GroupCommit<int> group{{.full = 2, .stream = 10s, .linger = 5s}};
  std::mutex mu;
  std::vector<std::size_t> sizes;
  auto join = [&](int* item) {
    group.Join(
        item,
        [&](const std::vector<int*>& g) {
          std::lock_guard lock(mu);
          sizes.push_back(g.size());
        },
        [](const std::vector<int*>&, const std::exception&) {});
  };
  int a = 1, b = 2, c = 3;
  join(&a);
  std::thread second([&] { join(&b); });
  std::this_thread::sleep_for(50ms);
  join(&c);
  second.join();
  std::lock_guard lock(mu);
  EXPECT_EQ(sizes, (std::vector<std::size_t>{1, 1, 1}));
}

}  // namespace
}  // namespace originfs
