#include "core/store/index.h"

#include <ctime>
#include <memory>
#include <optional>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/support/temp_dir.h"

namespace originfs {
namespace {

using ::testing::Contains;
using ::testing::IsEmpty;
using ::testing::Optional;
using ::testing::StartsWith;

ObjectRecord SampleRecord(std::string url = "http://origin.example.com/a/b.txt") {
  ObjectRecord r;
  r.url = std::move(url);
  r.etag = "\"5f3c-1a2b\"";
  r.last_modified = "Wed, 21 Oct 2015 07:28:00 GMT";
  r.size = 123456789012ull;
  r.fetched_at = 1700000000;
  r.rule = 3;
  r.landed_ino = 987654321;
  r.landed_mtime_ns = 1445412480'000'000'000;
  r.landed_ctime_ns = 1700000000'123456789;
  return r;
}

class LmdbIndexTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fds_before_ = testing::CountOpenFds();
    Reopen();
  }

  void TearDown() override {
    index_.reset();
    EXPECT_EQ(testing::CountOpenFds(), fds_before_) << "descriptor leaked";
  }

  void Reopen() {
    index_.reset();
    auto idx = OpenLmdbIndex(dir(), IndexOptions{.map_size = 64ull << 20});
    ASSERT_TRUE(idx.has_value()) << idx.error().message;
    index_ = std::move(*idx);
  }

  std::optional<ObjectRecord> MustGet(std::string_view key) {
    auto r = index_->Get(key);
    EXPECT_TRUE(r.has_value()) << r.error().message;
    return r ? *r : std::nullopt;
  }

  bool MustIsNotFound(std::string_view key, int64_t now) {
    auto r = index_->IsNotFound(key, now);
    EXPECT_TRUE(r.has_value()) << r.error().message;
    return r && *r;
  }

  uint64_t MustCount() {
    auto r = index_->CountObjects();
    EXPECT_TRUE(r.has_value()) << r.error().message;
    return r ? *r : ~0ull;
  }

  std::string dir() const { return tmp_.Join("index"); }

  testing::TempDir tmp_;
  std::unique_ptr<Index> index_;
  int fds_before_ = 0;
};

TEST_F(LmdbIndexTest, PutGetRoundTripsAllFields) {
  ObjectRecord rec = SampleRecord();
  ASSERT_TRUE(index_->Put("a/b.txt", rec).has_value());
  EXPECT_THAT(MustGet("a/b.txt"), Optional(rec));
}

TEST_F(LmdbIndexTest, HasObjectBelowSeesOnlyKeysInsideTheDirectory) {
  ASSERT_TRUE(index_->Put("d/sub/f.txt", SampleRecord()).has_value());
  ASSERT_TRUE(index_->Put("d.txt", SampleRecord()).has_value());
  ASSERT_TRUE(index_->Put("dd/x", SampleRecord()).has_value());
  EXPECT_EQ(index_->HasObjectBelow("d"), true);
  EXPECT_EQ(index_->HasObjectBelow("d/sub"), true);
  EXPECT_EQ(index_->HasObjectBelow("d/su"), false);
  EXPECT_EQ(index_->HasObjectBelow("c"), false);
  EXPECT_EQ(index_->HasObjectBelow("d.txt"), false);
  ASSERT_TRUE(index_->Erase("d/sub/f.txt").has_value());
  EXPECT_EQ(index_->HasObjectBelow("d"), false);
}

TEST_F(LmdbIndexTest, GetMissingIsNullopt) {
  EXPECT_EQ(MustGet("nope"), std::nullopt);
  ASSERT_TRUE(index_->Put("a/b.txt", SampleRecord()).has_value());
  EXPECT_EQ(MustGet("a/b.tx"), std::nullopt);
  EXPECT_EQ(MustGet("a/b.txt2"), std::nullopt);
}

TEST_F(LmdbIndexTest, PutOverwrites) {
  ASSERT_TRUE(index_->Put("k", SampleRecord("http://one")).has_value());
  ObjectRecord second = SampleRecord("http://two");
  second.etag = "";
  second.size = 0;
  second.rule = 0;
  ASSERT_TRUE(index_->Put("k", second).has_value());
  EXPECT_THAT(MustGet("k"), Optional(second));
  EXPECT_EQ(MustCount(), 1u);
}

