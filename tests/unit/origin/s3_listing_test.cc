// ListObjectsV2 pages as S3 (and moto, MinIO) send them.
#include "core/origin/s3_listing.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace originfs {
namespace {

using ::testing::ElementsAre;
using ::testing::Optional;

constexpr char kPage[] = R"(<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>old-site</Name><Prefix>docs/</Prefix><KeyCount>5</KeyCount><MaxKeys>1000</MaxKeys>
  <Delimiter>/</Delimiter><IsTruncated>true</IsTruncated>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>
  <Contents><Key>docs/</Key><LastModified>2024-01-02T03:04:05.000Z</LastModified><ETag>"d41d8cd98f00b204e9800998ecf8427e"</ETag><Size>0</Size><StorageClass>STANDARD</StorageClass></Contents>
  <Contents><Key>docs/a &amp; b.txt</Key><LastModified>2024-01-02T03:04:05.000Z</LastModified><ETag>"x"</ETag><Size>1234</Size></Contents>
  <Contents><Key>docs/&#252;n&#xEF;.txt</Key><LastModified>2015-10-21T07:28:00Z</LastModified><Size>7</Size></Contents>
  <Contents><Key>docs/100%+plus.txt</Key><Size>3</Size></Contents>
  <CommonPrefixes><Prefix>docs/deep/</Prefix></CommonPrefixes>
  <CommonPrefixes><Prefix>docs/a &lt;b&gt;/</Prefix></CommonPrefixes>
</ListBucketResult>)";

TEST(S3ListingTest, PageGivesFilesWithExactSizeAndTimeAndDirectories) {
  auto page = ParseListObjectsV2(kPage, "docs/");
  ASSERT_TRUE(page.has_value());
  EXPECT_TRUE(page->truncated);
  EXPECT_EQ(page->next_continuation, "1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=");
  ASSERT_EQ(page->entries.size(), 5u) << "the directory marker docs/ is no entry";
  EXPECT_EQ(page->entries[0], (ListedEntry{"a & b.txt", false, 1234, 1704164645}));
  EXPECT_EQ(page->entries[1], (ListedEntry{"ün\xC3\xAF.txt", false, 7, 1445412480}));
  EXPECT_EQ(page->entries[2], (ListedEntry{"100%+plus.txt", false, 3, std::nullopt}));
  EXPECT_EQ(page->entries[3], (ListedEntry{"deep", true, std::nullopt, std::nullopt}));
  EXPECT_EQ(page->entries[4], (ListedEntry{"a <b>", true, std::nullopt, std::nullopt}));
}

TEST(S3ListingTest, WhatIsNotAListingIsRefused) {
  EXPECT_EQ(ParseListObjectsV2("<Error><Code>AccessDenied</Code></Error>", ""), std::nullopt);
  EXPECT_EQ(ParseListObjectsV2("<html>Index of /</html>", ""), std::nullopt);
  // Truncated without a token: the rest cannot be asked for.
  EXPECT_EQ(ParseListObjectsV2("<ListBucketResult><IsTruncated>true</IsTruncated>"
                               "</ListBucketResult>",
                               ""),
            std::nullopt);
  EXPECT_EQ(ParseListObjectsV2("<ListBucketResult><Contents><Key>a&bogus;</Key></Contents>"
                               "</ListBucketResult>",
                               ""),
            std::nullopt);
  auto empty = ParseListObjectsV2(
      "<ListBucketResult><IsTruncated>false</IsTruncated>"
      "</ListBucketResult>",
      "");
  ASSERT_TRUE(empty.has_value());
  EXPECT_TRUE(empty->entries.empty());
  EXPECT_FALSE(empty->truncated);
}

TEST(S3ListingTest, KeysThatAreNoEntryOfTheDirectoryAreSkipped) {
  auto page = ParseListObjectsV2(
      "<ListBucketResult><Contents><Key>other/x</Key></Contents>"
      "<Contents><Key>d/../x</Key></Contents><Contents><Key>d/..</Key></Contents>"
      "<Contents><Key>d/ok</Key><Size>1</Size></Contents>"
      "<CommonPrefixes><Prefix>d//</Prefix></CommonPrefixes></ListBucketResult>",
      "d/");
  ASSERT_TRUE(page.has_value());
  EXPECT_THAT(page->entries, ElementsAre(ListedEntry{"ok", false, 1, std::nullopt}));
}

TEST(S3ListingTest, UrlHasTheParametersInCanonicalOrderAndEncoded) {
  EXPECT_EQ(ListObjectsUrl("http://127.0.0.1:9000/old-site", "", ""),
            "http://127.0.0.1:9000/old-site/?delimiter=%2F&list-type=2");
  EXPECT_EQ(ListObjectsUrl("https://b.s3.example.com", "a b/ü+%/", "tok/en="),
            "https://b.s3.example.com/?continuation-token=tok%2Fen%3D&delimiter=%2F&list-type=2"
            "&prefix=a%20b%2F%C3%BC%2B%25%2F");
}

}  // namespace
}  // namespace originfs
