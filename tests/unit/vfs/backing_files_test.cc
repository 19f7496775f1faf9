// BackingFiles: which opens pass through, against a recording stand-in for
// the kernel's registration ioctls (the real ones are exercised by
// tests/e2e/passthrough_test.cc). The kernel's rules it must keep: one
// backing file per inode while passthrough opens exist, and no passthrough
// while page-cached opens exist.
#include "core/vfs/backing_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <string>

#include <gtest/gtest.h>

#include "core/common/unique_fd.h"
#include "tests/support/temp_dir.h"

namespace originfs {
namespace {

class BackingFilesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Big enough to pass through (smaller files are page-cached).
    testing::WriteFile(dir_.Join("a"), std::string(BackingFiles::kPageCachedBelow, 'a'));
    testing::WriteFile(dir_.Join("b"), std::string(BackingFiles::kPageCachedBelow, 'b'));
    testing::WriteFile(dir_.Join("small"), std::string(BackingFiles::kPageCachedBelow - 1, 's'));
  }

  void Enable() {
    files_.Enable(BackingFiles::Kernel{
        [this](int fd) {
          if (refuse_) return -refuse_;
          struct stat st;
          EXPECT_EQ(fstat(fd, &st), 0);
          int id = next_id_++;
          live_[id] = st.st_ino;
          modes_[id] = fcntl(fd, F_GETFL) & O_ACCMODE;
          return id;
        },
        [this](int id) { EXPECT_EQ(live_.erase(id), 1u) << "closed an id never opened: " << id; }});
  }

  UniqueFd Open(const char* name, int flags = O_RDONLY) {
    return UniqueFd(open(dir_.Join(name).c_str(), flags | O_CLOEXEC));
  }

  uint64_t Counter(const std::string& name) {
    for (const auto& c : files_.Counters())
      if (c.name == name) return c.value;
    ADD_FAILURE() << "no counter " << name;
    return 0;
  }

  testing::TempDir dir_{"backing-files"};
  BackingFiles files_;
  int next_id_ = 1;
  int refuse_ = 0;
  std::map<int, ino_t> live_;  // registered ids -> backing inode
  std::map<int, int> modes_;   // id -> access mode of the registered descriptor
};

TEST_F(BackingFilesTest, OffUntilEnabled) {
  UniqueFd fd = Open("a");
  auto d = files_.Open(7, fd.get(), true, false);
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->backing_id, 0);
  EXPECT_FALSE(files_.Release(7, *d));
  EXPECT_EQ(Counter("passthrough_enabled"), 0u);
}

// A small file read whole costs the kernel less from its page cache than a
// backing file per open; a writer of it passes through (unless readers of
// it are open: no mix on one inode).
TEST_F(BackingFilesTest, ReadsOfASmallFileArePageCached) {
  Enable();
  UniqueFd r = Open("small"), w = Open("small", O_RDWR);
  auto d1 = files_.Open(9, r.get(), true, false);
  ASSERT_TRUE(d1);
  EXPECT_EQ(d1->backing_id, 0);
  auto d2 = files_.Open(9, w.get(), true, true);
  ASSERT_TRUE(d2);
  EXPECT_EQ(d2->backing_id, 0) << "a writer joined page-cached readers with a backing file";
  files_.Release(9, *d1);
  files_.Release(9, *d2);
  auto d3 = files_.Open(9, w.get(), true, true);
  ASSERT_TRUE(d3);
  EXPECT_GT(d3->backing_id, 0);
  files_.Release(9, *d3);
  EXPECT_TRUE(live_.empty());
}

// The kernel keeps a page-cached inode's pages from one open to the next
// only while the bucket file's ctime is what the last open saw.
TEST_F(BackingFilesTest, PageCachedOpensKeepTheCacheWhileTheFileIsUnchanged) {
  Enable();
  UniqueFd r = Open("small");
  auto first = files_.Open(9, r.get(), true, false);
  ASSERT_TRUE(first);
  EXPECT_FALSE(first->keep_cache);  // nothing seen before
  files_.Release(9, *first);
  auto again = files_.Open(9, r.get(), true, false);
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->keep_cache);
  files_.Release(9, *again);
  struct stat st;
  ASSERT_EQ(fstat(r.get(), &st), 0);
  for (int i = 0; i < 200; ++i) {  // a ctime clock tick later
    ASSERT_EQ(fchmod(r.get(), (i % 2) ? 0644 : 0640), 0);
    struct stat now;
    ASSERT_EQ(fstat(r.get(), &now), 0);
    if (now.st_ctim.tv_sec != st.st_ctim.tv_sec || now.st_ctim.tv_nsec != st.st_ctim.tv_nsec) break;
    usleep(2000);
  }
  auto changed = files_.Open(9, r.get(), true, false);
  ASSERT_TRUE(changed);
  EXPECT_FALSE(changed->keep_cache);
  files_.Release(9, *changed);
}

TEST_F(BackingFilesTest, OpensOfOneInodeShareOneReadWriteBackingFile) {
  Enable();
  UniqueFd r1 = Open("a"), r2 = Open("a"), w = Open("a", O_WRONLY);
  auto d1 = files_.Open(7, r1.get(), true, false);
  auto d2 = files_.Open(7, r2.get(), true, false);
  auto d3 = files_.Open(7, w.get(), true, true);  // a writer may join readers
  ASSERT_TRUE(d1 && d2 && d3);
  EXPECT_GT(d1->backing_id, 0);
  EXPECT_EQ(d2->backing_id, d1->backing_id);
  EXPECT_EQ(d3->backing_id, d1->backing_id);
  ASSERT_EQ(live_.size(), 1u);
  EXPECT_EQ(modes_[d1->backing_id], O_RDWR);  // reopened read-write, not the reader's O_RDONLY
  EXPECT_EQ(Counter("backing_files"), 1u);
  EXPECT_EQ(Counter("passthrough_opens"), 3u);

  EXPECT_FALSE(files_.Release(7, *d1));
  EXPECT_FALSE(files_.Release(7, *d3));
  EXPECT_EQ(live_.size(), 1u);          // still open by d2
  EXPECT_TRUE(files_.Release(7, *d2));  // the last: unregistered; a writer was among them
  EXPECT_TRUE(live_.empty());
  EXPECT_EQ(Counter("backing_files"), 0u);

  // A new open registers anew.
  auto d4 = files_.Open(7, r1.get(), true, false);
  ASSERT_TRUE(d4);
  EXPECT_GT(d4->backing_id, d1->backing_id);
  EXPECT_FALSE(files_.Release(7, *d4));  // readers only: nothing to invalidate
}

