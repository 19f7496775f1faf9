// The filesystem type itself, without FUSE or a kernel: a Vfs over a real
// BucketStore and LMDB index in a temporary directory, with a fake HTTP
// client for the origin (modelled on mountpoint-s3's tests/fs.rs). Each test
// does what a kernel request would and checks what a program would see, and
// which requests the origin got.
#include "core/vfs/vfs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/store/index.h"
#include "tests/support/fake_http_client.h"
#include "tests/support/flight_wait.h"
#include "tests/support/store_fixture.h"
#include "tests/support/temp_dir.h"

namespace originfs {
namespace {

using testing::Canned;
using ::testing::ElementsAre;
using testing::FakeHttpClient;
using ::testing::IsEmpty;

constexpr char kRules[] = R"(
[[rule]]
prefix = "site/"
origin = "http://o/base"
)";

constexpr Caller kRoot{0, 0};

class VfsTest : public testing::StoreTest {
 protected:
  void SetUp() override {
    ASSERT_NO_FATAL_FAILURE(StoreTest::SetUp());
    auto rules = RuleSet::Parse(kRules, "test-rules");
    ASSERT_TRUE(rules.has_value()) << rules.error().message;
    MirrorOptions mo;
    mo.download_threads = 4;
    mirror_ = std::make_unique<Mirror>(std::move(*rules), http_, *store_, *index_, mo);
    vfs_ = std::make_unique<Vfs>(*store_, *mirror_, VfsOptions{});
  }

  void TearDown() override {
    // As the daemon does: downloads end (their callbacks reach the vfs)
    // before the vfs goes (a use after free under ASan otherwise).
    mirror_.reset();
    vfs_.reset();
    StoreTest::TearDown();
  }

  // Lookup as the kernel asks it, waiting (bounded) for the answer.
  Result<Entry> Lookup(uint64_t parent, std::string_view name) {
    auto promise = std::make_shared<std::promise<Result<Entry>>>();
    auto future = promise->get_future();
    vfs_->Lookup(parent, name, [promise](Result<Entry> r) { promise->set_value(std::move(r)); });
    if (future.wait_for(testing::kFlightTimeout) != std::future_status::ready) {
      ADD_FAILURE() << "no answer to the lookup of " << name;
      return Fail(ETIMEDOUT, "test timeout");
    }
    return future.get();
  }

  // Opens ino read-only and reads it whole, following a download still
  // arriving as a reader would.
  std::optional<std::string> ReadAll(uint64_t ino) {
    auto promise = std::make_shared<std::promise<Result<FileRef>>>();
    auto future = promise->get_future();
    vfs_->Open(ino, O_RDONLY, [promise](Result<FileRef> r) { promise->set_value(std::move(r)); });
    if (future.wait_for(testing::kFlightTimeout) != std::future_status::ready) {
      ADD_FAILURE() << "no answer to the open of inode " << ino;
      return std::nullopt;
    }
    auto f = future.get();
    if (!f) {
      ADD_FAILURE() << "open: " << f.error().message;
      return std::nullopt;
    }
    if (f->streaming) (void)testing::AwaitDone(*f->streaming);
    std::string out;
    char buf[4096];
    for (off_t off = 0;;) {
      ssize_t n = pread(f->fd->get(), buf, sizeof buf, off);
      if (n <= 0) break;
      out.append(buf, static_cast<std::size_t>(n));
      off += n;
    }
    return out;
  }

  std::vector<std::string> ReadDirNames(uint64_t ino) {
    auto dir = vfs_->OpenDir(ino);
    EXPECT_TRUE(dir.has_value());
    if (!dir) return {};
    std::vector<std::string> names;
    auto r = vfs_->ReadDir(**dir, 0, false, [&](const DirEntry& e) {
      names.push_back(e.name);
      return true;
    });
    EXPECT_TRUE(r.has_value());
    std::sort(names.begin(), names.end());
    return names;
  }

  void Origin(const std::string& key, std::string body) {
    Canned c;
    c.body = std::move(body);
    c.etag = "\"v1\"";
    http_.Set("http://o/base/site/" + key, std::move(c));
  }

  std::string InBucket(const std::string& key) { return bucket_ + "/site/" + key; }

