// Directories that exist only at the origin, rule prefixes as directories,
// and the hidden state directory.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <thread>

#include <gtest/gtest.h>

#include "tests/support/mount_fixture.h"

namespace originfs::e2e {
namespace {

class DirectoriesTest : public MountTest {};

bool IsDir(const std::string& path) {
  struct stat st {};
  return StatErr(path, &st) == 0 && S_ISDIR(st.st_mode);
}

TEST_F(DirectoriesTest, DeepPathFromNginxStyleOrigin) {
  const std::string body = PatternBytes(40000, 8);
  origin_.SetNginxDirectories(true);
  origin_.SetFile("/a/b/c.txt", body);
  ASSERT_NO_FATAL_FAILURE(Mount());

  EXPECT_TRUE(IsDir(M("a")));
  EXPECT_TRUE(IsDir(M("a/b")));
  auto r = ReadAll(M("a/b/c.txt"));
  ASSERT_EQ(r.err, 0) << r.stage << ": " << ErrnoName(r.err);
  EXPECT_TRUE(r.data == body);
  ASSERT_TRUE(EventuallyExists(B("a/b/c.txt")));
  EXPECT_TRUE(ReadAll(B("a/b/c.txt")).data == body);
  EXPECT_EQ(origin_.GetCount("/a/b/c.txt"), 1);
  // A missing file inside an origin directory is still ENOENT.
  EXPECT_EQ(StatErr(M("a/b/missing.txt")), ENOENT);
  EXPECT_EQ(StatErr(M("nowhere/c.txt")), ENOENT);
}

TEST_F(DirectoriesTest, AListingThatMarksNoDirectoryLeavesTypesUnknown) {
  // An index page that links the directory "big" without a trailing '/':
  // readdir must not call it a file when stat finds a directory (du aborts
  // on that, find -type f lists it).
  origin_.SetNginxDirectories(true);
  origin_.SetFile("/d/big/x.txt", "x");
  origin_.SetFile("/d/f.txt", "f");
  testing::Behavior page;
  page.body = "<html><title>Index of /d/</title><a href=\"big\">big</a> <a href=\"f.txt\">f</a>";
  page.content_type = "text/html";
  origin_.Set("/d/", page);
  ASSERT_NO_FATAL_FAILURE(Mount());
  auto du = RunCommand({"du", "-a", "--apparent-size", "-b", M("d")}, 30s);
  EXPECT_EQ(du.exit_code, 0) << du.err;
  auto files = RunCommand({"bash", "-c", "cd '" + M("d") + "' && find . -type f | sort"}, 30s);
  EXPECT_EQ(files.out, "./f.txt\n") << files.err;  // big/ serves no index page
  auto dirs = RunCommand({"bash", "-c", "cd '" + M("d") + "' && find . -type d | sort"}, 30s);
  EXPECT_EQ(dirs.out, ".\n./big\n") << dirs.err;
}

TEST_F(DirectoriesTest, DeepPathOpenedDirectlyFromNginxStyleOrigin) {
  // No stat of the parents first: the kernel walks them on its own.
  origin_.SetNginxDirectories(true);
  origin_.SetFile("/x/y/z/deep.txt", "deep");
  ASSERT_NO_FATAL_FAILURE(Mount());
  auto r = ReadAll(M("x/y/z/deep.txt"));
  ASSERT_EQ(r.err, 0) << r.stage << ": " << ErrnoName(r.err);
  EXPECT_EQ(r.data, "deep");
  ASSERT_TRUE(EventuallyExists(B("x/y/z/deep.txt")));
  EXPECT_EQ(ReadAll(B("x/y/z/deep.txt")).data, "deep");
}

TEST_F(DirectoriesTest, DeepPathFromObjectStoreWithVirtualDirs) {
  const std::string body = PatternBytes(40000, 9);
  origin_.SetFile("/a/b/c.txt", body);  // no directory redirects: every "a" is a 404
  DaemonOptions o;
  o.rules = {RuleSpec{"", origin_.url(), std::nullopt, "virtual"}};
  ASSERT_NO_FATAL_FAILURE(Mount(o));

  EXPECT_TRUE(IsDir(M("a")));
  EXPECT_TRUE(IsDir(M("a/b")));
  auto r = ReadAll(M("a/b/c.txt"));
  ASSERT_EQ(r.err, 0) << r.stage << ": " << ErrnoName(r.err);
  EXPECT_TRUE(r.data == body);
  ASSERT_TRUE(EventuallyExists(B("a/b/c.txt")));
  EXPECT_TRUE(ReadAll(B("a/b/c.txt")).data == body);
}

TEST_F(DirectoriesTest, ObjectStoreWithoutVirtualDirsHasNoDirectories) {
  // dirs = "probe" (the default): a 404 name is a directory only if the
  // origin says so, and an object store does not.
  origin_.SetFile("/a/b/c.txt", "unreachable");
  ASSERT_NO_FATAL_FAILURE(Mount());
  EXPECT_EQ(StatErr(M("a")), ENOENT);
  EXPECT_EQ(ReadAll(M("a/b/c.txt")).err, ENOENT);
}

TEST_F(DirectoriesTest, NoExtNamesAreDirectories) {
  origin_.SetFile("/v1/pkg/file.tar", "tarball");
  DaemonOptions o;
  o.rules = {RuleSpec{"", origin_.url(), std::nullopt, "no-ext"}};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  EXPECT_TRUE(IsDir(M("v1")));
  EXPECT_EQ(ReadAll(M("v1/pkg/file.tar")).data, "tarball");
  EXPECT_EQ(StatErr(M("v1/missing.txt")), ENOENT) << "a name with '.' is not a directory";
}

TEST_F(DirectoriesTest, RulePrefixComponentsAreDirectories) {
  origin_.SetFile("/img/2024/cat.png", "meow");
  DaemonOptions o;
  o.rules = {RuleSpec{"img/2024/", origin_.url()}};
  ASSERT_NO_FATAL_FAILURE(Mount(o));

  EXPECT_TRUE(IsDir(M("img")));
  EXPECT_TRUE(IsDir(M("img/2024")));
  EXPECT_EQ(origin_.TotalCount(), 0)
      << "prefix directories need no request: " << ::testing::PrintToString(origin_.Log());
  EXPECT_EQ(ReadAll(M("img/2024/cat.png")).data, "meow");
  ASSERT_TRUE(EventuallyExists(B("img/2024/cat.png")));
  EXPECT_EQ(ReadAll(B("img/2024/cat.png")).data, "meow");
}

// Only a redirect from key to key/ makes a directory; one to another
// address ending in '/' (a home page for missing names) is followed.
TEST_F(DirectoriesTest, ARedirectToAnotherSlashAddressIsNotADirectory) {
  origin_.SetFile("/home/", "the home page\n");
  testing::Behavior b;
  b.status = 302;
  b.redirect_to = origin_.url() + "/home/";
  origin_.Set("/gone.txt", b);
  testing::Behavior to_dir;
  to_dir.status = 301;
  to_dir.redirect_to = origin_.url() + "/d/";
  origin_.Set("/d", to_dir);
  origin_.SetFile("/d/", "index of d\n");
  ASSERT_NO_FATAL_FAILURE(Mount());
  struct stat st {};
  ASSERT_EQ(StatErr(M("gone.txt"), &st, true), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode)) << "a redirect to /home/ made gone.txt a directory";
  ASSERT_EQ(StatErr(M("d"), &st, true), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode)) << "a redirect from d to d/ is a directory";
}

