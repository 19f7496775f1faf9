// What a power cut or a crash can leave of the index, with real torn files:
// a real data.mdb cut short, torn pages, a file truncated under a running
// index. None may crash the process; each is moved aside at the next open.
#include "core/store/index_health.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/store/index.h"
#include "tests/support/temp_dir.h"

namespace originfs {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

ObjectRecord Record(int i) {
  ObjectRecord r;
  r.url = "http://origin.example.com/d/" + std::to_string(i) + std::string(200, 'p');
  r.etag = "\"e" + std::to_string(i) + "\"";
  r.size = static_cast<uint64_t>(i);
  return r;
}

std::string Key(int i) { return "dir/key-" + std::to_string(i); }

// An index of n records, closed cleanly.
void Build(const std::string& dir, int n) {
  auto idx = OpenLmdbIndex(dir, IndexOptions{.map_size = 64ull << 20, .durable = false});
  ASSERT_TRUE(idx.has_value()) << idx.error().message;
  for (int i = 0; i < n; ++i) ASSERT_TRUE((*idx)->Put(Key(i), Record(i)).has_value());
}

off_t SizeOf(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? st.st_size : -1;
}

std::vector<std::string> Aside(const testing::TempDir& tmp) {
  std::vector<std::string> out;
  for (auto& n : testing::ListDir(tmp.path()))
    if (n.rfind("index.broken-", 0) == 0) out.push_back(n);
  return out;
}

// Opens dir and checks it is usable: a new record can be written and read.
void ExpectUsable(const std::string& dir) {
  auto idx = OpenLmdbIndex(dir, IndexOptions{.map_size = 64ull << 20});
  ASSERT_TRUE(idx.has_value()) << idx.error().message;
  ASSERT_TRUE((*idx)->Put("new/key", Record(7)).has_value());
  auto g = (*idx)->Get("new/key");
  ASSERT_TRUE(g.has_value() && g->has_value());
  EXPECT_EQ((*g)->url, Record(7).url);
}

TEST(IndexHealthTest, AConsistentIndexPassesTheMetaCheck) {
  testing::TempDir tmp;
  std::string dir = tmp.Join("index");
  Build(dir, 3000);
  EXPECT_EQ(index_health::CheckMeta(dir), "");
  EXPECT_EQ(index_health::CheckMeta(tmp.Join("nothing-here")), "");
  EXPECT_FALSE(index_health::HasMarker(dir, index_health::kRunningMarker))
      << "a clean close removes the running marker";
}

// The power cut of the issue: the meta page reached the disk, the pages it
// names did not (the file is shorter). mdb_env_open accepts such a file and
// the first write dies of SIGBUS; the check must refuse it first.
TEST(IndexHealthTest, AnIndexCutShortIsMovedAsideAndStartedEmpty) {
  testing::TempDir tmp;
  std::string dir = tmp.Join("index");
  Build(dir, 3000);
  const off_t full = SizeOf(dir + "/data.mdb");
  ASSERT_GT(full, 64 * 4096);
  for (off_t cut : {full - 4096, full / 2, off_t{3 * 4096}}) {
    SCOPED_TRACE(cut);
    testing::TempDir run;
    std::string copy = run.Join("index");
    ASSERT_EQ(mkdir(copy.c_str(), 0700), 0);
    testing::WriteFile(copy + "/data.mdb", *testing::ReadFile(dir + "/data.mdb"));
    ASSERT_EQ(truncate((copy + "/data.mdb").c_str(), cut), 0);
    bool past_end = false;
    std::string bad = index_health::CheckMeta(copy, &past_end);
    EXPECT_TRUE(past_end || !bad.empty()) << "the cut went unnoticed";
    ExpectUsable(copy);
    if (Aside(run).empty()) {
      // Kept: only when the walk read every tree whole (the page cut off
      // was one no tree refers to). Then every record must read back.
      EXPECT_EQ(cut, full - 4096) << "a torn index was kept";
      auto idx = OpenLmdbIndex(copy, IndexOptions{.map_size = 64ull << 20});
      ASSERT_TRUE(idx.has_value());
      for (int i = 0; i < 3000; i += 7) {
        auto g = (*idx)->Get(Key(i));
        ASSERT_TRUE(g.has_value() && g->has_value()) << i;
      }
    }
  }
}

// LMDB itself can leave the last used page past the end of the file (a page
// freed in the transaction that allocated it is never written): such an
// index is walked, found whole, and kept with its records.
TEST(IndexHealthTest, ALastPagePastTheEndWithWholeTreesIsKept) {
  testing::TempDir tmp;
  std::string dir = tmp.Join("index");
  Build(dir, 500);
  int fd = open((dir + "/data.mdb").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  uint32_t psize = 0;
  ASSERT_EQ(pread(fd, &psize, 4, 16 + 24), 4);
  uint64_t txn[2], last[2];
  for (int m = 0; m < 2; ++m) {
    ASSERT_EQ(pread(fd, &last[m], 8, m * psize + 16 + 24 + 96), 8);
    ASSERT_EQ(pread(fd, &txn[m], 8, m * psize + 16 + 24 + 104), 8);
  }
  int newest = txn[1] > txn[0] ? 1 : 0;
  uint64_t bumped = last[newest] + 5;
  ASSERT_EQ(pwrite(fd, &bumped, 8, newest * psize + 16 + 24 + 96), 8);
  close(fd);
  bool past_end = false;
  EXPECT_EQ(index_health::CheckMeta(dir, &past_end), "");
  EXPECT_TRUE(past_end);
  auto idx = OpenLmdbIndex(dir, IndexOptions{.map_size = 64ull << 20});
  ASSERT_TRUE(idx.has_value()) << idx.error().message;
  EXPECT_TRUE(Aside(tmp).empty()) << "a whole index was moved aside";
  auto g = (*idx)->Get(Key(499));
  ASSERT_TRUE(g.has_value() && g->has_value());
}

TEST(IndexHealthTest, GarbageMetaPagesAreRefused) {
  testing::TempDir tmp;
  std::string dir = tmp.Join("index");
  ASSERT_EQ(mkdir(dir.c_str(), 0700), 0);
  testing::WriteFile(dir + "/data.mdb", std::string(8192, '\0'));
  EXPECT_THAT(index_health::CheckMeta(dir), HasSubstr("magic"));
  ExpectUsable(dir);
  EXPECT_EQ(Aside(tmp).size(), 1u);
}

// Pages torn inside the file (the size is right, their bytes are not) are
// only found by reading them: after an unclean shutdown (the running marker
// is there) every tree is walked in a child process before the index is used.
TEST(IndexHealthTest, TornPagesAfterAnUncleanShutdownAreFoundByTheWalk) {
  testing::TempDir tmp;
  std::string dir = tmp.Join("index");
  Build(dir, 3000);
  ASSERT_EQ(index_health::CheckMeta(dir), "");
  const off_t full = SizeOf(dir + "/data.mdb");
  int fd = open((dir + "/data.mdb").c_str(), O_WRONLY);
  ASSERT_GE(fd, 0);
  std::string junk(4096, '\xa5');
  for (off_t page = 2; page * 4096 < full; ++page)
    ASSERT_EQ(pwrite(fd, junk.data(), junk.size(), page * 4096), 4096);
  close(fd);
  ASSERT_TRUE(index_health::PutMarker(dir, index_health::kRunningMarker));
  ExpectUsable(dir);
  ASSERT_EQ(Aside(tmp).size(), 1u);
  EXPECT_FALSE(index_health::HasMarker(tmp.Join(Aside(tmp)[0]), index_health::kCorruptMarker));
}

TEST(IndexHealthTest, AnIndexMarkedCorruptByTheLastRunIsMovedAside) {
  testing::TempDir tmp;
  std::string dir = tmp.Join("index");
  Build(dir, 10);
  ASSERT_TRUE(index_health::PutMarker(dir, index_health::kCorruptMarker, "test"));
  ExpectUsable(dir);
  EXPECT_EQ(Aside(tmp).size(), 1u);
}

// While running: the file is cut under the map (the way a torn index that
// passed every check would fault). Reads and writes fail with EIO instead of
// killing the process, the owner is told once, and the next open moves the
// index aside.
TEST(IndexHealthTest, SigbusFromTheMapFailsCallsAndMarksTheIndexCorrupt) {
  testing::TempDir tmp;
  std::string dir = tmp.Join("index");
  Build(dir, 3000);
  std::atomic<int> told{0};
  {
    auto idx = OpenLmdbIndex(dir, IndexOptions{.map_size = 64ull << 20,
                                               .on_corrupt = [&](const std::string&) { ++told; }});
    ASSERT_TRUE(idx.has_value()) << idx.error().message;
    ASSERT_TRUE((*idx)->Get(Key(5)).has_value());
    ASSERT_EQ(truncate((dir + "/data.mdb").c_str(), 2 * 4096), 0);
    auto g = (*idx)->Get(Key(2999));
    ASSERT_FALSE(g.has_value());
    EXPECT_EQ(g.error().code, EIO);
    EXPECT_THAT(g.error().message, HasSubstr("corrupt"));
    auto p = (*idx)->Put("after", Record(1));
    ASSERT_FALSE(p.has_value()) << "no write after the index was found corrupt";
    EXPECT_FALSE((*idx)->CountObjects().has_value());
    EXPECT_EQ(told.load(), 1);
    EXPECT_TRUE(index_health::HasMarker(dir, index_health::kCorruptMarker));
  }
  ExpectUsable(dir);
  EXPECT_EQ(Aside(tmp).size(), 1u);
}

TEST(IndexHealthTest, ASigbusOutsideTheIndexStillEndsTheProcess) {
  EXPECT_DEATH(
      {
        testing::TempDir tmp;
        std::string path = tmp.Join("f");
        testing::WriteFile(path, std::string(8192, 'x'));
        int fd = open(path.c_str(), O_RDWR);
        void* m = mmap(nullptr, 8192, PROT_READ, MAP_SHARED, fd, 0);
        index_health::RunGuarded([](void*) {}, nullptr);  // installs the handler
        (void)ftruncate(fd, 0);
        volatile char c = static_cast<const char*>(m)[4096];
        (void)c;
      },
      "");
}

// Writers that arrive together share synced commits; none is lost.
TEST(IndexHealthTest, ConcurrentWritersAllLandInTheIndex) {
  testing::TempDir tmp;
  std::string dir = tmp.Join("index");
  {
    auto idx = OpenLmdbIndex(dir, IndexOptions{.map_size = 1ull << 20});
    ASSERT_TRUE(idx.has_value());
    EXPECT_TRUE(index_health::HasMarker(dir, index_health::kRunningMarker));
    std::vector<std::thread> threads;
    std::atomic<int> failed{0};
    for (int t = 0; t < 8; ++t) {
      threads.emplace_back([&, t] {
        for (int i = t; i < 1600; i += 8) {
          if (!(*idx)->Put(Key(i), Record(i))) ++failed;
          if (i % 5 == 0 && !(*idx)->Erase(Key(i))) ++failed;
          if (!(*idx)->EraseNotFound("missing/" + std::to_string(i))) ++failed;
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(failed.load(), 0);
  }
  auto idx = OpenLmdbIndex(dir, IndexOptions{});
  ASSERT_TRUE(idx.has_value());
  EXPECT_EQ(*(*idx)->CountObjects(), 1600u - 320u);
  auto g = (*idx)->Get(Key(1599));
  ASSERT_TRUE(g.has_value() && g->has_value());
  EXPECT_EQ((*g)->size, 1599u);
  EXPECT_TRUE(Aside(tmp).empty());
}

}  // namespace
}  // namespace originfs