  FakeHttpClient http_;
  std::unique_ptr<Mirror> mirror_;
  std::unique_ptr<Vfs> vfs_;
};

TEST_F(VfsTest, LocalNameIsAnsweredFromTheBucketWithoutARequest) {
  testing::WriteFile(bucket_ + "/local.txt", "mine");
  auto e = Lookup(kRootIno, "local.txt");
  ASSERT_TRUE(e.has_value()) << e.error().message;
  EXPECT_TRUE(S_ISREG(e->attr.st_mode));
  EXPECT_EQ(e->attr.st_size, 4);
  EXPECT_EQ(ReadAll(e->ino), "mine");
  EXPECT_EQ(http_.TotalCalls(), 0);
  EXPECT_EQ(vfs_->stats().hits.load(), 1u);
}

TEST_F(VfsTest, OriginFileIsShownFromTheHeadAndLandsWhole) {
  auto site = Lookup(kRootIno, "site");  // a rule's prefix: a directory, no request
  ASSERT_TRUE(site.has_value()) << site.error().message;
  EXPECT_TRUE(S_ISDIR(site->attr.st_mode));
  EXPECT_EQ(http_.TotalCalls(), 0);

  Origin("page.html", "<h1>hello</h1>");
  auto e = Lookup(site->ino, "page.html");
  ASSERT_TRUE(e.has_value()) << e.error().message;
  EXPECT_TRUE(S_ISREG(e->attr.st_mode));
  EXPECT_EQ(e->attr.st_size, 14);
  EXPECT_EQ(ReadAll(e->ino), "<h1>hello</h1>");
  EXPECT_EQ(testing::ReadFile(InBucket("page.html")), "<h1>hello</h1>");
  EXPECT_THAT(http_.Log(), ElementsAre("GET http://o/base/site/page.html"));

  // Landed: the same name again is local, with the number it was shown with.
  auto again = Lookup(site->ino, "page.html");
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->attr.st_ino, e->attr.st_ino);
  EXPECT_EQ(http_.TotalCalls(), 1);
  auto attr = vfs_->GetAttr(e->ino);
  ASSERT_TRUE(attr.has_value());
  EXPECT_EQ(attr->st_ino, e->attr.st_ino);
}

TEST_F(VfsTest, OriginDirectoryIsADirectoryUntilSomethingLandsInIt) {
  Canned dir;  // nginx and Apache answer key with a redirect to key/
  dir.status = 301;
  dir.redirects = 1;
  dir.effective_url = "http://o/base/site/docs/";
  http_.Set("http://o/base/site/docs", dir);
  Origin("docs/a.txt", "A");

  auto site = Lookup(kRootIno, "site");
  ASSERT_TRUE(site.has_value());
  auto docs = Lookup(site->ino, "docs");
  ASSERT_TRUE(docs.has_value()) << docs.error().message;
  EXPECT_TRUE(S_ISDIR(docs->attr.st_mode));
  struct stat st;
  EXPECT_NE(stat(InBucket("docs").c_str(), &st), 0) << "made in the bucket before anything landed";

  auto a = Lookup(docs->ino, "a.txt");
  ASSERT_TRUE(a.has_value()) << a.error().message;
  EXPECT_EQ(ReadAll(a->ino), "A");
  EXPECT_EQ(stat(InBucket("docs").c_str(), &st), 0);
  // The directory keeps the number the kernel was first shown.
  auto docs_attr = vfs_->GetAttr(docs->ino);
  ASSERT_TRUE(docs_attr.has_value());
  EXPECT_EQ(docs_attr->st_ino, docs->attr.st_ino);
}

TEST_F(VfsTest, NotFoundIsEnoentAndRemembered) {
  auto site = Lookup(kRootIno, "site");
  ASSERT_TRUE(site.has_value());
  auto e = Lookup(site->ino, "missing.txt");
  ASSERT_FALSE(e.has_value());
  EXPECT_EQ(e.error().code, ENOENT);
  int calls = http_.TotalCalls();
  EXPECT_GE(calls, 1);  // the GET (and the directory probe)
  auto again = Lookup(site->ino, "missing.txt");
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code, ENOENT);
  EXPECT_EQ(http_.TotalCalls(), calls) << "a remembered 404 asked again";
}

