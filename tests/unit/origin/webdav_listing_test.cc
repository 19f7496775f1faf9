// WebDAV multistatus answers: one saved from rclone serve webdav (the same
// directory of awkward names as the index pages), Apache mod_dav's form
// (absolute URLs, lp1 namespace, a default namespace), and hostile variants.
#include "core/origin/webdav_listing.h"

#include <random>

#include <gtest/gtest.h>

#include "tests/unit/origin/saved_pages.h"

namespace originfs {
namespace {

std::string Saved(const std::string& name) { return testing::SavedPage(name); }

std::vector<std::string> Names(const std::vector<ListedEntry>& v) {
  return testing::ListedNames(v);
}

TEST(WebdavListing, RcloneListsExactlyTheDirectorysNamesWithSizesAndTimes) {
  std::string xml = Saved("rclone-webdav.xml");
  ASSERT_FALSE(xml.empty());
  auto r = ParseMultistatus(xml, "http://127.0.0.1:1234/");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(Names(*r), (std::vector<std::string>{"100%.txt", std::string(200, 'L') + ".txt",
                                                 "a b.txt", "hash#.txt", "plain.txt", "q?.txt",
                                                 "sub/", "sub dir/", "\xc3\xbcn\xc3\xaf.txt"}));
  for (const auto& e : *r) {
    EXPECT_TRUE(e.mtime.has_value()) << e.name;
    if (!e.is_dir) {
      EXPECT_EQ(e.size, 2u) << e.name;
    }
    EXPECT_FALSE(e.type_unknown);
  }
}

TEST(WebdavListing, ApacheFormAbsoluteHrefsAndOtherPrefixes) {
  auto r = ParseMultistatus(
      R"(<?xml version="1.0" encoding="utf-8"?>
<D:multistatus xmlns:D="DAV:" xmlns:ns0="DAV:">
<D:response xmlns:lp1="DAV:"><D:href>http://h:8/dav/my%20dir/</D:href>
<D:propstat><D:prop><lp1:resourcetype><D:collection/></lp1:resourcetype>
<lp1:getlastmodified>Tue, 01 Dec 2026 22:12:58 GMT</lp1:getlastmodified></D:prop>
<D:status>HTTP/1.1 200 OK</D:status></D:propstat></D:response>
<D:response><D:href>/dav/my%20dir/f%26.txt</D:href>
<D:propstat><D:prop><lp1:resourcetype/><lp1:getcontentlength>12345</lp1:getcontentlength>
<lp1:getlastmodified>Tue, 01 Dec 2026 22:12:58 GMT</lp1:getlastmodified></D:prop>
<D:status>HTTP/1.1 200 OK</D:status></D:propstat>
<D:propstat><D:prop><D:getcontentlength>999</D:getcontentlength></D:prop>
<D:status>HTTP/1.1 404 Not Found</D:status></D:propstat></D:response>
<D:response><D:href>/dav/my dir/sub/</D:href><D:propstat><D:prop>
<D:resourcetype><D:collection/></D:resourcetype></D:prop><D:status>HTTP/1.1 200 OK</D:status>
</D:propstat></D:response>
<D:response><D:href>/dav/my%20dir/sub/deeper.txt</D:href></D:response>
<D:response><D:href>/elsewhere/x.txt</D:href></D:response>
<!-- <D:response><D:href>/dav/my%20dir/commented</D:href></D:response> -->
</D:multistatus>)",
      "/dav/my%20dir/");
  ASSERT_TRUE(r.has_value());
  ASSERT_EQ(Names(*r), (std::vector<std::string>{"f&.txt", "sub/"}));
  EXPECT_EQ((*r)[0].size, 12345u) << "only from a propstat whose status is 200";
  EXPECT_EQ((*r)[0].mtime, 1796163178);
  EXPECT_FALSE((*r)[1].size.has_value());

  auto plain = ParseMultistatus(
      R"(<multistatus xmlns="DAV:"><response><href>/d/a</href><propstat><prop>
<getcontentlength>1</getcontentlength></prop><status>HTTP/1.1 200 OK</status></propstat>
</response></multistatus>)",
      "/d/");
  ASSERT_TRUE(plain.has_value());
  EXPECT_EQ(Names(*plain), (std::vector<std::string>{"a"}));
}

TEST(WebdavListing, WhatIsNotAMultistatusIsRefused) {
  EXPECT_FALSE(ParseMultistatus("", "/"));
  EXPECT_FALSE(ParseMultistatus("<html><title>Index of /</title></html>", "/"));
  EXPECT_FALSE(ParseMultistatus("<D:error xmlns:D=\"DAV:\"/>", "/"));
  auto empty = ParseMultistatus("<D:multistatus xmlns:D=\"DAV:\"></D:multistatus>", "/");
  ASSERT_TRUE(empty.has_value());
  EXPECT_TRUE(empty->empty());
}

TEST(WebdavListing, MutatedAnswersGiveOnlyUsableSortedNames) {
  std::string xml = Saved("rclone-webdav.xml");
  ASSERT_FALSE(xml.empty());
  std::mt19937 rng(4918);
  for (int round = 0; round < 2000; ++round) {
    auto r = ParseMultistatus(testing::Mutated(xml, rng), "/");
    if (r) testing::ExpectUsableSortedNames(*r, "round " + std::to_string(round));
  }
}

}  // namespace
}  // namespace originfs
