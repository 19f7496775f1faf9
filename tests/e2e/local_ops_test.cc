// Local writes through the mount behave like the same syscalls on a plain
// directory: each scenario runs once on MNT and once on a plain temp dir, and
// the transcripts (results, errnos, contents, attributes) must be equal. The
// bucket must then hold what the plain directory holds.
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <iostream>
#include <sstream>

#include <gtest/gtest.h>

#include "tests/support/mount_fixture.h"

namespace originfs::e2e {
namespace {

// Records each call's result as text. Paths are given relative to the
// directory under test so both transcripts read the same.
class Transcript {
 public:
  explicit Transcript(std::string dir) : dir_(std::move(dir)) {}

  std::string P(const std::string& rel) const { return dir_ + "/" + rel; }

  // rc < 0 means failure with errno.
  void Rc(const std::string& what, long rc) {
    int e = errno;
    lines_.push_back(what + " -> " + (rc < 0 ? ErrnoName(e) : (rc > 0 ? "ok" : "0")));
  }
  // err is 0 or an errno value.
  void Err(const std::string& what, int err) { lines_.push_back(what + " -> " + ErrnoName(err)); }
  // open() whose fd is not needed: recorded and closed at once.
  void Open(const std::string& what, const std::string& rel, int flags, mode_t mode = 0644) {
    int fd = open(P(rel).c_str(), flags | O_CLOEXEC, mode);
    Rc(what, fd);
    if (fd >= 0) close(fd);
  }
  void Note(const std::string& what, const std::string& value) {
    lines_.push_back(what + " = " + value);
  }

  void Content(const std::string& rel) {
    auto r = ReadAll(P(rel));
    if (r.err) return Note("content " + rel, r.stage + " " + ErrnoName(r.err));
    Note("content " + rel, Printable(r.data));
  }

  // Type, size, permission bits and link count; follow selects stat/lstat.
  void Stat(const std::string& rel, bool follow = false) {
    struct stat st {};
    int err = StatErr(P(rel), &st, follow);
    std::string what = std::string(follow ? "stat " : "lstat ") + rel;
    if (err) return Note(what, ErrnoName(err));
    std::ostringstream s;
    s << (S_ISREG(st.st_mode)   ? "file"
          : S_ISDIR(st.st_mode) ? "dir"
          : S_ISLNK(st.st_mode) ? "link"
                                : "other")
      << " mode=" << std::oct << (st.st_mode & 07777) << std::dec << " nlink=" << st.st_nlink;
    if (!S_ISDIR(st.st_mode)) s << " size=" << st.st_size;
    Note(what, s.str());
  }

  void Times(const std::string& rel, bool follow = false) {
    struct stat st {};
    int err = StatErr(P(rel), &st, follow);
    if (err) return Note("times " + rel, ErrnoName(err));
    std::ostringstream s;
    s << "atime=" << st.st_atim.tv_sec << "." << st.st_atim.tv_nsec
      << " mtime=" << st.st_mtim.tv_sec << "." << st.st_mtim.tv_nsec;
    Note("times " + rel, s.str());
  }

  void List(const std::string& rel) {
    std::string out;
    for (const auto& n : ListDir(P(rel))) out += n + " ";
    Note("ls " + rel, out);
  }

  std::string Text() const {
    std::string out;
    for (const auto& l : lines_) out += l + "\n";
    return out;
  }

 private:
  static std::string Printable(const std::string& s) {
    std::string out;
    for (unsigned char c : s) {
      if (c >= 0x20 && c < 0x7f) {
        out.push_back(static_cast<char>(c));
      } else {
        char buf[8];
        snprintf(buf, sizeof buf, "\\x%02x", c);
        out += buf;
      }
    }
    return out;
  }

