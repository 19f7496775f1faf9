// What programs that walk trees and compare before and after see: inode
// numbers that stay, the caller's umask, setuid cleared on foreign writes,
// direct bucket writes visible at once, listings that show every name a
// lookup has shown, and origin directories that fail rename/rmdir honestly.
#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <future>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/mount_fixture.h"
#include "tests/support/web_server.h"

namespace originfs::e2e {
namespace {

class PosixFidelityTest : public MountTest {};

// Every name of a listing, "." and ".." included, with its d_ino.
std::vector<std::pair<std::string, ino_t>> Entries(const std::string& dir) {
  std::vector<std::pair<std::string, ino_t>> out;
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) out.emplace_back(e->d_name, e->d_ino);
  closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

ino_t InoOf(const std::string& path) {
  struct stat st {};
  return StatErr(path, &st) == 0 ? st.st_ino : 0;
}

mode_t ModeOf(const std::string& path) {
  struct stat st {};
  return StatErr(path, &st) == 0 ? st.st_mode & 07777 : 0;
}

TEST_F(PosixFidelityTest, InodeNumbersStayWhenObjectsLand) {
  origin_.SetNginxDirectories(true);
  origin_.SetFile("/a/b/c.txt", "c bytes");
  origin_.SetFile("/a/b/d.txt", "d bytes");
  ASSERT_NO_FATAL_FAILURE(Mount());

  ino_t dir_before = InoOf(M("a/b"));
  ino_t file_before = InoOf(M("a/b/c.txt"));
  ASSERT_NE(dir_before, 0u);
  ASSERT_NE(file_before, 0u);
  ASSERT_EQ(ReadAll(M("a/b/c.txt")).data, "c bytes");
  ASSERT_TRUE(EventuallyExists(B("a/b/c.txt")));
  std::this_thread::sleep_for(1200ms);  // past the attribute and entry timeouts
  EXPECT_EQ(InoOf(M("a/b")), dir_before) << "a directory's number changed once it was made";
  EXPECT_EQ(InoOf(M("a/b/c.txt")), file_before) << "a file's number changed once it landed";
  EXPECT_EQ(InoOf(M("a/b/c.txt")), InoOf(B("a/b/c.txt")));
  // The parent's listing names the directory under the number stat shows.
  auto names = Entries(M("a"));
  auto it = std::find_if(names.begin(), names.end(), [](auto& e) { return e.first == "b"; });
  ASSERT_NE(it, names.end()) << "a/ does not list b";
  EXPECT_EQ(it->second, dir_before);
}

TEST_F(PosixFidelityTest, CwdInsideAnOriginDirectorySurvivesLandings) {
  origin_.SetNginxDirectories(true);
  origin_.SetFile("/a/b/c.txt", "c bytes");
  ASSERT_NO_FATAL_FAILURE(Mount());
  std::string dir = M("a/b");
  // The shell's cwd is the origin directory; a landing then makes it real.
  auto r = RunCommand({"bash", "-c",
                       "cd '" + dir +
                           "' && cat c.txt >/dev/null && sleep 1.3 && /bin/pwd && "
                           "python3 -c 'import os; print(os.getcwd())' && bash -c 'pwd -P'"},
                      30s);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, dir + "\n" + dir + "\n" + dir + "\n") << r.err;
  EXPECT_EQ(r.err.find("shell-init"), std::string::npos) << r.err;
}

TEST_F(PosixFidelityTest, CreatedFilesGetTheCallersUmask) {
  ASSERT_NO_FATAL_FAILURE(Mount());
  auto r = RunCommand({"bash", "-c",
                       "cd '" + mnt_ +
                           "' && umask 002 && touch f && mkdir d && mknod p p && "
                           "python3 -c 'import os; os.umask(0); os.close(os.open(\"s\", "
                           "os.O_CREAT|os.O_WRONLY, 0o4777)); os.mkdir(\"d0\", 0o777)'"},
                      20s);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ModeOf(M("f")), 0664u);
  EXPECT_EQ(ModeOf(M("d")), 0775u);
  EXPECT_EQ(ModeOf(M("p")), 0664u);
  EXPECT_EQ(ModeOf(M("s")), 04777u);
  EXPECT_EQ(ModeOf(M("d0")), 0777u);
  EXPECT_EQ(ModeOf(B("f")), 0664u) << "the bucket file itself";
}

