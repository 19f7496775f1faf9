#include "core/common/group_commit.h"

#include <gtest/gtest.h>

#include <chrono>
#include <mutex>
#include <thread>
#include <vector>

namespace originfs {
namespace {

using namespace std::chrono_literals;

// A group commit whose commits record the size of each group.
struct Recorder {
  GroupCommit<int> group{{.full = 2, .stream = 10s, .linger = 5s}};
  std::mutex mu;
  std::vector<std::size_t> sizes;  // guarded by mu

  void Join(int* item) {
    group.Join(
        item,
        [this](const std::vector<int*>& g) {
          std::lock_guard lock(mu);
          sizes.push_back(g.size());
        },
        [](const std::vector<int*>&, const std::exception&) {});
  }
  std::vector<std::size_t> Sizes() {
    std::lock_guard lock(mu);
    return sizes;
  }
};

// A caller in series waits for nobody: after a group of one, the next
// commits at once, alone, and one arriving moments later has a group of its
// own (had the second lingered, they would share one).
TEST(GroupCommitTest, CallersInSeriesCommitAlone) {
  Recorder r;
  int a = 1, b = 2, c = 3;
  r.Join(&a);
  std::thread second([&] { r.Join(&b); });
  std::this_thread::sleep_for(50ms);
  r.Join(&c);
  second.join();
  EXPECT_EQ(r.Sizes(), (std::vector<std::size_t>{1, 1, 1}));
}

// When the owner says more are coming, a caller in series right after a
// group of one waits for them (here until the group is full).
TEST(GroupCommitTest, CallersInSeriesShareAGroupWhenMoreAreComing) {
  Recorder r;
  r.group.SetMoreComing([] { return true; });
  int a = 1, b = 2, c = 3;
  r.Join(&a);
  std::thread second([&] { r.Join(&b); });
  std::this_thread::sleep_for(50ms);  // the second is lingering (or about to)
  r.Join(&c);
  second.join();
  EXPECT_EQ(r.Sizes(), (std::vector<std::size_t>{1, 2}));
}

// more() saying no is the default behaviour again.
TEST(GroupCommitTest, NothingMoreComingCommitsAtOnce) {
  Recorder r;
  r.group.SetMoreComing([] { return false; });
  int a = 1, b = 2, c = 3;
  r.Join(&a);
  std::thread second([&] { r.Join(&b); });
  std::this_thread::sleep_for(50ms);
  r.Join(&c);
  second.join();
  EXPECT_EQ(r.Sizes(), (std::vector<std::size_t>{1, 1, 1}));
}

}  // namespace
}  // namespace originfs
