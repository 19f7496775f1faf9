#include "core/store/bucket_store.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <ctime>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/common/unique_fd.h"
#include "tests/support/temp_dir.h"

namespace originfs {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

constexpr int64_t kMtime = 1445412480;  // Wed, 21 Oct 2015 07:28:00 GMT

class BucketStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fds_before_ = testing::CountOpenFds();
    bucket_ = tmp_.Join("bucket");
    ASSERT_EQ(mkdir(bucket_.c_str(), 0755), 0);
    Open();
  }

  void TearDown() override {
    store_.reset();
    EXPECT_EQ(testing::CountOpenFds(), fds_before_) << "descriptor leaked";
  }

  void Open() {
    store_.reset();
    auto s = BucketStore::Open(bucket_, StoreOptions{});
    ASSERT_TRUE(s.has_value()) << s.error().message;
    store_ = std::move(*s);
  }

  std::string StagingDir() const { return bucket_ + "/.originfs/staging"; }

  // Lands contents at key through the staging path.
  Result<void> Land(std::string_view key, std::string_view contents,
                    std::optional<int64_t> mtime = kMtime) {
    auto staging = store_->CreateStaging();
    if (!staging) return std::unexpected(staging.error());
    // Two appends: the size and content must add up.
    std::size_t half = contents.size() / 2;
    if (auto a = (*staging)->Append(contents.data(), half); !a) return a;
    if (auto a = (*staging)->Append(contents.data() + half, contents.size() - half); !a) return a;
    EXPECT_EQ((*staging)->size(), contents.size());
    return store_->Commit(**staging, key, mtime);
  }

  testing::TempDir tmp_;
  std::string bucket_;
  std::unique_ptr<BucketStore> store_;
  int fds_before_ = 0;
};