TEST_F(PosixFidelityTest, WriteByAnotherUserClearsSetuid) {
  DaemonOptions o = Defaults();
  o.extra_opts = {"allow_other"};
  ASSERT_EQ(chmod(root_.c_str(), 0755), 0);  // so that another user can reach the mount
  ASSERT_EQ(chmod(bucket_.c_str(), 0777), 0);
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  ASSERT_EQ(WriteAll(M("s"), "x"), 0);
  ASSERT_EQ(chmod(M("s").c_str(), 06777), 0);
  ASSERT_EQ(ModeOf(M("s")), 06777u);
  auto r = RunCommand({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "bash", "-c",
                       "echo more >> '" + M("s") + "'"},
                      20s);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ModeOf(B("s")) & (S_ISUID | S_ISGID), 0u)
      << "setuid/setgid survived a write by another user: " << std::oct << ModeOf(B("s"));
}

TEST_F(PosixFidelityTest, FilesWrittenStraightIntoTheBucketAreVisibleAtOnce) {
  ASSERT_NO_FATAL_FAILURE(Mount());
  ASSERT_EQ(StatErr(M("later.txt")), ENOENT);
  ASSERT_EQ(StatErr(M("later.txt")), ENOENT);
  ASSERT_EQ(WriteAll(B("later.txt"), "uploaded"), 0);
  EXPECT_EQ(ReadAll(M("later.txt")).data, "uploaded") << "hidden by a cached negative entry";
  EXPECT_EQ(origin_.GetCount("/later.txt"), 1) << "repeated misses must not all ask the origin";
}

TEST_F(PosixFidelityTest, ListingsShowFilesStillDownloading) {
  ASSERT_EQ(mkdir(B("big").c_str(), 0755), 0);
  ASSERT_EQ(WriteAll(B("big/small.txt"), "s"), 0);
  testing::Behavior b;
  b.body = PatternBytes(4 << 20, 3);
  b.stall_ms = 4000;
  origin_.Set("/big/slow.bin", b);
  ASSERT_NO_FATAL_FAILURE(Mount());
  struct stat st {};
  ASSERT_EQ(StatErr(M("big/slow.bin"), &st), 0);
  ASSERT_FALSE(Exists(B("big/slow.bin"))) << "test premise: still downloading";
  auto names = ListDir(M("big"));
  EXPECT_EQ(names, (std::vector<std::string>{"slow.bin", "small.txt"}));
  auto entries = Entries(M("big"));
  auto it =
      std::find_if(entries.begin(), entries.end(), [](auto& e) { return e.first == "slow.bin"; });
  ASSERT_NE(it, entries.end());
  EXPECT_EQ(it->second, st.st_ino);
  // ls -l style: attributes of every listed name.
  auto r = RunCommand({"ls", "-l", M("big")}, 20s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("slow.bin"), std::string::npos) << r.out;
}

TEST_F(PosixFidelityTest, OriginDirectoriesListDotsAndLookedUpNames) {
  origin_.SetNginxDirectories(true);
  origin_.SetFile("/od/x.txt", "x");
  testing::Behavior b;
  b.body = PatternBytes(2 << 20, 4);
  b.stall_ms = 3000;
  origin_.Set("/od/sub/slow.bin", b);
  ASSERT_NO_FATAL_FAILURE(Mount());
  ASSERT_EQ(StatErr(M("od/sub/slow.bin")), 0);
  auto entries = Entries(M("od"));
  std::vector<std::string> names;
  for (auto& e : entries) names.push_back(e.first);
  EXPECT_EQ(names, (std::vector<std::string>{".", "..", "sub"}));
  for (auto& e : entries) EXPECT_NE(e.second, 0u) << e.first << " has no inode number";
  EXPECT_EQ(entries[0].second, InoOf(M("od")));
}

// An origin directory can be neither renamed (EXDEV: mv copies it) nor
// removed (ENOTEMPTY: its files are at the origin), as a lower directory of
// overlayfs.
void ExpectHeldByTheOrigin(const std::string& mnt, const std::string& dir) {
  errno = 0;
  EXPECT_EQ(rename((mnt + "/" + dir).c_str(), (mnt + "/moved").c_str()), -1) << dir;
  EXPECT_EQ(errno, EXDEV) << dir;
  errno = 0;
  EXPECT_EQ(rmdir((mnt + "/" + dir).c_str()), -1) << dir;
  EXPECT_EQ(errno, ENOTEMPTY) << dir;
}