TEST_F(LmdbIndexTest, EraseRemovesOnlyThatKey) {
  ASSERT_TRUE(index_->Put("x", SampleRecord("http://x")).has_value());
  ASSERT_TRUE(index_->Put("y", SampleRecord("http://y")).has_value());
  ASSERT_TRUE(index_->Erase("x").has_value());
  EXPECT_EQ(MustGet("x"), std::nullopt);
  EXPECT_THAT(MustGet("y"), Optional(SampleRecord("http://y")));
  // Erasing what is not there is not an error.
  EXPECT_TRUE(index_->Erase("x").has_value());
  EXPECT_TRUE(index_->Erase("never").has_value());
  EXPECT_EQ(MustCount(), 1u);
}

TEST_F(LmdbIndexTest, NotFoundExpires) {
  ASSERT_TRUE(index_->PutNotFound("gone.txt", 1000).has_value());
  EXPECT_TRUE(MustIsNotFound("gone.txt", 500));
  EXPECT_TRUE(MustIsNotFound("gone.txt", 999));
  EXPECT_FALSE(MustIsNotFound("gone.txt", 1000));
  EXPECT_FALSE(MustIsNotFound("gone.txt", 5000));
  EXPECT_FALSE(MustIsNotFound("other.txt", 500));
}

TEST_F(LmdbIndexTest, NotFoundIsSeparateFromObjects) {
  ASSERT_TRUE(index_->PutNotFound("k", 1000).has_value());
  EXPECT_EQ(MustGet("k"), std::nullopt);
  EXPECT_EQ(MustCount(), 0u);
  ASSERT_TRUE(index_->Put("k", SampleRecord()).has_value());
  EXPECT_TRUE(MustIsNotFound("k", 1));
  ASSERT_TRUE(index_->Erase("k").has_value());
  EXPECT_TRUE(MustIsNotFound("k", 1));
}

TEST_F(LmdbIndexTest, NotFoundRenewedByLaterPut) {
  ASSERT_TRUE(index_->PutNotFound("k", 100).has_value());
  ASSERT_TRUE(index_->PutNotFound("k", 300).has_value());
  EXPECT_TRUE(MustIsNotFound("k", 200));
}

TEST_F(LmdbIndexTest, EraseNotFound) {
  ASSERT_TRUE(index_->PutNotFound("k", 1000).has_value());
  ASSERT_TRUE(index_->EraseNotFound("k").has_value());
  EXPECT_FALSE(MustIsNotFound("k", 1));
  EXPECT_TRUE(index_->EraseNotFound("k").has_value());
}

TEST_F(LmdbIndexTest, LongKeysRoundTrip) {
  for (std::size_t len : {479u, 480u, 481u, 511u, 512u, 600u, 4000u}) {
    std::string key = "dir/" + std::string(len - 4, 'k');
    ASSERT_EQ(key.size(), len);
    ObjectRecord rec = SampleRecord("http://o/" + std::to_string(len));
    ASSERT_TRUE(index_->Put(key, rec).has_value()) << len;
    EXPECT_THAT(MustGet(key), Optional(rec)) << len;
    ASSERT_TRUE(index_->PutNotFound(key, 1000).has_value()) << len;
    EXPECT_TRUE(MustIsNotFound(key, 10)) << len;
  }
  EXPECT_EQ(MustCount(), 7u);
}

TEST_F(LmdbIndexTest, LongKeysSharingAPrefixDoNotCollide) {
  std::string common(500, 'p');
  std::string a = common + "/first.bin";
  std::string b = common + "/second.bin";
  std::string c = common + "/first.bin/x";  // a is a prefix of c
  ASSERT_TRUE(index_->Put(a, SampleRecord("http://a")).has_value());
  ASSERT_TRUE(index_->Put(b, SampleRecord("http://b")).has_value());
  EXPECT_EQ(MustGet(c), std::nullopt);
  ASSERT_TRUE(index_->Put(c, SampleRecord("http://c")).has_value());
  EXPECT_THAT(MustGet(a), Optional(SampleRecord("http://a")));
  EXPECT_THAT(MustGet(b), Optional(SampleRecord("http://b")));
  EXPECT_THAT(MustGet(c), Optional(SampleRecord("http://c")));
  EXPECT_EQ(MustCount(), 3u);

  ASSERT_TRUE(index_->Erase(a).has_value());
  EXPECT_EQ(MustGet(a), std::nullopt);
  EXPECT_THAT(MustGet(b), Optional(SampleRecord("http://b")));

  ASSERT_TRUE(index_->PutNotFound(a, 1000).has_value());
  EXPECT_TRUE(MustIsNotFound(a, 1));
  EXPECT_FALSE(MustIsNotFound(b, 1));
}

TEST_F(LmdbIndexTest, KeysWithArbitraryBytes) {
  std::string key("a\0b/\xff\xfe/caf\xc3\xa9 #?%", 15);
  ASSERT_TRUE(index_->Put(key, SampleRecord()).has_value());
  EXPECT_THAT(MustGet(key), Optional(SampleRecord()));
  EXPECT_EQ(MustGet(std::string_view("a")), std::nullopt);
}