// A WebDAV server may refuse a GET of a collection named without its '/'
// with 403: a directory when key/ answers 2xx; a forbidden file, whose key/
// is forbidden too, stays EIO (not a directory).
TEST_F(DirectoriesTest, A403ForADirectoryWithoutItsSlashIsADirectory) {
  testing::Behavior forbidden;
  forbidden.status = 403;
  forbidden.body = "forbidden";
  origin_.Set("/coll", forbidden);
  origin_.SetFile("/coll/", "a collection\n");
  origin_.SetFile("/coll/f.txt", "in it\n");
  origin_.Set("/secret.txt", forbidden);
  origin_.Set("/secret.txt/", forbidden);
  ASSERT_NO_FATAL_FAILURE(Mount());
  struct stat st {};
  ASSERT_EQ(StatErr(M("coll"), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(ReadAll(M("coll/f.txt")).data, "in it\n");
  EXPECT_EQ(StatErr(M("secret.txt")), EIO);
}

TEST_F(DirectoriesTest, StateDirIsHidden) {
  ASSERT_EQ(WriteAll(B("visible.txt"), "v"), 0);
  ASSERT_NO_FATAL_FAILURE(Mount());
  ASSERT_TRUE(Exists(B(".originfs"))) << "bucket has no state dir; test premise wrong";

  auto names = ListDir(mnt_);
  EXPECT_EQ(std::count(names.begin(), names.end(), ".originfs"), 0)
      << ::testing::PrintToString(names);
  EXPECT_EQ(std::count(names.begin(), names.end(), "visible.txt"), 1)
      << ::testing::PrintToString(names);
  EXPECT_EQ(StatErr(M(".originfs")), ENOENT);
  EXPECT_EQ(StatErr(M(".originfs/staging")), ENOENT);
  EXPECT_EQ(ReadAll(M(".originfs")).err, ENOENT);
  EXPECT_EQ(origin_.Count("/.originfs"), 0) << "the state dir name went to the origin";
  // Nor can it be created through the mount.
  EXPECT_NE(mkdir(M(".originfs").c_str(), 0755), 0);
  EXPECT_NE(WriteAll(M(".originfs"), "x"), 0);
}

TEST_F(DirectoriesTest, ListingShowsBucketContents) {
  ASSERT_EQ(mkdir(B("sub").c_str(), 0755), 0);
  ASSERT_EQ(WriteAll(B("sub/one"), "1"), 0);
  ASSERT_EQ(WriteAll(B("two"), "2"), 0);
  // list = "none": the bucket's names only, no request.
  DaemonOptions o;
  o.rules = {RuleSpec{"", origin_.url(), std::nullopt, "", "list = \"none\""}};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  EXPECT_EQ(ListDir(mnt_), (std::vector<std::string>{"sub", "two"}));
  EXPECT_EQ(ListDir(M("sub")), (std::vector<std::string>{"one"}));
  EXPECT_EQ(origin_.TotalCount(), 0);
}

TEST_F(DirectoriesTest, ListingAsksTheOriginOncePerDirectory) {
  ASSERT_EQ(mkdir(B("sub").c_str(), 0755), 0);
  ASSERT_EQ(WriteAll(B("sub/one"), "1"), 0);
  ASSERT_NO_FATAL_FAILURE(Mount());  // list = "auto"; this origin serves no index pages
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(ListDir(mnt_), (std::vector<std::string>{"sub"}));
    EXPECT_EQ(ListDir(M("sub")), (std::vector<std::string>{"one"}));
  }
  EXPECT_EQ(origin_.Count("/"), 1) << ::testing::PrintToString(origin_.Log());
  EXPECT_EQ(origin_.Count("/sub/"), 1) << ::testing::PrintToString(origin_.Log());
}

}  // namespace
}  // namespace originfs::e2e

