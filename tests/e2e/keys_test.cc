// Hostile and odd keys: ".." lookalikes, percent signs, control and high
// bytes, names at the length limit and very deep paths. The origin must
// receive exactly the key (percent-encoded on the wire, never normalised
// into a parent reference), every object must land under its own name inside
// the bucket, nothing may be created outside it, and the daemon must survive.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <future>
#include <iostream>
#include <map>
#include <set>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "tests/support/mount_fixture.h"

namespace originfs::e2e {
namespace {

class KeysTest : public MountTest {
 protected:
  // Every file and directory below dir (paths relative to it).
  static std::set<std::string> Tree(const std::string& dir) {
    std::set<std::string> out;
    std::error_code ec;
    for (auto it = std::filesystem::recursive_directory_iterator(dir, ec);
         !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
      out.insert(std::filesystem::relative(it->path(), dir).string());
    }
    return out;
  }
};

bool AllowedOnTheWire(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~' || c == '/' || c == '%';
}

std::string Printable(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

std::vector<std::string> OddNames() {
  std::vector<std::string> names = {
      "...",
      "....",
      "..a",
      "a..",
      ". ",
      ".. ",
      " ..",
      "..%2f..%2fetc%2fpasswd",
      "%2e%2e",
      "%2E%2E",
      "%2e",
      "%2F",
      "a%2Fb",
      "%252e%252e",
      "%00",
      "%",
      "%zz",
      "..\\..\\windows",
      "with space",
      " leading and trailing ",
      "double\"quote",
      "single'quote",
      "#hash?query=1&x=2",
      "plus+sign",
      "semi;colon,comma=equals",
      "star*<lt>|pipe",
      "back`tick`$(dollar)",
      "{braces}[brackets]^caret",
      "tilde~under_score-dash.dot",
      "caf\xc3\xa9",
      "\xe2\x82\xac euro",
      "invalid utf8 \xff\xfe\x80",
      "\xc0\xae\xc0\xae",  // overlong "..": must stay bytes
      "tab\tname",
      "newline\nname",
      "cr\rname",
      "del\x7fname",
  };
  std::string ctl = "ctl";
  for (int c = 1; c <= 0x1f; ++c) ctl += static_cast<char>(c);
  names.push_back(ctl);
  names.push_back(std::string(255, 'n'));  // NAME_MAX
  std::string euros;
  for (int i = 0; i < 85; ++i) euros += "\xe2\x82\xac";  // 255 bytes of UTF-8
  names.push_back(euros);
  return names;
}

TEST_F(KeysTest, OddKeysReachTheOriginExactlyAndLandInsideTheBucket) {
  origin_.SetNginxDirectories(true);
  std::vector<std::string> keys;
  for (const auto& n : OddNames()) keys.push_back("odd/" + n);
  // ".." lookalikes as directories too.
  keys.push_back("%2e%2e/%2e%2e/escape.txt");
  keys.push_back(".../x.txt");
  keys.push_back("..%2f/y.txt");
  // A deep path of ~3000 bytes.
  std::string deep;
  for (int level = 0; deep.size() < 3000; ++level)
    deep += "level" + std::to_string(level) + "-" + std::string(90, 'p') + "/";
  deep += "leaf.txt";
  keys.push_back(deep);
  std::map<std::string, std::string> bodies;
  for (std::size_t i = 0; i < keys.size(); ++i) {
    bodies[keys[i]] = "body of " + keys[i] + " #" + std::to_string(i);
    origin_.SetFile("/" + keys[i], bodies[keys[i]]);
  }
  auto outside_before = Tree(root_);
  ASSERT_NO_FATAL_FAILURE(Mount());

  for (const auto& key : keys) {
    SCOPED_TRACE(Printable(key));
    auto r = ReadAll(M(key));
    ASSERT_EQ(r.err, 0) << r.stage << ": " << ErrnoName(r.err);
    EXPECT_EQ(r.data, bodies[key]);
    EXPECT_EQ(origin_.GetCount("/" + key), 1);
    EXPECT_TRUE(EventuallyExists(B(key))) << "not landed under its own name";
    EXPECT_EQ(ReadAll(B(key)).data, bodies[key]);
  }
  // Every request target is fully percent-encoded and has no dot segment.
  for (const auto& target : origin_.Targets()) {
    SCOPED_TRACE(Printable(target));
    EXPECT_TRUE(std::all_of(target.begin(), target.end(), [](char c) {
      return AllowedOnTheWire(static_cast<unsigned char>(c));
    }));
    std::size_t start = 0;
    while (start <= target.size()) {
      std::size_t slash = target.find('/', start);
      std::string seg =
          target.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
      EXPECT_TRUE(seg != "." && seg != "..") << "dot segment on the wire";
      if (slash == std::string::npos) break;
      start = slash + 1;
    }
  }
  // Nothing the origin was asked for is outside what the keys name.
  for (const auto& line : origin_.Log()) {
    EXPECT_EQ(line.find("/etc/passwd"), std::string::npos) << Printable(line);
    EXPECT_EQ(line.find("/windows"), std::string::npos) << Printable(line);
  }

  // Listing shows the odd names as they are.
  auto listed = ListDir(M("odd"));
  for (const auto& n : OddNames()) {
    EXPECT_TRUE(std::find(listed.begin(), listed.end(), n) != listed.end())
        << Printable(n) << " not listed";
  }
  ASSERT_NO_FATAL_FAILURE(Unmount());
  // The daemon created nothing outside the bucket.
  std::set<std::string> added;
  for (const auto& p : Tree(root_)) {
    if (p.starts_with("bucket/") || p == "bucket") continue;
    if (!outside_before.count(p)) added.insert(p);
  }
  added.erase("originfs.log");
  added.erase("rules.toml");
  EXPECT_TRUE(added.empty()) << "created outside the bucket: " << ::testing::PrintToString(added);
  EXPECT_FALSE(Exists(root_ + "/escape.txt"));
  EXPECT_FALSE(Exists("/tmp/escape.txt"));
}

TEST_F(KeysTest, OverlongNamesAndPathsFailWithoutHarm) {
  origin_.SetNginxDirectories(true);
  const std::string name256(256, 'x');
  origin_.SetFile("/" + name256, "too long a name");
  origin_.SetFile("/ok.txt", "fine");
  ASSERT_NO_FATAL_FAILURE(Mount());

  struct stat st {};
  int err = StatErr(M(name256), &st);
  EXPECT_NE(err, 0) << "a 256-byte name cannot be stored in the bucket";
  EXPECT_NE(err, ENOTCONN) << "daemon died";
  auto r = ReadAll(M(name256));
  EXPECT_NE(r.err, 0);
  EXPECT_NE(r.err, ENOTCONN) << "daemon died";
  EXPECT_EQ(ListDir(bucket_).size(), 1u)
      << ::testing::PrintToString(ListDir(bucket_));  // .originfs

  // A path longer than PATH_MAX never reaches originfs; it stays alive.
  std::string longpath;
  while (longpath.size() < 5000) longpath += std::string(200, 'q') + "/";
  EXPECT_NE(StatErr(M(longpath + "f")), 0);
  EXPECT_EQ(ReadAll(M("ok.txt")).data, "fine");
  EXPECT_TRUE(StagingFiles(bucket_).empty());
}

TEST_F(KeysTest, SymlinkSwappedInDuringADownloadIsNotFollowed) {
  // A directory of the key is replaced by a symlink to somewhere outside the
  // bucket while the object is downloading: landing it must not follow it.
  ASSERT_EQ(mkdir(B("d").c_str(), 0755), 0);
  ASSERT_EQ(mkdir((root_ + "/outside").c_str(), 0755), 0);
  testing::Behavior b;
  b.body = PatternBytes(1024 * 1024, 300);
  b.stall_ms = 1500;
  origin_.Set("/d/x.txt", b);
  ASSERT_NO_FATAL_FAILURE(Mount());

  auto reader = std::async(std::launch::async, [this] { return ReadAll(M("d/x.txt")); });
  EventuallyRequested(origin_, "/d/x.txt");
  ASSERT_EQ(origin_.GetCount("/d/x.txt"), 1);
  std::this_thread::sleep_for(200ms);
  ASSERT_EQ(rename(B("d").c_str(), B("d-moved").c_str()), 0);
  ASSERT_EQ(symlink((root_ + "/outside").c_str(), B("d").c_str()), 0);
  ASSERT_EQ(reader.wait_for(60s), std::future_status::ready);
  auto r = reader.get();  // either outcome, as long as nothing escapes
  std::this_thread::sleep_for(200ms);
  EXPECT_TRUE(ListDir(root_ + "/outside").empty())
      << "the object was written through the symlink: "
      << ::testing::PrintToString(ListDir(root_ + "/outside"));
  EXPECT_TRUE(StagingFiles(bucket_).empty());
  struct stat st {};
  EXPECT_EQ(StatErr(mnt_, &st), 0) << "daemon died";
  ASSERT_NO_FATAL_FAILURE(Unmount());
  std::cerr << "[ symlink swap ] reader: " << ErrnoName(r.err) << " after " << r.data.size()
            << " bytes, " << origin_.GetCount("/d/x.txt") << " GETs\n";
}

}  // namespace
}  // namespace originfs::e2e