TEST_F(LmdbIndexTest, PersistsAcrossReopen) {
  std::string long_key(700, 'L');
  ASSERT_TRUE(index_->Put("a/b.txt", SampleRecord()).has_value());
  ASSERT_TRUE(index_->Put(long_key, SampleRecord("http://long")).has_value());
  ASSERT_TRUE(index_->PutNotFound("missing", 4'000'000'000).has_value());
  Reopen();
  EXPECT_THAT(MustGet("a/b.txt"), Optional(SampleRecord()));
  EXPECT_THAT(MustGet(long_key), Optional(SampleRecord("http://long")));
  EXPECT_TRUE(MustIsNotFound("missing", 1'700'000'000));
  EXPECT_EQ(MustCount(), 2u);
}

TEST_F(LmdbIndexTest, CountObjects) {
  EXPECT_EQ(MustCount(), 0u);
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(index_->Put("k" + std::to_string(i), SampleRecord()).has_value());
  }
  EXPECT_EQ(MustCount(), 50u);
  ASSERT_TRUE(index_->Erase("k7").has_value());
  EXPECT_EQ(MustCount(), 49u);
}

TEST_F(LmdbIndexTest, CorruptEnvironmentIsMovedAsideAndStartedEmpty) {
  ASSERT_TRUE(index_->Put("a", SampleRecord()).has_value());
  index_.reset();
  std::string garbage(64 * 1024, '\xab');
  testing::WriteFile(dir() + "/data.mdb", garbage);

  Reopen();
  ASSERT_NE(index_, nullptr);
  EXPECT_EQ(MustGet("a"), std::nullopt);
  EXPECT_EQ(MustCount(), 0u);
  ASSERT_TRUE(index_->Put("b", SampleRecord()).has_value());
  EXPECT_THAT(MustGet("b"), Optional(SampleRecord()));

  // The broken environment is kept next to the index, untouched.
  auto names = testing::ListDir(tmp_.path());
  ASSERT_EQ(names.size(), 2u) << ::testing::PrintToString(names);
  EXPECT_EQ(names[0], "index");
  EXPECT_THAT(names[1], StartsWith("index.broken-"));
  EXPECT_EQ(testing::ReadFile(tmp_.Join(names[1]) + "/data.mdb"), garbage);
}

TEST_F(LmdbIndexTest, UnwritableDirectoryFails) {
  index_.reset();
  testing::WriteFile(tmp_.Join("file"), "x");
  auto idx = OpenLmdbIndex(tmp_.Join("file/index"), IndexOptions{});
  EXPECT_FALSE(idx.has_value());
}

TEST(LmdbIndexGrowthTest, AFullMapGrowsInsteadOfFailing) {
  testing::TempDir tmp;
  std::string dir = tmp.Join("index");
  {
    // 1 MiB of map for about 8 MB of records: it must grow (doubling) as needed.
    auto idx = OpenLmdbIndex(dir, IndexOptions{.map_size = 1ull << 20, .durable = false});
    ASSERT_TRUE(idx.has_value()) << idx.error().message;
    for (int i = 0; i < 20000; ++i) {
      auto r = (*idx)->Put("dir/" + std::to_string(i), SampleRecord(std::string(300, 'u')));
      ASSERT_TRUE(r.has_value()) << i << ": " << r.error().message;
    }
    for (int i = 0; i < 20000; i += 997) {
      auto g = (*idx)->Get("dir/" + std::to_string(i));
      ASSERT_TRUE(g.has_value() && g->has_value()) << i;
    }
    auto d = (*idx)->Erase("dir/5");
    EXPECT_TRUE(d.has_value());
  }
  // Reopened with the small size asked again: LMDB keeps the grown map.
  auto idx = OpenLmdbIndex(dir, IndexOptions{.map_size = 1ull << 20, .durable = false});
  ASSERT_TRUE(idx.has_value()) << idx.error().message;
  auto n = (*idx)->CountObjects();
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(*n, 19999u);
  EXPECT_TRUE((*idx)->Put("dir/again", SampleRecord()).has_value());
}

TEST(LmdbIndexBoundsTest, NegativeCacheStaysBoundedAndDropsExpiredEntriesFirst) {
  testing::TempDir tmp;
  auto idx =
      OpenLmdbIndex(tmp.Join("index"),
                    IndexOptions{.map_size = 64ull << 20, .max_not_found = 2000, .durable = false});
  ASSERT_TRUE(idx.has_value()) << idx.error().message;
  Index& index = **idx;
  const int64_t now = std::time(nullptr);
  for (int i = 0; i < 5000; ++i)  // expired already (as after their TTL)
    ASSERT_TRUE(index.PutNotFound("gone/" + std::to_string(i), now - 1).has_value());
  for (int i = 0; i < 1500; ++i)
    ASSERT_TRUE(index.PutNotFound("live/" + std::to_string(i), now + 3600).has_value());
  for (int i = 0; i < 1500; ++i) {
    auto r = index.IsNotFound("live/" + std::to_string(i), now);
    ASSERT_TRUE(r.has_value());
    EXPECT_TRUE(*r) << "live entry " << i << " dropped while expired ones were left";
  }
  // A crawler asking for far more missing names than the bound within their
  // lifetime: the cache stays within the bound (plus one sweep interval).
  for (int i = 0; i < 20000; ++i)
    ASSERT_TRUE(index.PutNotFound("crawl/" + std::to_string(i), now + 3600).has_value());
  int kept = 0;
  for (int i = 0; i < 20000; ++i) kept += *index.IsNotFound("crawl/" + std::to_string(i), now);
  for (int i = 0; i < 1500; ++i) kept += *index.IsNotFound("live/" + std::to_string(i), now);
  EXPECT_GT(kept, 0);
  EXPECT_LE(kept, 2000 + 1024);
}

TEST(RecordCodingTest, RoundTrip) {
  ObjectRecord rec = SampleRecord();
  EXPECT_THAT(DecodeRecord(EncodeRecord(rec)), Optional(rec));

  ObjectRecord odd;
  odd.url = std::string("http://h/\0bin", 13);
  odd.fetched_at = -5;
  odd.size = ~0ull;
  odd.rule = 0xffffffffu;
  EXPECT_THAT(DecodeRecord(EncodeRecord(odd)), Optional(odd));

  EXPECT_THAT(DecodeRecord(EncodeRecord(ObjectRecord{})), Optional(ObjectRecord{}));
}

// A record as the first release wrote it (version 1, before the landed
// file's identity was kept), byte for byte.
std::string VersionOneBytes() {
  std::string out(1, '\x01');
  auto u64 = [&](uint64_t v) {
    for (int i = 0; i < 8; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
  };
  auto str = [&](std::string_view s) {
    u64(s.size());
    out += s;
  };
  str("http://origin.example.com/old.txt");
  str("\"v1\"");
  str("Wed, 21 Oct 2015 07:28:00 GMT");
  u64(42);          // size
  u64(1600000000);  // fetched_at
  u64(1);           // rule
  return out;
}

TEST(RecordCodingTest, VersionOneRecordsStillDecode) {
  auto rec = DecodeRecord(VersionOneBytes());
  ASSERT_TRUE(rec.has_value()) << "an index written by the previous release became unreadable";
  EXPECT_EQ(rec->url, "http://origin.example.com/old.txt");
  EXPECT_EQ(rec->etag, "\"v1\"");
  EXPECT_EQ(rec->last_modified, "Wed, 21 Oct 2015 07:28:00 GMT");
  EXPECT_EQ(rec->size, 42u);
  EXPECT_EQ(rec->fetched_at, 1600000000);
  EXPECT_EQ(rec->rule, 1u);
  EXPECT_EQ(rec->landed_ino, 0u) << "unknown, not made up";
  EXPECT_EQ(rec->landed_mtime_ns, 0);
  EXPECT_EQ(rec->landed_ctime_ns, 0);
  std::string bytes = VersionOneBytes();
  for (std::size_t n = 0; n < bytes.size(); ++n)
    EXPECT_EQ(DecodeRecord(std::string_view(bytes).substr(0, n)), std::nullopt) << "length " << n;
}

TEST(RecordCodingTest, RejectsEveryTruncation) {
  std::string bytes = EncodeRecord(SampleRecord());
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_EQ(DecodeRecord(std::string_view(bytes).substr(0, n)), std::nullopt) << "length " << n;
  }
}

TEST(RecordCodingTest, RejectsUnknownVersionAndHugeLength) {
  std::string bytes = EncodeRecord(SampleRecord());
  std::string bad_version = bytes;
  bad_version[0] = 99;
  EXPECT_EQ(DecodeRecord(bad_version), std::nullopt);

  // A string length far beyond the input must not be trusted.
  std::string huge = bytes;
  for (int i = 1; i <= 8; ++i) huge[i] = '\xff';
  EXPECT_EQ(DecodeRecord(huge), std::nullopt);
}

}  // namespace
}  // namespace originfs