TEST_F(VfsTest, NameNoRuleMatchesIsEnoentWithoutARequest) {
  auto e = Lookup(kRootIno, "elsewhere.txt");
  ASSERT_FALSE(e.has_value());
  EXPECT_EQ(e.error().code, ENOENT);
  EXPECT_EQ(http_.TotalCalls(), 0);
}

TEST_F(VfsTest, OriginErrorIsEioNeverEnoent) {
  Canned broken;
  broken.status = 503;
  http_.Set("http://o/base/site/busy.txt", broken);
  auto site = Lookup(kRootIno, "site");
  ASSERT_TRUE(site.has_value());
  auto e = Lookup(site->ino, "busy.txt");
  ASSERT_FALSE(e.has_value());
  EXPECT_EQ(e.error().code, EIO);
  struct stat st;
  EXPECT_NE(stat(InBucket("busy.txt").c_str(), &st), 0);
}

TEST_F(VfsTest, CreateOverANameTheOriginLacksIsLocalAtOnce) {
  auto site = Lookup(kRootIno, "site");
  ASSERT_TRUE(site.has_value());
  ASSERT_FALSE(Lookup(site->ino, "new.txt").has_value());  // remembered 404
  auto created = vfs_->Create(kRoot, site->ino, "new.txt", S_IFREG | 0644, O_RDWR);
  ASSERT_TRUE(created.has_value()) << created.error().message;
  ASSERT_EQ(write(created->second, "x", 1), 1);
  close(created->second);
  int calls = http_.TotalCalls();
  auto e = Lookup(site->ino, "new.txt");
  ASSERT_TRUE(e.has_value()) << e.error().message;
  EXPECT_EQ(e->attr.st_size, 1);
  EXPECT_EQ(http_.TotalCalls(), calls);
  EXPECT_EQ(testing::ReadFile(InBucket("new.txt")), "x");
}

TEST_F(VfsTest, RenameOfAnOriginFileLandsItThenMovesIt) {
  Origin("old.txt", "content");
  auto site = Lookup(kRootIno, "site");
  ASSERT_TRUE(site.has_value());
  auto e = Lookup(site->ino, "old.txt");
  ASSERT_TRUE(e.has_value()) << e.error().message;
  auto r = vfs_->Rename(site->ino, "old.txt", site->ino, "new.txt", 0);
  ASSERT_TRUE(r.has_value()) << r.error().message;
  EXPECT_EQ(testing::ReadFile(InBucket("new.txt")), "content");
  struct stat st;
  ASSERT_EQ(lstat(InBucket("old.txt").c_str(), &st), 0);
  EXPECT_TRUE(BucketStore::IsWhiteout(st)) << "the old name stays away";
  auto moved = Lookup(site->ino, "new.txt");
  ASSERT_TRUE(moved.has_value());
  EXPECT_EQ(ReadAll(moved->ino), "content");
  auto old = Lookup(site->ino, "old.txt");
  ASSERT_FALSE(old.has_value());
  EXPECT_EQ(old.error().code, ENOENT);
  EXPECT_EQ(http_.Calls("http://o/base/site/old.txt"), 1);
}

TEST_F(VfsTest, UnlinkOfAnOriginFileLeavesAWhiteout) {
  Origin("gone.txt", "bytes");
  auto site = Lookup(kRootIno, "site");
  ASSERT_TRUE(site.has_value());
  auto e = Lookup(site->ino, "gone.txt");
  ASSERT_TRUE(e.has_value()) << e.error().message;
  auto u = vfs_->Unlink(site->ino, "gone.txt");
  ASSERT_TRUE(u.has_value()) << u.error().message;
  struct stat st;
  ASSERT_EQ(lstat(InBucket("gone.txt").c_str(), &st), 0);
  EXPECT_TRUE(BucketStore::IsWhiteout(st));
  auto again = Lookup(site->ino, "gone.txt");
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code, ENOENT);
  EXPECT_EQ(http_.Calls("http://o/base/site/gone.txt"), 1) << "known removed: not asked";
  vfs_->Forget(e->ino, 1);
}