  std::string dir_;
  std::vector<std::string> lines_;
};

// Writes data at the current offset of fd (for the transcript: bytes or errno).
long Write(int fd, const std::string& data) { return write(fd, data.data(), data.size()); }

// ---- scenarios ---------------------------------------------------------------

void CreateWriteRead(Transcript& t) {
  t.Err("write f", WriteAll(t.P("f"), "hello world"));
  t.Content("f");
  t.Stat("f");
  int fd = open(t.P("f").c_str(), O_RDWR);
  t.Rc("open f rdwr", fd);
  t.Rc("pwrite 100", pwrite(fd, "tail", 4, 100));
  t.Rc("pwrite 6", pwrite(fd, "WORLD", 5, 6));
  char buf[16] = {};
  t.Rc("pread 6", pread(fd, buf, 5, 6));
  t.Note("pread data", std::string(buf, 5));
  t.Rc("close", close(fd));
  t.Stat("f");
  t.Content("f");

  fd = open(t.P("f").c_str(), O_RDONLY);
  t.Rc("write to rdonly fd", Write(fd, "x"));
  close(fd);
  t.Open("open missing", "missing", O_RDONLY);
  t.Open("open missing/child", "missing/child", O_RDONLY);
  t.Open("open f/child", "f/child", O_RDONLY);
  t.Err("write g", WriteAll(t.P("g"), ""));
  t.Stat("g");
  t.List(".");
}

void Append(Transcript& t) {
  t.Err("write f", WriteAll(t.P("f"), "abc"));
  int fd = open(t.P("f").c_str(), O_WRONLY | O_APPEND);
  t.Rc("open append", fd);
  t.Rc("write def", Write(fd, "def"));
  t.Rc("lseek 0", lseek(fd, 0, SEEK_SET));
  t.Rc("write ghi", Write(fd, "ghi"));  // O_APPEND ignores the offset
  t.Rc("close", close(fd));
  t.Content("f");
  fd = open(t.P("new").c_str(), O_WRONLY | O_APPEND | O_CREAT, 0640);
  t.Rc("open append create", fd);
  t.Rc("write 1", Write(fd, "one "));
  t.Rc("write 2", Write(fd, "two"));
  t.Rc("close", close(fd));
  t.Content("new");
  t.Stat("new");
}

void Truncate(Transcript& t) {
  t.Err("write f", WriteAll(t.P("f"), std::string(1000, 'x')));
  t.Rc("truncate 10", truncate(t.P("f").c_str(), 10));
  t.Content("f");
  int fd = open(t.P("f").c_str(), O_RDWR);
  t.Rc("ftruncate 16", ftruncate(fd, 16));
  t.Rc("close", close(fd));
  t.Content("f");
  t.Stat("f");
  fd = open(t.P("f").c_str(), O_WRONLY | O_TRUNC);
  t.Rc("open trunc", fd);
  t.Rc("close", close(fd));
  t.Stat("f");
  t.Rc("truncate missing", truncate(t.P("missing").c_str(), 0));
  t.Rc("mkdir d", mkdir(t.P("d").c_str(), 0755));
  t.Rc("truncate dir", truncate(t.P("d").c_str(), 0));
}

void Exclusive(Transcript& t) {
  int fd = open(t.P("f").c_str(), O_CREAT | O_EXCL | O_WRONLY, 0600);
  t.Rc("excl new", fd);
  t.Rc("write", Write(fd, "first"));
  t.Rc("close", close(fd));
  t.Open("excl existing", "f", O_CREAT | O_EXCL | O_WRONLY, 0600);
  t.Content("f");
  t.Stat("f");
  t.Rc("mkdir d", mkdir(t.P("d").c_str(), 0755));
  t.Open("excl on dir", "d", O_CREAT | O_EXCL | O_WRONLY, 0600);
  t.Rc("symlink", symlink("f", t.P("s").c_str()));
  t.Open("excl on symlink", "s", O_CREAT | O_EXCL | O_WRONLY, 0600);
  t.Open("creat in missing dir", "nodir/f", O_CREAT | O_WRONLY, 0600);
}

void Rename(Transcript& t) {
  t.Err("write f", WriteAll(t.P("f"), "eff"));
  t.Err("write g", WriteAll(t.P("g"), "gee"));
  t.Rc("rename f h", rename(t.P("f").c_str(), t.P("h").c_str()));
  t.Stat("f");
  t.Content("h");
  t.Rc("rename h g (replace)", rename(t.P("h").c_str(), t.P("g").c_str()));
  t.Content("g");
  t.Stat("h");
  t.Err("write a", WriteAll(t.P("a"), "ay"));
  t.Rc("noreplace",
       renameat2(AT_FDCWD, t.P("a").c_str(), AT_FDCWD, t.P("g").c_str(), RENAME_NOREPLACE));
  t.Rc("exchange",
       renameat2(AT_FDCWD, t.P("a").c_str(), AT_FDCWD, t.P("g").c_str(), RENAME_EXCHANGE));
  t.Content("a");
  t.Content("g");
  t.Rc("rename missing", rename(t.P("missing").c_str(), t.P("x").c_str()));
  t.Rc("mkdir d", mkdir(t.P("d").c_str(), 0755));
  t.Err("write d/in", WriteAll(t.P("d/in"), "inside"));
  t.Rc("rename file over dir", rename(t.P("a").c_str(), t.P("d").c_str()));
  t.Rc("rename dir over file", rename(t.P("d").c_str(), t.P("a").c_str()));
  t.Rc("rename d e", rename(t.P("d").c_str(), t.P("e").c_str()));
  t.Content("e/in");
  t.Stat("d");
  t.Rc("rename into subdir", rename(t.P("g").c_str(), t.P("e/g2").c_str()));
  t.Content("e/g2");
  t.List(".");
  t.List("e");
}

void Link(Transcript& t) {
  t.Err("write f", WriteAll(t.P("f"), "linked"));
  t.Rc("link f h", link(t.P("f").c_str(), t.P("h").c_str()));
  t.Stat("f");
  t.Stat("h");
  int fd = open(t.P("h").c_str(), O_WRONLY | O_APPEND);
  t.Rc("append via h", Write(fd, " twice"));
  close(fd);
  t.Content("f");
  t.Rc("link to existing", link(t.P("f").c_str(), t.P("h").c_str()));
  t.Rc("link missing", link(t.P("missing").c_str(), t.P("m2").c_str()));
  t.Rc("unlink f", unlink(t.P("f").c_str()));
  t.Stat("h");
  t.Content("h");
}

void Symlink(Transcript& t) {
  t.Err("write f", WriteAll(t.P("f"), "target"));
  t.Rc("symlink s -> f", symlink("f", t.P("s").c_str()));
  char buf[64] = {};
  long n = readlink(t.P("s").c_str(), buf, sizeof buf);
  t.Rc("readlink s", n);
  t.Note("readlink s", n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "");
  t.Stat("s");
  t.Stat("s", true);
  t.Content("s");
  t.Rc("symlink dangling", symlink("nowhere", t.P("dangling").c_str()));
  t.Stat("dangling");
  t.Stat("dangling", true);
  t.Rc("symlink existing", symlink("f", t.P("s").c_str()));
  t.Rc("readlink on file", readlink(t.P("f").c_str(), buf, sizeof buf));
  t.Rc("mkdir d", mkdir(t.P("d").c_str(), 0755));
  t.Rc("symlink d/up -> ../f", symlink("../f", t.P("d/up").c_str()));
  t.Content("d/up");
  t.Rc("unlink s", unlink(t.P("s").c_str()));
  t.Stat("f");
}

void Dirs(Transcript& t) {
  t.Rc("mkdir d", mkdir(t.P("d").c_str(), 0750));
  t.Stat("d");
  t.Rc("mkdir d again", mkdir(t.P("d").c_str(), 0755));
  t.Err("write d/x", WriteAll(t.P("d/x"), "x"));
  t.Rc("mkdir d/sub", mkdir(t.P("d/sub").c_str(), 0755));
  t.Stat("d");
  t.List("d");
  t.Rc("rmdir non-empty", rmdir(t.P("d").c_str()));
  t.Rc("unlink dir", unlink(t.P("d").c_str()));
  t.Rc("rmdir file", rmdir(t.P("d/x").c_str()));
  t.Rc("mkdir in missing", mkdir(t.P("nope/sub").c_str(), 0755));
  t.Rc("mkdir under file", mkdir(t.P("d/x/sub").c_str(), 0755));
  t.Rc("rmdir d/sub", rmdir(t.P("d/sub").c_str()));
  t.Rc("unlink d/x", unlink(t.P("d/x").c_str()));
  t.Rc("rmdir d", rmdir(t.P("d").c_str()));
  t.Stat("d");
  t.Rc("rmdir missing", rmdir(t.P("d").c_str()));
  t.List(".");
}

void Unlink(Transcript& t) {
  t.Err("write f", WriteAll(t.P("f"), "still readable"));
  int fd = open(t.P("f").c_str(), O_RDONLY);
  t.Rc("open f", fd);
  t.Rc("unlink f", unlink(t.P("f").c_str()));
  t.Stat("f");
  t.Rc("unlink again", unlink(t.P("f").c_str()));
  char buf[32] = {};
  long n = read(fd, buf, sizeof buf);
  t.Rc("read after unlink", n);
  t.Note("data", n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "");
  struct stat st {};
  t.Rc("fstat", fstat(fd, &st));
  t.Note("nlink", std::to_string(st.st_nlink));
  close(fd);
  t.Err("write f again", WriteAll(t.P("f"), "new"));
  t.Content("f");
  t.List(".");
}

void Chmod(Transcript& t) {
  t.Err("write f", WriteAll(t.P("f"), "mode"));
  t.Rc("chmod 600", chmod(t.P("f").c_str(), 0600));
  t.Stat("f");
  t.Rc("chmod 4755", chmod(t.P("f").c_str(), 04755));
  t.Stat("f");
  int fd = open(t.P("f").c_str(), O_RDONLY);
  t.Rc("fchmod 640", fchmod(fd, 0640));
  close(fd);
  t.Stat("f");
  t.Rc("mkdir d", mkdir(t.P("d").c_str(), 0755));
  t.Rc("chmod dir 700", chmod(t.P("d").c_str(), 0700));
  t.Stat("d");
  t.Rc("chmod missing", chmod(t.P("missing").c_str(), 0600));
}

void Utimens(Transcript& t) {
  t.Err("write f", WriteAll(t.P("f"), "times"));
  struct timespec ts[2] = {{1000000000, 123456789}, {1200000000, 987654321}};
  t.Rc("utimensat", utimensat(AT_FDCWD, t.P("f").c_str(), ts, 0));
  t.Times("f");
  struct timespec omit_atime[2] = {{0, UTIME_OMIT}, {1300000000, 5}};
  t.Rc("utimensat omit atime", utimensat(AT_FDCWD, t.P("f").c_str(), omit_atime, 0));
  t.Times("f");
  int fd = open(t.P("f").c_str(), O_RDWR);
  struct timespec fts[2] = {{1400000000, 0}, {1400000001, 0}};
  t.Rc("futimens", futimens(fd, fts));
  close(fd);
  t.Times("f");
  t.Rc("symlink", symlink("f", t.P("s").c_str()));
  struct timespec lts[2] = {{1500000000, 0}, {1500000002, 0}};
  t.Rc("lutimes", utimensat(AT_FDCWD, t.P("s").c_str(), lts, AT_SYMLINK_NOFOLLOW));
  t.Times("s");
  t.Times("f");
  t.Rc("mkdir d", mkdir(t.P("d").c_str(), 0755));
  t.Rc("utimensat dir", utimensat(AT_FDCWD, t.P("d").c_str(), ts, 0));
  t.Times("d");
  t.Rc("utimensat missing", utimensat(AT_FDCWD, t.P("missing").c_str(), ts, 0));
}

void Xattr(Transcript& t) {
  t.Err("write f", WriteAll(t.P("f"), "attrs"));
  const std::string f = t.P("f");
  t.Rc("set user.k", setxattr(f.c_str(), "user.k", "value", 5, 0));
  char buf[64] = {};
  long n = getxattr(f.c_str(), "user.k", buf, sizeof buf);
  t.Rc("get user.k", n);
  t.Note("user.k", n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "");
  t.Rc("size user.k", getxattr(f.c_str(), "user.k", nullptr, 0));
  t.Rc("get small buffer", getxattr(f.c_str(), "user.k", buf, 2));
  t.Rc("create existing", setxattr(f.c_str(), "user.k", "v2", 2, XATTR_CREATE));
  t.Rc("replace missing", setxattr(f.c_str(), "user.none", "v", 1, XATTR_REPLACE));
  t.Rc("replace user.k", setxattr(f.c_str(), "user.k", "longer value", 12, XATTR_REPLACE));
  t.Rc("set user.other", setxattr(f.c_str(), "user.other", "", 0, 0));
  char list[256] = {};
  n = listxattr(f.c_str(), list, sizeof list);
  std::vector<std::string> names;
  for (long i = 0; i < n;) {
    std::string name(list + i);
    if (name.starts_with("user.")) names.push_back(name);
    i += static_cast<long>(name.size()) + 1;
  }
  std::sort(names.begin(), names.end());
  t.Note("list", ::testing::PrintToString(names));
  n = getxattr(f.c_str(), "user.k", buf, sizeof buf);
  t.Note("user.k", n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : ErrnoName(errno));
  t.Rc("remove user.k", removexattr(f.c_str(), "user.k"));
  t.Rc("get removed", getxattr(f.c_str(), "user.k", buf, sizeof buf));
  t.Rc("remove again", removexattr(f.c_str(), "user.k"));
  t.Rc("mkdir d", mkdir(t.P("d").c_str(), 0755));
  t.Rc("set on dir", setxattr(t.P("d").c_str(), "user.d", "dir", 3, 0));
  n = getxattr(t.P("d").c_str(), "user.d", buf, sizeof buf);
  t.Note("user.d", n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : ErrnoName(errno));
  t.Rc("get on missing", getxattr(t.P("missing").c_str(), "user.k", buf, sizeof buf));
}

// A listing of a tree: kind, mode, size, contents or link target.
std::string Tree(const std::string& root) {
  std::vector<std::string> lines;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(root, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    std::string rel = std::filesystem::relative(it->path(), root).string();
    if (rel == ".originfs" || rel.starts_with(".originfs/")) {
      if (it->is_directory()) it.disable_recursion_pending();
      continue;
    }
    struct stat st {};
    lstat(it->path().c_str(), &st);
    std::ostringstream s;
    s << rel << " mode=" << std::oct << st.st_mode << std::dec;
    if (S_ISREG(st.st_mode)) s << " data=" << ReadAll(it->path()).data;
    if (S_ISLNK(st.st_mode)) s << " -> " << std::filesystem::read_symlink(it->path()).string();
    lines.push_back(s.str());
  }
  std::sort(lines.begin(), lines.end());
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

struct Scenario {
  const char* name;
  void (*run)(Transcript&);
};

class LocalOpsTest : public MountTest, public ::testing::WithParamInterface<Scenario> {};
class LocalWritesTest : public MountTest {};

TEST_P(LocalOpsTest, MatchesPlainDirectory) {
  ASSERT_NO_FATAL_FAILURE(Mount());
  Transcript on_mount(mnt_), on_plain(plain_);
  GetParam().run(on_plain);
  GetParam().run(on_mount);
  EXPECT_EQ(on_mount.Text(), on_plain.Text()) << "left: through originfs, right: plain directory";
  if (getenv("ORIGINFS_E2E_VERBOSE")) std::cerr << on_mount.Text();
  // Everything done through the mount is in the bucket.
  EXPECT_EQ(Tree(bucket_), Tree(plain_)) << "left: bucket, right: plain directory";
  // And it stays so after a remount (nothing was kept only in memory).
  ASSERT_NO_FATAL_FAILURE(Remount());
  EXPECT_EQ(Tree(mnt_), Tree(plain_)) << "left: remounted mount, right: plain directory";
}

const Scenario kScenarios[] = {
    {"CreateWriteRead", CreateWriteRead},
    {"Append", Append},
    {"Truncate", Truncate},
    {"Exclusive", Exclusive},
    {"Rename", Rename},
    {"Link", Link},
    {"Symlink", Symlink},
    {"Dirs", Dirs},
    {"Unlink", Unlink},
    {"Chmod", Chmod},
    {"Utimens", Utimens},
    {"Xattr", Xattr},
};

INSTANTIATE_TEST_SUITE_P(Ops, LocalOpsTest, ::testing::ValuesIn(kScenarios),
                         [](const ::testing::TestParamInfo<Scenario>& info) {
                           return info.param.name;
                         });

// Writes into a directory that exists only at the origin land in the bucket.
TEST_F(LocalWritesTest, CreateInsideOriginDirectory) {
  origin_.SetNginxDirectories(true);
  origin_.SetFile("/remote/dir/existing.txt", "from origin");
  ASSERT_NO_FATAL_FAILURE(Mount());
  int err = WriteAll(M("remote/dir/mine.txt"), "mine");
  ASSERT_EQ(err, 0) << ErrnoName(err);
  EXPECT_EQ(ReadAll(M("remote/dir/mine.txt")).data, "mine");
  EXPECT_EQ(ReadAll(B("remote/dir/mine.txt")).data, "mine");
  EXPECT_EQ(ReadAll(M("remote/dir/existing.txt")).data, "from origin");
}

// Modifying an object that was read through: the change is local and stays.
TEST_F(LocalWritesTest, OverwriteMirroredFile) {
  origin_.SetFile("/m.txt", "origin text");
  ASSERT_NO_FATAL_FAILURE(Mount());
  ASSERT_EQ(ReadAll(M("m.txt")).data, "origin text");
  int fd = open(M("m.txt").c_str(), O_WRONLY | O_APPEND);
  ASSERT_GE(fd, 0) << ErrnoName(errno);
  ASSERT_EQ(Write(fd, " + local"), 8);
  close(fd);
  EXPECT_EQ(ReadAll(M("m.txt")).data, "origin text + local");
  EXPECT_EQ(ReadAll(B("m.txt")).data, "origin text + local");
  EXPECT_EQ(origin_.GetCount("/m.txt"), 1);
}

// Writing to an origin-only file without reading it first.
TEST_F(LocalWritesTest, AppendToNotYetFetchedFile) {
  origin_.SetFile("/lazy.txt", "origin");
  ASSERT_NO_FATAL_FAILURE(Mount());
  int fd = open(M("lazy.txt").c_str(), O_WRONLY | O_APPEND);
  ASSERT_GE(fd, 0) << ErrnoName(errno);
  ASSERT_EQ(Write(fd, "+1"), 2);
  close(fd);
  EXPECT_EQ(ReadAll(M("lazy.txt")).data, "origin+1");
  EXPECT_EQ(ReadAll(B("lazy.txt")).data, "origin+1");
  EXPECT_EQ(truncate(M("lazy.txt").c_str(), 3), 0) << ErrnoName(errno);
  EXPECT_EQ(ReadAll(B("lazy.txt")).data, "ori");
}

TEST_F(LocalWritesTest, RenameNotYetFetchedFile) {
  origin_.SetFile("/move-me.txt", "moved bytes");
  ASSERT_NO_FATAL_FAILURE(Mount());
  ASSERT_EQ(rename(M("move-me.txt").c_str(), M("moved.txt").c_str()), 0) << ErrnoName(errno);
  EXPECT_EQ(ReadAll(M("moved.txt")).data, "moved bytes");
  EXPECT_EQ(ReadAll(B("moved.txt")).data, "moved bytes");
  EXPECT_EQ(StatErr(M("move-me.txt")), ENOENT) << "the old name stays away (a whiteout)";
  EXPECT_EQ(origin_.GetCount("/move-me.txt"), 1);
}

}  // namespace
}  // namespace originfs::e2e