TEST_F(BackingFilesTest, AFileStillArrivingKeepsItsInodeInThePageCache) {
  Enable();
  UniqueFd fd = Open("a");
  auto streaming = files_.Open(7, fd.get(), /*complete=*/false, false);
  ASSERT_TRUE(streaming);
  EXPECT_EQ(streaming->backing_id, 0);
  // Landed now, but a page-cached open of the inode is still there.
  auto later = files_.Open(7, fd.get(), true, false);
  ASSERT_TRUE(later);
  EXPECT_EQ(later->backing_id, 0);
  EXPECT_TRUE(live_.empty());
  EXPECT_EQ(Counter("page_cache_opens"), 2u);
  files_.Release(7, *streaming);
  files_.Release(7, *later);
  // Once all are released, the next open passes through.
  auto pt = files_.Open(7, fd.get(), true, false);
  ASSERT_TRUE(pt);
  EXPECT_GT(pt->backing_id, 0);
  // And while it does, even an open the Vfs would not call complete must
  // use the same backing file (the kernel fails any other with EIO).
  auto again = files_.Open(7, fd.get(), false, false);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->backing_id, pt->backing_id);
  files_.Release(7, *pt);
  files_.Release(7, *again);
  EXPECT_TRUE(live_.empty());
}

TEST_F(BackingFilesTest, InodesAreIndependent) {
  Enable();
  UniqueFd a = Open("a"), b = Open("b");
  auto da = files_.Open(7, a.get(), true, false);
  auto db = files_.Open(8, b.get(), true, false);
  ASSERT_TRUE(da && db);
  EXPECT_NE(da->backing_id, db->backing_id);
  EXPECT_EQ(live_.size(), 2u);
  files_.Release(7, *da);
  EXPECT_EQ(live_.size(), 1u);
  files_.Release(8, *db);
  EXPECT_TRUE(live_.empty());
}

TEST_F(BackingFilesTest, AWriterOfANewerVersionIsRefusedNotMixed) {
  Enable();
  UniqueFd old_version = Open("a");
  auto reader = files_.Open(7, old_version.get(), true, false);
  ASSERT_TRUE(reader);
  ASSERT_GT(reader->backing_id, 0);
  // The inode's bucket file was replaced (another file now): a reader reads
  // what the open ones read; a writer would write the old file, so EBUSY.
  UniqueFd newer = Open("b", O_RDWR);
  auto r2 = files_.Open(7, newer.get(), true, false);
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->backing_id, reader->backing_id);
  auto w = files_.Open(7, newer.get(), true, true);
  ASSERT_FALSE(w.has_value());
  EXPECT_EQ(w.error().code, EBUSY);
  files_.Release(7, *reader);
  files_.Release(7, *r2);
  EXPECT_TRUE(live_.empty());
}

TEST_F(BackingFilesTest, ARefusalTurnsItOffButOpenInodesKeepTheirBackingFile) {
  Enable();
  UniqueFd a = Open("a"), b = Open("b");
  auto da = files_.Open(7, a.get(), true, false);
  ASSERT_TRUE(da);
  ASSERT_GT(da->backing_id, 0);
  refuse_ = ELOOP;  // e.g. a bucket on a stacked filesystem
  auto db = files_.Open(8, b.get(), true, false);
  ASSERT_TRUE(db);
  EXPECT_EQ(db->backing_id, 0);
  EXPECT_EQ(Counter("passthrough_enabled"), 0u);
  // Inode 7 still passes through: its next open must too.
  auto da2 = files_.Open(7, a.get(), true, false);
  ASSERT_TRUE(da2);
  EXPECT_EQ(da2->backing_id, da->backing_id);
  files_.Release(7, *da);
  files_.Release(7, *da2);
  files_.Release(8, *db);
  EXPECT_TRUE(live_.empty());
  // Off now: no more registrations are tried.
  refuse_ = 0;
  auto d = files_.Open(9, a.get(), true, false);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->backing_id, 0);
  EXPECT_TRUE(live_.empty());
}

TEST_F(BackingFilesTest, ATransientFailureServesThatOpenThroughTheDaemon) {
  Enable();
  UniqueFd a = Open("a");
  refuse_ = ENOMEM;
  auto d = files_.Open(7, a.get(), true, false);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->backing_id, 0);
  EXPECT_EQ(Counter("passthrough_enabled"), 1u);  // still on
  refuse_ = 0;
  auto d2 = files_.Open(7, a.get(), true, false);  // the page-cached open is still there
  ASSERT_TRUE(d2);
  EXPECT_EQ(d2->backing_id, 0);
  files_.Release(7, *d);
  files_.Release(7, *d2);
  auto d3 = files_.Open(7, a.get(), true, false);
  ASSERT_TRUE(d3);
  EXPECT_GT(d3->backing_id, 0);
  files_.Release(7, *d3);
  EXPECT_TRUE(live_.empty());
}

}  // namespace
}  // namespace originfs