namespace originfs::e2e {
namespace {

std::string IndexPage(const std::string& dir, const std::vector<std::string>& hrefs) {
  std::string page = "<html><head><title>Index of " + dir + "</title></head><body><pre>";
  page += "<a href=\"../\">../</a>\n";
  for (const auto& h : hrefs) page += "<a href=\"" + h + "\">" + h + "</a>\n";
  return page + "</pre></body></html>";
}

class ListingsTest : public MountTest {};

TEST_F(ListingsTest, FreshListingAnswersLookupsWithoutRequests) {
  origin_.SetFile("/", IndexPage("/", {"d/"}));
  origin_.SetFile("/d/", IndexPage("/d/", {"a.txt", "sub/", "sp%20ace.txt"}));
  origin_.SetFile("/d/a.txt", "A");
  origin_.SetFile("/d/sp ace.txt", "S");
  DaemonOptions o;
  o.rules = {RuleSpec{"", origin_.url(), std::nullopt, "virtual"}};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  EXPECT_EQ(ListDir(mnt_), (std::vector<std::string>{"d"}));
  EXPECT_EQ(ListDir(M("d")), (std::vector<std::string>{"a.txt", "sp ace.txt", "sub"}));
  origin_.ResetCounts();
  struct stat st {};
  EXPECT_EQ(StatErr(M("d/missing.txt")), ENOENT);
  EXPECT_EQ(StatErr(M("d/sub"), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(origin_.TotalCount(), 0) << ::testing::PrintToString(origin_.Log());
  // Index pages leave dot names out: those are still asked for.
  origin_.SetFile("/d/.hidden", "H");
  EXPECT_EQ(ReadAll(M("d/.hidden")).data, "H");
  // Under dirs = "virtual" an unlisted name is not a directory: it can be made.
  EXPECT_EQ(WriteAll(M("d/created.txt"), "new"), 0);
  EXPECT_EQ(mkdir(M("d/newdir").c_str(), 0755), 0);
  EXPECT_EQ(ReadAll(B("d/created.txt")).data, "new");
  EXPECT_EQ(ReadAll(M("d/sp ace.txt")).data, "S");
  EXPECT_EQ(ListDir(M("d")), (std::vector<std::string>{".hidden", "a.txt", "created.txt", "newdir",
                                                       "sp ace.txt", "sub"}));
}

TEST_F(ListingsTest, ManifestListsTheOriginsTree) {
  origin_.SetFile("/a/b/c.txt", "C");
  origin_.SetFile("/top.txt", "T");
  origin_.SetFile("/unlisted.txt", "U");
  std::string manifest = root_ + "/keys.tsv";
  ASSERT_EQ(WriteAll(manifest, "a/b/c.txt\t1\t1700000000.25\ntop.txt\t1\t1700000001\n"), 0);
  DaemonOptions o;
  o.rules = {RuleSpec{"", origin_.url(), std::nullopt, "virtual",
                      "list = \"manifest\"\nmanifest = \"" + manifest + "\""}};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  // Lookups know the tree before any listing was read.
  EXPECT_EQ(StatErr(M("a/b/missing.txt")), ENOENT);
  EXPECT_EQ(origin_.TotalCount(), 0) << ::testing::PrintToString(origin_.Log());
  auto r = RunCommand({"bash", "-c", "cd '" + mnt_ + "' && find . | sort"}, 20s);
  EXPECT_EQ(r.out, ".\n./a\n./a/b\n./a/b/c.txt\n./top.txt\n") << r.err;
  EXPECT_EQ(origin_.TotalCount(), 0) << "listing from a local manifest needs no request";
  EXPECT_EQ(StatErr(M("unlisted.txt")), ENOENT);
  EXPECT_EQ(StatErr(M("a/nope")), ENOENT) << "not a guessed directory: the manifest knows";
  EXPECT_EQ(origin_.TotalCount(), 0) << ::testing::PrintToString(origin_.Log());
  // Exact sizes and times: stat and ls -l need no request either.
  struct stat st {};
  ASSERT_EQ(StatErr(M("a/b/c.txt"), &st), 0);
  EXPECT_EQ(st.st_size, 1);
  EXPECT_EQ(st.st_mtime, 1700000000);
  auto ls = RunCommand({"ls", "-lR", mnt_}, 20s);
  EXPECT_EQ(ls.exit_code, 0) << ls.err;
  EXPECT_EQ(origin_.TotalCount(), 0) << ::testing::PrintToString(origin_.Log());
  ino_t shown = st.st_ino;
  EXPECT_EQ(ReadAll(M("a/b/c.txt")).data, "C");
  EXPECT_EQ(origin_.GetCount("/a/b/c.txt"), 1);
  ASSERT_TRUE(EventuallyExists(B("a/b/c.txt")));
  std::this_thread::sleep_for(1200ms);  // past the attribute timeout
  ASSERT_EQ(StatErr(M("a/b/c.txt"), &st), 0);
  EXPECT_EQ(st.st_ino, shown) << "the number changed when the file landed";
  EXPECT_EQ(mkdir(M("a/newdir").c_str(), 0755), 0);
}

// The bucket's own state directory is never shown, whatever an origin lists.
TEST_F(ListingsTest, AManifestNamingTheStateDirectoryDoesNotShowIt) {
  origin_.SetFile("/top.txt", "T");
  std::string manifest = root_ + "/keys.tsv";
  ASSERT_EQ(WriteAll(manifest, ".originfs/x\t1\t1700000000\ntop.txt\t1\t1700000001\n"), 0);
  DaemonOptions o;
  o.rules = {RuleSpec{"", origin_.url(), std::nullopt, "virtual",
                      "list = \"manifest\"\nmanifest = \"" + manifest + "\""}};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  EXPECT_EQ(ListDir(mnt_), (std::vector<std::string>{"top.txt"}));
  auto r = RunCommand({"bash", "-c", "cd '" + mnt_ + "' && find . | sort"}, 20s);
  EXPECT_EQ(r.out, ".\n./top.txt\n") << r.err;
}

// A listing's exact size is what stat shows until the file is fetched; a
// file that grew at the origin since must read whole, not cut at that size.
TEST_F(ListingsTest, AFileThatGrewSinceItWasListedReadsWhole) {
  const std::string body = "grown since the manifest was written\n";
  origin_.SetFile("/grown.txt", body);
  std::string manifest = root_ + "/keys.tsv";
  ASSERT_EQ(WriteAll(manifest, "grown.txt\t5\t1700000000\n"), 0);
  DaemonOptions o;
  o.rules = {RuleSpec{"", origin_.url(), std::nullopt, "virtual",
                      "list = \"manifest\"\nmanifest = \"" + manifest + "\""}};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  struct stat st {};
  ASSERT_EQ(StatErr(M("grown.txt"), &st), 0);
  EXPECT_EQ(st.st_size, 5);
  EXPECT_EQ(ReadAll(M("grown.txt")).data, body) << "the read stopped at the listed size";
  auto cat = RunCommand({"cat", M("grown.txt")}, 10s);
  EXPECT_EQ(cat.out, body);
}

TEST_F(ListingsTest, RefreshOfADirectoryListsItAgain) {
  origin_.SetFile("/", IndexPage("/", {"d/"}));
  origin_.SetFile("/d/", IndexPage("/d/", {"a.txt"}));
  ASSERT_NO_FATAL_FAILURE(Mount());
  EXPECT_EQ(ListDir(M("d")), (std::vector<std::string>{"a.txt"}));
  origin_.SetFile("/d/", IndexPage("/d/", {"a.txt", "b.txt"}));
  EXPECT_EQ(ListDir(M("d")), (std::vector<std::string>{"a.txt"})) << "fresh for list_ttl";
  auto r = RunCommand({ORIGINFS_BINARY, "refresh", mnt_, "d/"}, 20s);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("listed 2 entries"), std::string::npos) << r.out;
  EXPECT_EQ(ListDir(M("d")), (std::vector<std::string>{"a.txt", "b.txt"}));
  auto root = RunCommand({ORIGINFS_BINARY, "refresh", mnt_, "."}, 20s);
  EXPECT_EQ(root.exit_code, 0) << root.out << root.err;
  EXPECT_NE(root.out.find("listed 1 entries"), std::string::npos) << root.out;
}

TEST_F(ListingsTest, RemountListsFromTheIndexWithoutARequest) {
  origin_.SetFile("/", IndexPage("/", {"d/", "top.txt"}));
  origin_.SetFile("/d/", IndexPage("/d/", {"a.txt"}));
  ASSERT_NO_FATAL_FAILURE(Mount());
  EXPECT_EQ(ListDir(mnt_), (std::vector<std::string>{"d", "top.txt"}));
  EXPECT_EQ(ListDir(M("d")), (std::vector<std::string>{"a.txt"}));
  ASSERT_NO_FATAL_FAILURE(Remount());
  origin_.ResetCounts();
  EXPECT_EQ(ListDir(mnt_), (std::vector<std::string>{"d", "top.txt"}));
  EXPECT_EQ(ListDir(M("d")), (std::vector<std::string>{"a.txt"}));
  EXPECT_EQ(StatErr(M("d/missing")), ENOENT);
  EXPECT_EQ(origin_.TotalCount(), 0) << ::testing::PrintToString(origin_.Log());
}

TEST_F(ListingsTest, FailingListingIsEioNotAnEmptyDirectory) {
  testing::Behavior down;
  down.status = 503;
  down.body = "busy";
  origin_.Set("/", down);
  DaemonOptions o;
  o.rules = {RuleSpec{"", origin_.url(), std::nullopt, "", "list = \"autoindex\""}};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  DIR* d = opendir(mnt_.c_str());
  ASSERT_NE(d, nullptr);
  errno = 0;
  int err = 0;
  while (readdir(d) != nullptr) {
  }
  err = errno;
  closedir(d);
  EXPECT_EQ(err, EIO);
  EXPECT_NE(mount_->Log().find("HTTP 503"), std::string::npos);
}

// Origin directories (and files shown from a listing) keep the number they
// were shown with once they land in the bucket (an alias); the aliases went
// only with an rmdir through the mount, so a long-lived mount's memory grew
// with every landed directory ever seen.
TEST_F(ListingsTest, NumberAliasesGoWithTheKernelsInodes) {
  std::vector<std::string> dirs;
  for (int i = 0; i < 100; ++i) {
    dirs.push_back("d" + std::to_string(i) + "/");
    origin_.SetFile("/d" + std::to_string(i) + "/",
                    IndexPage("/d" + std::to_string(i) + "/", {"f"}));
    origin_.SetFile("/d" + std::to_string(i) + "/f", "body " + std::to_string(i));
  }
  origin_.SetFile("/", IndexPage("/", dirs));
  ASSERT_NO_FATAL_FAILURE(Mount());
  auto counter = [&] {
    char buf[64] = {};
    ssize_t n = getxattr(mnt_.c_str(), "user.originfs.number_aliases", buf, sizeof buf - 1);
    return n > 0 ? std::atol(buf) : -1;
  };
  EXPECT_EQ(ListDir(mnt_).size(), 100u);
  for (int i = 0; i < 100; ++i) ASSERT_EQ(ReadAll(M("d" + std::to_string(i) + "/f")).err, 0);
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(EventuallyExists(B("d" + std::to_string(i) + "/f")));
  EXPECT_GE(counter(), 50) << "few aliases made: the test proves little";
  // The kernel forgets what nobody uses (dentries and inodes).
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (counter() > 5 && std::chrono::steady_clock::now() < deadline) {
    ASSERT_EQ(WriteAll("/proc/sys/vm/drop_caches", "2"), 0);
    std::this_thread::sleep_for(200ms);
  }
  EXPECT_LE(counter(), 5);
}

// Found by the differential fuzzer: under the default list = "auto", a
// fresh daemon whose first listing of a directory failed (5xx) showed the
// bucket's part of it as the whole directory, with no error.
TEST_F(ListingsTest, FailingListingAfterARemountIsEioNotThePartInTheBucket) {
  origin_.SetFile("/", IndexPage("/", {"d/"}));
  origin_.SetFile("/d/", IndexPage("/d/", {"a.txt", "b.txt"}));
  origin_.SetFile("/d/a.txt", "A");
  origin_.SetFile("/d/b.txt", "B");
  DaemonOptions o = Defaults();
  o.rules[0].extra = "list_ttl = 1";
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  EXPECT_EQ(ReadAll(M("d/a.txt")).data, "A");  // d is in the bucket now, with a.txt only
  ASSERT_NO_FATAL_FAILURE(Remount());
  sleep(2);  // the listing kept in the index has expired
  testing::Behavior down;
  down.status = 500;
  down.body = "broken";
  origin_.Set("/d/", down);
  DIR* d = opendir(M("d").c_str());
  ASSERT_NE(d, nullptr) << strerror(errno);
  std::vector<std::string> names;
  errno = 0;
  while (dirent* e = readdir(d)) names.push_back(e->d_name);
  int err = errno;
  closedir(d);
  EXPECT_EQ(err, EIO) << "listed: " << ::testing::PrintToString(names);
}

}  // namespace
}  // namespace originfs::e2e

namespace originfs::e2e {
namespace {

// A WebDAV server (rclone serve webdav) answers GET of a directory named
// without its '/' with 405 Method Not Allowed: it is a directory all the
// same (HEAD of key/ answers), and the files below it are read by path.
TEST_F(DirectoriesTest, AWebDavServersDirectoryIsADirectory) {
  if (RunCommand({"bash", "-c", "command -v rclone"}, 10s).exit_code != 0)
    GTEST_SKIP() << "rclone is not installed";
  std::string tree = root_ + "/tree", log = root_ + "/rclone.log";
  auto made = RunCommand(
      {"bash", "-c", "mkdir -p '" + tree + "/deep/er' && echo hi > '" + tree + "/deep/er/f.txt'"},
      10s);
  ASSERT_EQ(made.exit_code, 0) << made.err;
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || dup2(fd, 2) < 0) _exit(127);
    execlp("rclone", "rclone", "serve", "webdav", tree.c_str(), "--addr", "127.0.0.1:0", "--config",
           "/dev/null", static_cast<char*>(nullptr));
    _exit(127);
  }
  ASSERT_GT(pid, 0);
  std::string url;
  for (int i = 0; i < 100 && url.empty(); ++i) {
    std::string text = ReadAll(log).data;
    std::size_t at = text.find("started on http://");
    if (at != std::string::npos) {
      std::size_t end = text.find_first_of("/\n", at + 18);
      if (end != std::string::npos) url = text.substr(at + 11, end - at - 11);
    } else {
      usleep(100 * 1000);
    }
  }
  if (url.empty()) {
    kill(pid, SIGTERM);
    waitpid(pid, nullptr, 0);
    FAIL() << "rclone did not start: " << ReadAll(log).data;
  }
  DaemonOptions o;
  o.rules = {RuleSpec{"", url}};
  ASSERT_NO_FATAL_FAILURE(Mount(o));
  struct stat st {};
  EXPECT_EQ(StatErr(M("deep"), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(ReadAll(M("deep/er/f.txt")).data, "hi\n");
  EXPECT_EQ(StatErr(M("deep/nothere")), ENOENT);
  ASSERT_NO_FATAL_FAILURE(Unmount());
  kill(pid, SIGTERM);
  waitpid(pid, nullptr, 0);
}

}  // namespace
}  // namespace originfs::e2e