TEST_F(PosixFidelityTest, OriginDirectoriesFailRenameAndRmdirHonestly) {
  origin_.SetNginxDirectories(true);
  origin_.SetFile("/od/x.txt", "x");
  origin_.SetFile("/od2/y.txt", "y");
  ASSERT_NO_FATAL_FAILURE(Mount());
  struct stat st {};
  ASSERT_EQ(StatErr(M("od"), &st), 0);
  ASSERT_TRUE(S_ISDIR(st.st_mode));
  ExpectHeldByTheOrigin(mnt_, "od");
  EXPECT_EQ(ReadAll(M("od/x.txt")).data, "x") << "the origin's files must stay reachable";
  EXPECT_EQ(StatErr(M("moved")), ENOENT);
  // Once made in the bucket (a file landed in it), still the origin's.
  ASSERT_TRUE(EventuallyExists(B("od/x.txt")));
  ExpectHeldByTheOrigin(mnt_, "od");
  // Nor can another directory replace it.
  ASSERT_EQ(mkdir(M("mine").c_str(), 0755), 0);
  ASSERT_EQ(StatErr(M("od2")), 0);
  errno = 0;
  EXPECT_EQ(rename(M("mine").c_str(), M("od2").c_str()), -1);
  EXPECT_EQ(errno, ENOTEMPTY);
  // Directories made through the mount behave as on any disk.
  ASSERT_EQ(mkdir(M("mine/sub").c_str(), 0755), 0);
  EXPECT_EQ(rename(M("mine").c_str(), M("yours").c_str()), 0);
  EXPECT_EQ(rmdir(M("yours/sub").c_str()), 0);
  EXPECT_EQ(rmdir(M("yours").c_str()), 0);
}

// After a remount the daemon had forgotten which bucket directories are the
// origin's: `mv d d2` of an origin directory with one landed file moved only
// that file (exit 0) and left the rest under the old name.
TEST_F(PosixFidelityTest, OriginDirectoriesStayTheOriginsAfterARemount) {
  origin_.SetNginxDirectories(true);
  origin_.SetFile("/od/landed.txt", "l");
  origin_.SetFile("/od/only-at-origin.txt", "o");
  origin_.SetFile("/od/sub/deep.txt", "d");
  ASSERT_NO_FATAL_FAILURE(Mount());
  ASSERT_EQ(ReadAll(M("od/landed.txt")).data, "l");
  ASSERT_TRUE(EventuallyExists(B("od/landed.txt")));
  ASSERT_NO_FATAL_FAILURE(Remount());
  ExpectHeldByTheOrigin(mnt_, "od");
  EXPECT_EQ(StatErr(M("moved")), ENOENT);
  EXPECT_EQ(ReadAll(M("od/only-at-origin.txt")).data, "o");
  EXPECT_EQ(ReadAll(M("od/sub/deep.txt")).data, "d");
}

}  // namespace
}  // namespace originfs::e2e