TEST_F(VfsTest, RmdirOfAnOriginDirectoryLeavesAWhiteout) {
  Canned dir;
  dir.status = 301;
  dir.redirects = 1;
  dir.effective_url = "http://o/base/site/tree/";
  http_.Set("http://o/base/site/tree", dir);
  auto site = Lookup(kRootIno, "site");
  ASSERT_TRUE(site.has_value());
  auto tree = Lookup(site->ino, "tree");
  ASSERT_TRUE(tree.has_value());
  ASSERT_TRUE(S_ISDIR(tree->attr.st_mode));
  // Its origin part cannot move with it (mv copies instead).
  auto mv = vfs_->Rename(site->ino, "tree", site->ino, "moved", 0);
  ASSERT_FALSE(mv.has_value());
  EXPECT_EQ(mv.error().code, EXDEV);
  // The origin serves no index of it: what it holds there is not known.
  auto unknown = vfs_->RmDir(site->ino, "tree");
  ASSERT_FALSE(unknown.has_value());
  EXPECT_EQ(unknown.error().code, ENOTEMPTY);
  // Empty as its index page lists it: removed, and it stays so.
  Canned index;
  index.body = "<html><title>Index of /base/site/tree/</title><a href=\"../\">../</a></html>";
  index.content_type = "text/html";
  http_.Set("http://o/base/site/tree/", index);
  mirror_->ForgetListing("site/tree");
  auto r = vfs_->RmDir(site->ino, "tree");
  ASSERT_TRUE(r.has_value()) << r.error().message;
  struct stat st;
  ASSERT_EQ(lstat(InBucket("tree").c_str(), &st), 0);
  EXPECT_TRUE(BucketStore::IsWhiteout(st));
  auto again = Lookup(site->ino, "tree");
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().code, ENOENT);
}

TEST_F(VfsTest, ReadDirIsTheBucketPlusNamesShownFromTheOrigin) {
  testing::WriteFile(bucket_ + "/top.txt", "t");
  EXPECT_THAT(ReadDirNames(kRootIno), ElementsAre(".", "..", "top.txt"))
      << "the state directory must stay hidden";
  auto site = Lookup(kRootIno, "site");
  ASSERT_TRUE(site.has_value());
  EXPECT_THAT(ReadDirNames(site->ino), ElementsAre(".", ".."));
  Origin("fetched.txt", "f");
  auto e = Lookup(site->ino, "fetched.txt");
  ASSERT_TRUE(e.has_value());
  ASSERT_EQ(ReadAll(e->ino), "f");
  EXPECT_THAT(ReadDirNames(site->ino), ElementsAre(".", "..", "fetched.txt"));
}

TEST_F(VfsTest, ForgetReleasesTheInode) {
  testing::WriteFile(bucket_ + "/a", "1");
  std::size_t before = vfs_->InodeCount();
  auto e = Lookup(kRootIno, "a");
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(vfs_->InodeCount(), before + 1);
  vfs_->Forget(e->ino, 1);
  EXPECT_EQ(vfs_->InodeCount(), before);
  EXPECT_FALSE(vfs_->GetAttr(e->ino).has_value()) << "a forgotten inode still answers";
}

TEST_F(VfsTest, ControlAttributesNameWhereAFileCameFrom) {
  Origin("x.bin", "12345");
  auto site = Lookup(kRootIno, "site");
  ASSERT_TRUE(site.has_value());
  auto e = Lookup(site->ino, "x.bin");
  ASSERT_TRUE(e.has_value());
  ASSERT_EQ(ReadAll(e->ino), "12345");
  auto origin = vfs_->GetXattr(e->ino, control::Attr(control::kOrigin));
  ASSERT_TRUE(origin.has_value()) << origin.error().message;
  EXPECT_EQ(*origin, "http://o/base/site/x.bin");
  auto fetches = vfs_->GetXattr(kRootIno, control::Attr("fetches"));
  ASSERT_TRUE(fetches.has_value());
  EXPECT_EQ(*fetches, "1");
  auto w = vfs_->SetXattr(e->ino, control::Attr(control::kOrigin), "elsewhere", 0);
  ASSERT_FALSE(w.has_value());
  EXPECT_EQ(w.error().code, EPERM);
}

}  // namespace
}  // namespace originfs