TEST_F(BucketStoreTest, OpenCreatesPrivateStagingArea) {
  struct stat st;
  ASSERT_EQ(stat(StagingDir().c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(stat((bucket_ + "/.originfs").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_EQ(store_->path(), bucket_);
  EXPECT_THAT(testing::ListDir(bucket_), ElementsAre(".originfs"));
}

TEST_F(BucketStoreTest, OpenRefusesMissingBucket) {
  auto s = BucketStore::Open(tmp_.Join("missing"), StoreOptions{});
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().code, ENOENT);
}

TEST_F(BucketStoreTest, OpenReturnsCanonicalPath) {
  ASSERT_EQ(symlink(bucket_.c_str(), tmp_.Join("alias").c_str()), 0);
  auto s = BucketStore::Open(tmp_.Join("alias") + "/", StoreOptions{});
  ASSERT_TRUE(s.has_value()) << s.error().message;
  EXPECT_EQ((*s)->path(), bucket_);
}

TEST_F(BucketStoreTest, CommitLandsFileWithParentsModeAndMtime) {
  std::string body = testing::PatternBytes(200 * 1024);
  ASSERT_TRUE(Land("a/b/c.txt", body).has_value());

  EXPECT_EQ(testing::ReadFile(bucket_ + "/a/b/c.txt"), body);
  struct stat st;
  ASSERT_EQ(stat((bucket_ + "/a/b/c.txt").c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  EXPECT_EQ(st.st_mtim.tv_sec, kMtime);
  EXPECT_EQ(st.st_nlink, 1u);
  ASSERT_EQ(stat((bucket_ + "/a/b").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  EXPECT_THAT(testing::ListDir(StagingDir()), IsEmpty());
}

TEST_F(BucketStoreTest, CommitWorksWithoutTheCapabilityToLinkADescriptor) {
  // A daemon without CAP_DAC_READ_SEARCH must still land files: kernels
  // before 6.10 refuse it the link of a descriptor (AT_EMPTY_PATH), and
  // Commit then goes through /proc/self/fd. Run in a child that has dropped
  // the capability.
  if (geteuid() != 0) GTEST_SKIP() << "needs root to drop a capability";
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[2]{};
    if (syscall(SYS_capget, &hdr, data) != 0) _exit(10);
    data[CAP_TO_INDEX(CAP_DAC_READ_SEARCH)].effective &= ~CAP_TO_MASK(CAP_DAC_READ_SEARCH);
    if (syscall(SYS_capset, &hdr, data) != 0) _exit(11);
    auto staging = store_->CreateStaging();
    if (!staging || !(*staging)->Append("no cap", 6)) _exit(12);
    _exit(store_->Commit(**staging, "nocap/file.txt", kMtime) ? 0 : 13);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(testing::ReadFile(bucket_ + "/nocap/file.txt"), "no cap");
}

TEST_F(BucketStoreTest, CommitWithoutMtimeKeepsCurrentTime) {
  time_t before = time(nullptr);
  ASSERT_TRUE(Land("now.txt", "x", std::nullopt).has_value());
  struct stat st;
  ASSERT_EQ(stat((bucket_ + "/now.txt").c_str(), &st), 0);
  EXPECT_GE(st.st_mtim.tv_sec, before);
  EXPECT_LE(st.st_mtim.tv_sec, time(nullptr) + 1);
}

TEST_F(BucketStoreTest, CommitEmptyFile) {
  ASSERT_TRUE(Land("empty", "").has_value());
  EXPECT_EQ(testing::ReadFile(bucket_ + "/empty"), "");
}

TEST_F(BucketStoreTest, CustomModesAreApplied) {
  store_.reset();
  auto s = BucketStore::Open(
      bucket_, StoreOptions{.fsync_objects = true, .file_mode = 0600, .dir_mode = 0700});
  ASSERT_TRUE(s.has_value()) << s.error().message;
  store_ = std::move(*s);
  ASSERT_TRUE(Land("d/f", "data").has_value());
  struct stat st;
  ASSERT_EQ(stat((bucket_ + "/d/f").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  ASSERT_EQ(stat((bucket_ + "/d").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0700u);
}

TEST_F(BucketStoreTest, UncommittedStagingLeavesNothing) {
  {
    auto staging = store_->CreateStaging();
    ASSERT_TRUE(staging.has_value()) << staging.error().message;
    std::string body = testing::PatternBytes(1 << 20);
    ASSERT_TRUE((*staging)->Append(body.data(), body.size()).has_value());
  }
  EXPECT_THAT(testing::ListDir(bucket_), ElementsAre(".originfs"));
  EXPECT_THAT(testing::ListDir(StagingDir()), IsEmpty());
}

TEST_F(BucketStoreTest, StagingFilesMadeAheadAreUsedAndLeaveNothing) {
  int fds = testing::CountOpenFds();
  store_->PrepareStaging(3);
  EXPECT_EQ(testing::CountOpenFds(), fds + 3) << "three spare staging files held open";
  store_->PrepareStaging(3);  // already there: no more
  EXPECT_EQ(testing::CountOpenFds(), fds + 3);
  // Each landing takes a spare (no new descriptor stays open), and the spares
  // are empty, private and invisible in the bucket.
  ASSERT_TRUE(Land("spare/one.txt", "first").has_value());
  ASSERT_TRUE(Land("spare/two.txt", std::string(70000, 'x')).has_value());
  EXPECT_EQ(testing::CountOpenFds(), fds + 1);
  EXPECT_EQ(testing::ReadFile(bucket_ + "/spare/one.txt"), "first");
  EXPECT_EQ(testing::ReadFile(bucket_ + "/spare/two.txt"), std::string(70000, 'x'));
  struct stat st;
  ASSERT_EQ(stat((bucket_ + "/spare/one.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  EXPECT_EQ(st.st_mtim.tv_sec, kMtime);
  EXPECT_THAT(testing::ListDir(StagingDir()), IsEmpty());
  // Used up: landings go on with staging files made on demand.
  ASSERT_TRUE(Land("spare/three.txt", "3").has_value());
  ASSERT_TRUE(Land("spare/four.txt", "4").has_value());
  EXPECT_EQ(testing::ReadFile(bucket_ + "/spare/four.txt"), "4");
  EXPECT_EQ(testing::CountOpenFds(), fds);
}

TEST_F(BucketStoreTest, ResetEmptiesStagingFile) {
  auto staging = store_->CreateStaging();
  ASSERT_TRUE(staging.has_value());
  ASSERT_TRUE((*staging)->Append("partial junk", 12).has_value());
  ASSERT_TRUE((*staging)->Reset().has_value());
  EXPECT_EQ((*staging)->size(), 0u);
  ASSERT_TRUE((*staging)->Append("good", 4).has_value());
  ASSERT_TRUE(store_->Commit(**staging, "r.txt", kMtime).has_value());
  EXPECT_EQ(testing::ReadFile(bucket_ + "/r.txt"), "good");
}

TEST_F(BucketStoreTest, CommitOntoExistingFileFailsAndKeepsIt) {
  ASSERT_EQ(mkdir((bucket_ + "/a").c_str(), 0755), 0);
  testing::WriteFile(bucket_ + "/a/local.txt", "written locally");
  auto r = Land("a/local.txt", "from the origin");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().code, EEXIST);
  EXPECT_EQ(testing::ReadFile(bucket_ + "/a/local.txt"), "written locally");
  EXPECT_THAT(testing::ListDir(StagingDir()), IsEmpty());

  // The same holds for a file that an earlier commit landed.
  ASSERT_TRUE(Land("b.txt", "first").has_value());
  auto again = Land("b.txt", "second");
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code, EEXIST);
  EXPECT_EQ(testing::ReadFile(bucket_ + "/b.txt"), "first");
}

TEST_F(BucketStoreTest, CommitRefusesBadKeys) {
  for (std::string_view key : {"", "a/", "..", "a/..", "../escape", "a/../b", "."}) {
    auto r = Land(key, "x");
    EXPECT_FALSE(r.has_value()) << key;
  }
  EXPECT_THAT(testing::ListDir(tmp_.path()), ElementsAre("bucket"));
  EXPECT_THAT(testing::ListDir(bucket_), ElementsAre(".originfs"));
}

TEST_F(BucketStoreTest, CommitDoesNotFollowSymlinkedParent) {
  testing::TempDir outside("originfs-outside");
  ASSERT_EQ(symlink(outside.path().c_str(), (bucket_ + "/link").c_str()), 0);
  auto r = Land("link/planted.txt", "x");
  EXPECT_FALSE(r.has_value());
  EXPECT_THAT(testing::ListDir(outside.path()), IsEmpty());
}

TEST_F(BucketStoreTest, CommitCopyLandsCopyOfDescriptor) {
  std::string src = tmp_.Join("src");
  std::string body = testing::PatternBytes(300 * 1024, 7);
  testing::WriteFile(src, body);
  UniqueFd fd(open(src.c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(fd);
  ASSERT_EQ(lseek(fd.get(), 1000, SEEK_SET), 1000);  // copies from 0 regardless
  ASSERT_TRUE(store_->CommitCopy(fd.get(), "copy/of.bin", kMtime).has_value());
  EXPECT_EQ(testing::ReadFile(bucket_ + "/copy/of.bin"), body);
  struct stat st;
  ASSERT_EQ(stat((bucket_ + "/copy/of.bin").c_str(), &st), 0);
  EXPECT_EQ(st.st_mtim.tv_sec, kMtime);
}

TEST_F(BucketStoreTest, OpenKeyOpensFilesAndRoot) {
  ASSERT_TRUE(Land("a/b/c.txt", "hello").has_value());
  auto fd = store_->OpenKey("a/b/c.txt", O_RDONLY);
  ASSERT_TRUE(fd.has_value()) << fd.error().message;
  UniqueFd owned(*fd);
  EXPECT_EQ(testing::ReadFd(owned.get()), "hello");

  auto root = store_->OpenKey("", O_RDONLY | O_DIRECTORY);
  ASSERT_TRUE(root.has_value());
  close(*root);

  auto missing = store_->OpenKey("a/b/nope", O_RDONLY);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().code, ENOENT);
}

TEST_F(BucketStoreTest, OpenKeyRefusesDotDot) {
  testing::WriteFile(tmp_.Join("secret"), "outside");
  ASSERT_EQ(mkdir((bucket_ + "/a").c_str(), 0755), 0);
  for (std::string_view key : {"../secret", "a/../../secret", "a/..", "..", "a/./../../secret"}) {
    auto fd = store_->OpenKey(key, O_RDONLY);
    EXPECT_FALSE(fd.has_value()) << key;
    if (fd) close(*fd);
  }
}

TEST_F(BucketStoreTest, OpenKeyDoesNotFollowSymlinks) {
  ASSERT_EQ(symlink("/etc", (bucket_ + "/link").c_str()), 0);
  auto fd = store_->OpenKey("link/passwd", O_RDONLY);
  EXPECT_FALSE(fd.has_value());
  if (fd) close(*fd);

  testing::WriteFile(tmp_.Join("secret"), "outside");
  ASSERT_EQ(symlink(tmp_.Join("secret").c_str(), (bucket_ + "/file-link").c_str()), 0);
  auto leaf = store_->OpenKey("file-link", O_RDONLY);
  ASSERT_FALSE(leaf.has_value());
  EXPECT_EQ(leaf.error().code, ELOOP);

  // A symlink deeper down is refused too.
  ASSERT_EQ(mkdir((bucket_ + "/d").c_str(), 0755), 0);
  ASSERT_EQ(symlink(tmp_.path().c_str(), (bucket_ + "/d/up").c_str()), 0);
  auto deep = store_->OpenKey("d/up/secret", O_RDONLY);
  EXPECT_FALSE(deep.has_value());
  if (deep) close(*deep);

  // A key of several components is resolved in one call (openat2) where the
  // kernel has it; a symlink as its last component is the link itself for
  // O_PATH (a lookup shows it) and refused for opening its target.
  ASSERT_EQ(symlink(tmp_.Join("secret").c_str(), (bucket_ + "/d/file-link").c_str()), 0);
  auto deep_leaf = store_->OpenKey("d/file-link", O_RDONLY);
  ASSERT_FALSE(deep_leaf.has_value());
  EXPECT_EQ(deep_leaf.error().code, ELOOP);
  auto as_path = store_->OpenKey("d/file-link", O_PATH);
  ASSERT_TRUE(as_path.has_value()) << as_path.error().message;
  UniqueFd link_fd(*as_path);
  struct stat st;
  ASSERT_EQ(fstatat(link_fd.get(), "", &st, AT_EMPTY_PATH), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  // Below the symlinked directory, even a name that is not there is not a
  // plain miss: the walk does not go through the link.
  auto beyond = store_->OpenKey("d/up/nothing-here", O_PATH);
  ASSERT_FALSE(beyond.has_value());
  EXPECT_EQ(beyond.error().code, ENOTDIR);
}

TEST_F(BucketStoreTest, MakeDirsCreatesAndReusesDirectories) {
  auto fd = store_->MakeDirs("x/y/z");
  ASSERT_TRUE(fd.has_value()) << fd.error().message;
  close(*fd);
  struct stat st;
  ASSERT_EQ(stat((bucket_ + "/x/y/z").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  auto again = store_->MakeDirs("x/y/z");
  ASSERT_TRUE(again.has_value());
  close(*again);
  auto bad = store_->MakeDirs("x/../../out");
  EXPECT_FALSE(bad.has_value());
  if (bad) close(*bad);
}

TEST_F(BucketStoreTest, LeftoverStagingFilesRemovedAtOpen) {
  testing::WriteFile(StagingDir() + "/1234-0.part", "stale");
  testing::WriteFile(StagingDir() + "/1234-1.part", "stale too");
  ASSERT_TRUE(Land("kept.txt", "real object").has_value());
  Open();
  EXPECT_THAT(testing::ListDir(StagingDir()), IsEmpty());
  EXPECT_EQ(testing::ReadFile(bucket_ + "/kept.txt"), "real object");
}

TEST_F(BucketStoreTest, WhileRunningOnlyDeadInstancesStagingFilesAreSwept) {
  // A second instance on the same bucket (another host, or another mount).
  auto other = BucketStore::Open(bucket_, StoreOptions{});
  ASSERT_TRUE(other.has_value()) << other.error().message;
  std::vector<std::string> ids;  // both live instances' ids, "<id>.lock"
  for (const auto& n : testing::ListDir(bucket_ + "/.originfs/instances"))
    ids.push_back(n.substr(0, n.size() - 5));
  ASSERT_EQ(ids.size(), 2u);
  const std::string a = StagingDir() + "/" + ids[0] + ".1.part";
  const std::string b = StagingDir() + "/" + ids[1] + ".2.part";
  testing::WriteFile(a, "live");
  testing::WriteFile(b, "live too");
  testing::WriteFile(StagingDir() + "/deadhost-99-0badcafe.3.part", "left by a dead host");
  testing::WriteFile(StagingDir() + "/notes.txt", "not a staging file");
  EXPECT_EQ(store_->CleanDeadStaging(), 1u);  // only the dead host's
  EXPECT_EQ(testing::ListDir(StagingDir()).size(), 3u);
  // The other instance dies: its file goes at the next sweep, the live one's stays.
  other->reset();
  EXPECT_EQ(store_->CleanDeadStaging(), 1u);
  struct stat st;
  EXPECT_NE(stat(a.c_str(), &st) == 0, stat(b.c_str(), &st) == 0);
  EXPECT_EQ(stat((StagingDir() + "/notes.txt").c_str(), &st), 0);
}

TEST_F(BucketStoreTest, ConcurrentCommitsOfDistinctKeys) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 25;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::string key = "t" + std::to_string(t) + "/shared/f" + std::to_string(i);
        if (!Land(key, key)) failures++;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      std::string key = "t" + std::to_string(t) + "/shared/f" + std::to_string(i);
      EXPECT_EQ(testing::ReadFile(bucket_ + "/" + key), key);
    }
  }
}

// What a reader stat'ed of a directory at any moment of a run of landings
// into it (tar compares before and after reading) counts as the landings'.
TEST_F(BucketStoreTest, AStatBetweenTwoLandingsInARowIsTheLandings) {
  ASSERT_TRUE(Land("d/f1", "1"));
  struct stat between;
  ASSERT_EQ(stat((bucket_ + "/d").c_str(), &between), 0);
  EXPECT_TRUE(store_->UnchangedSinceLanding(between));
  // Coarse ctime clocks: wait until the next landing gives a later ctime.
  struct stat after;
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(Land("d/f" + std::to_string(i + 2), "x"));
    ASSERT_EQ(stat((bucket_ + "/d").c_str(), &after), 0);
    if (after.st_ctim.tv_sec != between.st_ctim.tv_sec ||
        after.st_ctim.tv_nsec != between.st_ctim.tv_nsec)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ASSERT_NE(after.st_ctim.tv_nsec, between.st_ctim.tv_nsec);
  EXPECT_TRUE(store_->UnchangedSinceLanding(after));
  EXPECT_TRUE(store_->UnchangedSinceLanding(between));
  // A change of anyone else's is not, nor is anything after it.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_EQ(chmod((bucket_ + "/d").c_str(), 0750), 0);
  struct stat changed;
  ASSERT_EQ(stat((bucket_ + "/d").c_str(), &changed), 0);
  EXPECT_FALSE(store_->UnchangedSinceLanding(changed));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_TRUE(Land("d/later", "x"));
  EXPECT_FALSE(store_->UnchangedSinceLanding(changed));
}

TEST_F(BucketStoreTest, ADirectoryALandingMadeIsTheLandingsBeforeAnythingLandsInIt) {
  auto dir = store_->MakeDirs("made/sub", false);
  ASSERT_TRUE(dir.has_value()) << dir.error().message;
  close(*dir);
  for (std::string d : {"made", "made/sub"}) {
    struct stat st;
    ASSERT_EQ(stat((bucket_ + "/" + d).c_str(), &st), 0);
    EXPECT_TRUE(store_->UnchangedSinceLanding(st)) << d;
  }
  // A directory made by anyone else is not.
  ASSERT_EQ(mkdir((bucket_ + "/made/other").c_str(), 0755), 0);
  struct stat other;
  ASSERT_EQ(stat((bucket_ + "/made/other").c_str(), &other), 0);
  EXPECT_FALSE(store_->UnchangedSinceLanding(other));
}

}  // namespace
}  // namespace originfs

namespace originfs {
namespace {

TEST(KeyProgressTest, RoundTripsAndRejectsTornOrForeignRecords) {
  KeyProgress p{"host-12-0badcafe.7.part", 41943040, 1700000000, 1048576};
  std::string rec = FormatProgress(p);
  EXPECT_EQ(rec.size(), kProgressBytes);  // padded: a shorter record overwrites a longer one
  EXPECT_EQ(ParseProgress(rec), p);
  // A record torn by a concurrent write (old and new bytes mixed) fails its check.
  std::string torn = rec;
  torn[6] = torn[6] == '9' ? '8' : '9';
  EXPECT_EQ(ParseProgress(torn), std::nullopt);
  EXPECT_EQ(ParseProgress(""), std::nullopt);
  EXPECT_EQ(ParseProgress(std::string(kProgressBytes, ' ')), std::nullopt);
  // Names that are not staging files are never opened: no path escapes.
  for (std::string bad : {"../../etc/passwd", "a/b.part", ".hidden.part", "x.txt"}) {
    KeyProgress q = p;
    q.staging = bad;
    EXPECT_EQ(ParseProgress(FormatProgress(q)), std::nullopt) << bad;
  }
  KeyProgress more = p;
  more.received = more.size + 1;  // more than the object: not believed
  EXPECT_EQ(ParseProgress(FormatProgress(more)), std::nullopt);
}

}  // namespace
}  // namespace originfs