namespace originfs::e2e {
namespace {

class ScaleWalkTest : public MountTest {
 protected:
  // kDirs directories of kFiles empty files each, made in the bucket directly.
  void MakeTree(int dirs, int files) {
    for (int d = 0; d < dirs; ++d) {
      std::string dir = B("d" + std::to_string(d));
      ASSERT_EQ(mkdir(dir.c_str(), 0755), 0);
      int dfd = open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      ASSERT_GE(dfd, 0);
      for (int f = 0; f < files; ++f) {
        int fd =
            openat(dfd, ("f" + std::to_string(f)).c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
        ASSERT_GE(fd, 0);
        close(fd);
      }
      close(dfd);
    }
  }
  long Counter(const std::string& name) {
    char buf[64] = {};
    ssize_t n = getxattr(mnt_.c_str(), ("user.originfs." + name).c_str(), buf, sizeof buf - 1);
    return n > 0 ? std::atol(buf) : -1;
  }
};

// The quick variant of bench/run's scale walk: 200,000 files, a daemon
// limited to 1,024 descriptors, three programs that walk whole trees.
TEST_F(ScaleWalkTest, WalkOfMoreFilesThanDescriptorsSeesEveryFile) {
  constexpr int kDirs = 200, kFiles = 1000;
  ASSERT_NO_FATAL_FAILURE(MakeTree(kDirs, kFiles));
  // The daemon runs under a limit far below the number of files.
  DaemonOptions o;
  o.rules = {RuleSpec{"", origin_.url(), std::nullopt, "", "list = \"none\""}};
  o.fd_limit = 1024;
  o.watchdog = 300s;
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  const std::string all = std::to_string(kDirs * kFiles);
  for (int pass = 0; pass < 2; ++pass) {
    auto r =
        RunCommand({"bash", "-c", "find '" + mnt_ + "' -type f -printf '%s\\n' | wc -l"}, 300s);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out, all + "\n") << "pass " << pass << ": " << r.err;
    EXPECT_EQ(r.err, "");
  }
  {
    auto r = RunCommand({"du", "--inodes", "-s", mnt_}, 300s);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(r.out.substr(0, r.out.find('\t')), std::to_string(kDirs * kFiles + kDirs + 1));
  }
  if (!testing::FindInPath("rsync").empty()) {
    std::string target = root_ + "/rsync-target";
    auto r = RunCommand({"bash", "-c",
                         "rsync -a --dry-run --stats '" + mnt_ + "/' '" + target +
                             "/' | grep '^Number of regular files'"},
                        300s);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.out.find("Number of regular files transferred: 200,000"), std::string::npos)
        << r.out;
  }
  std::string limits;
  {
    auto r = RunCommand({"cat", "/proc/" + std::to_string(mount_->pid()) + "/limits"}, 5s);
    limits = r.out;
  }
  EXPECT_NE(limits.find("Max open files            1024                 1024"), std::string::npos)
      << limits;
  std::string fds = "/proc/" + std::to_string(mount_->pid()) + "/fd";
  EXPECT_LE(ListDir(fds).size(), 1024u);
  // The memory budget of an inode the kernel remembers.
  long inodes = Counter("inodes"), each = Counter("inode_bytes_each");
  EXPECT_GT(inodes, 1000) << "the kernel forgot nearly everything: the budget is not tested";
  EXPECT_GT(each, 0);
  EXPECT_LE(each, 256) << inodes << " inodes";
  EXPECT_EQ(ListDir(M("d0")).size(), static_cast<std::size_t>(kFiles));
  EXPECT_EQ(WriteAll(M("d3/new"), "still usable"), 0);
  EXPECT_EQ(ReadAll(M("d3/new")).data, "still usable");
  EXPECT_EQ(ReadAll(M("d199/f999")).data, "");
}

// An inode whose descriptor the cache closed keeps only a file handle. When
// its file is deleted outside the mount and ext4 gives the inode number to a
// new file, a lookup of the new file must not be answered with the old
// inode (whose handle is stale: ESTALE for as long as the kernel keeps it).
TEST_F(ScaleWalkTest, ARecycledInodeNumberIsANewFileNotAStaleOne) {
  DaemonOptions o;
  o.rules = {RuleSpec{"", origin_.url(), std::nullopt, "", "list = \"none\""}};
  o.fd_limit = 768;  // a descriptor cache of 64 inodes
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  ASSERT_EQ(mkdir(B("many").c_str(), 0755), 0);
  for (int i = 0; i < 300; ++i) ASSERT_EQ(WriteAll(B("many/f" + std::to_string(i)), "x"), 0);
  ASSERT_EQ(WriteAll(B("victim"), "old"), 0);
  struct stat st {};
  ASSERT_EQ(StatErr(M("victim"), &st), 0);
  ASSERT_EQ(ReadAll(M("victim")).data, "old");
  const ino_t old_ino = st.st_ino;
  // Looked up after it: the victim's descriptor is the coldest, and closed.
  for (int i = 0; i < 300; ++i) ASSERT_EQ(StatErr(M("many/f" + std::to_string(i))), 0);
  ASSERT_EQ(unlink(B("victim").c_str()), 0);  // outside the mount
  std::string reused;
  for (int i = 0; i < 500 && reused.empty(); ++i) {
    std::string name = "new" + std::to_string(i);
    ASSERT_EQ(WriteAll(B(name), "new file " + name), 0);
    struct stat nst {};
    if (StatErr(B(name), &nst) == 0 && nst.st_ino == old_ino) reused = name;
  }
  if (reused.empty()) GTEST_SKIP() << "the filesystem did not reuse the inode number";
  auto r = ReadAll(M(reused));
  EXPECT_EQ(r.err, 0) << r.stage << ": " << ErrnoName(r.err);
  EXPECT_EQ(r.data, "new file " + reused);
}

// ls -l of a big directory on a fresh mount: every entry comes with its
// attributes (readdirplus), so ls needs no lookup of its own per name.
TEST_F(ScaleWalkTest, LongListingOfABigDirectoryUsesReaddirplus) {
  constexpr int kFiles = 20000;
  ASSERT_NO_FATAL_FAILURE(MakeTree(1, kFiles));
  DaemonOptions o;
  o.rules = {RuleSpec{"", origin_.url(), std::nullopt, "", "list = \"none\""}};
  o.fd_limit = 1024;
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  auto mine =
      RunCommand({"bash", "-c", "cd '" + mnt_ + "/d0' && ls -l --time-style=+%s . | sort"}, 120s);
  auto plain =
      RunCommand({"bash", "-c", "cd '" + B("d0") + "' && ls -l --time-style=+%s . | sort"}, 120s);
  ASSERT_EQ(mine.exit_code, 0) << mine.err;
  EXPECT_EQ(std::count(mine.out.begin(), mine.out.end(), '\n'), kFiles + 1);  // + "total"
  EXPECT_EQ(mine.out, plain.out);
  EXPECT_GE(Counter("readdirplus_entries"), kFiles);
  EXPECT_LT(Counter("hits"), kFiles / 100) << "ls looked names up one by one";
}

}  // namespace
}  // namespace originfs::e2e
